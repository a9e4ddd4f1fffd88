//! The v1 answers against the legacy backend's published models — every field, each with its
//! JSON type, nothing more — from the legacy store and from the unified one (after a backfill),
//! on both backends; and the two stores answer alike.

use serde_json::{Value as Json, json};

use crate::common::Backend;
use crate::helpers::{
    ADMIN_TOKEN, TestApp, WRITER_TOKEN, spawn_app, spawn_app_with, spawn_replica,
};

on_both_backends!(
    every_v1_answer_has_the_legacy_fields_and_types_from_either_store,
    v1_ranges_give_the_legacy_defaults_where_a_category_has_no_data,
);

/// The JSON types a legacy field may take.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Integer,
    Number,
    Text,
    Bool,
    /// RFC 3339, as Go's `time.Time` marshals.
    Time,
    Array,
    Object,
    OrNull(&'static Kind),
}

impl Kind {
    fn accepts(self, value: &Json) -> bool {
        match self {
            Kind::Integer => value.is_i64(),
            Kind::Number => value.is_number(),
            Kind::Text => value.is_string(),
            Kind::Bool => value.is_boolean(),
            Kind::Time => value
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            Kind::Array => value.is_array(),
            Kind::Object => value.is_object(),
            Kind::OrNull(kind) => value.is_null() || kind.accepts(value),
        }
    }
}

const NULLABLE_TEXT: Kind = Kind::OrNull(&Kind::Text);

/// The legacy `CategoryAttribute` model: its 20 fields.
const CATEGORY_ATTRIBUTE: [(&str, Kind); 20] = [
    ("id", Kind::Integer),
    ("name", Kind::Text),
    ("display_name", Kind::Text),
    ("attribute_type", Kind::Text),
    ("icon", NULLABLE_TEXT),
    ("options", Kind::Array),
    ("validation_rules", Kind::Object),
    ("is_searchable", Kind::Bool),
    ("is_filterable", Kind::Bool),
    ("is_required", Kind::Bool),
    ("show_in_card", Kind::Bool),
    ("show_in_list", Kind::Bool),
    ("sort_order", Kind::Integer),
    ("created_at", Kind::Time),
    ("translations", Kind::Object),
    ("option_translations", Kind::Object),
    ("translated_options", Kind::Array),
    ("custom_component", NULLABLE_TEXT),
    ("is_variant_compatible", Kind::Bool),
    ("affects_stock", Kind::Bool),
];

const ATTRIBUTE_RANGE: [(&str, Kind); 4] = [
    ("min", Kind::Number),
    ("max", Kind::Number),
    ("step", Kind::Number),
    ("count", Kind::Integer),
];

/// The legacy `ProductVariantAttribute` model, with its catalogue of values.
const PRODUCT_VARIANT_ATTRIBUTE: [(&str, Kind); 10] = [
    ("id", Kind::Integer),
    ("name", Kind::Text),
    ("display_name", Kind::Text),
    ("type", Kind::Text),
    ("is_required", Kind::Bool),
    ("sort_order", Kind::Integer),
    ("affects_stock", Kind::Bool),
    ("created_at", Kind::Time),
    ("updated_at", Kind::Time),
    ("values", Kind::Array),
];

// The legacy option catalogue's row: `image_url` is one of its columns, served as v1 served it.
const VARIANT_VALUE: [(&str, Kind); 6] = [
    ("value", Kind::Text),
    ("display_name", Kind::Text),
    ("color_hex", NULLABLE_TEXT),
    ("image_url", NULLABLE_TEXT),
    ("sort_order", Kind::Integer),
    ("is_active", Kind::Bool),
];

/// The legacy `ListingAttributeValue` model.
const LISTING_ATTRIBUTE_VALUE: [(&str, Kind); 15] = [
    ("attribute_id", Kind::Integer),
    ("attribute_name", Kind::Text),
    ("display_name", Kind::Text),
    ("attribute_type", Kind::Text),
    ("text_value", NULLABLE_TEXT),
    ("numeric_value", Kind::OrNull(&Kind::Number)),
    ("boolean_value", Kind::OrNull(&Kind::Bool)),
    ("json_value", Kind::OrNull(&Kind::Array)),
    ("display_value", Kind::Text),
    ("unit", NULLABLE_TEXT),
    ("translations", Kind::Object),
    ("option_translations", Kind::Object),
    ("is_required", Kind::Bool),
    ("show_in_card", Kind::Bool),
    ("show_in_list", Kind::Bool),
];

