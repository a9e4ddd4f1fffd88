//! The router above the backends, written once: the routed reads (with fallback) live here;
//! each operation that writes lives in the module of its concern — `writes`, `backfill`,
//! `verify`, `sync`, `archive`, `flag_store` — as an `impl Router` of its own. The router opens
//! and commits every write transaction itself, so a dual-write lands in both stores or in neither.

use std::collections::HashMap;
use std::future::Future;

use domain::{Attribute, EffectiveSchema, EntityRef, EntityValues};
use flags::{FallbackReason, MigrationState, ServedBy, Store};
use serde_json::{Map, Value as Json};

use crate::backend::{Backend, Conn};
use crate::dialect::on_dialect;
use crate::error::{Resource, Result, StorageError};
use crate::freshness::ReadScope;
use crate::invalidation::Invalidation;
use crate::replicas::PrimaryRead;
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

/// Who writes an entity's values: a backend service (any entity), or a marketplace user (only
/// the entities they own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueWriter {
    Service,
    User(i64),
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
    breaker: std::sync::Arc<crate::breaker::Breaker>,
}

impl<B: Backend> Router<B> {
    pub(crate) fn new(backend: B) -> Self {
        Self {
            backend,
            breaker: std::sync::Arc::new(crate::breaker::Breaker::new()),
        }
    }

    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// A connection of the pool for statements outside an explicit transaction, or at once
    /// [`StorageError::DatabaseUnreachable`] while the database is known to refuse them.
    /// Behind a transaction pooler it is a transaction (see `pooler::Pooled`): one that
    /// writes must [`Session::commit`].
    pub(crate) async fn acquire(&self) -> Result<Session<B::Db>> {
        let pool = self.backend.pool();
        self.breaker
            .acquire(|| pool.size(), async {
                Ok(match self.backend.pooled() {
                    Some(pooled) => {
                        Session::Transaction(pool.begin_with(pooled.write.clone()).await?)
                    }
                    None => Session::Connection(pool.acquire().await?),
                })
            })
            .await
    }

    /// Runs `read` on a read connection: a read replica's when one is fresh enough for
    /// `scope` (see `freshness`), else the primary's, behind the breaker. A replica that fails
    /// the read is taken out and the primary answers it.
    async fn on_read_connection<T>(
        &self,
        scope: ReadScope<'_>,
        read: impl AsyncFn(&mut Conn<B>) -> Result<T>,
    ) -> Result<T> {
        let backend = &self.backend;
        if let Some(replicas) = backend.replicas() {
            let why = match replicas.choose(replicas.freshness.required(scope)) {
                Ok(replica) => match backend.acquire_replica(replica).await {
                    Ok(mut connection) => {
                        let outcome = self.read_on(&mut connection, &read).await;
                        B::release_read(connection, &outcome);
                        match outcome {
                            Err(err) if crate::read_pool::broke_the_connection(&err) => {
                                replicas.read_failed(replica, &err);
                                PrimaryRead::ReplicaFailed
                            }
                            outcome => return outcome,
                        }
                    }
                    Err(err @ StorageError::Saturated) => return Err(err),
                    Err(err) => {
                        replicas.read_failed(replica, &err);
                        PrimaryRead::ReplicaFailed
                    }
                },
                Err(why) => why,
            };
            replicas.count_primary_read(why);
        }
        let mut connection = self
            .breaker
            .acquire(|| backend.read_connections(), backend.acquire_read())
            .await?;
        let outcome = self.read_on(&mut connection, &read).await;
        B::release_read(connection, &outcome);
        outcome
    }

    /// Runs `read` on `connection`, inside a read-only transaction behind a pooler.
    async fn read_on<T>(
        &self,
        connection: &mut Conn<B>,
        read: &impl AsyncFn(&mut Conn<B>) -> Result<T>,
    ) -> Result<T> {
        let Some(pooled) = self.backend.pooled() else {
            return read(connection).await;
        };
        let mut tx = sqlx::Connection::begin_with(connection, pooled.read.clone()).await?;
        let outcome = read(&mut tx).await;
        match &outcome {
            Ok(_) => tx.commit().await?,
            // Given back at once: an aborted transaction would hold the pooler's server.
            Err(_) => tx.rollback().await?,
        }
        outcome
    }

