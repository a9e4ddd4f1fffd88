//! How a command's failure is told: one kind per failure, the same exit code for that kind in
//! every command, the text once (a cause already quoted by the one above it is not repeated),
//! and with `--json` an object on stdout that a script can read.

use serde::Serialize;
use storage::StorageError;

use crate::commands::{CheckFailed, Interrupted, RulesBroken};

/// The kinds of failure, by exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 1: a check found a problem (drift, a changed archive), or a rule refused the step (a
    /// guardrail, the wrong phase, the soak, another operation holding the lease).
    Refused,
    /// 2: the command line, the settings, or what they name (an unknown attribute, a database
    /// that is not the marketplace's).
    Usage,
    /// 3: the database or the machine failed (unreachable, timed out, an error it returned).
    Infrastructure,
    /// 130: stopped at a batch boundary (Ctrl-C, SIGTERM); resumes from its checkpoint.
    Interrupted,
}

impl Kind {
    pub fn of(err: &anyhow::Error) -> Self {
        if err.is::<Interrupted>() {
            return Self::Interrupted;
        }
        if err.is::<CheckFailed>() || err.is::<RulesBroken>() {
            return Self::Refused;
        }
        for cause in err.chain() {
            if let Some(storage) = cause.downcast_ref::<StorageError>() {
                return Self::of_storage(storage);
            }
            if cause.is::<std::io::Error>() {
                return Self::Infrastructure;
            }
        }
        Self::Usage
    }

    fn of_storage(err: &StorageError) -> Self {
        match err {
            StorageError::Conflict(_)
            | StorageError::Forbidden(_)
            | StorageError::Guardrail(_)
            | StorageError::QuarantineUnsettled(_)
            | StorageError::Leased(_)
            | StorageError::LegacySchema(_) => Self::Refused,
            StorageError::NotFound { .. }
            | StorageError::InvalidValues(_)
            | StorageError::UnsupportedUrl(_)
            | StorageError::Configuration(_) => Self::Usage,
            _ => Self::Infrastructure,
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Self::Refused => 1,
            Self::Usage => 2,
            Self::Infrastructure => 3,
            Self::Interrupted => 130,
        }
    }

    fn prefix(self, err: &anyhow::Error) -> &'static str {
        match self {
            Self::Refused if err.is::<CheckFailed>() => "check failed: ",
            Self::Refused => "refused: ",
            Self::Usage | Self::Infrastructure => "error: ",
            Self::Interrupted => "",
        }
    }
}

/// The error and its causes, each said once: `sqlx` and `thiserror` errors often quote their
/// source in their own text, which `{:#}` would print again.
pub fn message(err: &anyhow::Error) -> String {
    let said = storage::each_cause_once(err.chain());
    let refused_with = err
        .chain()
        .find_map(|c| c.downcast_ref::<StorageError>())
        .and_then(StorageError::sqlstate);
    match refused_with {
        Some(state) => format!("{said} ({state})"),
        None => said,
    }
}

/// What `--json` prints for a failure, on stdout where the result would have been.
#[derive(Debug, Serialize)]
pub struct JsonError {
    pub error: String,
    pub kind: Kind,
    pub exit_code: u8,
    /// The guardrails the refused step breaks, by their stable names.
    pub rules: Vec<&'static str>,
    /// What to do next, when the failure's kind says it.
    pub hint: Option<String>,
}

impl JsonError {
    pub fn of(err: &anyhow::Error) -> Self {
        let kind = Kind::of(err);
        let storage = err.chain().find_map(|c| c.downcast_ref::<StorageError>());
        let rules = match (err.downcast_ref::<RulesBroken>(), storage) {
            (Some(broken), _) => broken.rules.iter().map(|rule| rule.rule()).collect(),
            (None, Some(StorageError::Guardrail(violation))) => vec![violation.rule()],
            (None, Some(StorageError::QuarantineUnsettled(_))) => {
                vec![flags::GuardrailViolation::UnifiedReadsHideQuarantinedValues.rule()]
            }
            _ => Vec::new(),
        };
        let hint = match (kind, storage) {
            _ if err.is::<RulesBroken>() => Some(
                "change the flags so that no rule above is broken, or supply the evidence each \
                 names (`status` lists what is missing and the command that supplies it)"
                    .to_owned(),
            ),
            (_, Some(StorageError::Guardrail(violation))) => Some(violation.to_string()),
            (Kind::Infrastructure, _) => Some(
                "check that the database named on the first line answers, then run the command again"
                    .to_owned(),
            ),
            (Kind::Interrupted, _) => {
                Some("run the same command again: it resumes from its checkpoint".to_owned())
            }
            _ => None,
        };
        Self {
            error: message(err),
            kind,
            exit_code: kind.exit_code(),
            rules,
            hint,
        }
    }
}

/// Tells the failure (stderr; with `--json` also the object on stdout, unless the command's
/// report is there already) and returns the exit code.
#[allow(clippy::print_stderr, clippy::print_stdout)] // telling the failure is the point
pub fn report(err: &anyhow::Error, json: bool) -> u8 {
    let kind = Kind::of(err);
    eprintln!("{}{}", kind.prefix(err), message(err));
    if json
        && !crate::commands::Output::reported()
        && let Ok(text) = serde_json::to_string_pretty(&JsonError::of(err))
    {
        println!("{text}");
    }
    kind.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("while executing migrations: {0}")]
    struct QuotesItsSource(#[source] std::io::Error);

    #[test]
    fn a_cause_quoted_by_the_error_above_it_is_said_once() {
        let io = std::io::Error::other("no such table: _sqlx_migrations");
        let err = anyhow::Error::new(QuotesItsSource(io)).context("the plan failed");
        assert_eq!(
            message(&err),
            "the plan failed: while executing migrations: no such table: _sqlx_migrations"
        );
        assert_eq!(Kind::of(&err), Kind::Infrastructure);
    }

    #[test]
    fn every_kind_has_its_own_exit_code() {
        let refused = anyhow::Error::new(StorageError::Guardrail(
            flags::GuardrailViolation::FallbackToStaleLegacy,
        ))
        .context("the flags could not be changed");
        assert_eq!(Kind::of(&refused).exit_code(), 1);
        let json = JsonError::of(&refused);
        assert_eq!(json.rules, ["fallback_to_stale_legacy"]);
        assert!(
            json.hint
                .is_some_and(|hint| hint.contains("turn fallback off"))
        );
        let check = anyhow::Error::new(CheckFailed("2 of 9 entities differ".into()));
        assert_eq!(Kind::of(&check).exit_code(), 1);
        let usage = anyhow::anyhow!("--batch-size must be at least 1");
        assert_eq!(Kind::of(&usage).exit_code(), 2);
        let down = anyhow::Error::new(StorageError::DatabaseUnreachable);
        assert_eq!(Kind::of(&down).exit_code(), 3);
        let stopped = anyhow::Error::new(Interrupted("interrupted at listing 40".into()));
        assert_eq!(Kind::of(&stopped).exit_code(), 130);
    }
}
