//! Archiving the legacy tables once the unified store serves everything, and restoring them:
//! the tables move (nothing is copied or dropped), and a manifest of row counts and checksums
//! taken before and after each move is the evidence that nothing changed on the way. The
//! marketplace's own unified tables move with them when they were a source (`monolith`).

use flags::{Flags, Phase};

use crate::backend::Backend;
use crate::checksum::Checksum;
use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::{Result, StorageError};
use crate::invalidation::Invalidation;
use crate::router::Router;
use crate::stats::record_queries;

use serde::Serialize;

/// The legacy tables that only the attributes use; they move whole.
pub(crate) const MOVED_TABLES: [&str; 6] = [
    "category_attributes",
    "category_attribute_mapping",
    "listing_attribute_values",
    "product_variant_attributes",
    "product_variant_attribute_values",
    "attribute_option_translations",
];

/// `translations` is shared by the whole marketplace: only the attributes' rows move, into an
/// archive table of the same name.
pub(crate) const TRANSLATIONS: &str = "translations";
pub(crate) const ATTRIBUTE_TRANSLATIONS: &str =
    "entity_type IN ('attribute', 'product_variant_attribute')";

pub use crate::checksum::TableEvidence;

/// What a manifest records: the `action` column's CHECK, and the dry run nothing records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestAction {
    Archive,
    Restore,
    /// `archive --dry-run`: what an archive would record (its id 0).
    DryRun,
}

impl ManifestAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Archive => "archive",
            Self::Restore => "restore",
            Self::DryRun => "dry-run",
        }
    }
}

impl std::fmt::Display for ManifestAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ManifestAction {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl TryFrom<String> for ManifestAction {
    type Error = String;

    fn try_from(stored: String) -> std::result::Result<Self, String> {
        [Self::Archive, Self::Restore]
            .into_iter()
            .find(|action| action.as_str() == stored)
            .ok_or_else(|| format!("unknown archive manifest action '{stored}'"))
    }
}

/// What one `archive` or `restore-archive` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Manifest {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub action: ManifestAction,
    #[sqlx(try_from = "crate::rows::TimestampText")]
    pub recorded_at: String,
    pub phase: String,
    #[sqlx(json)]
    pub tables: Vec<TableEvidence>,
    /// An archive before the unified phase's soak: who waived it and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiver: Option<String>,
}

const SAVE_MANIFEST: Sql =
    Sql::same("INSERT INTO archive_manifests (action, phase, tables) VALUES ($1, $2, $3)");

const LAST_MANIFEST: Sql = Sql::same(
    "SELECT CAST(id AS BIGINT) AS id, action,
        CAST(recorded_at AS TEXT) AS recorded_at, phase, tables, waiver
    FROM archive_manifests ORDER BY id DESC LIMIT 1",
);

const MARK_ARCHIVED: &str =
    "UPDATE migration_state SET archived_at = CURRENT_TIMESTAMP WHERE id = 1";
const MARK_RESTORED: &str = "UPDATE migration_state SET archived_at = NULL WHERE id = 1";

/// Whether the last verify run was clean and finished after the last moment legacy could
/// have been written alone: the last change of flags away from the legacy phase (legacy-only
/// writes until then) and the end of the backfill. `$ts` makes timestamps comparable (SQLite
/// stores them as text in two formats).
macro_rules! verified_since_legacy_writes_sql {
    ($ts:literal) => {
        concat!(
            "SELECT COALESCE((
                SELECT v.drifted = 0 AND ",
            $ts,
            "(v.finished_at) >= COALESCE((
                    SELECT MAX(b.at) FROM (
                        SELECT ",
            $ts,
            "(changed_at) AS at FROM flag_audit WHERE old_phase = 'legacy'
                        UNION ALL
                        SELECT ",
            $ts,
            "(completed_at) AS at FROM backfill_checkpoint
                    ) b), ",
            $ts,
            "(v.finished_at))
                FROM verify_runs v ORDER BY v.id DESC LIMIT 1), false)"
        )
    };
}

const VERIFIED_SINCE_LEGACY_WRITES: Sql = Sql {
    pg: verified_since_legacy_writes_sql!(""),
    lite: verified_since_legacy_writes_sql!("julianday"),
};

/// Where a legacy table lives once archived: PostgreSQL moves it into its own schema under its
/// own name; SQLite has no schemas in one file, so the name carries a prefix.
fn archived_table(conn: &Dialect<'_>, table: &str) -> String {
    match conn {
        Dialect::Pg(_) => format!("legacy_archive.{table}"),
        Dialect::Lite(_) => format!("legacy_archive_{table}"),
    }
}

