//! Where this service's tables live on PostgreSQL: a schema of its own (`attributes` unless
//! configured), first on every connection's search path, with the marketplace's `public` after
//! it. The marketplace may hold tables of our names in `public` (its own half-migration): ours
//! never meet them, and our statements name our tables unqualified.
//!
//! Migrations run here rather than through sqlx's runner because three of them create the
//! marketplace's tables where a development database lacks them: those run with `public` as the
//! creation target, the rest with our schema. An installation of an earlier layout (our tables
//! in `public`) moves into the schema first, leaving a view of each table in `public` so that an
//! older binary still running beside this one keeps reading and writing (expand); `migrate
//! --drop-public-views` ends that once no older binary runs (contract).

use std::time::Instant;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::{Connection, PgConnection, PgPool};

use crate::error::{Result, StorageError};

/// Our schema when the settings name none.
pub const DEFAULT_SCHEMA: &str = "attributes";

pub(crate) use crate::legacy::MARKETPLACE_SCHEMA;

/// Migrations that create or alter the marketplace's tables (created only where absent, on a
/// development database): they run with the marketplace's schema as the creation target.
const MARKETPLACE_SIDE: [i64; 3] = [20261126000001, 20261130000008, 20261130000010];

/// Schemas that belong to PostgreSQL or to the marketplace's archives, never ours.
const RESERVED: [&str; 3] = ["information_schema", "legacy_archive", "archive_legacy"];

/// The configured schema, checked: a plain lower-case identifier (it is spliced into DDL and
/// into every connection's search path), not one of PostgreSQL's or an archive's.
pub(crate) fn checked_schema(name: Option<&str>) -> Result<String> {
    let name = name.unwrap_or(DEFAULT_SCHEMA);
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain || name.starts_with("pg_") || RESERVED.contains(&name) {
        return Err(StorageError::Configuration(format!(
            "database schema '{name}' is not usable: give a lower-case identifier (letters, digits, \
             '_'; at most 63), not 'pg_…', {}",
            RESERVED.join(", ")
        )));
    }
    Ok(name.to_owned())
}

/// The search path of every connection: our schema, then the marketplace's.
pub(crate) fn search_path(schema: &str) -> String {
    if schema == MARKETPLACE_SCHEMA {
        MARKETPLACE_SCHEMA.to_owned()
    } else {
        format!("{schema},{MARKETPLACE_SCHEMA}")
    }
}

/// What `migrate` did to an installation of the earlier layout, if it found one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    pub schema: String,
    pub tables: Vec<String>,
}

/// Applies the pending migrations into `schema`, moving an earlier layout first; returns the
/// versions applied. Holds sqlx's advisory lock throughout, so two processes migrating at once
/// take turns.
pub(crate) async fn migrate(pool: &PgPool, migrator: &Migrator, schema: &str) -> Result<Vec<i64>> {
    let mut conn = pool.acquire().await?;
    conn.lock().await?;
    let outcome = migrate_locked(&mut conn, migrator, schema).await;
    conn.unlock().await?;
    outcome
}

async fn migrate_locked(
    conn: &mut PgConnection,
    migrator: &Migrator,
    schema: &str,
) -> Result<Vec<i64>> {
    if let Some(refusal) = crate::monolith::refusal(conn, schema).await? {
        return Err(StorageError::Conflict(refusal));
    }
    relocate_earlier_layout(conn, schema).await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut *conn)
        .await?;
    conn.ensure_migrations_table().await?;
    if let Some(version) = conn.dirty_version().await? {
        return Err(sqlx::migrate::MigrateError::Dirty(version).into());
    }
    let ledger: Vec<(i64, String, Vec<u8>)> =
        sqlx::query_as("SELECT version, description, checksum FROM _sqlx_migrations")
            .fetch_all(&mut *conn)
            .await?;
    let described: Vec<(i64, String)> = ledger
        .iter()
        .map(|(version, description, _)| (*version, description.clone()))
        .collect();
    crate::unknown_migrations_are_additive(migrator, &described)?;
    let mut applied = Vec::new();
    for migration in migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
    {
        match ledger
            .iter()
            .find(|(version, ..)| *version == migration.version)
        {
            Some((_, _, checksum)) if *checksum != *migration.checksum => {
                return Err(sqlx::migrate::MigrateError::VersionMismatch(migration.version).into());
            }
            Some(_) => {}
            None if MARKETPLACE_SIDE.contains(&migration.version) => {
                apply_on_marketplace_side(conn, migration, schema).await?;
                applied.push(migration.version);
            }
            None => {
                conn.apply(migration).await?;
                applied.push(migration.version);
            }
        }
    }
    Ok(applied)
}

