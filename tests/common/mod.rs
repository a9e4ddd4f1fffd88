//! Test support shared by the integration suites: a fresh database per test on either
//! backend, and direct SQL access that bypasses the code under test.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod cluster;

use sqlx::{Connection, PgConnection, PgPool, SqlitePool};
use storage::Storage;
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The server that holds the test databases. PostgreSQL is required: a test that cannot
/// reach it fails, it is never skipped.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test; a PostgreSQL one is dropped when the test ends.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    _dir: Option<TempDir>,
    /// The PostgreSQL database to drop on drop (`None` for SQLite and for shared handles).
    owned_database: Option<String>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.owned_database.take() else {
            return;
        };
        // Drop runs inside the test's runtime: a thread of its own may block on another one.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&postgres_admin_url()).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
        // A database left behind is dropped by `.ci/run`; the test's verdict does not depend on it.
        let _ = dropped;
    }
}

impl TestDb {
    pub async fn fresh(backend: Backend) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        let name = format!(
            "ua_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        match backend {
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL is required for this test ({admin_url}): {e}")
                });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                Self {
                    backend,
                    url: format!("{base}/{name}"),
                    _dir: None,
                    owned_database: Some(name),
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/{name}.db", dir.path().display());
                Self {
                    backend,
                    url,
                    _dir: Some(dir),
                    owned_database: None,
                }
            }
        }
    }

    /// A PostgreSQL database the test does not own (its own server's, say): nothing is
    /// dropped at the end.
    pub fn at(url: String) -> Self {
        Self {
            backend: Backend::Postgres,
            url,
            _dir: None,
            owned_database: None,
        }
    }

    /// Another handle on the same database (for a second service process); the first keeps
    /// the SQLite file alive.
    pub fn share(&self) -> Self {
        Self {
            backend: self.backend,
            url: self.url.clone(),
            _dir: None,
            owned_database: None,
        }
    }

    /// The storage under test, connected and migrated.
    pub async fn storage(&self) -> Storage {
        let storage = Storage::connect(&self.url, storage::PoolSettings::new(5))
            .await
            .expect("connect storage");
        storage.migrate().await.expect("migrate");
        storage
    }

    /// The URL a test's own SQL connects with: on PostgreSQL its search path finds the
    /// service's tables in their schema first, as the service's connections do.
    pub fn sql_url(&self) -> String {
        match self.backend {
            Backend::Postgres => format!(
                "{}?options=-c%20search_path%3D{}%2Cpublic",
                self.url,
                storage::DEFAULT_SCHEMA
            ),
            Backend::Sqlite => self.url.clone(),
        }
    }

    /// Plain SQL on the test database, bypassing the code under test.
    pub async fn raw(&self) -> Raw {
        match self.backend {
            Backend::Postgres => Raw::Postgres(
                PgPool::connect(&self.sql_url())
                    .await
                    .expect("raw postgres"),
            ),
            Backend::Sqlite => {
                Raw::Sqlite(SqlitePool::connect(&self.url).await.expect("raw sqlite"))
            }
        }
    }
}