/// A statement that reads each row of `location` as text, for checksums: PostgreSQL spells
/// every column with `CAST(t AS TEXT)`; SQLite `quote`s each column, in column order.
async fn row_texts_sql(
    conn: Dialect<'_>,
    table: &str,
    location: &str,
    filter: Option<&str>,
) -> Result<String> {
    let filter = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
    let c = match conn {
        Dialect::Pg(_) => return Ok(format!("SELECT CAST(t AS TEXT) FROM {location} t{filter}")),
        Dialect::Lite(c) => c,
    };
    record_queries(1);
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
            .bind(location)
            .fetch_all(c)
            .await?;
    if columns.is_empty() {
        return Err(StorageError::Conflict(format!(
            "the legacy table {table} is missing (looked for {location})"
        )));
    }
    let row = columns
        .iter()
        .map(|column| format!("quote(\"{column}\")"))
        .collect::<Vec<_>>()
        .join(" || '|' || ");
    Ok(format!("SELECT {row} FROM {location}{filter}"))
}

/// The statements that move the legacy tables into the archive or back. PostgreSQL's `SET
/// SCHEMA` moves a table with its indexes, constraints and sequences, in place (their home is
/// the marketplace's schema); SQLite's `RENAME` keeps indexes and rewrites the foreign keys
/// that point at the table.
fn move_statements(conn: &Dialect<'_>, tables: &[&str], to_archive: bool) -> Vec<String> {
    let moves = tables.iter().map(|table| match conn {
        Dialect::Pg(_) => {
            let home = crate::legacy::MARKETPLACE_SCHEMA;
            if to_archive {
                format!("ALTER TABLE \"{home}\".{table} SET SCHEMA legacy_archive")
            } else {
                format!("ALTER TABLE legacy_archive.{table} SET SCHEMA \"{home}\"")
            }
        }
        Dialect::Lite(_) => {
            let archived = archived_table(conn, table);
            if to_archive {
                format!("ALTER TABLE {table} RENAME TO {archived}")
            } else {
                format!("ALTER TABLE {archived} RENAME TO {table}")
            }
        }
    });
    let schema = matches!(conn, Dialect::Pg(_))
        .then(|| "CREATE SCHEMA IF NOT EXISTS legacy_archive".to_owned());
    schema.into_iter().chain(moves).collect()
}

/// Whether the last verify run was clean and finished after legacy could last be written alone.
async fn verified_since_legacy_writes(conn: Dialect<'_>) -> Result<bool> {
    record_queries(1);
    Ok(on_dialect!(
        conn,
        VERIFIED_SINCE_LEGACY_WRITES,
        |c, statement| sqlx::query_scalar(statement).fetch_one(&mut *c).await?
    ))
}

/// Rows and checksums of the legacy tables, where they are (archived or not).
async fn table_evidence(mut conn: Dialect<'_>, archived: bool) -> Result<Vec<TableEvidence>> {
    use futures_util::TryStreamExt;
    let mut evidence = Vec::new();
    for table in MOVED_TABLES.into_iter().chain([TRANSLATIONS]) {
        let filter = (table == TRANSLATIONS && !archived).then_some(ATTRIBUTE_TRANSLATIONS);
        let location = if archived {
            archived_table(&conn, table)
        } else {
            table.to_owned()
        };
        let select = row_texts_sql(conn.reborrow(), table, &location, filter).await?;
        record_queries(1);
        let checksum = on_dialect!(conn.reborrow(), |c| {
            let mut checksum = Checksum::default();
            let mut rows = sqlx::query_scalar::<_, String>(&select).fetch(&mut *c);
            while let Some(text) = rows.try_next().await? {
                checksum.add(&text);
            }
            checksum
        });
        evidence.push(checksum.finish(table));
    }
    Ok(evidence)
}

