//! The bulk operations' and the migration's gauges, read from the database in the background.

/// How often the gauges of other processes' bulk operations are read from the database.
const OPERATIONS_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the gauges of the bulk operations (the backfill runs in another process; its
/// checkpoints and the throttles are the shared truth) up to date in the background, so a
/// scrape runs no query: a flood of scrapes costs the database nothing. A slow or absent
/// database leaves the last values.
pub fn refresh_operations(state: &crate::AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(OPERATIONS_REFRESH);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let limit = std::time::Duration::from_secs(1);
            match tokio::time::timeout(limit, state.storage.backfill_progress()).await {
                Ok(Ok(progress)) => state.metrics.set_backfill(&progress),
                Ok(Err(err)) => {
                    tracing::debug!(error = %storage::Logged(&err), "backfill progress unavailable")
                }
                Err(_) => tracing::debug!("backfill progress timed out"),
            }
            match tokio::time::timeout(limit, state.storage.backfill_percent()).await {
                Ok(Ok(percents)) => state.metrics.set_backfill_percent(&percents),
                Ok(Err(err)) => {
                    tracing::debug!(error = %storage::Logged(&err), "backfill position unavailable")
                }
                Err(_) => tracing::debug!("backfill position timed out"),
            }
            match tokio::time::timeout(limit, state.storage.throttles()).await {
                Ok(Ok(throttles)) => state.metrics.set_throttles(&throttles),
                Ok(Err(err)) => {
                    tracing::debug!(error = %storage::Logged(&err), "throttles unavailable")
                }
                Err(_) => tracing::debug!("throttles timed out"),
            }
            match tokio::time::timeout(limit, state.storage.migration_facts()).await {
                Ok(Ok(facts)) => state.metrics.set_facts(&facts),
                Ok(Err(err)) => {
                    tracing::debug!(error = %storage::Logged(&err), "migration facts unavailable")
                }
                Err(_) => tracing::debug!("migration facts timed out"),
            }
            match tokio::time::timeout(limit, state.storage.capture_status()).await {
                Ok(Ok(status)) => state.metrics.set_capture(&status),
                Ok(Err(err)) => {
                    tracing::debug!(error = %storage::Logged(&err), "capture status unavailable")
                }
                Err(_) => tracing::debug!("capture status timed out"),
            }
        }
    });
}
