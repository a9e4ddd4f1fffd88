//! The marketplace's own database as it was on 2025-08-03 (LEGACY.md): an older schema (integer
//! ids, timestamps without time zone, no `is_variant_compatible` / `affects_stock` columns, no
//! foreign key from a binding to its category or from a value to its listing, NULL documents,
//! `attribute_option_translations`) and the defects of its data. The walk: migrate, dual-write,
//! backfill, verify clean, legacy = migrated + quarantined per table, both stores answer alike.

use std::collections::BTreeMap;

use domain::{EntityKind, EntityRef, Language};
use flags::{Store, WriteMode};
use serde_json::json;
use storage::ReadRoute;

use crate::common::{Backend, TestDb, backfill_and_verify};
use crate::{LEGACY, UNIFIED, object};

/// The legacy tables as the monolith had them in 2025-08, created before the service migrates.
const SCHEMA_2025_08: &str = "
CREATE SEQUENCE global_product_id_seq;
CREATE TABLE marketplace_categories (
    id integer PRIMARY KEY, parent_id integer REFERENCES marketplace_categories (id),
    name varchar(100) NOT NULL, slug varchar(100) NOT NULL, level integer DEFAULT 0,
    created_at timestamp DEFAULT now());
CREATE TABLE marketplace_listings (
    id integer PRIMARY KEY DEFAULT nextval('global_product_id_seq'), user_id integer,
    storefront_id integer, category_id integer REFERENCES marketplace_categories (id),
    title varchar(255) NOT NULL, status varchar(20) DEFAULT 'active',
    created_at timestamp DEFAULT now());
CREATE TABLE storefront_products (
    id integer PRIMARY KEY DEFAULT nextval('global_product_id_seq'), storefront_id integer,
    category_id integer REFERENCES marketplace_categories (id), attributes jsonb,
    created_at timestamp DEFAULT now());
CREATE TABLE storefront_product_variants (
    id integer PRIMARY KEY DEFAULT nextval('global_product_id_seq'),
    product_id integer REFERENCES storefront_products (id), variant_attributes jsonb);
CREATE TABLE category_attributes (
    id serial PRIMARY KEY, name varchar(100) NOT NULL UNIQUE, display_name varchar(255) NOT NULL,
    attribute_type varchar(50) NOT NULL, options jsonb, validation_rules jsonb,
    is_searchable boolean DEFAULT false, is_filterable boolean DEFAULT true,
    is_required boolean DEFAULT false, sort_order integer DEFAULT 0,
    created_at timestamp DEFAULT now(), custom_component varchar(255),
    show_in_card boolean DEFAULT true, show_in_list boolean DEFAULT false, icon varchar(10),
    affects_stock boolean DEFAULT false);
CREATE TABLE category_attribute_mapping (
    category_id integer NOT NULL,
    attribute_id integer NOT NULL REFERENCES category_attributes (id) ON DELETE CASCADE,
    is_enabled boolean DEFAULT true, is_required boolean DEFAULT false, sort_order integer DEFAULT 0,
    custom_component varchar(255), show_in_card boolean, show_in_list boolean,
    PRIMARY KEY (category_id, attribute_id));
CREATE TABLE listing_attribute_values (
    id serial PRIMARY KEY, listing_id integer NOT NULL,
    attribute_id integer NOT NULL REFERENCES category_attributes (id) ON DELETE CASCADE,
    text_value text, numeric_value numeric(20, 5), boolean_value boolean, json_value jsonb,
    unit varchar(20), value_type varchar(20) NOT NULL DEFAULT 'text',
    UNIQUE (listing_id, attribute_id));
CREATE TABLE product_variant_attributes (
    id serial PRIMARY KEY, name varchar(100) NOT NULL, display_name varchar(255) NOT NULL,
    type varchar(50) NOT NULL, is_required boolean DEFAULT false, sort_order integer DEFAULT 0,
    created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now());
CREATE TABLE product_variant_attribute_values (
    id serial PRIMARY KEY, attribute_id integer REFERENCES product_variant_attributes (id),
    value varchar(255) NOT NULL, display_name varchar(255), color_hex varchar(7),
    image_url text, sort_order integer DEFAULT 0, is_active boolean DEFAULT true);
