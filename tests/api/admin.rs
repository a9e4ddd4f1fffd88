//! Admin writes of definitions and bindings: auth, validation, conflicts, and that every
//! cached read they change shows the change at once.

use serde_json::json;

use crate::common::Backend;
use crate::helpers::{ADMIN_TOKEN, WRITER_TOKEN, spawn_app};

on_both_backends!(
    the_quarantine_is_listed_by_attribute_for_admins,
    admin_routes_need_the_admin_token,
    an_attribute_is_created_updated_and_deleted,
    a_label_change_shows_at_once_in_every_category_that_inherits_it,
    a_binding_change_shows_at_once_in_the_category_and_its_descendants,
    bad_definitions_and_taken_codes_are_refused,
    dropping_an_option_that_values_still_choose_is_refused_with_the_count,
);

const ENGINE: &str = r#"{"code": "engine_power", "type": "number", "display_name": {"sr": "Snaga", "en": "Power"},
                         "validation_rules": {"min": 1, "max": 2000}}"#;

async fn the_quarantine_is_listed_by_attribute_for_admins(backend: Backend) {
    let app = spawn_app(backend).await;
    let storage = app.db.storage().await;
    crate::common::run_backfill(&storage, &domain::EntityKind::ALL, 50, false, None).await;
    let path = "/api/v2/admin/attributes/quarantine";
    app.get(path).await.assert_error(401, "errors.unauthorized");
    let auth = ("Authorization", format!("Bearer {ADMIN_TOKEN}"));
    let all = app.get_as(path, (auth.0, &auth.1)).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let groups = all.body["data"]["groups"].as_array().expect("groups");
    assert!(
        all.body["data"]["total"].as_i64() >= Some(groups.len() as i64),
        "{}",
        all.body
    );
    assert!(!groups.is_empty(), "the demo's defects are quarantined");
    let code = groups[0]["attribute_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let one = app
        .get_as(
            &format!("{path}?attribute={code}&limit=3"),
            (auth.0, &auth.1),
        )
        .await;
    let one = one.body["data"]["groups"]
        .as_array()
        .expect("groups")
        .clone();
    assert!(
        !one.is_empty()
            && one.len() <= 3
            && one.iter().all(|g| g["attribute_code"] == code.as_str()),
        "{one:?}"
    );
    app.get_as(&format!("{path}?limit=0"), (auth.0, &auth.1))
        .await
        .assert_error(400, "errors.invalidQuery");
}

async fn admin_routes_need_the_admin_token(backend: Backend) {
    let app = spawn_app(backend).await;
    for token in [None, Some(WRITER_TOKEN), Some("guess")] {
        app.json("POST", "/api/v2/admin/attributes", ENGINE, token)
            .await
            .assert_error(401, "errors.unauthorized");
        app.json("PUT", "/api/v2/admin/attributes/2202", ENGINE, token)
            .await
            .assert_error(401, "errors.unauthorized");
        app.delete("/api/v2/admin/attributes/2202", token)
            .await
            .assert_error(401, "errors.unauthorized");
        app.json(
            "POST",
            "/api/v2/admin/categories/1301/attributes",
            r#"{"attribute_id": 2101}"#,
            token,
        )
        .await
        .assert_error(401, "errors.unauthorized");
        app.delete("/api/v2/admin/categories/1301/attributes/2202", token)
            .await
            .assert_error(401, "errors.unauthorized");
    }
    assert_eq!(
        app.get("/api/v2/attributes/year").await.status,
        200,
        "nothing was deleted"
    );
}

async fn an_attribute_is_created_updated_and_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .json(
            "POST",
            "/api/v2/admin/attributes",
            ENGINE,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["data"]["id"].as_i64().expect("id");
    assert_eq!(
        created.header("Location"),
        Some(format!("/api/v2/attributes/{id}").as_str())
    );
    assert_eq!(
        app.get("/api/v2/attributes/engine_power?lang=en")
            .await
            .body["data"]["display_name"],
        "Power"
    );
    // Legacy holds it (phase 0), with its translations.
    let raw = app.db.raw().await;
    assert_eq!(
        raw.count(&format!(
            "SELECT COUNT(*) FROM category_attributes WHERE id = {id} AND name = 'engine_power'"
        ))
        .await,
        1
    );
    assert_eq!(
        raw.count(&format!(
            "SELECT COUNT(*) FROM translations WHERE entity_id = {id} AND language = 'en'"
        ))
        .await,
        1
    );

    let changed = ENGINE.replace("Power", "Engine power");
    let updated = app
        .json(
            "PUT",
            &format!("/api/v2/admin/attributes/{id}"),
            &changed,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(
        app.get("/api/v2/attributes/engine_power?lang=en")
            .await
            .body["data"]["display_name"],
        "Engine power"
    );

    assert_eq!(
        app.delete(&format!("/api/v2/admin/attributes/{id}"), Some(ADMIN_TOKEN))
            .await
            .status,
        204
    );
    app.get("/api/v2/attributes/engine_power")
        .await
        .assert_error(404, "errors.attributeNotFound");
    app.delete(&format!("/api/v2/admin/attributes/{id}"), Some(ADMIN_TOKEN))
        .await
        .assert_error(404, "errors.attributeNotFound");
}

fn display_name_of(body: &serde_json::Value, code: &str) -> serde_json::Value {
    body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["code"] == code)
        .map(|a| a["display_name"].clone())
        .unwrap_or_default()
}

async fn a_label_change_shows_at_once_in_every_category_that_inherits_it(backend: Backend) {
    let app = spawn_app(backend).await;
    // Warm the cache of the category that binds `year` and of two that inherit it.
    for category in [1301, 1310, 1311] {
        let reply = app
            .get(&format!(
                "/api/v2/marketplace/categories/{category}/attributes?lang=en"
            ))
            .await;
        assert_eq!(display_name_of(&reply.body, "year"), "Year");
    }
    let year = json!({"code": "year", "type": "number", "display_name": {"sr": "Godište", "en": "Model year", "ru": "Год выпуска"},
                      "validation_rules": {"min": 1950, "max": 2026}});
    let reply = app
        .json(
            "PUT",
            "/api/v2/admin/attributes/2202",
            &year.to_string(),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    for category in [1301, 1310, 1311] {
        let reply = app
            .get(&format!(
                "/api/v2/marketplace/categories/{category}/attributes?lang=en"
            ))
            .await;
        assert_eq!(
            display_name_of(&reply.body, "year"),
            "Model year",
            "category {category}"
        );
        let v1 = app
            .get(&format!(
                "/api/v1/marketplace/categories/{category}/attributes?lang=en"
            ))
            .await;
        let v1_year = v1.body["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|a| a["name"] == "year")
            .expect("year")
            .clone();
        assert_eq!(v1_year["display_name"], "Model year");
    }
}

async fn a_binding_change_shows_at_once_in_the_category_and_its_descendants(backend: Backend) {
    let app = spawn_app(backend).await;
    let has_brand = |body: &serde_json::Value| {
        body["data"]
            .as_array()
            .expect("list")
            .iter()
            .any(|a| a["code"] == "brand")
    };
    for category in [1301, 1311, 1302] {
        assert!(!has_brand(
            &app.get(&format!(
                "/api/v2/marketplace/categories/{category}/attributes"
            ))
            .await
            .body
        ));
    }
    let bound = app
        .json(
            "POST",
            "/api/v2/admin/categories/1301/attributes",
            r#"{"attribute_id": 2101, "sort_order": 40}"#,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(bound.status, 200, "{}", bound.body);
    assert!(has_brand(
        &app.get("/api/v2/marketplace/categories/1301/attributes")
            .await
            .body
    ));
    assert!(has_brand(
        &app.get("/api/v2/marketplace/categories/1311/attributes")
            .await
            .body
    ));
    assert!(
        !has_brand(
            &app.get("/api/v2/marketplace/categories/1302/attributes")
                .await
                .body
        ),
        "a sibling is not affected"
    );

    let required = app
        .json(
            "PUT",
            "/api/v2/admin/categories/1301/attributes/2101",
            r#"{"is_required": true, "sort_order": 40}"#,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(required.status, 200, "{}", required.body);
    let brand = app
        .get("/api/v2/marketplace/categories/1311/attributes")
        .await
        .body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["code"] == "brand")
        .cloned()
        .expect("brand");
    assert_eq!(brand["is_required"], true);

    assert_eq!(
        app.delete(
            "/api/v2/admin/categories/1301/attributes/2101",
            Some(ADMIN_TOKEN)
        )
        .await
        .status,
        204
    );
    assert!(!has_brand(
        &app.get("/api/v2/marketplace/categories/1311/attributes")
            .await
            .body
    ));
    app.delete(
        "/api/v2/admin/categories/1301/attributes/2101",
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(404, "errors.bindingNotFound");
    app.json(
        "POST",
        "/api/v2/admin/categories/77777/attributes",
        r#"{"attribute_id": 2101}"#,
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(404, "errors.categoryNotFound");
    app.json(
        "POST",
        "/api/v2/admin/categories/1301/attributes",
        r#"{"attribute_id": 99999}"#,
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(404, "errors.attributeNotFound");
}

async fn bad_definitions_and_taken_codes_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let taken = ENGINE.replace("engine_power", "year");
    app.json(
        "POST",
        "/api/v2/admin/attributes",
        &taken,
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(409, "errors.conflict");
    let invalid = app
        .json(
            "POST",
            "/api/v2/admin/attributes",
            r#"{"code": "Bad Code", "type": "number", "display_name": {}}"#,
            Some(ADMIN_TOKEN),
        )
        .await;
    invalid.assert_error(422, "errors.validationFailed");
    let fields: Vec<_> = invalid.body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["code", "display_name"]);
    app.json(
        "POST",
        "/api/v2/admin/attributes",
        r#"{"code": "x", "type": "checkbox", "display_name": {"sr": "X"}}"#,
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(422, "errors.invalidBody");
    app.json(
        "POST",
        "/api/v2/admin/attributes",
        r#"{"code": "x", "#,
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(400, "errors.malformedJson");
    // A NUL character cannot be stored (PostgreSQL): refused with its path, on both backends.
    let nul = app
        .json(
            "POST",
            "/api/v2/admin/attributes",
            &ENGINE.replace("Snaga", "Sna\\u0000ga"),
            Some(ADMIN_TOKEN),
        )
        .await;
    nul.assert_error(422, "errors.validationFailed");
    assert_eq!(
        nul.body["fields"][0]["field"], "display_name.sr",
        "{}",
        nul.body
    );
    assert_eq!(nul.body["fields"][0]["key"], "errors.nulCharacter");
    app.json(
        "PUT",
        "/api/v2/admin/categories/1301/attributes/2202",
        r#"{"custom_component": "\u0000"}"#,
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(422, "errors.validationFailed");
    // Wider than the narrowest column that holds it in either store (a catalogue option's
    // value and a label varchar(255), an icon varchar(10)), or not a colour: a 422 naming the
    // field, never stored.
    let long = "x".repeat(1_000);
    let huge = "y".repeat(60_000);
    for (body, field) in [
        (
            format!(r#"{{"code": "fabric", "type": "select", "display_name": {{"sr": "Tkanina"}}, "options": [{{"value": "{long}", "label": {{"sr": "L"}}}}]}}"#),
            "options",
        ),
        (
            format!(r#"{{"code": "fabric", "type": "text", "display_name": {{"sr": "{huge}"}}}}"#),
            "display_name",
        ),
        (
            r#"{"code": "fabric", "type": "text", "display_name": {"sr": "Tkanina"}, "ui": {"icon": "a-very-long-icon-name"}}"#.to_owned(),
            "ui",
        ),
        (
            r##"{"code": "fabric", "type": "color", "display_name": {"sr": "Boja"}, "options": [{"value": "x", "label": {"sr": "X"}, "color_hex": "javascript:alert(1)"}]}"##.to_owned(),
            "options",
        ),
    ] {
        let refused = app
            .json("POST", "/api/v2/admin/attributes", &body, Some(ADMIN_TOKEN))
            .await;
        refused.assert_error(422, "errors.validationFailed");
        assert_eq!(refused.body["fields"][0]["field"], field, "{}", refused.body);
    }
    let component = format!(r#"{{"custom_component": "{long}"}}"#);
    app.json(
        "PUT",
        "/api/v2/admin/categories/1301/attributes/2202",
        &component,
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(422, "errors.validationFailed");
    assert_eq!(
        app.get("/api/v2/attributes?per_page=200").await.body["data"]["total"],
        23,
        "nothing was created"
    );
}

/// An admin change that drops an option still chosen by values would leave those values
/// pointing at nothing (unreadable once they reach unified): refused with the count; an
/// option no value chooses goes freely.
async fn dropping_an_option_that_values_still_choose_is_refused_with_the_count(backend: Backend) {
    let app = spawn_app(backend).await;
    let transmission = |options: &[&str]| {
        let options: Vec<_> = options
            .iter()
            .map(|value| json!({"value": value, "label": {"sr": value}}))
            .collect();
        json!({"code": "transmission", "type": "select",
               "display_name": {"sr": "Menjač", "en": "Transmission"}, "options": options})
        .to_string()
    };
    let put = |body: String| {
        let app = &app;
        async move {
            app.json(
                "PUT",
                "/api/v2/admin/attributes/2205",
                &body,
                Some(ADMIN_TOKEN),
            )
            .await
        }
    };
    let refused = put(transmission(&["automatic"])).await;
    refused.assert_error(409, "errors.conflict");
    let detail = refused.body["detail"].as_str().expect("detail").to_owned();
    let uses: i64 = detail
        .split("'manual' by ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the refusal counts the values: {detail}"));
    assert!(uses > 0, "{detail}");
    let schema = app
        .get("/api/v2/marketplace/categories/1311/attributes?lang=en")
        .await;
    let options = schema.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["code"] == "transmission")
        .expect("transmission")["options"]
        .as_array()
        .expect("options")
        .len();
    assert_eq!(options, 2, "nothing changed");
    let added = put(transmission(&["automatic", "manual", "cvt"])).await;
    assert_eq!(added.status, 200, "{}", added.body);
    let dropped = put(transmission(&["automatic", "manual"])).await;
    assert_eq!(
        dropped.status, 200,
        "an unused option goes: {}",
        dropped.body
    );

    // Re-mapped in the same change: every listing that chose `manual` now reads `automatic`.
    let manual = listings_choosing(&app, "manual").await;
    assert!(
        !manual.is_empty(),
        "the demo has manual cars among its first listings"
    );
    let mut remapped: serde_json::Value =
        serde_json::from_str(&transmission(&["automatic"])).expect("json");
    remapped["remap_options"] = json!({"manual": "automatic"});
    let moved = put(remapped.to_string()).await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert!(listings_choosing(&app, "manual").await.is_empty());
    let automatic = listings_choosing(&app, "automatic").await;
    assert!(
        manual.iter().all(|listing| automatic.contains(listing)),
        "{manual:?} moved to automatic: {automatic:?}"
    );
    let mut stray: serde_json::Value =
        serde_json::from_str(&transmission(&["automatic"])).expect("json");
    stray["remap_options"] = json!({"tiptronic": "automatic"});
    put(stray.to_string())
        .await
        .assert_error(422, "errors.validationFailed");
}

/// The first 60 listings whose transmission reads `option`.
async fn listings_choosing(app: &crate::helpers::TestApp, option: &str) -> Vec<i64> {
    let mut listings = Vec::new();
    for listing in 1..=60 {
        let reply = app
            .get(&format!(
                "/api/v2/marketplace/listings/{listing}/attributes"
            ))
            .await;
        let chooses = reply.body["data"]["values"]
            .as_array()
            .is_some_and(|values| {
                values
                    .iter()
                    .any(|v| v["code"] == "transmission" && v["value"] == option)
            });
        if chooses {
            listings.push(listing);
        }
    }
    listings
}
