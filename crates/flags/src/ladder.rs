//! The migration's steps by name. `flags promote` moves the flags in force one rung up, `flags
//! abort` one rung down; every rung is a whole set of flags, so a step never inherits what an
//! earlier hand-written change left behind. The guardrails judge a step like any other change.

use serde::Serialize;

use crate::Flags;

/// The canary's percentages, in order. Turning unified reads on without a percentage starts at
/// the first: a switch to unified never sends every reader there at once by accident.
pub const CANARY_PERCENTS: [u8; 4] = [1, 10, 50, 100];

/// One rung of the ladder from legacy to unified-only. The archive, the last step, is its own
/// command (it moves tables, with its own checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rung {
    /// Reads and writes on legacy.
    Legacy,
    /// Writes reach both stores; reads stay on legacy.
    DualWrite,
    /// This share of users reads unified, with legacy's answer behind every read (fallback);
    /// writes reach both stores.
    Canary(u8),
    /// Every read from unified without fallback; writes still reach both stores, so a step
    /// back loses nothing.
    UnifiedReads,
    /// Reads and writes on unified only.
    UnifiedOnly,
}

impl Rung {
    /// The rung these flags stand on (the shadow share is not part of it); `None` for a
    /// combination set by hand that no rung names, e.g. a canary without fallback.
    pub fn of(flags: &Flags) -> Option<Self> {
        let all_users = flags.unified_percent == 100;
        match (flags.use_unified, flags.dual_write, flags.fallback) {
            (false, false, _) => Some(Self::Legacy),
            (false, true, _) => Some(Self::DualWrite),
            (true, true, true) if flags.unified_percent > 0 => {
                Some(Self::Canary(flags.unified_percent))
            }
            (true, true, false) if all_users => Some(Self::UnifiedReads),
            (true, false, false) if all_users => Some(Self::UnifiedOnly),
            _ => None,
        }
    }

    /// The flags of this rung, keeping the shadow share of the flags in force.
    pub fn flags(self, shadow_percent: u8) -> Flags {
        let (use_unified, unified_percent, fallback, dual_write) = match self {
            Self::Legacy => (false, 100, false, false),
            Self::DualWrite => (false, 100, false, true),
            Self::Canary(percent) => (true, percent, true, true),
            Self::UnifiedReads => (true, 100, false, true),
            Self::UnifiedOnly => (true, 100, false, false),
        };
        Flags {
            use_unified,
            unified_percent,
            fallback,
            dual_write,
            shadow_percent,
        }
    }

    /// The rung above; `None` at unified-only. A canary between two of its percentages (set
    /// by hand) goes to the next one.
    pub fn next(self) -> Option<Self> {
        match self {
            Self::Legacy => Some(Self::DualWrite),
            Self::DualWrite => Some(Self::Canary(CANARY_PERCENTS[0])),
            Self::Canary(percent) => Some(
                CANARY_PERCENTS
                    .into_iter()
                    .find(|&p| p > percent)
                    .map_or(Self::UnifiedReads, Self::Canary),
            ),
            Self::UnifiedReads => Some(Self::UnifiedOnly),
            Self::UnifiedOnly => None,
        }
    }

    /// The rung below; `None` at legacy.
    pub fn previous(self) -> Option<Self> {
        match self {
            Self::Legacy => None,
            Self::DualWrite => Some(Self::Legacy),
            Self::Canary(percent) => Some(
                CANARY_PERCENTS
                    .into_iter()
                    .rev()
                    .find(|&p| p < percent)
                    .map_or(Self::DualWrite, Self::Canary),
            ),
            Self::UnifiedReads => Some(Self::Canary(100)),
            Self::UnifiedOnly => Some(Self::UnifiedReads),
        }
    }
}

impl std::fmt::Display for Rung {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Legacy => f.write_str("legacy"),
            Self::DualWrite => f.write_str("dual-write"),
            Self::Canary(percent) => write!(f, "canary {percent}% with fallback"),
            Self::UnifiedReads => f.write_str("unified reads, dual-write"),
            Self::UnifiedOnly => f.write_str("unified only"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_climbs_every_rung_once_and_abort_climbs_back_down() {
        let mut up = vec![Rung::Legacy];
        while let Some(next) = up.last().and_then(|rung| rung.next()) {
            up.push(next);
        }
        assert_eq!(
            up,
            [
                Rung::Legacy,
                Rung::DualWrite,
                Rung::Canary(1),
                Rung::Canary(10),
                Rung::Canary(50),
                Rung::Canary(100),
                Rung::UnifiedReads,
                Rung::UnifiedOnly,
            ]
        );
        let mut down = vec![Rung::UnifiedOnly];
        while let Some(previous) = down.last().and_then(|rung| rung.previous()) {
            down.push(previous);
        }
        up.reverse();
        assert_eq!(down, up);
        // Every rung's flags stand on that rung, and keep the shadow share.
        for rung in up {
            let flags = rung.flags(7);
            assert_eq!(Rung::of(&flags), Some(rung));
            assert_eq!(flags.shadow_percent, 7);
        }
    }

    #[test]
    fn a_canary_set_by_hand_between_percentages_steps_to_its_neighbours() {
        assert_eq!(Rung::Canary(25).next(), Some(Rung::Canary(50)));
        assert_eq!(Rung::Canary(25).previous(), Some(Rung::Canary(10)));
        let without_fallback = Flags {
            use_unified: true,
            unified_percent: 30,
            fallback: false,
            dual_write: true,
            shadow_percent: 0,
        };
        assert_eq!(Rung::of(&without_fallback), None);
    }
}
