//! The PostgreSQL connections that serve reads, held in a deadpool pool instead of sqlx's.
//!
//! sqlx (0.8 and 0.9 alike) sends a `Sync` and waits for PostgreSQL's answer every time a
//! connection returns to its pool, with no setting to skip it: each uncached read cost the
//! database two round trips. Returned here, a connection goes back as it is. What the ping
//! stood guard against is still handled:
//! - a read cancelled mid-way (its request dropped) leaves unread answers on the connection:
//!   sqlx drains them before the connection's next statement (`wait_until_ready`);
//! - a connection the database or the network broke is closed by [`ReadPool::run`] when its
//!   read fails below SQL, not handed out again;
//! - a connection is replaced after [`MAX_LIFETIME`], like sqlx's default.

use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::error::{Result, StorageError};

/// As sqlx's pool: a connection is closed after 30 minutes, so server-side memory and
/// rebalanced servers behind a proxy are picked up.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

#[derive(Debug)]
pub(crate) struct Connector {
    options: PgConnectOptions,
}

impl managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        self.options.connect().await
    }

    async fn recycle(
        &self,
        _connection: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        // No I/O here: that would be the round trip this pool exists to save.
        if metrics.age() > MAX_LIFETIME {
            return Err(RecycleError::message("past its lifetime"));
        }
        Ok(())
    }
}

/// Reads that may wait for a connection, per connection of a full pool. Beyond, a read is
/// refused at once ([`StorageError::Saturated`], 503): at about 100 µs a statement, two
/// waits a connection cost a fraction of a millisecond while the database keeps up; a longer
/// queue only adds latency to every read it holds once the database is at its limit.
const QUEUED_READS_PER_CONNECTION: usize = 2;

/// Read connections, opened on first use and kept.
#[derive(Debug, Clone)]
pub(crate) struct ReadPool {
    pool: managed::Pool<Connector>,
    max_waiting: usize,
}

/// A read connection: dereferences to sqlx's `PgConnection`; returns to the pool on drop.
pub(crate) type ReadConnection = Object<Connector>;

impl ReadPool {
    pub(crate) fn new(options: PgConnectOptions, max_connections: u32, wait: Duration) -> Self {
        let pool = managed::Pool::builder(Connector { options })
            .max_size(max_connections as usize)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .build()
            // Only fails when a timeout is set without a runtime, and one is set above.
            .expect("the read pool has a runtime for its timeouts");
        Self {
            pool,
            max_waiting: max_connections as usize * QUEUED_READS_PER_CONNECTION,
        }
    }

    /// Connections open now (the circuit breaker tells "refused" from "busy" by it).
    pub(crate) fn size(&self) -> u32 {
        self.pool.status().size as u32
    }

    /// Connections open, and idle among them.
    pub(crate) fn connections(&self) -> (u32, usize) {
        let status = self.pool.status();
        (status.size as u32, status.available)
    }

    pub(crate) async fn acquire(&self) -> Result<ReadConnection> {
        let status = self.pool.status();
        if status.size >= status.max_size && status.waiting >= self.max_waiting {
            crate::stats::record_refused_read();
            return Err(StorageError::Saturated);
        }
        self.pool.get().await.map_err(|err| match err {
            PoolError::Backend(err) => StorageError::Database(err),
            PoolError::Timeout(_) => StorageError::Database(sqlx::Error::PoolTimedOut),
            PoolError::Closed => StorageError::Database(sqlx::Error::PoolClosed),
            other => StorageError::Database(sqlx::Error::Configuration(other.to_string().into())),
        })
    }

    /// Closes a connection whose read failed below SQL instead of returning it to the pool.
    pub(crate) fn discard_if_broken<T>(connection: ReadConnection, outcome: &Result<T>) {
        if let Err(err) = outcome
            && broke_the_connection(err)
        {
            drop(Object::take(connection));
        }
    }
}

/// Whether an error may have left the connection unusable: I/O, protocol, or the server
/// ending the session (SQLSTATE classes 08 and 57, except a cancelled statement).
pub(crate) fn broke_the_connection(err: &StorageError) -> bool {
    match err {
        StorageError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
            code.starts_with("08") || (code.starts_with("57") && code != "57014")
        }),
        StorageError::Database(
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_),
        ) => true,
        _ => false,
    }
}
