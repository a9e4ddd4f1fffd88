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
pub const SCHEMA_2025_08: &str = include_str!("../fixtures/legacy_2025_08/schema.sql");

/// Data with each class of the real defects.
pub const DATA: &str = include_str!("../fixtures/legacy_2025_08/data.sql");

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
        count("product", "the attribute document is not a JSON object"),
        1,
        "{quarantine:?}"
    );
    assert_eq!(
        quarantine
            .iter()
            .filter(|((k, _), _)| k == "listing")
            .map(|(_, n)| n)
            .sum::<i64>(),
        4,
        "the orphan, the year below 1950, the car make among phone brands, `БУ`: {quarantine:?}"
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
    // Products: each key of a document is a value; a document that is not an object is one
    // unreadable value; a NULL document holds none.
    let legacy_product_values = raw
        .count(
            "SELECT CAST(COALESCE(SUM(CASE
                WHEN attributes IS NULL THEN 0
                WHEN jsonb_typeof(attributes) = 'object'
                    THEN (SELECT COUNT(*) FROM jsonb_object_keys(attributes))
                ELSE 1 END), 0) AS BIGINT)
             FROM storefront_products",
        )
        .await;
    let unified_product_values = raw
        .count("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'product'")
        .await;
    let quarantined_product_values = raw
        .count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'product'")
        .await;
    assert_eq!(
        (
            legacy_product_values,
            unified_product_values,
            quarantined_product_values
        ),
        (2, 1, 1),
        "legacy = migrated + quarantined for products"
    );

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
    for category in [1003, 1301, 1302] {
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

    // Resolving the quarantine, as an operator does: an alias for a spelling no label explains,
    // an option for a legitimate value, the car make moved to the attribute it belongs to.
    let listing_quarantine =
        "SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'";
    assert_eq!(raw.count(listing_quarantine).await, 4);
    let refused = storage
        .add_alias("condition", "Polovno", "new", "ops", WriteMode::Dual, false)
        .await
        .expect_err("`Polovno` is the label of `used`");
    assert!(
        matches!(refused, storage::StorageError::Conflict(_)),
        "{refused}"
    );
    let refused = storage
        .add_alias("condition", "БУ", "rabljeno", "ops", WriteMode::Dual, false)
        .await
        .expect_err("no such option");
    assert!(
        matches!(refused, storage::StorageError::InvalidValues(_)),
        "{refused}"
    );
    let alias = storage
        .add_alias("condition", "БУ", "used", "ops", WriteMode::Dual, false)
        .await
        .expect("an alias")
        .data;
    assert_eq!(alias.detail["quarantined_matching"], 1, "{alias:?}");
    let again = storage
        .add_alias("condition", "бу", "used", "ops", WriteMode::Dual, false)
        .await
        .expect("the same alias again")
        .data;
    assert!(
        again.repeated && again.id == alias.id,
        "one idempotent answer: {again:?}"
    );
    storage
        .add_option(
            "car_make",
            "volkswagen",
            domain::LocalizedText::serbian("Volkswagen"),
            "ops",
            WriteMode::Dual,
            false,
        )
        .await
        .expect("an option for a legitimate make");
    let again = storage
        .add_option(
            "car_make",
            "volkswagen",
            domain::LocalizedText::serbian("Volkswagen"),
            "ops",
            WriteMode::Dual,
            false,
        )
        .await
        .expect("the same option again")
        .data;
    assert!(again.repeated, "one idempotent answer: {again:?}");
    let refused = storage
        .add_option(
            "car_make",
            "Volkswagen",
            domain::LocalizedText::new(),
            "ops",
            WriteMode::Dual,
            false,
        )
        .await
        .expect_err("the option exists in another case");
    assert!(
        matches!(refused, storage::StorageError::Conflict(_)),
        "{refused}"
    );
    let request = |raw: &str, dry_run: bool| storage::resolve::MoveRequest {
        from: "brand".into(),
        to: "car_make".into(),
        raw_value: Some(raw.into()),
        dry_run,
        ..Default::default()
    };
    // As users saw the value, in another case and with a trailing space; the stored form
    // (`text=Volkswagen`) matches nothing.
    let unmatched = storage
        .move_values(&request("text=Volkswagen", false), "ops", WriteMode::Dual)
        .await
        .expect("a move that matches nothing")
        .data
        .1;
    assert_eq!(
        unmatched.nothing_matched,
        Some(vec!["Volkswagen".to_owned()]),
        "it lists the values as users saw them"
    );
    let dry = storage
        .move_values(&request("volkswagen ", true), "ops", WriteMode::Dual)
        .await
        .expect("a dry run")
        .data
        .1;
    assert_eq!((dry.dry_run, dry.moved.clone()), (true, vec![100]));
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM listing_attribute_values WHERE listing_id = 100 AND attribute_id = 2205")
            .await,
        0,
        "a dry run changes nothing"
    );
    let moved = storage
        .move_values(&request("volkswagen ", false), "ops", WriteMode::Dual)
        .await
        .expect("the make moved to car_make")
        .data
        .1;
    assert_eq!(
        (moved.moved, moved.migrated, moved.quarantined),
        (vec![100], 3, 1),
        "listing 100 migrated again: fuel, condition, the make; its year stays quarantined"
    );
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM listing_attribute_values WHERE listing_id = 100 AND attribute_id = 2205")
            .await,
        1,
        "the legacy row now names car_make"
    );
    assert_eq!(
        raw.count(listing_quarantine).await,
        3,
        "the move migrated the make at once"
    );
    // A dual-write spelled as the alias is stored as the option, in both stores.
    storage
        .write_values(
            EntityRef::listing(101),
            storage::ValuesChange::Merge(&object(json!({"condition": "бу"}))),
            WriteMode::Dual,
        )
        .await
        .expect("an aliased spelling is accepted");
    assert_eq!(
        raw.texts("SELECT text_value FROM listing_attribute_values WHERE listing_id = 101 AND attribute_id = 2204")
            .await,
        [Some("used".to_owned())]
    );
    let catalog = storage.backfill_catalog().await.expect("catalog");
    let mut after = 0;
    while let (Some(last), _, _) = storage
        .retry_quarantined(EntityKind::Listing, after, 10, &catalog)
        .await
        .expect("retry")
    {
        after = last;
    }
    let left: Vec<(String, String)> = raw
        .texts(
            "SELECT attribute_code || ' ' || reason FROM backfill_quarantine
             WHERE entity_type = 'listing' ORDER BY entity_id",
        )
        .await
        .into_iter()
        .flatten()
        .map(|line| {
            let (code, reason) = line.split_once(' ').expect("code and reason");
            (code.to_owned(), reason.to_owned())
        })
        .collect();
    assert_eq!(
        left.len(),
        2,
        "the year below 1950 and the orphan stay: {left:?}"
    );
    assert!(
        left[0].0 == "year" && left[1].1.contains("the listing does not exist"),
        "{left:?}"
    );
    for (listing, code, expected) in [
        (100, "car_make", json!("volkswagen")),
        (102, "condition", json!("used")),
        (101, "condition", json!("used")),
    ] {
        let unified = storage
            .entity_values(EntityRef::listing(listing), UNIFIED)
            .await
            .expect("listing")
            .data;
        assert_eq!(unified[code].value.to_json(), expected, "{listing} {code}");
    }
    assert_eq!(
        legacy_values_count(&raw).await,
        raw.count("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'listing'")
            .await
            + raw.count(listing_quarantine).await,
        "legacy = migrated + quarantined after the resolution"
    );
    let verified = storage.verify(50, |_| {}).await.expect("verify");
    assert!(verified.is_clean(), "{:?}", verified.drift);
    let resolutions = storage.resolutions(10).await.expect("resolutions");
    assert_eq!(
        resolutions
            .iter()
            .rev()
            .map(|r| (
                r.action.as_str(),
                r.attribute_code.as_str(),
                r.resolved_by.as_str()
            ))
            .collect::<Vec<_>>(),
        [
            ("alias", "condition", "ops"),
            ("option", "car_make", "ops"),
            ("move", "brand", "ops")
        ],
        "refusals leave no record"
    );
    the_cut_over_hides_nothing(&storage, &raw).await;
}

