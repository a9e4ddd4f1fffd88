//! HTTP-level tests: the real service on port 0, over PostgreSQL and over SQLite.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

/// Runs each named test against a service on each backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[actix_web::test]
            async fn $name() {
                super::$name(super::Backend::Postgres).await
            })*
        }
        mod sqlite {
            $(#[actix_web::test]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await
            })*
        }
    };
}

mod admin;
mod adoption;
mod caching;
mod catalog;
mod categories;
mod changes;
mod drill;
mod faults;
mod hostile;
mod legacy_contract;
mod monitoring;
mod observability;
mod resolution;
mod runtime_flags;
mod scale_out;
mod shadow;
mod users;
mod values;

use common::Backend;
use helpers::{ADMIN_TOKEN, WRITER_TOKEN, spawn_app, spawn_app_with};
use serde_json::{Value as Json, json};

on_both_backends!(
    health_probes_answer_when_the_database_is_migrated,
    a_leaf_category_lists_attributes_bound_on_its_ancestors_in_the_requested_language,
    listing_values_carry_their_code_and_typed_value,
    a_put_with_the_writer_token_replaces_the_listing_values,
    writes_without_a_valid_token_are_refused_and_change_nothing,
    writes_are_refused_when_no_token_is_configured,
    bad_input_gets_a_4xx_with_an_i18n_key_and_changes_nothing,
    refused_values_name_each_field_and_change_nothing,
    unknown_ids_routes_and_methods_answer_in_the_error_contract,
    the_flags_route_reads_and_writes_to_the_stores_of_their_phase,
    unsafe_or_malformed_flags_stop_start_up,
    a_nul_character_anywhere_in_the_url_is_a_400_never_a_500,
    a_value_the_database_refuses_is_a_422_never_a_500,
);

/// A value every check before the database lets through and the database refuses (here a
/// trigger of the marketplace's) is the client's: 422 `errors.invalidInput`, nothing written.
async fn a_value_the_database_refuses_is_a_422_never_a_500(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    let before = app.listing_values(CAR_LISTING).await;
    let raw = app.db.raw().await;
    raw.refuse_inserts_into(
        "listing_attribute_values",
        "NEW.attribute_id = (SELECT id FROM category_attributes WHERE name = 'year')",
        "no 1999 here",
    )
    .await;
    let refused = app
        .json("PATCH", &path, r#"{"year": 1999}"#, Some(WRITER_TOKEN))
        .await;
    refused.assert_error(422, "errors.invalidInput");
    assert!(
        !refused.body["detail"].to_string().contains("no 1999 here"),
        "the database's words stay in the log: {}",
        refused.body
    );
    assert_eq!(
        app.listing_values(CAR_LISTING).await,
        before,
        "nothing written"
    );
    raw.stop_refusing_inserts_into("listing_attribute_values")
        .await;
    let accepted = app
        .json("PATCH", &path, r#"{"year": 2001}"#, Some(WRITER_TOKEN))
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
}

/// A car listing of the demo data (category 1311, electric sedans: year is required).
const CAR_LISTING: i64 = 6;

fn codes(body: &Json) -> Vec<String> {
    body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| a["code"].as_str().expect("code").to_owned())
        .collect()
}

async fn health_probes_answer_when_the_database_is_migrated(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.get("/health/live").await.status, 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["status"], "ready");
}

async fn a_leaf_category_lists_attributes_bound_on_its_ancestors_in_the_requested_language(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let reply = app
        .get("/api/v2/marketplace/categories/1311/attributes?lang=en")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["success"], true);
    assert_eq!(reply.header("X-Attributes-Source"), Some("legacy"));
    let codes = codes(&reply.body);
    for inherited in ["condition", "car_make", "year", "mileage", "transmission"] {
        assert!(
            codes.contains(&inherited.to_owned()),
            "{inherited} missing: {codes:?}"
        );
    }
    assert!(
        !codes.contains(&"fuel_type".to_owned()),
        "disabled on 1311: {codes:?}"
    );
    let year = reply.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["code"] == "year")
        .expect("year")
        .clone();
    assert_eq!(
        (
            year["display_name"].clone(),
            year["bound_on"].clone(),
            year["is_required"].clone()
        ),
        (json!("Year"), json!(1301), json!(true))
    );
    assert_eq!(year["validation_rules"], json!({"min": 1950, "max": 2026}));

    let russian = app
        .get_as(
            "/api/v2/marketplace/categories/1311/attributes",
            ("Accept-Language", "ru-RU,ru;q=0.9"),
        )
        .await;
    let year = russian.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["code"] == "year")
        .expect("year")
        .clone();
    assert_eq!(year["display_name"], "Год выпуска");
}

