//! What each backend provides: its pools, transactions and migrations. The SQL operations live
//! in the module of their concern and run on a connection they are handed, as a
//! [`Dialect`](crate::dialect::Dialect) (a pooled connection or an open transaction), so the
//! router decides where transactions begin and commit, and a dual-write is atomic by
//! construction.

use std::future::Future;

use crate::error::Result;

pub(crate) type Conn<B> = <<B as Backend>::Db as sqlx::Database>::Connection;

pub(crate) trait Backend: Send + Sync + 'static {
    type Db: sqlx::Database;

    /// Whether write transactions may run side by side (PostgreSQL's row locks); SQLite has
    /// one writer at a time.
    const CONCURRENT_WRITERS: bool = false;

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
    /// one (see `pooler::Pooled`); `None` with a direct connection.
    fn pooled(&self) -> Option<&crate::pooler::Pooled> {
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
}
