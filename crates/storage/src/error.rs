//! Errors of the storage layer.

use domain::FieldError;
use serde::Serialize;

/// What a request names by id: the noun of a "not found" or "not a valid id" answer, and the
/// key the frontend translates it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Category,
    Listing,
    Product,
    ProductVariant,
    Attribute,
    Binding,
    Resolution,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Category => "category",
            Resource::Listing => "listing",
            Resource::Product => "product",
            Resource::ProductVariant => "product_variant",
            Resource::Attribute => "attribute",
            Resource::Binding => "binding",
            Resource::Resolution => "resolution",
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<domain::EntityKind> for Resource {
    fn from(kind: domain::EntityKind) -> Self {
        match kind {
            domain::EntityKind::Listing => Resource::Listing,
            domain::EntityKind::Product => Resource::Product,
            domain::EntityKind::ProductVariant => Resource::ProductVariant,
        }
    }
}

/// What can go wrong in a storage operation. Database detail stays in the cause chain for
/// logs; callers map the kinds to answers.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{what} {id} does not exist")]
    NotFound { what: Resource, id: i64 },
    #[error("{0}")]
    Conflict(String),
    /// The caller may not change this entity.
    #[error("{0}")]
    Forbidden(String),
    #[error("refused by a guardrail ({rule}): {violation}", rule = .0.rule(), violation = .0)]
    Guardrail(flags::GuardrailViolation),
    /// The guardrail `unified_reads_hide_quarantined_values`, with what holds it up.
    #[error(
        "refused by a guardrail ({rule}): {violation}; not yet resolved or accepted: {counts}",
        rule = flags::GuardrailViolation::UnifiedReadsHideQuarantinedValues.rule(),
        violation = flags::GuardrailViolation::UnifiedReadsHideQuarantinedValues,
        counts = describe_unsettled(.0)
    )]
    QuarantineUnsettled(Vec<UnsettledCount>),
    #[error("{} value(s) were refused", .0.len())]
    InvalidValues(Vec<FieldError>),
    #[error("unsupported database URL '{0}': use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    /// Database settings that cannot work together.
    #[error("{0}")]
    Configuration(String),
    #[error("stored data cannot be read: {0}")]
    CorruptData(String),
    /// The flags changed between a write's decision and its commit, twice in a row.
    #[error(
        "the migration flags changed while the write was decided (it was to write {decided:?}, the flags in force write {current:?}); nothing was written: retry"
    )]
    StaleWriteMode {
        decided: flags::WriteMode,
        current: flags::WriteMode,
    },
    #[error(
        "the legacy tables lack columns the service cannot do without: {0}; the service never alters \
         the marketplace's tables: add them in the marketplace's own schema migrations"
    )]
    LegacySchema(String),
    /// Every read connection is busy and enough reads wait for one: refused at once.
    #[error("every database connection is busy")]
    Saturated,
    /// The database refused connections a moment ago: failing at once until it answers again.
    #[error("the database cannot be reached")]
    DatabaseUnreachable,
    /// Another bulk operation holds the lease (one runs at a time).
    #[error(
        "another bulk operation is running: {0}; wait for it to finish, or stop it (a killed \
         one's lease is taken over once its heartbeat is older than the grace period)"
    )]
    Leased(Box<LeaseHolder>),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("schema migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// A condition that passes by itself (a lock or statement timeout, a deadlock, a full pool
    /// or server, a busy SQLite file, flags that changed under the write): answered 503 with
    /// Retry-After, never 500. Nothing was written.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::StaleWriteMode { .. }
            | StorageError::DatabaseUnreachable
            | StorageError::Saturated => true,
            StorageError::Database(err)
            | StorageError::Migration(
                sqlx::migrate::MigrateError::Execute(err)
                | sqlx::migrate::MigrateError::ExecuteMigration(err, _),
            ) => transient(err),
            _ => false,
        }
    }

    /// The database's own words when it refused a statement because of the data it was given
    /// (a value it cannot convert or hold, a constraint, a trigger that raised): what a bulk
    /// operation quarantines with the row, where anything else fails the batch.
    pub fn refused_data(&self) -> Option<String> {
        let StorageError::Database(sqlx::Error::Database(db)) = self else {
            return None;
        };
        let code = db.code()?;
        let refused = match code.parse::<u32>() {
            // SQLite: SQLITE_TOOBIG, SQLITE_CONSTRAINT (and its extended codes), SQLITE_MISMATCH.
            Ok(sqlite) => matches!(sqlite & 0xff, 18..=20),
            // PostgreSQL: data exception, integrity constraint violation, program limit
            // exceeded (a value too large to index), raise_exception (a trigger's refusal).
            Err(_) => {
                code.starts_with("22")
                    || code.starts_with("23")
                    || code.starts_with("54")
                    || code == "P0001"
            }
        };
        refused.then(|| format!("the database refused it ({code}): {}", db.message()))
    }

    /// The statement named a table the schema does not have (yet, or any more).
    pub fn is_undefined_table(&self) -> bool {
        matches!(self, StorageError::Database(sqlx::Error::Database(db))
            if db.code().as_deref() == Some("42P01")
                || (db.code().as_deref() == Some("1") && db.message().starts_with("no such table")))
    }

    /// Another row already holds this key.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StorageError::Database(sqlx::Error::Database(db)) if db.is_unique_violation())
    }
}

