//! The generation counters that let a load tell it ran across a write.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Scope;

/// Generations per scope, striped: bumped before every drop, so a load that ran across a
/// write can tell and not leave its stale answer behind.
#[derive(Debug)]
pub(crate) struct Generations {
    stripes: Vec<AtomicU64>,
    /// Bumped by drops that reach every scope (all values, all ranges, everything, catalog).
    global: AtomicU64,
}

const GENERATION_STRIPES: usize = 1024;

impl Generations {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..GENERATION_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
        }
    }

    fn stripe(&self, scope: &Scope) -> &AtomicU64 {
        // A fixed seed: every handle of the caches must find a scope's stripe in one place.
        let hash = foldhash::quality::FixedState::default().hash_one(scope);
        &self.stripes[(hash % GENERATION_STRIPES as u64) as usize]
    }

    pub(crate) fn current(&self, scope: Option<&Scope>) -> (u64, u64) {
        let global = self.global.load(Ordering::Acquire);
        (
            scope.map_or(0, |s| self.stripe(s).load(Ordering::Acquire)),
            global,
        )
    }

    pub(crate) fn bump(&self, scope: &Scope) {
        self.stripe(scope).fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn bump_global(&self) {
        self.global.fetch_add(1, Ordering::AcqRel);
    }
}
