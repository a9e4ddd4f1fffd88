//! All SQL of the service: the legacy and unified tables on PostgreSQL and SQLite, and the
//! flag-routed reads and writes above them.
//!
//! [`Storage`] is the door: it picks the backend from the database URL and exposes routed
//! operations. Backends only provide SQL operations on a connection they are handed; the
//! router owns every transaction.

mod affected;
pub mod archive;
mod backend;
pub mod backfill;
mod batches;
mod breaker;
pub mod capture;
mod checkpoint;
mod checksum;
mod definitions;
pub mod demo;
mod dialect;
mod entity_values;
mod error;
mod evidence;
pub mod flag_store;
mod freshness;
mod home;
pub mod invalidation;
pub mod lease;
mod legacy;
mod legacy_views;
pub mod location;
pub mod monolith;
mod notify;
mod option_use;
mod our_tables;
mod ownership;
mod pooler;
mod postgres;
pub mod quarantine;
mod read_pool;
pub mod replicas;
pub mod resolve;
mod router;
mod rows;
mod savepoint;
mod schema;
mod seed;
pub mod soak;
mod sql;
mod sqlite;
pub mod sqlstate;
mod stats;
pub mod status;
mod stored_flags;
pub mod sync;
pub mod throttle;
mod undo;
mod unified_values;
pub mod usage;
pub mod verify;
mod writes;

use std::collections::HashMap;

use domain::{
    Attribute, AttributeDraft, BindingDraft, CategoryBinding, EffectiveSchema, EntityRef,
    EntityValues,
};
use flags::{MigrationState, WriteMode};
use serde_json::{Map, Value as Json};
use sqlx::migrate::{Migrate, Migrator};

pub use error::{Logged, Resource, Result, StorageError, each_cause_once};
pub use flag_store::{FlagAuditEntry, FlagChange, MigrationCounts, StoredFlags};
pub use flags::{FallbackReason, ServedBy};
pub use home::DEFAULT_SCHEMA;
pub use invalidation::Invalidation;
pub use router::{Read, ReadRoute, ValueWriter, ValuesChange, Written};
pub use rows::{AttributeRange, VARIANT_AXIS_ID_OFFSET};
pub use stats::{queries_executed, reads_refused};

use backend::Backend;
use postgres::PgBackend;
use router::Router;
use sqlite::SqliteBackend;

/// How the service uses its database connections. Every connection carries time limits, so
/// a lock held elsewhere or a runaway statement fails fast (answered 503) instead of holding a
/// pooled connection for as long as it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// PostgreSQL `statement_timeout`: a statement running longer is cancelled.
    pub statement_timeout: std::time::Duration,
    /// PostgreSQL `lock_timeout`, SQLite's busy timeout: the longest wait for a lock.
    pub lock_timeout: std::time::Duration,
    /// PostgreSQL `idle_in_transaction_session_timeout`: a transaction left open by a stuck
    /// client is ended, and its locks released.
    pub idle_in_transaction_timeout: std::time::Duration,
}

impl PoolSettings {
    /// The defaults: 30 s per statement, 3 s per lock wait, 60 s idle in a transaction.
    pub fn new(max_connections: u32) -> Self {
        Self {
            max_connections,
            statement_timeout: std::time::Duration::from_secs(30),
            lock_timeout: std::time::Duration::from_secs(3),
            idle_in_transaction_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Where PostgreSQL connections go besides the main URL: a direct session URL when the main
/// one passes a transaction pooler, and streaming read replicas for the routed reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// A direct connection to the primary for `LISTEN`, migrations and the replica watch
    /// (required with `transaction_pooler`; default: the main URL).
    pub session_url: Option<String>,
    /// Streaming read replicas: uncached reads go to one that has replayed what they need.
    pub read_urls: Vec<String>,
    /// A replica lagging more than this is taken out of reads.
    pub replica_max_lag: std::time::Duration,
    /// The main URL (and the replicas') reach PostgreSQL through a transaction-mode pooler.
    pub transaction_pooler: bool,
    /// PostgreSQL: the schema of this service's tables (default [`DEFAULT_SCHEMA`]); the
    /// marketplace's tables stay in `public`. SQLite has no schemas: its file is ours.
    pub schema: Option<String>,
}

impl Topology {
    /// One direct URL, nothing else.
    fn is_plain(&self) -> bool {
        self.session_url.is_none() && self.read_urls.is_empty() && !self.transaction_pooler
    }

    /// The longest lag a replica may be allowed: its positions must still be remembered.
    pub const MAX_REPLICA_LAG: std::time::Duration = std::time::Duration::from_secs(10);
}

/// A database URL fit for a message or a log line: the password of the user-info part and every
/// query parameter that carries a secret (`password`, `sslpassword`, `passfile`…) read `***`.
pub fn redact_url(url: &str) -> String {
    let (address, query) = url.split_once('?').unwrap_or((url, ""));
    let address = match (address.find("://"), address.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &address[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => {
                    format!("{}{user}:***{}", &address[..scheme_end + 3], &address[at..])
                }
                None => address.to_owned(),
            }
        }
        _ => address.to_owned(),
    };
    if query.is_empty() {
        return address;
    }
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("pass") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{address}?{}", query.join("&"))
}

/// The database the service runs on, picked from the URL scheme.
#[derive(Debug, Clone)]
pub struct Storage(Backends);

#[derive(Debug, Clone)]
enum Backends {
    Postgres(Router<PgBackend>),
    Sqlite(Router<SqliteBackend>),
}

/// Runs the same expression on whichever router the storage holds.
macro_rules! on_router {
    ($storage:expr, $router:ident => $body:expr) => {
        match &$storage.0 {
            Backends::Postgres($router) => $body,
            Backends::Sqlite($router) => $body,
        }
    };
}

impl Storage {
    /// Connects to `postgres://…` or `sqlite://…` (the SQLite file is created if missing).
    pub async fn connect(url: &str, pool: PoolSettings) -> Result<Self> {
        Self::connect_with(url, pool, &Topology::default()).await
    }

