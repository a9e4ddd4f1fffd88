//! A change of some flags, as the admin API and `flags --set` take it: the flags named change,
//! the others keep their value.

use serde::Deserialize;

use crate::Flags;
use crate::ladder::CANARY_PERCENTS;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagUpdate {
    pub use_unified: Option<bool>,
    pub unified_percent: Option<u8>,
    pub fallback: Option<bool>,
    pub dual_write: Option<bool>,
    pub shadow_percent: Option<u8>,
}

impl FlagUpdate {
    /// Refuses a change that names no flag (it would be audited as a change and, from then on,
    /// stored flags would override the environment's) and percentages outside 0–100 (the
    /// guardrails judge the combination later).
    pub fn check(&self) -> Result<(), &'static str> {
        if *self == Self::default() {
            return Err(
                "the change names no flag: give at least one of use_unified, unified_percent, \
                 fallback, dual_write, shadow_percent",
            );
        }
        if self.unified_percent.is_some_and(|p| p > 100)
            || self.shadow_percent.is_some_and(|p| p > 100)
        {
            return Err("percentages are whole numbers from 0 to 100");
        }
        Ok(())
    }

    /// The flags after this change. Unified reads turned on without a percentage start as
    /// the smallest canary, with fallback unless the change says otherwise: `{"use_unified":
    /// true}` never sends every reader to unified at once.
    pub fn apply(&self, flags: Flags) -> Flags {
        let starts_unified_reads = self.use_unified == Some(true) && !flags.use_unified;
        let (unified_percent, fallback) = match (starts_unified_reads, self.unified_percent) {
            (true, None) => (CANARY_PERCENTS[0], self.fallback.unwrap_or(true)),
            _ => (
                self.unified_percent.unwrap_or(flags.unified_percent),
                self.fallback.unwrap_or(flags.fallback),
            ),
        };
        Flags {
            use_unified: self.use_unified.unwrap_or(flags.use_unified),
            unified_percent,
            fallback,
            dual_write: self.dual_write.unwrap_or(flags.dual_write),
            shadow_percent: self.shadow_percent.unwrap_or(flags.shadow_percent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_flags_change_and_percentages_stay_in_range() {
        let update = FlagUpdate {
            dual_write: Some(true),
            unified_percent: Some(25),
            ..FlagUpdate::default()
        };
        let changed = update.apply(Flags::default());
        assert_eq!(
            changed,
            Flags {
                dual_write: true,
                unified_percent: 25,
                ..Flags::default()
            }
        );
        assert!(update.check().is_ok());
        assert!(
            FlagUpdate::default().check().is_err(),
            "an empty change is refused"
        );
        // Unified reads turned on without a percentage: the smallest canary, with fallback.
        let unified = FlagUpdate {
            use_unified: Some(true),
            ..FlagUpdate::default()
        }
        .apply(changed);
        assert_eq!((unified.unified_percent, unified.fallback), (1, true));
        let named = FlagUpdate {
            use_unified: Some(true),
            unified_percent: Some(100),
            ..FlagUpdate::default()
        }
        .apply(changed);
        assert_eq!((named.unified_percent, named.fallback), (100, false));
        let too_much = FlagUpdate {
            shadow_percent: Some(101),
            ..FlagUpdate::default()
        };
        assert!(too_much.check().is_err());
    }
}
