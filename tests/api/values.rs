//! Values of products and variants, PATCH merges, and the batch read of listing cards.

use serde_json::json;

use crate::common::Backend;
use crate::helpers::{WRITER_TOKEN, spawn_app};

on_both_backends!(
    products_and_variants_are_read_and_written_like_listings,
    a_patch_merges_values_and_null_removes_one,
    a_batch_read_returns_each_listing_and_names_the_missing_ones,
    a_batch_read_refuses_bad_or_too_many_ids,
    legacy_spellings_are_served_as_the_option_they_mean,
);

/// The first product of the demo data (after the 60 listings) and its first variant.
const PRODUCT: i64 = 61;
const VARIANT: i64 = 62;

async fn products_and_variants_are_read_and_written_like_listings(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = format!("/api/v2/marketplace/products/{PRODUCT}/attributes");
    let reply = app
        .put_json(
            &product,
            r#"{"brand": "Apple", "storage_gb": 512, "condition": "new"}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let read = app.get(&product).await;
    assert_eq!(read.body["data"]["entity_type"], "product");
    assert_eq!(
        read.body["data"]["values"],
        json!([{"code": "brand", "value": "Apple"}, {"code": "condition", "value": "new"}, {"code": "storage_gb", "value": 512}])
    );
    let variant = format!("/api/v2/marketplace/variants/{VARIANT}/attributes");
    let before = app.get(&variant).await;
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(before.body["data"]["entity_type"], "product_variant");
    let reply = app
        .json(
            "PATCH",
            &variant,
            r#"{"color": ["white"]}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let colour = app.get(&variant).await.body["data"]["values"]
        .as_array()
        .expect("values")
        .iter()
        .find(|v| v["code"] == "color")
        .cloned();
    assert_eq!(colour, Some(json!({"code": "color", "value": ["white"]})));
    app.get("/api/v2/marketplace/products/abc/attributes")
        .await
        .assert_error(400, "errors.invalidProductId");
    app.get("/api/v2/marketplace/variants/999999/attributes")
        .await
        .assert_error(404, "errors.variantNotFound");
}

async fn a_patch_merges_values_and_null_removes_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = "/api/v2/marketplace/listings/6/attributes";
    let reply = app
        .put_json(
            path,
            r#"{"year": 2015, "car_make": "audi", "vin": "WAUZZZ8K9BA123456"}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = app
        .json(
            "PATCH",
            path,
            r#"{"mileage": {"value": 99000, "unit": "km"}, "vin": null}"#,
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        app.listing_values(6).await,
        json!([
            {"code": "car_make", "value": "audi"},
            {"code": "mileage", "value": 99000, "unit": "km"},
            {"code": "year", "value": 2015},
        ])
    );
    let refused = app
        .json("PATCH", path, r#"{"year": null}"#, Some(WRITER_TOKEN))
        .await;
    refused.assert_error(422, "errors.validationFailed");
    assert_eq!(
        refused.body["fields"][0]["key"],
        "errors.requiredAttributeMissing"
    );
    app.json("PATCH", path, r#"{"year": 2016}"#, None)
        .await
        .assert_error(401, "errors.unauthorized");
}

async fn a_batch_read_returns_each_listing_and_names_the_missing_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    // Warm one listing so the batch mixes cached and loaded entries.
    let six = app.listing_values(6).await;
    let reply = app
        .get("/api/v2/marketplace/listings/attributes?ids=6,1,999999,2,6")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let items = reply.body["data"]["items"].as_array().expect("items");
    let ids: Vec<_> = items
        .iter()
        .map(|i| i["entity_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [6, 1, 2]);
    assert_eq!(items[0]["values"], six);
    assert_eq!(items[1]["values"], app.listing_values(1).await);
    assert_eq!(reply.body["data"]["not_found"], json!([999999]));
}

async fn a_batch_read_refuses_bad_or_too_many_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    let too_many = (1..=101)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    app.get(&format!(
        "/api/v2/marketplace/listings/attributes?ids={too_many}"
    ))
    .await
    .assert_error(400, "errors.invalidQuery");
    app.get("/api/v2/marketplace/listings/attributes?ids=1,x")
        .await
        .assert_error(400, "errors.invalidListingId");
    // Bounded while parsing: 11,000 ids are refused at the 101st, before the bad one at the
    // end is even read (it used to be parsed and de-duplicated whole first).
    let huge = format!(
        "{},x",
        (1..=11_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    app.get(&format!(
        "/api/v2/marketplace/listings/attributes?ids={huge}"
    ))
    .await
    .assert_error(400, "errors.invalidQuery");
    // Repeats of a few ids stay fine.
    let repeated = vec!["6"; 150].join(",");
    let reply = app
        .get(&format!(
            "/api/v2/marketplace/listings/attributes?ids={repeated}"
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    app.get("/api/v2/marketplace/listings/attributes?ids=")
        .await
        .assert_error(400, "errors.invalidQuery");
    app.get("/api/v2/marketplace/listings/attributes")
        .await
        .assert_error(400, "errors.invalidQuery");
}

/// The `transmission` of a listing, as served.
fn transmission(values: &serde_json::Value) -> Option<String> {
    values
        .as_array()?
        .iter()
        .find(|v| v["code"] == "transmission")
        .and_then(|v| v["value"].as_str().map(str::to_owned))
}

async fn legacy_spellings_are_served_as_the_option_they_mean(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = app.db.raw().await;
    let listings = raw
        .texts(
            "SELECT CAST(v.listing_id AS TEXT) FROM listing_attribute_values v
             JOIN category_attributes a ON a.id = v.attribute_id
             WHERE a.name = 'transmission' AND v.text_value IS NOT NULL ORDER BY v.listing_id LIMIT 3",
        )
        .await;
    let ids: Vec<i64> = listings
        .iter()
        .filter_map(|id| id.as_deref()?.parse().ok())
        .collect();
    assert_eq!(ids.len(), 3, "the demo has cars with a transmission");
    for (id, spelling) in ids.iter().zip(["Automatic", "автомат", "poluautomatik"]) {
        raw.execute(&format!(
            "UPDATE listing_attribute_values SET text_value = '{spelling}'
             WHERE listing_id = {id} AND attribute_id = (SELECT id FROM category_attributes WHERE name = 'transmission')"
        ))
        .await;
    }
    // One read each, and the batch read of all three.
    assert_eq!(
        transmission(&app.listing_values(ids[0]).await).as_deref(),
        Some("automatic")
    );
    assert_eq!(
        transmission(&app.listing_values(ids[1]).await).as_deref(),
        Some("automatic")
    );
    assert_eq!(
        transmission(&app.listing_values(ids[2]).await).as_deref(),
        Some("poluautomatik"),
        "a spelling no option explains is served as stored"
    );
    let fresh = crate::helpers::spawn_replica(&app, &[]).await;
    let batch = fresh
        .get(&format!(
            "/api/v2/marketplace/listings/attributes?ids={},{}",
            ids[0], ids[1]
        ))
        .await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    let served: Vec<Option<String>> = batch.body["data"]["items"]
        .as_array()
        .expect("listings")
        .iter()
        .map(|listing| transmission(&listing["values"]))
        .collect();
    assert_eq!(
        served,
        [Some("automatic".to_owned()), Some("automatic".to_owned())]
    );
}
