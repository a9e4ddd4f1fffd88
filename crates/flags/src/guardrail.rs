//! The guardrails: flag combinations that could lose or hide data are refused, with the
//! rule that was broken. One function decides, for start-up and for runtime changes alike.

use serde::Serialize;

use crate::Flags;

/// Facts about the data that the flags alone cannot tell, persisted by the storage layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MigrationState {
    /// The legacy tables were moved to the archive.
    pub archived: bool,
    /// Writes reached only the unified store, and no reverse sync has run since.
    pub unified_only_writes_pending_sync: bool,
    /// Every entity kind was backfilled completely in a pass that began while every write
    /// already reached the unified store, and no write has skipped it since.
    pub backfill_complete: bool,
    /// A verify found no drift after that backfill pass completed, with no gap since.
    pub verified_clean: bool,
    /// Legacy values users see today sit in the quarantine, neither resolved nor accepted by
    /// an operator: unified reads without a legacy answer would hide them.
    pub quarantine_unsettled: bool,
}

impl MigrationState {
    /// The facts a migration that has backfilled and verified can show (for tests and
    /// examples): reads may come from unified.
    pub const EVIDENCED: MigrationState = MigrationState {
        archived: false,
        unified_only_writes_pending_sync: false,
        backfill_complete: true,
        verified_clean: true,
        quarantine_unsettled: false,
    };
}

/// The migration phases of the product spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Legacy = 0,
    DualWrite = 1,
    Canary = 2,
    Unified = 3,
    Archived = 4,
}

impl Phase {
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The phase's name, as the status, the flag audit and the archive manifests record it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Legacy => "legacy",
            Phase::DualWrite => "dual_write",
            Phase::Canary => "canary",
            Phase::Unified => "unified",
            Phase::Archived => "archived",
        }
    }
}

/// A broken rule. The message says why it is unsafe and what to set instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailViolation {
    #[error(
        "the legacy tables are archived, so nothing may read or write them: keep \
         USE_UNIFIED_ATTRIBUTES=true, UNIFIED_ATTRIBUTES_PERCENT=100, DUAL_WRITE_ATTRIBUTES=false \
         and UNIFIED_ATTRIBUTES_FALLBACK=false, or run restore-archive first"
    )]
    LegacyUsedAfterArchive,
    #[error(
        "writes have reached only the unified store since the last reverse sync, so legacy is \
         behind: reads from legacy (percentage below 100, fallback, or USE_UNIFIED_ATTRIBUTES=false) \
         would hide them; run sync-legacy first"
    )]
    LegacyReadsBeforeReverseSync,
    #[error(
        "DUAL_WRITE_ATTRIBUTES=false while UNIFIED_ATTRIBUTES_PERCENT is below 100: users still \
         reading legacy would not see new writes; keep dual-write on until the percentage is 100"
    )]
    DualWriteOffWhileLegacyServesReads,
    #[error(
        "UNIFIED_ATTRIBUTES_FALLBACK=true with DUAL_WRITE_ATTRIBUTES=false: the fallback would \
         answer from a legacy store that no longer receives writes; turn fallback off first"
    )]
    FallbackToStaleLegacy,
    #[error(
        "reads from the unified store need a complete backfill of every entity kind, begun while \
         every write already reached unified (DUAL_WRITE_ATTRIBUTES=true without a gap since): \
         turn dual-write on, run backfill to the end, then verify"
    )]
    UnifiedReadsBeforeBackfill,
    #[error(
        "reads from the unified store need a clean verify after the backfill completed: run \
         verify (exit 0) with dual-write still on"
    )]
    UnifiedReadsBeforeVerify,
    #[error(
        "values users see today are in the quarantine, neither resolved nor accepted: unified reads \
         without UNIFIED_ATTRIBUTES_FALLBACK would hide them; resolve them (resolve …, backfill \
         --retry-quarantine) or accept their absence (quarantine accept), or keep fallback on"
    )]
    UnifiedReadsHideQuarantinedValues,
}

