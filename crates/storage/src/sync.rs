//! `sync-legacy`: unified → legacy, for rolling back after unified-only writes. It merges, never
//! replaces: a legacy value is deleted only when unified deliberately no longer holds it, never
//! when unified could not represent it (quarantined, unreadable, unknown to unified).

use std::collections::{BTreeMap, HashMap, HashSet};

use domain::{EntityKind, EntityRef, EntityValues};
use flags::{Store, WriteMode};
use serde::Serialize;

use crate::backend::{Backend, Conn};
use crate::error::{Result, StorageError};
use crate::invalidation::Invalidation;
use crate::router::{Router, ensure_legacy_in_place};
use crate::rows::ValueColumns;

/// What a sync did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    /// No unified-only write was pending: nothing was read or changed.
    pub nothing_to_sync: bool,
    /// Unified definitions legacy lacked, inserted into legacy.
    pub definitions_inserted: usize,
    pub entities: i64,
    /// Per entity kind: legacy values (listing rows, document keys) inserted, updated, deleted,
    /// and kept although unified does not hold them (quarantined, unreadable, unknown).
    pub kinds: BTreeMap<&'static str, SyncCounts>,
    /// Legacy is caught up and reads may go back to it. False when a unified-only write
    /// committed while the sync ran: run it again.
    pub complete: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncCounts {
    pub inserted: usize,
    pub updated: usize,
    pub deleted: usize,
    pub kept: usize,
    /// Entities whose legacy rows or document the sync changes; every other one is left
    /// byte-identical.
    pub entities_changed: usize,
    /// The first [`CHANGED_SAMPLE`] of them, by id: a dry run names the same entities.
    pub changed_sample: Vec<i64>,
    /// Entities whose unified values legacy refused for their data (a constraint or trigger of
    /// the marketplace's): left as they were, so legacy is not up to date and the sync is not
    /// complete.
    pub entities_refused: usize,
    /// The first [`CHANGED_SAMPLE`] of them, with the database's words.
    pub refused: Vec<RefusedEntity>,
}

/// An entity legacy would not take, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedEntity {
    pub id: i64,
    pub reason: String,
}

/// How many changed entities a report names, per kind.
pub const CHANGED_SAMPLE: usize = 100;

impl SyncCounts {
    fn refuse(&mut self, id: i64, reason: String) {
        self.entities_refused += 1;
        if self.refused.len() < CHANGED_SAMPLE {
            self.refused.push(RefusedEntity { id, reason });
        }
    }

    fn changed(&mut self, id: i64) {
        self.entities_changed += 1;
        if self.changed_sample.len() < CHANGED_SAMPLE {
            self.changed_sample.push(id);
        }
    }
}

/// Ends a sync transaction: commits it, or rolls it back for a dry run.
async fn end<B: Backend>(tx: sqlx::Transaction<'static, B::Db>, dry_run: bool) -> Result<()> {
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(())
}

