//! The throttle of the bulk operations that make read replicas lag (backfill, sync-legacy), as
//! gh-ost has it: paused, or held while a replica lags or the primary is busy. The settings
//! live in `operation_throttle`, so the CLI or any service replica changes them while the
//! operation runs; the operation reads them before every batch and reports why it waits.

use serde::Serialize;

use crate::backend::Backend;
use crate::dialect::{Sql, on_dialect};
use crate::error::Result;
use crate::router::Router;
use crate::stats::record_queries;

/// A throttled operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Backfill,
    SyncLegacy,
}

impl Operation {
    pub const ALL: [Operation; 2] = [Operation::Backfill, Operation::SyncLegacy];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Backfill => "backfill",
            Operation::SyncLegacy => "sync_legacy",
        }
    }

    /// The subcommand, as operators type it (also accepted in the admin route).
    pub fn command(self) -> &'static str {
        match self {
            Operation::Backfill => "backfill",
            Operation::SyncLegacy => "sync-legacy",
        }
    }
}

impl std::str::FromStr for Operation {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "backfill" => Ok(Operation::Backfill),
            "sync_legacy" | "sync-legacy" => Ok(Operation::SyncLegacy),
            other => Err(format!(
                "unknown operation '{other}': backfill or sync-legacy"
            )),
        }
    }
}

/// An operation's throttle: its settings and what the running operation last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Throttle {
    pub operation: String,
    pub paused: bool,
    /// Batches wait while a read replica's replay lag exceeds this.
    pub max_lag_ms: Option<i64>,
    /// Batches wait while the primary has more active backends than this.
    pub max_load: Option<i64>,
    pub updated_by: String,
    /// Why the running operation waits (`None`: it does not, or none runs).
    pub throttled: Option<String>,
    /// The replay lag it last measured.
    pub lag_ms: Option<i64>,
}

impl Throttle {
    fn unset(operation: Operation) -> Self {
        Throttle {
            operation: operation.as_str().to_owned(),
            paused: false,
            max_lag_ms: None,
            max_load: None,
            updated_by: String::new(),
            throttled: None,
            lag_ms: None,
        }
    }
}

/// A change of the settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThrottleChange {
    pub paused: Option<bool>,
    /// `Some(None)` removes the limit.
    pub max_lag_ms: Option<Option<i64>>,
    pub max_load: Option<Option<i64>>,
}

const LOAD: Sql = Sql::same(
    "SELECT operation, paused, max_lag_ms, max_load, updated_by, throttled, lag_ms
    FROM operation_throttle WHERE operation = $1",
);

const LOAD_ALL: Sql = Sql::same(
    "SELECT operation, paused, max_lag_ms, max_load, updated_by, throttled, lag_ms
    FROM operation_throttle ORDER BY operation",
);

/// Changes only the settings a change names, in one statement: two changes racing each other
/// (a pause from the CLI, a limit from the admin API) both land.
const CHANGE: Sql = Sql::same(
    "INSERT INTO operation_throttle
        (operation, paused, max_lag_ms, max_load, updated_by, updated_at)
    VALUES ($1, COALESCE($2, false), $4, $6, $7, CURRENT_TIMESTAMP)
    ON CONFLICT (operation) DO UPDATE SET paused = COALESCE($2, operation_throttle.paused),
        max_lag_ms = CASE WHEN $3 THEN $4 ELSE operation_throttle.max_lag_ms END,
        max_load = CASE WHEN $5 THEN $6 ELSE operation_throttle.max_load END,
        updated_by = excluded.updated_by, updated_at = excluded.updated_at
    RETURNING operation, paused, max_lag_ms, max_load, updated_by, throttled, lag_ms",
);

const REPORT: Sql = Sql::same(
    "INSERT INTO operation_throttle
        (operation, updated_by, throttled, lag_ms, reported_at)
    VALUES ($1, 'operation', $2, $3, CURRENT_TIMESTAMP)
    ON CONFLICT (operation) DO UPDATE SET throttled = excluded.throttled,
        lag_ms = excluded.lag_ms, reported_at = excluded.reported_at",
);

/// What the throttle weighs an operation's pace against: the primary's busy client backends.
/// SQLite has one writer and no such count.
const ACTIVE_BACKENDS: Sql = Sql {
    pg: "SELECT count(*) FROM pg_stat_activity
        WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    lite: "SELECT 0",
};

impl<B: Backend> Router<B> {
    pub(crate) async fn throttle(&self, operation: Operation) -> Result<Throttle> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        let stored: Option<Throttle> = on_dialect!(B::dialect(&mut conn), LOAD, |c, statement| {
            sqlx::query_as(statement)
                .bind(operation.as_str())
                .fetch_optional(&mut *c)
                .await?
        });
        Ok(stored.unwrap_or_else(|| Throttle::unset(operation)))
    }

    pub(crate) async fn throttles(&self) -> Result<Vec<Throttle>> {
        let mut conn = self.acquire().await?;
        // Not counted: the metrics read this in the background, and the query metric counts
        // what requests cost.
        let all = on_dialect!(B::dialect(&mut conn), LOAD_ALL, |c, statement| {
            sqlx::query_as(statement).fetch_all(&mut *c).await?
        });
        Ok(all)
    }

    /// Applies `change` to the stored settings (only those it names; not the operation's
    /// report); returns them all.
    pub(crate) async fn change_throttle(
        &self,
        operation: Operation,
        change: ThrottleChange,
        actor: &str,
    ) -> Result<Throttle> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        let throttle: Throttle = on_dialect!(B::dialect(&mut conn), CHANGE, |c, statement| {
            sqlx::query_as(statement)
                .bind(operation.as_str())
                .bind(change.paused)
                .bind(change.max_lag_ms.is_some())
                .bind(change.max_lag_ms.flatten())
                .bind(change.max_load.is_some())
                .bind(change.max_load.flatten())
                .bind(actor)
                .fetch_one(&mut *c)
                .await?
        });
        conn.commit().await?;
        Ok(throttle)
    }

    /// The running operation's report: why it waits (`None`: it runs), and the lag it saw.
    pub(crate) async fn report_throttle(
        &self,
        operation: Operation,
        throttled: Option<&str>,
        lag_ms: Option<i64>,
    ) -> Result<()> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        on_dialect!(B::dialect(&mut conn), REPORT, |c, statement| {
            sqlx::query(statement)
                .bind(operation.as_str())
                .bind(throttled)
                .bind(lag_ms)
                .execute(&mut *c)
                .await?;
        });
        conn.commit().await
    }

    /// Client backends of the primary running a statement now, this one not counted.
    pub(crate) async fn active_backends(&self) -> Result<i64> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        Ok(on_dialect!(
            B::dialect(&mut conn),
            ACTIVE_BACKENDS,
            |c, statement| sqlx::query_scalar(statement).fetch_one(&mut *c).await?
        ))
    }
}
