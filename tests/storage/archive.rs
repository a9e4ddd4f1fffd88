//! Archive and restore on both backends: refused until the unified phase and a clean verify,
//! the tables move whole with a manifest of counts and checksums, reads keep working, and a
//! restore brings back exactly what was archived (or says that it did not).

use std::collections::HashMap;

use domain::{EntityKind, EntityRef};
use flags::{Flags, Store};
use storage::{ReadRoute, Storage, StorageError};

use crate::common::{Backend, TestDb};

conformance_in!(
    archiving_is_refused_until_the_unified_phase_and_a_clean_verify,
    archive_and_restore_move_the_legacy_tables_whole_with_matching_manifests,
    a_restore_says_when_the_archive_changed_since_it_was_made,
    the_variant_option_catalogue_reaches_unified_whole_and_survives_archive_and_restore,
);

const UNIFIED_PHASE: Flags = Flags {
    use_unified: true,
    unified_percent: 100,
    fallback: false,
    dual_write: false,
    shadow_percent: 0,
};

async fn backfilled(db: &TestDb) -> Storage {
    let storage = db.storage().await;
    storage
        .seed_legacy(&storage::demo::Dataset::marketplace(40, 3))
        .await
        .expect("seed");
    // Dual-write in force from before the backfill began, as the evidence requires.
    storage
        .note_write_mode(flags::WriteMode::Dual)
        .await
        .expect("dual-write");
    crate::common::run_backfill(&storage, &EntityKind::ALL, 15, false, None).await;
    storage
}

/// Where an archived legacy table lives on this backend.
fn archived(db: &TestDb, table: &str) -> String {
    match db.backend {
        Backend::Postgres => format!("legacy_archive.{table}"),
        Backend::Sqlite => format!("legacy_archive_{table}"),
    }
}

async fn table_exists(db: &TestDb, table: &str) -> bool {
    let sql = match db.backend {
        Backend::Postgres => format!(
            // A table, not the view of the legacy shape an archive leaves in its place.
            "SELECT COUNT(*) FROM (SELECT to_regclass('{table}') AS t) r
             JOIN pg_class c ON c.oid = r.t WHERE c.relkind = 'r'"
        ),
        Backend::Sqlite => {
            format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
        }
    };
    db.raw().await.count(&sql).await == 1
}