CREATE TABLE translations (
    id serial PRIMARY KEY, entity_type varchar(50) NOT NULL, entity_id integer NOT NULL,
    language varchar(5) NOT NULL, field_name varchar(100) NOT NULL, translated_text text NOT NULL,
    UNIQUE (entity_type, entity_id, language, field_name));
CREATE TABLE attribute_option_translations (
    id serial PRIMARY KEY, attribute_name varchar(100) NOT NULL, option_value varchar(255) NOT NULL,
    ru_translation text, sr_translation text, created_at timestamp DEFAULT now(),
    UNIQUE (attribute_name, option_value));
";

/// Data with each class of the real defects.
const DATA: &str = r#"
INSERT INTO marketplace_categories (id, parent_id, name, slug, level) VALUES
    (1003, NULL, 'Automotive', 'automotive', 0), (1301, 1003, 'Cars', 'cars', 1);
INSERT INTO category_attributes (id, name, display_name, attribute_type, options, validation_rules) VALUES
    (2201, 'fuel_type', 'Gorivo', 'select', '{"values": ["diesel", "petrol"]}', '{}'),
    (2202, 'year', 'Godište', 'number', '{}', '{"min": 1950, "max": 2026}'),
    (2203, 'brand', 'Brend', 'select', '["samsung", "apple"]', NULL),
    (2204, 'condition', 'Stanje', 'select',
        '[{"label": "Novo", "value": "new"}, {"label": "Polovno", "value": "used"}]', NULL);
-- The last binding names a category that does not exist (no foreign key in the real schema).
INSERT INTO category_attribute_mapping (category_id, attribute_id, sort_order) VALUES
    (1301, 2201, 1), (1301, 2202, 2), (1301, 2203, 3), (1003, 2204, 1), (9999, 2201, 1);
INSERT INTO attribute_option_translations (attribute_name, option_value, ru_translation, sr_translation) VALUES
    ('fuel_type', 'diesel', 'Дизель', 'Dizel'), ('condition', 'used', 'Б/у', 'Polovno');
INSERT INTO marketplace_listings (id, category_id, title, user_id) VALUES
    (100, 1301, 'Golf', 7), (101, 1301, 'Octavia', 8);
-- Cyrillic spellings the option translations resolve, a year below the minimum, a car make
-- under an electronics brand list, and a value of a listing that no longer exists.
INSERT INTO listing_attribute_values (listing_id, attribute_id, text_value, numeric_value, value_type) VALUES
    (100, 2201, 'дизель', NULL, 'text'), (100, 2204, 'Б/у', NULL, 'text'),
    (100, 2202, NULL, 1, 'numeric'), (100, 2203, 'Volkswagen', NULL, 'text'),
    (101, 2201, 'petrol', NULL, 'text'), (101, 2202, '2015', NULL, 'text'),
    (555, 2201, 'diesel', NULL, 'text');
INSERT INTO storefront_products (id, category_id, attributes) VALUES
    (200, 1301, NULL), (201, 1301, '{"2202": 2010}');
INSERT INTO storefront_product_variants (id, product_id, variant_attributes) VALUES (300, 201, NULL);
"#;

