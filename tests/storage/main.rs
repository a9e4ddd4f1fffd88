//! The storage conformance suite: every test runs against PostgreSQL and SQLite, each on a
//! fresh database. Where data lands is checked with plain SQL, not through the storage code.

#[path = "../common/mod.rs"]
mod common;

use std::str::FromStr;

use common::{Backend, TestDb};
use domain::{EntityRef, EntityValues, TypedValue, Value};
use flags::{Flags, ROLLOUT_GROUP, Store, WriteMode, in_rollout};
use rust_decimal::Decimal;
use serde_json::{Map, Value as Json, json};
use storage::demo::Dataset;
use storage::{FallbackReason, ReadRoute, ServedBy, Storage, StorageError};

/// Runs each named test of a submodule against both backends.
macro_rules! conformance_in {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(crate::common::TestDb::fresh(crate::common::Backend::Postgres).await).await
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(crate::common::TestDb::fresh(crate::common::Backend::Sqlite).await).await
            })*
        }
    };
}

mod adoption;
mod archive;
mod backfill;
mod capture;
mod model;
mod real_schema;
mod round_trips;
mod safety;
mod storable;

/// Runs each named test against both backends.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::TestDb::fresh(super::Backend::Postgres).await).await
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::TestDb::fresh(super::Backend::Sqlite).await).await
            })*
        }
    };
}

conformance!(
    a_leaf_category_inherits_attributes_bound_on_its_ancestors,
    legacy_and_unified_forms_read_back_as_the_same_domain_objects,
    unknown_categories_and_entities_are_not_found,
    each_phase_reads_and_writes_the_stores_it_names,
    a_dual_write_whose_unified_half_fails_changes_neither_store,
    a_dual_write_whose_legacy_half_fails_changes_neither_store,
    refused_values_change_nothing,
    numeric_20_5_values_and_units_round_trip_exactly_in_both_stores,
    fallback_answers_from_legacy_when_unified_has_nothing,
    a_dual_write_creates_the_unified_definition_before_any_backfill,
    product_and_variant_values_are_written_to_both_stores,
    values_of_entities_the_marketplace_deletes_are_counted_then_swept,
);

const LEGACY: ReadRoute = ReadRoute {
    store: Store::Legacy,
    fallback: false,
};
const UNIFIED: ReadRoute = ReadRoute {
    store: Store::Unified,
    fallback: false,
};

fn dataset() -> Dataset {
    Dataset::marketplace(60, 7)
}

async fn seeded(db: &TestDb, unified_too: bool) -> (Storage, Dataset) {
    let storage = db.storage().await;
    let data = dataset();
    storage.seed_legacy(&data).await.expect("seed legacy");
    if unified_too {
        storage.seed_unified(&data).await.expect("seed unified");
    }
    (storage, data)
}

fn object(value: Json) -> Map<String, Json> {
    value.as_object().expect("a JSON object").clone()
}

fn codes(schema: &domain::EffectiveSchema) -> Vec<&str> {
    schema
        .attributes
        .iter()
        .map(|a| a.attribute.code.as_str())
        .collect()
}

/// A car listing of the dataset (category 1311, electric sedans).
fn car_listing(data: &Dataset) -> i64 {
    data.listings
        .iter()
        .find(|l| l.category_id == 1311)
        .expect("a car listing")
        .id
}

/// Valid values for a car listing (year is required there).
fn car_values(year: i64) -> Map<String, Json> {
    object(json!({"year": year, "car_make": "tesla", "mileage": {"value": 1200, "unit": "km"}}))
}

async fn a_leaf_category_inherits_attributes_bound_on_its_ancestors(db: TestDb) {
    let (storage, _) = seeded(&db, false).await;
    let schema = storage
        .category_schema(1311, LEGACY)
        .await
        .expect("schema")
        .data;
    let codes = codes(&schema);
    // condition: root 1003; car_make: 1003; year, transmission: 1301 (two levels up).
    for inherited in ["condition", "car_make", "year", "transmission", "color"] {
        assert!(
            codes.contains(&inherited),
            "{inherited} missing from {codes:?}"
        );
    }
    assert!(
        !codes.contains(&"fuel_type"),
        "1311 disables fuel_type: {codes:?}"
    );
    assert!(
        !codes.contains(&"brand"),
        "brand belongs to electronics: {codes:?}"
    );
    let year = schema.get("year").expect("year");
    assert!(year.is_required && year.inherited && year.bound_on == 1301);
    assert_eq!(
        year.attribute.display_name.get(domain::Language::En),
        Some("Year")
    );
}