impl GuardrailViolation {
    /// A stable name of the rule, for logs and API answers.
    pub fn rule(self) -> &'static str {
        match self {
            GuardrailViolation::LegacyUsedAfterArchive => "legacy_used_after_archive",
            GuardrailViolation::LegacyReadsBeforeReverseSync => "legacy_reads_before_reverse_sync",
            GuardrailViolation::DualWriteOffWhileLegacyServesReads => {
                "dual_write_off_while_legacy_serves_reads"
            }
            GuardrailViolation::FallbackToStaleLegacy => "fallback_to_stale_legacy",
            GuardrailViolation::UnifiedReadsBeforeBackfill => "unified_reads_before_backfill",
            GuardrailViolation::UnifiedReadsBeforeVerify => "unified_reads_before_verify",
            GuardrailViolation::UnifiedReadsHideQuarantinedValues => {
                "unified_reads_hide_quarantined_values"
            }
        }
    }
}

impl Flags {
    /// Some reads come from unified with no legacy answer behind them: a value only legacy
    /// holds would be hidden.
    pub fn hides_legacy_only_values(&self) -> bool {
        self.use_unified && self.unified_percent > 0 && !self.fallback
    }

    /// [`Flags::check`] for a decision to put these flags in force after `from` (`None`: no
    /// flags were in force, as at a start from the environment alone). Moving to reads that
    /// hide legacy-only values also needs the quarantine settled; flags already in force are
    /// never refused for it later, so a restart never fails on a decision already taken.
    pub fn check_change(
        &self,
        from: Option<&Flags>,
        state: &MigrationState,
    ) -> Result<Phase, GuardrailViolation> {
        let phase = self.check(state)?;
        if self.hides_legacy_only_values()
            && !from.is_some_and(Flags::hides_legacy_only_values)
            && state.quarantine_unsettled
        {
            return Err(GuardrailViolation::UnifiedReadsHideQuarantinedValues);
        }
        Ok(phase)
    }

    /// Every rule a change to these flags after `from` breaks, in the order [`Flags::check_change`]
    /// tries them (its error is the first): a refusal can name them all at once, so an operator
    /// fixes everything in one go instead of meeting the rules one by one.
    pub fn violations(
        &self,
        from: Option<&Flags>,
        state: &MigrationState,
    ) -> Vec<GuardrailViolation> {
        use GuardrailViolation as V;
        let hides_unsettled = self.hides_legacy_only_values()
            && !from.is_some_and(Flags::hides_legacy_only_values)
            && state.quarantine_unsettled;
        if state.archived {
            // Nothing but the archive's rule counts then, and the quarantine's after it.
            return if self.reads_legacy() || self.dual_write {
                vec![V::LegacyUsedAfterArchive]
            } else if hides_unsettled {
                vec![V::UnifiedReadsHideQuarantinedValues]
            } else {
                Vec::new()
            };
        }
        let reads_unified = self.use_unified && self.unified_percent > 0;
        [
            (
                state.unified_only_writes_pending_sync && self.reads_legacy(),
                V::LegacyReadsBeforeReverseSync,
            ),
            (
                !self.dual_write && self.use_unified && self.unified_percent < 100,
                V::DualWriteOffWhileLegacyServesReads,
            ),
            (
                self.fallback && self.use_unified && !self.dual_write,
                V::FallbackToStaleLegacy,
            ),
            (
                reads_unified && !state.backfill_complete,
                V::UnifiedReadsBeforeBackfill,
            ),
            (
                reads_unified && !state.verified_clean,
                V::UnifiedReadsBeforeVerify,
            ),
            (hides_unsettled, V::UnifiedReadsHideQuarantinedValues),
        ]
        .into_iter()
        .filter_map(|(broken, rule)| broken.then_some(rule))
        .collect()
    }

