//! Routing of reads and writes between the legacy and unified stores — written once, above
//! the backends. The router opens and commits every write transaction itself, so a
//! dual-write lands in both stores or in neither.

use std::collections::HashMap;
use std::future::Future;

use domain::{
    Attribute, AttributeDraft, BindingDraft, CategoryBinding, EffectiveSchema, EntityKind,
    EntityRef, EntityValues, validate_patch, validate_replacement,
};
use flags::{Flags, MigrationState, Phase, Store, WriteMode};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::backend::{Backend, Conn};
use crate::error::{Result, StorageError};
use crate::invalidation::Invalidation;
use crate::rows::{AttributeRange, SchemaParts};

/// Where a read should go, as the flags decided for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRoute {
    pub store: Store,
    /// Answer from legacy when the unified read fails or finds nothing legacy has.
    pub fallback: bool,
}

impl ReadRoute {
    pub fn new(store: Store, fallback: bool) -> Self {
        Self { store, fallback }
    }
}

/// Why a unified read was answered from legacy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    UnifiedError,
    UnifiedEmpty,
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
    pub fn as_str(self) -> &'static str {
        match self {
            ServedBy::Legacy => "legacy",
            ServedBy::Unified => "unified",
            ServedBy::Fallback(FallbackReason::UnifiedError) => "fallback_error",
            ServedBy::Fallback(FallbackReason::UnifiedEmpty) => "fallback_empty",
        }
    }
}

/// A read's answer and the store that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Read<T> {
    pub data: T,
    pub served_by: ServedBy,
}

/// A committed write's result and what it made stale.
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    pub data: T,
    pub invalidations: Vec<Invalidation>,
}

/// How a value write changes an entity's values.
#[derive(Debug, Clone, Copy)]
pub enum ValuesChange<'a> {
    /// `PUT`: the input is the new full set.
    Replace(&'a Map<String, Json>),
    /// `PATCH`: the input is merged in; `null` removes a value.
    Merge(&'a Map<String, Json>),
}

/// What a routed read may find empty, so that fallback can tell "nothing" apart.
trait MaybeEmpty {
    fn is_empty(&self) -> bool;
}

impl MaybeEmpty for EffectiveSchema {
    fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }
}

impl MaybeEmpty for EntityValues {
    fn is_empty(&self) -> bool {
        EntityValues::is_empty(self)
    }
}

