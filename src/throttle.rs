//! The throttle a bulk operation (backfill, sync-legacy) obeys before each batch, as gh-ost
//! does: it waits while paused, while a read replica's replay lag exceeds `max_lag_ms`, or
//! while the primary runs more than `max_load` statements. The settings are read from the
//! database each time, so `throttle` (CLI) or any service replica changes them while it runs.

use std::time::{Duration, Instant};

use storage::Storage;
use storage::throttle::{Operation, Throttle};

/// How often a waiting operation looks again.
const RECHECK: Duration = Duration::from_millis(100);

/// How often a waiting operation prints and reports why it still waits.
const REPORT_EVERY: Duration = Duration::from_secs(1);

pub struct Throttler<'a> {
    storage: &'a Storage,
    operation: Operation,
    /// What was last reported to the database, to report changes only.
    reported: Option<Option<String>>,
    /// Time spent waiting, in total.
    pub waited: Duration,
}

impl<'a> Throttler<'a> {
    pub fn new(storage: &'a Storage, operation: Operation) -> Self {
        Self {
            storage,
            operation,
            reported: None,
            waited: Duration::ZERO,
        }
    }

    /// Returns once the next batch may run; prints `throttled: …` lines through `note` while
    /// it waits.
    pub async fn wait_turn(&mut self, mut note: impl FnMut(&str)) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last_note: Option<Instant> = None;
        loop {
            let throttle = self.storage.throttle(self.operation).await?;
            let lag = self.storage.replication_lag();
            let reason = self.reason(&throttle, lag.as_ref()).await?;
            let lag_ms = lag.map(|(_, lag)| lag.as_millis().try_into().unwrap_or(i64::MAX));
            let due = last_note.is_none_or(|at| at.elapsed() >= REPORT_EVERY);
            if self.reported.as_ref() != Some(&reason) || (reason.is_some() && due) {
                self.storage
                    .report_throttle(self.operation, reason.as_deref(), lag_ms)
                    .await?;
                self.reported = Some(reason.clone());
            }
            let Some(reason) = reason else {
                self.waited += started.elapsed();
                return Ok(());
            };
            if due {
                note(&format!("throttled: {reason}"));
                last_note = Some(Instant::now());
            }
            tokio::time::sleep(RECHECK).await;
        }
    }

    /// Why the next batch must wait, if it must.
    async fn reason(
        &self,
        throttle: &Throttle,
        lag: Option<&(String, Duration)>,
    ) -> anyhow::Result<Option<String>> {
        if throttle.paused {
            return Ok(Some(format!(
                "paused by {} (resume: throttle {} --resume)",
                throttle.updated_by,
                self.operation.command()
            )));
        }
        if let (Some(max), Some((replica, lag))) = (throttle.max_lag_ms, lag)
            && lag.as_millis() > u128::try_from(max).unwrap_or(0)
        {
            return Ok(Some(format!(
                "lag {:.1} s on {replica} (limit {:.1} s)",
                lag.as_secs_f64(),
                max as f64 / 1000.0
            )));
        }
        if let Some(max) = throttle.max_load {
            let active = self.storage.active_backends().await?;
            if active > max {
                return Ok(Some(format!(
                    "load: {active} active backends on the primary (limit {max})"
                )));
            }
        }
        Ok(None)
    }

    /// The operation ended: nothing waits any more.
    pub async fn finish(&mut self) -> anyhow::Result<()> {
        if self.reported.as_ref().is_some_and(Option::is_some) {
            self.storage
                .report_throttle(self.operation, None, None)
                .await?;
        }
        Ok(())
    }
}