    /// The phase these flags mean given the state of the data, or the rule they break.
    pub fn check(&self, state: &MigrationState) -> Result<Phase, GuardrailViolation> {
        if state.archived {
            if self.reads_legacy() || self.dual_write {
                return Err(GuardrailViolation::LegacyUsedAfterArchive);
            }
            return Ok(Phase::Archived);
        }
        if state.unified_only_writes_pending_sync && self.reads_legacy() {
            return Err(GuardrailViolation::LegacyReadsBeforeReverseSync);
        }
        if !self.dual_write && self.use_unified && self.unified_percent < 100 {
            return Err(GuardrailViolation::DualWriteOffWhileLegacyServesReads);
        }
        if self.fallback && self.use_unified && !self.dual_write {
            return Err(GuardrailViolation::FallbackToStaleLegacy);
        }
        // Combinations never safe are named first; then the evidence the data must show.
        if self.use_unified && self.unified_percent > 0 {
            if !state.backfill_complete {
                return Err(GuardrailViolation::UnifiedReadsBeforeBackfill);
            }
            if !state.verified_clean {
                return Err(GuardrailViolation::UnifiedReadsBeforeVerify);
            }
        }
        Ok(match (self.dual_write, self.use_unified) {
            (false, false) => Phase::Legacy,
            (true, false) => Phase::DualWrite,
            (true, true) => Phase::Canary,
            (false, true) => Phase::Unified,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(dual_write: bool, use_unified: bool, unified_percent: u8, fallback: bool) -> Flags {
        Flags {
            use_unified,
            unified_percent,
            fallback,
            dual_write,
            shadow_percent: 0,
        }
    }

    const FRESH: MigrationState = MigrationState::EVIDENCED;

    #[test]
    fn violations_agree_with_check_change_on_every_combination() {
        let mut cases = 0;
        for combination in 0u8..8 {
            let (dual, unified, fallback) = (
                combination & 1 != 0,
                combination & 2 != 0,
                combination & 4 != 0,
            );
            for percent in [0, 1, 50, 100] {
                let wanted = flags(dual, unified, percent, fallback);
                for bits in 0u8..32 {
                    let state = MigrationState {
                        archived: bits & 1 != 0,
                        unified_only_writes_pending_sync: bits & 2 != 0,
                        backfill_complete: bits & 4 != 0,
                        verified_clean: bits & 8 != 0,
                        quarantine_unsettled: bits & 16 != 0,
                    };
                    for from in [
                        None,
                        Some(flags(true, true, 100, false)),
                        Some(Flags::default()),
                    ] {
                        let first = wanted.violations(from.as_ref(), &state).first().copied();
                        assert_eq!(
                            wanted.check_change(from.as_ref(), &state).err(),
                            first,
                            "{wanted:?} from {from:?} in {state:?}"
                        );
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 8 * 4 * 32 * 3);
    }

    #[test]
    fn every_broken_rule_is_named_and_the_first_is_the_one_check_change_reports() {
        let bare = MigrationState::default();
        // Unified reads at 50 % with dual-write off and fallback on, nothing backfilled.
        let wanted = flags(false, true, 50, true);
        let all = wanted.violations(Some(&Flags::default()), &bare);
        assert_eq!(
            all,
            [
                GuardrailViolation::DualWriteOffWhileLegacyServesReads,
                GuardrailViolation::FallbackToStaleLegacy,
                GuardrailViolation::UnifiedReadsBeforeBackfill,
                GuardrailViolation::UnifiedReadsBeforeVerify,
            ]
        );
        assert_eq!(
            wanted.check_change(Some(&Flags::default()), &bare),
            Err(all[0])
        );
        let fine = flags(true, true, 10, true);
        assert!(fine.violations(None, &FRESH).is_empty());
        assert!(fine.check_change(None, &FRESH).is_ok());
    }

    #[test]
    fn the_phases_of_the_product_spec_are_recognised() {
        assert_eq!(
            flags(false, false, 100, false).check(&FRESH),
            Ok(Phase::Legacy)
        );
        assert_eq!(
            flags(true, false, 100, false).check(&FRESH),
            Ok(Phase::DualWrite)
        );
        for percent in [10, 25, 50, 100] {
            assert_eq!(
                flags(true, true, percent, true).check(&FRESH),
                Ok(Phase::Canary)
            );
        }
        assert_eq!(
            flags(false, true, 100, false).check(&FRESH),
            Ok(Phase::Unified)
        );
        let archived = MigrationState {
            archived: true,
            ..FRESH
        };
        assert_eq!(
            flags(false, true, 100, false).check(&archived),
            Ok(Phase::Archived)
        );
    }

    #[test]
    fn dual_write_off_with_a_partial_rollout_is_refused() {
        assert_eq!(
            flags(false, true, 50, false).check(&FRESH),
            Err(GuardrailViolation::DualWriteOffWhileLegacyServesReads)
        );
    }

    #[test]
    fn fallback_without_dual_write_is_refused() {
        assert_eq!(
            flags(false, true, 100, true).check(&FRESH),
            Err(GuardrailViolation::FallbackToStaleLegacy)
        );
    }

    #[test]
    fn after_archive_legacy_may_not_be_used_at_all() {
        let archived = MigrationState {
            archived: true,
            ..FRESH
        };
        for bad in [
            flags(false, true, 100, true),
            flags(true, true, 100, false),
            flags(false, false, 100, false),
            flags(true, true, 50, false),
        ] {
            assert_eq!(
                bad.check(&archived),
                Err(GuardrailViolation::LegacyUsedAfterArchive)
            );
        }
    }

    #[test]
    fn legacy_reads_wait_for_the_reverse_sync() {
        let pending = MigrationState {
            unified_only_writes_pending_sync: true,
            ..FRESH
        };
        for bad in [
            flags(false, false, 100, false),
            flags(true, false, 100, false),
            flags(true, true, 50, false),
            flags(true, true, 100, true),
        ] {
            assert_eq!(
                bad.check(&pending),
                Err(GuardrailViolation::LegacyReadsBeforeReverseSync)
            );
        }
        assert_eq!(
            flags(true, true, 100, false).check(&pending),
            Ok(Phase::Canary)
        );
        assert_eq!(
            flags(false, true, 100, false).check(&pending),
            Ok(Phase::Unified)
        );
    }

    #[test]
    fn unified_reads_without_fallback_wait_for_the_quarantine_to_be_settled() {
        let unsettled = MigrationState {
            quarantine_unsettled: true,
            ..FRESH
        };
        let canary = flags(true, true, 100, true);
        for hides in [
            flags(true, true, 10, false),
            flags(true, true, 100, false),
            flags(false, true, 100, false),
        ] {
            for from in [None, Some(&canary)] {
                assert_eq!(
                    hides.check_change(from, &unsettled),
                    Err(GuardrailViolation::UnifiedReadsHideQuarantinedValues)
                );
            }
            assert!(hides.check_change(Some(&canary), &FRESH).is_ok());
            // A decision already taken stands: a restart or a reload is not refused.
            assert!(hides.check(&unsettled).is_ok());
            assert!(hides.check_change(Some(&hides), &unsettled).is_ok());
        }
        // Fallback answers such entities from legacy; legacy reads hide nothing.
        for shows in [
            canary,
            flags(true, false, 100, false),
            flags(true, true, 0, false),
        ] {
            assert!(shows.check_change(None, &unsettled).is_ok(), "{shows:?}");
        }
    }

    #[test]
    fn unified_reads_need_a_complete_backfill_then_a_clean_verify() {
        let nothing = MigrationState::default();
        let backfilled = MigrationState {
            backfill_complete: true,
            ..MigrationState::default()
        };
        for reads_unified in [
            flags(true, true, 10, true),
            flags(true, true, 100, false),
            flags(false, true, 100, false),
        ] {
            assert_eq!(
                reads_unified.check(&nothing),
                Err(GuardrailViolation::UnifiedReadsBeforeBackfill)
            );
            assert_eq!(
                reads_unified.check(&backfilled),
                Err(GuardrailViolation::UnifiedReadsBeforeVerify)
            );
            assert!(reads_unified.check(&FRESH).is_ok());
        }
        // Legacy reads need no evidence: phases 0 and 1, and a rollout at 0 %.
        assert_eq!(
            flags(false, false, 100, false).check(&nothing),
            Ok(Phase::Legacy)
        );
        assert_eq!(
            flags(true, false, 100, false).check(&nothing),
            Ok(Phase::DualWrite)
        );
        assert_eq!(
            flags(true, true, 0, false).check(&nothing),
            Ok(Phase::Canary)
        );
    }

    #[test]
    fn every_rule_has_a_distinct_name() {
        let names = [
            GuardrailViolation::LegacyUsedAfterArchive.rule(),
            GuardrailViolation::LegacyReadsBeforeReverseSync.rule(),
            GuardrailViolation::DualWriteOffWhileLegacyServesReads.rule(),
            GuardrailViolation::FallbackToStaleLegacy.rule(),
            GuardrailViolation::UnifiedReadsBeforeBackfill.rule(),
            GuardrailViolation::UnifiedReadsBeforeVerify.rule(),
        ];
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }
}
