//! Counts of statements sent to the database, for the DB-query metric.

use std::sync::atomic::{AtomicU64, Ordering};

static QUERIES: AtomicU64 = AtomicU64::new(0);

/// Notes that `count` statements are about to be sent.
pub(crate) fn record_queries(count: u64) {
    QUERIES.fetch_add(count, Ordering::Relaxed);
}

/// Statements sent by this process since it started.
pub fn queries_executed() -> u64 {
    QUERIES.load(Ordering::Relaxed)
}
