//! Metrics after traffic, the exposition checked by promtool, and the OpenAPI document.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::Backend;
use crate::helpers::{ADMIN_TOKEN, WRITER_TOKEN, spawn_app};

on_both_backends!(
    the_seed_metric_names_are_exported_after_traffic_with_route_templates,
    promtool_accepts_the_metrics_exposition,
    the_openapi_document_lists_every_route_and_the_docs_page_is_served_from_the_binary,
    with_an_internal_listener_metrics_and_admin_routes_leave_the_public_one,
    made_up_methods_and_paths_add_no_metric_series,
    a_method_a_route_does_not_answer_is_405_with_the_documented_methods_in_allow,
    every_answer_and_error_carries_the_request_id_the_caller_sent_or_a_new_one,
);

/// `/metrics` answers from memory: a flood of scrapes costs the database nothing (counted by
/// PostgreSQL itself), and the bulk operations' gauges, read in the background, still show a
/// backfill another process ran.
#[actix_web::test]
async fn a_scrape_runs_no_query_and_still_shows_the_backfill() {
    let app = spawn_app(Backend::Postgres).await;
    let storage = app.db.storage().await;
    crate::common::run_backfill(&storage, &domain::EntityKind::ALL, 50, false, None).await;
    let migrated = "unified_attributes_backfill_rows{entity_type=\"listing\",outcome=\"migrated\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while app.metric(migrated).await == 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            app.metrics().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let raw = app.db.raw().await;
    let transactions = || async {
        // An idle backend publishes its counters within ten seconds (PGSTAT_IDLE_INTERVAL).
        tokio::time::sleep(std::time::Duration::from_millis(11_000)).await;
        raw.count(
            "SELECT CAST(xact_commit + xact_rollback AS BIGINT) FROM pg_stat_database
             WHERE datname = current_database()",
        )
        .await
    };
    // The service's own background work goes on all along (the operations' gauges every 5 s,
    // the capture loop's look every second, more while the feed has work): measured over a
    // window without scrapes, and taken off at its rate.
    let start = transactions().await;
    let quiet = std::time::Instant::now();
    let before = transactions().await;
    let quiet = quiet.elapsed().as_secs_f64();
    let scraping = std::time::Instant::now();
    // Enough scrapes that one query each stands far above the background's unevenness (its
    // counters reach the statistics a second or more late, so a window can gain 100 of them).
    const SCRAPES: usize = 1_000;
    for _ in 0..SCRAPES {
        app.metrics().await;
    }
    let spent = transactions().await - before;
    let background = (before - start) as f64 / quiet * scraping.elapsed().as_secs_f64();
    // One query per scrape would be 1,000 more than the background work.
    assert!(
        (spent as f64) < background + SCRAPES as f64 / 2.0,
        "{SCRAPES} scrapes cost {spent} transactions, {background:.0} of them the background's"
    );
}

