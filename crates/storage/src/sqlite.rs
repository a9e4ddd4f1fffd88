//! The SQLite backend: the zero-setup default, one file, WAL mode so reads never wait on
//! the writer.

use std::str::FromStr;
use std::time::Duration;

use domain::{EffectiveSchema, EntityKind, EntityRef, EntityValues};
use flags::MigrationState;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::backend::{Backend, Conn, backend_helpers, backend_operations};
use crate::demo::Dataset;
use crate::error::{Result, StorageError};
use crate::rows::{self, SchemaParts};
use crate::sql;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

mod sqlite_sql {
    pub(super) const LEGACY_SCHEMA: &str = crate::sql::legacy_schema_sql!(
        "json_group_object(t.language || ':' || t.field_name, t.translated_text)"
    );
    pub(super) const LEGACY_VOCABULARY: &str = crate::sql::legacy_vocabulary_sql!(
        "json_group_object(t.language || ':' || t.field_name, t.translated_text)"
    );
    // Decimals are stored as text: SQLite's NUMERIC affinity would round them through floats.
    pub(super) const INSERT_LEGACY_LISTING_VALUE: &str = "INSERT INTO listing_attribute_values
            (listing_id, attribute_id, text_value, numeric_value, boolean_value, json_value, unit, value_type)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    pub(super) const INSERT_UNIFIED_VALUE: &str = "INSERT INTO unified_attribute_values
            (entity_type, entity_id, attribute_id, text_value, numeric_value, boolean_value,
             date_value, json_value, unit)
        SELECT $1, $2, a.id, $4, $5, $6, $7, $8, $9
        FROM unified_attributes a WHERE a.code = $3";
}

#[derive(Debug, Clone)]
pub(crate) struct SqliteBackend {
    pool: SqlitePool,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file of `url`.
    pub(crate) async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

backend_helpers!(Sqlite, sqlite_sql);

impl Backend for SqliteBackend {
    type Db = Sqlite;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn migrate(&self) -> Result<()> {
        Ok(MIGRATOR.run(&self.pool).await?)
    }

    async fn pending_migrations(&self) -> Result<usize> {
        crate::pending_migrations(&MIGRATOR, &self.pool).await
    }

    backend_operations!(sqlite_sql);
}
