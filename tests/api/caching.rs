//! HTTP caching and the response cache: validators, query counts, invalidation by writes,
//! and invalidation across two service processes on one PostgreSQL database.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::Backend;
use crate::helpers::{ADMIN_TOKEN, WRITER_TOKEN, spawn_app, spawn_replica};

on_both_backends!(
    reads_carry_a_validator_and_answer_304_when_it_matches,
    a_cached_read_sends_no_query_and_a_miss_sends_one,
    a_write_drops_exactly_the_cached_entity,
);

const QUERIES: &str = "unified_attributes_db_queries_total";

async fn reads_carry_a_validator_and_answer_304_when_it_matches(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/api/v2/marketplace/categories/1311/attributes",
        "/api/v2/marketplace/listings/6/attributes",
    ] {
        let first = app.get(path).await;
        let etag = first.header("ETag").expect("an ETag").to_owned();
        assert!(
            first
                .header("Cache-Control")
                .is_some_and(|c| c.starts_with("public")),
            "{path}"
        );
        assert!(
            first
                .header("Vary")
                .is_some_and(|v| v.contains("Accept-Language")),
            "{path}"
        );
        let again = app.get_as(path, ("If-None-Match", &etag)).await;
        assert_eq!(again.status, 304, "{path}");
        assert_eq!(again.header("ETag"), Some(etag.as_str()));
        let stale = app
            .get_as(path, ("If-None-Match", "\"something-else\""))
            .await;
        assert_eq!(stale.status, 200, "{path}");
    }
    let english = app
        .get("/api/v2/marketplace/categories/1311/attributes?lang=en")
        .await;
    let serbian = app
        .get("/api/v2/marketplace/categories/1311/attributes?lang=sr")
        .await;
    assert_ne!(
        english.header("ETag"),
        serbian.header("ETag"),
        "each language is its own representation"
    );
}

async fn a_cached_read_sends_no_query_and_a_miss_sends_one(backend: Backend) {
    let app = spawn_app(backend).await;
    // Values read from legacy are checked against the legacy definitions, which are loaded once
    // and cached whole (until an attribute changes): one read loads them.
    assert_eq!(
        app.get("/api/v2/marketplace/listings/60/attributes")
            .await
            .status,
        200
    );
    for path in [
        "/api/v2/marketplace/categories/1311/attributes",
        "/api/v2/marketplace/listings/6/attributes",
        "/api/v2/marketplace/listings/attributes?ids=1,2,3,4,5",
    ] {
        let before = app.metric(QUERIES).await;
        assert_eq!(app.get(path).await.status, 200);
        let after_miss = app.metric(QUERIES).await;
        assert_eq!(after_miss - before, 1.0, "a miss on {path} sends one query");
        for _ in 0..3 {
            assert_eq!(app.get(path).await.status, 200);
        }
        assert_eq!(
            app.metric(QUERIES).await - after_miss,
            0.0,
            "hits on {path} send none"
        );
    }
}

async fn a_write_drops_exactly_the_cached_entity(backend: Backend) {
    let app = spawn_app(backend).await;
    let six = "/api/v2/marketplace/listings/6/attributes";
    let seven_before = app.listing_values(7).await;
    app.listing_values(6).await;
    let reply = app
        .put_json(
            six,
            r#"{"year": 2003, "car_make": "yugo"}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        app.listing_values(6).await,
        json!([{"code": "car_make", "value": "yugo"}, {"code": "year", "value": 2003}])
    );
    let queries = app.metric(QUERIES).await;
    assert_eq!(app.listing_values(7).await, seven_before);
    assert_eq!(
        app.metric(QUERIES).await,
        queries,
        "listing 7 stayed cached"
    );
}

#[actix_web::test]
async fn a_write_through_one_process_reaches_the_cached_reads_of_another_within_a_second() {
    let first = spawn_app(Backend::Postgres).await;
    let second = spawn_replica(
        &first,
        &[
            ("WRITER_API_TOKEN", WRITER_TOKEN),
            ("ADMIN_API_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    let path = "/api/v2/marketplace/listings/6/attributes";
    let before = second.listing_values(6).await;
    assert_eq!(
        second.listing_values(6).await,
        before,
        "cached on the second process"
    );

    let reply = first
        .put_json(
            path,
            r#"{"year": 1999, "car_make": "bmw"}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let expected = json!([{"code": "car_make", "value": "bmw"}, {"code": "year", "value": 1999}]);
    let written = Instant::now();
    while second.listing_values(6).await != expected {
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "the second process still serves the old values"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }

    // A definition change travels too: the second process's cached schema of an inheriting
    // category shows the new label.
    let label = |body: &serde_json::Value| {
        body["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|a| a["code"] == "mileage")
            .map(|a| a["display_name"].clone())
    };
    let schema = "/api/v2/marketplace/categories/1311/attributes?lang=en";
    assert_eq!(
        label(&second.get(schema).await.body),
        Some(json!("Mileage"))
    );
    let mileage = json!({"code": "mileage", "type": "number", "display_name": {"sr": "Kilometraža", "en": "Odometer"},
                         "validation_rules": {"min": 0, "max": 2000000}, "ui": {"icon": "km"}});
    let reply = first
        .json(
            "PUT",
            "/api/v2/admin/attributes/2203",
            &mileage.to_string(),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let changed = Instant::now();
    while label(&second.get(schema).await.body) != Some(json!("Odometer")) {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the second process still shows the old label"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}
