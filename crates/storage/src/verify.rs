//! `verify`: legacy and unified compared per entity (listings, products, variants), in both
//! directions, with the values the backfill quarantined left out; counts per kind and per
//! attribute, and a bounded list of the drifted entities with the difference.

use std::collections::{BTreeMap, HashSet};

use domain::{EntityRef, EntityValues};
use serde::Serialize;

/// Drifted entities kept in a report; the count is always complete.
pub const MAX_DRIFT_SHOWN: usize = 50;

/// How one entity differs between the stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub entity_type: &'static str,
    pub entity_id: i64,
    /// Codes with a value in legacy only.
    pub missing_in_unified: Vec<String>,
    /// Codes with a value in unified only.
    pub missing_in_legacy: Vec<String>,
    /// Codes whose values differ: (legacy, unified) as JSON text.
    pub different: BTreeMap<String, (String, String)>,
}

/// Entities of one kind checked and drifted, and values per attribute code in each store
/// (quarantined values left out of legacy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub checked: i64,
    pub drifted: i64,
    pub legacy_values_by_code: BTreeMap<String, i64>,
    pub unified_values_by_code: BTreeMap<String, i64>,
}

/// The result of a verify run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub checked: i64,
    pub drifted: i64,
    /// Per entity kind (`listing`, `product`, `product_variant`).
    pub kinds: BTreeMap<&'static str, KindCounts>,
    pub quarantined: i64,
    pub drift: Vec<Drift>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.drifted == 0
    }

    /// Compares one entity; `quarantined` holds the codes whose legacy values were refused.
    pub(crate) fn compare(
        &mut self,
        entity: EntityRef,
        mut legacy: EntityValues,
        unified: &EntityValues,
        quarantined: &HashSet<String>,
    ) {
        // A quarantine entry explains a value missing from unified; once unified has a value for
        // that code again (a later write), the two are compared as usual.
        legacy.retain(|code, _| !quarantined.contains(code) || unified.contains_key(code));
        self.checked += 1;
        let counts = self.kinds.entry(entity.kind.as_str()).or_default();
        counts.checked += 1;
        for code in legacy.keys() {
            *counts
                .legacy_values_by_code
                .entry(code.clone())
                .or_default() += 1;
        }
        for code in unified.keys() {
            *counts
                .unified_values_by_code
                .entry(code.clone())
                .or_default() += 1;
        }
        if &legacy == unified {
            return;
        }
        counts.drifted += 1;
        self.drifted += 1;
        if self.drift.len() >= MAX_DRIFT_SHOWN {
            return;
        }
        let text = |typed: &domain::TypedValue| {
            let mut json = typed.value.to_json().to_string();
            if let Some(unit) = &typed.unit {
                json.push(' ');
                json.push_str(unit);
            }
            json
        };
        self.drift.push(Drift {
            entity_type: entity.kind.as_str(),
            entity_id: entity.id,
            missing_in_unified: legacy
                .keys()
                .filter(|c| !unified.contains_key(*c))
                .cloned()
                .collect(),
            missing_in_legacy: unified
                .keys()
                .filter(|c| !legacy.contains_key(*c))
                .cloned()
                .collect(),
            different: legacy
                .iter()
                .filter_map(|(code, value)| {
                    let other = unified.get(code)?;
                    (other != value).then(|| (code.clone(), (text(value), text(other))))
                })
                .collect(),
        });
    }
}

pub(crate) const SAVE_RUN: &str =
    "INSERT INTO verify_runs (checked, drifted, report) VALUES ($1, $2, $3)";

pub(crate) const LAST_RUN: &str =
    "SELECT CAST(finished_at AS TEXT), checked, drifted FROM verify_runs ORDER BY id DESC LIMIT 1";

/// The last verify run: when, how many listings, how many drifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastVerify {
    pub finished_at: String,
    pub checked: i64,
    pub drifted: i64,
}

/// Unified values whose entity no longer exists (the entity tables have no foreign key from
/// the values, which span three of them).
pub(crate) const ORPHANED_VALUES: &str = "SELECT COUNT(*) FROM unified_attribute_values v WHERE
    (v.entity_type = 'listing' AND NOT EXISTS (SELECT 1 FROM marketplace_listings e WHERE e.id = v.entity_id))
    OR (v.entity_type = 'product' AND NOT EXISTS (SELECT 1 FROM storefront_products e WHERE e.id = v.entity_id))
    OR (v.entity_type = 'product_variant'
        AND NOT EXISTS (SELECT 1 FROM storefront_product_variants e WHERE e.id = v.entity_id))";