/// `value` is an object with exactly `fields`, each of its kind.
fn assert_shape(value: &Json, fields: &[(&str, Kind)], what: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {value}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{what}: the fields of the legacy model");
    for (name, kind) in fields {
        assert!(
            kind.accepts(&object[*name]),
            "{what}.{name} is not {kind:?}: {}",
            object[*name]
        );
    }
}

fn list<'a>(reply: &'a crate::helpers::Reply, path: &str) -> &'a Vec<Json> {
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    assert_eq!(reply.body["success"], true, "{path}");
    reply.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: data is not a list"))
}

/// Every v1 answer of `app` checked against the models; returns them for comparison.
async fn checked_v1_answers(app: &TestApp, store: &str, listing: i64) -> Vec<(String, Json)> {
    let mut answers = Vec::new();
    let mut get = async |path: String| {
        let reply = app.get(&path).await;
        assert_eq!(reply.header("X-Attributes-Source"), Some(store), "{path}");
        answers.push((path.clone(), reply.body.clone()));
        (path, reply)
    };

    for category in [1311, 1101, 1410] {
        let (path, reply) = get(format!(
            "/api/v1/marketplace/categories/{category}/attributes?lang=en"
        ))
        .await;
        let attributes = list(&reply, &path);
        assert!(!attributes.is_empty(), "{path}");
        for attribute in attributes {
            assert_shape(attribute, &CATEGORY_ATTRIBUTE, &format!("{store} {path}"));
        }
    }

    let (path, reply) = get("/api/v1/marketplace/categories/1003/attribute-ranges".into()).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    let ranges = reply.body["data"].as_object().expect("ranges by name");
    assert!(ranges.contains_key("year"), "{path}: {}", reply.body);
    for (name, range) in ranges {
        assert_shape(range, &ATTRIBUTE_RANGE, &format!("{store} {path} {name}"));
    }

    for path in [
        "/api/v1/marketplace/product-variant-attributes?lang=en".to_owned(),
        "/api/v1/marketplace/categories/mobile-phones/variant-attributes?lang=en".to_owned(),
    ] {
        let (path, reply) = get(path).await;
        let attributes = list(&reply, &path);
        let mut names: Vec<_> = attributes
            .iter()
            .map(|a| a["name"].as_str().expect("name"))
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["color", "size"], "{store} {path}");
        for attribute in attributes {
            assert_shape(
                attribute,
                &PRODUCT_VARIANT_ATTRIBUTE,
                &format!("{store} {path}"),
            );
            for value in attribute["values"].as_array().expect("values") {
                assert_shape(value, &VARIANT_VALUE, &format!("{store} {path} value"));
            }
        }
    }

    let (path, reply) = get(format!(
        "/api/v1/marketplace/listings/{listing}/attributes?lang=en"
    ))
    .await;
    let values = list(&reply, &path);
    assert!(values.len() >= 3, "{path}: {}", reply.body);
    for value in values {
        assert_shape(value, &LISTING_ATTRIBUTE_VALUE, &format!("{store} {path}"));
    }
    answers
}

