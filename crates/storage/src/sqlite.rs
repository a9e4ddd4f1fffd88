//! The SQLite backend: the zero-setup default, one file, WAL mode so reads never wait on
//! the writer.

use std::str::FromStr;
use std::time::Duration;

use std::collections::HashMap;

use domain::{EffectiveSchema, EntityKind, EntityRef, EntityValues};
use flags::Store;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::PoolSettings;
use crate::backend::{
    Backend, Conn, SEED_CHUNK, backend_helpers, backend_operations, push_id_list,
};
use crate::demo::Dataset;
use crate::error::{Result, StorageError};
use crate::rows::{self, SchemaParts};
use crate::sql;
use crate::stats::record_queries;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Applies `migrator`'s pending migrations; newer migrations the database has and this
/// binary lacks are accepted when all are additive (`crate::unknown_migrations_are_additive`).
/// Returns the versions applied.
async fn migrate_up(
    pool: &sqlx::SqlitePool,
    mut migrator: sqlx::migrate::Migrator,
) -> Result<Vec<i64>> {
    use sqlx::migrate::Migrate;
    let applied: Vec<(i64, String)> = {
        let mut conn = pool.acquire().await?;
        conn.ensure_migrations_table().await?;
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations")
            .fetch_all(&mut *conn)
            .await?
    };
    if crate::unknown_migrations_are_additive(&migrator, &applied)? {
        migrator.set_ignore_missing(true);
    }
    migrator.run(pool).await?;
    Ok(migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .filter(|version| !applied.iter().any(|(done, _)| done == version))
        .collect())
}

mod sqlite_sql {
    /// One process owns the file: there is no load of other backends to measure.
    pub(super) const UNIFIED_SCHEMA: &str =
        crate::sql::unified_schema_sql!("json_group_object(x.alias, x.option_value)");
    pub(super) const UNIFIED_CATALOG: &str =
        crate::sql::unified_catalog_sql!("json_group_object(x.alias, x.option_value)");
    pub(super) const LEGACY_SCHEMA: &str = crate::sql::legacy_schema_sql!(
        "json_group_object(t.language || ':' || t.field_name, t.translated_text)",
        // SQLite databases are this service's own: every column is there.
        "a.affects_stock, a.is_variant_compatible",
        "json_group_object(x.alias, x.option_value)"
    );
    pub(super) const LEGACY_VOCABULARY: &str = crate::sql::legacy_vocabulary_sql!(
        "json_group_object(t.language || ':' || t.field_name, t.translated_text)"
    );
    // Decimals are stored as text: SQLite's NUMERIC affinity would round them through floats.
    pub(super) const LEGACY_CATALOG: &str = crate::sql::legacy_catalog_sql!(
        "json_group_object(t.language || ':' || t.field_name, t.translated_text)",
        // SQLite databases are this service's own: every column is there.
        "a.affects_stock, a.is_variant_compatible",
        "json_group_object(x.alias, x.option_value)"
    );
    pub(super) const LEGACY_VARIANT_AXES: &str = crate::sql::legacy_variant_axes_sql!(
        "json_group_object(t.language || ':' || t.field_name, t.translated_text)",
        "json_group_array(json_object('value', o.value, 'label', o.display_name, 'color_hex', o.color_hex, 'image_url', o.image_url, 'is_active', o.is_active))",
        "p.affects_stock",
        "json_group_object(x.alias, x.option_value)"
    );
    // Decimals are text here; ranges compare them as numbers (REAL is exact to 15 digits).
    pub(super) const LEGACY_RANGES: &str = crate::sql::legacy_ranges_sql!(
        "CAST(COALESCE(v.numeric_value, CASE WHEN v.text_value GLOB '*[0-9]*'
            AND v.text_value NOT GLOB '*[^0-9.-]*' THEN v.text_value END) AS REAL)"
    );
    pub(super) const UNIFIED_RANGES: &str =
        crate::sql::unified_ranges_sql!("CAST(v.numeric_value AS REAL)");
    pub(super) const LEGACY_LISTING_VALUES_BATCH: &str = crate::legacy::LISTING_ROWS.lite;
    pub(super) const UNIFIED_LISTING_VALUES_BATCH: &str =
        crate::sql::unified_listing_values_batch_sql!("IN (SELECT value FROM json_each($1))");

    /// Binds the ids of a batch statement as one JSON array.
    pub(super) fn bind_ids<'q, O>(
        query: sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>>,
        ids: &[i64],
    ) -> sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>> {
        query.bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
    }

    pub(super) const BACKFILL_PROGRESS: &str =
        crate::backfill::progress_sql!("(julianday(updated_at) - 2440587.5) * 86400.0");

    /// Binds a decimal as text (its column is text, so it stays exact).
    pub(super) fn push_numeric<'args>(
        row: &mut sqlx::query_builder::Separated<'_, 'args, sqlx::Sqlite, &'static str>,
        value: &'args Option<String>,
    ) {
        row.push_bind(value);
    }
    /// SQLite needs no row locks: a write transaction already excludes every other writer.
    pub(super) const LOCK_ROWS: &str = "";
    pub(super) const LEGACY_COLUMNS: &str =
        "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p
         WHERE m.type = 'table'";
    pub(super) const LATER_DEFINITION_COLUMNS_PRESENT: &str =
        "SELECT name FROM pragma_table_info('category_attributes')
         WHERE name IN ('affects_stock', 'is_variant_compatible')";

    /// Inserts unified value rows in multi-row statements (SQLite allows 32,766 parameters).
    pub(super) async fn insert_unified_rows(
        conn: &mut sqlx::SqliteConnection,
        kind: domain::EntityKind,
        rows: &[(i64, i64, crate::rows::ValueColumns)],
    ) -> crate::error::Result<()> {
        for chunk in rows.chunks(2_000) {
            crate::stats::record_queries(1);
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO unified_attribute_values
                    (entity_type, entity_id, attribute_id, text_value, numeric_value, boolean_value,
                     date_value, json_value, unit) ",
            );
            insert.push_values(chunk, |mut row, (entity_id, attribute_id, columns)| {
                row.push_bind(kind.as_str())
                    .push_bind(*entity_id)
                    .push_bind(*attribute_id)
                    .push_bind(&columns.text_value)
                    .push_bind(&columns.numeric_value)
                    .push_bind(columns.boolean_value)
                    .push_bind(&columns.date_value)
                    .push_bind(columns.json_value.as_ref().map(sqlx::types::Json))
                    .push_bind(&columns.unit);
            });
            insert.build().persistent(false).execute(&mut *conn).await?;
        }
        Ok(())
    }
    // SQLite's write transaction already excludes other writers.
    pub(super) use crate::sql::{LISTING_CATEGORY, PRODUCT_CATEGORY, VARIANT_CATEGORY};
}