    /// As [`Storage::connect`], with a session URL, read replicas or a pooler (PostgreSQL).
    /// With replicas, a task watches their lag for as long as this storage (or a worker's
    /// copy) lives.
    pub async fn connect_with(url: &str, pool: PoolSettings, topology: &Topology) -> Result<Self> {
        if topology.replica_max_lag > Topology::MAX_REPLICA_LAG {
            return Err(StorageError::Configuration(format!(
                "a read replica's lag limit may be at most {} ms (replicas lagging more are of no use to reads)",
                Topology::MAX_REPLICA_LAG.as_millis()
            )));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Storage(Backends::Postgres(Router::new(
                PgBackend::connect(url, pool, topology).await?,
            ))))
        } else if !topology.is_plain() {
            Err(StorageError::Configuration(
                "read replicas, a session URL and a pooler are PostgreSQL settings".into(),
            ))
        } else if url.starts_with("sqlite:") {
            Ok(Storage(Backends::Sqlite(Router::new(
                SqliteBackend::connect(url, pool).await?,
            ))))
        } else {
            Err(StorageError::UnsupportedUrl(
                url.split("://").next().unwrap_or(url).to_owned(),
            ))
        }
    }

    /// This storage's databases through pools of a worker's own, opened on first use on the
    /// worker's runtime; what is known of the replicas is shared.
    pub fn for_worker(&self, url: &str, pool: PoolSettings) -> Result<Self> {
        match &self.0 {
            Backends::Postgres(router) => Ok(Storage(Backends::Postgres(Router::new(
                router.backend().for_worker(),
            )))),
            // Opened on first use, on the worker's runtime.
            Backends::Sqlite(_) => Ok(Storage(Backends::Sqlite(Router::new(
                SqliteBackend::connect_lazy(url, pool)?,
            )))),
        }
    }

    /// The read replicas as the last poll found them (none configured: empty).
    pub fn replicas(&self) -> Vec<replicas::ReplicaStatus> {
        self.replica_set().map_or_else(Vec::new, |set| set.status())
    }

    /// Routed reads the primary answered although replicas are configured, by why.
    pub fn primary_reads(&self) -> Vec<(replicas::PrimaryRead, u64)> {
        self.replica_set()
            .map_or_else(Vec::new, |set| set.primary_reads().to_vec())
    }

    /// The largest replay lag among the replicas that answer, and which replica.
    pub fn replication_lag(&self) -> Option<(String, std::time::Duration)> {
        self.replica_set().and_then(|set| set.max_lag())
    }

    fn replica_set(&self) -> Option<&std::sync::Arc<replicas::ReplicaSet>> {
        match &self.0 {
            Backends::Postgres(router) => router.backend().replicas(),
            Backends::Sqlite(_) => None,
        }
    }

    /// Records where a committed write stands in the WAL before the caller drops the cache
    /// entries it made stale, so no replica answers those reads from before it. Unknown (the
    /// primary did not answer): those reads go to the primary while they are remembered.
    async fn stamped<T>(&self, written: Result<Written<T>>) -> Result<Written<T>> {
        if let (Ok(written), Backends::Postgres(router)) = (&written, &self.0)
            && let Some(replicas) = router.backend().replicas()
        {
            let lsn = router.backend().primary_position().await.unwrap_or_else(|err| {
                tracing::warn!(error = %crate::Logged(&err), "no WAL position for a committed write; its reads go to the primary");
                freshness::Lsn::MAX
            });
            replicas.freshness.record(&written.invalidations, lsn);
        }
        written
    }

    /// An operation's throttle: its settings and what the running operation reported.
    pub async fn throttle(&self, operation: throttle::Operation) -> Result<throttle::Throttle> {
        on_router!(self, router => router.throttle(operation).await)
    }

    /// Every throttle that has been set or reported (for the metrics).
    pub async fn throttles(&self) -> Result<Vec<throttle::Throttle>> {
        on_router!(self, router => router.throttles().await)
    }

    /// Changes an operation's throttle; a running operation follows before its next batch.
    pub async fn change_throttle(
        &self,
        operation: throttle::Operation,
        change: throttle::ThrottleChange,
        actor: &str,
    ) -> Result<throttle::Throttle> {
        on_router!(self, router => router.change_throttle(operation, change, actor).await)
    }

    /// What a running operation reports: why it waits (`None`: it runs), the lag it saw.
    pub async fn report_throttle(
        &self,
        operation: throttle::Operation,
        throttled: Option<&str>,
        lag_ms: Option<i64>,
    ) -> Result<()> {
        on_router!(self, router => router.report_throttle(operation, throttled, lag_ms).await)
    }

    /// Takes the bulk operations' lease for `operation` as `holder` (unique per run); refused
    /// with [`StorageError::Leased`] while another holder's heartbeat is younger than `grace`,
    /// unless that holder is `dead` (its process is known to be gone).
    pub async fn take_lease(
        &self,
        operation: &str,
        holder: &str,
        grace: std::time::Duration,
        dead: Option<&str>,
    ) -> Result<lease::LeaseTaken> {
        on_router!(self, router => router.take_lease(operation, holder, grace, dead).await)
    }

    /// Renews the lease's heartbeat; `false` once another run took it over.
    pub async fn renew_lease(&self, holder: &str) -> Result<bool> {
        on_router!(self, router => router.renew_lease(holder).await)
    }

    pub async fn release_lease(&self, holder: &str) -> Result<()> {
        on_router!(self, router => router.release_lease(holder).await)
    }

