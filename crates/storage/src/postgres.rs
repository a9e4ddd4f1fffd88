//! The PostgreSQL backend: the production database.

use std::time::Duration;

use std::collections::HashMap;

use domain::{EffectiveSchema, EntityKind, EntityRef, EntityValues};
use flags::Store;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use std::sync::Arc;

use crate::backend::{
    Backend, Conn, SEED_CHUNK, backend_helpers, backend_operations, push_id_list,
};
use crate::demo::Dataset;
use crate::error::{Result, StorageError};
use crate::read_pool::{ReadConnection, ReadPool};
use crate::replicas::{self, ReplicaSet};
use crate::rows::{self, SchemaParts};
use crate::sql;
use crate::stats::record_queries;
use crate::{PoolSettings, Topology};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// A write transaction of this service says so: the capture triggers on the legacy tables
/// (migration 16) leave its own writes alone, so they are never applied twice.
const BEGIN_AS_SERVICE: &str = "BEGIN; SET LOCAL unified_attributes.writer = 'service'";

mod pg_sql {
    pub(super) const UNIFIED_SCHEMA: &str =
        crate::sql::unified_schema_sql!("jsonb_object_agg(x.alias, x.option_value)");
    pub(super) const UNIFIED_CATALOG: &str =
        crate::sql::unified_catalog_sql!("jsonb_object_agg(x.alias, x.option_value)");
    pub(super) const LEGACY_SCHEMA: &str = crate::sql::legacy_schema_sql!(
        "jsonb_object_agg(t.language || ':' || t.field_name, t.translated_text)",
        // Read through the row as JSON: a column the database lacks reads as absent.
        "COALESCE(CAST(to_jsonb(a) ->> 'affects_stock' AS BOOLEAN), FALSE) AS affects_stock,
        COALESCE(CAST(to_jsonb(a) ->> 'is_variant_compatible' AS BOOLEAN), FALSE) AS is_variant_compatible",
        "jsonb_object_agg(x.alias, x.option_value)"
    );
    pub(super) const LEGACY_VOCABULARY: &str = crate::sql::legacy_vocabulary_sql!(
        "jsonb_object_agg(t.language || ':' || t.field_name, t.translated_text)"
    );
    // Decimals and dates travel as text and are cast here, so they stay exact.
    pub(super) const LEGACY_CATALOG: &str = crate::sql::legacy_catalog_sql!(
        "jsonb_object_agg(t.language || ':' || t.field_name, t.translated_text)",
        // Read through the row as JSON: a column the database lacks reads as absent.
        "COALESCE(CAST(to_jsonb(a) ->> 'affects_stock' AS BOOLEAN), FALSE) AS affects_stock,
        COALESCE(CAST(to_jsonb(a) ->> 'is_variant_compatible' AS BOOLEAN), FALSE) AS is_variant_compatible",
        "jsonb_object_agg(x.alias, x.option_value)"
    );
    pub(super) const LEGACY_VARIANT_AXES: &str = crate::sql::legacy_variant_axes_sql!(
        "jsonb_object_agg(t.language || ':' || t.field_name, t.translated_text)",
        "COALESCE(jsonb_agg(jsonb_build_object('value', o.value, 'label', o.display_name,
            'color_hex', o.color_hex, 'image_url', o.image_url, 'is_active', o.is_active) ORDER BY o.sort_order, o.id), '[]')",
        "COALESCE(CAST(to_jsonb(p) ->> 'affects_stock' AS BOOLEAN), FALSE) AS affects_stock",
        "jsonb_object_agg(x.alias, x.option_value)"
    );
    pub(super) const LEGACY_RANGES: &str = crate::sql::legacy_ranges_sql!(
        "COALESCE(v.numeric_value, CASE WHEN v.text_value ~ '^-?[0-9]+(\\.[0-9]+)?$'
            THEN CAST(v.text_value AS NUMERIC) END)"
    );
    pub(super) const UNIFIED_RANGES: &str = crate::sql::unified_ranges_sql!("v.numeric_value");
    pub(super) const LEGACY_LISTING_VALUES_BATCH: &str = crate::legacy::LISTING_ROWS.pg;
    pub(super) const UNIFIED_LISTING_VALUES_BATCH: &str =
        crate::sql::unified_listing_values_batch_sql!("= ANY($1)");

    /// Binds the ids of a batch statement as one `bigint[]`.
    pub(super) fn bind_ids<'q, O>(
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
        ids: &[i64],
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        query.bind(ids.to_vec())
    }

    pub(super) const BACKFILL_PROGRESS: &str =
        crate::backfill::progress_sql!("CAST(EXTRACT(EPOCH FROM updated_at) AS DOUBLE PRECISION)");

    /// Binds a decimal sent as text into a `numeric` column of a multi-row insert.
    pub(super) fn push_numeric<'args>(
        row: &mut sqlx::query_builder::Separated<'_, 'args, sqlx::Postgres, &'static str>,
        value: &'args Option<String>,
    ) {
        row.push("CAST(")
            .push_bind_unseparated(value)
            .push_unseparated(" AS NUMERIC)");
    }
    /// Backfill batches lock their entities' rows until they commit.
    pub(super) const LOCK_ROWS: &str = " FOR UPDATE";
    pub(super) const LEGACY_COLUMNS: &str =
        "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns
         WHERE table_schema = 'public'";
    pub(super) const LATER_DEFINITION_COLUMNS_PRESENT: &str =
        "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = 'category_attributes'
           AND column_name IN ('affects_stock', 'is_variant_compatible')";

    /// Inserts unified value rows with one statement per batch: each column travels as one
    /// array (`UNNEST`), so a batch of thousands of rows is one parse, one plan, nine binds.
    pub(super) async fn insert_unified_rows(
        conn: &mut sqlx::PgConnection,
        kind: domain::EntityKind,
        rows: &[(i64, i64, crate::rows::ValueColumns)],
    ) -> crate::error::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        crate::stats::record_queries(1);
        let column = |f: fn(&crate::rows::ValueColumns) -> Option<String>| -> Vec<Option<String>> {
            rows.iter().map(|(_, _, columns)| f(columns)).collect()
        };
        sqlx::query(
            "INSERT INTO unified_attribute_values
                (entity_type, entity_id, attribute_id, text_value, numeric_value, boolean_value,
                 date_value, json_value, unit)
            SELECT $1, u.entity_id, u.attribute_id, u.text_value, CAST(u.numeric_value AS NUMERIC),
                u.boolean_value, CAST(u.date_value AS DATE), CAST(u.json_value AS JSONB), u.unit
            FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bool[], $7::text[],
                $8::text[], $9::text[])
                AS u(entity_id, attribute_id, text_value, numeric_value, boolean_value, date_value,
                     json_value, unit)",
        )
        .bind(kind.as_str())
        .bind(
            rows.iter()
                .map(|(entity, _, _)| *entity)
                .collect::<Vec<i64>>(),
        )
        .bind(
            rows.iter()
                .map(|(_, attribute, _)| *attribute)
                .collect::<Vec<i64>>(),
        )
        .bind(column(|c| c.text_value.clone()))
        .bind(column(|c| c.numeric_value.clone()))
        .bind(
            rows.iter()
                .map(|(_, _, c)| c.boolean_value)
                .collect::<Vec<Option<bool>>>(),
        )
        .bind(column(|c| c.date_value.clone()))
        .bind(column(|c| c.json_value.as_ref().map(ToString::to_string)))
        .bind(column(|c| c.unit.clone()))
        .execute(conn)
        .await?;
        Ok(())
    }
    // Writes lock the entity's row: a write and a backfill batch of the same entity serialize.
    pub(super) const LISTING_CATEGORY: &str =
        "SELECT category_id FROM marketplace_listings WHERE id = $1 FOR UPDATE";
    pub(super) const PRODUCT_CATEGORY: &str =
        "SELECT category_id FROM storefront_products WHERE id = $1 FOR UPDATE";
    pub(super) const VARIANT_CATEGORY: &str =
        "SELECT p.category_id FROM storefront_product_variants v
         JOIN storefront_products p ON p.id = v.product_id WHERE v.id = $1 FOR UPDATE OF v";
}

