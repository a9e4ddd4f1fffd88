//! Writes that bypass the service (LEGACY.md's monolith writing the legacy tables directly),
//! on the 2025-08 fixture: its listing save (a delete of the listing's rows and a multi-row
//! upsert), a storefront document update, a value the unified rules refuse, at dual-write and
//! after dual-write is off; the service's own writes are never captured twice, and a capture
//! that fails never fails the marketplace's transaction.

use domain::EntityRef;
use flags::{Flags, WriteMode};
use serde_json::json;
use sqlx::Connection;
use storage::{ReadRoute, Storage};

use crate::common::{Backend, Raw, TestDb, backfill_and_verify, monolith_save};
use crate::object;
use crate::real_schema::{DATA, SCHEMA_2025_08};

const UNIFIED: ReadRoute = ReadRoute {
    store: flags::Store::Unified,
    fallback: false,
};

async fn unified_value(
    storage: &Storage,
    entity: EntityRef,
    code: &str,
) -> Option<serde_json::Value> {
    storage
        .entity_values(entity, UNIFIED)
        .await
        .expect("unified read")
        .data
        .get(code)
        .map(|typed| typed.value.to_json())
}

async fn direct_changes(raw: &Raw) -> i64 {
    raw.count("SELECT COUNT(*) FROM attribute_changes WHERE source = 'direct'")
        .await
}

async fn apply_all(storage: &Storage) {
    while storage.apply_captured(100).await.expect("apply") > 0 {}
    let status = storage.capture_status().await.expect("status");
    assert_eq!(status.unapplied, 0, "{status:?}");
}

