//! Runtime flags: the stored set that overrides the environment, and its audit trail.

use flags::WriteMode;

use crate::backend::Backend;
use crate::error::{Result, StorageError};
use crate::router::{Router, phase_name};

use flags::Flags;
use serde::Serialize;

/// The channel replicas listen on for flag changes.
pub const FLAGS_CHANNEL: &str = "unified_attributes_flags";

/// The stored runtime flags and who set them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFlags {
    pub flags: Flags,
    pub updated_at: String,
    pub updated_by: String,
}

/// One change of the flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct FlagAuditEntry {
    pub id: i64,
    pub changed_at: String,
    pub changed_by: String,
    #[sqlx(json)]
    pub old_flags: serde_json::Value,
    #[sqlx(json)]
    pub new_flags: serde_json::Value,
    pub old_phase: String,
    pub new_phase: String,
}

/// A change of the runtime flags, as audited.
#[derive(Debug, Clone)]
pub struct FlagChange {
    pub actor: String,
    pub old: Flags,
    pub new: Flags,
    pub old_phase: String,
    pub new_phase: String,
    /// The phase the new flags mean, as checked in the change's transaction.
    pub phase: flags::Phase,
}

/// Rows in each store: the real numbers behind the migration status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct MigrationCounts {
    /// `None` while the legacy tables are archived.
    pub legacy_definitions: Option<i64>,
    pub unified_definitions: i64,
    /// `None` while the legacy tables are archived.
    pub legacy_bindings: Option<i64>,
    pub unified_bindings: i64,
    /// `None` while the legacy tables are archived.
    pub legacy_listing_values: Option<i64>,
    pub unified_listing_values: i64,
    pub unified_product_values: i64,
    pub unified_variant_values: i64,
    pub listings: i64,
    pub products: i64,
    pub variants: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FlagRow {
    pub use_unified: bool,
    pub unified_percent: i32,
    pub fallback: bool,
    pub dual_write: bool,
    pub shadow_percent: i32,
    pub updated_at: String,
    pub updated_by: String,
}

impl FlagRow {
    pub(crate) fn into_stored(self) -> StoredFlags {
        let percent = |p: i32| u8::try_from(p.clamp(0, 100)).unwrap_or(100);
        StoredFlags {
            flags: Flags {
                use_unified: self.use_unified,
                unified_percent: percent(self.unified_percent),
                fallback: self.fallback,
                dual_write: self.dual_write,
                shadow_percent: percent(self.shadow_percent),
            },
            updated_at: self.updated_at,
            updated_by: self.updated_by,
        }
    }
}

pub(crate) const LOAD_FLAGS: &str =
    "SELECT use_unified, CAST(unified_percent AS INTEGER) AS unified_percent, fallback,
        dual_write, CAST(shadow_percent AS INTEGER) AS shadow_percent,
        CAST(updated_at AS TEXT) AS updated_at, updated_by
    FROM flag_state WHERE id = 1";

pub(crate) const SAVE_FLAGS: &str = "INSERT INTO flag_state
        (id, use_unified, unified_percent, fallback, dual_write, shadow_percent, updated_at, updated_by)
    VALUES (1, $1, $2, $3, $4, $5, CURRENT_TIMESTAMP, $6)
    ON CONFLICT (id) DO UPDATE SET use_unified = excluded.use_unified,
        unified_percent = excluded.unified_percent, fallback = excluded.fallback,
        dual_write = excluded.dual_write, shadow_percent = excluded.shadow_percent,
        updated_at = excluded.updated_at, updated_by = excluded.updated_by";

pub(crate) const INSERT_AUDIT: &str =
    "INSERT INTO flag_audit (changed_by, old_flags, new_flags, old_phase, new_phase)
    VALUES ($1, $2, $3, $4, $5)";

pub(crate) const AUDIT: &str =
    "SELECT CAST(id AS BIGINT) AS id, CAST(changed_at AS TEXT) AS changed_at, changed_by,
        old_flags, new_flags, old_phase, new_phase
    FROM flag_audit ORDER BY id DESC LIMIT $1";