/// The migration's gauges say what `status` says: the percentage as the flags hold it, the
/// quarantine by kind as it is now (after a resolution empties part of it too), what blocks the
/// cut-over, the last verify, a pending sync, the archive.
#[actix_web::test]
async fn the_migration_gauges_agree_with_the_status() {
    let app = spawn_app(Backend::Postgres).await;
    let storage = app.db.storage().await;
    crate::common::run_backfill(&storage, &domain::EntityKind::ALL, 50, false, None).await;
    storage.verify(50, |_| {}).await.expect("verify");
    let raw = app.db.raw().await;
    let wait_for = |name: &'static str, wanted: f64| {
        let app = &app;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let value = app.metric(name).await;
                if value == wanted {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} is {value}, not {wanted}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    let quarantined = raw
        .count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'")
        .await;
    assert!(quarantined > 0, "the demo's defects are quarantined");
    // The demo's most common kind of quarantined value.
    let kind = raw
        .texts(
            "SELECT kind FROM backfill_quarantine WHERE entity_type = 'listing'
             GROUP BY kind ORDER BY COUNT(*) DESC, kind LIMIT 1",
        )
        .await
        .into_iter()
        .flatten()
        .next()
        .expect("a kind");
    let of_kind = raw
        .count(&format!(
            "SELECT COUNT(*) FROM backfill_quarantine WHERE kind = '{kind}'"
        ))
        .await;
    let gauge: &'static str = Box::leak(
        format!("unified_attributes_quarantine_values{{kind=\"{kind}\"}}").into_boxed_str(),
    );
    wait_for(gauge, of_kind as f64).await;
    let checked = storage
        .last_verify()
        .await
        .expect("read")
        .expect("a verify")
        .checked;
    wait_for("unified_attributes_last_verify_checked", checked as f64).await;
    assert!(
        app.metric("unified_attributes_last_verify_timestamp_seconds")
            .await
            > 1.7e9
    );
    // The flags say 100 % while unified reads are off: so does the gauge; the share of
    // readers on unified is the other one.
    assert_eq!(
        app.metric("unified_attributes_rollout_percent").await,
        100.0
    );
    assert_eq!(
        app.metric("unified_attributes_unified_read_percent").await,
        0.0
    );
    assert_eq!(app.metric("unified_attributes_archived").await, 0.0);
    let blocking: i64 = storage
        .unsettled_quarantine()
        .await
        .expect("read")
        .iter()
        .map(|u| u.count)
        .sum();
    wait_for("unified_attributes_quarantine_blocking", blocking as f64).await;
    // Resolved values leave the quarantine: the checkpoint keeps its pass's count, the gauge
    // follows the quarantine.
    let rows = "unified_attributes_backfill_rows{entity_type=\"listing\",outcome=\"quarantined\"}";
    wait_for(rows, quarantined as f64).await;
    raw.execute(&format!(
        "DELETE FROM backfill_quarantine WHERE entity_type = 'listing' AND kind = '{kind}'"
    ))
    .await;
    let left = raw
        .count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'")
        .await;
    assert!(left < quarantined);
    wait_for(rows, left as f64).await;
    raw.execute("UPDATE migration_state SET unified_only_write_at = CURRENT_TIMESTAMP")
        .await;
    wait_for("unified_attributes_legacy_sync_pending", 1.0).await;

    // The backfill's position in per cent of the kind's entities, as `status` counts it.
    let percent = "unified_attributes_backfill_percent{entity_type=\"listing\"}";
    wait_for(percent, 100.0).await;
    let all = raw.count("SELECT COUNT(*) FROM marketplace_listings").await;
    let middle = raw
        .count(&format!(
            "SELECT CAST(id AS BIGINT) FROM marketplace_listings ORDER BY id OFFSET {} LIMIT 1",
            all / 3
        ))
        .await;
    raw.execute(&format!(
        "UPDATE backfill_checkpoint SET completed_at = NULL, last_id = {middle}
         WHERE entity_type = 'listing'"
    ))
    .await;
    let done = raw
        .count(&format!(
            "SELECT COUNT(*) FROM marketplace_listings WHERE id <= {middle}"
        ))
        .await;
    let expected = (done as f64 * 1000.0 / all as f64).round() / 10.0;
    assert!(0.0 < expected && expected < 100.0, "{expected}");
    wait_for(percent, expected).await;
}

async fn traffic(app: &crate::helpers::TestApp) {
    app.get("/api/v2/marketplace/categories/1311/attributes")
        .await;
    app.get("/api/v2/marketplace/categories/1311/attributes")
        .await;
    app.get("/api/v2/marketplace/listings/6/attributes").await;
    app.get("/api/v2/marketplace/listings/x/attributes").await;
    app.put_json(
        "/api/v2/marketplace/listings/6/attributes",
        r#"{"year": 2010}"#,
        Some(WRITER_TOKEN),
    )
    .await;
}