const FALLBACK: ReadRoute = ReadRoute {
    store: Store::Unified,
    fallback: true,
};

/// After the resolutions, the year below 1950 is what users still see in legacy and unified
/// cannot hold: unified reads without fallback wait for an operator's decision, a canary with
/// fallback answers that listing from legacy, and an acceptance lets the cut-over go on.
async fn the_cut_over_hides_nothing(storage: &storage::Storage, raw: &crate::common::Raw) {
    // Undo: the alias cannot go (listing 102's `БУ` was migrated through it); the move goes
    // back whole (the make is quarantined under `brand` again), once; then it is made again.
    let history = storage.resolutions(10).await.expect("history");
    let id_of = |action: &str| {
        history
            .iter()
            .find(|r| r.action == action)
            .map(|r| r.id)
            .expect("recorded")
    };
    let refused = storage
        .undo_resolution(id_of("alias"), "ops", WriteMode::Dual)
        .await
        .expect_err("values were migrated through the alias");
    assert!(
        refused.to_string().contains("migrated through"),
        "{refused}"
    );
    let undone = storage
        .undo_resolution(id_of("move"), "ops", WriteMode::Dual)
        .await
        .expect("the move undone")
        .data;
    assert_eq!((undone.action.as_str(), undone.affected), ("undo", 1));
    let again = storage
        .undo_resolution(id_of("move"), "ops", WriteMode::Dual)
        .await
        .expect("undone already")
        .data;
    assert!(again.repeated && again.id == undone.id, "{again:?}");
    assert_eq!(
        raw.count(
            "SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'
             AND entity_id = 100 AND attribute_code = 'brand' AND shown_value = 'Volkswagen'"
        )
        .await,
        1,
        "the make is quarantined under brand again"
    );
    storage
        .move_values(
            &storage::resolve::MoveRequest {
                from: "brand".into(),
                to: "car_make".into(),
                raw_value: Some("Volkswagen".into()),
                ..Default::default()
            },
            "ops",
            WriteMode::Dual,
        )
        .await
        .expect("moved again");

    let unified_reads = flags::Flags {
        use_unified: true,
        unified_percent: 100,
        fallback: false,
        dual_write: true,
        shadow_percent: 0,
    };
    let refused = storage
        .change_flags(flags::Flags::default(), "ops", |_| unified_reads)
        .await
        .expect_err("a quarantined value users see is neither resolved nor accepted");
    match &refused {
        storage::StorageError::QuarantineUnsettled(counts) => {
            let kinds: Vec<(&str, i64)> =
                counts.iter().map(|c| (c.kind.as_str(), c.count)).collect();
            assert!(
                counts
                    .iter()
                    .any(|c| (c.attribute_code.as_str(), c.kind.as_str(), c.count)
                        == ("year", "invalid", 1)),
                "{counts:?}"
            );
            assert_eq!(
                kinds.iter().map(|(_, n)| n).sum::<i64>(),
                2,
                "the year and the product document that is not an object; the orphans do not \
                 count, nobody saw them: {counts:?}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(
        refused.to_string().contains("year (invalid) 1"),
        "{refused}"
    );

    // The canary with fallback: the listing with the quarantined year answers from legacy.
    let canary = storage
        .entity_values(EntityRef::listing(100), FALLBACK)
        .await
        .expect("listing 100");
    assert_eq!(
        canary.served_by,
        storage::ServedBy::Fallback(storage::FallbackReason::Quarantined)
    );
    assert!(canary.data.contains_key("year"), "{:?}", canary.data);
    let clean = storage
        .entity_values(EntityRef::listing(101), FALLBACK)
        .await
        .expect("listing 101");
    assert_eq!(clean.served_by, storage::ServedBy::Unified);
    let batch = storage
        .listing_values_batch(&[100, 101], FALLBACK)
        .await
        .expect("batch");
    assert!(batch.data[&100].contains_key("year"), "{:?}", batch.data);

    // A move never takes orphans (fuel_type's only entry is the listing that no longer
    // exists), and a year is no car make without --force.
    let orphans = storage
        .move_values(
            &storage::resolve::MoveRequest {
                from: "fuel_type".into(),
                to: "car_make".into(),
                ..Default::default()
            },
            "ops",
            WriteMode::Dual,
        )
        .await
        .expect("a move without a filter")
        .data
        .1;
    assert_eq!(orphans.nothing_matched, Some(Vec::new()));
    let refused = storage
        .move_values(
            &storage::resolve::MoveRequest {
                from: "year".into(),
                to: "car_make".into(),
                ..Default::default()
            },
            "ops",
            WriteMode::Dual,
        )
        .await
        .expect_err("a number into a select");
    assert!(refused.to_string().contains("--force"), "{refused}");

    let accepted = storage
        .accept_quarantined(
            &storage::quarantine::AcceptFilter {
                attribute: Some("year".into()),
                kind: None,
            },
            false,
            Some("a year of 1 was never a year"),
            "ops",
            false,
        )
        .await
        .expect("accepted");
    assert_eq!((accepted.action.as_str(), accepted.affected), ("accept", 1));
    let again = storage
        .accept_quarantined(
            &storage::quarantine::AcceptFilter {
                attribute: Some("year".into()),
                kind: None,
            },
            false,
            None,
            "ops",
            false,
        )
        .await
        .expect("accepted again");
    assert!(again.repeated && again.id == accepted.id, "{again:?}");
    // An acceptance undone holds unified reads up again, and is accepted anew.
    storage
        .undo_resolution(accepted.id, "ops", WriteMode::Dual)
        .await
        .expect("acceptance undone");
    assert_eq!(
        storage
            .unsettled_quarantine()
            .await
            .expect("unsettled")
            .iter()
            .map(|c| c.count)
            .sum::<i64>(),
        2
    );
    let accepted = storage
        .accept_quarantined(
            &storage::quarantine::AcceptFilter {
                attribute: Some("year".into()),
                kind: None,
            },
            false,
            None,
            "ops",
            false,
        )
        .await
        .expect("accepted anew");
    assert!(!accepted.repeated && accepted.affected == 1, "{accepted:?}");
    assert!(
        storage
            .change_flags(flags::Flags::default(), "ops", |_| unified_reads)
            .await
            .is_err(),
        "the product document still holds it up"
    );
    storage
        .accept_quarantined(
            &storage::quarantine::AcceptFilter {
                attribute: None,
                kind: Some(storage::quarantine::QuarantineKind::Unreadable),
            },
            false,
            None,
            "ops",
            false,
        )
        .await
        .expect("accepted by kind");
    let listing = storage.quarantine(None, 50).await.expect("quarantine");
    assert_eq!(
        (listing.seen_by_users, listing.accepted),
        (2, 2),
        "{listing:?}"
    );
    assert!(
        storage
            .unsettled_quarantine()
            .await
            .expect("unsettled")
            .is_empty(),
        "nothing holds up unified reads"
    );
    storage
        .change_flags(flags::Flags::default(), "ops", |_| unified_reads)
        .await
        .expect("unified reads once the rest is accepted");
    let unified = storage
        .entity_values(EntityRef::listing(100), UNIFIED)
        .await
        .expect("listing 100")
        .data;
    assert!(
        !unified.contains_key("year") && unified.contains_key("car_make"),
        "only the accepted value is missing: {unified:?}"
    );
    assert_eq!(
        legacy_values_count(raw).await,
        raw.count("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'listing'")
            .await
            + raw
                .count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'")
                .await,
        "legacy = migrated + quarantined after the acceptance"
    );
}

/// A user deletes, in unified-only writes, a value the backfill had quarantined; after the
/// rollback (`sync-legacy`) legacy must not serve it again. A dual-write that replaces a
/// quarantined value takes its quarantine entry with it.
#[tokio::test]
async fn a_quarantined_value_the_user_deleted_stays_deleted_after_the_rollback() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA_2025_08).await;
    raw.execute(DATA).await;
    let storage = db.storage().await;
    storage
        .note_write_mode(WriteMode::Dual)
        .await
        .expect("phase 1");
    backfill_and_verify(&storage).await;
    let entry = |listing: i64, code: &str| {
        format!(
            "SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'
             AND entity_id = {listing} AND attribute_code = '{code}'"
        )
    };
    assert_eq!(raw.count(&entry(100, "year")).await, 1, "the year of 1");
    assert_eq!(
        raw.count(&entry(100, "brand")).await,
        1,
        "the make under brand"
    );
    storage
        .write_values(
            EntityRef::listing(100),
            storage::ValuesChange::Merge(&object(json!({"brand": "apple"}))),
            WriteMode::Dual,
        )
        .await
        .expect("a dual-write replaces the quarantined brand");
    assert_eq!(
        raw.count(&entry(100, "brand")).await,
        0,
        "the entry went with it"
    );

    crate::common::accept_all_quarantined(&storage).await;
    let phase3 = flags::Flags {
        use_unified: true,
        unified_percent: 100,
        fallback: false,
        dual_write: false,
        shadow_percent: 0,
    };
    storage
        .change_flags(flags::Flags::default(), "ops", |_| phase3)
        .await
        .expect("phase 3");
    storage
        .write_values(
            EntityRef::listing(100),
            storage::ValuesChange::Merge(&object(json!({"year": null}))),
            WriteMode::UnifiedOnly,
        )
        .await
        .expect("the user deletes the year");
    assert_eq!(raw.count(&entry(100, "year")).await, 0);

    // The rollback: dual-write back on, legacy caught up (the product document that is no
    // JSON object is the monolith's to fix by hand first; sync-legacy refuses to touch it).
    raw.execute("UPDATE storefront_products SET attributes = NULL WHERE id = 202")
        .await;
    storage
        .change_flags(flags::Flags::default(), "ops", |_| flags::Flags {
            dual_write: true,
            ..phase3
        })
        .await
        .expect("dual-write back on");
    let report = storage
        .sync_legacy(WriteMode::Dual, 10, false, async |_| {})
        .await
        .expect("sync-legacy");
    assert!(report.complete, "{report:?}");
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM listing_attribute_values WHERE listing_id = 100 AND attribute_id = 2202")
            .await,
        0,
        "the year the user deleted is gone from legacy too"
    );
    let legacy = storage
        .entity_values(EntityRef::listing(100), LEGACY)
        .await
        .expect("legacy read")
        .data;
    assert!(!legacy.contains_key("year"), "{legacy:?}");
    let verified = storage.verify(50, |_| {}).await.expect("verify");
    assert!(verified.is_clean(), "{:?}", verified.drift);
}

