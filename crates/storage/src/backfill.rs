//! The backfill's durable state and the statements only it runs: legacy → unified in
//! keyset-paginated batches, one transaction each, with a checkpoint and a quarantine.

use serde::Serialize;

/// Progress of one entity kind, stored after every batch in the batch's transaction, so a
/// killed backfill resumes where its last committed batch ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Checkpoint {
    pub entity_type: String,
    pub last_id: i64,
    pub migrated: i64,
    pub quarantined: i64,
    /// Set once a run found no entity past `last_id`.
    pub completed: bool,
    /// The unified era the pass began in; `None` if a legacy-only write could still happen
    /// then, so the pass is no evidence for unified reads.
    pub era: Option<i64>,
}

impl Checkpoint {
    pub(crate) fn fresh(entity_type: &str, era: Option<i64>) -> Self {
        Self {
            entity_type: entity_type.to_owned(),
            last_id: 0,
            migrated: 0,
            quarantined: 0,
            completed: false,
            era,
        }
    }
}

/// Where the backfill of one entity kind stands, for metrics: a backfill that is not
/// complete and whose checkpoint stopped moving has stalled.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Progress {
    pub entity_type: String,
    pub migrated: i64,
    pub quarantined: i64,
    pub completed: bool,
    /// When the checkpoint last moved, in seconds since the Unix epoch.
    pub updated_epoch_seconds: f64,
}

/// `$epoch` turns `updated_at` into seconds since the Unix epoch on the backend.
macro_rules! progress_sql {
    ($epoch:literal) => {
        concat!(
            "SELECT entity_type, migrated, quarantined, completed_at IS NOT NULL AS completed, ",
            $epoch,
            " AS updated_epoch_seconds FROM backfill_checkpoint ORDER BY entity_type"
        )
    };
}
pub(crate) use progress_sql;

/// How many legacy values the quarantine holds for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct QuarantineCount {
    pub entity_type: String,
    pub reason: String,
    pub count: i64,
}

/// The most common reasons first; the status shows a bounded list.
pub(crate) const QUARANTINE_BY_REASON: &str = "SELECT entity_type, reason, COUNT(*) AS count
    FROM backfill_quarantine GROUP BY entity_type, reason
    ORDER BY COUNT(*) DESC, entity_type, reason LIMIT $1";

/// A legacy row the unified rules refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuarantinedRow {
    pub entity_id: i64,
    pub attribute_code: String,
    pub raw_value: String,
    pub reason: String,
}

pub(crate) const LOAD_CHECKPOINT: &str = "SELECT entity_type, last_id, migrated, quarantined,
        completed_at IS NOT NULL AS completed, CAST(era AS BIGINT) AS era
    FROM backfill_checkpoint WHERE entity_type = $1";

pub(crate) const SAVE_CHECKPOINT: &str = "INSERT INTO backfill_checkpoint
        (entity_type, last_id, migrated, quarantined, completed_at, updated_at, era)
    VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN CURRENT_TIMESTAMP END, CURRENT_TIMESTAMP, $6)
    ON CONFLICT (entity_type) DO UPDATE SET last_id = excluded.last_id, migrated = excluded.migrated,
        quarantined = excluded.quarantined, completed_at = excluded.completed_at,
        updated_at = excluded.updated_at, era = excluded.era";

pub(crate) const LEGACY_BINDINGS: &str =
    "SELECT category_id, attribute_id, is_enabled, is_required, sort_order,
        custom_component, show_in_card, show_in_list
    FROM category_attribute_mapping ORDER BY category_id, attribute_id";

pub(crate) const UNIFIED_IDS: &str =
    "SELECT CAST(id AS BIGINT) AS id, code FROM unified_attributes";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LegacyBindingRow {
    pub category_id: i32,
    pub attribute_id: i32,
    pub is_enabled: bool,
    pub is_required: Option<bool>,
    pub sort_order: i32,
    pub custom_component: Option<String>,
    pub show_in_card: Option<bool>,
    pub show_in_list: Option<bool>,
}

impl LegacyBindingRow {
    pub(crate) fn into_binding(self) -> domain::CategoryBinding {
        domain::CategoryBinding {
            is_enabled: self.is_enabled,
            is_required: self.is_required,
            custom_component: self.custom_component,
            show_in_card: self.show_in_card,
            show_in_list: self.show_in_list,
            ..domain::CategoryBinding::new(
                self.category_id.into(),
                self.attribute_id.into(),
                self.sort_order,
            )
        }
    }
}

/// Unified bindings in the columns legacy's mapping has.
pub(crate) const UNIFIED_BINDINGS_AS_LEGACY: &str =
    "SELECT category_id, attribute_id, is_enabled, is_required, sort_order,
        custom_component, show_in_card, show_in_list
    FROM unified_category_attributes ORDER BY category_id, attribute_id";
