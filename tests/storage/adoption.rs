//! Adopting the database as Day 15 found it (LEGACY.md, "What the monolith had done by Day
//! 15"): the marketplace's own `unified_*` tables already in `public`, a source beside the
//! legacy tables. The walk: migrate (the plan names what is there) → dual-write → backfill →
//! verify clean → its definitions and values served → the conflict reported → unified reads
//! → archive → restore, every row of its tables and its foreign key intact. Also: its archive
//! migration having moved legacy tables away (a refusal that says how to proceed), and an
//! installation of the earlier layout (our tables in `public`) moving into its schema.

use domain::{EntityKind, EntityRef, Language};
use flags::{Flags, Store, WriteMode};
use serde_json::json;
use storage::{ReadRoute, Storage, StorageError, Topology};

use crate::common::{Backend, Raw, TestDb, accept_all_quarantined, run_backfill};
use crate::object;
use crate::real_schema::{DATA, SCHEMA_2025_08};

/// The monolith's tables and rows, on top of the 2025-08 legacy schema and data.
const MONOLITH: &str = include_str!("../fixtures/day15/monolith.sql");

const UNIFIED_PHASE: Flags = Flags {
    use_unified: true,
    unified_percent: 100,
    fallback: false,
    dual_write: false,
    shadow_percent: 0,
};

const UNIFIED: ReadRoute = ReadRoute {
    store: Store::Unified,
    fallback: false,
};

async fn day15(db: &TestDb) -> Raw {
    let raw = db.raw().await;
    raw.execute(SCHEMA_2025_08).await;
    raw.execute(DATA).await;
    raw.execute(MONOLITH).await;
    raw
}

async fn strings(raw: &Raw, sql: &str) -> Vec<String> {
    raw.texts(sql).await.into_iter().flatten().collect()
}

/// Every row of its three tables as text, in order: what must survive everything.
async fn its_rows(raw: &Raw, schema: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for table in [
        "unified_attributes",
        "unified_category_attributes",
        "unified_attribute_values",
    ] {
        rows.extend(
            strings(
                raw,
                &format!("SELECT CAST(t AS TEXT) FROM {schema}.{table} t ORDER BY t.id"),
            )
            .await,
        );
    }
    rows
}

/// Its foreign key from `variant_attribute_mappings` points at its `unified_attributes` in
/// `schema`.
async fn its_foreign_key_points_into(raw: &Raw, schema: &str) -> bool {
    raw.count(&format!(
        "SELECT COUNT(*) FROM pg_constraint
         WHERE contype = 'f' AND conrelid = to_regclass('public.variant_attribute_mappings')
           AND confrelid = to_regclass('{schema}.unified_attributes')"
    ))
    .await
        == 1
}