async fn the_seed_metric_names_are_exported_after_traffic_with_route_templates(backend: Backend) {
    let app = spawn_app(backend).await;
    for probe in ["/health/live", "/health/ready", "/metrics"] {
        app.get(probe).await;
    }
    traffic(&app).await;
    let text = app.metrics().await;
    for name in [
        "unified_attributes_requests_total{",
        "unified_attributes_cache_hits{",
        "unified_attributes_response_time_bucket{",
        "unified_attributes_cache_misses_total{",
        "unified_attributes_reads_served_total{served_by=\"legacy\"}",
        "unified_attributes_writes_total{mode=\"legacy_only\",result=\"committed\"}",
        "unified_attributes_db_queries_total",
        "unified_attributes_db_pool_connections{",
        "unified_attributes_flag{flag=\"dual_write\"} 0",
        "unified_attributes_phase 0",
        "unified_attributes_build_info{",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "{name} is not exported");
    }
    let route = "route=\"/api/v2/marketplace/listings/{id}/attributes\"";
    assert!(
        text.lines()
            .any(|l| l.starts_with("unified_attributes_requests_total")
                && l.contains(route)
                && l.contains("4xx")),
        "a bad id is a request answered 4xx"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("unified_attributes_errors_total") && l.contains("4xx")),
        "a 4xx is the client's error, not the service's"
    );
    assert!(
        text.contains("# TYPE unified_attributes_errors_total counter"),
        "the seed's error counter is exported before any error"
    );
    for probe in ["/health/live", "/health/ready", "/metrics"] {
        assert!(
            !text.contains(&format!("route=\"{probe}\"")),
            "{probe} is not user traffic"
        );
    }
    assert!(
        !text.contains("/listings/6/"),
        "labels are route templates, never raw paths"
    );
    assert!(
        app.metric("unified_attributes_cache_hits{cache=\"responses\"}")
            .await
            >= 1.0
    );
}

async fn promtool_accepts_the_metrics_exposition(backend: Backend) {
    let app = spawn_app(backend).await;
    traffic(&app).await;
    let text = app.metrics().await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (Debian package prometheus)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("metrics written to promtool");
    let output = promtool.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn the_openapi_document_lists_every_route_and_the_docs_page_is_served_from_the_binary(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let document = app.get("/openapi.json").await;
    assert_eq!(document.status, 200);
    let paths = document.body["paths"].as_object().expect("paths");
    // The route table, as the application registered it, against the document: every route
    // and method is documented, and every documented one is served. Not in the document: the
    // probes, the scrape and the console's page and assets.
    const UNDOCUMENTED: [&str; 6] = [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/console",
        "/console/console.js",
        "/console/console.css",
    ];
    let served: std::collections::BTreeSet<(String, String)> = api::registered_routes()
        .into_iter()
        .filter(|(template, _)| !UNDOCUMENTED.contains(template))
        .flat_map(|(template, allow)| {
            allow
                .split(", ")
                .map(move |method| (template.to_owned(), method.to_lowercase()))
        })
        .collect();
    let documented: std::collections::BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .expect("operations")
                .keys()
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    assert!(served.len() > 30, "{served:?}");
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served, not documented"
    );
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented, not served"
    );
    let page = app.get("/docs/").await;
    assert_eq!(page.status, 200);
    let html = page.body.as_str().expect("html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the docs page loads nothing from elsewhere"
    );
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        assert_eq!(
            app.get(&format!("/docs/{asset}")).await.status,
            200,
            "{asset}"
        );
    }
}

async fn with_an_internal_listener_metrics_and_admin_routes_leave_the_public_one(backend: Backend) {
    let db = crate::common::TestDb::fresh(backend).await;
    let mut settings = crate::helpers::settings_for(&db, &[("ADMIN_API_TOKEN", ADMIN_TOKEN)]);
    settings.server.internal_bind = Some("127.0.0.1:0".into());
    let application = api::Application::build(&settings)
        .await
        .expect("the service starts");
    let public = format!("http://127.0.0.1:{}", application.port());
    let internal = format!(
        "http://127.0.0.1:{}",
        application.internal_port().expect("an internal port")
    );
    actix_web::rt::spawn(application.run_until_stopped());
    let client = awc::Client::default();
    let status = |url: String, token: bool| {
        let client = client.clone();
        async move {
            let mut request = client.get(url);
            if token {
                request = request.bearer_auth(ADMIN_TOKEN);
            }
            request.send().await.expect("answers").status().as_u16()
        }
    };
    let admin = "/api/v2/admin/attributes/feature-status";
    assert_eq!(status(format!("{public}{admin}"), true).await, 404);
    assert_eq!(status(format!("{public}/metrics"), false).await, 404);
    assert_eq!(
        status(
            format!("{public}/api/v2/marketplace/categories/1311/attributes"),
            false
        )
        .await,
        200
    );
    assert_eq!(status(format!("{internal}{admin}"), true).await, 200);
    assert_eq!(status(format!("{internal}{admin}"), false).await, 401);
    assert_eq!(status(format!("{internal}/metrics"), false).await, 200);
    assert_eq!(
        status(
            format!("{internal}/api/v2/marketplace/categories/1311/attributes"),
            false
        )
        .await,
        404,
        "the internal listener serves nothing public"
    );
}