async fn legacy_and_unified_forms_read_back_as_the_same_domain_objects(db: TestDb) {
    let (storage, data) = seeded(&db, true).await;
    for category in data.categories.iter().map(|c| c.id) {
        let legacy = storage
            .category_schema(category, LEGACY)
            .await
            .expect("legacy schema");
        let mut unified = storage
            .category_schema(category, UNIFIED)
            .await
            .expect("unified schema");
        assert_eq!(
            legacy.data,
            data.schema(category),
            "legacy schema of {category}"
        );
        // Only unified records when a definition changed (legacy has no such column); a
        // definition nobody changed was last changed when it was created.
        for effective in &mut unified.data.attributes {
            let attribute = &mut effective.attribute;
            assert_eq!(
                attribute.updated_at, attribute.created_at,
                "{}",
                attribute.code
            );
            attribute.updated_at = None;
        }
        assert_eq!(unified.data, legacy.data, "unified schema of {category}");
        assert_eq!(
            (legacy.served_by, unified.served_by),
            (ServedBy::Legacy, ServedBy::Unified)
        );
    }
    let mut compared = 0;
    for (entity, expected) in data.entities() {
        let legacy = storage
            .entity_values(entity, LEGACY)
            .await
            .expect("legacy values")
            .data;
        let unified = storage
            .entity_values(entity, UNIFIED)
            .await
            .expect("unified values")
            .data;
        assert_eq!(&legacy, expected, "legacy values of {entity}");
        assert_eq!(&unified, expected, "unified values of {entity}");
        compared += 1;
    }
    assert_eq!(
        compared,
        data.listings.len() + data.products.len() + data.variants.len()
    );
    assert!(data.variants.len() >= 6 && data.products.len() >= 2);
}

async fn unknown_categories_and_entities_are_not_found(db: TestDb) {
    let (storage, _) = seeded(&db, true).await;
    for route in [LEGACY, UNIFIED] {
        assert!(matches!(
            storage.category_schema(999_999, route).await,
            Err(StorageError::NotFound {
                what: storage::Resource::Category,
                id: 999_999
            })
        ));
        for entity in [
            EntityRef::listing(999_999),
            EntityRef::product(999_999),
            EntityRef::variant(999_999),
        ] {
            assert!(matches!(
                storage.entity_values(entity, route).await,
                Err(StorageError::NotFound { .. })
            ));
        }
    }
    let write = storage
        .replace_values(
            EntityRef::listing(999_999),
            &car_values(2010),
            WriteMode::Dual,
        )
        .await;
    assert!(matches!(
        write,
        Err(StorageError::NotFound {
            what: storage::Resource::Listing,
            ..
        })
    ));
}

/// The year stored for a listing in each store, read with plain SQL.
async fn stored_years(db: &TestDb, listing: i64) -> (Option<String>, Option<String>) {
    let raw = db.raw().await;
    let legacy = raw
        .texts(&format!(
            "SELECT CAST(CAST(COALESCE(v.numeric_value, CAST(v.text_value AS NUMERIC)) AS INTEGER) AS TEXT)
             FROM listing_attribute_values v JOIN category_attributes a ON a.id = v.attribute_id
             WHERE v.listing_id = {listing} AND a.name = 'year'"
        ))
        .await;
    let unified = raw
        .texts(&format!(
            "SELECT CAST(CAST(v.numeric_value AS INTEGER) AS TEXT) FROM unified_attribute_values v
             JOIN unified_attributes a ON a.id = v.attribute_id
             WHERE v.entity_type = 'listing' AND v.entity_id = {listing} AND a.code = 'year'"
        ))
        .await;
    (
        legacy.into_iter().flatten().next(),
        unified.into_iter().flatten().next(),
    )
}

fn year_of(values: &EntityValues) -> Option<Decimal> {
    match values.get("year").map(|t| &t.value) {
        Some(Value::Number(year)) => Some(*year),
        _ => None,
    }
}