    /// Who holds the bulk operations' lease now, if anyone.
    pub async fn lease_holder(&self) -> Result<Option<lease::LeaseHolder>> {
        on_router!(self, router => router.lease_holder().await)
    }

    /// The primary's client backends running a statement now (this one not counted).
    pub async fn active_backends(&self) -> Result<i64> {
        on_router!(self, router => router.active_backends().await)
    }

    pub fn backend_name(&self) -> &'static str {
        match self.0 {
            Backends::Postgres(_) => "postgres",
            Backends::Sqlite(_) => "sqlite",
        }
    }

    /// Applies the schema migrations that are not applied yet; the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        on_router!(self, router => router.backend().migrate().await)
    }

    /// What `migrate` finds and will do, changing nothing: where our tables are, the legacy
    /// tables, the marketplace's own unified tables and the foreign keys into them, and why it
    /// would refuse (PostgreSQL; an SQLite file is this service's own).
    pub async fn migration_plan(&self) -> Result<monolith::Plan> {
        match &self.0 {
            Backends::Postgres(router) => router.backend().migration_plan().await,
            Backends::Sqlite(router) => Ok(monolith::Plan {
                ours: format!(
                    "this SQLite file: {} migration(s) pending",
                    router
                        .backend()
                        .migrations()
                        .await?
                        .iter()
                        .filter(|m| !m.applied)
                        .count()
                ),
                ..monolith::Plan::default()
            }),
        }
    }

    /// Applies up to `limit` changes captured from writes that bypassed the service (the
    /// marketplace's own SQL on the legacy tables) to unified; how many. See [`capture`].
    pub async fn apply_captured(&self, limit: i64) -> Result<usize> {
        on_router!(self, router => router.apply_captured(limit).await)
    }

    /// Gives up to `limit` committed changes their place in the change feed; how many.
    pub async fn sequence_changes(&self, limit: i64) -> Result<u64> {
        on_router!(self, router => router.sequence_changes(limit).await)
    }

    /// Who still uses the legacy tables: direct writes captured lately, PostgreSQL's counters
    /// per table, and the sessions other than this service's that name them.
    pub async fn legacy_usage(&self) -> Result<usage::LegacyUsage> {
        let status = self.capture_status().await?;
        let mut usage = on_router!(self, router => router.legacy_usage().await)?;
        usage.direct_writes_last_hour = status.direct_last_hour;
        usage.direct_writes_last_day = status.direct_last_day;
        usage.last_direct_write_at = status.last_direct_at;
        Ok(usage)
    }

    /// Whether changes wait to be sequenced or applied (a cheap read for an idle loop).
    pub async fn changes_pending(&self) -> Result<bool> {
        on_router!(self, router => router.changes_pending().await)
    }

    /// Up to `limit` changes of the feed after position `after`, in order.
    pub async fn changes_after(&self, after: i64, limit: i64) -> Result<Vec<capture::Change>> {
        on_router!(self, router => router.changes_after(after, limit).await)
    }

    /// How far capture and the change feed are behind; direct writes lately.
    pub async fn capture_status(&self) -> Result<capture::CaptureStatus> {
        on_router!(self, router => router.capture_status().await)
    }

    /// Removes delivered and applied changes older than `retention`; how many.
    pub async fn prune_changes(&self, retention: std::time::Duration) -> Result<u64> {
        on_router!(self, router => router.prune_changes(retention).await)
    }

    /// Drops the views in `public` that moving an earlier layout left for older binaries (the
    /// contract step, once none runs); the views dropped.
    pub async fn drop_public_views(&self) -> Result<Vec<String>> {
        match &self.0 {
            Backends::Postgres(router) => router.backend().drop_public_views().await,
            Backends::Sqlite(_) => Ok(Vec::new()),
        }
    }

    /// Reverts the last `steps` migrations. A step that drops a table holding rows is
    /// refused unless `allow_data_loss`, and every step while the legacy tables are archived;
    /// the legacy tables are never dropped (their down migration does nothing).
    pub async fn migrate_down(&self, steps: usize, allow_data_loss: bool) -> Result<Vec<i64>> {
        on_router!(self, router => {
            let mut conn = router.backend().admin_pool().acquire().await?;
            let mut versions: Vec<i64> = conn
                .list_applied_migrations()
                .await?
                .iter()
                .map(|m| m.version)
                .collect();
            versions.sort_unstable();
            if versions.contains(&UNIFIED_TABLES) && router.archived().await? {
                return Err(StorageError::Conflict(
                    "the legacy tables are archived: reverting migrations now would lose the archive's \
                     evidence and the unified data that alone is current; run restore-archive first"
                        .into(),
                ));
            }
            let mut holding = Vec::new();
            for version in versions.iter().rev().take(steps) {
                for table in tables_dropped_by(*version) {
                    let rows = router.count_rows(table).await?;
                    if rows > 0 {
                        holding.push(format!("{table} ({rows} rows)"));
                    }
                }
            }
            if !holding.is_empty() && !allow_data_loss {
                return Err(StorageError::Conflict(format!(
                    "reverting {steps} migration(s) drops tables that hold data: {}; \
                     pass --allow-data-loss if that is what you want",
                    holding.join(", ")
                )));
            }
            router.backend().migrate_down(steps).await
        })
    }

    /// Readiness: the database answers and every migration is applied.
    pub async fn ready(&self) -> Result<bool> {
        Ok(self.pending_migrations().await? == 0)
    }

    /// Embedded migrations not applied to the database yet.
    pub async fn pending_migrations(&self) -> Result<usize> {
        Ok(self
            .migrations()
            .await?
            .iter()
            .filter(|m| !m.applied)
            .count())
    }

    /// Every migration this binary has, in order, and whether the database applied it.
    pub async fn migrations(&self) -> Result<Vec<MigrationInfo>> {
        on_router!(self, router => router.backend().migrations().await)
    }

    /// A category with attributes and a listing with values, as the database holds them now
    /// (unified first, else legacy): real ids for checks of a running service.
    pub async fn sample_ids(&self) -> Result<(Option<i64>, Option<i64>)> {
        on_router!(self, router => router.sample_ids().await)
    }

    /// Unified values whose listing, product or variant does not exist.
    pub async fn orphaned_values(&self) -> Result<i64> {
        on_router!(self, router => router.orphaned_values().await)
    }

    /// Removes the unified values of entities the marketplace deleted (with `dry_run`, counts
    /// them); per kind.
    pub async fn sweep_orphans(&self, dry_run: bool) -> Result<verify::Orphans> {
        on_router!(self, router => router.sweep_orphans(dry_run).await)
    }

    /// The id of the category a slug names, if any.
    pub async fn category_by_slug(&self, slug: &str) -> Result<Option<i64>> {
        on_router!(self, router => router.category_by_slug(slug).await)
    }

    pub async fn category_schema(
        &self,
        category_id: i64,
        route: ReadRoute,
    ) -> Result<Read<EffectiveSchema>> {
        on_router!(self, router => router.category_schema(category_id, route).await)
    }

    pub async fn entity_values(
        &self,
        entity: EntityRef,
        route: ReadRoute,
    ) -> Result<Read<EntityValues>> {
        on_router!(self, router => router.entity_values(entity, route).await)
    }

    /// Validates and replaces all values of an entity in the stores `mode` names, atomically.
    pub async fn replace_values(
        &self,
        entity: EntityRef,
        input: &Map<String, Json>,
        mode: WriteMode,
    ) -> Result<EntityValues> {
        Ok(self
            .write_values(entity, ValuesChange::Replace(input), mode)
            .await?
            .data)
    }

    /// Replaces or merges an entity's values in the stores `mode` names, atomically, for a
    /// backend service (any entity).
    pub async fn write_values(
        &self,
        entity: EntityRef,
        change: ValuesChange<'_>,
        mode: WriteMode,
    ) -> Result<Written<EntityValues>> {
        self.write_values_as(entity, change, mode, ValueWriter::Service)
            .await
    }

    /// As [`Storage::write_values`], for `writer`: a user writes only what they own
    /// ([`StorageError::Forbidden`] otherwise, nothing written).
    pub async fn write_values_as(
        &self,
        entity: EntityRef,
        change: ValuesChange<'_>,
        mode: WriteMode,
        writer: ValueWriter,
    ) -> Result<Written<EntityValues>> {
        self.stamped(on_router!(self, router => fenced(mode, |mode| router.write_values(entity, change, mode, writer)).await)).await
    }

    /// Whether this service set the database up before, and how many of the marketplace's
    /// legacy attribute tables it holds: read before any migration, to refuse a database
    /// nobody meant.
    pub async fn contents(&self) -> Result<location::Contents> {
        on_router!(self, router => router.contents().await)
    }

    /// The owner of `entity` now, unlocked (`None`: no such entity; `Some(None)`: no owner
    /// known). A user's write is decided again on locked rows when it commits.
    pub async fn owner_now(&self, entity: EntityRef) -> Result<Option<Option<i64>>> {
        on_router!(self, router => router.owner_now(entity).await)
    }

    /// Values of many listings at once (one statement); unknown ids are absent.
    pub async fn listing_values_batch(
        &self,
        ids: &[i64],
        route: ReadRoute,
    ) -> Result<Read<HashMap<i64, EntityValues>>> {
        on_router!(self, router => router.listing_values_batch(ids, route).await)
    }

    /// Every attribute definition of the routed store.
    pub async fn catalog(&self, route: ReadRoute) -> Result<Read<Vec<Attribute>>> {
        on_router!(self, router => router.catalog(route).await)
    }

    /// min/max/count of number attributes over the listings of a category's subtree.
    pub async fn ranges(
        &self,
        category_id: i64,
        route: ReadRoute,
    ) -> Result<Read<Vec<AttributeRange>>> {
        on_router!(self, router => router.ranges(category_id, route).await)
    }

    pub async fn create_attribute(
        &self,
        draft: AttributeDraft,
        mode: WriteMode,
    ) -> Result<Written<Attribute>> {
        self.stamped(on_router!(self, router => fenced(mode, |mode| router.create_attribute(draft.clone(), mode)).await)).await
    }

    pub async fn update_attribute(
        &self,
        id: i64,
        draft: AttributeDraft,
        mode: WriteMode,
    ) -> Result<Written<Attribute>> {
        self.stamped(on_router!(self, router => fenced(mode, |mode| router.update_attribute(id, draft.clone(), mode)).await)).await
    }

    pub async fn delete_attribute(&self, id: i64, mode: WriteMode) -> Result<Written<()>> {
        self.stamped(on_router!(self, router => fenced(mode, |mode| router.delete_attribute(id, mode)).await)).await
    }

    pub async fn put_binding(
        &self,
        category_id: i64,
        draft: BindingDraft,
        mode: WriteMode,
    ) -> Result<Written<CategoryBinding>> {
        self.stamped(on_router!(self, router => fenced(mode, |mode| router.put_binding(category_id, draft.clone(), mode)).await)).await
    }

    pub async fn delete_binding(
        &self,
        category_id: i64,
        attribute_id: i64,
        mode: WriteMode,
    ) -> Result<Written<()>> {
        self.stamped(on_router!(self, router => fenced(mode, |mode| router.delete_binding(category_id, attribute_id, mode)).await)).await
    }

    /// Connections of the pool: (open, idle).
    pub fn pool_connections(&self) -> (u32, usize) {
        on_router!(self, router => router.backend().connections())
    }

    /// A listener for other replicas' invalidations (PostgreSQL); `None` on SQLite, which
    /// one process owns.
    pub async fn invalidation_listener(&self) -> Result<Option<InvalidationListener>> {
        match &self.0 {
            Backends::Postgres(router) => {
                let pool = router.backend().admin_pool().clone();
                let listener = InvalidationListener::listen(&pool).await?;
                // Nothing committed before this process listened was heard: its reads wait
                // for a replica that replayed at least the position the primary has now
                // (until here they all went to the primary, see `ReplicaSet::new`).
                if let Some(replicas) = router.backend().replicas() {
                    let lsn = router.backend().primary_position().await?;
                    replicas.freshness.resumed(lsn);
                }
                Ok(Some(InvalidationListener {
                    listener,
                    pool,
                    replicas: router.backend().replicas().cloned(),
                    flags_changed: false,
                    lost: false,
                }))
            }
            Backends::Sqlite(_) => Ok(None),
        }
    }

    /// Changes the runtime flags after checking the guardrails; see the router.
    pub async fn change_flags(
        &self,
        current: flags::Flags,
        actor: &str,
        change: impl FnOnce(flags::Flags) -> flags::Flags,
    ) -> Result<FlagChange> {
        on_router!(self, router => router.change_flags(current, actor, change).await)
    }

    /// Applies a change of the environment's flags since the last start as a runtime change
    /// (see [`flag_store::EnvironmentFlags`]).
    pub async fn adopt_environment(
        &self,
        raw: &flags::RawFlags,
        configured: flags::Flags,
        actor: &str,
    ) -> Result<flag_store::EnvironmentFlags> {
        on_router!(self, router => router.adopt_environment(raw, configured, actor).await)
    }

    /// The flags of the last runtime change; `None` before the first.
    pub async fn stored_flags(&self) -> Result<Option<StoredFlags>> {
        on_router!(self, router => router.stored_flags().await)
    }

    /// The latest flag changes, newest first.
    pub async fn flag_audit(&self, limit: i64) -> Result<Vec<FlagAuditEntry>> {
        on_router!(self, router => router.flag_audit(limit).await)
    }

    /// Moves the legacy attribute tables to the archive, with a manifest; see the router.
    pub async fn archive(&self, configured: flags::Flags) -> Result<archive::Manifest> {
        self.archive_after(configured, &soak::Soak::default()).await
    }

    /// [`Storage::archive`] once the unified phase has soaked (`soak`), or with the soak
    /// waived (who and why go into the manifest): what the `archive` command runs.
    pub async fn archive_after(
        &self,
        configured: flags::Flags,
        soak: &soak::Soak,
    ) -> Result<archive::Manifest> {
        on_router!(self, router => router.archive(configured, soak, false).await)
    }

    /// What `archive` would do now, changing nothing: refused for the same reasons, or the
    /// manifest of what would move (action `dry-run`).
    pub async fn archive_dry_run(
        &self,
        configured: flags::Flags,
        soak: &soak::Soak,
    ) -> Result<archive::Manifest> {
        on_router!(self, router => router.archive(configured, soak, true).await)
    }

    /// Moves the archived legacy tables back; returns the manifest and whether the archive
    /// held what the archive manifest recorded.
    pub async fn restore_archive(
        &self,
        configured: flags::Flags,
    ) -> Result<(archive::Manifest, bool)> {
        on_router!(self, router => router.restore_archive(configured).await)
    }

    /// Refreshes the planner's statistics of the unified values (the backfill calls it as the
    /// table grows, so its batches keep using the indexes).
    pub async fn analyze_unified_values(&self) -> Result<()> {
        on_router!(self, router => router.analyze_unified_values().await)
    }

    /// Quarantined legacy values counted by entity kind and reason, most common first.
    pub async fn quarantine_by_reason(&self, limit: i64) -> Result<Vec<backfill::QuarantineCount>> {
        on_router!(self, router => router.quarantine_by_reason(limit).await)
    }

    /// The quarantine with its totals, grouped by attribute, value as users saw it and reason,
    /// most common first (`attribute`: one attribute's only).
    pub async fn quarantine(
        &self,
        attribute: Option<&str>,
        limit: i64,
    ) -> Result<quarantine::QuarantineListing> {
        on_router!(self, router => router.quarantine_listing(attribute, limit).await)
    }

    /// Quarantined values users see in legacy reads that no operator resolved or accepted:
    /// what holds up unified reads without fallback, by attribute and kind.
    pub async fn unsettled_quarantine(&self) -> Result<Vec<quarantine::UnsettledCount>> {
        on_router!(self, router => router.unsettled_quarantine().await)
    }

    /// Accepts that unified reads go without the quarantined values `filter` names (`undo`:
    /// takes that back); audited. `all` is needed when the filter names nothing.
    pub async fn accept_quarantined(
        &self,
        filter: &quarantine::AcceptFilter,
        all: bool,
        note: Option<&str>,
        actor: &str,
        undo: bool,
    ) -> Result<resolve::Resolution> {
        on_router!(self, router => router.accept_quarantined(filter, all, note, actor, undo).await)
    }

    /// Registers `alias` as another spelling of `option` of `attribute` (audited); it takes
    /// effect at once for reads and writes, and for quarantined values at the next
    /// `backfill --retry-quarantine`.
    pub async fn add_alias(
        &self,
        attribute: &str,
        alias: &str,
        option: &str,
        actor: &str,
        mode: WriteMode,
        dry_run: bool,
    ) -> Result<Written<resolve::Resolution>> {
        self.stamped(on_router!(self, router => router.add_alias(attribute, alias, option, actor, mode, dry_run).await)).await
    }

    /// Adds an option to `attribute` in every store `mode` writes (audited).
    pub async fn add_option(
        &self,
        attribute: &str,
        value: &str,
        label: domain::LocalizedText,
        actor: &str,
        mode: WriteMode,
        dry_run: bool,
    ) -> Result<Written<resolve::Resolution>> {
        self.stamped(on_router!(self, router => fenced(mode, |mode| router.add_option(attribute, value, label.clone(), actor, mode, dry_run)).await)).await
    }

    /// Moves quarantined listing values of `from` to attribute `to` and migrates them again
    /// (audited).
    pub async fn move_values(
        &self,
        request: &resolve::MoveRequest,
        actor: &str,
        mode: WriteMode,
    ) -> Result<Written<(resolve::Resolution, resolve::MoveReport)>> {
        self.stamped(on_router!(self, router => fenced(mode, |mode| router.move_values(request, actor, mode)).await)).await
    }

    /// Takes resolution `id` back while nothing was written on top of it (audited as an
    /// `undo`); repeating it answers the earlier undo.
    pub async fn undo_resolution(
        &self,
        id: i64,
        actor: &str,
        mode: WriteMode,
    ) -> Result<Written<resolve::Resolution>> {
        self.stamped(on_router!(self, router => fenced(mode, |mode| router.undo_resolution(id, actor, mode)).await)).await
    }

    /// The quarantine's resolutions, newest first.
    pub async fn resolutions(&self, limit: i64) -> Result<Vec<resolve::Resolution>> {
        on_router!(self, router => router.resolutions(limit).await)
    }

    /// Where the backfill of each entity kind stands (kinds never started are absent).
    pub async fn backfill_progress(&self) -> Result<Vec<backfill::Progress>> {
        on_router!(self, router => router.backfill_progress().await)
    }

    /// The manifest of the last archive or restore.
    pub async fn last_archive_manifest(&self) -> Result<Option<archive::Manifest>> {
        on_router!(self, router => router.last_manifest().await)
    }

    pub async fn migration_counts(&self) -> Result<MigrationCounts> {
        on_router!(self, router => router.migration_counts().await)
    }

    /// Copies every legacy definition and binding to the unified tables (bindings of
    /// categories or attributes that do not exist go to the quarantine). Idempotent.
    pub async fn backfill_definitions(&self) -> Result<backfill::Definitions> {
        on_router!(self, router => router.backfill_definitions().await)
    }

    /// The legacy definitions by code: the rules the backfill holds legacy values to.
    pub async fn backfill_catalog(&self) -> Result<std::collections::HashMap<String, Attribute>> {
        if on_router!(self, router => router.archived().await)? {
            return Err(StorageError::Conflict(
                "the legacy tables are archived: there is nothing to migrate from; run \
                 restore-archive first"
                    .into(),
            ));
        }
        let mut catalog: std::collections::HashMap<String, Attribute> = self
            .catalog(ReadRoute::new(flags::Store::Legacy, false))
            .await?
            .data
            .into_iter()
            .map(|attribute| (attribute.code.clone(), attribute))
            .collect();
        // The definitions that exist only in the marketplace's own unified tables hold their
        // values to the rules the definitions step copied.
        for attribute in self
            .catalog(ReadRoute::new(flags::Store::Unified, false))
            .await?
            .data
        {
            if monolith::is_its_alone(attribute.id) {
                catalog.entry(attribute.code.clone()).or_insert(attribute);
            }
        }
        Ok(catalog)
    }

    /// Where the backfill of one entity kind stands (fresh with `restart`).
    pub async fn backfill_checkpoint(
        &self,
        kind: domain::EntityKind,
        restart: bool,
    ) -> Result<backfill::Checkpoint> {
        on_router!(self, router => router.checkpoint(kind, restart).await)
    }

    /// Migrates the next batch of entities of `kind`; see the router. `catalog` maps codes to
    /// the legacy definitions whose rules the values must pass.
    pub async fn backfill_batch(
        &self,
        kind: domain::EntityKind,
        checkpoint: &backfill::Checkpoint,
        limit: i64,
        catalog: &std::collections::HashMap<String, Attribute>,
    ) -> Result<backfill::Checkpoint> {
        on_router!(self, router => router.backfill_batch(kind, checkpoint, limit, catalog).await)
    }

    /// Migrates the next two batches of entities of `kind` side by side, committed in order
    /// (one on SQLite); see the router. The checkpoint after each batch committed.
    pub async fn backfill_two_batches(
        &self,
        kind: domain::EntityKind,
        checkpoint: &backfill::Checkpoint,
        limit: i64,
        catalog: &std::collections::HashMap<String, Attribute>,
    ) -> Result<Vec<backfill::Checkpoint>> {
        on_router!(self, router => router.backfill_two_batches(kind, checkpoint, limit, catalog).await)
    }

    /// Migrates again the next batch of entities of `kind` after `after` that have quarantined
    /// values; see the router. Returns (last entity done or `None`, migrated, still quarantined).
    pub async fn retry_quarantined(
        &self,
        kind: domain::EntityKind,
        after: i64,
        limit: i64,
        catalog: &std::collections::HashMap<String, Attribute>,
    ) -> Result<(Option<i64>, usize, usize)> {
        on_router!(self, router => router.retry_quarantined(kind, after, limit, catalog).await)
    }

    /// Compares every entity in both stores (quarantined values left out) and records the run.
    pub async fn verify(
        &self,
        page: i64,
        progress: impl FnMut(&verify::VerifyReport),
    ) -> Result<verify::VerifyReport> {
        on_router!(self, router => router.verify(page, None, progress).await)
    }

    /// Compares the first `per_kind` entities of each kind in both stores now, recording
    /// nothing: the spot check of a running migration.
    pub async fn verify_sample(&self, per_kind: i64) -> Result<verify::VerifyReport> {
        on_router!(self, router => router.verify(per_kind, Some(per_kind), |_| {}).await)
    }

    pub async fn last_verify(&self) -> Result<Option<verify::LastVerify>> {
        on_router!(self, router => router.last_verify().await)
    }

    /// Brings legacy up to date from unified (rollback after unified-only writes), merging;
    /// changes nothing when no unified-only write is pending; refused unless `mode` is
    /// dual-write. With `dry_run` nothing is committed. `between_batches` is awaited after
    /// each batch with the entities synced so far (progress, throttle).
    pub async fn sync_legacy(
        &self,
        mode: WriteMode,
        batch: i64,
        dry_run: bool,
        between_batches: impl AsyncFnMut(i64),
    ) -> Result<sync::SyncReport> {
        on_router!(self, router => router.sync_legacy(mode, batch, dry_run, between_batches).await)
    }

    /// Records that the flags in force send writes in `mode` (set from the environment at
    /// start-up, where no runtime change recorded it): the unified era begins or ends.
    pub async fn note_write_mode(&self, mode: WriteMode) -> Result<()> {
        on_router!(self, router => router.note_write_mode(mode).await)
    }

    pub async fn migration_state(&self) -> Result<MigrationState> {
        on_router!(self, router => router.migration_state().await)
    }

    /// Whether the legacy tables hold any attribute definition.
    pub async fn has_legacy_definitions(&self) -> Result<bool> {
        on_router!(self, router => router.has_legacy_definitions().await)
    }

    /// Loads `dataset` in legacy form (with the real data's defects), in one transaction.
    pub async fn seed_legacy(&self, dataset: &demo::Dataset) -> Result<()> {
        on_router!(self, router => router.seed_legacy(dataset).await)
    }

    /// Loads `dataset`'s definitions, bindings and values in unified form, in one
    /// transaction; its categories and entities must already exist.
    pub async fn seed_unified(&self, dataset: &demo::Dataset) -> Result<()> {
        on_router!(self, router => router.seed_unified(dataset).await)
    }
}