/// Label values come from closed sets: a client inventing methods and paths, unauthenticated,
/// cannot grow the exposition (each new series would live as long as the process).
async fn made_up_methods_and_paths_add_no_metric_series(backend: Backend) {
    let app = spawn_app(backend).await;
    let invent = |i: usize| {
        let method = awc::http::Method::from_bytes(format!("FOO{i}").as_bytes()).expect("a method");
        let path = if i.is_multiple_of(2) {
            "/api/v2/attributes".to_owned()
        } else {
            format!("/made-up/{i}")
        };
        app.client.request(method, format!("{}{path}", app.address))
    };
    // The series of the first made-up request and of the scrape itself exist from here on.
    for i in 0..2 {
        app.send(invent(i), None).await;
    }
    app.metrics().await;
    let series = |text: &str| {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .count()
    };
    let before = series(&app.metrics().await);
    for i in 2..1_002 {
        let reply = app.send(invent(i), None).await;
        assert!(reply.status >= 400, "FOO{i}: {}", reply.status);
    }
    let exposition = app.metrics().await;
    assert_eq!(
        series(&exposition),
        before,
        "1,000 made-up methods added series"
    );
    assert!(
        exposition.contains("method=\"other\""),
        "made-up methods are counted as `other`"
    );
    assert!(!exposition.contains("FOO"));
}

/// Every documented path answers a method it does not serve with 405 and an `Allow` header
/// listing exactly the methods the OpenAPI document gives it.
async fn a_method_a_route_does_not_answer_is_405_with_the_documented_methods_in_allow(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let document = app.get("/openapi.json").await;
    let paths = document.body["paths"].as_object().expect("paths");
    assert!(paths.len() > 20, "{} paths", paths.len());
    for (template, operations) in paths {
        let mut documented: Vec<String> = operations
            .as_object()
            .expect("operations")
            .keys()
            .map(|method| method.to_uppercase())
            .collect();
        documented.sort();
        let path = template
            .replace("{id_or_code}", "year")
            .replace("{attribute_id}", "2202")
            .replace("{id}", "1311");
        let method = awc::http::Method::from_bytes(b"FROB").expect("a method");
        let reply = app
            .send(
                app.client.request(method, format!("{}{path}", app.address)),
                None,
            )
            .await;
        reply.assert_error(405, "errors.methodNotAllowed");
        let mut allowed: Vec<String> = reply
            .header("Allow")
            .unwrap_or_else(|| panic!("{template}: no Allow header"))
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        allowed.sort();
        assert_eq!(allowed, documented, "{template}");
    }
}

/// A gateway's `X-Request-Id` comes back on the answer and in an error's body; without one (or
/// with one that is not a plain token) the service makes its own, the same in both places.
async fn every_answer_and_error_carries_the_request_id_the_caller_sent_or_a_new_one(
    backend: Backend,
) {
    let app = crate::helpers::spawn_app(backend).await;
    let category = "/api/v2/marketplace/categories/1311/attributes";
    let ok = app.get_as(category, ("X-Request-Id", "gw-4711.a")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.headers.get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"gw-4711.a"[..])
    );

    let missing = app
        .get_as(
            "/api/v2/marketplace/categories/999999/attributes",
            ("X-Request-Id", "gw-4712"),
        )
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["request_id"], "gw-4712", "{}", missing.body);

    // A middleware's refusal (a NUL in the URL) carries it too.
    let refused = app
        .get_as(
            "/api/v2/marketplace/categories/%00/attributes",
            ("X-Request-Id", "gw-4713"),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["request_id"], "gw-4713", "{}", refused.body);
    assert_eq!(
        refused.headers.get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"gw-4713"[..])
    );

    // None sent, or one that is not a plain token: a new UUID, the same in header and body.
    for sent in [None, Some("two words <b>")] {
        let reply = match sent {
            Some(id) => {
                app.get_as(
                    "/api/v2/marketplace/categories/999999/attributes",
                    ("X-Request-Id", id),
                )
                .await
            }
            None => {
                app.get("/api/v2/marketplace/categories/999999/attributes")
                    .await
            }
        };
        let header = reply
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("an id on every answer")
            .to_owned();
        assert_eq!(header.len(), 36, "a UUID: {header}");
        assert_eq!(reply.body["request_id"], header.as_str());
    }
}
