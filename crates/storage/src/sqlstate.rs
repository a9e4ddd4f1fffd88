//! Names for the codes databases refuse with, so that a log line says `40P01
//! deadlock_detected` and the on-call need not look the number up.
//!
//! PostgreSQL's condition names (its `errcodes.txt`) for the codes this service meets or acts
//! on, and every class name for the rest; SQLite's primary result codes by their C names.

/// A code a database refused with, and its condition name when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlState {
    pub code: String,
    pub name: Option<&'static str>,
}

impl SqlState {
    /// A PostgreSQL SQLSTATE (five characters, digits alone for many).
    pub fn postgres(code: String) -> Self {
        let name = condition_name(&code);
        SqlState { code, name }
    }

    /// An SQLite result code (a number; an extended one carries its primary in the low byte).
    pub fn sqlite(code: String) -> Self {
        let name = code.parse::<u32>().ok().and_then(|n| sqlite_name(n & 0xff));
        SqlState { code, name }
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SQLSTATE {}", self.code)?;
        match self.name {
            Some(name) => write!(f, " {name}"),
            None => Ok(()),
        }
    }
}

/// The condition name of a PostgreSQL SQLSTATE, else its class's.
fn condition_name(code: &str) -> Option<&'static str> {
    let exact = match code {
        "0A000" => "feature_not_supported",
        "08006" => "connection_failure",
        "22001" => "string_data_right_truncation",
        "22003" => "numeric_value_out_of_range",
        "22007" => "invalid_datetime_format",
        "22008" => "datetime_field_overflow",
        "22012" => "division_by_zero",
        "22021" => "character_not_in_repertoire",
        "22P02" => "invalid_text_representation",
        "22P05" => "untranslatable_character",
        "23502" => "not_null_violation",
        "23503" => "foreign_key_violation",
        "23505" => "unique_violation",
        "23514" => "check_violation",
        "25006" => "read_only_sql_transaction",
        "25P03" => "idle_in_transaction_session_timeout",
        "28000" => "invalid_authorization_specification",
        "28P01" => "invalid_password",
        "3D000" => "invalid_catalog_name",
        "40001" => "serialization_failure",
        "40P01" => "deadlock_detected",
        "42501" => "insufficient_privilege",
        "42601" => "syntax_error",
        "42703" => "undefined_column",
        "42883" => "undefined_function",
        "42P01" => "undefined_table",
        "53300" => "too_many_connections",
        "54000" => "program_limit_exceeded",
        "55P03" => "lock_not_available",
        "57014" => "query_canceled",
        "57P01" => "admin_shutdown",
        "57P02" => "crash_shutdown",
        "57P03" => "cannot_connect_now",
        "P0001" => "raise_exception",
        _ => "",
    };
    if !exact.is_empty() {
        return Some(exact);
    }
    class_name(code.get(..2)?)
}

/// The SQLSTATE classes, as PostgreSQL names their `…000` codes.
fn class_name(class: &str) -> Option<&'static str> {
    Some(match class {
        "00" => "successful_completion",
        "01" => "warning",
        "02" => "no_data",
        "03" => "sql_statement_not_yet_complete",
        "08" => "connection_exception",
        "09" => "triggered_action_exception",
        "0A" => "feature_not_supported",
        "0B" => "invalid_transaction_initiation",
        "0F" => "locator_exception",
        "0L" => "invalid_grantor",
        "0P" => "invalid_role_specification",
        "0Z" => "diagnostics_exception",
        "20" => "case_not_found",
        "21" => "cardinality_violation",
        "22" => "data_exception",
        "23" => "integrity_constraint_violation",
        "24" => "invalid_cursor_state",
        "25" => "invalid_transaction_state",
        "26" => "invalid_sql_statement_name",
        "27" => "triggered_data_change_violation",
        "28" => "invalid_authorization_specification",
        "2B" => "dependent_privilege_descriptors_still_exist",
        "2D" => "invalid_transaction_termination",
        "2F" => "sql_routine_exception",
        "34" => "invalid_cursor_name",
        "38" => "external_routine_exception",
        "39" => "external_routine_invocation_exception",
        "3B" => "savepoint_exception",
        "3D" => "invalid_catalog_name",
        "3F" => "invalid_schema_name",
        "40" => "transaction_rollback",
        "42" => "syntax_error_or_access_rule_violation",
        "44" => "with_check_option_violation",
        "53" => "insufficient_resources",
        "54" => "program_limit_exceeded",
        "55" => "object_not_in_prerequisite_state",
        "57" => "operator_intervention",
        "58" => "system_error",
        "72" => "snapshot_too_old",
        "F0" => "config_file_error",
        "HV" => "fdw_error",
        "P0" => "plpgsql_error",
        "XX" => "internal_error",
        _ => return None,
    })
}

/// SQLite's primary result codes (an extended code carries its primary one in the low byte).
fn sqlite_name(primary: u32) -> Option<&'static str> {
    Some(match primary {
        1 => "SQLITE_ERROR",
        2 => "SQLITE_INTERNAL",
        3 => "SQLITE_PERM",
        4 => "SQLITE_ABORT",
        5 => "SQLITE_BUSY",
        6 => "SQLITE_LOCKED",
        7 => "SQLITE_NOMEM",
        8 => "SQLITE_READONLY",
        9 => "SQLITE_INTERRUPT",
        10 => "SQLITE_IOERR",
        11 => "SQLITE_CORRUPT",
        13 => "SQLITE_FULL",
        14 => "SQLITE_CANTOPEN",
        17 => "SQLITE_SCHEMA",
        18 => "SQLITE_TOOBIG",
        19 => "SQLITE_CONSTRAINT",
        20 => "SQLITE_MISMATCH",
        21 => "SQLITE_MISUSE",
        23 => "SQLITE_AUTH",
        25 => "SQLITE_RANGE",
        26 => "SQLITE_NOTADB",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{SqlState, condition_name};

    #[test]
    fn codes_are_named_exactly_else_by_their_class() {
        assert_eq!(condition_name("40P01"), Some("deadlock_detected"));
        assert_eq!(condition_name("23505"), Some("unique_violation"));
        assert_eq!(condition_name("22023"), Some("data_exception"));
        assert_eq!(condition_name("ZZ999"), None);
        assert_eq!(condition_name(""), None);
        assert_eq!(
            SqlState::postgres("40001".into()).to_string(),
            "SQLSTATE 40001 serialization_failure"
        );
        assert_eq!(
            SqlState::sqlite("2067".into()).name,
            Some("SQLITE_CONSTRAINT")
        );
        assert_eq!(SqlState::sqlite("5".into()).name, Some("SQLITE_BUSY"));
        assert_eq!(SqlState::sqlite("4242".into()).name, None);
    }
}