/// Receives the invalidations other replicas committed.
#[derive(Debug)]
pub struct InvalidationListener {
    listener: sqlx::postgres::PgListener,
    /// Where a new listening connection comes from after a loss.
    pool: sqlx::PgPool,
    /// With read replicas, each invalidation heard is recorded with the primary's position.
    replicas: Option<std::sync::Arc<replicas::ReplicaSet>>,
    /// A flags notification heard while draining invalidations, to report next.
    flags_changed: bool,
    /// The connection dropped since the last position was taken.
    lost: bool,
}

/// What the listener heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerEvent {
    Invalidate(Vec<Invalidation>),
    /// Another replica (or this one) changed the runtime flags: reload them.
    FlagsChanged,
    /// The connection dropped: notifications may have been missed. The next call reconnects.
    ConnectionLost,
    /// Listening again after a loss: every notification from here on is heard; what was
    /// missed committed before this.
    Resumed,
}

impl InvalidationListener {
    pub async fn next(&mut self) -> Result<ListenerEvent> {
        let event = self.receive().await;
        if let Err(_) | Ok(ListenerEvent::ConnectionLost) = &event {
            // Until the listener is back, an invalidation may be missed: reads stay on the primary.
            if let Some(replicas) = &self.replicas {
                replicas.freshness.lost();
            }
            self.lost = true;
        }
        event
    }

