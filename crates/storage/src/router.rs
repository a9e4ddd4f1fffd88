//! Routing of reads and writes between the legacy and unified stores — written once, above
//! the backends. The router opens and commits every write transaction itself, so a
//! dual-write lands in both stores or in neither.

use std::future::Future;

use domain::{EffectiveSchema, EntityRef, EntityValues, validate_replacement};
use flags::{MigrationState, Store, WriteMode};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::backend::{Backend, Conn};
use crate::error::{Result, StorageError};
use crate::rows::SchemaParts;

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

#[derive(Debug)]
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

    /// Replaces all values of an entity after validating them against the effective schema
    /// of its category, in the stores `mode` names, in one transaction.
    pub(crate) async fn replace_values(
        &self,
        entity: EntityRef,
        input: &Map<String, Json>,
        mode: WriteMode,
    ) -> Result<EntityValues> {
        let mut tx = self.backend.begin_write().await?;
        let category_id =
            B::entity_category(&mut tx, entity)
                .await?
                .ok_or(StorageError::NotFound {
                    what: entity.kind.as_str(),
                    id: entity.id,
                })?;
        let parts = schema_parts::<B>(&mut tx, mode.authoritative(), category_id).await?;
        let schema = EffectiveSchema::resolve(&parts.chain, &parts.bindings, &parts.attributes);
        let values = validate_replacement(&schema, input).map_err(StorageError::InvalidValues)?;
        if mode.writes(Store::Legacy) {
            B::legacy_replace_values(&mut tx, entity, &values, &schema).await?;
        }
        if mode.writes(Store::Unified) {
            if mode == WriteMode::Dual {
                B::unified_ensure_attributes(&mut tx, &schema, &values).await?;
            }
            B::unified_replace_values(&mut tx, entity, &values).await?;
        }
        if mode == WriteMode::UnifiedOnly {
            B::record_unified_only_write(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(values)
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
