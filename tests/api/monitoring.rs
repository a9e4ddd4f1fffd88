//! The monitoring contract with `deploy/`: every metric name the dashboard, the alert rules and
//! the canary analysis use is exported by the running service (the legacy dashboard queried
//! names nobody exported), and a real Prometheus scrapes the service and answers every one of
//! those queries.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use regex::Regex;

use crate::common::Backend;
use crate::helpers::{TestApp, WRITER_TOKEN, spawn_app};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &str) -> String {
    let path = deploy_dir().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The files whose queries must work against the service.
fn monitoring_files() -> Vec<(&'static str, String)> {
    [
        "k8s/monitoring/unified-attributes-dashboard.json",
        "prometheus/rules.yml",
        "k8s/rollout/analysistemplate.yaml",
    ]
    .into_iter()
    .map(|path| (path, read(path)))
    .collect()
}

/// Recording rules defined in the rules file (`level:metric:operations`).
fn recorded_names() -> BTreeSet<String> {
    let record = Regex::new(r"record:\s*([a-z_:0-9]+)").expect("regex");
    record
        .captures_iter(&read("prometheus/rules.yml"))
        .map(|c| c[1].to_owned())
        .collect()
}

/// Metric names a text refers to: ours, the process collector's, and recording rules.
fn referenced_names(text: &str) -> BTreeSet<String> {
    let name =
        Regex::new(r"\b((?:unified_attributes|process)_[a-z0-9_]+|unified_attributes:[a-z0-9_:]+)")
            .expect("regex");
    name.captures_iter(text).map(|c| c[1].to_owned()).collect()
}

/// Metric families in an exposition, with histogram series names added.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                names.insert(name.to_owned());
                if kind == "histogram" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
            }
        }
    }
    names
}

async fn traffic(app: &TestApp) {
    for path in [
        "/api/v2/marketplace/categories/1311/attributes",
        "/api/v2/marketplace/categories/1311/attributes",
        "/api/v2/marketplace/listings/6/attributes",
        "/api/v2/marketplace/listings/x/attributes",
        "/api/v1/marketplace/categories/1311/attributes",
    ] {
        app.get(path).await;
    }
    app.put_json(
        "/api/v2/marketplace/listings/6/attributes",
        r#"{"year": 2010}"#,
        Some(WRITER_TOKEN),
    )
    .await;
}

/// The backfill's metrics describe a backfill under way: start one.
async fn backfill_one_batch(app: &TestApp) {
    let storage = app.db.storage().await;
    let kinds = [domain::EntityKind::Listing];
    crate::common::run_backfill(&storage, &kinds, 10, false, Some(1)).await;
}