impl<T> MaybeEmpty for Vec<T> {
    fn is_empty(&self) -> bool {
        <[T]>::is_empty(self)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Router<B> {
    backend: B,
}

impl<B: Backend> Router<B> {
    pub(crate) fn new(backend: B) -> Self {
        Self { backend }
    }

    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// The effective schema of a category, from the store the route picks.
    pub(crate) async fn category_schema(
        &self,
        category_id: i64,
        route: ReadRoute,
    ) -> Result<Read<EffectiveSchema>> {
        self.routed(route, |store| self.schema_in(store, category_id))
            .await
    }

    /// An entity's values, from the store the route picks.
    pub(crate) async fn entity_values(
        &self,
        entity: EntityRef,
        route: ReadRoute,
    ) -> Result<Read<EntityValues>> {
        self.routed(route, |store| self.values_in(store, entity))
            .await
    }

    /// Values of many listings; listings that do not exist are absent from the answer. With
    /// fallback, a listing the unified store has nothing for is answered from legacy.
    pub(crate) async fn listing_values_batch(
        &self,
        ids: &[i64],
        route: ReadRoute,
    ) -> Result<Read<HashMap<i64, EntityValues>>> {
        let read = |store| async move {
            let mut conn = self.backend.pool().acquire().await?;
            B::listing_values_batch(&mut conn, store, ids).await
        };
        if route.store == Store::Legacy {
            return Ok(Read {
                data: read(Store::Legacy).await?,
                served_by: ServedBy::Legacy,
            });
        }
        match read(Store::Unified).await {
            Ok(mut data) if route.fallback => {
                let empty: Vec<i64> = ids
                    .iter()
                    .copied()
                    .filter(|id| data.get(id).is_none_or(|v| v.is_empty()))
                    .collect();
                if empty.is_empty() {
                    return Ok(Read {
                        data,
                        served_by: ServedBy::Unified,
                    });
                }
                let mut conn = self.backend.pool().acquire().await?;
                let legacy = B::listing_values_batch(&mut conn, Store::Legacy, &empty).await?;
                let mut served_by = ServedBy::Unified;
                for (id, values) in legacy.into_iter().filter(|(_, v)| !v.is_empty()) {
                    data.insert(id, values);
                    served_by = ServedBy::Fallback(FallbackReason::UnifiedEmpty);
                }
                Ok(Read { data, served_by })
            }
            Ok(data) => Ok(Read {
                data,
                served_by: ServedBy::Unified,
            }),
            Err(err) if route.fallback => {
                tracing::warn!(error = ?err, "unified batch read failed; answered from legacy");
                Ok(Read {
                    data: read(Store::Legacy).await?,
                    served_by: ServedBy::Fallback(FallbackReason::UnifiedError),
                })
            }
            Err(err) => Err(err),
        }
    }

    /// Every attribute definition of the routed store.
    pub(crate) async fn catalog(&self, route: ReadRoute) -> Result<Read<Vec<Attribute>>> {
        self.routed(route, |store| async move {
            let mut conn = self.backend.pool().acquire().await?;
            B::catalog(&mut conn, store).await
        })
        .await
    }

    /// Ranges of number attributes over the listings of a category subtree.
    pub(crate) async fn ranges(
        &self,
        category_id: i64,
        route: ReadRoute,
    ) -> Result<Read<Vec<AttributeRange>>> {
        self.routed(route, |store| async move {
            let mut conn = self.backend.pool().acquire().await?;
            let ranges = B::ranges(&mut conn, store, category_id).await?;
            if ranges.is_empty() && !B::category_exists(&mut conn, category_id).await? {
                return Err(StorageError::NotFound {
                    what: "category",
                    id: category_id,
                });
            }
            Ok(ranges)
        })
        .await
    }

    /// Opens a write's transaction under the flags it was decided with: records what a write
    /// in `mode` does to the evidence, then holds the migration state (so no flag change
    /// commits until this write does) and refuses a decision the stored flags no longer make.
    async fn begin_fenced(&self, mode: WriteMode) -> Result<sqlx::Transaction<'static, B::Db>> {
        let mut tx = self.backend.begin_write().await?;
        B::note_write(&mut tx, mode).await?;
        match B::fence(&mut tx).await? {
            Some(current) if current != mode => Err(StorageError::StaleWriteMode {
                decided: mode,
                current,
            }),
            _ => Ok(tx),
        }
    }

    /// Changes an entity's values after validating the result against the effective schema
    /// of its category, in the stores `mode` names, in one transaction. Only the codes the
    /// change names are written: a `PATCH` touches the codes it names, a `PUT` the codes of
    /// the schema; legacy rows it cannot read and values outside the schema stay.
    pub(crate) async fn write_values(
        &self,
        entity: EntityRef,
        change: ValuesChange<'_>,
        mode: WriteMode,
    ) -> Result<Written<EntityValues>> {
        let mut tx = self.begin_fenced(mode).await?;
        let category_id =
            B::entity_category(&mut tx, entity)
                .await?
                .ok_or(StorageError::NotFound {
                    what: entity.kind.as_str(),
                    id: entity.id,
                })?;
        let authoritative = mode.authoritative();
        let parts = schema_parts::<B>(&mut tx, authoritative, category_id).await?;
        let schema = EffectiveSchema::resolve(&parts.chain, &parts.bindings, &parts.attributes);
        let (values, set, removed) = match change {
            ValuesChange::Replace(input) => {
                let values =
                    validate_replacement(&schema, input).map_err(StorageError::InvalidValues)?;
                // Every value either store reads back now and the new set lacks; what neither
                // can read (unreadable legacy rows, unknown document keys) is not a value.
                let mut removed: std::collections::BTreeSet<String> = schema
                    .attributes
                    .iter()
                    .map(|a| a.attribute.code.clone())
                    .collect();
                for store in [Store::Legacy, Store::Unified] {
                    if mode.writes(store) {
                        let current = match store {
                            Store::Legacy => B::legacy_values(&mut tx, entity).await?,
                            Store::Unified => B::unified_values(&mut tx, entity).await?,
                        };
                        removed.extend(current.unwrap_or_default().into_keys());
                    }
                }
                removed.retain(|code| !values.contains_key(code));
                (values.clone(), values, removed.into_iter().collect())
            }
            ValuesChange::Merge(input) => {
                let current = match authoritative {
                    Store::Legacy => B::legacy_values(&mut tx, entity).await?,
                    Store::Unified => B::unified_values(&mut tx, entity).await?,
                };
                let values = validate_patch(&schema, &current.unwrap_or_default(), input)
                    .map_err(StorageError::InvalidValues)?;
                let set: EntityValues = values
                    .iter()
                    .filter(|(code, _)| input.get(*code).is_some_and(|raw| !raw.is_null()))
                    .map(|(code, typed)| (code.clone(), typed.clone()))
                    .collect();
                let removed: Vec<String> = input
                    .iter()
                    .filter(|(_, raw)| raw.is_null())
                    .map(|(code, _)| code.clone())
                    .collect();
                (values, set, removed)
            }
        };
        if mode.writes(Store::Legacy) {
            B::legacy_apply_values(&mut tx, entity, &set, &removed, &schema).await?;
        }
        if mode.writes(Store::Unified) {
            if mode == WriteMode::Dual {
                B::unified_ensure_attributes(&mut tx, &schema, &set).await?;
            }
            B::unified_apply_values(&mut tx, entity, &set, &removed).await?;
        }
        let mut invalidations = vec![Invalidation::entity(entity)];
        if entity.kind == EntityKind::Listing {
            invalidations.push(Invalidation::Ranges {
                ids: parts.chain.clone(),
            });
        }
        finish::<B>(tx, &invalidations).await?;
        Ok(Written {
            data: values,
            invalidations,
        })
    }

    /// Creates an attribute. While legacy is written, the legacy sequence assigns the id and
    /// the unified definition keeps it; unified-only attributes get ids from 1,000,000.
    pub(crate) async fn create_attribute(
        &self,
        draft: AttributeDraft,
        mode: WriteMode,
    ) -> Result<Written<Attribute>> {
        let mut attribute = draft
            .into_attribute(0)
            .map_err(StorageError::InvalidValues)?;
        let mut tx = self.begin_fenced(mode).await?;
        ensure_code_free::<B>(&mut tx, mode, &attribute.code, 0).await?;
        attribute.id = if mode.writes(Store::Legacy) {
            B::legacy_insert_attribute(&mut tx, &attribute).await?
        } else {
            B::unified_next_id(&mut tx).await?
        };
        if mode.writes(Store::Unified) {
            let legacy_id = mode.writes(Store::Legacy).then_some(attribute.id);
            B::unified_upsert_attribute(&mut tx, &attribute, legacy_id).await?;
        }
        let invalidations = vec![Invalidation::Catalog];
        finish::<B>(tx, &invalidations).await?;
        Ok(Written {
            data: attribute,
            invalidations,
        })
    }

    /// Rewrites attribute `id`; every category whose schema includes it is invalidated.
    pub(crate) async fn update_attribute(
        &self,
        id: i64,
        draft: AttributeDraft,
        mode: WriteMode,
    ) -> Result<Written<Attribute>> {
        let attribute = draft
            .into_attribute(id)
            .map_err(StorageError::InvalidValues)?;
        let mut tx = self.begin_fenced(mode).await?;
        let old_code = B::attribute_code(&mut tx, mode.authoritative(), id)
            .await?
            .ok_or(StorageError::NotFound {
                what: "attribute",
                id,
            })?;
        ensure_code_free::<B>(&mut tx, mode, &attribute.code, id).await?;
        if mode.writes(Store::Legacy) {
            B::legacy_update_attribute(&mut tx, &attribute).await?;
        }
        if mode.writes(Store::Unified) {
            let legacy_id = mode.writes(Store::Legacy).then_some(id);
            B::unified_upsert_attribute(&mut tx, &attribute, legacy_id).await?;
        }
        let affected = B::categories_using_attribute(&mut tx, id).await?;
        let mut invalidations = vec![
            Invalidation::Catalog,
            Invalidation::Categories { ids: affected },
        ];
        if old_code != attribute.code {
            // Values are keyed by code: every entity holding this attribute now reads differently.
            invalidations.push(Invalidation::AllValues);
        }
        finish::<B>(tx, &invalidations).await?;
        Ok(Written {
            data: attribute,
            invalidations,
        })
    }

    /// Deletes attribute `id` with its bindings and values.
    pub(crate) async fn delete_attribute(&self, id: i64, mode: WriteMode) -> Result<Written<()>> {
        let mut tx = self.begin_fenced(mode).await?;
        B::attribute_code(&mut tx, mode.authoritative(), id)
            .await?
            .ok_or(StorageError::NotFound {
                what: "attribute",
                id,
            })?;
        let affected = B::categories_using_attribute(&mut tx, id).await?;
        for store in [Store::Legacy, Store::Unified] {
            if mode.writes(store) {
                B::delete_attribute(&mut tx, store, id).await?;
            }
        }
        let invalidations = vec![
            Invalidation::Catalog,
            Invalidation::Categories { ids: affected },
            Invalidation::AllValues,
            Invalidation::AllRanges,
        ];
        finish::<B>(tx, &invalidations).await?;
        Ok(Written {
            data: (),
            invalidations,
        })
    }

    /// Binds an attribute to a category, or changes the binding; the category and its
    /// descendants are invalidated.
    pub(crate) async fn put_binding(
        &self,
        category_id: i64,
        draft: BindingDraft,
        mode: WriteMode,
    ) -> Result<Written<CategoryBinding>> {
        let binding = draft.into_binding(category_id);
        let mut tx = self.begin_fenced(mode).await?;
        if !B::category_exists(&mut tx, category_id).await? {
            return Err(StorageError::NotFound {
                what: "category",
                id: category_id,
            });
        }
        let attribute_id = binding.attribute_id;
        B::attribute_code(&mut tx, mode.authoritative(), attribute_id)
            .await?
            .ok_or(StorageError::NotFound {
                what: "attribute",
                id: attribute_id,
            })?;
        if mode.writes(Store::Legacy) {
            B::upsert_binding(&mut tx, Store::Legacy, &binding).await?;
        }
        if mode.writes(Store::Unified) {
            if mode == WriteMode::Dual
                && B::attribute_code(&mut tx, Store::Unified, attribute_id)
                    .await?
                    .is_none()
            {
                // Not backfilled yet: the unified definition is copied from legacy first.
                let legacy = B::catalog(&mut tx, Store::Legacy).await?;
                if let Some(attribute) = legacy.iter().find(|a| a.id == attribute_id) {
                    B::unified_upsert_attribute(&mut tx, attribute, Some(attribute_id)).await?;
                }
            }
            B::upsert_binding(&mut tx, Store::Unified, &binding).await?;
        }
        let invalidations = vec![Invalidation::Categories {
            ids: B::category_subtree(&mut tx, category_id).await?,
        }];
        finish::<B>(tx, &invalidations).await?;
        Ok(Written {
            data: binding,
            invalidations,
        })
    }

    /// Removes a binding; the category and its descendants are invalidated.
    pub(crate) async fn delete_binding(
        &self,
        category_id: i64,
        attribute_id: i64,
        mode: WriteMode,
    ) -> Result<Written<()>> {
        let mut tx = self.begin_fenced(mode).await?;
        let mut removed_from_authoritative = 0;
        for store in [Store::Legacy, Store::Unified] {
            if mode.writes(store) {
                let removed = B::delete_binding(&mut tx, store, category_id, attribute_id).await?;
                if store == mode.authoritative() {
                    removed_from_authoritative = removed;
                }
            }
        }
        if removed_from_authoritative == 0 {
            return Err(StorageError::NotFound {
                what: "binding",
                id: attribute_id,
            });
        }
        let invalidations = vec![Invalidation::Categories {
            ids: B::category_subtree(&mut tx, category_id).await?,
        }];
        finish::<B>(tx, &invalidations).await?;
        Ok(Written {
            data: (),
            invalidations,
        })
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
        let mut tx = self.backend.begin_write().await?;
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
        let mut tx = self.backend.begin_write().await?;
        B::note_write_mode(&mut tx, mode).await?;
        Ok(tx.commit().await?)
    }

    pub(crate) async fn archived(&self) -> Result<bool> {
        let mut conn = self.backend.pool().acquire().await?;
        B::archived(&mut conn).await
    }

    pub(crate) async fn count_rows(&self, table: &'static str) -> Result<i64> {
        let mut conn = self.backend.pool().acquire().await?;
        B::count_rows(&mut conn, table).await
    }

    pub(crate) async fn stored_flags(&self) -> Result<Option<crate::flag_store::StoredFlags>> {
        let mut conn = self.backend.pool().acquire().await?;
        B::load_flags(&mut conn).await
    }

    pub(crate) async fn flag_audit(
        &self,
        limit: i64,
    ) -> Result<Vec<crate::flag_store::FlagAuditEntry>> {
        let mut conn = self.backend.pool().acquire().await?;
        B::flag_audit(&mut conn, limit).await
    }

    pub(crate) async fn migration_counts(&self) -> Result<crate::flag_store::MigrationCounts> {
        let mut conn = self.backend.pool().acquire().await?;
        B::migration_counts(&mut conn).await
    }

    /// Copies every legacy definition and binding to the unified tables (ids kept; upserts,
    /// so a second run changes nothing). Returns (definitions, bindings). Refused while
    /// unified holds writes legacy lacks: they would be overwritten with older data.
    pub(crate) async fn backfill_definitions(&self) -> Result<(usize, usize)> {
        let mut tx = self.backend.begin_write().await?;
        ensure_legacy_in_place::<B>(&mut tx).await?;
        B::fence(&mut tx).await?;
        ensure_backfill_allowed(&B::state_row(&mut tx).await?)?;
        let catalog = B::catalog(&mut tx, Store::Legacy).await?;
        for attribute in &catalog {
            let legacy_id =
                (attribute.id < crate::rows::VARIANT_AXIS_ID_OFFSET).then_some(attribute.id);
            B::unified_upsert_attribute(&mut tx, attribute, legacy_id).await?;
        }
        let bindings = B::legacy_bindings(&mut tx).await?;
        for binding in &bindings {
            B::upsert_binding(&mut tx, Store::Unified, binding).await?;
        }
        B::notify(&mut tx, &[Invalidation::Everything]).await?;
        tx.commit().await?;
        Ok((catalog.len(), bindings.len()))
    }

    /// The backfill checkpoint of one entity kind: the stored one, or a fresh pass with
    /// `restart`, when none is stored, or when the stored pass began before the current
    /// unified era (a write may have skipped unified since it began, so it proves nothing).
    pub(crate) async fn checkpoint(
        &self,
        kind: EntityKind,
        restart: bool,
    ) -> Result<crate::backfill::Checkpoint> {
        let mut conn = self.backend.pool().acquire().await?;
        let stored = B::load_checkpoint(&mut conn, kind.as_str()).await?;
        let state = B::state_row(&mut conn).await?;
        Ok(match stored {
            Some(checkpoint)
                if !restart
                    && (state.era_of_new_pass().is_none()
                        || checkpoint.era == state.era_of_new_pass()) =>
            {
                checkpoint
            }
            _ => crate::backfill::Checkpoint::fresh(kind.as_str(), state.era_of_new_pass()),
        })
    }

    /// Migrates the next batch of entities of `kind` after `checkpoint` in one transaction:
    /// each legacy value (a listing's row, a key of a B2C document) becomes a unified value
    /// or a quarantine entry with the reason, and the checkpoint moves on in the same
    /// transaction. Returns the new checkpoint. Refused while unified holds writes legacy
    /// lacks, and when a write may have skipped unified since the pass began.
    pub(crate) async fn backfill_batch(
        &self,
        kind: EntityKind,
        checkpoint: &crate::backfill::Checkpoint,
        limit: i64,
        catalog: &HashMap<String, Attribute>,
    ) -> Result<crate::backfill::Checkpoint> {
        let mut tx = self.backend.begin_write().await?;
        let checkpoint = checkpoint.clone();
        B::fence(&mut tx).await?;
        let state = B::state_row(&mut tx).await?;
        ensure_backfill_allowed(&state)?;
        if state.era_of_new_pass().is_some() && checkpoint.era != state.era_of_new_pass() {
            return Err(StorageError::Conflict(
                "a write may have reached only legacy since this backfill pass began (dual-write was off in between): \
                 run backfill again; it starts a new pass"
                    .into(),
            ));
        }
        let ids = B::entity_ids_after(&mut tx, kind, checkpoint.last_id, limit, true).await?;
        let Some(&last_id) = ids.last() else {
            let done = crate::backfill::Checkpoint {
                completed: true,
                ..checkpoint
            };
            B::save_checkpoint(&mut tx, &done).await?;
            B::record_backfilled(&mut tx).await?;
            tx.commit().await?;
            return Ok(done);
        };
        let unified_ids = B::unified_ids(&mut tx).await?;
        let legacy = legacy_values_of::<B>(&mut tx, kind, &ids).await?;
        let mut values = Vec::new();
        let mut quarantined = Vec::new();
        for candidate in legacy {
            let refuse = |reason: String| crate::backfill::QuarantinedRow {
                entity_id: candidate.entity_id,
                attribute_code: candidate.code.clone(),
                raw_value: candidate.raw.clone(),
                reason,
            };
            let typed = match candidate.read {
                Err(reason) => {
                    quarantined.push(refuse(reason));
                    continue;
                }
                Ok(typed) => typed,
            };
            let Some(attribute) = catalog.get(&candidate.code) else {
                quarantined.push(refuse("no definition of this code".into()));
                continue;
            };
            let Some(mut typed) = typed else {
                quarantined.push(refuse(format!(
                    "no usable {} value in the row",
                    attribute.attribute_type
                )));
                continue;
            };
            domain::canonical_spellings(&attribute.options, &mut typed.value);
            if let Err(kind) = domain::validate::check_typed(attribute, &attribute.options, &typed)
            {
                quarantined.push(refuse(kind.to_string()));
                continue;
            }
            let Some(&unified_id) = unified_ids.get(&candidate.code) else {
                quarantined.push(refuse(
                    "no unified definition (run the definitions backfill)".into(),
                ));
                continue;
            };
            values.push((
                candidate.entity_id,
                unified_id,
                crate::rows::ValueColumns::unified(&typed),
            ));
        }
        B::unified_replace_batch(&mut tx, kind, &ids, &values).await?;
        B::quarantine_batch(&mut tx, kind, &ids, &quarantined).await?;
        let next = crate::backfill::Checkpoint {
            last_id,
            migrated: checkpoint.migrated + values.len() as i64,
            quarantined: checkpoint.quarantined + quarantined.len() as i64,
            completed: false,
            ..checkpoint
        };
        B::save_checkpoint(&mut tx, &next).await?;
        // Unified values of the batch changed, and with them the unified value ranges.
        let invalidations = [
            Invalidation::EntityRange {
                kind,
                first: ids[0],
                last: last_id,
            },
            Invalidation::AllRanges,
        ];
        B::notify(&mut tx, &invalidations).await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Compares every entity's values in both stores, kind by kind and page by page, and
    /// records the result.
    pub(crate) async fn verify(
        &self,
        page: i64,
        mut progress: impl FnMut(&crate::verify::VerifyReport),
    ) -> Result<crate::verify::VerifyReport> {
        let mut report = crate::verify::VerifyReport::default();
        // The era this run can vouch for is fixed when it begins: one that ends meanwhile is not
        // covered by it.
        let (era, legacy_options): (_, HashMap<String, Vec<domain::AttributeOption>>) = {
            let mut conn = self.backend.pool().acquire().await?;
            ensure_legacy_in_place::<B>(&mut conn).await?;
            let era = B::state_row(&mut conn).await?.era_to_verify();
            let options = B::catalog(&mut conn, Store::Legacy)
                .await?
                .into_iter()
                .map(|attribute| (attribute.code, attribute.options))
                .collect();
            (era, options)
        };
        for kind in EntityKind::ALL {
            let mut after = 0;
            loop {
                // One snapshot per page: a write committing between the two reads is not drift.
                let mut conn = self.backend.begin_snapshot().await?;
                let ids = B::entity_ids_after(&mut conn, kind, after, page, false).await?;
                let Some(&last) = ids.last() else { break };
                let (legacy, unified) = match kind {
                    EntityKind::Listing => (
                        B::listing_values_batch(&mut conn, Store::Legacy, &ids).await?,
                        B::listing_values_batch(&mut conn, Store::Unified, &ids).await?,
                    ),
                    _ => {
                        let (documents, vocabulary) =
                            B::legacy_documents(&mut conn, kind, &ids).await?;
                        let legacy = documents
                            .iter()
                            .map(|(id, document)| {
                                let decoded =
                                    crate::legacy::decode_document(kind, document, &vocabulary);
                                (*id, decoded.values)
                            })
                            .collect();
                        (
                            legacy,
                            B::unified_values_batch(&mut conn, kind, &ids).await?,
                        )
                    }
                };
                let mut quarantined: HashMap<i64, std::collections::HashSet<String>> =
                    HashMap::new();
                for (id, code) in B::quarantined_codes(&mut conn, kind, &ids).await? {
                    quarantined.entry(id).or_default().insert(code);
                }
                report.quarantined += quarantined
                    .values()
                    .map(|codes| codes.len() as i64)
                    .sum::<i64>();
                let none = std::collections::HashSet::new();
                let empty = EntityValues::new();
                for id in &ids {
                    // Legacy spellings compare as the option they certainly mean, as backfilled.
                    let mut legacy_values = legacy.get(id).cloned().unwrap_or_default();
                    for (code, typed) in legacy_values.iter_mut() {
                        if let Some(options) = legacy_options.get(code) {
                            domain::canonical_spellings(options, &mut typed.value);
                        }
                    }
                    report.compare(
                        EntityRef { kind, id: *id },
                        legacy_values,
                        unified.get(id).unwrap_or(&empty),
                        quarantined.get(id).unwrap_or(&none),
                    );
                }
                conn.commit().await?;
                progress(&report);
                after = last;
            }
        }
        let mut conn = self.backend.pool().acquire().await?;
        B::save_verify_run(&mut conn, &report).await?;
        if let Some(era) = era.filter(|_| report.is_clean()) {
            B::record_verified(&mut conn, era).await?;
        }
        Ok(report)
    }

    pub(crate) async fn last_verify(&self) -> Result<Option<crate::verify::LastVerify>> {
        let mut conn = self.backend.pool().acquire().await?;
        B::last_verify(&mut conn).await
    }

    /// Moves the legacy attribute tables into the archive, in one transaction, with a
    /// manifest of their counts and checksums. Refused unless the flags in force (`configured`
    /// when none are stored) mean the unified phase and a clean verify ran after legacy could
    /// last be written alone. The move is checked: different evidence after it rolls back.
    pub(crate) async fn archive(&self, configured: Flags) -> Result<crate::archive::Manifest> {
        let mut tx = self.backend.begin_write().await?;
        B::lock_migration_state(&mut tx).await?;
        let state = B::migration_state(&mut tx).await?;
        if state.archived {
            return Err(StorageError::Conflict(
                "the legacy tables are archived already".into(),
            ));
        }
        let flags = B::load_flags(&mut tx)
            .await?
            .map_or(configured, |stored| stored.flags);
        let phase = flags.check(&state).map_err(StorageError::Guardrail)?;
        if phase != Phase::Unified {
            return Err(StorageError::Conflict(format!(
                "archiving needs the unified phase (dual-write off, every read unified, no fallback); \
                 the flags in force mean '{}'",
                phase_name(phase)
            )));
        }
        if !B::verified_since_legacy_writes(&mut tx).await? {
            return Err(StorageError::Conflict(
                "no clean verify since legacy was last written: run verify first".into(),
            ));
        }
        let before = B::archive_evidence(&mut tx, false).await?;
        B::move_legacy_tables(&mut tx, true).await?;
        let after = B::archive_evidence(&mut tx, true).await?;
        ensure_same_evidence(&before, &after, "archiving")?;
        B::save_manifest(&mut tx, "archive", phase_name(phase), &before).await?;
        let manifest = B::last_manifest(&mut tx).await?;
        B::notify(&mut tx, &[Invalidation::Everything]).await?;
        B::notify_state_changed(&mut tx).await?;
        tx.commit().await?;
        manifest.ok_or_else(|| StorageError::CorruptData("the archive manifest vanished".into()))
    }

    /// Moves the archived legacy tables back, in one transaction, with a manifest. Returns it
    /// and whether the archive still held what the last archive manifest recorded. Legacy is
    /// as it was when archived: after unified-only writes, `sync-legacy` brings it up to date
    /// (the guardrails keep reads off legacy until then).
    pub(crate) async fn restore_archive(
        &self,
        configured: Flags,
    ) -> Result<(crate::archive::Manifest, bool)> {
        let mut tx = self.backend.begin_write().await?;
        B::lock_migration_state(&mut tx).await?;
        let state = B::migration_state(&mut tx).await?;
        if !state.archived {
            return Err(StorageError::Conflict(
                "nothing to restore: the legacy tables are not archived".into(),
            ));
        }
        let archived = B::archive_evidence(&mut tx, true).await?;
        let recorded = B::last_manifest(&mut tx).await?;
        let unchanged = recorded
            .as_ref()
            .is_some_and(|manifest| manifest.action == "archive" && manifest.tables == archived);
        B::move_legacy_tables(&mut tx, false).await?;
        let restored = B::archive_evidence(&mut tx, false).await?;
        ensure_same_evidence(&archived, &restored, "restoring")?;
        let flags = B::load_flags(&mut tx)
            .await?
            .map_or(configured, |stored| stored.flags);
        let phase = flags
            .check(&B::migration_state(&mut tx).await?)
            .map_or("none", phase_name);
        B::save_manifest(&mut tx, "restore", phase, &restored).await?;
        let manifest = B::last_manifest(&mut tx).await?;
        B::notify(&mut tx, &[Invalidation::Everything]).await?;
        B::notify_state_changed(&mut tx).await?;
        tx.commit().await?;
        let manifest = manifest
            .ok_or_else(|| StorageError::CorruptData("the restore manifest vanished".into()))?;
        Ok((manifest, unchanged))
    }

    pub(crate) async fn backfill_progress(&self) -> Result<Vec<crate::backfill::Progress>> {
        let mut conn = self.backend.pool().acquire().await?;
        B::backfill_progress(&mut conn).await
    }

    pub(crate) async fn analyze_unified_values(&self) -> Result<()> {
        let mut conn = self.backend.pool().acquire().await?;
        B::analyze_unified_values(&mut conn).await
    }

    pub(crate) async fn quarantine_by_reason(
        &self,
        limit: i64,
    ) -> Result<Vec<crate::backfill::QuarantineCount>> {
        let mut conn = self.backend.pool().acquire().await?;
        B::quarantine_by_reason(&mut conn, limit).await
    }

    pub(crate) async fn orphaned_values(&self) -> Result<i64> {
        let mut conn = self.backend.pool().acquire().await?;
        B::orphaned_values(&mut conn).await
    }

    pub(crate) async fn last_manifest(&self) -> Result<Option<crate::archive::Manifest>> {
        let mut conn = self.backend.pool().acquire().await?;
        B::last_manifest(&mut conn).await
    }

    pub(crate) async fn has_legacy_definitions(&self) -> Result<bool> {
        let mut conn = self.backend.pool().acquire().await?;
        if B::migration_state(&mut conn).await?.archived {
            return Ok(true);
        }
        Ok(B::count_legacy_definitions(&mut conn).await? > 0)
    }

    /// Loads a dataset in legacy form in one transaction.
    pub(crate) async fn seed_legacy(&self, dataset: &crate::demo::Dataset) -> Result<()> {
        let mut tx = self.backend.begin_write().await?;
        B::seed_legacy(&mut tx, dataset).await?;
        Ok(tx.commit().await?)
    }

    /// Loads a dataset's definitions, bindings and values in unified form in one transaction.
    pub(crate) async fn seed_unified(&self, dataset: &crate::demo::Dataset) -> Result<()> {
        let mut tx = self.backend.begin_write().await?;
        B::seed_unified(&mut tx, dataset).await?;
        Ok(tx.commit().await?)
    }

    pub(crate) async fn migration_state(&self) -> Result<MigrationState> {
        let mut conn = self.backend.pool().acquire().await?;
        B::migration_state(&mut conn).await
    }

    async fn schema_in(&self, store: Store, category_id: i64) -> Result<EffectiveSchema> {
        let mut conn = self.backend.pool().acquire().await?;
        let parts = schema_parts::<B>(&mut conn, store, category_id).await?;
        if parts.chain.is_empty() {
            return Err(StorageError::NotFound {
                what: "category",
                id: category_id,
            });
        }
        Ok(EffectiveSchema::resolve(
            &parts.chain,
            &parts.bindings,
            &parts.attributes,
        ))
    }

    async fn values_in(&self, store: Store, entity: EntityRef) -> Result<EntityValues> {
        let mut conn = self.backend.pool().acquire().await?;
        let values = match store {
            Store::Legacy => B::legacy_values(&mut conn, entity).await?,
            Store::Unified => B::unified_values(&mut conn, entity).await?,
        };
        values.ok_or(StorageError::NotFound {
            what: entity.kind.as_str(),
            id: entity.id,
        })
    }

    /// Runs `read` on the routed store, falling back to legacy when allowed. "Not found" is
    /// an answer, not a failure: categories and entities are shared by both stores.
    async fn routed<T, F, Fut>(&self, route: ReadRoute, read: F) -> Result<Read<T>>
    where
        T: MaybeEmpty,
        F: Fn(Store) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if route.store == Store::Legacy {
            return Ok(Read {
                data: read(Store::Legacy).await?,
                served_by: ServedBy::Legacy,
            });
        }
        match read(Store::Unified).await {
            Ok(data) if !route.fallback || !data.is_empty() => Ok(Read {
                data,
                served_by: ServedBy::Unified,
            }),
            Ok(empty) => {
                let legacy = read(Store::Legacy).await?;
                Ok(if legacy.is_empty() {
                    Read {
                        data: empty,
                        served_by: ServedBy::Unified,
                    }
                } else {
                    Read {
                        data: legacy,
                        served_by: ServedBy::Fallback(FallbackReason::UnifiedEmpty),
                    }
                })
            }
            Err(err @ StorageError::NotFound { .. }) => Err(err),
            Err(err) if route.fallback => {
                tracing::warn!(error = ?err, "unified read failed; answered from legacy");
                let data = read(Store::Legacy).await?;
                Ok(Read {
                    data,
                    served_by: ServedBy::Fallback(FallbackReason::UnifiedError),
                })
            }
            Err(err) => Err(err),
        }
    }
}

/// Refuses a code another attribute already has in a store the write reaches.
async fn ensure_code_free<B: Backend>(
    conn: &mut Conn<B>,
    mode: WriteMode,
    code: &str,
    except_id: i64,
) -> Result<()> {
    for store in [Store::Legacy, Store::Unified] {
        if mode.writes(store) && B::code_taken(conn, store, code, except_id).await? {
            return Err(StorageError::Conflict(format!(
                "another attribute already has the code '{code}'"
            )));
        }
    }
    Ok(())
}

/// Ends a write: tells the replicas what to drop, commits.
async fn finish<B: Backend>(
    mut tx: sqlx::Transaction<'static, B::Db>,
    invalidations: &[Invalidation],
) -> Result<()> {
    B::notify(&mut tx, invalidations).await?;
    tx.commit().await?;
    Ok(())
}

async fn schema_parts<B: Backend>(
    conn: &mut Conn<B>,
    store: Store,
    category_id: i64,
) -> Result<SchemaParts> {
    match store {
        Store::Legacy => B::legacy_schema(conn, category_id).await,
        Store::Unified => B::unified_schema(conn, category_id).await,
    }
}

/// The name a phase goes by in the audit and the status.
/// One legacy value on its way to unified: the code it names, its raw form for a quarantine
/// entry, and what could be read of it (`Ok(None)`: a row with no usable value; `Err`: a
/// document key that names nothing readable, with the reason).
struct LegacyCandidate {
    entity_id: i64,
    code: String,
    raw: String,
    read: std::result::Result<Option<domain::TypedValue>, String>,
}

/// The legacy values of these entities, one candidate per legacy row or document key.
async fn legacy_values_of<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
) -> Result<Vec<LegacyCandidate>> {
    if kind == EntityKind::Listing {
        let rows = B::legacy_listing_rows(conn, ids).await?;
        return Ok(rows
            .into_iter()
            .filter_map(|row| {
                let code = row.value.code.clone()?;
                Some(LegacyCandidate {
                    entity_id: row.entity_id,
                    raw: row.value.raw_text(),
                    read: Ok(row.value.typed_value().map(|(_, typed)| typed)),
                    code,
                })
            })
            .collect());
    }
    let (documents, vocabulary) = B::legacy_documents(conn, kind, ids).await?;
    let mut candidates = Vec::new();
    for (entity_id, document) in &documents {
        let decoded = crate::legacy::decode_document(kind, document, &vocabulary);
        candidates.extend(
            decoded
                .values
                .into_iter()
                .map(|(code, typed)| LegacyCandidate {
                    entity_id: *entity_id,
                    code,
                    raw: typed.value.to_json().to_string(),
                    read: Ok(Some(typed)),
                }),
        );
        candidates.extend(
            decoded
                .refused
                .into_iter()
                .map(|(key, raw, reason)| LegacyCandidate {
                    entity_id: *entity_id,
                    code: key,
                    raw,
                    read: Err(reason),
                }),
        );
    }
    Ok(candidates)
}

