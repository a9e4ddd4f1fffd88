//! Runtime flags: the stored set that overrides the environment, and its audit trail.

use flags::WriteMode;

use crate::backend::Backend;
use crate::dialect::{Sql, on_dialect};
use crate::error::Result;
use crate::router::Router;
use crate::stats::record_queries;
pub use crate::stored_flags::{FLAGS_CHANNEL, FlagAuditEntry, FlagChange, StoredFlags};
use crate::stored_flags::{flag_audit, load_environment, load_flags, save_environment, save_flags};

use flags::{Flags, RawFlags};
use serde::Serialize;

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

const MIGRATION_COUNTS: Sql = Sql::same(migration_counts_sql!(
    "(SELECT COUNT(*) FROM category_attributes)",
    "(SELECT COUNT(*) FROM category_attribute_mapping)",
    "(SELECT COUNT(*) FROM listing_attribute_values)"
));

/// While archived, the legacy tables are not where the live queries look.
const MIGRATION_COUNTS_ARCHIVED: Sql = Sql::same(migration_counts_sql!(
    "CAST(NULL AS BIGINT)",
    "CAST(NULL AS BIGINT)",
    "CAST(NULL AS BIGINT)"
));

/// What a start made of the flags its environment gives.
#[derive(Debug, Clone)]
pub enum EnvironmentFlags {
    /// No runtime change was ever made: the environment's flags are the ones in force.
    InForce,
    /// The environment is as the last start saw it (or seen for the first time): the stored
    /// runtime flags stay.
    Unchanged,
    /// The environment changed since the last start; its changed flags were applied as a
    /// runtime change.
    Applied(FlagChange),
    /// The environment changed, but the flags it asks for break a guardrail: nothing changed,
    /// and the next start tries again.
    Refused(flags::GuardrailViolation),
}

/// The stored flags, with each flag whose variable the environment set, or set to another
/// value, since `seen` taken from `configured` (the parsed environment): what an operator
/// changing the environment asked for. A variable that was unset asks for nothing.
fn with_environment_changes(
    stored: Flags,
    seen: &RawFlags,
    raw: &RawFlags,
    configured: Flags,
) -> Flags {
    fn pick<T>(stored: T, seen: &Option<String>, raw: &Option<String>, configured: T) -> T {
        if raw.is_some() && raw != seen {
            configured
        } else {
            stored
        }
    }
    Flags {
        use_unified: pick(
            stored.use_unified,
            &seen.use_unified,
            &raw.use_unified,
            configured.use_unified,
        ),
        unified_percent: pick(
            stored.unified_percent,
            &seen.unified_percent,
            &raw.unified_percent,
            configured.unified_percent,
        ),
        fallback: pick(
            stored.fallback,
            &seen.fallback,
            &raw.fallback,
            configured.fallback,
        ),
        dual_write: pick(
            stored.dual_write,
            &seen.dual_write,
            &raw.dual_write,
            configured.dual_write,
        ),
        shadow_percent: pick(
            stored.shadow_percent,
            &seen.shadow_percent,
            &raw.shadow_percent,
            configured.shadow_percent,
        ),
    }
}

