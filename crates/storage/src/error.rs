//! Errors of the storage layer.

use domain::FieldError;

/// What can go wrong in a storage operation. Database detail stays in the cause chain for
/// logs; callers map the kinds to answers.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: i64 },
    #[error("{0}")]
    Conflict(String),
    #[error("refused by a guardrail ({rule}): {violation}", rule = .0.rule(), violation = .0)]
    Guardrail(flags::GuardrailViolation),
    #[error("{} value(s) were refused", .0.len())]
    InvalidValues(Vec<FieldError>),
    #[error("unsupported database URL '{0}': use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    #[error("stored data cannot be read: {0}")]
    CorruptData(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("schema migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