#[tokio::test]
async fn the_day_15_database_is_adopted_with_the_monoliths_own_tables_as_a_source() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = day15(&db).await;
    let before = its_rows(&raw, "public").await;
    let storage = Storage::connect(&db.url, storage::PoolSettings::new(4))
        .await
        .expect("connect");

    // The plan names what is there, and refuses nothing.
    let plan = storage.migration_plan().await.expect("plan");
    assert_eq!(plan.refusal, None, "{plan:?}");
    let its: Vec<(&str, i64)> = plan
        .monolith_tables
        .iter()
        .map(|t| (t.table.as_str(), t.rows))
        .collect();
    assert_eq!(
        its,
        [
            ("unified_attributes", 7),
            ("unified_category_attributes", 6),
            ("unified_attribute_values", 8)
        ]
    );
    assert!(
        plan.foreign_keys
            .iter()
            .any(|k| k.contains("variant_attribute_mappings.variant_attribute_id")),
        "{:?}",
        plan.foreign_keys
    );
    assert!(
        plan.legacy_tables
            .iter()
            .any(|t| t.table == "listing_attribute_values" && t.schema == "public" && t.rows == 9),
        "{:?}",
        plan.legacy_tables
    );
    storage
        .migrate()
        .await
        .expect("migrate on the Day-15 database");
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'attributes' AND table_name = 'unified_attributes'").await,
        1,
        "ours live in their own schema"
    );
    assert_eq!(its_rows(&raw, "public").await, before, "its rows untouched");
    assert!(its_foreign_key_points_into(&raw, "public").await);

    // Dual-write, then the backfill from both sources.
    storage
        .note_write_mode(WriteMode::Dual)
        .await
        .expect("dual-write");
    let definitions = storage.backfill_definitions().await.expect("definitions");
    let its = definitions.monolith.expect("its tables are a source");
    assert_eq!(
        (its.matched, its.adopted, its.bindings, its.skipped.len()),
        (2, 5, 6, 0),
        "{its:?}"
    );
    run_backfill(&storage, &EntityKind::ALL, 2, false, None).await;
    let report = storage.verify(2, |_| {}).await.expect("verify");
    assert!(report.is_clean(), "{:?}", report.drift);
    let listings = &report.kinds["listing"];
    assert_eq!(
        (
            listings.monolith_values,
            listings.monolith_same_as_legacy,
            listings.monolith_conflicts
        ),
        (6, 1, 1)
    );

    // legacy + its values = migrated + quarantined, per kind (one value both hold alike).
    let legacy_listing_values = raw
        .count("SELECT COUNT(*) FROM listing_attribute_values")
        .await;
    let its_listing_values = raw
        .count("SELECT COUNT(*) FROM public.unified_attribute_values WHERE entity_type = 'listing'")
        .await;
    let migrated = raw
        .count("SELECT COUNT(*) FROM attributes.unified_attribute_values WHERE entity_type = 'listing'")
        .await;
    let quarantined = raw
        .count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'")
        .await;
    assert_eq!(
        (
            legacy_listing_values,
            its_listing_values,
            migrated,
            quarantined
        ),
        (9, 7, 9, 6)
    );
    assert_eq!(
        legacy_listing_values + its_listing_values - listings.monolith_same_as_legacy,
        migrated + quarantined
    );
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM attributes.unified_attribute_values WHERE entity_type = 'product' AND entity_id = 201").await,
        2,
        "the product keeps legacy's year and gains its part condition"
    );

    // Its definitions are served for their categories, with their labels; its values too.
    let pets = storage.category_schema(1011, UNIFIED).await.expect("pets");
    let pet_type = pets.data.get("pet_type").expect("pet_type served");
    assert_eq!(
        pet_type.attribute.display_name.exact(Language::Sr),
        Some("Tip životinje")
    );
    assert_eq!(
        pet_type.attribute.display_name.exact(Language::En),
        Some("Pet Type")
    );
    assert!(pet_type.is_required);
    let cars = storage.category_schema(1301, UNIFIED).await.expect("cars");
    for code in [
        "fuel_type",
        "year",
        "auto_part_brand",
        "auto_part_condition",
    ] {
        assert!(cars.data.get(code).is_some(), "{code} in the car category");
    }
    let book = storage
        .entity_values(EntityRef::listing(104), UNIFIED)
        .await
        .expect("book");
    assert_eq!(
        book.data["book_author"].value.to_json(),
        json!("Ivo Andrić")
    );
    let golf = storage
        .entity_values(EntityRef::listing(101), UNIFIED)
        .await
        .expect("101");
    assert_eq!(golf.data["auto_part_brand"].value.to_json(), json!("Bosch"));

    // The conflict is reported: its newer `petrol` kept, legacy's `diesel` quarantined.
    let passat = storage
        .entity_values(EntityRef::listing(102), UNIFIED)
        .await
        .expect("102");
    assert_eq!(passat.data["fuel_type"].value.to_json(), json!("petrol"));
    let conflict = strings(&raw, "SELECT kind || ' | ' || raw_value || ' | ' || reason FROM backfill_quarantine WHERE entity_id = 102 AND attribute_code = 'fuel_type'")
        .await;
    assert_eq!(conflict.len(), 1, "{conflict:?}");
    assert!(
        conflict[0].starts_with("conflict | text=diesel") && conflict[0].contains("text=petrol"),
        "{conflict:?}"
    );

    // A write of its definition during the migration reaches our store and its table; legacy
    // has no home for it and is left alone.
    storage
        .write_values(
            EntityRef::listing(104),
            storage::ValuesChange::Merge(&object(json!({"book_isbn": "978-86-521-0002-8"}))),
            WriteMode::Dual,
        )
        .await
        .expect("a dual-write of its definition");
    assert_eq!(
        strings(&raw, "SELECT v.text_value FROM public.unified_attribute_values v WHERE v.entity_id = 104 AND v.attribute_id = 11").await,
        ["978-86-521-0002-8"]
    );
    assert_eq!(
        strings(&raw, "SELECT v.text_value FROM attributes.unified_attribute_values v WHERE v.entity_id = 104 AND v.attribute_id = 2000011").await,
        ["978-86-521-0002-8"]
    );
    assert!(
        storage.verify(5, |_| {}).await.expect("verify").is_clean(),
        "still clean after the write"
    );

    // Unified reads without fallback wait for the conflict to be decided; then archive.
    let refused = storage
        .change_flags(Flags::default(), "ops", |_| Flags {
            dual_write: true,
            ..UNIFIED_PHASE
        })
        .await;
    match refused {
        Err(StorageError::QuarantineUnsettled(counts)) => assert!(
            counts
                .iter()
                .any(|c| c.attribute_code == "fuel_type" && c.kind == "conflict" && c.count == 1),
            "{counts:?}"
        ),
        other => panic!("expected the quarantine to hold unified reads back, got {other:?}"),
    }
    accept_all_quarantined(&storage).await;
    storage
        .change_flags(Flags::default(), "ops", |_| Flags {
            dual_write: true,
            ..UNIFIED_PHASE
        })
        .await
        .expect("unified reads");
    storage
        .change_flags(Flags::default(), "ops", |_| UNIFIED_PHASE)
        .await
        .expect("dual-write off");
    assert!(storage.verify(5, |_| {}).await.expect("verify").is_clean());
    let after_write = its_rows(&raw, "public").await;
    let manifest = storage.archive(UNIFIED_PHASE).await.expect("archive");
    assert!(
        manifest
            .tables
            .iter()
            .any(|t| t.table == "public.unified_attribute_values" && t.rows == 8),
        "{:?}",
        manifest.tables
    );
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname IN ('unified_attributes', 'unified_category_attributes', 'unified_attribute_values') AND c.relkind = 'r'").await,
        0,
        "its tables moved"
    );
    assert!(its_foreign_key_points_into(&raw, "legacy_archive").await);
    assert_eq!(its_rows(&raw, "legacy_archive").await, after_write);
    assert!(
        storage
            .category_schema(1011, UNIFIED)
            .await
            .expect("still served")
            .data
            .get("pet_type")
            .is_some()
    );

    let (restored, unchanged) = storage
        .restore_archive(UNIFIED_PHASE)
        .await
        .expect("restore");
    assert!(unchanged);
    assert_eq!(restored.tables, manifest.tables);
    assert!(its_foreign_key_points_into(&raw, "public").await);
    assert_eq!(
        its_rows(&raw, "public").await,
        after_write,
        "every row back"
    );
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM variant_attribute_mappings")
            .await,
        1
    );
}

