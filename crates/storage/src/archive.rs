//! Archiving the legacy tables once the unified store serves everything, and restoring them:
//! the tables move (nothing is copied or dropped), and a manifest of row counts and checksums
//! taken before and after each move is the evidence that nothing changed on the way. The
//! marketplace's own unified tables move with them when they were a source (`monolith`).

use flags::{Flags, Phase};

use crate::backend::Backend;
use crate::error::{Result, StorageError};
use crate::invalidation::Invalidation;
use crate::router::{Router, phase_name};

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// The legacy tables that only the attributes use; they move whole.
pub(crate) const MOVED_TABLES: [&str; 6] = [
    "category_attributes",
    "category_attribute_mapping",
    "listing_attribute_values",
    "product_variant_attributes",
    "product_variant_attribute_values",
    "attribute_option_translations",
];

/// `translations` is shared by the whole marketplace: only the attributes' rows move, into an
/// archive table of the same name.
pub(crate) const TRANSLATIONS: &str = "translations";
pub(crate) const ATTRIBUTE_TRANSLATIONS: &str =
    "entity_type IN ('attribute', 'product_variant_attribute')";

/// One table's evidence: rows and an order-independent checksum of their full contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEvidence {
    pub table: String,
    pub rows: i64,
    pub checksum: String,
}

/// What one `archive` or `restore-archive` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Manifest {
    pub id: i64,
    pub action: String,
    #[sqlx(try_from = "crate::rows::TimestampText")]
    pub recorded_at: String,
    pub phase: String,
    #[sqlx(json)]
    pub tables: Vec<TableEvidence>,
    /// An archive before the unified phase's soak: who waived it and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiver: Option<String>,
}

/// Sums a 64-bit hash of every row's text: the same rows in any order give the same checksum.
#[derive(Debug, Default)]
pub(crate) struct Checksum {
    rows: i64,
    sum: u64,
}

impl Checksum {
    pub(crate) fn add(&mut self, row_text: &str) {
        // murmur3 over an in-memory cursor cannot fail.
        let hash = murmur3::murmur3_x64_128(&mut Cursor::new(row_text.as_bytes()), 0).unwrap_or(0);
        self.sum = self.sum.wrapping_add(hash as u64);
        self.rows += 1;
    }

    pub(crate) fn finish(self, table: &str) -> TableEvidence {
        TableEvidence {
            table: table.to_owned(),
            rows: self.rows,
            checksum: format!("{:016x}", self.sum),
        }
    }
}

pub(crate) const SAVE_MANIFEST: &str =
    "INSERT INTO archive_manifests (action, phase, tables) VALUES ($1, $2, $3)";

pub(crate) const LAST_MANIFEST: &str = "SELECT CAST(id AS BIGINT) AS id, action,
        CAST(recorded_at AS TEXT) AS recorded_at, phase, tables, waiver
    FROM archive_manifests ORDER BY id DESC LIMIT 1";

pub(crate) const MARK_ARCHIVED: &str =
    "UPDATE migration_state SET archived_at = CURRENT_TIMESTAMP WHERE id = 1";
pub(crate) const MARK_RESTORED: &str = "UPDATE migration_state SET archived_at = NULL WHERE id = 1";

/// Whether the last verify run was clean and finished after the last moment legacy could
/// have been written alone: the last change of flags away from the legacy phase (legacy-only
/// writes until then) and the end of the backfill. `$ts` makes timestamps comparable (SQLite
/// stores them as text in two formats).
macro_rules! verified_since_legacy_writes_sql {
    ($ts:literal) => {
        concat!(
            "SELECT COALESCE((
                SELECT v.drifted = 0 AND ",
            $ts,
            "(v.finished_at) >= COALESCE((
                    SELECT MAX(b.at) FROM (
                        SELECT ",
            $ts,
            "(changed_at) AS at FROM flag_audit WHERE old_phase = 'legacy'
                        UNION ALL
                        SELECT ",
            $ts,
            "(completed_at) AS at FROM backfill_checkpoint
                    ) b), ",
            $ts,
            "(v.finished_at))
                FROM verify_runs v ORDER BY v.id DESC LIMIT 1), false)"
        )
    };
}
pub(crate) use verified_since_legacy_writes_sql;

