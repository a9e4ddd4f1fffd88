//! Runtime flag changes through the admin API: guarded, audited, persisted, and applied by
//! every replica without a restart.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::Backend;
use crate::helpers::{ADMIN_TOKEN, WRITER_TOKEN, spawn_app, spawn_replica};

on_both_backends!(
    the_feature_status_shows_the_configured_flags_and_phase,
    a_runtime_change_is_applied_at_once_audited_and_kept_across_a_restart,
    every_forbidden_transition_is_refused_with_its_rule_and_changes_nothing,
    bad_flag_changes_are_refused,
    the_migration_status_counts_rows_in_both_stores,
    the_status_document_says_the_next_step_and_what_refuses_it,
    an_anonymous_browser_keeps_its_cohort_through_the_canary,
    a_flag_variable_set_since_the_last_start_is_applied_once_and_only_when_safe,
    an_actor_named_with_the_admin_token_is_recorded_as_the_tokens_claim,
);

const STATUS: &str = "/api/v2/admin/attributes/feature-status";

async fn the_feature_status_shows_the_configured_flags_and_phase(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app
        .get_as(STATUS, ("Authorization", &format!("Bearer {ADMIN_TOKEN}")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let data = &reply.body["data"];
    assert_eq!(
        (
            data["phase"].clone(),
            data["phase_number"].clone(),
            data["source"].clone()
        ),
        (json!("legacy"), json!(0), json!("configured"))
    );
    assert_eq!(data["flags"]["dual_write"], false);
    assert_eq!(data["audit"], json!([]));
    app.get(STATUS)
        .await
        .assert_error(401, "errors.unauthorized");
    app.json("PUT", STATUS, r#"{"dual_write": true}"#, Some(WRITER_TOKEN))
        .await
        .assert_error(401, "errors.unauthorized");
}

async fn a_runtime_change_is_applied_at_once_audited_and_kept_across_a_restart(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app
        .json("PUT", STATUS, r#"{"dual_write": true}"#, Some(ADMIN_TOKEN))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        (
            reply.body["data"]["phase"].clone(),
            reply.body["data"]["source"].clone()
        ),
        (json!("dual_write"), json!("runtime"))
    );
    // Writes now land in both stores.
    let written = app
        .put_json(
            "/api/v2/marketplace/listings/6/attributes",
            r#"{"year": 2012}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(written.status, 200, "{}", written.body);
    let raw = app.db.raw().await;
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_id = 6")
            .await,
        1
    );
    // Audited: who, old → new.
    let audit = raw
        .texts("SELECT changed_by || ':' || old_phase || '->' || new_phase FROM flag_audit")
        .await;
    assert_eq!(audit, [Some("admin-api:legacy->dual_write".to_owned())]);
    // A restarted process (same configuration, no dual-write in it) keeps the runtime flags.
    let restarted = spawn_replica(&app, &[("ADMIN_API_TOKEN", ADMIN_TOKEN)]).await;
    let status = restarted
        .get_as(STATUS, ("Authorization", &format!("Bearer {ADMIN_TOKEN}")))
        .await;
    assert_eq!(
        (
            status.body["data"]["flags"]["dual_write"].clone(),
            status.body["data"]["configured"]["dual_write"].clone()
        ),
        (json!(true), json!(false))
    );
    assert_eq!(
        restarted
            .metric("unified_attributes_flag{flag=\"dual_write\"}")
            .await,
        1.0
    );
}

async fn every_forbidden_transition_is_refused_with_its_rule_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let refused = |body: &'static str, rule: &'static str| {
        let app = &app;
        async move {
            let reply = app.json("PUT", STATUS, body, Some(ADMIN_TOKEN)).await;
            reply.assert_error(409, "errors.guardrailViolation");
            assert_eq!(reply.body["rule"], rule, "{body}");
        }
    };
    refused(
        r#"{"use_unified": true, "unified_percent": 50}"#,
        "dual_write_off_while_legacy_serves_reads",
    )
    .await;
    // A change that breaks several rules names them all; `rule` stays the first.
    let several = app
        .json(
            "PUT",
            STATUS,
            r#"{"use_unified": true, "unified_percent": 50}"#,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(
        several.body["rules"],
        json!([
            "dual_write_off_while_legacy_serves_reads",
            "unified_reads_before_backfill",
            "unified_reads_before_verify"
        ]),
        "{}",
        several.body
    );
    refused(
        r#"{"use_unified": true, "unified_percent": 100, "fallback": true}"#,
        "fallback_to_stale_legacy",
    )
    .await;
    // Unified reads wait for a complete backfill under dual-write, then a clean verify.
    refused(
        r#"{"dual_write": true, "use_unified": true, "unified_percent": 10}"#,
        "unified_reads_before_backfill",
    )
    .await;
    // After unified-only writes, legacy reads wait for the reverse sync.
    let raw = app.db.raw().await;
    raw.execute("UPDATE migration_state SET unified_only_write_at = CURRENT_TIMESTAMP")
        .await;
    refused(
        r#"{"dual_write": true}"#,
        "legacy_reads_before_reverse_sync",
    )
    .await;
    // After the archive, nothing may touch legacy.
    raw.execute(
        "UPDATE migration_state SET unified_only_write_at = NULL, archived_at = CURRENT_TIMESTAMP",
    )
    .await;
    refused(
        r#"{"dual_write": true, "use_unified": true}"#,
        "legacy_used_after_archive",
    )
    .await;
    raw.execute("UPDATE migration_state SET archived_at = NULL")
        .await;
    // Nothing changed.
    assert_eq!(raw.count("SELECT COUNT(*) FROM flag_audit").await, 0);
    assert_eq!(raw.count("SELECT COUNT(*) FROM flag_state").await, 0);
    let status = app
        .get_as(STATUS, ("Authorization", &format!("Bearer {ADMIN_TOKEN}")))
        .await;
    assert_eq!(status.body["data"]["phase"], "legacy");
}

async fn bad_flag_changes_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.json(
        "PUT",
        STATUS,
        r#"{"unified_percent": 150}"#,
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(422, "errors.invalidBody");
    app.json("PUT", STATUS, r#"{"dual_writes": true}"#, Some(ADMIN_TOKEN))
        .await
        .assert_error(422, "errors.invalidBody");
    app.json(
        "PUT",
        STATUS,
        r#"{"dual_write": "yes please"}"#,
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(422, "errors.invalidBody");
    assert_eq!(
        app.db
            .raw()
            .await
            .count("SELECT COUNT(*) FROM flag_audit")
            .await,
        0
    );
}

/// The `status` command's document at the admin API: the same phase, rung and next step.
async fn the_status_document_says_the_next_step_and_what_refuses_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = "/api/v2/admin/attributes/status";
    assert_eq!(app.get(path).await.status, 401);
    let admin = ("Authorization", format!("Bearer {ADMIN_TOKEN}"));
    let legacy = app.get_as(path, (admin.0, &admin.1)).await;
    assert_eq!(legacy.status, 200, "{}", legacy.body);
    let data = &legacy.body["data"];
    assert_eq!(
        (&data["phase"], &data["rung"]),
        (&json!("legacy"), &json!("legacy"))
    );
    assert_eq!(data["next"]["to"], "dual-write");
    assert!(data["next"]["blocked_by"].is_null(), "{data}");
    let database = data["database"].as_str().expect("the database");
    assert!(
        database.starts_with(match backend {
            Backend::Postgres => "PostgreSQL ",
            Backend::Sqlite => "SQLite file ",
        }) && !database.contains("password"),
        "{database}"
    );
    app.json("PUT", STATUS, r#"{"dual_write": true}"#, Some(ADMIN_TOKEN))
        .await;
    let dual = app.get_as(path, (admin.0, &admin.1)).await;
    let data = &dual.body["data"];
    assert_eq!(data["phase"], "dual_write");
    assert_eq!(
        data["next"]["blocked_by"]["rule"],
        "unified_reads_before_backfill"
    );
    assert_eq!(data["flag_changes"].as_array().map(Vec::len), Some(1));
    assert_eq!(data["backfill"][0]["kind"], "listing");
    assert_eq!(data["backfill"][0]["entities"], 60);
}

async fn the_migration_status_counts_rows_in_both_stores(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = "/api/v2/admin/attributes/migration-status";
    let before = app
        .get_as(path, ("Authorization", &format!("Bearer {ADMIN_TOKEN}")))
        .await;
    assert_eq!(before.status, 200, "{}", before.body);
    let raw = app.db.raw().await;
    let legacy_values = raw
        .count("SELECT COUNT(*) FROM listing_attribute_values")
        .await;
    assert_eq!(
        before.body["data"]["counts"]["legacy_listing_values"],
        legacy_values
    );
    assert_eq!(before.body["data"]["counts"]["listings"], 60);
    assert_eq!(before.body["data"]["counts"]["unified_listing_values"], 0);
    assert_eq!(before.body["data"]["listing_values_migrated_percent"], 0.0);
    app.json("PUT", STATUS, r#"{"dual_write": true}"#, Some(ADMIN_TOKEN))
        .await;
    app.put_json(
        "/api/v2/marketplace/listings/6/attributes",
        r#"{"year": 2012, "city": "Niš"}"#,
        Some(WRITER_TOKEN),
    )
    .await;
    let after = app
        .get_as(path, ("Authorization", &format!("Bearer {ADMIN_TOKEN}")))
        .await;
    assert_eq!(after.body["data"]["counts"]["unified_listing_values"], 2);
    assert_eq!(after.body["data"]["phase"], "dual_write");

    // After a backfill: checkpoints per kind and the quarantine by reason, from the database.
    let storage = app.db.storage().await;
    crate::common::run_backfill(&storage, &[domain::EntityKind::Listing], 25, false, None).await;
    let checkpoint = storage
        .backfill_checkpoint(domain::EntityKind::Listing, false)
        .await
        .expect("checkpoint");
    let status = app
        .get_as(path, ("Authorization", &format!("Bearer {ADMIN_TOKEN}")))
        .await;
    let data = &status.body["data"];
    assert_eq!(data["backfill"][0]["entity_type"], "listing");
    assert_eq!(data["backfill"][0]["completed"], true);
    assert_eq!(data["backfill"][0]["quarantined"], checkpoint.quarantined);
    let by_reason: i64 = data["quarantine_by_reason"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(|r| r["count"].as_i64())
        .sum();
    assert_eq!(
        by_reason,
        raw.count("SELECT COUNT(*) FROM backfill_quarantine").await
    );
    assert!(
        by_reason > 0,
        "the demo's empty legacy rows are quarantined"
    );
    app.get(path).await.assert_error(401, "errors.unauthorized");
}

#[actix_web::test]
async fn a_runtime_change_reaches_another_process_within_a_second() {
    let first = spawn_app(Backend::Postgres).await;
    let second = spawn_replica(
        &first,
        &[
            ("WRITER_API_TOKEN", WRITER_TOKEN),
            ("ADMIN_API_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    let reply = first
        .json("PUT", STATUS, r#"{"dual_write": true}"#, Some(ADMIN_TOKEN))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let changed = Instant::now();
    while second
        .metric("unified_attributes_flag{flag=\"dual_write\"}")
        .await
        != 1.0
    {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the second process still has the old flags"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    // And it routes by them: a write through the second process lands in both stores.
    let written = second
        .put_json(
            "/api/v2/marketplace/listings/7/attributes",
            r#"{"year": 2001}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(written.status, 200, "{}", written.body);
    assert_eq!(
        second
            .db
            .raw()
            .await
            .count("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_id = 7")
            .await,
        1
    );
}

/// During the canary a client that names no user and no session gets a cohort cookie with its
/// first answer; sent back, as a browser does, it keeps every later read on the same store.
/// Without it (or before the canary) nothing is set.
async fn an_anonymous_browser_keeps_its_cohort_through_the_canary(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = "/api/v2/marketplace/categories/1311/attributes";
    assert!(
        app.get(path).await.header("Set-Cookie").is_none(),
        "phase 0: no cohort to keep"
    );
    let dual = app
        .json("PUT", STATUS, r#"{"dual_write": true}"#, Some(ADMIN_TOKEN))
        .await;
    assert_eq!(dual.status, 200, "{}", dual.body);
    crate::common::backfill_and_verify(&app.db.storage().await).await;
    let canary = app
        .json(
            "PUT",
            STATUS,
            r#"{"use_unified": true, "unified_percent": 50, "fallback": true}"#,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(canary.status, 200, "{}", canary.body);

    // Anonymous clients land on both stores…
    let mut first_answers = std::collections::BTreeSet::new();
    let mut cookies = Vec::new();
    for _ in 0..40 {
        let reply = app.get(path).await;
        assert_eq!(reply.status, 200);
        first_answers.insert(reply.header("X-Attributes-Source").map(str::to_owned));
        let set_cookie = reply
            .header("Set-Cookie")
            .expect("a cohort cookie")
            .to_owned();
        assert!(
            set_cookie.contains("HttpOnly") && set_cookie.contains("Path=/"),
            "{set_cookie}"
        );
        assert_eq!(reply.header("Cache-Control"), Some("private, no-cache"));
        let pair = set_cookie.split(';').next().expect("name=value").to_owned();
        cookies.push((pair, reply.header("X-Attributes-Source").map(str::to_owned)));
    }
    assert_eq!(
        first_answers.len(),
        2,
        "50 %: both stores answer first requests"
    );
    // …and each stays where it landed for as long as it sends its cookie back.
    for (cookie, landed) in &cookies {
        for _ in 0..5 {
            let reply = app.get_as(path, ("Cookie", cookie)).await;
            assert_eq!(reply.status, 200);
            assert_eq!(
                &reply.header("X-Attributes-Source").map(str::to_owned),
                landed,
                "{cookie}"
            );
            assert!(
                reply.header("Set-Cookie").is_none(),
                "the cookie is set once"
            );
        }
    }
    // A client that names its user is bucketed by it, and gets no cookie.
    let named = app.get_as(path, ("X-User-Id", "42")).await;
    assert!(named.header("Set-Cookie").is_none());
    // Whatever chose the cohort, a shared cache must not hand this answer to another client:
    // private, and varying on everything that can choose the store.
    for (path, header) in [
        (path, ("X-User-Id", "42")),
        (
            "/api/v2/marketplace/listings/6/attributes",
            ("Cookie", cookies[0].0.as_str()),
        ),
    ] {
        let reply = app.get_as(path, header).await;
        let cache_control = reply.header("Cache-Control").unwrap_or_default();
        assert!(
            cache_control.starts_with("private"),
            "{path}: {cache_control}"
        );
        let vary = reply.header("Vary").unwrap_or_default();
        for chooses in ["X-User-Id", "X-Session-Id", "Cookie", "Authorization"] {
            assert!(
                vary.contains(chooses),
                "{path}: Vary {vary} lacks {chooses}"
            );
        }
    }
    // Once every read is unified again, answers are the same for everyone: public.
    let all = app
        .json(
            "PUT",
            STATUS,
            r#"{"unified_percent": 100}"#,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(all.status, 200, "{}", all.body);
    let reply = app.get_as(path, ("X-User-Id", "42")).await;
    assert!(
        reply
            .header("Cache-Control")
            .is_some_and(|c| c.starts_with("public")),
        "{:?}",
        reply.header("Cache-Control")
    );
}

/// The flags a process serves, and the newest audit row's author.
async fn flags_and_last_author(app: &crate::helpers::TestApp) -> (serde_json::Value, String) {
    let status = app
        .get_as(STATUS, ("Authorization", &format!("Bearer {ADMIN_TOKEN}")))
        .await;
    assert_eq!(status.status, 200, "{}", status.body);
    let author = app
        .db
        .raw()
        .await
        .texts("SELECT changed_by FROM flag_audit ORDER BY id DESC LIMIT 1")
        .await;
    (
        status.body["data"]["flags"].clone(),
        author.into_iter().flatten().next().unwrap_or_default(),
    )
}

/// The seed's L1 rollback, `kubectl set env … USE_UNIFIED_ATTRIBUTES=false`: the pods restart
/// with the variable set, and it takes effect although runtime flags are stored — once, audited,
/// guarded; a restart with an unchanged environment changes nothing.
async fn a_flag_variable_set_since_the_last_start_is_applied_once_and_only_when_safe(
    backend: Backend,
) {
    let admin = ("ADMIN_API_TOKEN", ADMIN_TOKEN);
    let app = spawn_app(backend).await;
    let put = async |app: &crate::helpers::TestApp, body: &str| {
        let reply = app.json("PUT", STATUS, body, Some(ADMIN_TOKEN)).await;
        assert_eq!(reply.status, 200, "{body}: {}", reply.body);
    };
    put(&app, r#"{"dual_write": true}"#).await;
    crate::common::backfill_and_verify(&app.db.storage().await).await;
    put(&app, r#"{"use_unified": true, "fallback": true}"#).await;

    let restarted = spawn_replica(&app, &[admin]).await;
    let (flags, _) = flags_and_last_author(&restarted).await;
    assert_eq!(
        flags["use_unified"], true,
        "an unchanged environment changes nothing"
    );

    let set_env = [admin, ("USE_UNIFIED_ATTRIBUTES", "false")];
    let rolled_back = spawn_replica(&app, &set_env).await;
    let (flags, author) = flags_and_last_author(&rolled_back).await;
    assert_eq!(
        (
            flags["use_unified"].clone(),
            flags["dual_write"].clone(),
            author.as_str()
        ),
        (json!(false), json!(true), "environment"),
        "the variable set since the last start is applied, audited; the other flags stay"
    );

    // Forward again at runtime: a restart with the variable still set does not undo it.
    // Named in full: `use_unified` alone would start the smallest canary.
    put(
        &rolled_back,
        r#"{"use_unified": true, "unified_percent": 100}"#,
    )
    .await;
    let again = spawn_replica(&app, &set_env).await;
    assert_eq!(flags_and_last_author(&again).await.0["use_unified"], true);

    // Unified-only writes (dual-write off): legacy reads would hide them, so the same
    // rollback through the environment is refused — the service still starts, flags unchanged.
    put(&again, r#"{"dual_write": false, "fallback": false}"#).await;
    // The variable unset (it asks for nothing), and a write that only unified holds.
    let writer = spawn_replica(&app, &[admin, ("WRITER_API_TOKEN", WRITER_TOKEN)]).await;
    let written = writer
        .put_json(
            "/api/v2/marketplace/listings/6/attributes",
            r#"{"year": 2015}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(written.status, 200, "{}", written.body);
    let refused = spawn_replica(&app, &set_env).await;
    let (flags, author) = flags_and_last_author(&refused).await;
    assert_eq!(
        (flags["use_unified"].clone(), author.as_str()),
        (json!(true), "admin-api"),
        "refused by the guardrails: nothing changed"
    );
}

/// `X-Actor` is what the admin token's holder claims: recorded as its claim, in any script,
/// never as a JWT user (`user:42`) or the environment would be.
async fn an_actor_named_with_the_admin_token_is_recorded_as_the_tokens_claim(backend: Backend) {
    let app = spawn_app(backend).await;
    let long_actor = "ж".repeat(250);
    for (actor, body) in [
        ("user:42".as_bytes(), r#"{"dual_write": true}"#),
        ("Јована\tПетровић ".as_bytes(), r#"{"dual_write": false}"#),
        ("environment".as_bytes(), r#"{"dual_write": true}"#),
        // Longer than the audit columns (varchar(200)) once prefixed: cut to fit, not a 500.
        (long_actor.as_bytes(), r#"{"dual_write": false}"#),
    ] {
        let request = app
            .client
            .put(format!("{}{STATUS}", app.address))
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")))
            .insert_header((
                "X-Actor",
                awc::http::header::HeaderValue::from_bytes(actor).expect("a header value"),
            ));
        let reply = app.send(request, Some(body.to_owned())).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let audit = app
        .db
        .raw()
        .await
        .texts("SELECT changed_by FROM flag_audit ORDER BY id")
        .await;
    assert_eq!(
        audit,
        [
            Some("admin-api (claims: user:42)".to_owned()),
            Some("admin-api (claims: Јована Петровић)".to_owned()),
            Some("admin-api (claims: environment)".to_owned()),
            Some(format!("admin-api (claims: {})", "ж".repeat(180))),
        ]
    );
}
