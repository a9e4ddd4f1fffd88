//! Failing fast while the database cannot be reached. With PostgreSQL down, every acquisition
//! would retry the refused connection until the pool's acquire timeout (seconds), and every
//! request would wait that long for its 503. After one acquisition finds the database
//! unreachable, the breaker opens: acquisitions fail at once for a moment, then one of them
//! probes (the others still fail at once) and its success closes the breaker.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Result, StorageError};

/// How long the breaker stays open before a probe.
const OPEN_FOR: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Breaker {
    epoch: Instant,
    /// Milliseconds since `epoch` until which acquisitions fail at once; 0 when closed.
    open_until: AtomicU64,
}

impl Breaker {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            open_until: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Runs an acquisition unless the breaker is open. `connections` tells how many
    /// connections the pool holds: a timed-out acquisition with none means the database
    /// refused them all (with some, the pool is merely busy: not the breaker's business).
    pub(crate) async fn acquire<T>(
        &self,
        connections: impl Fn() -> u32,
        acquisition: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let until = self.open_until.load(Ordering::Acquire);
        let now = self.now();
        if until > now {
            return Err(StorageError::DatabaseUnreachable);
        }
        if until != 0 {
            // Half-open: one caller probes, the others keep failing at once meanwhile.
            let probing = now + OPEN_FOR.as_millis() as u64 * 30;
            if self
                .open_until
                .compare_exchange(until, probing, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return Err(StorageError::DatabaseUnreachable);
            }
        }
        let outcome = acquisition.await;
        match &outcome {
            Err(StorageError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)))
                if connections() == 0 =>
            {
                self.open_until
                    .store(self.now() + OPEN_FOR.as_millis() as u64, Ordering::Release);
            }
            _ => self.open_until.store(0, Ordering::Release),
        }
        outcome
    }
}