/// Moves the legacy tables (and the attributes' rows of `translations`) into the archive or
/// back, and marks the migration state archived or not.
async fn move_legacy_tables(mut conn: Dialect<'_>, to_archive: bool) -> Result<()> {
    let archived_translations = archived_table(&conn, TRANSLATIONS);
    let mut statements = move_statements(&conn, &MOVED_TABLES, to_archive);
    if to_archive {
        statements.push(format!(
            "CREATE TABLE {archived_translations} AS SELECT * FROM {TRANSLATIONS} WHERE {ATTRIBUTE_TRANSLATIONS}"
        ));
        statements.push(format!(
            "DELETE FROM {TRANSLATIONS} WHERE {ATTRIBUTE_TRANSLATIONS}"
        ));
        statements.push(MARK_ARCHIVED.to_owned());
    } else {
        statements.push(format!(
            "INSERT INTO {TRANSLATIONS} SELECT * FROM {archived_translations}"
        ));
        statements.push(format!("DROP TABLE {archived_translations}"));
        statements.push(MARK_RESTORED.to_owned());
    }
    for statement in statements {
        record_queries(1);
        on_dialect!(conn.reborrow(), |c| {
            sqlx::query(&statement).execute(&mut *c).await?;
        });
    }
    Ok(())
}

