//! Where the backfill of each entity kind stands: its checkpoint, saved in each batch's
//! transaction, and the progress the metrics show.

use serde::Serialize;

use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::Result;
use crate::stats::record_queries;

/// Progress of one entity kind, stored after every batch in the batch's transaction, so a
/// killed backfill resumes where its last committed batch ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Checkpoint {
    pub entity_type: String,
    pub last_id: i64,
    pub migrated: i64,
    pub quarantined: i64,
    /// Set once a run found no entity past `last_id`.
    pub completed: bool,
    /// The unified era the pass began in; `None` if a legacy-only write could still happen
    /// then, so the pass is no evidence for unified reads.
    pub era: Option<i64>,
}

impl Checkpoint {
    pub(crate) fn fresh(entity_type: &str, era: Option<i64>) -> Self {
        Self {
            entity_type: entity_type.to_owned(),
            last_id: 0,
            migrated: 0,
            quarantined: 0,
            completed: false,
            era,
        }
    }
}

/// Where the backfill of one entity kind stands, for metrics: a backfill that is not
/// complete and whose checkpoint stopped moving has stalled.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Progress {
    pub entity_type: String,
    pub migrated: i64,
    pub quarantined: i64,
    pub completed: bool,
    /// When the checkpoint last moved, in seconds since the Unix epoch.
    pub updated_epoch_seconds: f64,
}

/// `$epoch` turns `updated_at` into seconds since the Unix epoch on the backend.
macro_rules! progress_sql {
    ($epoch:literal) => {
        concat!(
            // The quarantine as it is now: a retry after resolutions empties it, while the
            // checkpoint keeps what its pass quarantined.
            "SELECT entity_type, migrated, (SELECT COUNT(*) FROM backfill_quarantine q \
             WHERE q.entity_type = backfill_checkpoint.entity_type) AS quarantined, \
             completed_at IS NOT NULL AS completed, ",
            $epoch,
            " AS updated_epoch_seconds FROM backfill_checkpoint ORDER BY entity_type"
        )
    };
}

const PROGRESS: Sql = Sql {
    pg: progress_sql!("CAST(EXTRACT(EPOCH FROM updated_at) AS DOUBLE PRECISION)"),
    lite: progress_sql!("(julianday(updated_at) - 2440587.5) * 86400.0"),
};

/// Every entity kind's progress. Not counted as a query: the scrape reads this, and the query
/// metric counts what requests cost.
pub(crate) async fn progress(conn: Dialect<'_>) -> Result<Vec<Progress>> {
    Ok(on_dialect!(conn, PROGRESS, |c, statement| {
        sqlx::query_as(statement).fetch_all(c).await?
    }))
}

const LOAD: Sql = Sql::same(
    "SELECT entity_type, last_id, migrated, quarantined,
        completed_at IS NOT NULL AS completed, CAST(era AS BIGINT) AS era
    FROM backfill_checkpoint WHERE entity_type = $1",
);

/// The checkpoint of `entity_type`, if a pass ever saved one.
pub(crate) async fn load(conn: Dialect<'_>, entity_type: &str) -> Result<Option<Checkpoint>> {
    record_queries(1);
    Ok(on_dialect!(conn, LOAD, |c, statement| {
        sqlx::query_as(statement)
            .bind(entity_type)
            .fetch_optional(c)
            .await?
    }))
}

const SAVE: Sql = Sql::same(
    "INSERT INTO backfill_checkpoint
        (entity_type, last_id, migrated, quarantined, completed_at, updated_at, era)
    VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN CURRENT_TIMESTAMP END, CURRENT_TIMESTAMP, $6)
    ON CONFLICT (entity_type) DO UPDATE SET last_id = excluded.last_id, migrated = excluded.migrated,
        quarantined = excluded.quarantined, completed_at = excluded.completed_at,
        updated_at = excluded.updated_at, era = excluded.era",
);

/// Saves `checkpoint` in the transaction of the batch it follows.
pub(crate) async fn save(conn: Dialect<'_>, checkpoint: &Checkpoint) -> Result<()> {
    record_queries(1);
    on_dialect!(conn, SAVE, |c, statement| {
        sqlx::query(statement)
            .bind(&checkpoint.entity_type)
            .bind(checkpoint.last_id)
            .bind(checkpoint.migrated)
            .bind(checkpoint.quarantined)
            .bind(checkpoint.completed)
            .bind(checkpoint.era)
            .execute(c)
            .await?;
    });
    Ok(())
}