/// The quarantine panel draws one series per kind of quarantined value: every kind the table's
/// CHECK accepts has its series from the start and keeps it across the background refreshes
/// (a kind missing from the list was never counted; a reset before each refresh let a scrape
/// see the family vanish).
#[actix_web::test]
async fn every_kind_of_quarantined_value_has_its_series_at_every_scrape() {
    let app = spawn_app(Backend::Postgres).await;
    let raw = app.db.raw().await;
    let check = raw
        .texts(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = 'backfill_quarantine'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%kind%'",
        )
        .await
        .into_iter()
        .flatten()
        .next()
        .expect("the kind CHECK");
    let quoted = Regex::new(r"'([a-z_]+)'").expect("regex");
    let kinds: Vec<String> = quoted
        .captures_iter(&check)
        .map(|c| c[1].to_owned())
        .collect();
    assert!(kinds.len() >= 7, "{check}");
    // Across several background refreshes (every 5 s): not one scrape misses a kind.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
    let mut scrapes = 0;
    while std::time::Instant::now() < deadline {
        let exposition = app.metrics().await;
        for kind in &kinds {
            let series = format!("unified_attributes_quarantine_values{{kind=\"{kind}\"}} ");
            assert!(
                exposition.lines().any(|line| line.starts_with(&series)),
                "scrape {scrapes}: no series for kind {kind}"
            );
        }
        scrapes += 1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(scrapes > 100, "{scrapes} scrapes");
}

/// A replica's series exist once read replicas are configured (one per replica); the scale-out
/// tests find them there (`api::scale_out`).
const ONLY_WITH_REPLICAS: [&str; 2] = [
    "unified_attributes_replica_up",
    "unified_attributes_replica_lag_seconds",
];

#[actix_web::test]
async fn every_metric_the_dashboard_alerts_and_analysis_use_is_exported_after_traffic() {
    let app = spawn_app(Backend::Postgres).await;
    traffic(&app).await;
    backfill_one_batch(&app).await;
    // The backfill's gauges are read in the background every 5 s, not at scrape time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let exported = loop {
        let exported = exported_names(&app.metrics().await);
        if exported.contains("unified_attributes_backfill_updated_timestamp_seconds")
            || std::time::Instant::now() > deadline
        {
            break exported;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let recorded = recorded_names();
    assert!(recorded.len() >= 5, "{recorded:?}");
    let mut checked = 0;
    for (file, text) in monitoring_files() {
        let referenced = referenced_names(&text);
        assert!(referenced.len() >= 3, "{file} names metrics");
        let missing: Vec<&String> = referenced
            .iter()
            .filter(|name| !exported.contains(*name) && !recorded.contains(*name))
            .filter(|name| !ONLY_WITH_REPLICAS.contains(&name.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics the service does not export: {missing:?}"
        );
        checked += referenced.len();
    }
    assert!(checked > 20, "{checked} names checked");
}

/// Stops Prometheus when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The PromQL expressions of the dashboard and the analysis, with their template variables
/// filled in.
fn dashboard_and_analysis_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("k8s/monitoring/unified-attributes-dashboard.json"))
            .expect("dashboard JSON");
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .chain(
            // The annotations (flag changes) are queries too.
            dashboard["annotations"]["list"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        )
        .filter_map(|target| target["expr"].as_str().map(|e| e.replace("$job", ".+")))
        .collect();
    let analysis = read("k8s/rollout/analysistemplate.yaml");
    let query = Regex::new(r"(?s)query: \|\n(.*?)(?:\n    - name:|\z)").expect("regex");
    queries.extend(
        query
            .captures_iter(&analysis)
            .map(|c| c[1].replace("{{args.subset}}", "green")),
    );
    queries
}

#[actix_web::test]
async fn a_real_prometheus_scrapes_the_service_and_answers_every_dashboard_and_analysis_query() {
    let app = spawn_app(Backend::Postgres).await;
    traffic(&app).await;
    backfill_one_batch(&app).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let target = app.address.trim_start_matches("http://");
    let rules = deploy_dir().join("prometheus/rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: unified-attributes\n    static_configs:\n      \
         - targets: ['{target}']\n        labels:\n          version: green\n",
        rules.display()
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("config written");
    let port = free_port();
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is required (Debian package prometheus)");
    let _prometheus = Running(prometheus);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let query = |expr: String| {
        let client = client.clone();
        async move {
            let url = format!("http://127.0.0.1:{port}/api/v1/query");
            let mut response = client
                .get(url)
                .query(&[("query", expr.as_str())])
                .ok()?
                .send()
                .await
                .ok()?;
            response.json::<serde_json::Value>().await.ok()
        }
    };
    let mut requests = 0.0;
    for _ in 0..60 {
        traffic(&app).await;
        if let Some(answer) = query("sum(unified_attributes_requests_total)".into()).await {
            requests = answer["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if requests > 0.0 {
                break;
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(requests > 0.0, "Prometheus scraped the service within 30 s");
    let queries = dashboard_and_analysis_queries();
    assert!(queries.len() > 20, "{} queries", queries.len());
    for expr in queries {
        let answer = query(expr.clone()).await.expect("Prometheus answers");
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
    }
    let mut rules = client
        .get(format!("http://127.0.0.1:{port}/api/v1/rules"))
        .send()
        .await
        .expect("Prometheus answers");
    let rules: serde_json::Value = rules.json().await.expect("JSON");
    let groups = rules["data"]["groups"].as_array().map_or(0, Vec::len);
    assert_eq!(groups, 2, "the recording and alert groups loaded: {rules}");
}

/// A heading's anchor as GitHub and GitLab make it: lower case, punctuation dropped, spaces as
/// hyphens.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_says_its_first_step_and_links_a_runbook_section_that_exists() {
    let runbook = read("RUNBOOK.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|line| {
            line.trim_start_matches('#')
                .strip_prefix(' ')
                .filter(|_| line.starts_with('#'))
        })
        .map(anchor_of)
        .collect();
    let rules = read("prometheus/rules.yml");
    let alert = Regex::new(r"(?m)^\s+- alert: (\S+)$").expect("regex");
    let starts: Vec<(usize, String)> = alert
        .captures_iter(&rules)
        .map(|c| (c.get(0).map_or(0, |m| m.start()), c[1].to_owned()))
        .collect();
    assert!(starts.len() >= 10, "the alerts are found: {starts:?}");
    let first_step = Regex::new(r"description: >-\s+First step: ").expect("regex");
    let link = Regex::new(r"runbook_url: deploy/RUNBOOK\.md#(\S+)").expect("regex");
    for (i, (start, name)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(rules.len(), |(next, _)| *next);
        let block = &rules[*start..end];
        assert!(
            first_step.is_match(block),
            "{name} has no description with its first step"
        );
        let url = link
            .captures(block)
            .unwrap_or_else(|| panic!("{name} has no runbook_url into deploy/RUNBOOK.md"));
        assert!(
            anchors.contains(&url[1]),
            "{name} links #{}, which is no heading of RUNBOOK.md",
            &url[1]
        );
    }
    // Deployed, the links are absolute.
    let deployed = read("k8s/monitoring/prometheusrule.yaml");
    let links: Vec<&str> = deployed
        .lines()
        .filter_map(|line| line.trim().strip_prefix("runbook_url: "))
        .collect();
    assert_eq!(links.len(), starts.len());
    assert!(
        links.iter().all(|link| link.starts_with("https://")),
        "{links:?}"
    );
}