    async fn receive(&mut self) -> Result<ListenerEvent> {
        if self.lost {
            // A new connection, listening before anything else (the old one may be half dead,
            // and waiting for a notification would not tell when listening began again);
            // whatever was missed committed before this position.
            self.listener = Self::listen(&self.pool).await?;
            if let Some(replicas) = self.replicas.clone() {
                let lsn = self.primary_position().await?;
                replicas.freshness.resumed(lsn);
            }
            self.lost = false;
            return Ok(ListenerEvent::Resumed);
        }
        if std::mem::take(&mut self.flags_changed) {
            return Ok(ListenerEvent::FlagsChanged);
        }
        let Some(first) = self.listener.try_recv().await? else {
            return Ok(ListenerEvent::ConnectionLost);
        };
        if first.channel() == flag_store::FLAGS_CHANNEL {
            return Ok(ListenerEvent::FlagsChanged);
        }
        let mut invalidations = invalidation::parse_payload(first.payload());
        let Some(replicas) = self.replicas.clone() else {
            return Ok(ListenerEvent::Invalidate(invalidations));
        };
        // One position for all that arrived together: the primary's, now, is at or after
        // every commit whose notification was delivered.
        while let Some(more) = self.listener.next_buffered() {
            if more.channel() == flag_store::FLAGS_CHANNEL {
                self.flags_changed = true;
            } else {
                invalidations.extend(invalidation::parse_payload(more.payload()));
            }
        }
        let lsn = self.primary_position().await?;
        replicas.freshness.record(&invalidations, lsn);
        Ok(ListenerEvent::Invalidate(invalidations))
    }