/// A backfill overwrites unified values with legacy ones: refused while unified holds writes
/// legacy lacks, or while the stored flags write only to unified.
fn ensure_backfill_allowed(state: &crate::evidence::StateRow) -> Result<()> {
    if state.pending_sync {
        return Err(StorageError::Conflict(
            "writes have reached only the unified store since the last reverse sync: a backfill would \
             overwrite them with older legacy values; run sync-legacy first (with dual-write on)"
                .into(),
        ));
    }
    if state.stored_write_mode() == Some(WriteMode::UnifiedOnly) {
        return Err(StorageError::Conflict(
            "the flags in force write only to the unified store: a backfill would overwrite those writes \
             with legacy values; turn dual-write on first"
                .into(),
        ));
    }
    Ok(())
}

/// Operations on the legacy tables need them out of the archive.
pub(crate) async fn ensure_legacy_in_place<B: Backend>(conn: &mut Conn<B>) -> Result<()> {
    if B::migration_state(conn).await?.archived {
        return Err(StorageError::Conflict(
            "the legacy tables are archived: run restore-archive first".into(),
        ));
    }
    Ok(())
}

/// A move must carry every row unchanged; anything else rolls the move back.
fn ensure_same_evidence(
    before: &[crate::archive::TableEvidence],
    after: &[crate::archive::TableEvidence],
    what: &str,
) -> Result<()> {
    if before == after {
        Ok(())
    } else {
        Err(StorageError::CorruptData(format!(
            "{what} changed the tables' contents (before {before:?}, after {after:?}); nothing was moved"
        )))
    }
}

pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Legacy => "legacy",
        Phase::DualWrite => "dual_write",
        Phase::Canary => "canary",
        Phase::Unified => "unified",
        Phase::Archived => "archived",
    }
}