impl<B: Backend> Router<B> {
    /// Brings legacy up to date from unified: definitions legacy lacks, then every listing's
    /// rows and every product's and variant's document, merged batch by batch. Runs only while
    /// unified-only writes are pending, and only with dual-write in force (`mode`), so writes
    /// made meanwhile reach legacy too; "pending" is cleared only if no unified-only write
    /// committed after the sync began. With `dry_run` every transaction is rolled back.
    pub(crate) async fn sync_legacy(
        &self,
        mode: WriteMode,
        batch: i64,
        dry_run: bool,
        mut between_batches: impl AsyncFnMut(i64),
    ) -> Result<SyncReport> {
        let mut report = SyncReport {
            dry_run,
            ..SyncReport::default()
        };
        let mut tx = self.begin_write().await?;
        ensure_legacy_in_place::<B>(&mut tx).await?;
        crate::evidence::lock_migration_state(B::dialect(&mut tx)).await?;
        if !crate::evidence::state_row(B::dialect(&mut tx))
            .await?
            .pending_sync
        {
            tx.rollback().await?;
            report.nothing_to_sync = true;
            report.complete = true;
            return Ok(report);
        }
        if mode != WriteMode::Dual {
            return Err(StorageError::Conflict(
                "sync-legacy needs dual-write in force (DUAL_WRITE_ATTRIBUTES=true, USE_UNIFIED_ATTRIBUTES=true, \
                 UNIFIED_ATTRIBUTES_PERCENT=100), so that writes made during the sync reach legacy too"
                    .into(),
            ));
        }
        crate::evidence::start_legacy_sync(B::dialect(&mut tx)).await?;
        let legacy_codes: HashSet<String> =
            crate::schema::catalog(B::dialect(&mut tx), Store::Legacy)
                .await?
                .into_iter()
                .map(|a| a.code)
                .collect();
        let unified_catalog = crate::schema::catalog(B::dialect(&mut tx), Store::Unified).await?;
        for attribute in unified_catalog
            .iter()
            .filter(|a| !legacy_codes.contains(&a.code) && a.purpose != domain::Purpose::Variant)
        {
            crate::definitions::legacy_insert_with_id(B::dialect(&mut tx), attribute).await?;
            report.definitions_inserted += 1;
        }
        for binding in crate::backfill::bindings(B::dialect(&mut tx), Store::Unified).await? {
            crate::definitions::upsert_binding(B::dialect(&mut tx), Store::Legacy, &binding)
                .await?;
        }
        // Legacy ids and options by code, as legacy stands inside this transaction.
        let legacy_catalog = crate::schema::catalog(B::dialect(&mut tx), Store::Legacy).await?;
        end::<B>(tx, dry_run).await?;
        let catalog = SyncCatalog {
            legacy_ids: legacy_catalog
                .iter()
                .map(|a| (a.code.clone(), a.id))
                .collect(),
            legacy_options: legacy_catalog
                .into_iter()
                .map(|a| (a.code, a.options))
                .collect(),
            unified_codes: unified_catalog.into_iter().map(|a| a.code).collect(),
        };
        for kind in EntityKind::ALL {
            let mut after = 0;
            loop {
                let mut tx = self.begin_write().await?;
                let ids =
                    crate::batches::entity_ids_after(B::dialect(&mut tx), kind, after, batch, true)
                        .await?;
                let Some(&last) = ids.last() else { break };
                let counts = report.kinds.entry(kind.as_str()).or_default();
                if kind == EntityKind::Listing {
                    sync_listings::<B>(&mut tx, &ids, &catalog, counts).await?;
                } else {
                    sync_documents::<B>(&mut tx, kind, &ids, &catalog, counts).await?;
                }
                end::<B>(tx, dry_run).await?;
                report.entities += ids.len() as i64;
                after = last;
                between_batches(report.entities).await;
            }
        }
        let mut tx = self.begin_write().await?;
        crate::evidence::lock_migration_state(B::dialect(&mut tx)).await?;
        // Legacy lacks what it refused: "pending" stays until a run gets everything through.
        let refused = report
            .kinds
            .values()
            .any(|counts| counts.entities_refused > 0);
        report.complete =
            !refused && crate::evidence::finish_legacy_sync(B::dialect(&mut tx)).await?;
        crate::invalidation::notify(B::dialect(&mut tx), &[Invalidation::Everything]).await?;
        end::<B>(tx, dry_run).await?;
        Ok(report)
    }
}

/// What the sync needs to know of both catalogs.
struct SyncCatalog {
    legacy_ids: HashMap<String, i64>,
    legacy_options: HashMap<String, Vec<domain::AttributeOption>>,
    unified_codes: HashSet<String>,
}