#[tokio::test]
async fn legacy_tables_its_archive_migration_moved_away_are_refused_with_the_way_back() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = day15(&db).await;
    raw.execute(
        "CREATE SCHEMA archive_legacy;
         ALTER TABLE category_attributes SET SCHEMA archive_legacy;
         ALTER TABLE listing_attribute_values SET SCHEMA archive_legacy;",
    )
    .await;
    let storage = Storage::connect(&db.url, storage::PoolSettings::new(2))
        .await
        .expect("connect");
    let plan = storage.migration_plan().await.expect("plan");
    let refusal = plan.refusal.expect("refused");
    assert!(
        refusal.contains("archive_legacy")
            && refusal
                .contains("ALTER TABLE archive_legacy.listing_attribute_values SET SCHEMA public;"),
        "{refusal}"
    );
    match storage.migrate().await {
        Err(StorageError::Conflict(message)) => assert_eq!(message, refusal),
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM pg_namespace WHERE nspname = 'attributes'").await
            + raw.count("SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname IN ('category_attributes', 'listing_attribute_values')").await,
        0,
        "nothing was changed: no schema of ours, no empty legacy table in public"
    );
    // The way back it names works.
    raw.execute(
        "ALTER TABLE archive_legacy.category_attributes SET SCHEMA public;
         ALTER TABLE archive_legacy.listing_attribute_values SET SCHEMA public;",
    )
    .await;
    storage.migrate().await.expect("migrate once they are back");
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM listing_attribute_values")
            .await,
        9
    );
}

