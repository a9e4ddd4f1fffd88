//! The facts a phase transition depends on, as the database records them: archived, unified-only
//! writes not yet synced back, the era in which every write has reached the unified store, and
//! whether a backfill pass begun in that era completed and a clean verify followed. Also the
//! fence that makes a write commit only under the flags it was decided with.

use flags::{MigrationState, WriteMode};

/// The migration state with what it is derived from, read in one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct StateRow {
    pub archived: bool,
    pub pending_sync: bool,
    /// Counts the periods in which every write reached the unified store.
    pub unified_era: i64,
    /// Every write has reached unified since the era began (no legacy-only write since).
    pub unified_written: bool,
    pub backfill_complete: bool,
    pub verified: bool,
    pub stored_use_unified: Option<bool>,
    pub stored_dual_write: Option<bool>,
    pub quarantine_unsettled: bool,
}

impl StateRow {
    pub(crate) fn migration_state(&self) -> MigrationState {
        MigrationState {
            archived: self.archived,
            unified_only_writes_pending_sync: self.pending_sync,
            backfill_complete: self.backfill_complete,
            verified_clean: self.backfill_complete && self.verified,
            quarantine_unsettled: self.quarantine_unsettled,
        }
    }

    /// Where writes land under the stored runtime flags; `None` while none are stored (then the
    /// environment of each process decides).
    pub(crate) fn stored_write_mode(&self) -> Option<WriteMode> {
        let (use_unified, dual_write) = (self.stored_use_unified?, self.stored_dual_write?);
        Some(
            flags::Flags {
                use_unified,
                dual_write,
                ..flags::Flags::default()
            }
            .write_mode(),
        )
    }

    /// The era of a backfill pass that begins now: `None` while a legacy-only write may still
    /// happen, so such a pass never counts as evidence.
    pub(crate) fn era_of_new_pass(&self) -> Option<i64> {
        self.unified_written.then_some(self.unified_era)
    }

    /// The era a verify that begins now can vouch for: the current one, once its backfill is
    /// complete.
    pub(crate) fn era_to_verify(&self) -> Option<i64> {
        self.backfill_complete.then_some(self.unified_era)
    }
}

pub(crate) const STATE: &str = "SELECT m.archived_at IS NOT NULL AS archived,
        (m.unified_only_write_at IS NOT NULL OR m.legacy_sync_started_at IS NOT NULL) AS pending_sync,
        CAST(m.unified_era AS BIGINT) AS unified_era,
        m.unified_written_since IS NOT NULL AS unified_written,
        (m.unified_written_since IS NOT NULL AND COALESCE(m.backfilled_era = m.unified_era, false))
            AS backfill_complete,
        (m.unified_written_since IS NOT NULL AND COALESCE(m.verified_era = m.unified_era, false))
            AS verified,
        f.use_unified AS stored_use_unified, f.dual_write AS stored_dual_write,
        EXISTS (SELECT 1 FROM backfill_quarantine q
                WHERE q.kind NOT IN ('orphan', 'empty') AND q.accepted_at IS NULL)
            AS quarantine_unsettled
    FROM migration_state m LEFT JOIN flag_state f ON f.id = m.id WHERE m.id = 1";

pub(crate) const ARCHIVED: &str =
    "SELECT archived_at IS NOT NULL FROM migration_state WHERE id = 1";

/// A write that reached only unified: legacy is behind until a reverse sync. Only the first one
/// writes the row, so writes do not queue on it.
pub(crate) const RECORD_UNIFIED_ONLY_WRITE: &str = "UPDATE migration_state
    SET unified_only_write_at = CURRENT_TIMESTAMP WHERE id = 1 AND unified_only_write_at IS NULL";

/// Every write reaches unified from now on: a new era begins (if none is running).
pub(crate) const BEGIN_UNIFIED_ERA: &str = "UPDATE migration_state
    SET unified_written_since = CURRENT_TIMESTAMP, unified_era = unified_era + 1
    WHERE id = 1 AND unified_written_since IS NULL";

/// A write may reach only legacy: the era ends, and with it the evidence of its backfill.
pub(crate) const END_UNIFIED_ERA: &str = "UPDATE migration_state
    SET unified_written_since = NULL WHERE id = 1 AND unified_written_since IS NOT NULL";

/// Every entity kind completed a pass begun in the current era: the era is backfilled. (A later
/// pass, `--restart`, re-copies what dual-write already keeps equal: the evidence stands.)
pub(crate) const RECORD_BACKFILLED: &str = "UPDATE migration_state SET backfilled_era = unified_era
    WHERE id = 1 AND unified_written_since IS NOT NULL
      AND (SELECT COUNT(*) FROM backfill_checkpoint c
           WHERE c.completed_at IS NOT NULL AND c.era = migration_state.unified_era
             AND c.entity_type IN ('listing', 'product', 'product_variant')) = 3";

/// A clean verify vouches for era `$1` if it is still the current, backfilled one.
pub(crate) const RECORD_VERIFIED: &str = "UPDATE migration_state SET verified_era = $1
    WHERE id = 1 AND unified_written_since IS NOT NULL AND unified_era = $1 AND backfilled_era = $1";

/// A reverse sync begins: unified-only writes from now on set the marker again, so the end of
/// the sync can tell whether one slipped in. Pending stays true until the sync ends.
pub(crate) const START_LEGACY_SYNC: &str = "UPDATE migration_state
    SET legacy_sync_started_at = COALESCE(legacy_sync_started_at, CURRENT_TIMESTAMP),
        unified_only_write_at = NULL
    WHERE id = 1";

/// The sync caught legacy up, unless a unified-only write committed after it began.
pub(crate) const FINISH_LEGACY_SYNC: &str = "UPDATE migration_state
    SET legacy_sync_started_at = NULL, legacy_synced_at = CURRENT_TIMESTAMP
    WHERE id = 1 AND unified_only_write_at IS NULL";

/// The stored runtime flags that decide a write's stores, read after the fence lock is held.
pub(crate) const STORED_WRITE_FLAGS: &str =
    "SELECT use_unified, dual_write FROM flag_state WHERE id = 1";

/// Where writes land under `flags`, for the evidence: a write mode that can skip unified ends the era.
pub(crate) fn statement_for_write_mode(mode: WriteMode) -> &'static str {
    if mode.writes(flags::Store::Unified) {
        BEGIN_UNIFIED_ERA
    } else {
        END_UNIFIED_ERA
    }
}