async fn listing_values_carry_their_code_and_typed_value(backend: Backend) {
    let app = spawn_app(backend).await;
    let values = app.listing_values(CAR_LISTING).await;
    let values = values.as_array().expect("a list");
    assert!(!values.is_empty());
    for value in values {
        assert!(
            value["code"].is_string() && !value["value"].is_null(),
            "{value}"
        );
    }
    let year = values
        .iter()
        .find(|v| v["code"] == "year")
        .expect("cars have a year");
    assert!(year["value"].is_number(), "typed, not text: {year}");
}

async fn a_put_with_the_writer_token_replaces_the_listing_values(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    let body = r#"{"year": 2019, "car_make": "tesla", "color": ["red", "black"],
                   "mileage": {"value": 45000.5, "unit": "km"}, "first_registration": "2019-03-01"}"#;
    let reply = app.put_json(&path, body, Some(WRITER_TOKEN)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let expected = json!([
        {"code": "car_make", "value": "tesla"},
        {"code": "color", "value": ["red", "black"]},
        {"code": "first_registration", "value": "2019-03-01"},
        {"code": "mileage", "value": 45000.5, "unit": "km"},
        {"code": "year", "value": 2019},
    ]);
    assert_eq!(reply.body["data"]["values"], expected);
    assert_eq!(app.listing_values(CAR_LISTING).await, expected);
    // Phase 0 writes legacy only.
    let raw = app.db.raw().await;
    assert_eq!(
        raw.count(&format!(
            "SELECT COUNT(*) FROM listing_attribute_values WHERE listing_id = {CAR_LISTING}"
        ))
        .await,
        5
    );
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM unified_attribute_values")
            .await,
        0
    );
}