impl<B: Backend> Router<B> {
    /// Moves the legacy attribute tables into the archive, in one transaction, with a
    /// manifest of their counts and checksums. Refused unless the flags in force (`configured`
    /// when none are stored) mean the unified phase and a clean verify ran after legacy could
    /// last be written alone. The move is checked: different evidence after it rolls back.
    pub(crate) async fn archive(
        &self,
        configured: Flags,
        soak: &crate::soak::Soak,
        dry_run: bool,
    ) -> Result<crate::archive::Manifest> {
        let mut tx = self.begin_write().await?;
        crate::evidence::lock_migration_state(B::dialect(&mut tx)).await?;
        let state = crate::evidence::migration_state(B::dialect(&mut tx)).await?;
        if state.archived {
            return Err(StorageError::Conflict(
                "the legacy tables are archived already".into(),
            ));
        }
        let flags = B::load_flags(&mut tx)
            .await?
            .map_or(configured, |stored| stored.flags);
        // The archive ends legacy reads for good: what unified lacks must have been decided on.
        let phase = match flags.check_change(None, &state) {
            Ok(phase) => phase,
            Err(violation) => return Err(crate::quarantine::refusal::<B>(&mut tx, violation).await),
        };
        if phase != Phase::Unified {
            return Err(StorageError::Conflict(format!(
                "archiving needs the unified phase (dual-write off, every read unified, no fallback); \
                 the flags in force mean '{}'",
                phase_name(phase)
            )));
        }
        if !B::verified_since_legacy_writes(&mut tx).await? {
            return Err(StorageError::Conflict(
                "no clean verify since legacy was last written: run verify first".into(),
            ));
        }
        let waiver = crate::soak::check::<B>(&mut tx, soak).await?;
        // The marketplace's own unified tables move too when they were a source.
        let its_tables = crate::monolith::archived_tables::<B>(&mut tx, false).await?;
        let mut before = B::archive_evidence(&mut tx, false).await?;
        before.extend(crate::monolith::evidence::<B>(&mut tx, &its_tables, false).await?);
        if dry_run {
            // Nothing moves: the transaction ends unwritten.
            return Ok(crate::archive::Manifest {
                id: 0,
                action: "dry-run".into(),
                recorded_at: String::new(),
                phase: phase_name(phase).into(),
                tables: before,
                waiver,
            });
        }
        B::move_legacy_tables(&mut tx, true).await?;
        crate::monolith::move_tables::<B>(&mut tx, &its_tables, true).await?;
        // The marketplace's unmodified readers find the legacy shape over unified.
        crate::legacy_views::create::<B>(&mut tx).await?;
        let mut after = B::archive_evidence(&mut tx, true).await?;
        after.extend(crate::monolith::evidence::<B>(&mut tx, &its_tables, true).await?);
        ensure_same_evidence(&before, &after, "archiving")?;
        B::save_manifest(&mut tx, "archive", phase_name(phase), &before).await?;
        if let Some(waiver) = &waiver {
            crate::soak::record_waiver::<B>(&mut tx, waiver).await?;
        }
        let manifest = B::last_manifest(&mut tx).await?;
        B::notify(&mut tx, &[Invalidation::Everything]).await?;
        B::notify_state_changed(&mut tx).await?;
        tx.commit().await?;
        manifest.ok_or_else(|| StorageError::CorruptData("the archive manifest vanished".into()))
    }

    /// Moves the archived legacy tables back, in one transaction, with a manifest. Returns it
    /// and whether the archive still held what the last archive manifest recorded. Legacy is
    /// as it was when archived: after unified-only writes, `sync-legacy` brings it up to date
    /// (the guardrails keep reads off legacy until then).
    pub(crate) async fn restore_archive(
        &self,
        configured: Flags,
    ) -> Result<(crate::archive::Manifest, bool)> {
        let mut tx = self.begin_write().await?;
        crate::evidence::lock_migration_state(B::dialect(&mut tx)).await?;
        let state = crate::evidence::migration_state(B::dialect(&mut tx)).await?;
        if !state.archived {
            return Err(StorageError::Conflict(
                "nothing to restore: the legacy tables are not archived".into(),
            ));
        }
        let its_tables = crate::monolith::archived_tables::<B>(&mut tx, true).await?;
        let mut archived = B::archive_evidence(&mut tx, true).await?;
        archived.extend(crate::monolith::evidence::<B>(&mut tx, &its_tables, true).await?);
        let recorded = B::last_manifest(&mut tx).await?;
        let unchanged = recorded
            .as_ref()
            .is_some_and(|manifest| manifest.action == "archive" && manifest.tables == archived);
        crate::legacy_views::drop::<B>(&mut tx).await?;
        B::move_legacy_tables(&mut tx, false).await?;
        crate::monolith::move_tables::<B>(&mut tx, &its_tables, false).await?;
        let mut restored = B::archive_evidence(&mut tx, false).await?;
        restored.extend(crate::monolith::evidence::<B>(&mut tx, &its_tables, false).await?);
        ensure_same_evidence(&archived, &restored, "restoring")?;
        let flags = B::load_flags(&mut tx)
            .await?
            .map_or(configured, |stored| stored.flags);
        let phase = flags
            .check(&crate::evidence::migration_state(B::dialect(&mut tx)).await?)
            .map_or("none", phase_name);
        B::save_manifest(&mut tx, "restore", phase, &restored).await?;
        let manifest = B::last_manifest(&mut tx).await?;
        B::notify(&mut tx, &[Invalidation::Everything]).await?;
        B::notify_state_changed(&mut tx).await?;
        tx.commit().await?;
        let manifest = manifest
            .ok_or_else(|| StorageError::CorruptData("the restore manifest vanished".into()))?;
        Ok((manifest, unchanged))
    }

    pub(crate) async fn last_manifest(&self) -> Result<Option<crate::archive::Manifest>> {
        let mut conn = self.acquire().await?;
        B::last_manifest(&mut conn).await
    }
}

/// A move must carry every row unchanged; anything else rolls the move back.
fn ensure_same_evidence(
    before: &[crate::archive::TableEvidence],
    after: &[crate::archive::TableEvidence],
    what: &str,
) -> Result<()> {
    if before == after {
        Ok(())
    } else {
        Err(StorageError::CorruptData(format!(
            "{what} changed the tables' contents (before {before:?}, after {after:?}); nothing was moved"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_ignores_row_order_and_sees_any_change() {
        let rows = ["(1,a)", "(2,b)", "(3,c)"];
        let mut forward = Checksum::default();
        rows.iter().for_each(|row| forward.add(row));
        let mut backward = Checksum::default();
        rows.iter().rev().for_each(|row| backward.add(row));
        let mut changed = Checksum::default();
        ["(1,a)", "(2,B)", "(3,c)"]
            .iter()
            .for_each(|row| changed.add(row));
        let (forward, backward, changed) = (
            forward.finish("t"),
            backward.finish("t"),
            changed.finish("t"),
        );
        assert_eq!(forward, backward);
        assert_eq!(forward.rows, 3);
        assert_ne!(forward.checksum, changed.checksum);
    }
}
