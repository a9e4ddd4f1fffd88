//! How transactions begin on PostgreSQL: as this service's writes, and behind a transaction
//! pooler with the limits a pooler does not let through.

use crate::PoolSettings;

/// A write transaction of this service says so: the capture triggers on the legacy tables
/// (migration 16) leave its own writes alone, so they are never applied twice.
pub(crate) const BEGIN_AS_SERVICE: &str = "BEGIN; SET LOCAL unified_attributes.writer = 'service'";

/// Behind a transaction-mode pooler (PgBouncer before 1.21), a server connection is ours only
/// inside a transaction, and sqlx's statements (named, or unnamed and parsed in a round trip
/// of their own) would reach another client's server between their messages. So every
/// statement runs inside a transaction, whose `BEGIN` also drops the statements an earlier
/// client left on the server (names are per client: they would collide) and sets the time
/// limits that a pooler does not let through as startup options. The statement cache is off.
#[derive(Debug)]
pub(crate) struct Pooled {
    pub(crate) read: String,
    pub(crate) write: String,
    pub(crate) snapshot: String,
}

impl Pooled {
    pub(crate) fn new(settings: PoolSettings, search_path: &str) -> Self {
        let limits = format!(
            "DEALLOCATE ALL; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
             SET LOCAL idle_in_transaction_session_timeout = {}; SET LOCAL search_path TO {}",
            settings.statement_timeout.as_millis(),
            settings.lock_timeout.as_millis(),
            settings.idle_in_transaction_timeout.as_millis(),
            search_path
        );
        Self {
            read: format!("BEGIN READ ONLY; {limits}"),
            write: format!("{BEGIN_AS_SERVICE}; {limits}"),
            snapshot: format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {limits}"),
        }
    }
}