pub enum Raw {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Raw {
    pub async fn execute(&self, sql: &str) {
        match self {
            Raw::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            Raw::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row of a one-column query as text (`NULL` as `None`).
    pub async fn texts(&self, sql: &str) -> Vec<Option<String>> {
        match self {
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Makes the inserts into `table` whose new row matches `when` (a condition on `NEW`, the
    /// same in both dialects) fail with `message`, as a trigger of the marketplace's would.
    pub async fn refuse_inserts_into(&self, table: &str, when: &str, message: &str) {
        match self {
            Raw::Postgres(_) => {
                self.execute(&format!(
                    "CREATE FUNCTION refuse_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN IF {when} THEN RAISE EXCEPTION '{message}'; END IF; RETURN NEW; END $$;
                     CREATE TRIGGER refuse_inserts BEFORE INSERT ON {table}
                     FOR EACH ROW EXECUTE FUNCTION refuse_inserts();"
                ))
                .await
            }
            Raw::Sqlite(_) => {
                self.execute(&format!(
                    "CREATE TRIGGER refuse_inserts BEFORE INSERT ON {table} WHEN {when}
                     BEGIN SELECT RAISE(ABORT, '{message}'); END;"
                ))
                .await
            }
        }
    }

    /// Removes what [`Raw::refuse_inserts_into`] installed on `table`.
    pub async fn stop_refusing_inserts_into(&self, table: &str) {
        match self {
            Raw::Postgres(_) => {
                self.execute(&format!("DROP TRIGGER refuse_inserts ON {table}"))
                    .await
            }
            Raw::Sqlite(_) => self.execute("DROP TRIGGER refuse_inserts").await,
        }
    }

    /// Makes every insert into `table` fail, to force one half of a dual-write to fail.
    pub async fn fail_inserts_into(&self, table: &str) {
        match self {
            Raw::Postgres(_) => {
                self.execute(&format!(
                    "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'injected fault'; END $$;
                     CREATE TRIGGER injected_fault BEFORE INSERT OR UPDATE ON {table}
                     FOR EACH ROW EXECUTE FUNCTION injected_fault();"
                ))
                .await
            }
            Raw::Sqlite(_) => {
                self.execute(&format!(
                    "CREATE TRIGGER injected_fault BEFORE INSERT ON {table}
                     BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
                ))
                .await
            }
        }
    }
}

/// Runs the backfill of `kinds` in batches of `batch` until each is complete (or
/// `max_batches` ran), as the `backfill` subcommand does; returns the batches run (a kind ends
/// with one empty batch that marks it complete).
pub async fn run_backfill(
    storage: &Storage,
    kinds: &[domain::EntityKind],
    batch: i64,
    restart: bool,
    max_batches: Option<usize>,
) -> usize {
    storage.backfill_definitions().await.expect("definitions");
    let catalog = storage.backfill_catalog().await.expect("catalog");
    let mut batches = 0;
    for kind in kinds {
        let mut checkpoint = storage
            .backfill_checkpoint(*kind, restart)
            .await
            .expect("checkpoint");
        while !checkpoint.completed && max_batches.is_none_or(|max| batches < max) {
            checkpoint = storage
                .backfill_batch(*kind, &checkpoint, batch, &catalog)
                .await
                .expect("batch");
            batches += 1;
        }
    }
    batches
}

/// `quarantine accept --all`: the operator accepts that unified reads go without every
/// quarantined value users see.
pub async fn accept_all_quarantined(storage: &Storage) -> storage::resolve::Resolution {
    storage
        .accept_quarantined(
            &storage::quarantine::AcceptFilter::default(),
            true,
            None,
            "ops",
            false,
        )
        .await
        .expect("accepted")
}

impl Raw {
    /// (listing, code) of every accepted quarantined listing value.
    pub async fn accepted_listing_values(&self) -> std::collections::BTreeSet<(i64, String)> {
        self.texts(
            "SELECT entity_id || ' ' || attribute_code FROM backfill_quarantine
             WHERE entity_type = 'listing' AND accepted_at IS NOT NULL",
        )
        .await
        .into_iter()
        .flatten()
        .map(|line| {
            let (id, code) = line.split_once(' ').expect("id and code");
            (id.parse().expect("id"), code.to_owned())
        })
        .collect()
    }
}

/// The evidence unified reads need, gathered as an operator does once dual-write is in force:
/// a complete backfill of every kind, then a clean verify.
pub async fn backfill_and_verify(storage: &Storage) {
    run_backfill(storage, &domain::EntityKind::ALL, 50, false, None).await;
    let report = storage.verify(50, |_| {}).await.expect("verify");
    assert!(report.is_clean(), "verify drifted: {:?}", report.drift);
}

/// The monolith's "save listing attributes": every row of the listing deleted, then one
/// multi-row insert with an upsert on `(listing_id, attribute_id)`, in one transaction.
pub fn monolith_save(listing: i64, rows: &[(i64, Option<&str>, Option<f64>)]) -> String {
    let values: Vec<String> = rows
        .iter()
        .map(|(attribute, text, number)| {
            format!(
                "({listing}, {attribute}, {}, {}, NULL, NULL, NULL)",
                text.map_or("NULL".to_owned(), |t| format!("'{t}'")),
                number.map_or("NULL".to_owned(), |n| n.to_string())
            )
        })
        .collect();
    format!(
        "BEGIN;
         DELETE FROM listing_attribute_values WHERE listing_id = {listing};
         INSERT INTO listing_attribute_values
             (listing_id, attribute_id, text_value, numeric_value, boolean_value, json_value, unit)
         VALUES {}
         ON CONFLICT (listing_id, attribute_id) DO UPDATE SET
             text_value = EXCLUDED.text_value, numeric_value = EXCLUDED.numeric_value,
             boolean_value = EXCLUDED.boolean_value, json_value = EXCLUDED.json_value,
             unit = EXCLUDED.unit;
         COMMIT;",
        values.join(", ")
    )
}
