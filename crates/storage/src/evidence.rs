//! The facts a phase transition depends on, as the database records them: archived, unified-only
//! writes not yet synced back, the era in which every write has reached the unified store, and
//! whether a backfill pass begun in that era completed and a clean verify followed. Also the
//! fence that makes a write commit only under the flags it was decided with.

use flags::{MigrationState, WriteMode};

use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::Result;
use crate::stats::record_queries;

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

pub(crate) const STATE: Sql = Sql::same(
    "SELECT m.archived_at IS NOT NULL AS archived,
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
    FROM migration_state m LEFT JOIN flag_state f ON f.id = m.id WHERE m.id = 1"
);

const ARCHIVED: Sql = Sql::same("SELECT archived_at IS NOT NULL FROM migration_state WHERE id = 1");

/// A write that reached only unified: legacy is behind until a reverse sync. Only the first one
/// writes the row, so writes do not queue on it.
const RECORD_UNIFIED_ONLY_WRITE: Sql = Sql::same(
    "UPDATE migration_state
    SET unified_only_write_at = CURRENT_TIMESTAMP WHERE id = 1 AND unified_only_write_at IS NULL",
);

/// Every write reaches unified from now on: a new era begins (if none is running).
const BEGIN_UNIFIED_ERA: Sql = Sql::same(
    "UPDATE migration_state
    SET unified_written_since = CURRENT_TIMESTAMP, unified_era = unified_era + 1
    WHERE id = 1 AND unified_written_since IS NULL",
);

/// A write may reach only legacy: the era ends, and with it the evidence of its backfill.
const END_UNIFIED_ERA: Sql = Sql::same(
    "UPDATE migration_state
    SET unified_written_since = NULL WHERE id = 1 AND unified_written_since IS NOT NULL",
);

/// Every entity kind completed a pass begun in the current era: the era is backfilled. (A later
/// pass, `--restart`, re-copies what dual-write already keeps equal: the evidence stands.)
const RECORD_BACKFILLED: Sql = Sql::same(
    "UPDATE migration_state SET backfilled_era = unified_era
    WHERE id = 1 AND unified_written_since IS NOT NULL
      AND (SELECT COUNT(*) FROM backfill_checkpoint c
           WHERE c.completed_at IS NOT NULL AND c.era = migration_state.unified_era
             AND c.entity_type IN ('listing', 'product', 'product_variant')) = 3",
);

/// A clean verify vouches for era `$1` if it is still the current, backfilled one.
const RECORD_VERIFIED: Sql = Sql::same(
    "UPDATE migration_state SET verified_era = $1
    WHERE id = 1 AND unified_written_since IS NOT NULL AND unified_era = $1 AND backfilled_era = $1"
);

/// A reverse sync begins: unified-only writes from now on set the marker again, so the end of
/// the sync can tell whether one slipped in. Pending stays true until the sync ends.
const START_LEGACY_SYNC: Sql = Sql::same(
    "UPDATE migration_state
    SET legacy_sync_started_at = COALESCE(legacy_sync_started_at, CURRENT_TIMESTAMP),
        unified_only_write_at = NULL
    WHERE id = 1",
);

/// The sync caught legacy up, unless a unified-only write committed after it began.
const FINISH_LEGACY_SYNC: Sql = Sql::same(
    "UPDATE migration_state
    SET legacy_sync_started_at = NULL, legacy_synced_at = CURRENT_TIMESTAMP
    WHERE id = 1 AND unified_only_write_at IS NULL",
);

/// The stored runtime flags that decide a write's stores, read after the fence lock is held.
const STORED_WRITE_FLAGS: Sql =
    Sql::same("SELECT use_unified, dual_write FROM flag_state WHERE id = 1");

/// Shared: writes do not queue on each other, a flag change (which updates the row) waits.
/// (SQLite: the write transaction holds the database's one write lock already.)
const SHARE_MIGRATION_STATE: Sql = Sql {
    pg: "SELECT 1 FROM migration_state WHERE id = 1 FOR SHARE",
    lite: "SELECT 1 FROM migration_state WHERE id = 1",
};

/// A flag change first queues for the table: row share locks admit each other without
/// queueing, so a stream of writes could hold the row past any timeout; a table lock request
/// is queued fairly, and writes that come after it wait for the change instead.
const QUEUE_FOR_MIGRATION_STATE: Sql = Sql {
    pg: "LOCK TABLE migration_state IN EXCLUSIVE MODE",
    lite: "SELECT 1",
};