    /// A write transaction, behind the same breaker.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, B::Db>> {
        let pool = self.backend.pool();
        self.breaker
            .acquire(|| pool.size(), self.backend.begin_write())
            .await
    }

    /// A read snapshot, behind the same breaker.
    pub(crate) async fn begin_snapshot(&self) -> Result<sqlx::Transaction<'static, B::Db>> {
        let pool = self.backend.pool();
        self.breaker
            .acquire(|| pool.size(), self.backend.begin_snapshot())
            .await
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
        if route.store == Store::Unified
            && route.fallback
            && !self
                .quarantined_among(entity.kind, &[entity.id])
                .await
                .is_empty()
        {
            return Ok(Read {
                data: self.values_in(Store::Legacy, entity).await?,
                served_by: ServedBy::Fallback(FallbackReason::Quarantined),
            });
        }
        self.routed(route, |store| self.values_in(store, entity))
            .await
    }

    /// Which of these entities have quarantined values users see in legacy reads. A failed
    /// look-up finds none: the unified read that follows meets the same failure and falls back.
    async fn quarantined_among(
        &self,
        kind: domain::EntityKind,
        ids: &[i64],
    ) -> std::collections::HashSet<i64> {
        let scope = match (kind, ids) {
            (_, [id]) => ReadScope::Entity(EntityRef { kind, id: *id }),
            _ => ReadScope::Listings(ids),
        };
        self.on_read_connection(scope, async |conn| {
            crate::quarantine::entities_with_seen_values::<B>(conn, kind, ids).await
        })
        .await
        .unwrap_or_default()
    }

    /// Values of many listings; listings that do not exist are absent from the answer. With
    /// fallback, a listing the unified store has nothing for is answered from legacy.
    pub(crate) async fn listing_values_batch(
        &self,
        ids: &[i64],
        route: ReadRoute,
    ) -> Result<Read<HashMap<i64, EntityValues>>> {
        let read = |store| {
            self.on_read_connection(ReadScope::Listings(ids), async move |conn| {
                crate::batches::listing_values_batch(B::dialect(conn), store, ids).await
            })
        };
        if route.store == Store::Legacy {
            return Ok(Read {
                data: read(Store::Legacy).await?,
                served_by: ServedBy::Legacy,
            });
        }
        match read(Store::Unified).await {
            Ok(mut data) if route.fallback => {
                let quarantined = self
                    .quarantined_among(domain::EntityKind::Listing, ids)
                    .await;
                let empty: Vec<i64> = ids
                    .iter()
                    .copied()
                    .filter(|id| {
                        quarantined.contains(id) || data.get(id).is_none_or(|v| v.is_empty())
                    })
                    .collect();
                if empty.is_empty() {
                    return Ok(Read {
                        data,
                        served_by: ServedBy::Unified,
                    });
                }
                let legacy = self
                    .on_read_connection(ReadScope::Listings(&empty), async |conn| {
                        crate::batches::listing_values_batch(
                            B::dialect(conn),
                            Store::Legacy,
                            &empty,
                        )
                        .await
                    })
                    .await?;
                let mut served_by = ServedBy::Unified;
                for (id, values) in legacy.into_iter().filter(|(_, v)| !v.is_empty()) {
                    data.insert(id, values);
                    served_by = ServedBy::Fallback(if quarantined.contains(&id) {
                        FallbackReason::Quarantined
                    } else {
                        FallbackReason::UnifiedEmpty
                    });
                }
                Ok(Read { data, served_by })
            }
            Ok(data) => Ok(Read {
                data,
                served_by: ServedBy::Unified,
            }),
            Err(err) if route.fallback => {
                tracing::warn!(error = %crate::Logged(&err), "unified batch read failed; answered from legacy");
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
        self.routed(route, |store| {
            self.on_read_connection(ReadScope::Catalog, async move |conn| {
                crate::schema::catalog(B::dialect(conn), store).await
            })
        })
        .await
    }

    /// Ranges of number attributes over the listings of a category subtree.
    pub(crate) async fn ranges(
        &self,
        category_id: i64,
        route: ReadRoute,
    ) -> Result<Read<Vec<AttributeRange>>> {
        self.routed(route, |store| {
            self.on_read_connection(ReadScope::Ranges(category_id), async move |conn| {
                let ranges = crate::schema::ranges(B::dialect(conn), store, category_id).await?;
                if ranges.is_empty()
                    && !crate::schema::category_exists(B::dialect(conn), category_id).await?
                {
                    return Err(StorageError::NotFound {
                        what: Resource::Category,
                        id: category_id,
                    });
                }
                Ok(ranges)
            })
        })
        .await
    }

    /// The id of the category with this slug (the categories belong to the marketplace: both
    /// stores share them).
    pub(crate) async fn category_by_slug(&self, slug: &str) -> Result<Option<i64>> {
        self.on_read_connection(ReadScope::Shared, async |conn| {
            crate::schema::category_by_slug(B::dialect(conn), slug).await
        })
        .await
    }

    pub(crate) async fn archived(&self) -> Result<bool> {
        let mut conn = self.acquire().await?;
        crate::evidence::archived(B::dialect(&mut conn)).await
    }

    pub(crate) async fn count_rows(&self, table: &'static str) -> Result<i64> {
        let mut conn = self.acquire().await?;
        crate::stats::record_queries(1);
        Ok(on_dialect!(B::dialect(&mut conn), |c| {
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(c)
                .await?
        }))
    }

    pub(crate) async fn has_legacy_definitions(&self) -> Result<bool> {
        let mut conn = self.acquire().await?;
        if crate::evidence::migration_state(B::dialect(&mut conn))
            .await?
            .archived
        {
            return Ok(true);
        }
        let definitions: i64 = on_dialect!(B::dialect(&mut conn), |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM category_attributes")
                .fetch_one(c)
                .await?
        });
        Ok(definitions > 0)
    }

    /// Loads a dataset in legacy form in one transaction.
    pub(crate) async fn seed_legacy(&self, dataset: &crate::demo::Dataset) -> Result<()> {
        let mut tx = self.backend.begin_write().await?;
        crate::seed::legacy(B::dialect(&mut tx), dataset).await?;
        Ok(tx.commit().await?)
    }

    /// Loads a dataset's definitions, bindings and values in unified form in one transaction.
    pub(crate) async fn seed_unified(&self, dataset: &crate::demo::Dataset) -> Result<()> {
        let mut tx = self.backend.begin_write().await?;
        crate::seed::unified(B::dialect(&mut tx), dataset).await?;
        Ok(tx.commit().await?)
    }

    pub(crate) async fn migration_state(&self) -> Result<MigrationState> {
        let mut conn = self.acquire().await?;
        crate::evidence::migration_state(B::dialect(&mut conn)).await
    }

    async fn schema_in(&self, store: Store, category_id: i64) -> Result<EffectiveSchema> {
        let parts = self
            .on_read_connection(ReadScope::Category(category_id), async |conn| {
                schema_parts::<B>(conn, store, category_id).await
            })
            .await?;
        if parts.chain.is_empty() {
            return Err(StorageError::NotFound {
                what: Resource::Category,
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
        let values = self
            .on_read_connection(ReadScope::Entity(entity), async |conn| {
                crate::entity_values::read(B::dialect(conn), store, entity).await
            })
            .await?;
        values.ok_or(StorageError::NotFound {
            what: entity.kind.into(),
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
                tracing::warn!(error = %crate::Logged(&err), "unified read failed; answered from legacy");
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

pub(crate) async fn schema_parts<B: Backend>(
    conn: &mut Conn<B>,
    store: Store,
    category_id: i64,
) -> Result<SchemaParts> {
    crate::schema::schema(B::dialect(conn), store, category_id).await
}

/// Operations on the legacy tables need them out of the archive.
pub(crate) async fn ensure_legacy_in_place<B: Backend>(conn: &mut Conn<B>) -> Result<()> {
    if crate::evidence::migration_state(B::dialect(conn))
        .await?
        .archived
    {
        return Err(StorageError::Conflict(
            "the legacy tables are archived: run restore-archive first".into(),
        ));
    }
    Ok(())
}

/// A connection for statements outside an explicit transaction; see [`Router::acquire`].
pub(crate) enum Session<DB: sqlx::Database> {
    Connection(sqlx::pool::PoolConnection<DB>),
    Transaction(sqlx::Transaction<'static, DB>),
}

impl<DB: sqlx::Database> Session<DB> {
    /// Makes what the statements wrote last (a no-op outside a pooler's transaction).
    pub(crate) async fn commit(self) -> Result<()> {
        if let Session::Transaction(tx) = self {
            tx.commit().await?;
        }
        Ok(())
    }
}

impl<DB: sqlx::Database> std::ops::Deref for Session<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match self {
            Session::Connection(conn) => conn,
            Session::Transaction(tx) => tx,
        }
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for Session<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Session::Connection(conn) => conn,
            Session::Transaction(tx) => tx,
        }
    }
}