    async fn listen(pool: &sqlx::PgPool) -> Result<sqlx::postgres::PgListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener
            .listen_all([invalidation::CHANNEL, flag_store::FLAGS_CHANNEL])
            .await?;
        Ok(listener)
    }

    /// Boxed: the listener runs in a spawned task, which must be `Send` for every lifetime.
    fn primary_position(&mut self) -> futures_util::future::BoxFuture<'_, Result<freshness::Lsn>> {
        Box::pin(async move {
            use sqlx::Row;
            let row =
                sqlx::Executor::fetch_one(&mut self.listener, replicas::PRIMARY_POSITION).await?;
            Ok(row.try_get::<i64, _>(0)? as freshness::Lsn)
        })
    }
}

/// The migration that creates the unified tables and `migration_state`.
pub(crate) const UNIFIED_TABLES: i64 = 20261126000002;

/// The tables whose data a migration's down step drops (for the evidence migration: the
/// table whose columns it drops). The legacy tables' down step drops nothing.
fn tables_dropped_by(version: i64) -> &'static [&'static str] {
    match version {
        UNIFIED_TABLES => &[
            "migration_state",
            "unified_attributes",
            "unified_category_attributes",
            "unified_attribute_values",
        ],
        20261126000003 => &["flag_state", "flag_audit"],
        20261126000004 => &["backfill_checkpoint", "backfill_quarantine"],
        20261126000005 => &["verify_runs"],
        20261126000006 => &["archive_manifests"],
        // Drops the recorded evidence of the migration's phases.
        20261130000007 => &["migration_state"],
        // Drops the operators' aliases and the record of their resolutions.
        20261130000009 => &["attribute_option_aliases", "quarantine_resolutions"],
        // Drops the operators' acceptances (the quarantine's columns).
        20261204000014 => &["backfill_quarantine"],
        // Drops which definitions came from the marketplace's own unified tables.
        20261204000015 => &["monolith_attributes"],
        // Drops the change feed consumers may not have read yet, and captured writes.
        20261204000016 => &["attribute_changes"],
        _ => &[],
    }
}

