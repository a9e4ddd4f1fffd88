//! The PostgreSQL backend: the production database.

use std::time::Duration;

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Result, StorageError};
use crate::pooler::{BEGIN_AS_SERVICE, Pooled};
use crate::read_pool::{ReadConnection, ReadPool};
use crate::replicas::{self, ReplicaSet};
use crate::{PoolSettings, Topology};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

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
            pooled: pooled.then(|| Pooled::new(settings, &crate::home::search_path(&schema))),
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
        crate::our_tables::drop_public_views(&self.admin, &self.config.schema).await
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

impl Backend for PgBackend {
    const CONCURRENT_WRITERS: bool = true;

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
}