async fn writes_without_a_valid_token_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    let before = app.listing_values(CAR_LISTING).await;
    for token in [None, Some("wrong-token"), Some("")] {
        app.put_json(&path, r#"{"year": 2020}"#, token)
            .await
            .assert_error(401, "errors.unauthorized");
    }
    let basic = app
        .send(
            app.client
                .put(format!("{}{path}", app.address))
                .insert_header(("Content-Type", "application/json"))
                .insert_header(("Authorization", format!("Basic {WRITER_TOKEN}"))),
            Some(r#"{"year": 2020}"#.into()),
        )
        .await;
    basic.assert_error(401, "errors.unauthorized");
    assert_eq!(app.listing_values(CAR_LISTING).await, before);
}

async fn writes_are_refused_when_no_token_is_configured(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let path = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    app.put_json(&path, r#"{"year": 2020}"#, Some(""))
        .await
        .assert_error(401, "errors.unauthorized");
    app.put_json(&path, r#"{"year": 2020}"#, Some("anything"))
        .await
        .assert_error(401, "errors.unauthorized");
}

async fn bad_input_gets_a_4xx_with_an_i18n_key_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    let before = app.listing_values(CAR_LISTING).await;

    app.get("/api/v2/marketplace/categories/abc/attributes")
        .await
        .assert_error(400, "errors.invalidCategoryId");
    app.get("/api/v2/marketplace/categories/-4/attributes")
        .await
        .assert_error(400, "errors.invalidCategoryId");
    app.get("/api/v2/marketplace/listings/1e3/attributes")
        .await
        .assert_error(400, "errors.invalidListingId");
    app.put_json(
        "/api/v2/marketplace/listings/x/attributes",
        r#"{"year": 2020}"#,
        Some(WRITER_TOKEN),
    )
    .await
    .assert_error(400, "errors.invalidListingId");
    app.put_json(&path, r#"{"year": 20"#, Some(WRITER_TOKEN))
        .await
        .assert_error(400, "errors.malformedJson");
    app.put_json(&path, r#"[{"year": 2020}]"#, Some(WRITER_TOKEN))
        .await
        .assert_error(422, "errors.expectedObject");
    let oversized = format!(
        r#"{{"heating_notes": "{}"}}"#,
        "x".repeat(api::MAX_BODY_BYTES)
    );
    app.put_json(&path, &oversized, Some(WRITER_TOKEN))
        .await
        .assert_error(413, "errors.payloadTooLarge");
    let wrong_type = app
        .send(
            app.client
                .put(format!("{}{path}", app.address))
                .insert_header(("Content-Type", "text/plain"))
                .insert_header(("Authorization", format!("Bearer {WRITER_TOKEN}"))),
            Some(r#"{"year": 2020}"#.into()),
        )
        .await;
    wrong_type.assert_error(415, "errors.unsupportedContentType");
    assert_eq!(app.listing_values(CAR_LISTING).await, before);
}

async fn refused_values_name_each_field_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    let before = app.listing_values(CAR_LISTING).await;
    let cases = [
        (
            r#"{"year": 2020, "horsepower": 300}"#,
            "horsepower",
            "errors.unknownAttribute",
        ),
        (
            r#"{"year": "twenty twenty"}"#,
            "year",
            "errors.invalidValueType",
        ),
        (r#"{"year": true}"#, "year", "errors.invalidValueType"),
        (r#"{"year": 1949}"#, "year", "errors.valueBelowMinimum"),
        (r#"{"year": 2027}"#, "year", "errors.valueAboveMaximum"),
        (
            // A spelling no option explains (`Automatic` would be stored as `automatic`).
            r#"{"year": 2020, "transmission": "poluautomatik"}"#,
            "transmission",
            "errors.optionNotAllowed",
        ),
        (
            r#"{"year": 2020, "color": ["red", "green"]}"#,
            "color",
            "errors.optionNotAllowed",
        ),
        (
            r#"{"year": 2020, "vin": "not-a-vin"}"#,
            "vin",
            "errors.valuePatternMismatch",
        ),
        (
            r#"{"car_make": "bmw"}"#,
            "year",
            "errors.requiredAttributeMissing",
        ),
        // PostgreSQL stores no NUL character; SQLite would, and must refuse it alike.
        (
            r#"{"year": 2020, "vin": "5YJ3E1EA7KF31\u00007000"}"#,
            "vin",
            "errors.nulCharacter",
        ),
        // Dates one of the stores cannot hold: PostgreSQL refused them once they reached
        // unified (a 500), and in legacy they stopped every backfill.
        (
            r#"{"year": 2020, "first_registration": "-0001-01-01"}"#,
            "first_registration",
            "errors.dateOutOfRange",
        ),
        (
            r#"{"year": 2020, "first_registration": "0000-01-01"}"#,
            "first_registration",
            "errors.dateOutOfRange",
        ),
        (
            r#"{"year": 2020, "first_registration": "+10000-01-01"}"#,
            "first_registration",
            "errors.dateOutOfRange",
        ),
        (
            r#"{"year": 2020, "first_registration": "-4713-11-24"}"#,
            "first_registration",
            "errors.dateOutOfRange",
        ),
    ];
    for (body, field, key) in cases {
        let reply = app.put_json(&path, body, Some(WRITER_TOKEN)).await;
        reply.assert_error(422, "errors.validationFailed");
        let fields = reply.body["fields"].as_array().expect("field errors");
        assert!(
            fields
                .iter()
                .any(|f| f["field"] == field && f["key"] == key && f["reason"].is_string()),
            "{body}: {}",
            reply.body
        );
    }
    assert_eq!(app.listing_values(CAR_LISTING).await, before);
}

async fn unknown_ids_routes_and_methods_answer_in_the_error_contract(backend: Backend) {
    let app = spawn_app(backend).await;
    app.get("/api/v2/marketplace/categories/424242/attributes")
        .await
        .assert_error(404, "errors.categoryNotFound");
    app.get("/api/v2/marketplace/listings/424242/attributes")
        .await
        .assert_error(404, "errors.listingNotFound");
    app.put_json(
        "/api/v2/marketplace/listings/424242/attributes",
        r#"{"year": 2020}"#,
        Some(WRITER_TOKEN),
    )
    .await
    .assert_error(404, "errors.listingNotFound");
    app.get("/api/v2/no/such/route")
        .await
        .assert_error(404, "errors.routeNotFound");
    let delete = app
        .send(
            app.client.delete(format!(
                "{}/api/v2/marketplace/categories/1311/attributes",
                app.address
            )),
            None,
        )
        .await;
    delete.assert_error(405, "errors.methodNotAllowed");
}

async fn the_flags_route_reads_and_writes_to_the_stores_of_their_phase(backend: Backend) {
    // Phase 1: dual-write; reads stay on legacy.
    let app = spawn_app_with(
        backend,
        &[
            ("WRITER_API_TOKEN", WRITER_TOKEN),
            ("DUAL_WRITE_ATTRIBUTES", "true"),
        ],
    )
    .await;
    let path = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    let reply = app
        .put_json(
            &path,
            r#"{"year": 2011, "car_make": "audi"}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let raw = app.db.raw().await;
    let where_listing = format!("WHERE listing_id = {CAR_LISTING}");
    assert_eq!(
        raw.count(&format!(
            "SELECT COUNT(*) FROM listing_attribute_values {where_listing}"
        ))
        .await,
        2
    );
    assert_eq!(
        raw.count(&format!("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'listing' AND entity_id = {CAR_LISTING}")).await,
        2
    );
    assert_eq!(
        app.get(&path).await.header("X-Attributes-Source"),
        Some("legacy")
    );
}

async fn unsafe_or_malformed_flags_stop_start_up(backend: Backend) {
    let db = common::TestDb::fresh(backend).await;
    let unsafe_flags = helpers::settings_for(
        &db,
        &[
            ("USE_UNIFIED_ATTRIBUTES", "true"),
            ("UNIFIED_ATTRIBUTES_PERCENT", "50"),
        ],
    );
    let err = api::Application::build(&unsafe_flags)
        .await
        .expect_err("dual-write off at 50 % must not start");
    assert!(
        err.to_string()
            .contains("dual_write_off_while_legacy_serves_reads"),
        "{err}"
    );
    let malformed = helpers::settings_for(&db, &[("USE_UNIFIED_ATTRIBUTES", "yes please")]);
    let err = api::Application::build(&malformed)
        .await
        .expect_err("a sentence is not a flag");
    assert!(err.to_string().contains("USE_UNIFIED_ATTRIBUTES"), "{err}");
}

/// A write queued behind a row lock that another session holds answers 503 with `Retry-After`
/// once the lock timeout passes, and changes nothing; the same write succeeds afterwards.
#[actix_web::test]
async fn a_write_behind_a_held_lock_answers_503_with_retry_after() {
    let db = common::TestDb::fresh(Backend::Postgres).await;
    let mut settings = helpers::settings_for(&db, &[("WRITER_API_TOKEN", WRITER_TOKEN)]);
    // Long enough for a loaded machine, far shorter than the default (and than any test timeout).
    settings.database.lock_timeout_ms = 300;
    let app = helpers::TestApp {
        address: helpers::start(&settings).await,
        db,
        client: awc::Client::default(),
    };
    let path = format!("/api/v2/marketplace/listings/{CAR_LISTING}/attributes");
    let holder = sqlx::PgPool::connect(&app.db.sql_url())
        .await
        .expect("holder");
    let mut held = holder.begin().await.expect("begin");
    sqlx::query(&format!(
        "SELECT id FROM marketplace_listings WHERE id = {CAR_LISTING} FOR UPDATE"
    ))
    .execute(&mut *held)
    .await
    .expect("lock");
    // The lock is released only after the answer: an answer proves the write gave up waiting.
    let busy = app
        .json("PATCH", &path, r#"{"year": 2018}"#, Some(WRITER_TOKEN))
        .await;
    busy.assert_error(503, "errors.storageUnavailable");
    assert_eq!(busy.header("Retry-After"), Some("1"));
    held.rollback().await.expect("release");
    let written = app
        .json("PATCH", &path, r#"{"year": 2018}"#, Some(WRITER_TOKEN))
        .await;
    assert_eq!(written.status, 200, "{}", written.body);
}

/// `%00` reached PostgreSQL as a parameter and answered 500 (22021), unauthenticated: now every
/// route refuses it with 400 before a handler runs, in the path or the query, with or without
/// credentials.
async fn a_nul_character_anywhere_in_the_url_is_a_400_never_a_500(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/api/v1/marketplace/categories/%00/variant-attributes",
        "/api/v1/marketplace/categories/cars%00/attributes",
        "/api/v2/marketplace/categories/13%0011/attributes",
        "/api/v2/marketplace/listings/attributes?ids=1,%00",
        "/api/v2/admin/attributes/quarantine?attribute=%00",
        "/api/v2/admin/attributes/quarantine?attribute=year%00",
        "/api/v2/attributes?search=%00",
    ] {
        let reply = app.get(path).await;
        reply.assert_error(400, "errors.invalidUrl");
        let with_token = app
            .get_as(path, ("Authorization", &format!("Bearer {ADMIN_TOKEN}")))
            .await;
        with_token.assert_error(400, "errors.invalidUrl");
    }
    // The same routes without the NUL still answer as before.
    let fine = app
        .get_as(
            "/api/v2/admin/attributes/quarantine?attribute=year",
            ("Authorization", &format!("Bearer {ADMIN_TOKEN}")),
        )
        .await;
    assert_eq!(fine.status, 200, "{}", fine.body);
}
