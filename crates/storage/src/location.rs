//! Which database a command works on, said before it does anything, and what tells the
//! marketplace's database from an accidental one. An operator who forgot `DATABASE_URL` must
//! not get "backfill complete, 0 values migrated" from a file created on the spot.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::backend::Backend;
use crate::dialect::{Sql, on_dialect};
use crate::error::Result;
use crate::router::Router;
use crate::stats::record_queries;

/// The database a URL names, for the first line of a command: never its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// `user@host:port/database` and the schema of this service's tables.
    Postgres { address: String, schema: String },
    /// An SQLite file (or `:memory:`), and whether it exists before the command opens it.
    Sqlite { file: PathBuf, exists: bool },
}

impl Place {
    /// Where `url` points; `None` for a URL no backend takes (connecting says why).
    pub fn of(url: &str, schema: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).ok()?;
            let database = options.get_database().unwrap_or(options.get_username());
            Some(Self::Postgres {
                address: format!(
                    "{}@{}:{}/{database}",
                    options.get_username(),
                    options.get_host(),
                    options.get_port()
                ),
                schema: schema.to_owned(),
            })
        } else if url.starts_with("sqlite:") {
            let file = SqliteConnectOptions::from_str(url)
                .ok()?
                .get_filename()
                .to_owned();
            // An in-memory database is new every time, and no file is left behind.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let exists = in_memory || file.exists();
            Some(Self::Sqlite { file, exists })
        } else {
            None
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres { address, schema } => {
                write!(f, "PostgreSQL {address} (schema {schema})")
            }
            Self::Sqlite { file, exists } => write!(
                f,
                "SQLite file {}{}",
                file.display(),
                if *exists { "" } else { " (created now)" }
            ),
        }
    }
}

/// What a database holds of ours and of the marketplace's, before any migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contents {
    /// This service's migrations ledger is there: it was set up before.
    pub set_up: bool,
    /// How many of the marketplace's legacy attribute tables exist (where they are, or where
    /// an archive moved them).
    pub legacy_tables: i64,
}

impl Contents {
    /// Neither ours nor the marketplace's: a database nobody meant.
    pub fn is_foreign(&self) -> bool {
        !self.set_up && self.legacy_tables == 0
    }
}

/// The legacy tables whose presence makes a database the marketplace's: its categories'
/// attributes, their mapping and the listings' values. The archives are ours
/// (`legacy_archive`) and the monolith's (`archive_legacy`).
const CONTENTS: Sql = Sql {
    pg: "SELECT to_regclass('_sqlx_migrations') IS NOT NULL, (
            SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p')
              AND n.nspname IN ('public', 'legacy_archive', 'archive_legacy')
              AND c.relname IN ('category_attributes', 'category_attribute_mapping',
                                'listing_attribute_values'))",
    lite: "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations'), (
            SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN (
                'category_attributes', 'category_attribute_mapping', 'listing_attribute_values',
                'legacy_archive_category_attributes', 'legacy_archive_category_attribute_mapping',
                'legacy_archive_listing_attribute_values'))",
};

impl<B: Backend> Router<B> {
    pub(crate) async fn contents(&self) -> Result<Contents> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        let (set_up, legacy_tables) = on_dialect!(B::dialect(&mut conn), CONTENTS, |c, sql| {
            sqlx::query_as::<_, (bool, i64)>(sql)
                .fetch_one(&mut *c)
                .await?
        });
        conn.commit().await?;
        Ok(Contents {
            set_up,
            legacy_tables,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_place_names_user_host_port_database_and_schema_and_never_the_password() {
        let place = Place::of(
            "postgres://app:s3cret@db.internal:6432/market?sslmode=require&password=other",
            "attributes",
        )
        .expect("a PostgreSQL URL");
        let shown = place.to_string();
        assert_eq!(
            shown,
            "PostgreSQL app@db.internal:6432/market (schema attributes)"
        );
        assert!(!shown.contains("s3cret") && !shown.contains("other"));
    }

    #[test]
    fn an_sqlite_place_says_whether_opening_it_creates_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("attributes.db");
        let url = format!("sqlite://{}", path.display());
        let missing = Place::of(&url, "attributes").expect("an SQLite URL");
        assert!(matches!(missing, Place::Sqlite { exists: false, .. }));
        assert!(missing.to_string().ends_with("attributes.db (created now)"));
        std::fs::write(&path, b"").expect("create the file");
        let present = Place::of(&url, "attributes").expect("an SQLite URL");
        assert!(matches!(present, Place::Sqlite { exists: true, .. }));
        assert!(Place::of("mysql://x", "attributes").is_none());
    }
}
