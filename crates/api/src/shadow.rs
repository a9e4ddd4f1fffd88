//! Shadow reads (Scientist style): a sampled share of reads also reads both stores off the
//! request path and compares them. Results are counted; a bounded sample of the differences
//! is kept for ops.

use std::collections::VecDeque;
use std::sync::Mutex;

use domain::{EntityRef, EntityValues, Value};
use serde::Serialize;
use storage::ReadRoute;

use crate::AppState;

/// Differences kept for the admin route; older ones are dropped.
pub const MAX_DIFFS_KEPT: usize = 50;

/// One comparison that found the stores disagreeing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShadowDiff {
    pub entity_type: String,
    pub entity_id: i64,
    /// Codes whose values differ or exist in one store only, with each side as JSON text.
    #[schema(value_type = Object)]
    pub differences: Vec<(String, Option<String>, Option<String>)>,
}

/// The bounded sample of recent differences.
#[derive(Debug, Default)]
pub struct ShadowDiffs(Mutex<VecDeque<ShadowDiff>>);

impl ShadowDiffs {
    fn push(&self, diff: ShadowDiff) {
        let mut diffs = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if diffs.len() == MAX_DIFFS_KEPT {
            diffs.pop_front();
        }
        diffs.push_back(diff);
    }

    pub fn recent(&self) -> Vec<ShadowDiff> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect()
    }
}

/// Whether this read is in the shadow sample.
pub fn sampled(state: &AppState) -> bool {
    let percent = state.flags().shadow_percent;
    percent > 0 && rand::random::<u8>() % 100 < percent
}

/// Compares an entity's values in both stores, in the background.
pub fn compare_entity(state: &AppState, entity: EntityRef) {
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let legacy = state
            .storage
            .entity_values(entity, ReadRoute::new(flags::Store::Legacy, false))
            .await;
        let unified = state
            .storage
            .entity_values(entity, ReadRoute::new(flags::Store::Unified, false))
            .await;
        match (legacy, unified) {
            (Ok(mut legacy), Ok(unified)) => {
                // Compared as served: legacy spellings read as the option they mean.
                if let Err(err) = state.canonical_legacy_values(&mut legacy.data).await {
                    tracing::debug!(error = %err, "legacy spellings left as stored");
                }
                let differences = differences(&legacy.data, &unified.data);
                if differences.is_empty() {
                    state.metrics.shadow("match");
                } else {
                    state.metrics.shadow("mismatch");
                    tracing::warn!(%entity, ?differences, "shadow read: the stores disagree");
                    state.shadow_diffs.push(ShadowDiff {
                        entity_type: entity.kind.as_str().to_owned(),
                        entity_id: entity.id,
                        differences,
                    });
                }
            }
            // Neither store has the entity: they agree.
            (
                Err(storage::StorageError::NotFound { .. }),
                Err(storage::StorageError::NotFound { .. }),
            ) => {
                state.metrics.shadow("match");
            }
            (Err(err), _) | (_, Err(err)) => {
                state.metrics.shadow("error");
                tracing::warn!(%entity, error = %storage::Logged(&err), "shadow read failed");
            }
        }
    });
}

/// Multiselect choices compare as sets: their order carries no meaning.
fn canonical(values: &EntityValues) -> EntityValues {
    values
        .iter()
        .map(|(code, typed)| {
            let mut typed = typed.clone();
            if let Value::Multiselect(items) = &mut typed.value {
                items.sort();
            }
            (code.clone(), typed)
        })
        .collect()
}

fn differences(
    legacy: &EntityValues,
    unified: &EntityValues,
) -> Vec<(String, Option<String>, Option<String>)> {
    let (legacy, unified) = (canonical(legacy), canonical(unified));
    let text =
        |values: &EntityValues, code: &str| values.get(code).map(|t| t.value.to_json().to_string());
    let mut codes: Vec<&String> = legacy.keys().chain(unified.keys()).collect();
    codes.sort();
    codes.dedup();
    codes
        .into_iter()
        .filter(|code| legacy.get(*code) != unified.get(*code))
        .map(|code| (code.clone(), text(&legacy, code), text(&unified, code)))
        .collect()
}

#[cfg(test)]
mod tests {
    use domain::TypedValue;

    use super::*;

    fn values(pairs: &[(&str, Value)]) -> EntityValues {
        pairs
            .iter()
            .map(|(code, value)| ((*code).to_owned(), TypedValue::new(value.clone())))
            .collect()
    }

    #[test]
    fn multiselect_order_is_not_a_difference() {
        let legacy = values(&[(
            "color",
            Value::Multiselect(vec!["red".into(), "blue".into()]),
        )]);
        let unified = values(&[(
            "color",
            Value::Multiselect(vec!["blue".into(), "red".into()]),
        )]);
        assert!(differences(&legacy, &unified).is_empty());
    }

    #[test]
    fn a_changed_a_missing_and_an_extra_value_are_each_reported() {
        let legacy = values(&[
            ("year", Value::Select("2010".into())),
            ("city", Value::Select("Niš".into())),
        ]);
        let unified = values(&[
            ("year", Value::Select("2011".into())),
            ("rooms", Value::Select("3".into())),
        ]);
        let found: Vec<_> = differences(&legacy, &unified)
            .into_iter()
            .map(|d| d.0)
            .collect();
        assert_eq!(found, ["city", "rooms", "year"]);
    }
}
