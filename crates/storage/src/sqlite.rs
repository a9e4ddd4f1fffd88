//! The SQLite backend: the zero-setup default, one file, WAL mode so reads never wait on
//! the writer.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::PoolSettings;
use crate::backend::Backend;
use crate::error::Result;

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
}