async fn legacy_values_count(raw: &crate::common::Raw) -> i64 {
    raw.count("SELECT COUNT(*) FROM listing_attribute_values")
        .await
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

/// Defects at their real proportions.
const PROPORTIONS: &str = include_str!("../fixtures/legacy_2025_08/proportions.sql");

/// legacy = migrated + quarantined, for listing values.
async fn accounted(raw: &crate::common::Raw, after: &str) {
    assert_eq!(
        legacy_values_count(raw).await,
        raw.count("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'listing'")
            .await
            + raw
                .count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'")
                .await,
        "legacy = migrated + quarantined after {after}"
    );
}

/// The codes of a listing's values, from one route.
async fn codes_of(storage: &storage::Storage, listing: i64, route: ReadRoute) -> Vec<String> {
    let mut codes: Vec<String> = storage
        .entity_values(EntityRef::listing(listing), route)
        .await
        .expect("listing")
        .data
        .into_keys()
        .collect();
    codes.sort();
    codes
}

/// The walk at the real proportions: backfill → verify → unified reads refused (by
/// attribute and kind) → a canary with fallback serves every value users saw → resolutions
/// typed as users saw the values → a no-op move → a move without a filter leaves orphans →
/// retry → accept the rest → unified reads → every value users saw reads from unified except
/// the accepted ones; legacy = migrated + quarantined after each command.
#[tokio::test]
async fn at_the_real_proportions_the_cut_over_hides_no_value_users_saw() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA_2025_08).await;
    raw.execute(DATA).await;
    raw.execute(PROPORTIONS).await;
    let storage = db.storage().await;
    storage
        .note_write_mode(WriteMode::Dual)
        .await
        .expect("phase 1");
    backfill_and_verify(&storage).await;
    accounted(&raw, "the backfill").await;
    let listings: Vec<i64> = (100..=102).chain(110..=119).collect();
    let mut seen = 0;
    for &listing in &listings {
        seen += codes_of(&storage, listing, LEGACY).await.len();
    }
    let quarantined_seen = raw
        .count(
            "SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'
             AND kind NOT IN ('orphan', 'empty')",
        )
        .await;
    assert!(
        quarantined_seen * 7 >= seen as i64 * 2,
        "about a third of what users see is quarantined: {quarantined_seen} of {seen}"
    );

    let unified_reads = flags::Flags {
        use_unified: true,
        unified_percent: 100,
        fallback: false,
        dual_write: true,
        shadow_percent: 0,
    };
    let refused = storage
        .change_flags(flags::Flags::default(), "ops", |_| unified_reads)
        .await
        .expect_err("refused");
    assert!(
        refused.to_string().contains("color (invalid) 3")
            && refused.to_string().contains("brand (invalid) 4"),
        "{refused}"
    );
    // The canary with fallback: every listing answers every value users saw.
    for &listing in &listings {
        assert_eq!(
            codes_of(&storage, listing, FALLBACK).await,
            codes_of(&storage, listing, LEGACY).await,
            "listing {listing}"
        );
    }

    // Resolutions, typed as users saw the values.
    let listed = storage.quarantine(Some("color"), 10).await.expect("listed");
    assert!(
        listed.groups.iter().any(|g| g.value == "серый металлик")
            && listed
                .groups
                .iter()
                .any(|g| g.value == "siva" || g.value == "Siva"),
        "{listed:?}"
    );
    storage
        .add_option(
            "color",
            "grey",
            domain::LocalizedText::serbian("Siva"),
            "ops",
            WriteMode::Dual,
            false,
        )
        .await
        .expect("grey");
    for spelling in ["SIVA", "серый металлик "] {
        let alias = storage
            .add_alias("color", spelling, "grey", "ops", WriteMode::Dual, false)
            .await
            .expect("an alias")
            .data;
        assert!(
            alias.detail["quarantined_matching"].as_u64() >= Some(1),
            "{alias:?}"
        );
    }
    storage
        .add_option(
            "car_make",
            "toyota",
            domain::LocalizedText::serbian("Toyota"),
            "ops",
            WriteMode::Dual,
            false,
        )
        .await
        .expect("toyota");
    let moved = storage
        .move_values(
            &storage::resolve::MoveRequest {
                from: "brand".into(),
                to: "car_make".into(),
                raw_value: Some("toyota".into()),
                ..Default::default()
            },
            "ops",
            WriteMode::Dual,
        )
        .await
        .expect("the Toyotas moved")
        .data
        .1;
    assert_eq!(moved.moved, vec![112, 113, 119], "{moved:?}");
    accounted(&raw, "the move").await;
    let nothing = storage
        .move_values(
            &storage::resolve::MoveRequest {
                from: "brand".into(),
                to: "car_make".into(),
                raw_value: Some("Tesla".into()),
                ..Default::default()
            },
            "ops",
            WriteMode::Dual,
        )
        .await
        .expect("a no-op move")
        .data
        .1;
    assert_eq!(nothing.nothing_matched, Some(vec!["Volkswagen".to_owned()]));
    let without_filter = storage
        .move_values(
            &storage::resolve::MoveRequest {
                from: "fuel_type".into(),
                to: "car_make".into(),
                force: true,
                dry_run: true,
                ..Default::default()
            },
            "ops",
            WriteMode::Dual,
        )
        .await
        .expect("a dry run without a filter")
        .data
        .1;
    assert_eq!(
        (without_filter.moved, without_filter.skipped),
        (vec![115], vec![110]),
        "the LPG, and the gas of a listing with a make already; the values of listings that \
         no longer exist stay orphans"
    );
    let catalog = storage.backfill_catalog().await.expect("catalog");
    let mut after = 0;
    while let (Some(last), _, _) = storage
        .retry_quarantined(EntityKind::Listing, after, 10, &catalog)
        .await
        .expect("retry")
    {
        after = last;
    }
    accounted(&raw, "the retry").await;
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM backfill_quarantine WHERE attribute_code = 'color' AND kind = 'invalid'")
            .await,
        0,
        "every grey migrated"
    );
    let accepted = storage
        .accept_quarantined(
            &storage::quarantine::AcceptFilter::default(),
            true,
            Some("reviewed: typos and makes we do not list"),
            "ops",
            false,
        )
        .await
        .expect("accept the rest");
    assert!(accepted.affected >= 4, "{accepted:?}");
    accounted(&raw, "the acceptance").await;
    let verified = storage.verify(50, |_| {}).await.expect("verify");
    assert!(verified.is_clean(), "{:?}", verified.drift);
    storage
        .change_flags(flags::Flags::default(), "ops", |_| unified_reads)
        .await
        .expect("unified reads");
    let accepted_codes = raw.accepted_listing_values().await;
    for &listing in &listings {
        let mut expected = codes_of(&storage, listing, LEGACY).await;
        expected.retain(|code| !accepted_codes.contains(&(listing, code.clone())));
        assert_eq!(
            codes_of(&storage, listing, UNIFIED).await,
            expected,
            "listing {listing}: only the accepted values are missing"
        );
    }
    let grey = storage
        .entity_values(EntityRef::listing(112), UNIFIED)
        .await
        .expect("112")
        .data;
    assert_eq!(grey["color"].value.to_json(), json!("grey"));
    assert_eq!(grey["car_make"].value.to_json(), json!("toyota"));
}

