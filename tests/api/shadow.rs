//! Shadow reads: a mismatch planted straight into the unified table is found and counted.

use std::time::{Duration, Instant};

use crate::common::Backend;
use crate::helpers::{ADMIN_TOKEN, TestApp, WRITER_TOKEN, spawn_app_with};

on_both_backends!(a_mismatch_planted_in_the_unified_table_is_found_counted_and_shown);

const MATCH: &str = "unified_attributes_shadow_comparisons_total{result=\"match\"}";
const MISMATCH: &str = "unified_attributes_shadow_comparisons_total{result=\"mismatch\"}";

async fn wait_for(app: &TestApp, sample: &str) {
    let started = Instant::now();
    while app.metric(sample).await < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{sample} never counted"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_mismatch_planted_in_the_unified_table_is_found_counted_and_shown(backend: Backend) {
    // Phase 1, backfilled and verified; then phase 2 at 100 %, every read shadowed.
    let app = spawn_app_with(
        backend,
        &[
            ("WRITER_API_TOKEN", WRITER_TOKEN),
            ("ADMIN_API_TOKEN", ADMIN_TOKEN),
            ("DUAL_WRITE_ATTRIBUTES", "true"),
        ],
    )
    .await;
    crate::common::backfill_and_verify(&app.db.storage().await).await;
    let canary = app
        .json(
            "PUT",
            "/api/v2/admin/attributes/feature-status",
            r#"{"use_unified": true, "unified_percent": 100, "fallback": true, "shadow_percent": 100}"#,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(canary.status, 200, "{}", canary.body);
    let path = "/api/v2/marketplace/listings/6/attributes";
    let written = app
        .put_json(
            path,
            r#"{"year": 2010, "color": ["red", "blue"]}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(written.status, 200, "{}", written.body);
    assert_eq!(app.get(path).await.status, 200);
    wait_for(&app, MATCH).await;
    assert_eq!(
        app.metric(MISMATCH).await,
        0.0,
        "both stores agree after a dual-write"
    );

    app.db.raw().await.execute("UPDATE unified_attribute_values SET numeric_value = 1999 WHERE entity_id = 6 AND attribute_id = 2202").await;
    assert_eq!(app.get(path).await.status, 200);
    wait_for(&app, MISMATCH).await;
    let diffs = app
        .get_as(
            "/api/v2/admin/attributes/shadow-diffs",
            ("Authorization", &format!("Bearer {ADMIN_TOKEN}")),
        )
        .await;
    assert_eq!(diffs.status, 200, "{}", diffs.body);
    let first = &diffs.body["data"][0];
    assert_eq!(
        (first["entity_type"].as_str(), first["entity_id"].as_i64()),
        (Some("listing"), Some(6))
    );
    assert_eq!(
        first["differences"][0],
        serde_json::json!(["year", "2010", "1999"])
    );
    app.get("/api/v2/admin/attributes/shadow-diffs")
        .await
        .assert_error(401, "errors.unauthorized");
}
