//! The operations each backend provides. Every operation runs on a connection it is handed
//! (a pooled connection or an open transaction), so the router decides where transactions
//! begin and commit, and a dual-write is atomic by construction.

use std::future::Future;

use std::collections::HashMap;

use domain::{Attribute, CategoryBinding, EffectiveSchema, EntityRef, EntityValues};
use flags::Store;

use crate::demo::Dataset;
use crate::error::Result;
use crate::rows::{AttributeRange, SchemaParts};

/// Listings per multi-row insert when seeding (SQLite allows 32,766 parameters a statement).
pub(crate) const SEED_CHUNK: usize = 250;

pub(crate) type Conn<B> = <<B as Backend>::Db as sqlx::Database>::Connection;

pub(crate) trait Backend: Send + Sync + 'static {
    type Db: sqlx::Database;

    fn pool(&self) -> &sqlx::Pool<Self::Db>;

    /// The connection as the dialect it speaks (see `dialect`).
    fn dialect(conn: &mut Conn<Self>) -> crate::dialect::Dialect<'_>;

    /// A connection for the routed reads (the API's uncached reads): on PostgreSQL from a pool
    /// that sends nothing when a connection returns (see `read_pool`).
    type ReadConnection: std::ops::DerefMut<Target = Conn<Self>> + Send;

    fn acquire_read(&self) -> impl Future<Output = Result<Self::ReadConnection>> + Send;

    /// Returns a read connection after `outcome`: one that a failure may have broken is closed.
    fn release_read<T>(connection: Self::ReadConnection, outcome: &Result<T>);

    /// Read connections open now.
    fn read_connections(&self) -> u32;

    /// How transactions begin behind a transaction pooler, where every statement must run in
    /// one (see `postgres::Pooled`); `None` with a direct connection.
    fn pooled(&self) -> Option<&crate::postgres::Pooled> {
        None
    }

    /// The pool for migrations: a direct session connection (they hold an advisory lock).
    fn admin_pool(&self) -> &sqlx::Pool<Self::Db> {
        self.pool()
    }

    /// The read replicas, when configured.
    fn replicas(&self) -> Option<&std::sync::Arc<crate::replicas::ReplicaSet>> {
        None
    }

    /// A read connection to replica `replica` of [`Backend::replicas`].
    fn acquire_replica(
        &self,
        _replica: usize,
    ) -> impl Future<Output = Result<Self::ReadConnection>> + Send {
        async {
            Err(crate::StorageError::Configuration(
                "this database has no read replicas".into(),
            ))
        }
    }

    /// Connections open and idle, of every pool.
    fn connections(&self) -> (u32, usize) {
        (self.pool().size(), self.pool().num_idle())
    }

    /// Starts a transaction that will write. (SQLite takes the write lock up front, so a
    /// read-then-write transaction cannot fail to upgrade its lock.)
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>>> + Send;

    /// Applies the pending migrations; the versions applied.
    fn migrate(&self) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// Starts a read-only transaction whose reads all see one snapshot.
    fn begin_snapshot(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>>> + Send;

    /// Reverts the last `steps` applied migrations; returns their versions.
    fn migrate_down(&self, steps: usize) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// The embedded migrations, each with whether the database applied it.
    fn migrations(&self) -> impl Future<Output = Result<Vec<crate::MigrationInfo>>> + Send;

    /// The category an entity belongs to; `None` when the entity does not exist. Used by
    /// writes: PostgreSQL locks the entity's row until the transaction ends.
    fn entity_category(
        conn: &mut Conn<Self>,
        entity: EntityRef,
    ) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// The legacy definitions and bindings along the category's chain; an empty chain means
    /// the category does not exist.
    fn legacy_schema(
        conn: &mut Conn<Self>,
        category_id: i64,
    ) -> impl Future<Output = Result<SchemaParts>> + Send;

    fn unified_schema(
        conn: &mut Conn<Self>,
        category_id: i64,
    ) -> impl Future<Output = Result<SchemaParts>> + Send;

    /// `None` when the entity does not exist.
    fn legacy_values(
        conn: &mut Conn<Self>,
        entity: EntityRef,
    ) -> impl Future<Output = Result<Option<EntityValues>>> + Send;

    fn unified_values(
        conn: &mut Conn<Self>,
        entity: EntityRef,
    ) -> impl Future<Output = Result<Option<EntityValues>>> + Send;

    /// Writes `set` over the entity's legacy values and removes the readable values of
    /// `removed`; every other legacy value (unreadable rows, rows of attributes outside the
    /// schema, document keys that name nothing) stays as it is. `schema` is the legacy schema
    /// the values were validated against; it gives each code's legacy id.
    fn legacy_apply_values(
        conn: &mut Conn<Self>,
        entity: EntityRef,
        set: &EntityValues,
        removed: &[String],
        schema: &EffectiveSchema,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Creates the unified definitions of the schema's attributes that the unified table
    /// lacks, keeping their legacy ids, so a dual-write can land before the backfill ran.
    fn unified_ensure_attributes(
        conn: &mut Conn<Self>,
        schema: &EffectiveSchema,
        values: &EntityValues,
    ) -> impl Future<Output = Result<()>> + Send;

    /// (table, column) of every column of the legacy tables.
    fn legacy_columns(
        conn: &mut Conn<Self>,
    ) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;

    /// The columns of [`crate::sql::LATER_DEFINITION_COLUMNS`] this database lacks.
    fn missing_later_columns(
        conn: &mut Conn<Self>,
    ) -> impl Future<Output = Result<Vec<&'static str>>> + Send;

    /// Up to `limit` ids of existing entities of `kind` after `after` with quarantined values,
    /// in order; PostgreSQL locks their rows, as a backfill batch does.
    fn quarantined_entity_ids_after(
        conn: &mut Conn<Self>,
        kind: domain::EntityKind,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// Every category id.
    fn category_ids(
        conn: &mut Conn<Self>,
    ) -> impl Future<Output = Result<std::collections::HashSet<i64>>> + Send;

    /// Quarantines the legacy values of listings that no longer exist (the real schema has no
    /// foreign key to hold them back); returns how many.
    fn quarantine_orphan_listing_values(
        conn: &mut Conn<Self>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Rows of one of the service's own tables (a name from a closed list).
    fn count_rows(
        conn: &mut Conn<Self>,
        table: &'static str,
    ) -> impl Future<Output = Result<i64>> + Send;

    fn count_legacy_definitions(conn: &mut Conn<Self>) -> impl Future<Output = Result<i64>> + Send;

    /// Values of many listings in one statement; listings that do not exist are absent.
    fn listing_values_batch(
        conn: &mut Conn<Self>,
        store: Store,
        ids: &[i64],
    ) -> impl Future<Output = Result<HashMap<i64, EntityValues>>> + Send;

    /// Every definition of the store (legacy: C2C definitions and variant-only axes).
    fn catalog(
        conn: &mut Conn<Self>,
        store: Store,
    ) -> impl Future<Output = Result<Vec<Attribute>>> + Send;

    /// min/max/count of number attributes over the listings of the category's subtree.
    fn ranges(
        conn: &mut Conn<Self>,
        store: Store,
        category_id: i64,
    ) -> impl Future<Output = Result<Vec<AttributeRange>>> + Send;

    fn category_exists(
        conn: &mut Conn<Self>,
        category_id: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    fn category_by_slug(
        conn: &mut Conn<Self>,
        slug: &str,
    ) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// The category and all its descendants.
    fn category_subtree(
        conn: &mut Conn<Self>,
        category_id: i64,
    ) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// Whether another attribute (not `except_id`) has this code in the store.
    fn code_taken(
        conn: &mut Conn<Self>,
        store: Store,
        code: &str,
        except_id: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The code of attribute `id` in the store; `None` when it does not exist there.
    fn attribute_code(
        conn: &mut Conn<Self>,
        store: Store,
        id: i64,
    ) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Inserts a legacy definition (with its translations); the legacy sequence assigns the id.
    fn legacy_insert_attribute(
        conn: &mut Conn<Self>,
        attribute: &Attribute,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// Rewrites the legacy definition `attribute.id` and its translations.
    fn legacy_update_attribute(
        conn: &mut Conn<Self>,
        attribute: &Attribute,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The id of a new attribute that exists only in the unified store.
    fn unified_next_id(conn: &mut Conn<Self>) -> impl Future<Output = Result<i64>> + Send;

    fn unified_upsert_attribute(
        conn: &mut Conn<Self>,
        attribute: &Attribute,
        legacy_c2c_id: Option<i64>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deletes a definition with its bindings and values; the number of rows deleted.
    fn delete_attribute(
        conn: &mut Conn<Self>,
        store: Store,
        id: i64,
    ) -> impl Future<Output = Result<u64>> + Send;

    fn upsert_binding(
        conn: &mut Conn<Self>,
        store: Store,
        binding: &CategoryBinding,
    ) -> impl Future<Output = Result<()>> + Send;

    fn delete_binding(
        conn: &mut Conn<Self>,
        store: Store,
        category_id: i64,
        attribute_id: i64,
    ) -> impl Future<Output = Result<u64>> + Send;

    fn legacy_bindings(
        conn: &mut Conn<Self>,
    ) -> impl Future<Output = Result<Vec<CategoryBinding>>> + Send;

    /// Up to `limit` ids of entities of `kind` after `after`, in order. With `lock`,
    /// PostgreSQL locks their rows for the transaction, so a concurrent write of the same
    /// entity waits for the batch (or the batch for it) and neither overwrites the other with
    /// older data; verify reads without locking.
    fn entity_ids_after(
        conn: &mut Conn<Self>,
        kind: domain::EntityKind,
        after: i64,
        limit: i64,
        lock: bool,
    ) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// The B2C documents of these products or variants, and the definitions they may name.
    fn legacy_documents(
        conn: &mut Conn<Self>,
        kind: domain::EntityKind,
        ids: &[i64],
    ) -> impl Future<Output = Result<crate::legacy::Documents>> + Send;

    /// The unified values of these entities of `kind`.
    fn unified_values_batch(
        conn: &mut Conn<Self>,
        kind: domain::EntityKind,
        ids: &[i64],
    ) -> impl Future<Output = Result<HashMap<i64, EntityValues>>> + Send;

    /// Unified attribute ids by code.
    fn unified_ids(
        conn: &mut Conn<Self>,
    ) -> impl Future<Output = Result<HashMap<String, i64>>> + Send;

    /// Replaces the unified values of these entities with `values` (entity, attribute, columns).
    fn unified_replace_batch(
        conn: &mut Conn<Self>,
        kind: domain::EntityKind,
        ids: &[i64],
        values: &[(i64, i64, crate::rows::ValueColumns)],
    ) -> impl Future<Output = Result<()>> + Send;

    fn load_checkpoint(
        conn: &mut Conn<Self>,
        entity_type: &str,
    ) -> impl Future<Output = Result<Option<crate::backfill::Checkpoint>>> + Send;

    fn save_checkpoint(
        conn: &mut Conn<Self>,
        checkpoint: &crate::backfill::Checkpoint,
    ) -> impl Future<Output = Result<()>> + Send;

    /// (entity, code) of the quarantined legacy values of these entities.
    fn quarantined_codes(
        conn: &mut Conn<Self>,
        kind: domain::EntityKind,
        ids: &[i64],
    ) -> impl Future<Output = Result<Vec<(i64, String)>>> + Send;

    /// Unified bindings, in legacy's columns.
    fn unified_bindings(
        conn: &mut Conn<Self>,
    ) -> impl Future<Output = Result<Vec<CategoryBinding>>> + Send;

    /// Inserts a legacy definition keeping `attribute.id` (an attribute created unified-only).
    fn legacy_insert_attribute_with_id(
        conn: &mut Conn<Self>,
        attribute: &Attribute,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deletes the legacy listing rows `delete` names (listing, legacy attribute), then
    /// inserts `insert` (listing, legacy attribute, columns); every other row stays.
    fn legacy_merge_listing_rows(
        conn: &mut Conn<Self>,
        delete: &[(i64, i64)],
        insert: &[(i64, i64, crate::rows::ValueColumns)],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Replaces the B2C document of a product or variant.
    fn write_legacy_document(
        conn: &mut Conn<Self>,
        entity: EntityRef,
        document: &serde_json::Value,
    ) -> impl Future<Output = Result<()>> + Send;

    fn backfill_progress(
        conn: &mut Conn<Self>,
    ) -> impl Future<Output = Result<Vec<crate::backfill::Progress>>> + Send;

    /// Refreshes the planner's statistics of the unified values table (a bulk load outruns
    /// autovacuum, and plans made from an empty table's statistics scan it whole).
    fn analyze_unified_values(conn: &mut Conn<Self>) -> impl Future<Output = Result<()>> + Send;

    fn quarantine_by_reason(
        conn: &mut Conn<Self>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<crate::backfill::QuarantineCount>>> + Send;

    /// The id one of the `sample_id` statements finds, if any.
    fn sample_id(
        conn: &mut Conn<Self>,
        statement: &'static str,
    ) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// Registers `alias` for option `option` of `attribute`.
    fn insert_alias(
        conn: &mut Conn<Self>,
        attribute: &domain::Attribute,
        alias: &str,
        option: &str,
        actor: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Records a resolution of the quarantine.
    fn record_resolution(
        conn: &mut Conn<Self>,
        action: &str,
        attribute_code: &str,
        detail: &serde_json::Value,
        affected: i64,
        actor: &str,
    ) -> impl Future<Output = Result<crate::resolve::Resolution>> + Send;

    fn resolutions(
        conn: &mut Conn<Self>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<crate::resolve::Resolution>>> + Send;

    /// Moves the legacy values of attribute `from` of these listings to attribute `to`, except
    /// where a listing has a value of `to` already; returns the listings moved.
    fn move_listing_values(
        conn: &mut Conn<Self>,
        from: i64,
        to: i64,
        listings: &[i64],
    ) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// Loads a dataset in legacy form, with the defects of the real legacy data.
    fn seed_legacy(
        conn: &mut Conn<Self>,
        dataset: &Dataset,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Loads the same dataset's definitions, bindings and values in unified form (the
    /// categories and entities must already exist).
    fn seed_unified(
        conn: &mut Conn<Self>,
        dataset: &Dataset,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The body of [`Backend`] for one sqlx database. Both backends run the same Rust; what
/// differs between them is the SQL module `$sql` (aggregates and casts) and the few methods
/// the backend module writes by hand (`pool`, `begin_write`, `migrate`).
/// Appends `(id, id, …)` as bound parameters: the "one of these ids" of a built statement.
pub(crate) fn push_id_list<'args, DB>(query: &mut sqlx::QueryBuilder<'args, DB>, ids: &[i64])
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    query.push("(");
    let mut separated = query.separated(", ");
    for id in ids {
        separated.push_bind(*id);
    }
    separated.push_unseparated(")");
}

// Statements built with a variable number of ids run unprepared (`persistent(false)`): each
// list length would be a prepared statement of its own, and a cached generic plan made while
// a table was empty (a backfill's first batches) would scan the whole table forever after.
macro_rules! backend_operations {
    ($sql:ident) => {
        async fn entity_category(conn: &mut Conn<Self>, entity: EntityRef) -> Result<Option<i64>> {
            record_queries(1);
            let statement = match entity.kind {
                EntityKind::Listing => $sql::LISTING_CATEGORY,
                EntityKind::Product => $sql::PRODUCT_CATEGORY,
                EntityKind::ProductVariant => $sql::VARIANT_CATEGORY,
            };
            let category: Option<i32> = sqlx::query_scalar(statement)
                .bind(entity.id)
                .fetch_optional(conn)
                .await?;
            Ok(category.map(i64::from))
        }

        async fn legacy_schema(conn: &mut Conn<Self>, category_id: i64) -> Result<SchemaParts> {
            record_queries(1);
            let rows: Vec<rows::LegacySchemaRow> = sqlx::query_as($sql::LEGACY_SCHEMA)
                .bind(category_id)
                .fetch_all(conn)
                .await?;
            Ok(rows::legacy_schema_parts(&rows))
        }

        async fn unified_schema(conn: &mut Conn<Self>, category_id: i64) -> Result<SchemaParts> {
            record_queries(1);
            let rows: Vec<rows::UnifiedSchemaRow> = sqlx::query_as($sql::UNIFIED_SCHEMA)
                .bind(category_id)
                .fetch_all(conn)
                .await?;
            rows::unified_schema_parts(&rows)
        }

        async fn legacy_values(
            conn: &mut Conn<Self>,
            entity: EntityRef,
        ) -> Result<Option<EntityValues>> {
            record_queries(if entity.kind == EntityKind::Listing {
                1
            } else {
                2
            });
            match entity.kind {
                EntityKind::Listing => {
                    let mut rows: Vec<rows::ValueRow> = sqlx::query_as(sql::LEGACY_LISTING_VALUES)
                        .bind(entity.id)
                        .fetch_all(conn)
                        .await?;
                    for code in rows.iter_mut().filter_map(|row| row.code.as_mut()) {
                        domain::attribute::normalize_code_in_place(code);
                    }
                    Ok((!rows.is_empty()).then(|| rows::entity_values(rows)))
                }
                EntityKind::Product | EntityKind::ProductVariant => {
                    let statement = if entity.kind == EntityKind::Product {
                        sql::PRODUCT_DOCUMENT
                    } else {
                        sql::VARIANT_DOCUMENT
                    };
                    // The outer `None`: no such entity; the inner: a NULL document.
                    let document: Option<Option<sqlx::types::Json<serde_json::Value>>> =
                        sqlx::query_scalar(statement)
                            .bind(entity.id)
                            .fetch_optional(&mut *conn)
                            .await?;
                    let Some(document) = document else {
                        return Ok(None);
                    };
                    let vocabulary: Vec<crate::legacy::VocabularyRow> =
                        sqlx::query_as($sql::LEGACY_VOCABULARY)
                            .fetch_all(conn)
                            .await?;
                    let document = document.map_or(serde_json::Value::Null, |d| d.0);
                    Ok(Some(crate::legacy::document_values(
                        entity.kind,
                        &document,
                        &vocabulary,
                    )))
                }
            }
        }

        async fn unified_values(
            conn: &mut Conn<Self>,
            entity: EntityRef,
        ) -> Result<Option<EntityValues>> {
            record_queries(1);
            let statement = match entity.kind {
                EntityKind::Listing => sql::UNIFIED_LISTING_VALUES,
                EntityKind::Product => sql::UNIFIED_PRODUCT_VALUES,
                EntityKind::ProductVariant => sql::UNIFIED_VARIANT_VALUES,
            };
            let rows: Vec<rows::ValueRow> = sqlx::query_as(statement)
                .bind(entity.id)
                .bind(entity.kind.as_str())
                .fetch_all(conn)
                .await?;
            Ok((!rows.is_empty()).then(|| rows::entity_values(rows)))
        }

        async fn legacy_apply_values(
            conn: &mut Conn<Self>,
            entity: EntityRef,
            set: &EntityValues,
            removed: &[String],
            schema: &EffectiveSchema,
        ) -> Result<()> {
            let legacy_id = |code: &str| schema.get(code).map(|a| a.attribute.id);
            match entity.kind {
                EntityKind::Listing => {
                    let rows = crate::legacy::listing_rows(Self::dialect(&mut *conn), &[entity.id]).await?;
                    let delete: Vec<(i64, i64)> = rows
                        .iter()
                        .filter_map(|row| {
                            let code = row.value.code.as_deref()?;
                            let readable = row.value.typed_value().is_some();
                            let replaced = set.contains_key(code)
                                || (readable && removed.iter().any(|r| r == code));
                            if !replaced {
                                return None;
                            }
                            legacy_id(code).map(|attribute_id| (entity.id, attribute_id))
                        })
                        .collect();
                    let mut insert = Vec::with_capacity(set.len());
                    for (code, typed) in set {
                        let attribute_id = legacy_id(code).ok_or_else(|| {
                            StorageError::CorruptData(format!("'{code}' is not in the legacy schema"))
                        })?;
                        insert.push((entity.id, attribute_id, rows::ValueColumns::legacy(typed)));
                    }
                    Self::legacy_merge_listing_rows(conn, &delete, &insert).await
                }
                EntityKind::Product | EntityKind::ProductVariant => {
                    let (documents, vocabulary) =
                        Self::legacy_documents(&mut *conn, entity.kind, &[entity.id]).await?;
                    let current = documents.into_iter().next().map(|(_, document)| document);
                    let document = crate::legacy::merge_document(
                        entity.kind,
                        current.as_ref(),
                        &vocabulary,
                        set,
                        removed,
                        &std::collections::HashSet::new(),
                        legacy_id,
                        |code, value| {
                            if let Some(effective) = schema.get(code) {
                                domain::canonical_spellings(&effective.attribute.options, value);
                            }
                        },
                    )?;
                    Self::write_legacy_document(conn, entity, &document.document).await
                }
            }
        }

        async fn unified_ensure_attributes(
            conn: &mut Conn<Self>,
            schema: &EffectiveSchema,
            values: &EntityValues,
        ) -> Result<()> {
            for code in values.keys() {
                if let Some(effective) = schema.get(code) {
                    insert_unified_attribute(
                        &mut *conn,
                        &effective.attribute,
                        Some(effective.attribute.id),
                        None,
                    )
                    .await?;
                }
            }
            Ok(())
        }

        async fn legacy_columns(conn: &mut Conn<Self>) -> Result<Vec<(String, String)>> {
            record_queries(1);
            Ok(sqlx::query_as($sql::LEGACY_COLUMNS).fetch_all(conn).await?)
        }

        async fn missing_later_columns(conn: &mut Conn<Self>) -> Result<Vec<&'static str>> {
            record_queries(1);
            let present: Vec<String> =
                sqlx::query_scalar($sql::LATER_DEFINITION_COLUMNS_PRESENT).fetch_all(conn).await?;
            Ok(sql::LATER_DEFINITION_COLUMNS
                .iter()
                .map(|(column, _)| *column)
                .filter(|column| !present.iter().any(|p| p == column))
                .collect())
        }

        async fn quarantined_entity_ids_after(
            conn: &mut Conn<Self>,
            kind: domain::EntityKind,
            after: i64,
            limit: i64,
        ) -> Result<Vec<i64>> {
            record_queries(1);
            let statement = format!(
                "SELECT CAST(e.id AS BIGINT) FROM {} e WHERE e.id > $1 AND e.id IN
                    (SELECT q.entity_id FROM backfill_quarantine q WHERE q.entity_type = $2)
                 ORDER BY e.id LIMIT $3{}",
                sql::entity_table(kind),
                $sql::LOCK_ROWS
            );
            Ok(sqlx::query_scalar(&statement)
                .bind(after)
                .bind(kind.as_str())
                .bind(limit)
                .fetch_all(conn)
                .await?)
        }

        async fn category_ids(conn: &mut Conn<Self>) -> Result<std::collections::HashSet<i64>> {
            record_queries(1);
            let ids: Vec<i64> = sqlx::query_scalar(crate::backfill::CATEGORY_IDS).fetch_all(conn).await?;
            Ok(ids.into_iter().collect())
        }

        async fn quarantine_orphan_listing_values(conn: &mut Conn<Self>) -> Result<u64> {
            record_queries(1);
            Ok(sqlx::query(crate::backfill::QUARANTINE_ORPHAN_LISTING_VALUES)
                .execute(conn)
                .await?
                .rows_affected())
        }

        async fn count_rows(conn: &mut Conn<Self>, table: &'static str) -> Result<i64> {
            record_queries(1);
            Ok(sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(conn).await?)
        }

        async fn count_legacy_definitions(conn: &mut Conn<Self>) -> Result<i64> {
            Ok(sqlx::query_scalar(sql::COUNT_LEGACY_DEFINITIONS)
                .fetch_one(conn)
                .await?)
        }

        async fn listing_values_batch(
            conn: &mut Conn<Self>,
            store: Store,
            ids: &[i64],
        ) -> Result<HashMap<i64, EntityValues>> {
            record_queries(1);
            let statement = match store {
                Store::Legacy => $sql::LEGACY_LISTING_VALUES_BATCH,
                Store::Unified => $sql::UNIFIED_LISTING_VALUES_BATCH,
            };
            let rows: Vec<rows::BatchValueRow> = $sql::bind_ids(sqlx::query_as(statement), ids)
                .fetch_all(conn)
                .await?;
            Ok(rows::batch_values(rows, store == Store::Legacy))
        }

        async fn catalog(conn: &mut Conn<Self>, store: Store) -> Result<Vec<domain::Attribute>> {
            match store {
                Store::Legacy => {
                    record_queries(2);
                    let rows: Vec<rows::LegacySchemaRow> = sqlx::query_as($sql::LEGACY_CATALOG)
                        .fetch_all(&mut *conn)
                        .await?;
                    let mut catalog = rows::legacy_catalog(&rows);
                    let axes: Vec<rows::VariantAxisRow> = sqlx::query_as($sql::LEGACY_VARIANT_AXES)
                        .fetch_all(conn)
                        .await?;
                    catalog.extend(axes.iter().filter_map(rows::VariantAxisRow::attribute));
                    Ok(catalog)
                }
                Store::Unified => {
                    record_queries(1);
                    let rows: Vec<rows::UnifiedSchemaRow> =
                        sqlx::query_as($sql::UNIFIED_CATALOG).fetch_all(conn).await?;
                    rows::unified_catalog(&rows)
                }
            }
        }

        async fn ranges(
            conn: &mut Conn<Self>,
            store: Store,
            category_id: i64,
        ) -> Result<Vec<rows::AttributeRange>> {
            record_queries(1);
            let statement = match store {
                Store::Legacy => $sql::LEGACY_RANGES,
                Store::Unified => $sql::UNIFIED_RANGES,
            };
            let rows: Vec<rows::RangeRow> = sqlx::query_as(statement)
                .bind(category_id)
                .fetch_all(conn)
                .await?;
            Ok(rows::ranges(rows))
        }

        async fn category_exists(conn: &mut Conn<Self>, category_id: i64) -> Result<bool> {
            record_queries(1);
            let count: i64 = sqlx::query_scalar(sql::CATEGORY_EXISTS)
                .bind(category_id)
                .fetch_one(conn)
                .await?;
            Ok(count > 0)
        }

        async fn category_by_slug(conn: &mut Conn<Self>, slug: &str) -> Result<Option<i64>> {
            record_queries(1);
            let id: Option<i32> = sqlx::query_scalar(sql::CATEGORY_BY_SLUG)
                .bind(slug)
                .fetch_optional(conn)
                .await?;
            Ok(id.map(i64::from))
        }

        async fn category_subtree(conn: &mut Conn<Self>, category_id: i64) -> Result<Vec<i64>> {
            record_queries(1);
            let ids: Vec<i32> = sqlx::query_scalar(sql::CATEGORY_SUBTREE)
                .bind(category_id)
                .fetch_all(conn)
                .await?;
            Ok(ids.into_iter().map(i64::from).collect())
        }

        async fn code_taken(
            conn: &mut Conn<Self>,
            store: Store,
            code: &str,
            except_id: i64,
        ) -> Result<bool> {
            record_queries(1);
            let statement = match store {
                Store::Legacy => sql::LEGACY_CODE_TAKEN,
                Store::Unified => sql::UNIFIED_CODE_TAKEN,
            };
            let count: i64 = sqlx::query_scalar(statement)
                .bind(code)
                .bind(except_id)
                .fetch_one(conn)
                .await?;
            Ok(count > 0)
        }

        async fn attribute_code(
            conn: &mut Conn<Self>,
            store: Store,
            id: i64,
        ) -> Result<Option<String>> {
            record_queries(1);
            let statement = match store {
                Store::Legacy => sql::LEGACY_ATTRIBUTE_CODE,
                Store::Unified => sql::UNIFIED_ATTRIBUTE_CODE,
            };
            let code: Option<String> = sqlx::query_scalar(statement)
                .bind(id)
                .fetch_optional(conn)
                .await?;
            Ok(code.map(|c| domain::attribute::normalize_code(&c)))
        }

        async fn legacy_insert_attribute(
            conn: &mut Conn<Self>,
            attribute: &domain::Attribute,
        ) -> Result<i64> {
            let row = crate::legacy::encode_definition(attribute, false);
            let missing = Self::missing_later_columns(&mut *conn).await?;
            let statement = sql::without_columns(sql::INSERT_LEGACY_ATTRIBUTE_AUTO_ID, &missing);
            record_queries(1);
            let id: i32 = bind_legacy_definition(sqlx::query_scalar(&statement), &row)
            .fetch_one(&mut *conn)
            .await?;
            let stored = domain::Attribute {
                id: id.into(),
                ..attribute.clone()
            };
            keep_legacy_created_at(conn, &stored).await?;
            write_legacy_translations(conn, &stored).await?;
            Ok(id.into())
        }

        async fn legacy_update_attribute(
            conn: &mut Conn<Self>,
            attribute: &domain::Attribute,
        ) -> Result<()> {
            let row = crate::legacy::encode_definition(attribute, false);
            let missing = Self::missing_later_columns(&mut *conn).await?;
            let statement = sql::without_columns(sql::UPDATE_LEGACY_ATTRIBUTE, &missing);
            record_queries(1);
            bind_legacy_definition(sqlx::query(&statement), &row)
                .execute(&mut *conn)
                .await?;
            write_legacy_translations(conn, attribute).await
        }

        async fn unified_next_id(conn: &mut Conn<Self>) -> Result<i64> {
            record_queries(1);
            let id: i64 = sqlx::query_scalar(sql::NEXT_UNIFIED_ONLY_ID)
                .fetch_one(conn)
                .await?;
            Ok(id)
        }

        async fn unified_upsert_attribute(
            conn: &mut Conn<Self>,
            attribute: &domain::Attribute,
            legacy_c2c_id: Option<i64>,
        ) -> Result<()> {
            record_queries(1);
            bind_unified_definition(
                sqlx::query(sql::UPSERT_UNIFIED_ATTRIBUTE),
                attribute,
                legacy_c2c_id,
                None,
            )
            .execute(conn)
            .await?;
            Ok(())
        }

        async fn delete_attribute(conn: &mut Conn<Self>, store: Store, id: i64) -> Result<u64> {
            match store {
                Store::Legacy => {
                    record_queries(2);
                    sqlx::query(sql::DELETE_LEGACY_TRANSLATIONS)
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                    Ok(sqlx::query(sql::DELETE_LEGACY_ATTRIBUTE)
                        .bind(id)
                        .execute(conn)
                        .await?
                        .rows_affected())
                }
                Store::Unified => {
                    record_queries(1);
                    Ok(sqlx::query(sql::DELETE_UNIFIED_ATTRIBUTE)
                        .bind(id)
                        .execute(conn)
                        .await?
                        .rows_affected())
                }
            }
        }

        async fn upsert_binding(
            conn: &mut Conn<Self>,
            store: Store,
            binding: &domain::CategoryBinding,
        ) -> Result<()> {
            record_queries(1);
            match store {
                Store::Legacy => {
                    sqlx::query(sql::UPSERT_LEGACY_BINDING)
                        .bind(binding.category_id)
                        .bind(binding.attribute_id)
                        .bind(binding.is_enabled)
                        .bind(binding.is_required)
                        .bind(binding.sort_order)
                        .bind(&binding.custom_component)
                        .bind(binding.show_in_card)
                        .bind(binding.show_in_list)
                        .execute(conn)
                        .await?
                }
                Store::Unified => {
                    bind_unified_binding(sqlx::query(sql::UPSERT_UNIFIED_BINDING), binding)
                        .execute(conn)
                        .await?
                }
            };
            Ok(())
        }

        async fn delete_binding(
            conn: &mut Conn<Self>,
            store: Store,
            category_id: i64,
            attribute_id: i64,
        ) -> Result<u64> {
            record_queries(1);
            let statement = match store {
                Store::Legacy => sql::DELETE_LEGACY_BINDING,
                Store::Unified => sql::DELETE_UNIFIED_BINDING,
            };
            Ok(sqlx::query(statement)
                .bind(category_id)
                .bind(attribute_id)
                .execute(conn)
                .await?
                .rows_affected())
        }

        async fn legacy_bindings(conn: &mut Conn<Self>) -> Result<Vec<domain::CategoryBinding>> {
            record_queries(1);
            let rows: Vec<crate::backfill::LegacyBindingRow> =
                sqlx::query_as(crate::backfill::LEGACY_BINDINGS).fetch_all(conn).await?;
            Ok(rows.into_iter().map(crate::backfill::LegacyBindingRow::into_binding).collect())
        }

        async fn entity_ids_after(
            conn: &mut Conn<Self>,
            kind: domain::EntityKind,
            after: i64,
            limit: i64,
            lock: bool,
        ) -> Result<Vec<i64>> {
            record_queries(1);
            let statement = format!(
                // Ids are `integer` in older marketplace databases, `bigint` in newer ones.
                "SELECT CAST(id AS BIGINT) FROM {} WHERE id > $1 ORDER BY id LIMIT $2{}",
                sql::entity_table(kind),
                if lock { $sql::LOCK_ROWS } else { "" }
            );
            Ok(sqlx::query_scalar(&statement).bind(after).bind(limit).fetch_all(conn).await?)
        }

        async fn legacy_documents(
            conn: &mut Conn<Self>,
            kind: domain::EntityKind,
            ids: &[i64],
        ) -> Result<crate::legacy::Documents> {
            record_queries(2);
            let column = if kind == domain::EntityKind::Product { "attributes" } else { "variant_attributes" };
            let mut query = sqlx::QueryBuilder::<Self::Db>::new(format!(
                "SELECT CAST(id AS BIGINT), {column} FROM {} WHERE id IN ",
                sql::entity_table(kind)
            ));
            push_id_list(&mut query, ids);
            query.push(" ORDER BY id");
            // The real schema lets a document be NULL: it holds nothing.
            let documents: Vec<(i64, Option<sqlx::types::Json<serde_json::Value>>)> =
                query.build_query_as().persistent(false).fetch_all(&mut *conn).await?;
            let vocabulary: Vec<crate::legacy::VocabularyRow> =
                sqlx::query_as($sql::LEGACY_VOCABULARY).fetch_all(conn).await?;
            Ok((
                documents
                    .into_iter()
                    .map(|(id, document)| (id, document.map_or(serde_json::Value::Null, |d| d.0)))
                    .collect(),
                vocabulary,
            ))
        }

        async fn unified_values_batch(
            conn: &mut Conn<Self>,
            kind: domain::EntityKind,
            ids: &[i64],
        ) -> Result<HashMap<i64, EntityValues>> {
            record_queries(1);
            let mut query = sqlx::QueryBuilder::<Self::Db>::new(sql::UNIFIED_VALUES_OF_KIND);
            query.push_bind(kind.as_str()).push(" AND v.entity_id IN ");
            push_id_list(&mut query, ids);
            let rows: Vec<rows::BatchValueRow> = query.build_query_as().persistent(false).fetch_all(conn).await?;
            Ok(rows::batch_values(rows, false))
        }

        async fn unified_ids(conn: &mut Conn<Self>) -> Result<HashMap<String, i64>> {
            record_queries(1);
            let rows: Vec<(i64, String)> = sqlx::query_as(crate::backfill::UNIFIED_IDS).fetch_all(conn).await?;
            Ok(rows.into_iter().map(|(id, code)| (code, id)).collect())
        }

        async fn unified_replace_batch(
            conn: &mut Conn<Self>,
            kind: domain::EntityKind,
            ids: &[i64],
            values: &[(i64, i64, rows::ValueColumns)],
        ) -> Result<()> {
            record_queries(1);
            let mut delete = sqlx::QueryBuilder::<Self::Db>::new("DELETE FROM unified_attribute_values WHERE entity_type = ");
            delete.push_bind(kind.as_str()).push(" AND entity_id IN ");
            push_id_list(&mut delete, ids);
            delete.build().persistent(false).execute(&mut *conn).await?;
            $sql::insert_unified_rows(conn, kind, values).await?;
            Ok(())
        }

        async fn load_checkpoint(conn: &mut Conn<Self>, entity_type: &str) -> Result<Option<crate::backfill::Checkpoint>> {
            record_queries(1);
            Ok(sqlx::query_as(crate::backfill::LOAD_CHECKPOINT).bind(entity_type).fetch_optional(conn).await?)
        }

        async fn save_checkpoint(conn: &mut Conn<Self>, checkpoint: &crate::backfill::Checkpoint) -> Result<()> {
            record_queries(1);
            sqlx::query(crate::backfill::SAVE_CHECKPOINT)
                .bind(&checkpoint.entity_type)
                .bind(checkpoint.last_id)
                .bind(checkpoint.migrated)
                .bind(checkpoint.quarantined)
                .bind(checkpoint.completed)
                .bind(checkpoint.era)
                .execute(conn)
                .await?;
            Ok(())
        }


        async fn quarantined_codes(conn: &mut Conn<Self>, kind: domain::EntityKind, ids: &[i64]) -> Result<Vec<(i64, String)>> {
            record_queries(1);
            let mut query = sqlx::QueryBuilder::<Self::Db>::new(
                "SELECT entity_id, attribute_code FROM backfill_quarantine WHERE entity_type = ",
            );
            query.push_bind(kind.as_str()).push(" AND entity_id IN ");
            push_id_list(&mut query, ids);
            Ok(query.build_query_as().persistent(false).fetch_all(conn).await?)
        }

        async fn unified_bindings(conn: &mut Conn<Self>) -> Result<Vec<domain::CategoryBinding>> {
            record_queries(1);
            let rows: Vec<crate::backfill::LegacyBindingRow> =
                sqlx::query_as(crate::backfill::UNIFIED_BINDINGS_AS_LEGACY).fetch_all(conn).await?;
            Ok(rows.into_iter().map(crate::backfill::LegacyBindingRow::into_binding).collect())
        }

        async fn legacy_insert_attribute_with_id(conn: &mut Conn<Self>, attribute: &domain::Attribute) -> Result<()> {
            let row = crate::legacy::encode_definition(attribute, false);
            let missing = Self::missing_later_columns(&mut *conn).await?;
            let statement = sql::without_columns(sql::INSERT_LEGACY_ATTRIBUTE, &missing);
            record_queries(1);
            bind_legacy_definition(sqlx::query(&statement), &row).execute(&mut *conn).await?;
            keep_legacy_created_at(conn, attribute).await?;
            write_legacy_translations(conn, attribute).await
        }

        async fn legacy_merge_listing_rows(
            conn: &mut Conn<Self>,
            delete: &[(i64, i64)],
            insert: &[(i64, i64, rows::ValueColumns)],
        ) -> Result<()> {
            for chunk in delete.chunks(2_000) {
                record_queries(1);
                let mut statement = sqlx::QueryBuilder::<Self::Db>::new(
                    "DELETE FROM listing_attribute_values WHERE (listing_id, attribute_id) IN (",
                );
                statement.push_values(chunk, |mut row, (listing_id, attribute_id)| {
                    row.push_bind(*listing_id).push_bind(*attribute_id);
                });
                statement.push(")");
                statement.build().persistent(false).execute(&mut *conn).await?;
            }
            for chunk in insert.chunks(2_000) {
                record_queries(1);
                let mut statement = sqlx::QueryBuilder::<Self::Db>::new(
                    "INSERT INTO listing_attribute_values
                        (listing_id, attribute_id, text_value, numeric_value, boolean_value, json_value, unit, value_type) ",
                );
                statement.push_values(chunk, |mut row, (listing_id, attribute_id, columns)| {
                    row.push_bind(*listing_id).push_bind(*attribute_id).push_bind(&columns.text_value);
                    $sql::push_numeric(&mut row, &columns.numeric_value);
                    row.push_bind(columns.boolean_value)
                        .push_bind(columns.json_value.as_ref().map(sqlx::types::Json))
                        .push_bind(&columns.unit)
                        .push_bind(columns.legacy_value_type);
                });
                statement.build().persistent(false).execute(&mut *conn).await?;
            }
            Ok(())
        }

        async fn write_legacy_document(conn: &mut Conn<Self>, entity: EntityRef, document: &serde_json::Value) -> Result<()> {
            record_queries(1);
            let statement = if entity.kind == EntityKind::Product {
                sql::UPDATE_PRODUCT_DOCUMENT
            } else {
                sql::UPDATE_VARIANT_DOCUMENT
            };
            sqlx::query(statement).bind(entity.id).bind(sqlx::types::Json(document)).execute(conn).await?;
            Ok(())
        }

        async fn backfill_progress(conn: &mut Conn<Self>) -> Result<Vec<crate::backfill::Progress>> {
            // Not counted: the scrape reads this, and the query metric counts what requests cost.
            Ok(sqlx::query_as($sql::BACKFILL_PROGRESS).fetch_all(conn).await?)
        }

        async fn analyze_unified_values(conn: &mut Conn<Self>) -> Result<()> {
            record_queries(1);
            sqlx::query("ANALYZE unified_attribute_values").execute(conn).await?;
            Ok(())
        }

        async fn quarantine_by_reason(conn: &mut Conn<Self>, limit: i64) -> Result<Vec<crate::backfill::QuarantineCount>> {
            record_queries(1);
            Ok(sqlx::query_as(crate::backfill::QUARANTINE_BY_REASON).bind(limit).fetch_all(conn).await?)
        }

        async fn sample_id(conn: &mut Conn<Self>, statement: &'static str) -> Result<Option<i64>> {
            record_queries(1);
            Ok(sqlx::query_scalar(statement).fetch_optional(conn).await?)
        }

        async fn insert_alias(
            conn: &mut Conn<Self>,
            attribute: &domain::Attribute,
            alias: &str,
            option: &str,
            actor: &str,
        ) -> Result<()> {
            record_queries(1);
            sqlx::query(crate::resolve::INSERT_ALIAS)
                .bind(attribute.id)
                .bind(crate::resolve::alias_key(alias))
                .bind(alias)
                .bind(option)
                .bind(&attribute.code)
                .bind(actor)
                .execute(conn)
                .await?;
            Ok(())
        }

        async fn record_resolution(
            conn: &mut Conn<Self>,
            action: &str,
            attribute_code: &str,
            detail: &serde_json::Value,
            affected: i64,
            actor: &str,
        ) -> Result<crate::resolve::Resolution> {
            record_queries(1);
            Ok(sqlx::query_as(crate::resolve::INSERT_RESOLUTION)
                .bind(action)
                .bind(attribute_code)
                .bind(sqlx::types::Json(detail))
                .bind(affected)
                .bind(actor)
                .fetch_one(conn)
                .await?)
        }

        async fn resolutions(conn: &mut Conn<Self>, limit: i64) -> Result<Vec<crate::resolve::Resolution>> {
            record_queries(1);
            Ok(sqlx::query_as(crate::resolve::RESOLUTIONS).bind(limit).fetch_all(conn).await?)
        }

        async fn move_listing_values(
            conn: &mut Conn<Self>,
            from: i64,
            to: i64,
            listings: &[i64],
        ) -> Result<Vec<i64>> {
            let mut moved = Vec::new();
            for &listing in listings {
                record_queries(1);
                let changed = sqlx::query(crate::resolve::MOVE_LISTING_VALUE)
                    .bind(from)
                    .bind(to)
                    .bind(listing)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if changed > 0 {
                    moved.push(listing);
                }
            }
            Ok(moved)
        }

        async fn seed_legacy(conn: &mut Conn<Self>, dataset: &Dataset) -> Result<()> {
            for category in &dataset.categories {
                sqlx::query(sql::INSERT_CATEGORY)
                    .bind(category.id)
                    .bind(category.parent_id)
                    .bind(&category.name)
                    .bind(&category.slug)
                    .bind(category.level)
                    .execute(&mut *conn)
                    .await?;
            }
            for attribute in &dataset.attributes {
                let row = crate::legacy::encode_definition(attribute, true);
                bind_legacy_definition(sqlx::query(sql::INSERT_LEGACY_ATTRIBUTE), &row)
                    .execute(&mut *conn)
                    .await?;
                keep_legacy_created_at(conn, attribute).await?;
            }
            for binding in &dataset.bindings {
                sqlx::query(sql::INSERT_LEGACY_BINDING)
                    .bind(binding.category_id)
                    .bind(binding.attribute_id)
                    .bind(binding.is_enabled)
                    .bind(binding.is_required)
                    .bind(binding.sort_order)
                    .bind(&binding.custom_component)
                    .bind(binding.show_in_card)
                    .bind(binding.show_in_list)
                    .execute(&mut *conn)
                    .await?;
            }
            for axis in &dataset.variant_axes {
                sqlx::query(sql::INSERT_VARIANT_AXIS)
                    .bind(axis.legacy_id)
                    .bind(&axis.attribute.code)
                    .bind(
                        axis.attribute
                            .display_name
                            .get(domain::Language::Sr)
                            .unwrap_or(&axis.attribute.code),
                    )
                    .bind(axis.attribute.attribute_type.as_str())
                    .bind(axis.attribute.is_required)
                    .bind(axis.attribute.sort_order)
                    .bind(axis.attribute.affects_stock)
                    .bind(axis.attribute.created_at)
                    .execute(&mut *conn)
                    .await?;
                for (position, option) in axis.attribute.options.iter().enumerate() {
                    sqlx::query(sql::INSERT_VARIANT_AXIS_OPTION)
                        .bind(axis.legacy_id)
                        .bind(&option.value)
                        .bind(option.label.get(domain::Language::Sr))
                        .bind(&option.color_hex)
                        .bind(position as i32)
                        .bind(&option.image_url)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            for row in crate::legacy::encode_translations(dataset) {
                sqlx::query(sql::INSERT_TRANSLATION)
                    .bind(row.entity_type)
                    .bind(row.entity_id)
                    .bind(row.language.as_str())
                    .bind(&row.field_name)
                    .bind(&row.text)
                    .execute(&mut *conn)
                    .await?;
            }
            // Multi-row inserts: a demo of 200,000 listings loads in seconds, not minutes.
            let schemas: std::collections::HashMap<i64, EffectiveSchema> = dataset
                .listings
                .iter()
                .map(|l| l.category_id)
                .collect::<std::collections::HashSet<_>>()
                .into_iter()
                .map(|category| (category, dataset.schema(category)))
                .collect();
            for (chunk_index, chunk) in dataset.listings.chunks(SEED_CHUNK).enumerate() {
                record_queries(2);
                let mut listings = sqlx::QueryBuilder::<Self::Db>::new("INSERT INTO marketplace_listings (id, category_id, title, status, user_id) ");
                listings.push_values(chunk, |mut row, listing| {
                    row.push_bind(listing.id).push_bind(listing.category_id).push_bind(&listing.title).push_bind("active")
                        .push_bind(crate::demo::listing_owner(listing.id));
                });
                listings.build().persistent(false).execute(&mut *conn).await?;
                let rows: Vec<(i64, i64, rows::ValueColumns)> = chunk
                    .iter()
                    .flat_map(|listing| {
                        crate::legacy::encode_listing_values(&schemas[&listing.category_id], listing, dataset.all_defects)
                            .into_iter()
                            .map(move |(attribute_id, columns)| (listing.id, attribute_id, columns))
                    })
                    .collect();
                let mut values = sqlx::QueryBuilder::<Self::Db>::new(
                    "INSERT INTO listing_attribute_values
                        (listing_id, attribute_id, text_value, numeric_value, boolean_value, json_value, unit, value_type) ",
                );
                values.push_values(&rows, |mut row, (listing_id, attribute_id, columns)| {
                    row.push_bind(*listing_id).push_bind(*attribute_id).push_bind(&columns.text_value);
                    $sql::push_numeric(&mut row, &columns.numeric_value);
                    row.push_bind(columns.boolean_value)
                        .push_bind(columns.json_value.as_ref().map(sqlx::types::Json))
                        .push_bind(&columns.unit)
                        .push_bind(columns.legacy_value_type);
                });
                values.build().persistent(false).execute(&mut *conn).await?;
                let loaded = (chunk_index + 1) * SEED_CHUNK;
                if loaded % 25_000 == 0 {
                    tracing::info!(listings = loaded, of = dataset.listings.len(), "seeding listings");
                }
            }
            for (id, user_id) in crate::demo::STOREFRONTS {
                record_queries(1);
                sqlx::query(sql::INSERT_STOREFRONT)
                    .bind(id)
                    .bind(user_id)
                    .bind(format!("Demo shop {id}"))
                    .execute(&mut *conn)
                    .await?;
            }
            for product in &dataset.products {
                let schema = dataset.schema(product.category_id);
                let document =
                    crate::legacy::document_for(EntityKind::Product, &product.values, &schema)?;
                sqlx::query(sql::INSERT_PRODUCT)
                    .bind(product.id)
                    .bind(product.category_id)
                    .bind(sqlx::types::Json(&document))
                    .bind(crate::demo::product_storefront(product.id))
                    .execute(&mut *conn)
                    .await?;
            }
            for variant in &dataset.variants {
                let document = crate::legacy::variant_document_with_mixed_keys(dataset, variant);
                sqlx::query(sql::INSERT_VARIANT)
                    .bind(variant.id)
                    .bind(variant.product_id)
                    .bind(sqlx::types::Json(&document))
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }

        async fn seed_unified(conn: &mut Conn<Self>, dataset: &Dataset) -> Result<()> {
            for (attribute, legacy_c2c_id, legacy_variant_id) in dataset.unified_attributes() {
                insert_unified_attribute(&mut *conn, &attribute, legacy_c2c_id, legacy_variant_id)
                    .await?;
            }
            for binding in &dataset.bindings {
                sqlx::query(sql::INSERT_UNIFIED_BINDING)
                    .bind(binding.category_id)
                    .bind(binding.attribute_id)
                    .bind(binding.is_enabled)
                    .bind(binding.is_required)
                    .bind(binding.is_filterable)
                    .bind(binding.is_searchable)
                    .bind(binding.show_in_card)
                    .bind(binding.show_in_list)
                    .bind(&binding.custom_component)
                    .bind(binding.sort_order)
                    .bind(
                        binding
                            .category_specific_options
                            .as_ref()
                            .map(sqlx::types::Json),
                    )
                    .execute(&mut *conn)
                    .await?;
            }
            for (entity, values) in dataset.entities() {
                crate::unified_values::replace_defined(Self::dialect(&mut *conn), entity, values, &[]).await?;
            }
            Ok(())
        }
    };
}
pub(crate) use backend_operations;

/// Helpers the operations share, written once per backend by the same macro.
macro_rules! backend_helpers {
    ($db:ty, $sql:ident) => {
        async fn insert_unified_attribute(
            conn: &mut <$db as sqlx::Database>::Connection,
            attribute: &domain::Attribute,
            legacy_c2c_id: Option<i64>,
            legacy_variant_id: Option<i64>,
        ) -> Result<()> {
            record_queries(1);
            bind_unified_definition(
                sqlx::query(sql::INSERT_UNIFIED_ATTRIBUTE),
                attribute,
                legacy_c2c_id,
                legacy_variant_id,
            )
            .execute(conn)
            .await?;
            Ok(())
        }

        /// Binds `$1…$21` of a unified definition insert or upsert.
        fn bind_unified_definition<'q>(
            query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            attribute: &'q domain::Attribute,
            legacy_c2c_id: Option<i64>,
            legacy_variant_id: Option<i64>,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            query
                .bind(attribute.id)
                .bind(&attribute.code)
                .bind(sqlx::types::Json(&attribute.name))
                .bind(sqlx::types::Json(&attribute.display_name))
                .bind(attribute.attribute_type.as_str())
                .bind(attribute.purpose.as_str())
                .bind(sqlx::types::Json(attribute.stored_options()))
                .bind(sqlx::types::Json(&attribute.rules))
                .bind(sqlx::types::Json(&attribute.ui))
                .bind(attribute.is_searchable)
                .bind(attribute.is_filterable)
                .bind(attribute.is_required)
                .bind(attribute.is_variant_compatible)
                .bind(attribute.affects_stock)
                .bind(attribute.affects_price)
                .bind(attribute.show_in_card)
                .bind(attribute.sort_order)
                .bind(attribute.is_active)
                .bind(legacy_c2c_id)
                .bind(legacy_variant_id)
                .bind(attribute.created_at)
        }

        /// Binds `$1…$16` of a legacy definition insert or update (`$1` is the id).
        fn bind_legacy_definition<'q, O>(query: O, row: &'q crate::legacy::LegacyDefinitionRow) -> O
        where
            O: crate::backend::BindArgs<'q, $db>,
        {
            query
                .bind_arg(row.id)
                .bind_arg(row.name.as_str())
                .bind_arg(row.display_name.as_str())
                .bind_arg(row.attribute_type.as_str())
                .bind_arg(sqlx::types::Json(&row.options))
                .bind_arg(sqlx::types::Json(&row.validation_rules))
                .bind_arg(row.is_searchable)
                .bind_arg(row.is_filterable)
                .bind_arg(row.is_required)
                .bind_arg(row.sort_order)
                .bind_arg(row.custom_component.as_deref())
                .bind_arg(row.show_in_card)
                .bind_arg(row.show_in_list)
                .bind_arg(row.icon.as_deref())
                .bind_arg(row.affects_stock)
                .bind_arg(row.is_variant_compatible)
        }

        async fn keep_legacy_created_at(
            conn: &mut <$db as sqlx::Database>::Connection,
            attribute: &domain::Attribute,
        ) -> Result<()> {
            if let Some(created_at) = attribute.created_at {
                record_queries(1);
                sqlx::query(sql::SET_LEGACY_ATTRIBUTE_CREATED_AT)
                    .bind(attribute.id)
                    .bind(created_at)
                    .execute(conn)
                    .await?;
            }
            Ok(())
        }

        /// Binds `$1…$11` of a unified binding insert or upsert.
        fn bind_unified_binding<'q>(
            query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            binding: &'q domain::CategoryBinding,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            query
                .bind(binding.category_id)
                .bind(binding.attribute_id)
                .bind(binding.is_enabled)
                .bind(binding.is_required)
                .bind(binding.is_filterable)
                .bind(binding.is_searchable)
                .bind(binding.show_in_card)
                .bind(binding.show_in_list)
                .bind(binding.custom_component.as_deref())
                .bind(binding.sort_order)
                .bind(
                    binding
                        .category_specific_options
                        .as_ref()
                        .map(sqlx::types::Json),
                )
        }

        /// Replaces the English and Russian labels of a legacy definition.
        async fn write_legacy_translations(
            conn: &mut <$db as sqlx::Database>::Connection,
            attribute: &domain::Attribute,
        ) -> Result<()> {
            record_queries(1);
            sqlx::query(sql::DELETE_LEGACY_TRANSLATIONS)
                .bind(attribute.id)
                .execute(&mut *conn)
                .await?;
            for row in crate::legacy::attribute_translations(attribute) {
                record_queries(1);
                sqlx::query(sql::INSERT_TRANSLATION)
                    .bind(row.entity_type)
                    .bind(row.entity_id)
                    .bind(row.language.as_str())
                    .bind(&row.field_name)
                    .bind(&row.text)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }
    };
}

/// `bind` on both `Query` and `QueryScalar`, so one helper binds a statement either way.
pub(crate) trait BindArgs<'q, DB: sqlx::Database>: Sized {
    fn bind_arg<T>(self, value: T) -> Self
    where
        T: 'q + sqlx::Encode<'q, DB> + sqlx::Type<DB>;
}

impl<'q, DB: sqlx::Database> BindArgs<'q, DB>
    for sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
{
    fn bind_arg<T>(self, value: T) -> Self
    where
        T: 'q + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        self.bind(value)
    }
}

impl<'q, DB: sqlx::Database, O> BindArgs<'q, DB>
    for sqlx::query::QueryScalar<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
{
    fn bind_arg<T>(self, value: T) -> Self
    where
        T: 'q + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        self.bind(value)
    }
}
pub(crate) use backend_helpers;