/// An acceptance is of the value the operator saw: a retry that quarantines the same stored
/// value keeps it, but a value the marketplace's own SQL wrote over it (its save deletes and
/// inserts the listing's rows) is looked at again and holds unified reads up.
#[tokio::test]
async fn an_acceptance_holds_for_the_value_accepted_not_for_what_the_monolith_writes_next() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA_2025_08).await;
    raw.execute(DATA).await;
    raw.execute(PROPORTIONS).await;
    let storage = db.storage().await;
    storage
        .note_write_mode(WriteMode::Dual)
        .await
        .expect("phase 1");
    backfill_and_verify(&storage).await;
    crate::common::accept_all_quarantined(&storage).await;
    let retry = async || {
        let catalog = storage.backfill_catalog().await.expect("catalog");
        let mut after = 0;
        while let (Some(last), _, _) = storage
            .retry_quarantined(EntityKind::Listing, after, 10, &catalog)
            .await
            .expect("retry")
        {
            after = last;
        }
    };
    retry().await;
    assert!(
        storage
            .unsettled_quarantine()
            .await
            .expect("unsettled")
            .is_empty(),
        "the same values quarantined again keep their acceptance"
    );
    raw.execute(
        "BEGIN;
         DELETE FROM listing_attribute_values WHERE listing_id = 111;
         INSERT INTO listing_attribute_values (listing_id, attribute_id, text_value, numeric_value, value_type)
         VALUES (111, 2201, 'petrol', NULL, 'text'), (111, 2202, NULL, 457, 'numeric'),
                (111, 2206, 'Siva ', NULL, 'text'), (111, 2205, 'bmw', NULL, 'text');
         COMMIT;",
    )
    .await;
    retry().await;
    let unsettled = storage.unsettled_quarantine().await.expect("unsettled");
    assert_eq!(
        unsettled
            .iter()
            .map(|c| (c.attribute_code.as_str(), c.kind.as_str(), c.count))
            .collect::<Vec<_>>(),
        [("year", "invalid", 1)],
        "the year of 457 is new: {unsettled:?}"
    );
}
