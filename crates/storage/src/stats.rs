//! Counts of statements sent to the database, and of reads refused for want of a
//! connection, for the metrics.

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

static REFUSED_READS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn record_refused_read() {
    REFUSED_READS.fetch_add(1, Ordering::Relaxed);
}

/// Reads refused at once since start because every read connection was busy and enough
/// reads already waited for one.
pub fn reads_refused() -> u64 {
    REFUSED_READS.load(Ordering::Relaxed)
}