#[tokio::test]
async fn the_monoliths_direct_writes_reach_unified_by_the_same_rules_at_every_phase() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA_2025_08).await;
    raw.execute(DATA).await;
    let storage = db.storage().await;
    storage
        .note_write_mode(WriteMode::Dual)
        .await
        .expect("dual");
    backfill_and_verify(&storage).await;
    apply_all(&storage).await;

    // Its save of listing 101: the fuel and the year change.
    let before = direct_changes(&raw).await;
    raw.execute(&monolith_save(
        101,
        &[(2201, Some("diesel"), None), (2202, None, Some(2018.0))],
    ))
    .await;
    assert_eq!(
        direct_changes(&raw).await - before,
        2,
        "one captured row per statement and listing, not one per value"
    );
    apply_all(&storage).await;
    let golf = EntityRef::listing(101);
    assert_eq!(
        unified_value(&storage, golf, "fuel_type").await,
        Some(json!("diesel"))
    );
    assert_eq!(
        unified_value(&storage, golf, "year").await,
        Some(json!(2018))
    );
    assert!(storage.verify(10, |_| {}).await.expect("verify").is_clean());

    // A value the unified rules refuse: quarantined with its reason, the save commits.
    raw.execute(&monolith_save(
        101,
        &[(2201, Some("diesel"), None), (2202, None, Some(1.0))],
    ))
    .await;
    apply_all(&storage).await;
    assert_eq!(unified_value(&storage, golf, "year").await, None);
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_id = 101 AND attribute_code = 'year' AND kind = 'invalid'").await,
        1
    );
    assert!(storage.verify(10, |_| {}).await.expect("verify").is_clean());

    // Its storefront code rewrites a product's document.
    raw.execute("UPDATE storefront_products SET attributes = '{\"2202\": 2012}' WHERE id = 201")
        .await;
    apply_all(&storage).await;
    assert_eq!(
        unified_value(&storage, EntityRef::product(201), "year").await,
        Some(json!(2012))
    );
    assert!(storage.verify(10, |_| {}).await.expect("verify").is_clean());

    // Its admin code adds a definition and binds it; its save then uses it.
    raw.execute(
        "INSERT INTO category_attributes (id, name, display_name, attribute_type, options)
             VALUES (2206, 'doors', 'Broj vrata', 'number', '{}');
         INSERT INTO category_attribute_mapping (category_id, attribute_id, sort_order)
             VALUES (1301, 2206, 5);",
    )
    .await;
    raw.execute(&monolith_save(
        101,
        &[
            (2201, Some("diesel"), None),
            (2202, None, Some(2018.0)),
            (2206, None, Some(5.0)),
        ],
    ))
    .await;
    apply_all(&storage).await;
    let cars = storage.category_schema(1301, UNIFIED).await.expect("cars");
    assert!(
        cars.data.get("doors").is_some(),
        "its new definition, bound"
    );
    assert_eq!(unified_value(&storage, golf, "doors").await, Some(json!(5)));
    assert!(storage.verify(10, |_| {}).await.expect("verify").is_clean());

    // The service's own dual-write is not captured (never applied twice).
    let before = direct_changes(&raw).await;
    storage
        .write_values(
            EntityRef::listing(102),
            storage::ValuesChange::Merge(&object(json!({"fuel_type": "petrol"}))),
            WriteMode::Dual,
        )
        .await
        .expect("a dual-write");
    assert_eq!(direct_changes(&raw).await, before);
    assert_eq!(
        raw.count(
            "SELECT COUNT(*) FROM attribute_changes WHERE source = 'service' AND entity_id = 102"
        )
        .await,
        1,
        "it is in the change feed"
    );

    // Dual-write off (unified-only writes): a service write to listing 100 stays, a direct save
    // of listing 101 still reaches unified, and only the codes it touched.
    storage
        .accept_quarantined(
            &storage::quarantine::AcceptFilter::default(),
            true,
            None,
            "ops",
            false,
        )
        .await
        .expect("accept");
    for flags in [
        Flags {
            use_unified: true,
            unified_percent: 100,
            fallback: false,
            dual_write: true,
            shadow_percent: 0,
        },
        Flags {
            use_unified: true,
            unified_percent: 100,
            fallback: false,
            dual_write: false,
            shadow_percent: 0,
        },
    ] {
        storage
            .change_flags(Flags::default(), "ops", |_| flags)
            .await
            .expect("flags");
    }
    storage
        .write_values(
            EntityRef::listing(100),
            storage::ValuesChange::Merge(&object(json!({"condition": "new"}))),
            WriteMode::UnifiedOnly,
        )
        .await
        .expect("a unified-only write");
    raw.execute(&monolith_save(
        101,
        &[(2201, Some("petrol"), None), (2202, None, Some(2019.0))],
    ))
    .await;
    raw.execute("UPDATE listing_attribute_values SET text_value = 'used' WHERE listing_id = 100 AND attribute_id = 2201")
        .await;
    apply_all(&storage).await;
    assert_eq!(
        unified_value(&storage, golf, "year").await,
        Some(json!(2019))
    );
    assert_eq!(
        unified_value(&storage, EntityRef::listing(100), "condition").await,
        Some(json!("new")),
        "a direct write of another code leaves the unified-only write alone"
    );
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_id = 100 AND attribute_code = 'fuel_type'").await,
        1,
        "`used` is no fuel: quarantined"
    );

    // Archive: its unmodified readers answer from views of the legacy shape over unified.
    let readers = [
        // its listing page
        "SELECT a.name || '=' || COALESCE(v.text_value, CAST(CAST(v.numeric_value AS INTEGER) AS TEXT))
         FROM listing_attribute_values v
         JOIN category_attributes a ON a.id = v.attribute_id
         JOIN marketplace_listings l ON l.id = v.listing_id
         JOIN category_attribute_mapping m ON m.attribute_id = a.id AND m.category_id = l.category_id
         WHERE v.listing_id = 101 ORDER BY a.name",
        // its map filter
        "SELECT CAST(l.id AS TEXT) FROM marketplace_listings l WHERE l.id = 101 AND EXISTS (
             SELECT 1 FROM listing_attribute_values v
             WHERE v.listing_id = l.id AND v.attribute_id = 2201 AND v.text_value = 'petrol')",
        // its admin count of values per attribute, for the attributes of listing 101
        "SELECT attribute_id || ':' || COUNT(*) FROM listing_attribute_values
         WHERE listing_id = 101 GROUP BY attribute_id ORDER BY attribute_id",
    ];
    let mut before = Vec::new();
    for sql in readers {
        before.push(raw.texts(sql).await);
    }
    assert_eq!(
        before[0],
        [
            Some("fuel_type=petrol".to_owned()),
            Some("year=2019".to_owned())
        ]
    );
    let unified_phase = Flags {
        use_unified: true,
        unified_percent: 100,
        fallback: false,
        dual_write: false,
        shadow_percent: 0,
    };
    // The direct write's `used` fuel is quarantined: seen by users, it must be decided on;
    // the unified-only write goes back to legacy (sync-legacy, dual-write on) and verify is
    // clean before the archive.
    crate::common::accept_all_quarantined(&storage).await;
    storage
        .change_flags(Flags::default(), "ops", |_| Flags {
            dual_write: true,
            ..unified_phase
        })
        .await
        .expect("dual-write again");
    // A DBA fixes the document sync-legacy cannot merge into (a direct write, captured too).
    raw.execute("UPDATE storefront_products SET attributes = '{}' WHERE id = 202")
        .await;
    apply_all(&storage).await;
    storage
        .sync_legacy(WriteMode::Dual, 50, false, async |_| {})
        .await
        .expect("sync-legacy");
    assert!(storage.verify(10, |_| {}).await.expect("verify").is_clean());
    storage
        .change_flags(Flags::default(), "ops", |_| unified_phase)
        .await
        .expect("unified phase");
    // Who still uses the legacy tables: the direct writes, and the monolith's session.
    let mut monolith = sqlx::PgConnection::connect(&format!(
        "{}&application_name=marketplace-monolith",
        db.sql_url()
    ))
    .await
    .expect("the monolith's session");
    sqlx::query("SELECT COUNT(*) FROM listing_attribute_values WHERE listing_id = 101")
        .execute(&mut monolith)
        .await
        .expect("its listing page");
    let usage = storage.legacy_usage().await.expect("usage");
    assert!(usage.direct_writes_last_hour >= 5, "{usage:?}");
    assert!(
        usage
            .sessions
            .iter()
            .any(|s| s.application == "marketplace-monolith"
                && s.statement.contains("listing_attribute_values")),
        "{usage:?}"
    );
    assert!(
        !usage
            .sessions
            .iter()
            .any(|s| s.application == storage::usage::APPLICATION_NAME),
        "this service's own sessions are not listed"
    );
    let would = storage
        .archive_dry_run(unified_phase, &storage::soak::Soak::default())
        .await
        .expect("dry run");
    assert_eq!(would.action, "dry-run");
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM pg_class WHERE relname = 'listing_attribute_values' AND relkind = 'r' AND relnamespace = 'public'::regnamespace").await,
        1,
        "a dry run moves nothing"
    );
    storage.archive(unified_phase).await.expect("archive");
    for (sql, answer) in readers.iter().zip(&before) {
        assert_eq!(&raw.texts(sql).await, answer, "{sql}");
    }
    // Its save after archive fails loudly, naming the service; nothing lands anywhere.
    let refused = sqlx::raw_sql(&monolith_save(101, &[(2201, Some("diesel"), None)]))
        .execute(&sqlx::PgPool::connect(&db.sql_url()).await.expect("pool"))
        .await
        .expect_err("a write to an archived table");
    assert!(
        refused
            .to_string()
            .contains("archived: attribute data lives in the unified attributes service"),
        "{refused}"
    );
    assert_eq!(
        unified_value(&storage, golf, "fuel_type").await,
        Some(json!("petrol"))
    );
    // So does its storefront code changing a document's attributes; other columns stay free.
    let pool = sqlx::PgPool::connect(&db.sql_url()).await.expect("pool");
    let document = "UPDATE storefront_products SET attributes = '{\"2202\": 2013}' WHERE id = 201";
    let refused = sqlx::query(document)
        .execute(&pool)
        .await
        .expect_err("a document change after archive");
    assert!(
        refused
            .to_string()
            .contains("storefront_products.attributes is archived"),
        "{refused}"
    );
    sqlx::query("UPDATE storefront_products SET category_id = category_id WHERE id = 201")
        .execute(&pool)
        .await
        .expect("the rest of the row is the marketplace's");
    let (manifest, unchanged) = storage
        .restore_archive(unified_phase)
        .await
        .expect("restore");
    assert!(unchanged, "{manifest:?}");
    sqlx::query(document)
        .execute(&pool)
        .await
        .expect("writable again after restore");
    assert_eq!(
        raw.texts("SELECT a.name || '=' || COALESCE(v.text_value, CAST(CAST(v.numeric_value AS INTEGER) AS TEXT)) FROM listing_attribute_values v JOIN category_attributes a ON a.id = v.attribute_id WHERE v.listing_id = 101 ORDER BY a.name").await,
        before[0],
        "the legacy table is back as it was"
    );
}

#[tokio::test]
async fn a_capture_that_fails_never_fails_the_marketplaces_transaction() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA_2025_08).await;
    raw.execute(DATA).await;
    let _storage = db.storage().await;
    raw.execute("ALTER TABLE attribute_changes ADD CONSTRAINT broken CHECK (entity_id < 0)")
        .await;
    raw.execute(&monolith_save(101, &[(2201, Some("diesel"), None)]))
        .await;
    raw.execute("UPDATE storefront_products SET attributes = '{\"2202\": 2011}' WHERE id = 201")
        .await;
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM listing_attribute_values WHERE listing_id = 101")
            .await,
        1,
        "the save committed"
    );
    assert_eq!(direct_changes(&raw).await, 0);
}