/// Two rollout keys, one inside and one outside a `percent` rollout.
fn keys_around(percent: u8) -> (String, String) {
    let inside = (0..)
        .map(|i| format!("user-{i}"))
        .find(|k| in_rollout(ROLLOUT_GROUP, k, percent));
    let outside = (0..)
        .map(|i| format!("user-{i}"))
        .find(|k| !in_rollout(ROLLOUT_GROUP, k, percent));
    (
        inside.expect("a key inside"),
        outside.expect("a key outside"),
    )
}

async fn each_phase_reads_and_writes_the_stores_it_names(db: TestDb) {
    let (storage, data) = seeded(&db, true).await;
    let listing = car_listing(&data);
    let entity = EntityRef::listing(listing);
    let flags = |dual_write, use_unified, unified_percent| Flags {
        dual_write,
        use_unified,
        unified_percent,
        ..Flags::default()
    };
    let raw = db.raw().await;
    let (before_legacy, before_unified) = stored_years(&db, listing).await;

    // Phase 0: legacy only.
    let phase0 = flags(false, false, 100);
    storage
        .replace_values(entity, &car_values(2001), phase0.write_mode())
        .await
        .expect("phase 0 write");
    assert_eq!(
        stored_years(&db, listing).await,
        (Some("2001".into()), before_unified.clone())
    );
    assert_ne!(before_legacy.as_deref(), Some("2001"));
    let read = storage
        .entity_values(entity, ReadRoute::new(phase0.read_store("any"), false))
        .await
        .expect("read");
    assert_eq!(
        (read.served_by, year_of(&read.data)),
        (ServedBy::Legacy, Some(Decimal::from(2001)))
    );

    // Phase 1: dual-write; reads stay on legacy.
    let phase1 = flags(true, false, 100);
    storage
        .replace_values(entity, &car_values(2002), phase1.write_mode())
        .await
        .expect("phase 1 write");
    assert_eq!(
        stored_years(&db, listing).await,
        (Some("2002".into()), Some("2002".into()))
    );
    raw.execute(&format!(
        "UPDATE unified_attribute_values SET numeric_value = 1980 WHERE entity_id = {listing} AND attribute_id = 2202"
    ))
    .await;
    for key in ["user-1", "user-7", "session-abc"] {
        let read = storage
            .entity_values(entity, ReadRoute::new(phase1.read_store(key), false))
            .await
            .expect("read");
        assert_eq!(
            (read.served_by, year_of(&read.data)),
            (ServedBy::Legacy, Some(Decimal::from(2002)))
        );
    }

    // Phase 2: canary at 50 %: both stores written, each user sticks to one store.
    let phase2 = flags(true, true, 50);
    storage
        .replace_values(entity, &car_values(2003), phase2.write_mode())
        .await
        .expect("phase 2 write");
    assert_eq!(
        stored_years(&db, listing).await,
        (Some("2003".into()), Some("2003".into()))
    );
    // Plant different years in the two stores to see which one answers.
    raw.execute(&format!(
        "UPDATE listing_attribute_values SET numeric_value = 1991, text_value = NULL
         WHERE listing_id = {listing} AND attribute_id = 2202"
    ))
    .await;
    let (inside, outside) = keys_around(50);
    for (key, store, year) in [
        (&inside, ServedBy::Unified, 2003),
        (&outside, ServedBy::Legacy, 1991),
    ] {
        let read = storage
            .entity_values(entity, ReadRoute::new(phase2.read_store(key), true))
            .await
            .expect("read");
        assert_eq!(
            (read.served_by, year_of(&read.data)),
            (store, Some(Decimal::from(year))),
            "key {key}"
        );
    }

    // Phase 3: unified only; legacy keeps its last value and the state records the gap.
    assert_eq!(
        db.raw()
            .await
            .count("SELECT COUNT(*) FROM migration_state WHERE unified_only_write_at IS NOT NULL")
            .await,
        0
    );
    let phase3 = flags(false, true, 100);
    assert_eq!(phase3.write_mode(), WriteMode::UnifiedOnly);
    storage
        .replace_values(entity, &car_values(2004), phase3.write_mode())
        .await
        .expect("phase 3 write");
    assert_eq!(
        stored_years(&db, listing).await,
        (Some("1991".into()), Some("2004".into()))
    );
    let read = storage
        .entity_values(entity, ReadRoute::new(phase3.read_store("anyone"), false))
        .await
        .expect("read");
    assert_eq!(
        (read.served_by, year_of(&read.data)),
        (ServedBy::Unified, Some(Decimal::from(2004)))
    );
    assert_eq!(
        db.raw()
            .await
            .count("SELECT COUNT(*) FROM migration_state WHERE unified_only_write_at IS NOT NULL")
            .await,
        1
    );
    assert!(
        storage
            .migration_state()
            .await
            .expect("state")
            .unified_only_writes_pending_sync
    );
}

