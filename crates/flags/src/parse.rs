//! Strict parsing of the flag variables: a value we do not understand stops start-up.

use serde::Serialize;

use crate::Flags;

/// The variable names ops set; also the config keys.
pub mod vars {
    pub const USE_UNIFIED: &str = "USE_UNIFIED_ATTRIBUTES";
    pub const UNIFIED_PERCENT: &str = "UNIFIED_ATTRIBUTES_PERCENT";
    pub const FALLBACK: &str = "UNIFIED_ATTRIBUTES_FALLBACK";
    pub const DUAL_WRITE: &str = "DUAL_WRITE_ATTRIBUTES";
    pub const SHADOW_PERCENT: &str = "UNIFIED_ATTRIBUTES_SHADOW_PERCENT";

    pub const ALL: [&str; 5] = [
        USE_UNIFIED,
        UNIFIED_PERCENT,
        FALLBACK,
        DUAL_WRITE,
        SHADOW_PERCENT,
    ];
}

/// A flag value that is not one of the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is not valid: expected {accepted}")]
pub struct FlagError {
    pub variable: &'static str,
    pub value: String,
    pub accepted: &'static str,
}

/// The flag values as text, before parsing; `None` means unset (the default applies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RawFlags {
    pub use_unified: Option<String>,
    pub unified_percent: Option<String>,
    pub fallback: Option<String>,
    pub dual_write: Option<String>,
    pub shadow_percent: Option<String>,
}

impl RawFlags {
    /// Collects the five variables through `lookup` (the environment, a config source, …).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            use_unified: lookup(vars::USE_UNIFIED),
            unified_percent: lookup(vars::UNIFIED_PERCENT),
            fallback: lookup(vars::FALLBACK),
            dual_write: lookup(vars::DUAL_WRITE),
            shadow_percent: lookup(vars::SHADOW_PERCENT),
        }
    }

    pub fn parse(&self) -> Result<Flags, FlagError> {
        let defaults = Flags::default();
        Ok(Flags {
            use_unified: parse_bool(
                vars::USE_UNIFIED,
                self.use_unified.as_deref(),
                defaults.use_unified,
            )?,
            unified_percent: parse_percent(
                vars::UNIFIED_PERCENT,
                self.unified_percent.as_deref(),
                defaults.unified_percent,
            )?,
            fallback: parse_bool(vars::FALLBACK, self.fallback.as_deref(), defaults.fallback)?,
            dual_write: parse_bool(
                vars::DUAL_WRITE,
                self.dual_write.as_deref(),
                defaults.dual_write,
            )?,
            shadow_percent: parse_percent(
                vars::SHADOW_PERCENT,
                self.shadow_percent.as_deref(),
                defaults.shadow_percent,
            )?,
        })
    }
}

fn parse_bool(variable: &'static str, raw: Option<&str>, default: bool) -> Result<bool, FlagError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(FlagError {
            variable,
            value: raw.to_owned(),
            accepted: "true or false (or 1 / 0)",
        }),
    }
}

fn parse_percent(variable: &'static str, raw: Option<&str>, default: u8) -> Result<u8, FlagError> {
    let Some(raw) = raw else { return Ok(default) };
    raw.trim()
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| FlagError {
            variable,
            value: raw.to_owned(),
            accepted: "a whole number from 0 to 100",
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Flags, FlagError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RawFlags::from_lookup(|name| env.get(name).cloned()).parse()
    }

    #[test]
    fn unset_flags_mean_phase_zero() {
        assert_eq!(parse(&[]), Ok(Flags::default()));
    }

    #[test]
    fn accepted_spellings_are_read() {
        let flags = parse(&[
            ("USE_UNIFIED_ATTRIBUTES", "TRUE"),
            ("DUAL_WRITE_ATTRIBUTES", "1"),
            ("UNIFIED_ATTRIBUTES_FALLBACK", " false "),
            ("UNIFIED_ATTRIBUTES_PERCENT", "25"),
            ("UNIFIED_ATTRIBUTES_SHADOW_PERCENT", "5"),
        ])
        .expect("valid flags");
        assert!(flags.use_unified && flags.dual_write && !flags.fallback);
        assert_eq!((flags.unified_percent, flags.shadow_percent), (25, 5));
    }

    #[test]
    fn a_sentence_is_not_a_boolean() {
        let err = parse(&[("USE_UNIFIED_ATTRIBUTES", "yes please")]).expect_err("must be refused");
        assert_eq!(err.variable, "USE_UNIFIED_ATTRIBUTES");
        assert!(err.to_string().contains("expected true or false"), "{err}");
    }

    #[test]
    fn percentages_above_100_or_fractional_are_refused() {
        for bad in ["150", "-1", "12.5", ""] {
            let err = parse(&[("UNIFIED_ATTRIBUTES_PERCENT", bad)]).expect_err("must be refused");
            assert_eq!(err.variable, "UNIFIED_ATTRIBUTES_PERCENT");
            assert!(err.to_string().contains("0 to 100"));
        }
    }
}