#[derive(Debug, Clone)]
pub(crate) struct SqliteBackend {
    pool: SqlitePool,
}

impl SqliteBackend {
    fn options(url: &str, pool: PoolSettings) -> Result<(SqliteConnectOptions, SqlitePoolOptions)> {
        let connection = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(pool.lock_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // A ping before every acquire would double the work of a read.
            .test_before_acquire(false);
        Ok((connection, pool))
    }

    /// Opens (creating if needed) the database file of `url`.
    pub(crate) async fn connect(url: &str, pool: PoolSettings) -> Result<Self> {
        let (connection, pool) = Self::options(url, pool)?;
        Ok(Self {
            pool: pool.connect_with(connection).await?,
        })
    }

    /// A pool that opens its connections on first use, on the runtime that uses them.
    pub(crate) fn connect_lazy(url: &str, pool: PoolSettings) -> Result<Self> {
        let (connection, pool) = Self::options(url, pool)?;
        Ok(Self {
            pool: pool.connect_lazy_with(connection),
        })
    }
}

backend_helpers!(Sqlite, sqlite_sql);

impl Backend for SqliteBackend {
    type Db = Sqlite;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn dialect(conn: &mut sqlx::SqliteConnection) -> crate::dialect::Dialect<'_> {
        crate::dialect::Dialect::Lite(conn)
    }

    // SQLite's "ping" on release is in-process: its pool serves reads too.
    type ReadConnection = sqlx::pool::PoolConnection<Sqlite>;

    async fn acquire_read(&self) -> Result<Self::ReadConnection> {
        Ok(self.pool.acquire().await?)
    }

    fn release_read<T>(_connection: Self::ReadConnection, _outcome: &Result<T>) {}

    fn read_connections(&self) -> u32 {
        self.pool.size()
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn begin_snapshot(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN").await?)
    }

    async fn migrate(&self) -> Result<Vec<i64>> {
        let applied = migrate_up(&self.pool, sqlx::migrate!("../../migrations/sqlite")).await?;
        crate::check_legacy_schema::<Self>(&self.pool).await?;
        Ok(applied)
    }

    async fn migrate_down(&self, steps: usize) -> Result<Vec<i64>> {
        crate::migrate_down(&MIGRATOR, &self.pool, steps).await
    }

    async fn migrations(&self) -> Result<Vec<crate::MigrationInfo>> {
        let ledger_exists = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')",
        )
        .fetch_one(&self.pool)
        .await?;
        crate::migrations(&MIGRATOR, &self.pool, ledger_exists).await
    }

    backend_operations!(sqlite_sql);
}