async fn save_manifest(
    conn: Dialect<'_>,
    action: ManifestAction,
    phase: &str,
    tables: &[TableEvidence],
) -> Result<()> {
    record_queries(1);
    on_dialect!(conn, SAVE_MANIFEST, |c, statement| {
        sqlx::query(statement)
            .bind(action.as_str())
            .bind(phase)
            .bind(sqlx::types::Json(tables))
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

async fn last_manifest(conn: Dialect<'_>) -> Result<Option<Manifest>> {
    record_queries(1);
    Ok(on_dialect!(conn, LAST_MANIFEST, |c, statement| {
        sqlx::query_as(statement).fetch_optional(&mut *c).await?
    }))
}

impl<B: Backend> Router<B> {
    /// Moves the legacy attribute tables into the archive, in one transaction, with a
    /// manifest of their counts and checksums. Refused unless the flags in force (`configured`
    /// when none are stored) mean the unified phase and a clean verify ran after legacy could
    /// last be written alone. The move is checked: different evidence after it rolls back.
    pub(crate) async fn archive(
        &self,
        configured: Flags,
        soak: &crate::soak::Soak,
        dry_run: bool,
    ) -> Result<crate::archive::Manifest> {
        let mut tx = self.begin_write().await?;
        crate::evidence::lock_migration_state(B::dialect(&mut tx)).await?;
        let state = crate::evidence::migration_state(B::dialect(&mut tx)).await?;
        if state.archived {
            return Err(StorageError::Conflict(
                "the legacy tables are archived already".into(),
            ));
        }
        let flags = crate::stored_flags::load_flags(B::dialect(&mut tx))
            .await?
            .map_or(configured, |stored| stored.flags);
        // The archive ends legacy reads for good: what unified lacks must have been decided on.
        let phase = match flags.check_change(None, &state) {
            Ok(phase) => phase,
            Err(violation) => return Err(crate::quarantine::refusal::<B>(&mut tx, violation).await),
        };
        if phase != Phase::Unified {
            return Err(StorageError::Conflict(format!(
                "archiving needs the unified phase (dual-write off, every read unified, no fallback); \
                 the flags in force mean '{}'",
                phase.as_str()
            )));
        }
        if !verified_since_legacy_writes(B::dialect(&mut tx)).await? {
            return Err(StorageError::Conflict(
                "no clean verify since legacy was last written: run verify first".into(),
            ));
        }
        let waiver = crate::soak::check::<B>(&mut tx, soak).await?;
        // The marketplace's own unified tables move too when they were a source.
        let its_tables = crate::monolith::archived_tables::<B>(&mut tx, false).await?;
        let mut before = table_evidence(B::dialect(&mut tx), false).await?;
        before.extend(crate::monolith::evidence::<B>(&mut tx, &its_tables, false).await?);
        if dry_run {
            // Nothing moves: the transaction ends unwritten.
            return Ok(crate::archive::Manifest {
                id: 0,
                action: ManifestAction::DryRun,
                recorded_at: String::new(),
                phase: phase.as_str().into(),
                tables: before,
                waiver,
            });
        }
        move_legacy_tables(B::dialect(&mut tx), true).await?;
        crate::monolith::move_tables::<B>(&mut tx, &its_tables, true).await?;
        // The marketplace's unmodified readers find the legacy shape over unified.
        crate::legacy_views::create::<B>(&mut tx).await?;
        let mut after = table_evidence(B::dialect(&mut tx), true).await?;
        after.extend(crate::monolith::evidence::<B>(&mut tx, &its_tables, true).await?);
        ensure_same_evidence(&before, &after, "archiving")?;
        save_manifest(
            B::dialect(&mut tx),
            ManifestAction::Archive,
            phase.as_str(),
            &before,
        )
        .await?;
        if let Some(waiver) = &waiver {
            crate::soak::record_waiver::<B>(&mut tx, waiver).await?;
        }
        let manifest = last_manifest(B::dialect(&mut tx)).await?;
        crate::invalidation::notify(B::dialect(&mut tx), &[Invalidation::Everything]).await?;
        crate::stored_flags::notify_state_changed(B::dialect(&mut tx)).await?;
        tx.commit().await?;
        manifest.ok_or_else(|| StorageError::CorruptData("the archive manifest vanished".into()))
    }

    /// Moves the archived legacy tables back, in one transaction, with a manifest. Returns it
    /// and whether the archive still held what the last archive manifest recorded. Legacy is
    /// as it was when archived: after unified-only writes, `sync-legacy` brings it up to date
    /// (the guardrails keep reads off legacy until then).
    pub(crate) async fn restore_archive(
        &self,
        configured: Flags,
    ) -> Result<(crate::archive::Manifest, bool)> {
        let mut tx = self.begin_write().await?;
        crate::evidence::lock_migration_state(B::dialect(&mut tx)).await?;
        let state = crate::evidence::migration_state(B::dialect(&mut tx)).await?;
        if !state.archived {
            return Err(StorageError::Conflict(
                "nothing to restore: the legacy tables are not archived".into(),
            ));
        }
        let its_tables = crate::monolith::archived_tables::<B>(&mut tx, true).await?;
        let mut archived = table_evidence(B::dialect(&mut tx), true).await?;
        archived.extend(crate::monolith::evidence::<B>(&mut tx, &its_tables, true).await?);
        let recorded = last_manifest(B::dialect(&mut tx)).await?;
        let unchanged = recorded.as_ref().is_some_and(|manifest| {
            manifest.action == ManifestAction::Archive && manifest.tables == archived
        });
        crate::legacy_views::drop::<B>(&mut tx).await?;
        move_legacy_tables(B::dialect(&mut tx), false).await?;
        crate::monolith::move_tables::<B>(&mut tx, &its_tables, false).await?;
        let mut restored = table_evidence(B::dialect(&mut tx), false).await?;
        restored.extend(crate::monolith::evidence::<B>(&mut tx, &its_tables, false).await?);
        ensure_same_evidence(&archived, &restored, "restoring")?;
        let flags = crate::stored_flags::load_flags(B::dialect(&mut tx))
            .await?
            .map_or(configured, |stored| stored.flags);
        let phase = flags
            .check(&crate::evidence::migration_state(B::dialect(&mut tx)).await?)
            .map_or("none", Phase::as_str);
        save_manifest(
            B::dialect(&mut tx),
            ManifestAction::Restore,
            phase,
            &restored,
        )
        .await?;
        let manifest = last_manifest(B::dialect(&mut tx)).await?;
        crate::invalidation::notify(B::dialect(&mut tx), &[Invalidation::Everything]).await?;
        crate::stored_flags::notify_state_changed(B::dialect(&mut tx)).await?;
        tx.commit().await?;
        let manifest = manifest
            .ok_or_else(|| StorageError::CorruptData("the restore manifest vanished".into()))?;
        Ok((manifest, unchanged))
    }

    pub(crate) async fn last_manifest(&self) -> Result<Option<crate::archive::Manifest>> {
        let mut conn = self.acquire().await?;
        last_manifest(B::dialect(&mut conn)).await
    }
}

/// A move must carry every row unchanged; anything else rolls the move back.
fn ensure_same_evidence(
    before: &[crate::archive::TableEvidence],
    after: &[crate::archive::TableEvidence],
    what: &str,
) -> Result<()> {
    if before == after {
        Ok(())
    } else {
        Err(StorageError::CorruptData(format!(
            "{what} changed the tables' contents (before {before:?}, after {after:?}); nothing was moved"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_ignores_row_order_and_sees_any_change() {
        let rows = ["(1,a)", "(2,b)", "(3,c)"];
        let mut forward = Checksum::default();
        rows.iter().for_each(|row| forward.add(row));
        let mut backward = Checksum::default();
        rows.iter().rev().for_each(|row| backward.add(row));
        let mut changed = Checksum::default();
        ["(1,a)", "(2,B)", "(3,c)"]
            .iter()
            .for_each(|row| changed.add(row));
        let (forward, backward, changed) = (
            forward.finish("t"),
            backward.finish("t"),
            changed.finish("t"),
        );
        assert_eq!(forward, backward);
        assert_eq!(forward.rows, 3);
        assert_ne!(forward.checksum, changed.checksum);
    }
}