/// The longest wait for a connection of a full pool (the breaker answers at once while the
/// database refuses connections).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(crate) struct PgBackend {
    pool: PgPool,
    /// Migrations (they hold a session advisory lock) and `LISTEN`: the session URL's pool
    /// behind a transaction pooler, else the main pool.
    admin: PgPool,
    reads: ReadPool,
    /// One read pool per read replica, in the order of the replica set.
    replica_reads: Vec<ReadPool>,
    config: Arc<PgConfig>,
}

/// What every worker's pools are made from, and what the workers of a process share.
#[derive(Debug)]
struct PgConfig {
    connection: PgConnectOptions,
    session: PgConnectOptions,
    settings: PoolSettings,
    /// Behind a transaction pooler: how transactions begin (see [`Pooled`]).
    pooled: Option<Pooled>,
    replicas: Option<Arc<ReplicaSet>>,
    /// Our schema (see [`crate::home`]).
    schema: String,
}

/// Behind a transaction-mode pooler (PgBouncer before 1.21), a server connection is ours only
/// inside a transaction, and sqlx's statements (named, or unnamed and parsed in a round trip
/// of their own) would reach another client's server between their messages. So every
/// statement runs inside a transaction, whose `BEGIN` also drops the statements an earlier
/// client left on the server (names are per client: they would collide) and sets the time
/// limits that a pooler does not let through as startup options. The statement cache is off.
#[derive(Debug)]
pub(crate) struct Pooled {
    pub(crate) read: String,
    pub(crate) write: String,
    snapshot: String,
}

