//! The marketplace's 2025-08 database (tests/fixtures/legacy_2025_08) walked over HTTP: the
//! service starts on the old schema in dual-write, the backfill and a clean verify follow, v1
//! and v2 answer the same attributes for every category; then the quarantine is resolved
//! through the admin API (an alias, an option, a move — each audited), a write spelled as the
//! alias is accepted, `--retry-quarantine` leaves fewer quarantined, verify stays clean, and
//! with unified reads on both versions still answer the same attributes and values.

use std::collections::BTreeMap;

use domain::EntityKind;
use serde_json::{Value as Json, json};

use crate::common::{Backend, TestDb, backfill_and_verify};
use crate::helpers::{ADMIN_TOKEN, Reply, TestApp, WRITER_TOKEN, settings_for, start};

const SCHEMA: &str = include_str!("../fixtures/legacy_2025_08/schema.sql");
const DATA: &str = include_str!("../fixtures/legacy_2025_08/data.sql");
const CATEGORIES: [i64; 3] = [1003, 1301, 1302];
const LISTINGS: [i64; 3] = [100, 101, 102];

/// Each attribute of a category as `code → option values`, from v1 (`name`) or v2 (`code`).
async fn attributes(app: &TestApp, version: &str, category: i64) -> BTreeMap<String, Vec<Json>> {
    let reply = app
        .get(&format!(
            "/api/{version}/marketplace/categories/{category}/attributes"
        ))
        .await;
    assert_eq!(reply.status, 200, "{version} {category}: {}", reply.body);
    let key = if version == "v1" { "name" } else { "code" };
    reply.body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| {
            let options = a["options"].as_array().cloned().unwrap_or_default();
            let values = options.iter().map(|o| o["value"].clone()).collect();
            (a[key].as_str().expect("a code").to_owned(), values)
        })
        .collect()
}

/// v1 and v2 answer the same attributes, with the same options, for every category.
async fn both_versions_agree(app: &TestApp) -> BTreeMap<i64, BTreeMap<String, Vec<Json>>> {
    let mut answers = BTreeMap::new();
    for category in CATEGORIES {
        let v1 = attributes(app, "v1", category).await;
        let v2 = attributes(app, "v2", category).await;
        assert_eq!(v1, v2, "category {category}");
        answers.insert(category, v2);
    }
    answers
}

async fn admin(app: &TestApp, method: &str, path: &str, body: Json) -> Reply {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")))
        .insert_header(("X-Actor", "ops-on-call"));
    app.send(request, Some(body.to_string())).await
}

/// The service on the marketplace's database as it is, in dual-write, without demo data.
async fn serve_in_dual_write(db: &TestDb) -> TestApp {
    let mut settings = settings_for(
        db,
        &[
            ("WRITER_API_TOKEN", WRITER_TOKEN),
            ("ADMIN_API_TOKEN", ADMIN_TOKEN),
            ("DUAL_WRITE_ATTRIBUTES", "true"),
        ],
    );
    settings.demo.seed_on_first_start = Some(false);
    TestApp {
        address: start(&settings).await,
        db: db.share(),
        client: awc::Client::default(),
    }
}