#[tokio::test]
async fn the_2025_08_database_migrates_with_its_defects_quarantined_and_both_stores_agree() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA_2025_08).await;
    raw.execute(DATA).await;
    let storage = db.storage().await;
    assert!(
        raw.count(
            "SELECT COUNT(*) FROM information_schema.columns
             WHERE table_name = 'category_attributes' AND column_name = 'is_variant_compatible'"
        )
        .await
            == 0,
        "migrate never alters the marketplace's tables"
    );
    storage
        .note_write_mode(WriteMode::Dual)
        .await
        .expect("phase 1");
    // A dual-write on the old schema (integer ids, no timestamps on values) before the backfill.
    storage
        .write_values(
            EntityRef::listing(101),
            storage::ValuesChange::Merge(&object(json!({"year": 2016}))),
            WriteMode::Dual,
        )
        .await
        .expect("a dual-write on the 2025-08 schema");
    backfill_and_verify(&storage).await;

    let quarantine: BTreeMap<(String, String), i64> = storage
        .quarantine_by_reason(50)
        .await
        .expect("quarantine")
        .into_iter()
        .map(|q| ((q.entity_type, q.reason), q.count))
        .collect();
    let count = |kind: &str, reason: &str| {
        quarantine
            .iter()
            .filter(|((k, r), _)| k == kind && r.contains(reason))
            .map(|(_, n)| n)
            .sum::<i64>()
    };
    assert_eq!(
        count("binding", "the category does not exist"),
        1,
        "{quarantine:?}"
    );
    assert_eq!(
        count("listing", "the listing does not exist"),
        1,
        "{quarantine:?}"
    );
    assert_eq!(
        quarantine
            .iter()
            .filter(|((k, _), _)| k == "listing")
            .map(|(_, n)| n)
            .sum::<i64>(),
        3,
        "the orphan, the year below 1950, the car make among phone brands: {quarantine:?}"
    );

    // legacy = migrated + quarantined, per table.
    let legacy_values = raw
        .count("SELECT COUNT(*) FROM listing_attribute_values")
        .await;
    let unified_values = raw
        .count("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'listing'")
        .await;
    let quarantined_values = raw
        .count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'")
        .await;
    assert_eq!(legacy_values, unified_values + quarantined_values);
    let legacy_bindings = raw
        .count("SELECT COUNT(*) FROM category_attribute_mapping")
        .await;
    let unified_bindings = raw
        .count("SELECT COUNT(*) FROM unified_category_attributes")
        .await;
    let quarantined_bindings = raw
        .count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'binding'")
        .await;
    assert_eq!(legacy_bindings, unified_bindings + quarantined_bindings);

    // Spellings resolved through the option translations: unified stores the option, and a
    // legacy read means the same one (the API serves legacy values through the same mapping).
    let legacy_catalog = storage.backfill_catalog().await.expect("legacy catalog");
    for route in [LEGACY, UNIFIED] {
        let mut values = storage
            .entity_values(EntityRef::listing(100), route)
            .await
            .expect("listing 100")
            .data;
        for (code, typed) in values.iter_mut() {
            domain::canonical_spellings(&legacy_catalog[code].options, &mut typed.value);
        }
        assert_eq!(
            values["fuel_type"].value.to_json(),
            json!("diesel"),
            "{route:?}"
        );
        assert_eq!(
            values["condition"].value.to_json(),
            json!("used"),
            "{route:?}"
        );
    }
    let catalog = storage
        .catalog(ReadRoute::new(Store::Unified, false))
        .await
        .expect("catalog")
        .data;
    let fuel = catalog
        .iter()
        .find(|a| a.code == "fuel_type")
        .expect("fuel_type");
    let diesel = fuel
        .options
        .iter()
        .find(|o| o.value == "diesel")
        .expect("diesel");
    assert_eq!(diesel.label.get(Language::Ru), Some("Дизель"));

    // Both stores give every category the same attributes, and the NULL documents read empty.
    for category in [1003, 1301] {
        let codes = |store| {
            let storage = storage.clone();
            async move {
                let schema = storage
                    .category_schema(category, ReadRoute::new(store, false))
                    .await
                    .expect("schema")
                    .data;
                schema
                    .attributes
                    .iter()
                    .map(|a| a.attribute.code.clone())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            codes(Store::Legacy).await,
            codes(Store::Unified).await,
            "{category}"
        );
    }
    for (entity, expected) in [
        (EntityRef::product(200), json!({})),
        (EntityRef::product(201), json!({"year": 2010})),
        (EntityRef::variant(300), json!({})),
    ] {
        let values = storage
            .entity_values(entity, UNIFIED)
            .await
            .map(|read| read.data)
            .unwrap_or_default();
        let values: serde_json::Map<String, serde_json::Value> = values
            .iter()
            .map(|(code, typed)| (code.clone(), typed.value.to_json()))
            .collect();
        assert_eq!(serde_json::Value::Object(values), expected, "{entity:?}");
    }
    let done = storage
        .backfill_checkpoint(EntityKind::Listing, false)
        .await
        .expect("checkpoint");
    assert!(done.completed, "{done:?}");

    // Admin writes of definitions reach the old table too, without the columns it lacks.
    let draft = |label: &str| -> domain::AttributeDraft {
        serde_json::from_value(json!({
            "code": "seats", "type": "number", "display_name": {"sr": label, "en": "Seats"}
        }))
        .expect("draft")
    };
    let seats = storage
        .create_attribute(draft("Sedišta"), WriteMode::Dual)
        .await
        .expect("create on the 2025-08 schema")
        .data;
    storage
        .update_attribute(seats.id, draft("Broj sedišta"), WriteMode::Dual)
        .await
        .expect("update on the 2025-08 schema");
    assert_eq!(
        raw.texts(&format!(
            "SELECT display_name FROM category_attributes WHERE id = {}",
            seats.id
        ))
        .await,
        [Some("Broj sedišta".to_owned())]
    );

    // Resolving the quarantine: the car make is a legitimate value, so the operator adds it as
    // an option (dual-write: both stores), then retries only the quarantined values.
    let brand: domain::AttributeDraft = serde_json::from_value(json!({
        "code": "brand", "type": "select", "display_name": {"sr": "Brend"},
        "options": [{"value": "samsung", "label": {"sr": "samsung"}},
                    {"value": "apple", "label": {"sr": "apple"}},
                    {"value": "volkswagen", "label": {"sr": "Volkswagen"}}]
    }))
    .expect("brand draft");
    storage
        .update_attribute(2203, brand, WriteMode::Dual)
        .await
        .expect("an option added");
    let listing_quarantine =
        "SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'";
    assert_eq!(raw.count(listing_quarantine).await, 3);
    let brand_quarantine = storage
        .quarantine_by_attribute(Some("brand"), 10)
        .await
        .expect("quarantine of brand");
    assert_eq!(
        brand_quarantine
            .iter()
            .map(|g| (g.raw_value.as_str(), g.count))
            .collect::<Vec<_>>(),
        [("text=Volkswagen", 1)],
        "{brand_quarantine:?}"
    );
    storage.backfill_definitions().await.expect("definitions");
    let catalog = storage.backfill_catalog().await.expect("catalog");
    let mut after = 0;
    while let (Some(last), _, _) = storage
        .retry_quarantined(EntityKind::Listing, after, 10, &catalog)
        .await
        .expect("retry")
    {
        after = last;
    }
    assert_eq!(
        raw.count(listing_quarantine).await,
        2,
        "Volkswagen migrated; the year below 1950 and the orphan stay"
    );
    assert!(
        storage
            .quarantine_by_attribute(Some("brand"), 10)
            .await
            .expect("quarantine of brand")
            .is_empty()
    );
    let unified = storage
        .entity_values(EntityRef::listing(100), UNIFIED)
        .await
        .expect("listing 100")
        .data;
    assert_eq!(unified["brand"].value.to_json(), json!("volkswagen"));
    let verified = storage.verify(50, |_| {}).await.expect("verify");
    assert!(verified.is_clean(), "{:?}", verified.drift);
}

/// A legacy table without a column the service cannot do without: `migrate` refuses, naming
/// table and column, and alters nothing.
#[tokio::test]
async fn a_legacy_table_without_an_indispensable_column_is_refused_by_name() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA_2025_08).await;
    raw.execute("ALTER TABLE listing_attribute_values DROP COLUMN value_type")
        .await;
    let storage = storage::Storage::connect(&db.url, storage::PoolSettings::new(2))
        .await
        .expect("connect");
    let refusal = storage
        .migrate()
        .await
        .expect_err("value_type is indispensable")
        .to_string();
    assert!(
        refusal.contains("listing_attribute_values.value_type")
            && !refusal.contains("category_attributes"),
        "{refusal}"
    );
    assert_eq!(
        raw.count(
            "SELECT COUNT(*) FROM information_schema.columns
             WHERE table_name = 'listing_attribute_values' AND column_name = 'value_type'"
        )
        .await,
        0,
        "the marketplace's table is left as it is"
    );
}