async fn every_v1_answer_has_the_legacy_fields_and_types_from_either_store(backend: Backend) {
    let dual_write = [
        ("WRITER_API_TOKEN", WRITER_TOKEN),
        ("ADMIN_API_TOKEN", ADMIN_TOKEN),
        ("DUAL_WRITE_ATTRIBUTES", "true"),
    ];
    let app = spawn_app_with(backend, &dual_write).await;
    // The backfill under dual-write first (reads stay on legacy): the listing compared must
    // have nothing in quarantine, whose values only legacy holds.
    let storage = app.db.storage().await;
    crate::common::backfill_and_verify(&storage).await;
    // A car listing with values of several types (numbers with units, choices, a boolean).
    let listing: i64 = app
        .db
        .raw()
        .await
        .count(
            "SELECT CAST(l.id AS BIGINT) FROM marketplace_listings l
             JOIN listing_attribute_values v ON v.listing_id = l.id
             WHERE l.category_id = 1311 AND NOT EXISTS (SELECT 1 FROM backfill_quarantine q
                 WHERE q.entity_type = 'listing' AND q.entity_id = l.id)
             GROUP BY l.id ORDER BY COUNT(*) DESC, l.id LIMIT 1",
        )
        .await;
    let legacy = checked_v1_answers(&app, "legacy", listing).await;

    // A value the listing page shows with its unit and its option label.
    let reply = app
        .get(&format!(
            "/api/v1/marketplace/listings/{listing}/attributes?lang=en"
        ))
        .await;
    let transmission = reply.body["data"]
        .as_array()
        .expect("values")
        .iter()
        .find(|v| v["attribute_name"] == "transmission");
    if let Some(transmission) = transmission {
        assert!(
            ["Automatic", "Manual"]
                .contains(&transmission["display_value"].as_str().expect("text")),
            "{transmission}"
        );
        assert_eq!(
            transmission["option_translations"]["ru"]["automatic"],
            "Автомат"
        );
    }

    let unified_app = spawn_replica(
        &app,
        &[dual_write.as_slice(), &[("USE_UNIFIED_ATTRIBUTES", "true")]].concat(),
    )
    .await;
    let unified = checked_v1_answers(&unified_app, "unified", listing).await;
    for ((path, legacy), (_, unified)) in legacy.iter().zip(&unified) {
        assert_eq!(legacy, unified, "{path}: the stores answer alike");
    }

    // By id as well as by slug; a slug asked twice is answered alike (its id is cached).
    let by_slug = "/api/v1/marketplace/categories/mobile-phones/variant-attributes?lang=en";
    let first = app.get(by_slug).await.body;
    assert_eq!(app.get(by_slug).await.body, first);
    assert_eq!(
        app.get("/api/v1/marketplace/categories/1101/variant-attributes?lang=en")
            .await
            .body,
        first
    );
    app.get("/api/v1/marketplace/categories/no-such-slug/variant-attributes")
        .await
        .assert_error(404, "errors.categoryNotFound");
    app.get("/api/v1/marketplace/listings/0/attributes")
        .await
        .assert_error(400, "errors.invalidListingId");
    app.get("/api/v1/marketplace/listings/999999/attributes")
        .await
        .assert_error(404, "errors.listingNotFound");
}

async fn v1_ranges_give_the_legacy_defaults_where_a_category_has_no_data(backend: Backend) {
    let app = spawn_app(backend).await;
    // A new branch under cars: it inherits year and mileage, and no listing is in it yet.
    app.db
        .raw()
        .await
        .execute(
            "INSERT INTO marketplace_categories (id, parent_id, name, slug, level)
             VALUES (1399, 1301, 'Oldtajmeri', 'oldtimers', 2)",
        )
        .await;
    let reply = app
        .get("/api/v1/marketplace/categories/1399/attribute-ranges")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let year = &reply.body["data"]["year"];
    assert_eq!(year["min"], 1950, "{}", reply.body);
    assert_eq!(year["step"], 1);
    assert_eq!(year["count"], 0);
    assert!(year["max"].as_i64().expect("a year") >= 2026, "{year}");
    assert_eq!(
        reply.body["data"]["mileage"],
        json!({"min": 0, "max": 500000, "step": 1000, "count": 0})
    );
    assert!(
        reply.body["data"].get("rooms").is_none(),
        "no default for an attribute the category does not bind: {}",
        reply.body
    );
    // A category with data keeps its measured range, with the legacy step.
    let cars = app
        .get("/api/v1/marketplace/categories/1301/attribute-ranges")
        .await;
    let mileage = &cars.body["data"]["mileage"];
    assert!(
        mileage["count"].as_i64().expect("count") > 0,
        "{}",
        cars.body
    );
    assert_eq!(mileage["step"], 1000);
}