impl<B: Backend> Router<B> {
    /// Compares the environment's flags with those the last start saw, in one transaction
    /// with the flag changes: a changed environment is applied as a runtime change by
    /// `actor` (guardrails and audit as any change), then remembered.
    pub(crate) async fn adopt_environment(
        &self,
        raw: &RawFlags,
        configured: Flags,
        actor: &str,
    ) -> Result<EnvironmentFlags> {
        let mut tx = self.begin_write().await?;
        crate::evidence::lock_migration_state(B::dialect(&mut tx)).await?;
        let seen = load_environment(B::dialect(&mut tx)).await?;
        // A restart with the same environment (the usual start) writes nothing.
        let changed = seen.as_ref() != Some(raw);
        let Some(stored) = load_flags(B::dialect(&mut tx)).await?.map(|s| s.flags) else {
            if changed {
                save_environment(B::dialect(&mut tx), raw).await?;
            }
            tx.commit().await?;
            return Ok(EnvironmentFlags::InForce);
        };
        // Never seen (a database from before this was recorded): remembered, not applied —
        // an upgrade must not turn a ConfigMap's old values into a change.
        let Some(seen) = seen.filter(|seen| seen != raw) else {
            if changed {
                save_environment(B::dialect(&mut tx), raw).await?;
            }
            tx.commit().await?;
            return Ok(EnvironmentFlags::Unchanged);
        };
        let new = with_environment_changes(stored, &seen, raw, configured);
        let state = crate::evidence::migration_state(B::dialect(&mut tx)).await?;
        let new_phase = match new.check_change(Some(&stored), &state) {
            Ok(phase) => phase,
            Err(violation) => return Ok(EnvironmentFlags::Refused(violation)),
        };
        save_environment(B::dialect(&mut tx), raw).await?;
        if new == stored {
            tx.commit().await?;
            return Ok(EnvironmentFlags::Unchanged);
        }
        let change = FlagChange {
            actor: actor.to_owned(),
            old: stored,
            new,
            old_phase: stored.check(&state).map_or_else(
                |violation| violation.rule().to_owned(),
                |p| p.as_str().to_owned(),
            ),
            new_phase: new_phase.as_str().to_owned(),
            phase: new_phase,
        };
        save_flags(B::dialect(&mut tx), &change).await?;
        crate::evidence::note_write_mode(B::dialect(&mut tx), new.write_mode()).await?;
        tx.commit().await?;
        Ok(EnvironmentFlags::Applied(change))
    }

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
        crate::evidence::lock_migration_state(B::dialect(&mut tx)).await?;
        let old = load_flags(B::dialect(&mut tx))
            .await?
            .map_or(current, |stored| stored.flags);
        let state = crate::evidence::migration_state(B::dialect(&mut tx)).await?;
        let new = change(old);
        let new_phase = match new.check_change(Some(&old), &state) {
            Ok(phase) => phase,
            Err(violation) => return Err(crate::quarantine::refusal::<B>(&mut tx, violation).await),
        };
        let old_phase = old.check(&state).map_or_else(
            |violation| violation.rule().to_owned(),
            |p| p.as_str().to_owned(),
        );
        let change = crate::flag_store::FlagChange {
            actor: actor.to_owned(),
            old,
            new,
            old_phase,
            new_phase: new_phase.as_str().to_owned(),
            phase: new_phase,
        };
        save_flags(B::dialect(&mut tx), &change).await?;
        crate::evidence::note_write_mode(B::dialect(&mut tx), new.write_mode()).await?;
        tx.commit().await?;
        Ok(change)
    }

    pub(crate) async fn note_write_mode(&self, mode: WriteMode) -> Result<()> {
        let mut tx = self.begin_write().await?;
        crate::evidence::note_write_mode(B::dialect(&mut tx), mode).await?;
        Ok(tx.commit().await?)
    }

    pub(crate) async fn stored_flags(&self) -> Result<Option<crate::flag_store::StoredFlags>> {
        let mut conn = self.acquire().await?;
        load_flags(B::dialect(&mut conn)).await
    }

    pub(crate) async fn flag_audit(
        &self,
        limit: i64,
    ) -> Result<Vec<crate::flag_store::FlagAuditEntry>> {
        let mut conn = self.acquire().await?;
        flag_audit(B::dialect(&mut conn), limit).await
    }

    pub(crate) async fn migration_counts(&self) -> Result<crate::flag_store::MigrationCounts> {
        let mut conn = self.acquire().await?;
        let statement = if crate::evidence::archived(B::dialect(&mut conn)).await? {
            MIGRATION_COUNTS_ARCHIVED
        } else {
            MIGRATION_COUNTS
        };
        record_queries(1);
        Ok(on_dialect!(
            B::dialect(&mut conn),
            statement,
            |c, statement| sqlx::query_as(statement).fetch_one(&mut *c).await?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_variable_set_or_changed_since_the_last_start_overrides_the_stored_flags() {
        let canary = Flags {
            dual_write: true,
            use_unified: true,
            unified_percent: 50,
            fallback: true,
            ..Flags::default()
        };
        let nothing_set = RawFlags::default();
        // Restarted with the same environment: the stored flags stay.
        assert_eq!(
            with_environment_changes(canary, &nothing_set, &nothing_set, Flags::default()),
            canary
        );
        // `kubectl set env … USE_UNIFIED_ATTRIBUTES=false`: that flag, and only that one.
        let set_env = RawFlags {
            use_unified: Some("false".into()),
            ..RawFlags::default()
        };
        let configured = set_env.parse().expect("valid");
        assert_eq!(
            with_environment_changes(canary, &nothing_set, &set_env, configured),
            Flags {
                use_unified: false,
                ..canary
            }
        );
        // The next restart with it still set changes nothing again; unsetting it neither.
        assert_eq!(
            with_environment_changes(canary, &set_env, &set_env, configured),
            canary
        );
        assert_eq!(
            with_environment_changes(canary, &set_env, &nothing_set, Flags::default()),
            canary
        );
    }
}