impl Pooled {
    fn new(settings: PoolSettings, schema: &str) -> Self {
        let limits = format!(
            "DEALLOCATE ALL; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
             SET LOCAL idle_in_transaction_session_timeout = {}; SET LOCAL search_path TO {}",
            settings.statement_timeout.as_millis(),
            settings.lock_timeout.as_millis(),
            settings.idle_in_transaction_timeout.as_millis(),
            crate::home::search_path(schema)
        );
        Self {
            read: format!("BEGIN READ ONLY; {limits}"),
            write: format!("{BEGIN_AS_SERVICE}; {limits}"),
            snapshot: format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {limits}"),
        }
    }
}

impl PgBackend {
    fn connect_options(
        url: &str,
        settings: PoolSettings,
        pooled: bool,
        schema: &str,
    ) -> Result<PgConnectOptions> {
        let options =
            PgConnectOptions::from_str(url)?.application_name(crate::usage::APPLICATION_NAME);
        if pooled {
            return Ok(options.statement_cache_capacity(0));
        }
        let millis = |d: Duration| d.as_millis().to_string();
        Ok(options.options([
            ("search_path", crate::home::search_path(schema)),
            ("statement_timeout", millis(settings.statement_timeout)),
            ("lock_timeout", millis(settings.lock_timeout)),
            (
                "idle_in_transaction_session_timeout",
                millis(settings.idle_in_transaction_timeout),
            ),
        ]))
    }

    fn pool_options(settings: PoolSettings) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A ping before every acquire would double the round trips of a read; a broken
            // connection surfaces as an error on use and is replaced.
            .test_before_acquire(false)
    }

    /// Connects the main pool now (the rest on first use); starts watching the replicas.
    pub(crate) async fn connect(
        url: &str,
        settings: PoolSettings,
        topology: &Topology,
    ) -> Result<Self> {
        let config = Arc::new(Self::config(url, settings, topology)?);
        let backend = Self::pools(&config);
        backend.pool.acquire().await?;
        if let Some(replicas) = &config.replicas {
            replicas::watch(replicas, config.session.clone());
        }
        Ok(backend)
    }

    /// The same databases through pools of its own, opened on first use on the runtime that
    /// uses them (a server worker's); the replicas' state is shared.
    pub(crate) fn for_worker(&self) -> Self {
        Self::pools(&self.config)
    }

    fn config(url: &str, settings: PoolSettings, topology: &Topology) -> Result<PgConfig> {
        let pooled = topology.transaction_pooler;
        let schema = crate::home::checked_schema(topology.schema.as_deref())?;
        let session_url = match (&topology.session_url, pooled) {
            (Some(session), _) => session.as_str(),
            (None, false) => url,
            (None, true) => {
                return Err(StorageError::Configuration(
                    "behind a transaction pooler, LISTEN and migrations need a direct session \
                     connection to the primary: set DATABASE_SESSION_URL"
                        .into(),
                ));
            }
        };
        let replicas = topology
            .read_urls
            .iter()
            .map(|url| Self::connect_options(url, settings, pooled, &schema))
            .collect::<Result<Vec<_>>>()?;
        Ok(PgConfig {
            connection: Self::connect_options(url, settings, pooled, &schema)?,
            session: Self::connect_options(session_url, settings, false, &schema)?,
            settings,
            pooled: pooled.then(|| Pooled::new(settings, &schema)),
            replicas: (!replicas.is_empty())
                .then(|| Arc::new(ReplicaSet::new(replicas, topology.replica_max_lag))),
            schema,
        })
    }

    fn pools(config: &Arc<PgConfig>) -> Self {
        let settings = config.settings;
        let pool = Self::pool_options(settings).connect_lazy_with(config.connection.clone());
        let admin = if config.pooled.is_some() {
            PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(config.session.clone())
        } else {
            pool.clone()
        };
        let read_pool = |options: &PgConnectOptions| {
            ReadPool::new(options.clone(), settings.max_connections, ACQUIRE_TIMEOUT)
        };
        Self {
            reads: read_pool(&config.connection),
            replica_reads: config.replicas.as_ref().map_or_else(Vec::new, |replicas| {
                (0..replicas.len())
                    .map(|i| read_pool(replicas.options(i)))
                    .collect()
            }),
            pool,
            admin,
            config: Arc::clone(config),
        }
    }

    /// See [`crate::Storage::migration_plan`].
    pub(crate) async fn migration_plan(&self) -> Result<crate::monolith::Plan> {
        let mut conn = self.admin.acquire().await?;
        let known = MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .count();
        crate::monolith::plan(&mut conn, &self.config.schema, known).await
    }

    /// See [`crate::Storage::drop_public_views`].
    pub(crate) async fn drop_public_views(&self) -> Result<Vec<String>> {
        crate::home::drop_public_views(&self.admin, &self.config.schema).await
    }

    /// The primary's WAL position now: at or after every commit that has returned.
    pub(crate) async fn primary_position(&self) -> Result<crate::freshness::Lsn> {
        use sqlx::Row;
        let mut connection = self.reads.acquire().await?;
        let outcome = async {
            let row =
                sqlx::Executor::fetch_one(&mut *connection, replicas::PRIMARY_POSITION).await?;
            Ok(row.try_get::<i64, _>(0)? as crate::freshness::Lsn)
        }
        .await;
        ReadPool::discard_if_broken(connection, &outcome);
        outcome
    }

    /// How a transaction begins: `plain`, or behind a pooler its statement with the limits.
    fn begin_with(
        &self,
        plain: &'static str,
        pooled: impl FnOnce(&Pooled) -> &String,
    ) -> std::borrow::Cow<'static, str> {
        self.config
            .pooled
            .as_ref()
            .map_or(plain.into(), |p| pooled(p).clone().into())
    }
}