/// Runs a write decided under `mode`; when the flags changed between the decision and the
/// write's transaction, runs it once more under the flags in force (a second change answers
/// [`StorageError::StaleWriteMode`], which is transient).
async fn fenced<T, F, Fut>(mode: WriteMode, write: F) -> Result<T>
where
    F: Fn(WriteMode) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    match write(mode).await {
        Err(StorageError::StaleWriteMode { current, .. }) => write(current).await,
        other => other,
    }
}

/// Whether the database (`applied`: version, description) holds migrations `migrator` lacks
/// that are all additive — named `expand…` — so this binary may run beside the newer one that
/// applied them (blue/green): `Ok(true)`. `Ok(false)` when it holds none; an error naming them
/// when some are not additive.
fn unknown_migrations_are_additive(migrator: &Migrator, applied: &[(i64, String)]) -> Result<bool> {
    let unknown: Vec<&(i64, String)> = applied
        .iter()
        .filter(|(version, _)| !migrator.iter().any(|m| m.version == *version))
        .collect();
    let not_additive: Vec<String> = unknown
        .iter()
        .filter(|(_, description)| !description.starts_with("expand"))
        .map(|(version, description)| format!("{version} ({description})"))
        .collect();
    if !not_additive.is_empty() {
        return Err(StorageError::Conflict(format!(
            "the database has migrations this binary does not know and that are not marked additive \
             ('expand'): {}; run the binary that applied them",
            not_additive.join(", ")
        )));
    }
    if !unknown.is_empty() {
        tracing::warn!(
            migrations = ?unknown,
            "the database has newer additive migrations: running beside the binary that applied them"
        );
    }
    Ok(!unknown.is_empty())
}

