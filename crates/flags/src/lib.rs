//! The migration flags: strict parsing, the guardrails that refuse unsafe combinations, the
//! phase a combination means, and sticky percentage bucketing.
//!
//! Knows no SQL and no HTTP: callers hand in raw values and the persisted migration state.

mod bucket;
mod guardrail;
mod ladder;
mod parse;
mod update;

pub use bucket::{ROLLOUT_GROUP, in_rollout, normalized_bucket};
pub use guardrail::{GuardrailViolation, MigrationState, Phase};
pub use ladder::{CANARY_PERCENTS, Rung};
pub use parse::{FlagError, RawFlags, vars};
pub use update::FlagUpdate;

use serde::Serialize;

/// Which store serves a read, or receives a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    Legacy,
    Unified,
}

impl Store {
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Legacy => "legacy",
            Store::Unified => "unified",
        }
    }
}

/// Why a unified read was answered from legacy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    UnifiedError,
    UnifiedEmpty,
    /// The entity has quarantined values users see in legacy: unified would hide them.
    Quarantined,
}

/// Which store answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServedBy {
    Legacy,
    Unified,
    Fallback(FallbackReason),
}

impl ServedBy {
    /// Every value, for metrics that exist before the first read.
    pub const ALL: [ServedBy; 5] = [
        ServedBy::Legacy,
        ServedBy::Unified,
        ServedBy::Fallback(FallbackReason::UnifiedError),
        ServedBy::Fallback(FallbackReason::UnifiedEmpty),
        ServedBy::Fallback(FallbackReason::Quarantined),
    ];

    /// The `served_by` label of the metrics and the answer's source header.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedBy::Legacy => "legacy",
            ServedBy::Unified => "unified",
            ServedBy::Fallback(FallbackReason::UnifiedError) => "fallback_error",
            ServedBy::Fallback(FallbackReason::UnifiedEmpty) => "fallback_empty",
            ServedBy::Fallback(FallbackReason::Quarantined) => "fallback_quarantined",
        }
    }
}

impl From<Store> for ServedBy {
    fn from(store: Store) -> Self {
        match store {
            Store::Legacy => ServedBy::Legacy,
            Store::Unified => ServedBy::Unified,
        }
    }
}

impl FallbackReason {
    /// The `reason` label of the fallback metric.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::UnifiedError => "error",
            FallbackReason::UnifiedEmpty => "empty",
            FallbackReason::Quarantined => "quarantined",
        }
    }
}

/// Where writes land.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    LegacyOnly,
    /// Both stores, in one transaction.
    Dual,
    UnifiedOnly,
}

impl WriteMode {
    pub fn writes(self, store: Store) -> bool {
        matches!(
            (self, store),
            (WriteMode::Dual, _)
                | (WriteMode::LegacyOnly, Store::Legacy)
                | (WriteMode::UnifiedOnly, Store::Unified)
        )
    }

    /// The store whose category schema validates writes: legacy as long as legacy is written.
    pub fn authoritative(self) -> Store {
        match self {
            WriteMode::LegacyOnly | WriteMode::Dual => Store::Legacy,
            WriteMode::UnifiedOnly => Store::Unified,
        }
    }
}

/// The five switches of the migration. Each does exactly one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flags {
    /// `USE_UNIFIED_ATTRIBUTES`: reads may be served from the unified store.
    pub use_unified: bool,
    /// `UNIFIED_ATTRIBUTES_PERCENT`: share of users (sticky) whose reads the unified store serves.
    pub unified_percent: u8,
    /// `UNIFIED_ATTRIBUTES_FALLBACK`: a failed or empty unified read is answered from legacy.
    pub fallback: bool,
    /// `DUAL_WRITE_ATTRIBUTES`: every write lands in both stores in one transaction.
    pub dual_write: bool,
    /// `UNIFIED_ATTRIBUTES_SHADOW_PERCENT`: share of reads also served by the other store and compared.
    pub shadow_percent: u8,
}

impl Default for Flags {
    /// Phase 0: everything on legacy.
    fn default() -> Self {
        Self {
            use_unified: false,
            unified_percent: 100,
            fallback: false,
            dual_write: false,
            shadow_percent: 0,
        }
    }
}

impl Flags {
    /// The store that serves a read for the user or session `rollout_key`. The same key
    /// always gets the same answer for a given percentage.
    pub fn read_store(&self, rollout_key: &str) -> Store {
        if self.use_unified && in_rollout(ROLLOUT_GROUP, rollout_key, self.unified_percent) {
            Store::Unified
        } else {
            Store::Legacy
        }
    }

    pub fn write_mode(&self) -> WriteMode {
        if self.dual_write {
            WriteMode::Dual
        } else if self.use_unified {
            WriteMode::UnifiedOnly
        } else {
            WriteMode::LegacyOnly
        }
    }

    /// Whether some reads can still be answered by legacy (directly or as fallback).
    pub fn reads_legacy(&self) -> bool {
        !self.use_unified || self.unified_percent < 100 || self.fallback
    }
}