/// Quarantined listing values by reason, from the admin API.
async fn listing_quarantine(app: &TestApp) -> BTreeMap<String, i64> {
    let reply = admin(
        app,
        "GET",
        "/api/v2/admin/attributes/quarantine",
        Json::Null,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut by_reason = BTreeMap::new();
    for group in reply.body["data"]["groups"].as_array().expect("groups") {
        if group["entity_type"] == "listing" {
            *by_reason
                .entry(format!("{} {}", group["attribute_code"], group["reason"]))
                .or_default() += group["count"].as_i64().expect("count");
        }
    }
    by_reason
}

#[actix_web::test]
async fn the_2025_08_database_walks_to_unified_reads_with_its_quarantine_resolved_over_http() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA).await;
    raw.execute(DATA).await;
    let app = serve_in_dual_write(&db).await;
    let storage = db.storage().await;
    backfill_and_verify(&storage).await;
    let phase_1 = both_versions_agree(&app).await;
    assert!(phase_1[&1302].contains_key("year") && phase_1[&1301].contains_key("car_make"));

    let before = listing_quarantine(&app).await;
    assert_eq!(before.values().sum::<i64>(), 4, "{before:?}");

    // Refusals: no token, an option that does not exist, a spelling that means another option.
    let no_token = app
        .json(
            "POST",
            "/api/v2/admin/attributes/quarantine/aliases",
            r#"{"attribute": "condition", "alias": "БУ", "option": "used"}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    no_token.assert_error(401, "errors.unauthorized");
    let aliases = "/api/v2/admin/attributes/quarantine/aliases";
    admin(
        &app,
        "POST",
        aliases,
        json!({"attribute": "condition", "alias": "БУ", "option": "rabljeno"}),
    )
    .await
    .assert_error(422, "errors.validationFailed");
    admin(
        &app,
        "POST",
        aliases,
        json!({"attribute": "condition", "alias": "novo", "option": "used"}),
    )
    .await
    .assert_error(409, "errors.conflict");
    admin(
        &app,
        "POST",
        aliases,
        json!({"attribute": "nope", "alias": "x", "option": "y"}),
    )
    .await
    .assert_error(422, "errors.validationFailed");

    let alias = admin(
        &app,
        "POST",
        aliases,
        json!({"attribute": "condition", "alias": "БУ", "option": "used"}),
    )
    .await;
    assert_eq!(alias.status, 201, "{}", alias.body);
    let option = admin(
        &app,
        "POST",
        "/api/v2/admin/attributes/quarantine/options",
        json!({"attribute": "car_make", "value": "volkswagen", "label": {"sr": "Volkswagen"}}),
    )
    .await;
    assert_eq!(option.status, 201, "{}", option.body);
    let moved = admin(
        &app,
        "POST",
        "/api/v2/admin/attributes/quarantine/moves",
        json!({"from": "brand", "to": "car_make", "raw_value": " VOLKSWAGEN"}),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.body["data"]["moved"], json!([100]));
    // The option reached both stores: both versions list it.
    let resolved = both_versions_agree(&app).await;
    assert!(
        resolved[&1301]["car_make"].contains(&json!("volkswagen")),
        "{resolved:?}"
    );

    // A dual-write spelled as the alias is stored as the option it means.
    let written = app
        .json(
            "PATCH",
            "/api/v2/marketplace/listings/101/attributes",
            r#"{"condition": "бу"}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(written.status, 200, "{}", written.body);

    // backfill --retry-quarantine, then verify.
    let catalog = storage.backfill_catalog().await.expect("catalog");
    let mut after = 0;
    while let (Some(last), _, _) = storage
        .retry_quarantined(EntityKind::Listing, after, 10, &catalog)
        .await
        .expect("retry")
    {
        after = last;
    }
    let verified = storage.verify(50, |_| {}).await.expect("verify");
    assert!(verified.is_clean(), "{:?}", verified.drift);
    let left = listing_quarantine(&app).await;
    assert_eq!(left.values().sum::<i64>(), 2, "{left:?}");
    assert!(
        left.keys()
            .all(|k| k.starts_with("\"year\"") || k.contains("does not exist")),
        "only the year below 1950 and the orphan stay: {left:?}"
    );

    let history = admin(
        &app,
        "GET",
        "/api/v2/admin/attributes/quarantine/resolutions",
        Json::Null,
    )
    .await;
    assert_eq!(history.status, 200, "{}", history.body);
    let actions: Vec<(String, String)> = history.body["data"]
        .as_array()
        .expect("resolutions")
        .iter()
        .map(|r| {
            assert_eq!(r["resolved_by"], "admin-api (claims: ops-on-call)");
            (
                r["action"].as_str().unwrap_or_default().to_owned(),
                r["attribute_code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("move", "brand"),
            ("option", "car_make"),
            ("alias", "condition")
        ]
        .map(|(a, c)| (a.to_owned(), c.to_owned())),
    );

    // Undo over HTTP: an unknown resolution is 404; the alias values were migrated through, 409.
    let alias_id = history.body["data"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["action"] == "alias"))
        .and_then(|r| r["id"].as_i64())
        .expect("the alias's id");
    admin(
        &app,
        "POST",
        "/api/v2/admin/attributes/quarantine/resolutions/999999/undo",
        Json::Null,
    )
    .await
    .assert_error(404, "errors.notFound");
    admin(
        &app,
        "POST",
        &format!("/api/v2/admin/attributes/quarantine/resolutions/{alias_id}/undo"),
        Json::Null,
    )
    .await
    .assert_error(409, "errors.conflict");

    // Legacy reads of the listings, then unified reads: the same values.
    let mut legacy_reads = Vec::new();
    for listing in LISTINGS {
        legacy_reads.push(app.listing_values(listing).await);
    }
    assert!(
        legacy_reads[2]
            .as_array()
            .expect("values")
            .contains(&json!({"code": "condition", "value": "used"})),
        "`БУ` in legacy reads as the option its alias names: {}",
        legacy_reads[2]
    );
    // Unified reads without fallback would hide the year users see: refused, with the count.
    let features = "/api/v2/admin/attributes/feature-status";
    let unified_reads = json!({"use_unified": true, "unified_percent": 100, "fallback": false});
    let refused = admin(&app, "PUT", features, unified_reads.clone()).await;
    refused.assert_error(409, "errors.guardrailViolation");
    assert_eq!(
        refused.body["rule"],
        "unified_reads_hide_quarantined_values"
    );
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("year (invalid) 1")),
        "{}",
        refused.body
    );
    // A canary with fallback: listing 100 answers from legacy, its year included.
    let canary = admin(
        &app,
        "PUT",
        features,
        json!({"use_unified": true, "unified_percent": 100, "fallback": true}),
    )
    .await;
    assert_eq!(canary.status, 200, "{}", canary.body);
    let reply = app.get("/api/v2/marketplace/listings/100/attributes").await;
    assert_eq!(
        reply.header("X-Attributes-Source"),
        Some("fallback_quarantined")
    );
    assert!(
        reply.body["data"]["values"]
            .as_array()
            .expect("values")
            .iter()
            .any(|v| v["code"] == "year"),
        "{}",
        reply.body
    );
    // A move that matches nothing names what there is, and records nothing.
    let nothing = admin(
        &app,
        "POST",
        "/api/v2/admin/attributes/quarantine/moves",
        json!({"from": "year", "to": "brand", "raw_value": "2999"}),
    )
    .await;
    nothing.assert_error(409, "errors.conflict");
    assert!(
        nothing.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(": 1")),
        "{}",
        nothing.body
    );
    let acceptances = "/api/v2/admin/attributes/quarantine/acceptances";
    let accepted = admin(
        &app,
        "POST",
        acceptances,
        json!({"attribute": "year", "note": "not a year"}),
    )
    .await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    assert_eq!(accepted.body["data"]["affected"], 1);
    let again = admin(&app, "POST", acceptances, json!({"attribute": "year"})).await;
    assert_eq!(
        again.status, 200,
        "a repeat changes nothing: {}",
        again.body
    );
    assert_eq!(again.body["data"]["id"], accepted.body["data"]["id"]);
    admin(&app, "POST", acceptances, json!({}))
        .await
        .assert_error(409, "errors.conflict");
    admin(
        &app,
        "POST",
        acceptances,
        json!({"attribute": "y".repeat(200)}),
    )
    .await
    .assert_error(422, "errors.validationFailed");
    let documents = admin(&app, "POST", acceptances, json!({"reason": "unreadable"})).await;
    assert_eq!(documents.status, 201, "{}", documents.body);
    let flipped = admin(&app, "PUT", features, unified_reads).await;
    assert_eq!(flipped.status, 200, "{}", flipped.body);
    assert_eq!(
        both_versions_agree(&app).await,
        resolved,
        "the same attributes from unified"
    );
    for (listing, legacy) in LISTINGS.into_iter().zip(legacy_reads) {
        let reply = app
            .get(&format!(
                "/api/v2/marketplace/listings/{listing}/attributes"
            ))
            .await;
        assert_eq!(reply.header("X-Attributes-Source"), Some("unified"));
        // Legacy serves the quarantined year (1, below 1950) as stored; unified holds what
        // passed, and the quarantine the rest.
        let mut expected = legacy.as_array().expect("values").clone();
        expected.retain(|v| !(listing == 100 && v["code"] == "year"));
        assert_eq!(
            reply.body["data"]["values"],
            Json::Array(expected),
            "listing {listing}"
        );
    }
}