/// Refuses a database whose legacy tables lack a column the service cannot do without, naming
/// each (the legacy tables are the marketplace's: `migrate` never alters them). Archived
/// tables are not looked at.
async fn check_legacy_schema<B: Backend>(pool: &sqlx::Pool<B::Db>) -> Result<()> {
    let mut conn = pool.acquire().await?;
    if crate::evidence::archived(B::dialect(&mut conn)).await? {
        return Ok(());
    }
    let missing =
        legacy::missing_columns(&crate::schema::legacy_columns(B::dialect(&mut conn)).await?);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StorageError::LegacySchema(missing.join(", ")))
    }
}

/// Reverts the last `steps` applied migrations of `migrator`.
async fn migrate_down<DB>(
    migrator: &Migrator,
    pool: &sqlx::Pool<DB>,
    steps: usize,
) -> Result<Vec<i64>>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    let mut versions: Vec<i64> = {
        let mut conn = pool.acquire().await?;
        conn.list_applied_migrations()
            .await?
            .iter()
            .map(|m| m.version)
            .collect()
    };
    versions.sort_unstable();
    let keep = versions.len().saturating_sub(steps);
    // `undo` reverts every applied migration above the target version.
    let target = if keep == 0 { 0 } else { versions[keep - 1] };
    migrator.undo(pool, target).await?;
    Ok(versions[keep..].iter().rev().copied().collect())
}

/// One of this binary's migrations, and whether the database applied it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// `migrator`'s up-migrations, each with whether the database applied it; none applied before
/// the ledger exists (`ledger_exists`, as the dialect looks: listing a ledger that is not there
/// is an error, and creating it here would change a database that is only being looked at).
async fn migrations<DB>(
    migrator: &Migrator,
    pool: &sqlx::Pool<DB>,
    ledger_exists: bool,
) -> Result<Vec<MigrationInfo>>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
{
    let applied = if ledger_exists {
        pool.acquire().await?.list_applied_migrations().await?
    } else {
        Vec::new()
    };
    Ok(migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| MigrationInfo {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.iter().any(|a| a.version == m.version),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_database_url_loses_every_password_it_carries() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/attrs",
                "postgres://app:***@db:5432/attrs",
            ),
            (
                "postgres://app@db/attrs?password=s3cret&sslmode=require",
                "postgres://app@db/attrs?password=***&sslmode=require",
            ),
            (
                "postgres://db/attrs?sslmode=verify-full&sslpassword=s3cret&user=app",
                "postgres://db/attrs?sslmode=verify-full&sslpassword=***&user=app",
            ),
            (
                "sqlite://unified-attributes.db",
                "sqlite://unified-attributes.db",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }
}