fn conflict(result: Result<storage::archive::Manifest, StorageError>) -> String {
    match result {
        Err(StorageError::Conflict(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn archiving_is_refused_until_the_unified_phase_and_a_clean_verify(db: TestDb) {
    let storage = backfilled(&db).await;
    let canary = Flags {
        dual_write: true,
        fallback: true,
        ..UNIFIED_PHASE
    };
    for flags in [canary, UNIFIED_PHASE] {
        assert!(
            matches!(
                storage.archive(flags).await,
                Err(StorageError::Guardrail(
                    flags::GuardrailViolation::UnifiedReadsBeforeVerify
                ))
            ),
            "no verify ran yet: unified may not even be read"
        );
    }
    assert!(storage.verify(20, |_| {}).await.expect("verify").is_clean());
    assert!(conflict(storage.archive(canary).await).contains("'canary'"));
    // A verify that finds drift does not count either.
    db.raw()
        .await
        .execute(
            "DELETE FROM unified_attribute_values WHERE entity_type = 'listing' AND entity_id = 1",
        )
        .await;
    assert!(!storage.verify(20, |_| {}).await.expect("verify").is_clean());
    assert!(conflict(storage.archive(UNIFIED_PHASE).await).contains("run verify first"));
    assert!(
        table_exists(&db, "listing_attribute_values").await,
        "nothing moved"
    );
}

async fn archive_and_restore_move_the_legacy_tables_whole_with_matching_manifests(db: TestDb) {
    let storage = backfilled(&db).await;
    assert!(storage.verify(20, |_| {}).await.expect("verify").is_clean());
    let raw = db.raw().await;
    let legacy_values = raw
        .count("SELECT COUNT(*) FROM listing_attribute_values")
        .await;
    let attribute_translations = raw
        .count("SELECT COUNT(*) FROM translations WHERE entity_type IN ('attribute', 'product_variant_attribute')")
        .await;
    raw.execute("INSERT INTO translations (entity_type, entity_id, language, field_name, translated_text) VALUES ('category', 1001, 'en', 'name', 'Electronics')").await;

    let manifest = storage.archive(UNIFIED_PHASE).await.expect("archive");
    assert_eq!(
        (manifest.action.as_str(), manifest.phase.as_str()),
        ("archive", "unified")
    );
    let rows: HashMap<&str, i64> = manifest
        .tables
        .iter()
        .map(|t| (t.table.as_str(), t.rows))
        .collect();
    assert_eq!(rows["listing_attribute_values"], legacy_values);
    assert_eq!(rows["translations"], attribute_translations);
    assert_eq!(rows["category_attributes"], 22);
    assert!(!table_exists(&db, "listing_attribute_values").await);
    assert_eq!(
        raw.count(&format!(
            "SELECT COUNT(*) FROM {}",
            archived(&db, "listing_attribute_values")
        ))
        .await,
        legacy_values
    );
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM translations").await,
        1,
        "only the attributes' translations move; the category's stays"
    );

    // Unified keeps serving; the state says archived; legacy counts are not looked for.
    let state = storage.migration_state().await.expect("state");
    assert!(state.archived);
    assert_eq!(UNIFIED_PHASE.check(&state), Ok(flags::Phase::Archived));
    let values = storage
        .entity_values(EntityRef::listing(1), ReadRoute::new(Store::Unified, false))
        .await
        .expect("unified read");
    assert!(!values.data.is_empty());
    let counts = storage.migration_counts().await.expect("counts");
    assert_eq!(counts.legacy_listing_values, None);
    assert!(matches!(
        storage.verify(20, |_| {}).await,
        Err(StorageError::Conflict(_))
    ));
    assert!(conflict(storage.archive(UNIFIED_PHASE).await).contains("archived already"));
    assert!(storage.has_legacy_definitions().await.expect("definitions"));

    let (restored, unchanged) = storage
        .restore_archive(UNIFIED_PHASE)
        .await
        .expect("restore");
    assert!(unchanged);
    assert_eq!(restored.action, "restore");
    assert_eq!(
        restored.tables, manifest.tables,
        "the same rows, byte for byte"
    );
    assert!(table_exists(&db, "listing_attribute_values").await);
    assert_eq!(
        raw.count("SELECT COUNT(*) FROM translations").await,
        attribute_translations + 1
    );
    assert!(!storage.migration_state().await.expect("state").archived);
    assert!(storage.verify(20, |_| {}).await.expect("verify").is_clean());
    assert!(matches!(
        storage.restore_archive(UNIFIED_PHASE).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(
        storage
            .last_archive_manifest()
            .await
            .expect("manifest")
            .map(|m| m.id),
        Some(restored.id)
    );
}

async fn a_restore_says_when_the_archive_changed_since_it_was_made(db: TestDb) {
    let storage = backfilled(&db).await;
    assert!(storage.verify(20, |_| {}).await.expect("verify").is_clean());
    // The fixture's unreadable document keys: the operator accepts their absence first.
    crate::common::accept_all_quarantined(&storage).await;
    storage.archive(UNIFIED_PHASE).await.expect("archive");
    db.raw()
        .await
        .execute(&format!(
            "DELETE FROM {} WHERE listing_id = 2",
            archived(&db, "listing_attribute_values")
        ))
        .await;
    let (_, unchanged) = storage
        .restore_archive(UNIFIED_PHASE)
        .await
        .expect("restore");
    assert!(!unchanged, "the archive lost rows after it was made");
    assert!(
        table_exists(&db, "listing_attribute_values").await,
        "restored all the same"
    );
}

/// The B2C option catalogue reaches unified whole: pictures (`image_url`) beside colours, and
/// the options it retired (`is_active = false`), kept apart — never offered — rather than lost.
/// Unified serves them while legacy is archived, and a restore brings the catalogue back.
async fn the_variant_option_catalogue_reaches_unified_whole_and_survives_archive_and_restore(
    db: TestDb,
) {
    let storage = db.storage().await;
    storage
        .seed_legacy(&storage::demo::Dataset::marketplace(40, 3))
        .await
        .expect("seed");
    let raw = db.raw().await;
    raw.execute(
        "UPDATE product_variant_attribute_values SET is_active = false
         WHERE value = 'L' AND attribute_id IN
             (SELECT id FROM product_variant_attributes WHERE name = 'size')",
    )
    .await;
    storage
        .note_write_mode(flags::WriteMode::Dual)
        .await
        .expect("dual-write");
    crate::common::run_backfill(&storage, &EntityKind::ALL, 15, false, None).await;
    let catalogue =
        "SELECT o.value || ' ' || o.image_url || CASE WHEN o.is_active THEN '' ELSE ' retired' END
        FROM product_variant_attribute_values o
        JOIN product_variant_attributes p ON p.id = o.attribute_id
        WHERE p.name = 'size' ORDER BY o.sort_order";
    let legacy_catalogue = raw.texts(catalogue).await;
    assert_eq!(
        legacy_catalogue.len(),
        3,
        "the demo's sizes have pictures: {legacy_catalogue:?}"
    );
    let carried = |catalog: &[domain::Attribute]| -> Vec<Option<String>> {
        let size = catalog.iter().find(|a| a.code == "size").expect("size");
        let text = |o: &domain::AttributeOption, retired: &str| {
            Some(format!(
                "{} {}{retired}",
                o.value,
                o.image_url.as_deref().unwrap_or("-")
            ))
        };
        size.options
            .iter()
            .map(|o| text(o, ""))
            .chain(size.retired_options.iter().map(|o| text(o, " retired")))
            .collect()
    };
    let unified_catalog = |storage: &Storage| {
        let storage = storage.clone();
        async move {
            storage
                .catalog(ReadRoute::new(Store::Unified, false))
                .await
                .expect("unified catalog")
                .data
        }
    };
    let unified = unified_catalog(&storage).await;
    assert_eq!(carried(&unified), legacy_catalogue);
    let size = unified.iter().find(|a| a.code == "size").expect("size");
    assert!(
        size.options.iter().all(|o| o.value != "L"),
        "a retired option is not offered"
    );
    let legacy = storage
        .catalog(ReadRoute::new(Store::Legacy, false))
        .await
        .expect("legacy catalog")
        .data;
    assert_eq!(carried(&legacy), legacy_catalogue, "legacy reads alike");
    assert!(storage.verify(20, |_| {}).await.expect("verify").is_clean());
    // The fixture's unreadable document keys: the operator accepts their absence first.
    crate::common::accept_all_quarantined(&storage).await;
    storage.archive(UNIFIED_PHASE).await.expect("archive");
    assert_eq!(
        carried(&unified_catalog(&storage).await),
        legacy_catalogue,
        "served from unified while legacy is archived"
    );
    let (_, unchanged) = storage
        .restore_archive(UNIFIED_PHASE)
        .await
        .expect("restore");
    assert!(unchanged);
    assert_eq!(raw.texts(catalogue).await, legacy_catalogue);

    // An admin's change names the offered options only: the retired one stays retired.
    let size = unified.iter().find(|a| a.code == "size").expect("size");
    let draft: domain::AttributeDraft = serde_json::from_value(serde_json::json!({
        "code": "size", "type": "size", "purpose": "variant", "display_name": {"sr": "Veličina"},
        "options": size.options,
    }))
    .expect("draft");
    storage
        .update_attribute(size.id, draft, flags::WriteMode::UnifiedOnly)
        .await
        .expect("admin change");
    assert_eq!(carried(&unified_catalog(&storage).await), legacy_catalogue);
}