/// Merges unified values into the legacy rows of these listings.
async fn sync_listings<B: Backend>(
    conn: &mut Conn<B>,
    ids: &[i64],
    catalog: &SyncCatalog,
    counts: &mut SyncCounts,
) -> Result<()> {
    let unified =
        crate::batches::listing_values_batch(B::dialect(conn), Store::Unified, ids).await?;
    let quarantined: HashSet<(i64, String)> =
        crate::batches::quarantined_codes(B::dialect(conn), EntityKind::Listing, ids)
            .await?
            .into_iter()
            .collect();
    let none = EntityValues::new();
    let mut delete = Vec::new();
    let mut insert = Vec::new();
    let mut present: HashSet<(i64, String)> = HashSet::new();
    for row in crate::legacy::listing_rows(B::dialect(conn), ids).await? {
        let listing = row.entity_id;
        let Some(code) = row.value.code.clone() else {
            counts.kept += 1;
            continue;
        };
        let legacy = row.value.typed_value().map(|(_, mut typed)| {
            if let Some(options) = catalog.legacy_options.get(&code) {
                domain::canonical_spellings(options, &mut typed.value);
            }
            typed
        });
        let Some(&attribute_id) = catalog.legacy_ids.get(&code) else {
            counts.kept += 1;
            continue;
        };
        match unified.get(&listing).unwrap_or(&none).get(&code) {
            Some(typed) => {
                present.insert((listing, code));
                if legacy.as_ref() != Some(typed) {
                    counts.updated += 1;
                    delete.push((listing, attribute_id));
                    insert.push((listing, attribute_id, ValueColumns::legacy(typed)));
                }
            }
            // Unified dropped a value it held: a unified-only write removed it.
            None if legacy.is_some()
                && catalog.unified_codes.contains(&code)
                && !quarantined.contains(&(listing, code.clone())) =>
            {
                counts.deleted += 1;
                delete.push((listing, attribute_id));
            }
            None => counts.kept += 1,
        }
    }
    for (listing, values) in &unified {
        for (code, typed) in values {
            if present.contains(&(*listing, code.clone())) {
                continue;
            }
            if let Some(&attribute_id) = catalog.legacy_ids.get(code) {
                counts.inserted += 1;
                insert.push((*listing, attribute_id, ValueColumns::legacy(typed)));
            }
        }
    }
    let changed: std::collections::BTreeSet<i64> = delete
        .iter()
        .map(|(listing, _)| *listing)
        .chain(insert.iter().map(|(listing, _, _)| *listing))
        .collect();
    if merge_rows::<B>(conn, &delete, &insert).await?.is_none() {
        for listing in changed {
            counts.changed(listing);
        }
        return Ok(());
    }
    // Legacy refused a value of the batch for its data: listing by listing, so one listing
    // that legacy cannot hold keeps neither the others nor the sync from going on.
    for listing in changed {
        let delete: Vec<_> = delete.iter().filter(|d| d.0 == listing).copied().collect();
        let insert: Vec<_> = insert.iter().filter(|i| i.0 == listing).cloned().collect();
        match merge_rows::<B>(conn, &delete, &insert).await? {
            None => counts.changed(listing),
            Some(reason) => counts.refuse(listing, reason),
        }
    }
    Ok(())
}

/// Merges legacy listing rows under a savepoint; the database's reason when it refused them for
/// their data (nothing of them is then written).
async fn merge_rows<B: Backend>(
    conn: &mut Conn<B>,
    delete: &[(i64, i64)],
    insert: &[(i64, i64, ValueColumns)],
) -> Result<Option<String>> {
    let mut savepoint = sqlx::Connection::begin(&mut *conn).await?;
    let outcome =
        crate::entity_values::merge_listing_rows(B::dialect(&mut savepoint), delete, insert).await;
    crate::savepoint::settle(savepoint, outcome, true).await
}

/// Merges unified values into the legacy documents of these products or variants.
async fn sync_documents<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
    catalog: &SyncCatalog,
    counts: &mut SyncCounts,
) -> Result<()> {
    let unified = crate::batches::unified_values_batch(B::dialect(conn), kind, ids).await?;
    let (documents, vocabulary) =
        crate::batches::legacy_documents(B::dialect(conn), kind, ids).await?;
    let mut quarantined: HashMap<i64, HashSet<String>> = HashMap::new();
    for (id, code) in crate::batches::quarantined_codes(B::dialect(conn), kind, ids).await? {
        quarantined.entry(id).or_default().insert(code);
    }
    let none = EntityValues::new();
    let nothing = HashSet::new();
    for (id, document) in &documents {
        let values = unified.get(id).unwrap_or(&none);
        let removed: Vec<String> = catalog
            .unified_codes
            .iter()
            .filter(|code| !values.contains_key(*code))
            .cloned()
            .collect();
        let keep = quarantined.get(id).unwrap_or(&nothing);
        let merged = crate::legacy::merge_document(
            kind,
            Some(document),
            &vocabulary,
            values,
            &removed,
            keep,
            |code| catalog.legacy_ids.get(code).copied(),
            |code, value| {
                if let Some(options) = catalog.legacy_options.get(code) {
                    domain::canonical_spellings(options, value);
                }
            },
        )?;
        let before = crate::legacy::decode_document(kind, document, &vocabulary);
        counts.kept += before.refused.len();
        counts.inserted += merged.inserted;
        counts.updated += merged.updated;
        counts.deleted += merged.deleted;
        if merged.changed() {
            let mut savepoint = sqlx::Connection::begin(&mut *conn).await?;
            let entity = EntityRef { kind, id: *id };
            let outcome = crate::entity_values::write_document(
                B::dialect(&mut savepoint),
                entity,
                &merged.document,
            )
            .await;
            match crate::savepoint::settle(savepoint, outcome, true).await? {
                None => counts.changed(*id),
                Some(reason) => counts.refuse(*id, reason),
            }
        }
    }
    Ok(())
}