async fn assert_dual_write_fails_atomically(db: TestDb, failing_table: &str) {
    let (storage, data) = seeded(&db, true).await;
    let listing = car_listing(&data);
    let before = stored_years(&db, listing).await;
    let count = |table: &'static str, column: &'static str| {
        let db = &db;
        async move {
            db.raw()
                .await
                .count(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE {column} = {listing}"
                ))
                .await
        }
    };
    let legacy_rows = count("listing_attribute_values", "listing_id").await;
    let unified_rows = count("unified_attribute_values", "entity_id").await;
    db.raw().await.fail_inserts_into(failing_table).await;

    let result = storage
        .replace_values(
            EntityRef::listing(listing),
            &car_values(1999),
            WriteMode::Dual,
        )
        .await;
    let Err(err) = &result else {
        panic!("{result:?}")
    };
    assert!(matches!(err, StorageError::Database(_)), "{err:?}");
    // The log line: the database's words once, its code by name.
    let logged = storage::Logged(err).to_string();
    let named = match db.backend {
        Backend::Postgres => "(SQLSTATE P0001 raise_exception)",
        Backend::Sqlite => "SQLITE_CONSTRAINT)",
    };
    assert!(
        logged.ends_with(named) && logged.matches("injected fault").count() == 1,
        "{logged}"
    );
    assert_eq!(stored_years(&db, listing).await, before);
    assert_eq!(
        count("listing_attribute_values", "listing_id").await,
        legacy_rows
    );
    assert_eq!(
        count("unified_attribute_values", "entity_id").await,
        unified_rows
    );
    assert!(legacy_rows > 0 && unified_rows > 0);
}

async fn a_dual_write_whose_unified_half_fails_changes_neither_store(db: TestDb) {
    assert_dual_write_fails_atomically(db, "unified_attribute_values").await;
}

async fn a_dual_write_whose_legacy_half_fails_changes_neither_store(db: TestDb) {
    assert_dual_write_fails_atomically(db, "listing_attribute_values").await;
}

async fn refused_values_change_nothing(db: TestDb) {
    let (storage, data) = seeded(&db, true).await;
    let listing = car_listing(&data);
    let entity = EntityRef::listing(listing);
    let before = storage
        .entity_values(entity, LEGACY)
        .await
        .expect("read")
        .data;
    let cases = [
        (
            json!({"year": "old", "car_make": "tesla"}),
            "year",
            "errors.invalidValueType",
        ),
        (
            json!({"year": 1949, "car_make": "tesla"}),
            "year",
            "errors.valueBelowMinimum",
        ),
        (
            json!({"year": 2010, "car_make": "lada"}),
            "car_make",
            "errors.optionNotAllowed",
        ),
        (
            json!({"year": 2010, "wings": 2}),
            "wings",
            "errors.unknownAttribute",
        ),
        (
            json!({"car_make": "tesla"}),
            "year",
            "errors.requiredAttributeMissing",
        ),
    ];
    for (input, field, key) in cases {
        match storage
            .replace_values(entity, &object(input.clone()), WriteMode::Dual)
            .await
        {
            Err(StorageError::InvalidValues(errors)) => assert!(
                errors.iter().any(|e| e.field == field && e.key == key),
                "{input}: {errors:?}"
            ),
            other => panic!("{input} was not refused: {other:?}"),
        }
    }
    assert_eq!(
        storage
            .entity_values(entity, LEGACY)
            .await
            .expect("read")
            .data,
        before
    );
    assert_eq!(
        storage
            .entity_values(entity, UNIFIED)
            .await
            .expect("read")
            .data,
        before
    );
}