#[tokio::test]
async fn an_installation_of_the_earlier_layout_moves_into_its_schema_and_older_binaries_keep_working()
 {
    let db = TestDb::fresh(Backend::Postgres).await;
    let in_public = Topology {
        schema: Some("public".into()),
        ..Topology::default()
    };
    // The earlier layout: every table of ours in `public`.
    let older = Storage::connect_with(&db.url, storage::PoolSettings::new(2), &in_public)
        .await
        .expect("connect in public");
    older.migrate().await.expect("migrate in public");
    older
        .seed_legacy(&storage::demo::Dataset::marketplace(10, 1))
        .await
        .expect("seed");
    older.note_write_mode(WriteMode::Dual).await.expect("dual");
    run_backfill(&older, &EntityKind::ALL, 20, false, None).await;
    let raw = db.raw().await;
    let values = raw
        .count("SELECT COUNT(*) FROM public.unified_attribute_values")
        .await;
    assert!(values > 0);
    let plan = Storage::connect(&db.url, storage::PoolSettings::new(2))
        .await
        .expect("connect")
        .migration_plan()
        .await
        .expect("plan");
    assert!(plan.ours.contains("earlier layout"), "{}", plan.ours);
    assert!(
        plan.monolith_tables.is_empty(),
        "ours are not the marketplace's: {plan:?}"
    );

    let newer = Storage::connect(&db.url, storage::PoolSettings::new(2))
        .await
        .expect("connect");
    newer.migrate().await.expect("migrate moves the tables");
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM attributes.unified_attribute_values")
            .await,
        values
    );
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM pg_views WHERE schemaname = 'public' AND viewname IN ('unified_attribute_values', 'flag_state', '_sqlx_migrations')").await,
        3,
        "views for older binaries"
    );
    // The older binary writes through the views; the newer one reads what it wrote.
    let listing = raw
        .count("SELECT MIN(entity_id) FROM attributes.unified_attribute_values WHERE entity_type = 'listing'")
        .await;
    let read = newer
        .entity_values(EntityRef::listing(listing), UNIFIED)
        .await
        .expect("read");
    let (code, _) = read.data.iter().next().expect("a value");
    older
        .write_values(
            EntityRef::listing(listing),
            storage::ValuesChange::Merge(&object(json!({ code.clone(): null }))),
            WriteMode::Dual,
        )
        .await
        .expect("an older binary's dual-write through the views");
    let reread = newer
        .entity_values(EntityRef::listing(listing), UNIFIED)
        .await
        .expect("reread");
    assert!(!reread.data.contains_key(code), "the newer binary sees it");
    older
        .migrate()
        .await
        .expect("an older binary's migrate finds nothing to do");

    let dropped = newer.drop_public_views().await.expect("contract");
    assert!(dropped.len() >= 15, "{dropped:?}");
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM pg_views WHERE schemaname = 'public'")
            .await,
        0
    );
    assert!(newer.verify(20, |_| {}).await.expect("verify").is_clean());
}