/// Runs a migration with the marketplace's schema as the creation target, and records it in
/// our ledger, in one transaction.
async fn apply_on_marketplace_side(
    conn: &mut PgConnection,
    migration: &sqlx::migrate::Migration,
    schema: &str,
) -> Result<()> {
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("SET LOCAL search_path TO {MARKETPLACE_SCHEMA}"))
        .execute(&mut *tx)
        .await?;
    sqlx::Executor::execute(&mut *tx, &*migration.sql).await?;
    sqlx::query(&format!(
        "INSERT INTO {schema}._sqlx_migrations
            (version, description, success, checksum, execution_time)
         VALUES ($1, $2, TRUE, $3, $4)"
    ))
    .bind(migration.version)
    .bind(&*migration.description)
    .bind(&*migration.checksum)
    .bind(i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether `public` holds our ledger as a table (not a view left for older binaries).
const LEDGER_IN_PUBLIC: &str = "SELECT EXISTS (SELECT 1 FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = '_sqlx_migrations' AND c.relkind = 'r')";

const TABLES_IN_PUBLIC: &str = "SELECT CAST(c.relname AS TEXT) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY($1)";

/// Moves an installation of the earlier layout (our ledger and tables in `public`) into
/// `schema`, in one transaction, leaving in `public` a view of each: a simple view reads and
/// writes through to its table (upserts and row locks included), so an older binary keeps
/// working until the views are dropped.
async fn relocate_earlier_layout(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Option<Relocation>> {
    if schema == MARKETPLACE_SCHEMA {
        return Ok(None);
    }
    let ledger_in_public: bool = sqlx::query_scalar(LEDGER_IN_PUBLIC)
        .fetch_one(&mut *conn)
        .await?;
    let ledger_here: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{schema}._sqlx_migrations"))
        .fetch_one(&mut *conn)
        .await?;
    if !ledger_in_public || ledger_here {
        return Ok(None);
    }
    // Ours only if our ledger in `public` recorded our unified tables: the marketplace's own
    // tools keep ledgers of other names.
    let ours: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM public._sqlx_migrations WHERE version = $1)",
    )
    .bind(crate::UNIFIED_TABLES)
    .fetch_one(&mut *conn)
    .await?;
    if !ours {
        return Ok(None);
    }
    let tables: Vec<String> = sqlx::query_scalar(TABLES_IN_PUBLIC)
        .bind(crate::our_tables::OUR_TABLES.map(str::to_owned).to_vec())
        .fetch_all(&mut *conn)
        .await?;
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut *tx)
        .await?;
    for table in &tables {
        sqlx::query(&format!("ALTER TABLE public.{table} SET SCHEMA {schema}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "CREATE VIEW public.{table} AS SELECT * FROM {schema}.{table}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::warn!(
        schema,
        tables = tables.len(),
        "moved this service's tables out of public (earlier layout); public keeps a view of each for older binaries"
    );
    Ok(Some(Relocation {
        schema: schema.to_owned(),
        tables,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_name_is_a_plain_identifier_of_our_own() {
        assert_eq!(checked_schema(None).expect("default"), "attributes");
        assert_eq!(checked_schema(Some("attrs_2")).expect("plain"), "attrs_2");
        assert_eq!(checked_schema(Some("public")).expect("public"), "public");
        for bad in [
            "",
            "Attributes",
            "1attrs",
            "attrs; DROP TABLE x",
            "pg_catalog",
            "information_schema",
            "archive_legacy",
            "legacy_archive",
            &"a".repeat(64),
        ] {
            assert!(checked_schema(Some(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_search_path_puts_ours_before_the_marketplace() {
        assert_eq!(search_path("attributes"), "attributes,public");
        assert_eq!(search_path("public"), "public");
    }
}