async fn numeric_20_5_values_and_units_round_trip_exactly_in_both_stores(db: TestDb) {
    let (storage, data) = seeded(&db, true).await;
    // A number attribute without bounds, bound on the automotive root.
    db.raw()
        .await
        .execute(
            "INSERT INTO category_attributes (id, name, display_name, attribute_type, options, validation_rules)
             VALUES (2299, 'cargo_volume', 'Zapremina', 'number', '{}', '{}');
             INSERT INTO category_attribute_mapping (category_id, attribute_id, sort_order) VALUES (1003, 2299, 20);",
        )
        .await;
    let listing = car_listing(&data);
    let input: Json = serde_json::from_str(
        r#"{"year": 2020, "cargo_volume": {"value": 123456789012345.12345, "unit": "m³"},
            "mileage": {"value": "0.00001", "unit": "km"}}"#,
    )
    .expect("json");
    storage
        .replace_values(EntityRef::listing(listing), &object(input), WriteMode::Dual)
        .await
        .expect("dual write");
    let expected = TypedValue::new(Value::Number(
        Decimal::from_str("123456789012345.12345").expect("decimal"),
    ))
    .with_unit("m³");
    for route in [LEGACY, UNIFIED] {
        let values = storage
            .entity_values(EntityRef::listing(listing), route)
            .await
            .expect("read")
            .data;
        assert_eq!(values["cargo_volume"], expected, "{route:?}");
        assert_eq!(
            values["mileage"].value,
            Value::Number(Decimal::from_str("0.00001").expect("decimal"))
        );
        assert_eq!(values["mileage"].unit.as_deref(), Some("km"));
    }
    let raw = db.raw().await;
    let stored = raw
        .texts(&format!(
            "SELECT CAST(numeric_value AS TEXT) || ' ' || unit FROM unified_attribute_values
             WHERE entity_id = {listing} AND attribute_id = 2299
             UNION ALL
             SELECT CAST(numeric_value AS TEXT) || ' ' || unit FROM listing_attribute_values
             WHERE listing_id = {listing} AND attribute_id = 2299"
        ))
        .await;
    assert_eq!(
        stored,
        [
            Some("123456789012345.12345 m³".to_string()),
            Some("123456789012345.12345 m³".to_string())
        ]
    );
}

async fn fallback_answers_from_legacy_when_unified_has_nothing(db: TestDb) {
    let (storage, data) = seeded(&db, true).await;
    let listing = car_listing(&data);
    db.raw()
        .await
        .execute(&format!(
            "DELETE FROM unified_attribute_values WHERE entity_id = {listing}"
        ))
        .await;
    let entity = EntityRef::listing(listing);
    let with_fallback = storage
        .entity_values(entity, ReadRoute::new(Store::Unified, true))
        .await
        .expect("read");
    assert_eq!(
        with_fallback.served_by,
        ServedBy::Fallback(FallbackReason::UnifiedEmpty)
    );
    assert!(!with_fallback.data.is_empty());
    let without = storage.entity_values(entity, UNIFIED).await.expect("read");
    assert_eq!(without.served_by, ServedBy::Unified);
    assert!(without.data.is_empty());

    // A broken unified table is an error, answered from legacy only with fallback on.
    db.raw()
        .await
        .execute("DROP TABLE unified_attribute_values")
        .await;
    let answered = storage
        .entity_values(entity, ReadRoute::new(Store::Unified, true))
        .await
        .expect("read");
    assert_eq!(
        answered.served_by,
        ServedBy::Fallback(FallbackReason::UnifiedError)
    );
    assert!(storage.entity_values(entity, UNIFIED).await.is_err());
}

async fn a_dual_write_creates_the_unified_definition_before_any_backfill(db: TestDb) {
    let (storage, data) = seeded(&db, false).await;
    let listing = car_listing(&data);
    storage
        .replace_values(
            EntityRef::listing(listing),
            &car_values(2015),
            WriteMode::Dual,
        )
        .await
        .expect("dual write before backfill");
    assert_eq!(
        stored_years(&db, listing).await,
        (Some("2015".into()), Some("2015".into()))
    );
    let ids = db
        .raw()
        .await
        .texts("SELECT CAST(id AS TEXT) || ':' || code FROM unified_attributes ORDER BY id")
        .await;
    assert_eq!(
        ids,
        [
            Some("2201:car_make".into()),
            Some("2202:year".into()),
            Some("2203:mileage".into())
        ]
    );
}