/// Defects at their real proportions (about a third of what users see is quarantined).
const PROPORTIONS: &str = include_str!("../fixtures/legacy_2025_08/proportions.sql");

/// A listing's values over v2 as `code → value`, and the store that answered.
async fn values_over_http(app: &TestApp, listing: i64) -> (BTreeMap<String, Json>, String) {
    let reply = app
        .get(&format!(
            "/api/v2/marketplace/listings/{listing}/attributes"
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let values = reply.body["data"]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| {
            (
                v["code"].as_str().expect("code").to_owned(),
                v["value"].clone(),
            )
        })
        .collect();
    let source = reply
        .header("X-Attributes-Source")
        .unwrap_or_default()
        .to_owned();
    (values, source)
}

/// Over HTTP at the real proportions: what users see in legacy reads, a canary with fallback
/// shows whole; unified reads without fallback are refused until the quarantine is settled;
/// after the resolutions and the acceptances every value users saw answers from unified except
/// the accepted ones.
#[actix_web::test]
async fn at_the_real_proportions_no_value_users_saw_goes_missing_over_http() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA).await;
    raw.execute(DATA).await;
    raw.execute(PROPORTIONS).await;
    let app = serve_in_dual_write(&db).await;
    let storage = db.storage().await;
    backfill_and_verify(&storage).await;
    let listings: Vec<i64> = (100..=102).chain(110..=119).collect();
    let mut legacy = BTreeMap::new();
    for &listing in &listings {
        legacy.insert(listing, values_over_http(&app, listing).await.0);
    }
    let features = "/api/v2/admin/attributes/feature-status";
    admin(
        &app,
        "PUT",
        features,
        json!({"use_unified": true, "unified_percent": 100, "fallback": false}),
    )
    .await
    .assert_error(409, "errors.guardrailViolation");
    let canary = admin(
        &app,
        "PUT",
        features,
        json!({"use_unified": true, "unified_percent": 100, "fallback": true}),
    )
    .await;
    assert_eq!(canary.status, 200, "{}", canary.body);
    let mut from_legacy = 0;
    for &listing in &listings {
        let (values, source) = values_over_http(&app, listing).await;
        assert_eq!(values, legacy[&listing], "listing {listing} in the canary");
        from_legacy += usize::from(source == "fallback_quarantined");
    }
    assert!(
        from_legacy >= 8,
        "the listings with quarantined values: {from_legacy}"
    );

    // The resolutions, typed as users saw the values.
    let quarantine = "/api/v2/admin/attributes/quarantine";
    for (path, body) in [
        (
            "options",
            json!({"attribute": "color", "value": "grey", "label": {"sr": "Siva"}}),
        ),
        (
            "aliases",
            json!({"attribute": "color", "alias": "Siva", "option": "grey"}),
        ),
        (
            "aliases",
            json!({"attribute": "color", "alias": "серый металлик", "option": "grey"}),
        ),
        (
            "options",
            json!({"attribute": "car_make", "value": "toyota"}),
        ),
    ] {
        let reply = admin(&app, "POST", &format!("{quarantine}/{path}"), body).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let moved = admin(
        &app,
        "POST",
        &format!("{quarantine}/moves"),
        json!({"from": "brand", "to": "car_make", "raw_value": "TOYOTA"}),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.body["data"]["moved"], json!([112, 113, 119]));
    let catalog = storage.backfill_catalog().await.expect("catalog");
    let mut after = 0;
    while let (Some(last), _, _) = storage
        .retry_quarantined(EntityKind::Listing, after, 10, &catalog)
        .await
        .expect("retry")
    {
        after = last;
    }
    let accepted = admin(
        &app,
        "POST",
        &format!("{quarantine}/acceptances"),
        json!({"all": true, "note": "typos and makes we do not list"}),
    )
    .await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let listed = admin(&app, "GET", quarantine, Json::Null).await;
    assert_eq!(
        listed.body["data"]["seen_by_users"], listed.body["data"]["accepted"],
        "{}",
        listed.body
    );
    let verified = storage.verify(50, |_| {}).await.expect("verify");
    assert!(verified.is_clean(), "{:?}", verified.drift);
    let flipped = admin(
        &app,
        "PUT",
        features,
        json!({"use_unified": true, "unified_percent": 100, "fallback": false}),
    )
    .await;
    assert_eq!(flipped.status, 200, "{}", flipped.body);
    let accepted = raw.accepted_listing_values().await;
    for &listing in &listings {
        let (values, source) = values_over_http(&app, listing).await;
        assert_eq!(source, "unified");
        let codes: std::collections::BTreeSet<String> = values.into_keys().collect();
        let mut expected: std::collections::BTreeSet<String> = legacy[&listing]
            .keys()
            .filter(|code| !accepted.contains(&(listing, (*code).clone())))
            .cloned()
            .collect();
        // A car make moved from `brand` reads under `car_make` now.
        if [112, 113, 119].contains(&listing) {
            expected.remove("brand");
            expected.insert("car_make".to_owned());
        }
        assert_eq!(
            codes, expected,
            "listing {listing}: only the accepted values are missing"
        );
    }
}
