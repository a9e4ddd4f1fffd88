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
            let (storage, metrics) = (&state.storage, &state.metrics);
            refresh(
                "backfill progress",
                storage.backfill_progress(),
                |progress| metrics.set_backfill(&progress),
            )
            .await;
            refresh(
                "backfill position",
                storage.backfill_percent(),
                |percents| metrics.set_backfill_percent(&percents),
            )
            .await;
            refresh("throttles", storage.throttles(), |throttles| {
                metrics.set_throttles(&throttles)
            })
            .await;
            refresh("migration facts", storage.migration_facts(), |facts| {
                metrics.set_facts(&facts)
            })
            .await;
            refresh("capture status", storage.capture_status(), |status| {
                metrics.set_capture(&status)
            })
            .await;
        }
    });
}

/// How long one background read may take; past it the gauges keep their last values.
const READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// One background read: applied when it answers within `READ_LIMIT`, else said at debug level.
async fn refresh<T>(
    what: &str,
    read: impl Future<Output = storage::Result<T>>,
    apply: impl FnOnce(T),
) {
    match tokio::time::timeout(READ_LIMIT, read).await {
        Ok(Ok(value)) => apply(value),
        Ok(Err(err)) => tracing::debug!(what, error = %storage::Logged(&err), "unavailable"),
        Err(_) => tracing::debug!(what, "timed out"),
    }
}
