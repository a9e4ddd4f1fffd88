//! Category reads beyond the plain schema: detailed bindings, variant attributes, ranges, v1.

use domain::Value;
use rust_decimal::Decimal;
use serde_json::json;
use storage::demo::Dataset;

use crate::common::Backend;
use crate::helpers::spawn_app;

on_both_backends!(
    the_detailed_view_pairs_each_binding_with_its_full_attribute,
    variant_attributes_hold_the_schemas_colour_and_the_size_axis,
    ranges_cover_every_listing_of_the_subtree_in_both_shapes,
    the_v1_attributes_keep_the_legacy_shape_and_inherit,
);

async fn the_detailed_view_pairs_each_binding_with_its_full_attribute(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app
        .get("/api/v2/marketplace/categories/1311/attributes/detailed?lang=en")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let year = reply.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|b| b["attribute"]["code"] == "year")
        .expect("year")
        .clone();
    assert_eq!(year["category_id"], 1311);
    assert_eq!(year["bound_on"], 1301);
    assert_eq!(year["is_required"], true, "the override of 1301 applies");
    assert_eq!(
        year["attribute"]["is_required"], false,
        "the attribute itself is optional"
    );
    assert_eq!(
        year["attribute"]["translations"],
        json!({"sr": "Godište", "en": "Year", "ru": "Год выпуска"})
    );
}

async fn variant_attributes_hold_the_schemas_colour_and_the_size_axis(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app
        .get("/api/v2/marketplace/categories/1101/variant-attributes")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let codes: Vec<_> = reply.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["code"].as_str().expect("code"))
        .collect();
    assert_eq!(codes, ["color", "size"]);
    let cars = app
        .get("/api/v2/marketplace/categories/1311/variant-attributes")
        .await;
    let purposes: Vec<_> = cars.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["purpose"].as_str().expect("purpose"))
        .collect();
    assert_eq!(purposes, ["both", "variant"]);
    app.get("/api/v2/marketplace/categories/77777/variant-attributes")
        .await
        .assert_error(404, "errors.categoryNotFound");
}

/// min, max and count of `year` over the dataset's listings below `category`, computed
/// from the dataset itself.
fn expected_year_range(category: i64) -> (Decimal, Decimal, usize) {
    let data = Dataset::marketplace(60, 1);
    let in_subtree = |mut id: i64| loop {
        if id == category {
            return true;
        }
        match data
            .categories
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.parent_id)
        {
            Some(parent) => id = parent,
            None => return false,
        }
    };
    let years: Vec<Decimal> = data
        .listings
        .iter()
        .filter(|l| in_subtree(l.category_id))
        .filter_map(|l| match l.values.get("year").map(|t| &t.value) {
            Some(Value::Number(year)) => Some(*year),
            _ => None,
        })
        .collect();
    (
        years.iter().copied().min().expect("years"),
        years.iter().copied().max().expect("years"),
        years.len(),
    )
}

async fn ranges_cover_every_listing_of_the_subtree_in_both_shapes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (min, max, count) = expected_year_range(1003);
    assert!(count > 5);
    let v2 = app
        .get("/api/v2/marketplace/categories/1003/attribute-ranges")
        .await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    let year = v2.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["code"] == "year")
        .expect("year")
        .clone();
    assert_eq!(
        year,
        json!({"code": "year", "min": min.to_string().parse::<i64>().expect("int"), "max": max.to_string().parse::<i64>().expect("int"), "count": count})
    );
    let v1 = app
        .get("/api/v1/marketplace/categories/1003/attribute-ranges")
        .await;
    assert_eq!(
        v1.body["data"]["year"],
        json!({"min": year["min"], "max": year["max"], "step": 1, "count": count})
    );
    let leaf = app
        .get("/api/v2/marketplace/categories/1311/attribute-ranges")
        .await;
    let leaf_year = leaf.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["code"] == "year")
        .expect("year")
        .clone();
    assert_eq!(leaf_year["count"], expected_year_range(1311).2);
    let empty = app
        .get("/api/v2/marketplace/categories/1020/attribute-ranges")
        .await;
    assert_eq!(empty.body["data"], json!([]));
    app.get("/api/v2/marketplace/categories/77777/attribute-ranges")
        .await
        .assert_error(404, "errors.categoryNotFound");
}

async fn the_v1_attributes_keep_the_legacy_shape_and_inherit(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app
        .get("/api/v1/marketplace/categories/1311/attributes?lang=en")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let year = reply.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["name"] == "year")
        .expect("year")
        .clone();
    assert_eq!(year["attribute_type"], "number");
    assert_eq!(year["display_name"], "Year");
    assert_eq!(year["is_required"], true);
    let transmission = reply.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["name"] == "transmission")
        .expect("inherited")
        .clone();
    assert_eq!(
        transmission["options"][0],
        json!({"label": "Automatski", "value": "automatic"}),
        "the labels the legacy column holds"
    );
    assert_eq!(
        transmission["translated_options"][0],
        json!({"label": "Automatic", "value": "automatic"})
    );
    assert_eq!(
        transmission["option_translations"]["ru"]["automatic"],
        "Автомат"
    );
    assert_eq!(
        transmission["translations"],
        json!({"sr": "Menjač", "en": "Transmission", "ru": "Коробка передач"})
    );
    app.get("/api/v1/marketplace/categories/x/attributes")
        .await
        .assert_error(400, "errors.invalidCategoryId");
}
