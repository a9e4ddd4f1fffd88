//! One bulk operation at a time. `backfill`, `sync-legacy`, `archive`, `restore-archive`,
//! `sweep-orphans` and `migrate down` each hold the one row of `operation_lease` while they run:
//! a second one is refused with the holder's name, host and pid. The holder renews its
//! heartbeat; a lease whose heartbeat stopped for longer than the grace period (its process was
//! killed) is taken over. Every time is the database's clock, so hosts whose clocks differ
//! judge a heartbeat alike.

use std::time::Duration;

use crate::backend::Backend;
use crate::dialect::{Sql, on_dialect};
use crate::error::{Result, StorageError};
use crate::router::Router;

pub use crate::error::LeaseHolder;

/// What taking the lease found: the stale holder it replaced, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseTaken {
    pub took_over: Option<LeaseHolder>,
}

/// Takes the row when it is free, its heartbeat is older than `$5` seconds, or its holder is
/// `$6` (a holder known to be dead); returns a row only when taken.
const TAKE: Sql = Sql {
    pg: "INSERT INTO operation_lease (id, operation, holder, host, pid, started_epoch, heartbeat_epoch)
        VALUES (1, $1, $2, $3, $4, extract(epoch FROM clock_timestamp()), extract(epoch FROM clock_timestamp()))
        ON CONFLICT (id) DO UPDATE SET operation = excluded.operation, holder = excluded.holder,
            host = excluded.host, pid = excluded.pid, started_epoch = excluded.started_epoch,
            heartbeat_epoch = excluded.heartbeat_epoch
        WHERE operation_lease.heartbeat_epoch < excluded.heartbeat_epoch - $5
            OR operation_lease.holder = $6
        RETURNING holder",
    lite: "INSERT INTO operation_lease (id, operation, holder, host, pid, started_epoch, heartbeat_epoch)
        VALUES (1, $1, $2, $3, $4, (julianday('now') - 2440587.5) * 86400.0,
            (julianday('now') - 2440587.5) * 86400.0)
        ON CONFLICT (id) DO UPDATE SET operation = excluded.operation, holder = excluded.holder,
            host = excluded.host, pid = excluded.pid, started_epoch = excluded.started_epoch,
            heartbeat_epoch = excluded.heartbeat_epoch
        WHERE operation_lease.heartbeat_epoch < excluded.heartbeat_epoch - $5
            OR operation_lease.holder = $6
        RETURNING holder",
};

const HOLDER: Sql = Sql {
    pg: "SELECT operation, holder, host, pid, started_epoch,
            CAST(extract(epoch FROM clock_timestamp()) - heartbeat_epoch AS DOUBLE PRECISION)
                AS heartbeat_age_seconds
        FROM operation_lease",
    lite: "SELECT operation, holder, host, pid, started_epoch,
            CAST((julianday('now') - 2440587.5) * 86400.0 - heartbeat_epoch AS REAL)
                AS heartbeat_age_seconds
        FROM operation_lease",
};

const RENEW: Sql = Sql {
    pg: "UPDATE operation_lease SET heartbeat_epoch = extract(epoch FROM clock_timestamp())
        WHERE holder = $1",
    lite: "UPDATE operation_lease SET heartbeat_epoch = (julianday('now') - 2440587.5) * 86400.0
        WHERE holder = $1",
};

const RELEASE: Sql = Sql::same("DELETE FROM operation_lease WHERE holder = $1");

impl<B: Backend> Router<B> {
    /// Takes the lease for `operation` as `holder` (unique per run), or refuses with
    /// [`StorageError::Leased`] naming the live holder. A holder silent for longer than `grace`,
    /// or the holder `dead` (its process is known to be gone), is replaced, and returned so the
    /// caller can say so.
    pub(crate) async fn take_lease(
        &self,
        operation: &str,
        holder: &str,
        grace: Duration,
        dead: Option<&str>,
    ) -> Result<LeaseTaken> {
        let mut conn = self.acquire().await?;
        let before = on_dialect!(B::dialect(&mut *conn), HOLDER, |c, statement| {
            sqlx::query_as::<_, LeaseHolder>(statement)
                .fetch_optional(&mut *c)
                .await?
        });
        let host = hostname();
        let taken = on_dialect!(B::dialect(&mut *conn), TAKE, |c, statement| {
            sqlx::query_scalar::<_, String>(statement)
                .bind(operation)
                .bind(holder)
                .bind(&host)
                .bind(i64::from(std::process::id()))
                .bind(grace.as_secs_f64())
                .bind(dead)
                .fetch_optional(&mut *c)
                .await?
        });
        if taken.is_none() {
            let current = on_dialect!(B::dialect(&mut *conn), HOLDER, |c, statement| {
                sqlx::query_as::<_, LeaseHolder>(statement)
                    .fetch_optional(&mut *c)
                    .await?
            });
            conn.commit().await?;
            return Err(match current {
                Some(current) => StorageError::Leased(Box::new(current)),
                // Released between the two statements: the caller may simply try again.
                None => StorageError::Conflict(
                    "another bulk operation released its lease just now: run this again".into(),
                ),
            });
        }
        conn.commit().await?;
        Ok(LeaseTaken {
            took_over: before.filter(|b| {
                b.heartbeat_age_seconds > grace.as_secs_f64() || Some(b.holder.as_str()) == dead
            }),
        })
    }

    /// Renews `holder`'s heartbeat; `false` when the lease is no longer its own (taken over
    /// after a silence longer than the grace period).
    pub(crate) async fn renew_lease(&self, holder: &str) -> Result<bool> {
        let mut conn = self.acquire().await?;
        let renewed = on_dialect!(B::dialect(&mut *conn), RENEW, |c, statement| {
            sqlx::query(statement)
                .bind(holder)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        conn.commit().await?;
        Ok(renewed == 1)
    }

    /// Gives the lease back (nothing when it is no longer `holder`'s).
    pub(crate) async fn release_lease(&self, holder: &str) -> Result<()> {
        let mut conn = self.acquire().await?;
        on_dialect!(B::dialect(&mut *conn), RELEASE, |c, statement| {
            sqlx::query(statement)
                .bind(holder)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        conn.commit().await
    }

    /// The lease's holder now, if any (a stale one included: its age says so).
    pub(crate) async fn lease_holder(&self) -> Result<Option<LeaseHolder>> {
        let mut conn = self.acquire().await?;
        let holder = on_dialect!(B::dialect(&mut *conn), HOLDER, |c, statement| {
            sqlx::query_as::<_, LeaseHolder>(statement)
                .fetch_optional(&mut *c)
                .await?
        });
        conn.commit().await?;
        Ok(holder)
    }
}

impl LeaseHolder {
    /// Whether the holder's process is known to be gone: it ran on this host (same name) and
    /// no process has its pid now. A pid reused since reads as alive: the grace period then
    /// decides, never a guess.
    pub fn is_gone(&self) -> bool {
        self.host == hostname()
            && u32::try_from(self.pid).is_ok_and(|pid| {
                pid != std::process::id()
                    && std::path::Path::new("/proc/self").exists()
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            })
    }
}

/// This machine's name as the refusal shows it (the pod's name in Kubernetes).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}