/// A no-op update: it takes the row's write lock until the transaction ends.
const LOCK_MIGRATION_STATE: Sql = Sql::same("UPDATE migration_state SET id = id WHERE id = 1");

/// Runs one statement of this module that binds nothing; returns the rows it changed.
async fn run(conn: Dialect<'_>, sql: Sql) -> Result<u64> {
    record_queries(1);
    Ok(on_dialect!(conn, sql, |c, statement| {
        sqlx::query(statement)
            .execute(&mut *c)
            .await?
            .rows_affected()
    }))
}

/// Records what a write in `mode` does to the evidence, in the write's transaction. A dual
/// write changes nothing (the era it continues began when dual-write was turned on).
pub(crate) async fn note_write(conn: Dialect<'_>, mode: WriteMode) -> Result<()> {
    match mode {
        WriteMode::UnifiedOnly => run(conn, RECORD_UNIFIED_ONLY_WRITE).await?,
        WriteMode::LegacyOnly => run(conn, END_UNIFIED_ERA).await?,
        WriteMode::Dual => return Ok(()),
    };
    Ok(())
}

/// Records that writes land as `mode` says from now on: a mode that can skip unified ends the
/// era, one that always reaches it begins one.
pub(crate) async fn note_write_mode(conn: Dialect<'_>, mode: WriteMode) -> Result<()> {
    let statement = if mode.writes(flags::Store::Unified) {
        BEGIN_UNIFIED_ERA
    } else {
        END_UNIFIED_ERA
    };
    run(conn, statement).await?;
    Ok(())
}

/// The fence: holds the migration state shared until the transaction ends (no flag change
/// commits meanwhile) and returns where the stored flags send writes, `None` while none are
/// stored.
pub(crate) async fn fence(mut conn: Dialect<'_>) -> Result<Option<WriteMode>> {
    // Two statements: the flags are read in a snapshot taken after the lock is granted, so a
    // flag change that held the lock is seen.
    run(conn.reborrow(), SHARE_MIGRATION_STATE).await?;
    record_queries(1);
    let stored: Option<(bool, bool)> = on_dialect!(conn, STORED_WRITE_FLAGS, |c, statement| {
        sqlx::query_as(statement).fetch_optional(&mut *c).await?
    });
    Ok(stored.map(|(use_unified, dual_write)| {
        flags::Flags {
            use_unified,
            dual_write,
            ..flags::Flags::default()
        }
        .write_mode()
    }))
}

/// Takes the migration state's row for a change of the flags or the phase, queued fairly
/// behind the writes that hold it shared.
pub(crate) async fn lock_migration_state(mut conn: Dialect<'_>) -> Result<()> {
    run(conn.reborrow(), QUEUE_FOR_MIGRATION_STATE).await?;
    run(conn, LOCK_MIGRATION_STATE).await?;
    Ok(())
}

pub(crate) async fn archived(conn: Dialect<'_>) -> Result<bool> {
    record_queries(1);
    Ok(on_dialect!(conn, ARCHIVED, |c, statement| {
        sqlx::query_scalar(statement).fetch_one(&mut *c).await?
    }))
}

pub(crate) async fn state_row(conn: Dialect<'_>) -> Result<StateRow> {
    record_queries(1);
    Ok(on_dialect!(conn, STATE, |c, statement| {
        sqlx::query_as(statement).fetch_one(&mut *c).await?
    }))
}

pub(crate) async fn migration_state(conn: Dialect<'_>) -> Result<MigrationState> {
    Ok(state_row(conn).await?.migration_state())
}

/// Marks the current era backfilled when every entity kind completed a pass begun in it.
pub(crate) async fn record_backfilled(conn: Dialect<'_>) -> Result<()> {
    run(conn, RECORD_BACKFILLED).await?;
    Ok(())
}

/// A clean verify vouches for `era`, if it is still the current, backfilled one.
pub(crate) async fn record_verified(conn: Dialect<'_>, era: i64) -> Result<()> {
    record_queries(1);
    on_dialect!(conn, RECORD_VERIFIED, |c, statement| {
        sqlx::query(statement).bind(era).execute(&mut *c).await?;
    });
    Ok(())
}

pub(crate) async fn start_legacy_sync(conn: Dialect<'_>) -> Result<()> {
    run(conn, START_LEGACY_SYNC).await?;
    Ok(())
}

/// Ends a reverse sync; false when a unified-only write committed after it began.
pub(crate) async fn finish_legacy_sync(conn: Dialect<'_>) -> Result<bool> {
    Ok(run(conn, FINISH_LEGACY_SYNC).await? == 1)
}
