//! Keeps unified up to date with writes that bypassed the service, and the change feed moving:
//! every replica applies captured changes (rows another replica is applying are skipped) and
//! tries to sequence the feed (one at a time wins) — five times a second while there is work,
//! once a second after a look found none (one cheap read: an idle service costs the database
//! next to nothing) — and prunes what the feed delivered past its retention now and then. A
//! database that is down or slow only delays them: the changes wait in the outbox.

use std::time::Duration;

use crate::AppState;

/// How often captured changes are applied and the feed sequenced while there is work, and how
/// often an idle loop looks: the capture's lag is at most about the idle interval.
const BUSY: Duration = Duration::from_millis(200);
const IDLE: Duration = Duration::from_secs(1);
/// Changes taken per transaction.
const BATCH: i64 = 500;
/// Delivered and applied changes are kept this long for consumers that fell behind.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub fn run(state: &AppState) {
    let storage = state.storage.clone();
    tokio::spawn(async move {
        let mut pruned = std::time::Instant::now();
        let mut interval = IDLE;
        loop {
            tokio::time::sleep(interval).await;
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = std::time::Instant::now();
                if let Err(err) = storage.prune_changes(RETENTION).await {
                    tracing::debug!(error = %storage::Logged(&err), "change feed not pruned");
                }
            }
            match storage.changes_pending().await {
                Ok(true) => interval = BUSY,
                Ok(false) => {
                    interval = IDLE;
                    continue;
                }
                Err(err) => {
                    tracing::debug!(error = %storage::Logged(&err), "change feed unavailable");
                    interval = IDLE;
                    continue;
                }
            }
            loop {
                match storage.apply_captured(BATCH).await {
                    Ok(applied) if applied as i64 >= BATCH => continue,
                    Ok(_) => break,
                    Err(err) => {
                        tracing::debug!(error = %storage::Logged(&err), "captured changes not applied yet");
                        break;
                    }
                }
            }
            if let Err(err) = storage.sequence_changes(BATCH * 4).await {
                tracing::debug!(error = %storage::Logged(&err), "change feed not sequenced yet");
            }
        }
    });
}
