//! Writes, routed by the flags and fenced by them: entity values (`PUT`, `PATCH`) and the admin
//! definitions and bindings, each in one transaction that reaches every store its write mode
//! names, or none.

use domain::{
    Attribute, AttributeDraft, BindingDraft, CategoryBinding, EffectiveSchema, EntityKind,
    EntityRef, EntityValues, validate_patch, validate_replacement,
};
use flags::{Store, WriteMode};

use crate::backend::{Backend, Conn};
use crate::error::{Resource, Result, StorageError};
use crate::invalidation::Invalidation;
use crate::router::{Router, ValueWriter, ValuesChange, Written, schema_parts};

impl<B: Backend> Router<B> {
    /// Opens a write's transaction under the flags it was decided with: records what a write
    /// in `mode` does to the evidence, then holds the migration state (so no flag change
    /// commits until this write does) and refuses a decision the stored flags no longer make.
    pub(crate) async fn begin_fenced(
        &self,
        mode: WriteMode,
    ) -> Result<sqlx::Transaction<'static, B::Db>> {
        let mut tx = self.begin_write().await?;
        crate::evidence::note_write(B::dialect(&mut tx), mode).await?;
        match crate::evidence::fence(B::dialect(&mut tx)).await? {
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
        writer: ValueWriter,
    ) -> Result<Written<EntityValues>> {
        let mut tx = self.begin_fenced(mode).await?;
        let category_id = crate::entity_values::category_locked(B::dialect(&mut tx), entity)
            .await?
            .ok_or(StorageError::NotFound {
                what: entity.kind.into(),
                id: entity.id,
            })?;
        if let ValueWriter::User(user) = writer
            && crate::ownership::entity_owner::<B>(&mut tx, entity).await? != Some(user)
        {
            return Err(StorageError::Forbidden(format!(
                "{} {} is not yours: only its owner writes its values",
                entity.kind.as_str(),
                entity.id
            )));
        }
        let authoritative = mode.authoritative();
        let mut parts = schema_parts::<B>(&mut tx, authoritative, category_id).await?;
        // While legacy is authoritative, the definitions only the marketplace's own unified
        // tables held have no home there: their bindings come from unified.
        let its_alone = if authoritative == Store::Legacy && mode.writes(Store::Unified) {
            crate::monolith::alone_bound_in::<B>(&mut tx, &parts.chain).await?
        } else {
            std::collections::HashSet::new()
        };
        if !its_alone.is_empty() {
            let unified = schema_parts::<B>(&mut tx, Store::Unified, category_id).await?;
            parts = crate::monolith::with_its_attributes(parts, unified, &its_alone);
        }
        let schema = EffectiveSchema::resolve(&parts.chain, &parts.bindings, &parts.attributes);
        // Legacy's readable values, read once: the change is judged against them, and the legacy
        // rewrite removes only rows it could read (what it cannot read stays, as it was).
        let legacy_current = if mode.writes(Store::Legacy) {
            crate::entity_values::read(B::dialect(&mut tx), Store::Legacy, entity).await?
        } else {
            None
        };
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
                if let Some(current) = &legacy_current {
                    removed.extend(current.keys().cloned());
                }
                if mode.writes(Store::Unified) {
                    let current =
                        crate::entity_values::read(B::dialect(&mut tx), Store::Unified, entity)
                            .await?;
                    removed.extend(current.unwrap_or_default().into_keys());
                }
                removed.retain(|code| !values.contains_key(code));
                (values.clone(), values, removed.into_iter().collect())
            }
            ValuesChange::Merge(input) => {
                let mut current = match authoritative {
                    Store::Legacy => legacy_current.clone(),
                    Store::Unified => {
                        crate::entity_values::read(B::dialect(&mut tx), Store::Unified, entity)
                            .await?
                    }
                };
                // Values of the marketplace's own definitions live in unified alone.
                if !its_alone.is_empty()
                    && let Some(unified) =
                        crate::entity_values::read(B::dialect(&mut tx), Store::Unified, entity)
                            .await?
                {
                    let homeless: std::collections::HashSet<&str> = schema
                        .attributes
                        .iter()
                        .filter(|a| its_alone.contains(&a.attribute.id))
                        .map(|a| a.attribute.code.as_str())
                        .collect();
                    let current = current.get_or_insert_with(EntityValues::new);
                    for (code, typed) in unified {
                        if homeless.contains(code.as_str()) {
                            current.insert(code, typed);
                        }
                    }
                }
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
            let homeless: std::collections::HashSet<&str> = schema
                .attributes
                .iter()
                .filter(|a| its_alone.contains(&a.attribute.id))
                .map(|a| a.attribute.code.as_str())
                .collect();
            let legacy_set: EntityValues = set
                .iter()
                .filter(|(code, _)| !homeless.contains(code.as_str()))
                .map(|(code, typed)| (code.clone(), typed.clone()))
                .collect();
            let legacy_removed: Vec<String> = removed
                .iter()
                .filter(|code| !homeless.contains(code.as_str()))
                .cloned()
                .collect();
            crate::entity_values::legacy_apply(
                B::dialect(&mut tx),
                entity,
                &legacy_set,
                &legacy_removed,
                legacy_current.as_ref(),
                &schema,
            )
            .await?;
        }
        if mode.writes(Store::Unified) {
            let undefined =
                crate::unified_values::replace(B::dialect(&mut tx), entity, &set, &removed).await?;
            // A dual write copies legacy's definitions unified lacks at their first value (the
            // round trip a check before every write would cost, spent only when one lacks).
            if let Some(code) = undefined.first() {
                if mode != WriteMode::Dual {
                    return Err(crate::unified_values::undefined(code));
                }
                let retry: EntityValues = set
                    .iter()
                    .filter(|(code, _)| undefined.contains(code))
                    .map(|(code, typed)| (code.clone(), typed.clone()))
                    .collect();
                crate::definitions::unified_ensure(B::dialect(&mut tx), &schema, &retry).await?;
                crate::unified_values::replace_defined(B::dialect(&mut tx), entity, &retry, &[])
                    .await?;
            }
        }
        // The user's word replaces what the quarantine held for these codes: in legacy the
        // value is replaced or gone, and a later sync must not keep a value they deleted.
        let written: Vec<&str> = set
            .keys()
            .chain(removed.iter())
            .map(String::as_str)
            .collect();
        crate::quarantine::forget_written::<B>(&mut tx, entity, &written).await?;
        // The marketplace's own v2 readers (and a rollback to them) see what was written.
        crate::monolith::mirror_values::<B>(&mut tx, entity, &set, &removed).await?;
        let mut invalidations = vec![Invalidation::entity(entity)];
        if entity.kind == EntityKind::Listing {
            invalidations.push(Invalidation::Ranges {
                ids: parts.chain.clone(),
            });
        }
        // Downstream consumers (the search indexer) and the other replicas' caches hear of it,
        // once it commits.
        crate::capture::record_service_change::<B>(&mut tx, entity, &invalidations).await?;
        tx.commit().await?;
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
        if !draft.remap_options.is_empty() {
            return Err(StorageError::InvalidValues(vec![domain::FieldError::new(
                "remap_options",
                &domain::FieldErrorKind::InvalidValueShape(
                    "a new attribute has no values to re-map".into(),
                ),
            )]));
        }
        let mut attribute = draft
            .into_attribute(0)
            .map_err(StorageError::InvalidValues)?;
        // One creation time for both stores (legacy records no update time).
        let now = chrono::Utc::now();
        attribute.created_at = Some(now);
        attribute.updated_at = mode.writes(Store::Unified).then_some(now);
        let mut tx = self.begin_fenced(mode).await?;
        ensure_code_free::<B>(&mut tx, mode, &attribute.code, 0).await?;
        attribute.id = if mode.writes(Store::Legacy) {
            crate::definitions::legacy_insert(B::dialect(&mut tx), &attribute).await?
        } else {
            crate::definitions::unified_next_id(B::dialect(&mut tx)).await?
        };
        if mode.writes(Store::Unified) {
            let legacy_id = mode.writes(Store::Legacy).then_some(attribute.id);
            crate::definitions::unified_upsert(B::dialect(&mut tx), &attribute, legacy_id).await?;
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
        let remap = draft.remap_options.clone();
        let mut attribute = draft
            .into_attribute(id)
            .map_err(StorageError::InvalidValues)?;
        let mut tx = self.begin_fenced(mode).await?;
        let old_code =
            crate::definitions::attribute_code(B::dialect(&mut tx), mode.authoritative(), id)
                .await?
                .ok_or(StorageError::NotFound {
                    what: Resource::Attribute,
                    id,
                })?;
        ensure_code_free::<B>(&mut tx, mode, &attribute.code, id).await?;
        let mut moved = 0;
        if let Some(current) = crate::schema::catalog(B::dialect(&mut tx), mode.authoritative())
            .await?
            .into_iter()
            .find(|a| a.id == id)
        {
            moved = crate::option_use::settle_dropped_options::<B>(
                &mut tx, mode, &current, &attribute, &remap,
            )
            .await?;
            // Options the catalogue retired are not in an admin's draft: they stay retired.
            attribute.retired_options = current
                .retired_options
                .into_iter()
                .filter(|retired| !attribute.options.iter().any(|o| o.value == retired.value))
                .collect();
        }
        let mut invalidations = store_definition::<B>(&mut tx, mode, &attribute).await?;
        if old_code != attribute.code || moved > 0 {
            // Values are keyed by code, or moved to another option: every entity holding this
            // attribute may now read differently.
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
        crate::definitions::attribute_code(B::dialect(&mut tx), mode.authoritative(), id)
            .await?
            .ok_or(StorageError::NotFound {
                what: Resource::Attribute,
                id,
            })?;
        let affected = crate::affected::categories_using_attribute::<B>(&mut tx, id).await?;
        for store in [Store::Legacy, Store::Unified] {
            if mode.writes(store) {
                crate::definitions::delete(B::dialect(&mut tx), store, id).await?;
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
        let binding = draft
            .into_binding(category_id)
            .map_err(StorageError::InvalidValues)?;
        let mut tx = self.begin_fenced(mode).await?;
        if !crate::schema::category_exists(B::dialect(&mut tx), category_id).await? {
            return Err(StorageError::NotFound {
                what: Resource::Category,
                id: category_id,
            });
        }
        let attribute_id = binding.attribute_id;
        crate::definitions::attribute_code(B::dialect(&mut tx), mode.authoritative(), attribute_id)
            .await?
            .ok_or(StorageError::NotFound {
                what: Resource::Attribute,
                id: attribute_id,
            })?;
        if mode.writes(Store::Legacy) {
            crate::definitions::upsert_binding(B::dialect(&mut tx), Store::Legacy, &binding)
                .await?;
        }
        if mode.writes(Store::Unified) {
            if mode == WriteMode::Dual
                && crate::definitions::attribute_code(
                    B::dialect(&mut tx),
                    Store::Unified,
                    attribute_id,
                )
                .await?
                .is_none()
            {
                // Not backfilled yet: the unified definition is copied from legacy first.
                let legacy = crate::schema::catalog(B::dialect(&mut tx), Store::Legacy).await?;
                if let Some(attribute) = legacy.iter().find(|a| a.id == attribute_id) {
                    crate::definitions::unified_upsert(
                        B::dialect(&mut tx),
                        attribute,
                        Some(attribute_id),
                    )
                    .await?;
                }
            }
            crate::definitions::upsert_binding(B::dialect(&mut tx), Store::Unified, &binding)
                .await?;
        }
        let invalidations = vec![Invalidation::Categories {
            ids: crate::schema::category_subtree(B::dialect(&mut tx), category_id).await?,
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
                let removed = crate::definitions::delete_binding(
                    B::dialect(&mut tx),
                    store,
                    category_id,
                    attribute_id,
                )
                .await?;
                if store == mode.authoritative() {
                    removed_from_authoritative = removed;
                }
            }
        }
        if removed_from_authoritative == 0 {
            return Err(StorageError::NotFound {
                what: Resource::Binding,
                id: attribute_id,
            });
        }
        let invalidations = vec![Invalidation::Categories {
            ids: crate::schema::category_subtree(B::dialect(&mut tx), category_id).await?,
        }];
        finish::<B>(tx, &invalidations).await?;
        Ok(Written {
            data: (),
            invalidations,
        })
    }
}

/// Rewrites an existing definition in every store `mode` writes; returns what it made stale
/// (the catalog and every category whose schema includes it).
pub(crate) async fn store_definition<B: Backend>(
    conn: &mut Conn<B>,
    mode: WriteMode,
    attribute: &Attribute,
) -> Result<Vec<Invalidation>> {
    if mode.writes(Store::Legacy) {
        crate::definitions::legacy_update(B::dialect(conn), attribute).await?;
    }
    if mode.writes(Store::Unified) {
        let legacy_id = mode.writes(Store::Legacy).then_some(attribute.id);
        crate::definitions::unified_upsert(B::dialect(conn), attribute, legacy_id).await?;
    }
    Ok(vec![
        Invalidation::Catalog,
        Invalidation::Categories {
            ids: crate::affected::categories_using_attribute::<B>(conn, attribute.id).await?,
        },
    ])
}

/// Refuses a code another attribute already has in a store the write reaches.
async fn ensure_code_free<B: Backend>(
    conn: &mut Conn<B>,
    mode: WriteMode,
    code: &str,
    except_id: i64,
) -> Result<()> {
    for store in [Store::Legacy, Store::Unified] {
        if mode.writes(store)
            && crate::definitions::code_taken(B::dialect(conn), store, code, except_id).await?
        {
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
    crate::invalidation::notify(B::dialect(&mut tx), invalidations).await?;
    tx.commit().await?;
    Ok(())
}