/// A no-op update: it takes the row's write lock until the transaction ends.
pub(crate) const LOCK_MIGRATION_STATE: &str = "UPDATE migration_state SET id = id WHERE id = 1";

macro_rules! migration_counts_sql {
    ($legacy_definitions:literal, $legacy_bindings:literal, $legacy_values:literal) => {
        concat!(
            "SELECT ", $legacy_definitions, " AS legacy_definitions,
                (SELECT COUNT(*) FROM unified_attributes) AS unified_definitions,
                ", $legacy_bindings, " AS legacy_bindings,
                (SELECT COUNT(*) FROM unified_category_attributes) AS unified_bindings,
                ", $legacy_values, " AS legacy_listing_values,
                (SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'listing') AS unified_listing_values,
                (SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'product') AS unified_product_values,
                (SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'product_variant') AS unified_variant_values,
                (SELECT COUNT(*) FROM marketplace_listings) AS listings,
                (SELECT COUNT(*) FROM storefront_products) AS products,
                (SELECT COUNT(*) FROM storefront_product_variants) AS variants"
        )
    };
}

pub(crate) const MIGRATION_COUNTS: &str = migration_counts_sql!(
    "(SELECT COUNT(*) FROM category_attributes)",
    "(SELECT COUNT(*) FROM category_attribute_mapping)",
    "(SELECT COUNT(*) FROM listing_attribute_values)"
);

/// While archived, the legacy tables are not where the live queries look.
pub(crate) const MIGRATION_COUNTS_ARCHIVED: &str = migration_counts_sql!(
    "CAST(NULL AS BIGINT)",
    "CAST(NULL AS BIGINT)",
    "CAST(NULL AS BIGINT)"
);

impl<B: Backend> Router<B> {
    /// Changes the runtime flags: `change` is applied to the flags in force (`current`, or
    /// the stored ones when another replica changed them since), the result is checked
    /// against the guardrails with the persisted migration state, then stored with an audit
    /// row, and every replica is told. One change at a time.
    pub(crate) async fn change_flags(
        &self,
        current: Flags,
        actor: &str,
        change: impl FnOnce(Flags) -> Flags,
    ) -> Result<crate::flag_store::FlagChange> {
        let mut tx = self.begin_write().await?;
        B::lock_migration_state(&mut tx).await?;
        let old = B::load_flags(&mut tx)
            .await?
            .map_or(current, |stored| stored.flags);
        let state = B::migration_state(&mut tx).await?;
        let new = change(old);
        let new_phase = new.check(&state).map_err(StorageError::Guardrail)?;
        let old_phase = old.check(&state).map_or_else(
            |violation| violation.rule().to_owned(),
            |p| phase_name(p).to_owned(),
        );
        let change = crate::flag_store::FlagChange {
            actor: actor.to_owned(),
            old,
            new,
            old_phase,
            new_phase: phase_name(new_phase).to_owned(),
            phase: new_phase,
        };
        B::save_flags(&mut tx, &change).await?;
        B::note_write_mode(&mut tx, new.write_mode()).await?;
        tx.commit().await?;
        Ok(change)
    }

    pub(crate) async fn note_write_mode(&self, mode: WriteMode) -> Result<()> {
        let mut tx = self.begin_write().await?;
        B::note_write_mode(&mut tx, mode).await?;
        Ok(tx.commit().await?)
    }

    pub(crate) async fn stored_flags(&self) -> Result<Option<crate::flag_store::StoredFlags>> {
        let mut conn = self.acquire().await?;
        B::load_flags(&mut conn).await
    }

    pub(crate) async fn flag_audit(
        &self,
        limit: i64,
    ) -> Result<Vec<crate::flag_store::FlagAuditEntry>> {
        let mut conn = self.acquire().await?;
        B::flag_audit(&mut conn, limit).await
    }

    pub(crate) async fn migration_counts(&self) -> Result<crate::flag_store::MigrationCounts> {
        let mut conn = self.acquire().await?;
        B::migration_counts(&mut conn).await
    }
}
