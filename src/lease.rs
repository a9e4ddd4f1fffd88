//! The bulk operations' lease as a command holds it: taken before the operation starts (a
//! second operation exits 1 naming the holder), its heartbeat renewed in the background, and
//! released on the way out. Ctrl-C and SIGTERM ask a batched operation to stop at its next
//! batch boundary instead of ending the process mid-batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use storage::{Storage, StorageError};

use crate::commands::CheckFailed;

/// The lease of one run of a bulk operation.
#[derive(Debug)]
pub struct HeldLease {
    storage: Storage,
    /// `None` on a schema reverted below the lease's migration (`migrate down`): nothing that
    /// could hold a lease runs on it.
    holder: Option<String>,
    /// Set by Ctrl-C / SIGTERM, or when the heartbeat found the lease taken over.
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
    signals: Option<tokio::task::JoinHandle<()>>,
}

/// Why a batched operation stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C or SIGTERM.
    Asked,
    /// Another run took the lease over: this one's heartbeat had stopped too long.
    LeaseLost,
}

impl HeldLease {
    /// Takes the lease for `operation`, or fails with exit 1 naming the running holder. With
    /// `stop_at_batches`, Ctrl-C and SIGTERM are caught and reported by [`HeldLease::stop`]
    /// (the operation checks it between batches); without, they end the process as usual, and
    /// the database rolls back what was not committed.
    pub async fn take(
        storage: &Storage,
        operation: &str,
        grace: Duration,
        stop_at_batches: bool,
    ) -> anyhow::Result<Self> {
        // Unique per run: a restarted process may get the same pid, never the same instant.
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let holder = format!("{operation}:{}:{started}", std::process::id());
        let mut taken = storage.take_lease(operation, &holder, grace, None).await;
        // A holder that ran on this host and whose process is gone (`kill -9`) need not be
        // waited for: only that very holder is taken over, so a live newcomer is not.
        if let Err(StorageError::Leased(current)) = &taken
            && current.is_gone()
        {
            let dead = current.holder.clone();
            taken = storage
                .take_lease(operation, &holder, grace, Some(&dead))
                .await;
        }
        match taken {
            Ok(taken) => {
                if let Some(previous) = taken.took_over {
                    let why = if previous.is_gone() {
                        "its process is gone".to_owned()
                    } else {
                        format!(
                            "its heartbeat had stopped for longer than the grace period ({} s)",
                            grace.as_secs()
                        )
                    };
                    tracing::warn!(%previous, "took over the lease of a bulk operation: {why}");
                    crate::commands::note(&format!("took over the lease of {previous}: {why}"));
                }
            }
            Err(leased @ StorageError::Leased(_)) => {
                return Err(CheckFailed(leased.to_string()).into());
            }
            Err(old) if old.is_undefined_table() && operation == "migrate down" => {
                tracing::info!("the schema has no lease table (reverted below it): none taken");
                return Ok(Self {
                    storage: storage.clone(),
                    holder: None,
                    stop: Arc::new(AtomicBool::new(false)),
                    lost: Arc::new(AtomicBool::new(false)),
                    heartbeat: tokio::spawn(async {}),
                    signals: None,
                });
            }
            Err(other) => return Err(anyhow::Error::new(other).context("cannot take the lease")),
        }
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(beat(
            storage.clone(),
            holder.clone(),
            grace,
            Arc::clone(&stop),
            Arc::clone(&lost),
        ));
        let signals = stop_at_batches.then(|| tokio::spawn(catch_signals(Arc::clone(&stop))));
        Ok(Self {
            storage: storage.clone(),
            holder: Some(holder),
            stop,
            lost,
            heartbeat,
            signals,
        })
    }

    /// Whether the operation must stop at this batch boundary, and why.
    pub fn stop(&self) -> Option<Stop> {
        if self.lost.load(Ordering::Acquire) {
            Some(Stop::LeaseLost)
        } else if self.stop.load(Ordering::Acquire) {
            Some(Stop::Asked)
        } else {
            None
        }
    }

    /// Gives the lease back. A failure is logged, not fatal: the lease then expires after the
    /// grace period.
    pub async fn release(self) {
        self.heartbeat.abort();
        if let Some(signals) = self.signals {
            signals.abort();
        }
        let Some(holder) = self.holder else {
            return;
        };
        match self.storage.release_lease(&holder).await {
            Ok(()) => {}
            // `migrate down` reverted the lease's own migration: the lease went with its table.
            Err(err) if err.is_undefined_table() => {}
            Err(err) => {
                tracing::warn!(error = %storage::Logged(&err), "could not release the lease; it expires after the grace period");
            }
        }
    }
}

/// Renews the heartbeat every fifth of the grace period, so a renewal or two may fail (a
/// database restart) before the lease can be taken over.
async fn beat(
    storage: Storage,
    holder: String,
    grace: Duration,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
) {
    let every = (grace / 5).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        match storage.renew_lease(&holder).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(
                    "the lease was taken over by another run: stopping at the next batch"
                );
                lost.store(true, Ordering::Release);
                stop.store(true, Ordering::Release);
                return;
            }
            Err(err) => {
                tracing::warn!(error = %storage::Logged(&err), "could not renew the lease; retrying")
            }
        }
    }
}

/// Ctrl-C or SIGTERM (what Kubernetes sends a Job's pod) sets `stop`.
async fn catch_signals(stop: Arc<AtomicBool>) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    crate::commands::note(
        "stopping at the next batch boundary (Ctrl-C again has no further effect; kill -9 ends it at once)",
    );
    stop.store(true, Ordering::Release);
}