impl StorageError {
    /// The code the database refused with, and its condition name when known.
    pub fn sqlstate(&self) -> Option<crate::sqlstate::SqlState> {
        let (StorageError::Database(sqlx::Error::Database(db))
        | StorageError::Migration(
            sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(db))
            | sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(db), _),
        )) = self
        else {
            return None;
        };
        let code = db.code()?.into_owned();
        Some(
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                crate::sqlstate::SqlState::postgres(code)
            } else {
                crate::sqlstate::SqlState::sqlite(code)
            },
        )
    }
}

/// An error as a log line shows it: its causes joined by ": ", then the database's code and
/// its name (`… (SQLSTATE 40P01 deadlock_detected)`), never Rust's debug form.
#[derive(Debug)]
pub struct Logged<'a>(pub &'a StorageError);

impl std::fmt::Display for Logged<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chain =
            std::iter::successors(Some(self.0 as &dyn std::error::Error), |err| err.source());
        f.write_str(&each_cause_once(chain))?;
        if let Some(state) = self.0.sqlstate() {
            write!(f, " ({state})")?;
        }
        Ok(())
    }
}

/// An error and its causes joined by ": ", each said once: `sqlx` and `thiserror` errors often
/// quote their source in their own text, which would print it again.
pub fn each_cause_once<'a, E>(chain: impl Iterator<Item = &'a E>) -> String
where
    E: std::error::Error + ?Sized + 'a,
{
    let mut parts: Vec<String> = Vec::new();
    for cause in chain {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn transient(err: &sqlx::Error) -> bool {
    match err {
        // A connection lost or refused, a pool closed as the service stops.
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // lock_not_available, query_canceled (statement_timeout), deadlock_detected,
            // serialization_failure, too_many_connections, idle_in_transaction_session_timeout;
            // SQLite: SQLITE_BUSY, SQLITE_LOCKED.
            Some("55P03" | "57014" | "40P01" | "40001" | "53300" | "25P03" | "5" | "6") => true,
            // Connection exceptions (08…) and a server shutting down, restarting or in
            // recovery: admin_shutdown, crash_shutdown, cannot_connect_now (57P01–57P03).
            Some(code) => code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03"),
            None => false,
        },
        _ => false,
    }
}

/// Who holds the lease, as the refusal and `status` name it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct LeaseHolder {
    /// The operation as operators type it (`backfill`, `sync-legacy`, …).
    pub operation: String,
    /// Unique per run: the process's claim on the row.
    pub holder: String,
    pub host: String,
    pub pid: i64,
    /// When it took the lease, in seconds since the Unix epoch.
    pub started_epoch: f64,
    /// Seconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_seconds: f64,
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let started = chrono::DateTime::from_timestamp(self.started_epoch as i64, 0)
            .map(|at| at.to_rfc3339())
            .unwrap_or_default();
        write!(
            f,
            "{} (pid {} on {}, since {started}, last heartbeat {:.0} s ago)",
            self.operation, self.pid, self.host, self.heartbeat_age_seconds
        )
    }
}

/// Quarantined values users saw that no operator accepted, for one attribute and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UnsettledCount {
    pub attribute_code: String,
    pub kind: String,
    pub count: i64,
}

/// The unsettled counts in words: `brand (invalid) 6, condition (invalid) 4`.
pub fn describe_unsettled(counts: &[UnsettledCount]) -> String {
    let total: i64 = counts.iter().map(|c| c.count).sum();
    let shown: Vec<String> = counts
        .iter()
        .take(10)
        .map(|c| format!("{} ({}) {}", c.attribute_code, c.kind, c.count))
        .collect();
    let more = if counts.len() > 10 { ", …" } else { "" };
    format!("{total} value(s): {}{more}", shown.join(", "))
}