backend_helpers!(Postgres, pg_sql);

impl Backend for PgBackend {
    type Db = Postgres;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn dialect(conn: &mut sqlx::PgConnection) -> crate::dialect::Dialect<'_> {
        crate::dialect::Dialect::Pg(conn)
    }

    type ReadConnection = ReadConnection;

    async fn acquire_read(&self) -> Result<ReadConnection> {
        self.reads.acquire().await
    }

    fn release_read<T>(connection: ReadConnection, outcome: &Result<T>) {
        ReadPool::discard_if_broken(connection, outcome);
    }

    fn read_connections(&self) -> u32 {
        self.reads.size()
    }

    fn connections(&self) -> (u32, usize) {
        let (open, idle) = self.reads.connections();
        (self.pool.size() + open, self.pool.num_idle() + idle)
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self
            .pool
            .begin_with(self.begin_with(BEGIN_AS_SERVICE, |p| &p.write))
            .await?)
    }

    async fn begin_snapshot(&self) -> Result<Transaction<'static, Postgres>> {
        let begin = self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", |p| {
            &p.snapshot
        });
        Ok(self.pool.begin_with(begin).await?)
    }

    fn pooled(&self) -> Option<&Pooled> {
        self.config.pooled.as_ref()
    }

    fn admin_pool(&self) -> &PgPool {
        &self.admin
    }

    fn replicas(&self) -> Option<&Arc<ReplicaSet>> {
        self.config.replicas.as_ref()
    }

    async fn acquire_replica(&self, replica: usize) -> Result<ReadConnection> {
        self.replica_reads[replica].acquire().await
    }

    async fn migrate(&self) -> Result<Vec<i64>> {
        let applied = crate::home::migrate(&self.admin, &MIGRATOR, &self.config.schema).await?;
        crate::check_legacy_schema::<Self>(&self.admin).await?;
        Ok(applied)
    }

    async fn migrate_down(&self, steps: usize) -> Result<Vec<i64>> {
        crate::migrate_down(&MIGRATOR, &self.admin, steps).await
    }

    async fn migrations(&self) -> Result<Vec<crate::MigrationInfo>> {
        let ledger_exists =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.admin)
                .await?;
        crate::migrations(&MIGRATOR, &self.admin, ledger_exists).await
    }

    backend_operations!(pg_sql);
}