async fn product_and_variant_values_are_written_to_both_stores(db: TestDb) {
    let (storage, data) = seeded(&db, true).await;
    let product = EntityRef::product(data.products[0].id);
    let input = object(json!({"brand": "Xiaomi", "storage_gb": 256, "condition": "new"}));
    let written = storage
        .replace_values(product, &input, WriteMode::Dual)
        .await
        .expect("product write");
    for route in [LEGACY, UNIFIED] {
        assert_eq!(
            storage
                .entity_values(product, route)
                .await
                .expect("read")
                .data,
            written
        );
    }
    let document = db
        .raw()
        .await
        .texts(&format!(
            "SELECT CAST(attributes AS TEXT) FROM storefront_products WHERE id = {}",
            product.id
        ))
        .await;
    let document: Json =
        serde_json::from_str(document[0].as_deref().expect("document")).expect("json");
    assert_eq!(
        document["2101"],
        json!("Xiaomi"),
        "products are keyed by legacy attribute id: {document}"
    );

    let variant = EntityRef::variant(data.variants[0].id);
    let written = storage
        .replace_values(
            variant,
            &object(json!({"color": ["white"]})),
            WriteMode::Dual,
        )
        .await
        .expect("variant write");
    for route in [LEGACY, UNIFIED] {
        assert_eq!(
            storage
                .entity_values(variant, route)
                .await
                .expect("read")
                .data,
            written
        );
    }
}

/// The marketplace hard-deletes listings and products (it owns them; nothing cascades into the
/// unified values): `validate` counts what is left behind, `sweep-orphans` removes exactly that.
async fn values_of_entities_the_marketplace_deletes_are_counted_then_swept(db: TestDb) {
    let (storage, _) = seeded(&db, true).await;
    let raw = db.raw().await;
    let unified = |kind: &str| {
        format!("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = '{kind}'")
    };
    let (listings_before, products_before) = (
        raw.count(&unified("listing")).await,
        raw.count(&unified("product")).await,
    );
    assert_eq!(storage.orphaned_values().await.expect("count"), 0);
    let listing = raw
        .count("SELECT MIN(entity_id) FROM unified_attribute_values WHERE entity_type = 'listing'")
        .await;
    let product = raw
        .count("SELECT MIN(entity_id) FROM unified_attribute_values WHERE entity_type = 'product'")
        .await;
    let of = |kind: &str, id: i64| {
        format!(
            "SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = '{kind}' AND entity_id = {id}"
        )
    };
    let (listing_values, product_values) = (
        raw.count(&of("listing", listing)).await,
        raw.count(&of("product", product)).await,
    );
    assert!(listing_values > 0 && product_values > 0);
    raw.execute(&format!(
        "DELETE FROM listing_attribute_values WHERE listing_id = {listing};
         DELETE FROM marketplace_listings WHERE id = {listing};
         DELETE FROM storefront_product_variants WHERE product_id = {product};
         DELETE FROM storefront_products WHERE id = {product};"
    ))
    .await;
    let left_behind = storage.orphaned_values().await.expect("count");
    assert!(
        left_behind >= listing_values + product_values,
        "{left_behind}"
    );

    let counted = storage.sweep_orphans(true).await.expect("dry run");
    assert_eq!(counted.total(), left_behind);
    assert_eq!(counted.listing, listing_values);
    assert_eq!(
        storage.orphaned_values().await.expect("count"),
        left_behind,
        "a dry run removes nothing"
    );

    let swept = storage.sweep_orphans(false).await.expect("sweep");
    assert_eq!(swept, counted);
    assert_eq!(storage.orphaned_values().await.expect("count"), 0);
    assert_eq!(
        raw.count(&unified("listing")).await,
        listings_before - listing_values
    );
    assert_eq!(
        raw.count(&unified("product")).await,
        products_before - product_values,
        "only the deleted entities' values went"
    );
    assert_eq!(
        storage.sweep_orphans(false).await.expect("again").total(),
        0
    );
}
