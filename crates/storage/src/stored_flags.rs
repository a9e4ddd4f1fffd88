//! The runtime flags' rows: the stored set that overrides the environment, the environment the
//! last start saw, and the audit trail; loaded and saved on a connection of either dialect.

use flags::{Flags, RawFlags};
use serde::Serialize;

use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::Result;
use crate::stats::record_queries;

/// The channel replicas listen on for flag changes.
pub const FLAGS_CHANNEL: &str = "unified_attributes_flags";

/// The stored runtime flags and who set them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFlags {
    pub flags: Flags,
    pub updated_at: String,
    pub updated_by: String,
}

/// One change of the flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct FlagAuditEntry {
    pub id: i64,
    #[sqlx(try_from = "crate::rows::TimestampText")]
    pub changed_at: String,
    pub changed_by: String,
    #[sqlx(json)]
    pub old_flags: serde_json::Value,
    #[sqlx(json)]
    pub new_flags: serde_json::Value,
    pub old_phase: String,
    pub new_phase: String,
}

/// A change of the runtime flags, as audited.
#[derive(Debug, Clone)]
pub struct FlagChange {
    pub actor: String,
    pub old: Flags,
    pub new: Flags,
    pub old_phase: String,
    pub new_phase: String,
    /// The phase the new flags mean, as checked in the change's transaction.
    pub phase: flags::Phase,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FlagRow {
    pub use_unified: bool,
    pub unified_percent: i32,
    pub fallback: bool,
    pub dual_write: bool,
    pub shadow_percent: i32,
    #[sqlx(try_from = "crate::rows::TimestampText")]
    pub updated_at: String,
    pub updated_by: String,
}

impl FlagRow {
    pub(crate) fn into_stored(self) -> StoredFlags {
        let percent = |p: i32| u8::try_from(p.clamp(0, 100)).unwrap_or(100);
        StoredFlags {
            flags: Flags {
                use_unified: self.use_unified,
                unified_percent: percent(self.unified_percent),
                fallback: self.fallback,
                dual_write: self.dual_write,
                shadow_percent: percent(self.shadow_percent),
            },
            updated_at: self.updated_at,
            updated_by: self.updated_by,
        }
    }
}

const LOAD_FLAGS: Sql = Sql::same(
    "SELECT use_unified, CAST(unified_percent AS INTEGER) AS unified_percent, fallback,
        dual_write, CAST(shadow_percent AS INTEGER) AS shadow_percent,
        CAST(updated_at AS TEXT) AS updated_at, updated_by
    FROM flag_state WHERE id = 1",
);

const SAVE_FLAGS: Sql = Sql::same(
    "INSERT INTO flag_state
        (id, use_unified, unified_percent, fallback, dual_write, shadow_percent, updated_at, updated_by)
    VALUES (1, $1, $2, $3, $4, $5, CURRENT_TIMESTAMP, $6)
    ON CONFLICT (id) DO UPDATE SET use_unified = excluded.use_unified,
        unified_percent = excluded.unified_percent, fallback = excluded.fallback,
        dual_write = excluded.dual_write, shadow_percent = excluded.shadow_percent,
        updated_at = excluded.updated_at, updated_by = excluded.updated_by"
);

const LOAD_ENVIRONMENT: Sql = Sql::same(
    "SELECT use_unified, unified_percent, fallback, dual_write, shadow_percent
    FROM flag_environment WHERE id = 1",
);

const SAVE_ENVIRONMENT: Sql = Sql::same(
    "INSERT INTO flag_environment
        (id, use_unified, unified_percent, fallback, dual_write, shadow_percent, seen_at)
    VALUES (1, $1, $2, $3, $4, $5, CURRENT_TIMESTAMP)
    ON CONFLICT (id) DO UPDATE SET use_unified = excluded.use_unified,
        unified_percent = excluded.unified_percent, fallback = excluded.fallback,
        dual_write = excluded.dual_write, shadow_percent = excluded.shadow_percent,
        seen_at = excluded.seen_at",
);

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EnvironmentRow {
    pub use_unified: Option<String>,
    pub unified_percent: Option<String>,
    pub fallback: Option<String>,
    pub dual_write: Option<String>,
    pub shadow_percent: Option<String>,
}

impl EnvironmentRow {
    pub(crate) fn into_raw(self) -> RawFlags {
        RawFlags {
            use_unified: self.use_unified,
            unified_percent: self.unified_percent,
            fallback: self.fallback,
            dual_write: self.dual_write,
            shadow_percent: self.shadow_percent,
        }
    }
}

const INSERT_AUDIT: Sql = Sql::same(
    "INSERT INTO flag_audit (changed_by, old_flags, new_flags, old_phase, new_phase)
    VALUES ($1, $2, $3, $4, $5)",
);

const AUDIT: Sql = Sql::same(
    "SELECT CAST(id AS BIGINT) AS id, CAST(changed_at AS TEXT) AS changed_at, changed_by,
        old_flags, new_flags, old_phase, new_phase
    FROM flag_audit ORDER BY id DESC LIMIT $1",
);

/// The stored runtime flags, if a change was ever made.
pub(crate) async fn load_flags(conn: Dialect<'_>) -> Result<Option<StoredFlags>> {
    record_queries(1);
    let row: Option<FlagRow> = on_dialect!(conn, LOAD_FLAGS, |c, statement| {
        sqlx::query_as(statement).fetch_optional(&mut *c).await?
    });
    Ok(row.map(FlagRow::into_stored))
}

/// The flag variables the last start saw in its environment.
pub(crate) async fn load_environment(conn: Dialect<'_>) -> Result<Option<RawFlags>> {
    record_queries(1);
    let row: Option<EnvironmentRow> = on_dialect!(conn, LOAD_ENVIRONMENT, |c, statement| {
        sqlx::query_as(statement).fetch_optional(&mut *c).await?
    });
    Ok(row.map(EnvironmentRow::into_raw))
}

pub(crate) async fn save_environment(conn: Dialect<'_>, raw: &RawFlags) -> Result<()> {
    record_queries(1);
    on_dialect!(conn, SAVE_ENVIRONMENT, |c, statement| {
        sqlx::query(statement)
            .bind(raw.use_unified.as_deref())
            .bind(raw.unified_percent.as_deref())
            .bind(raw.fallback.as_deref())
            .bind(raw.dual_write.as_deref())
            .bind(raw.shadow_percent.as_deref())
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// Stores the new flags with their audit entry, and tells the other replicas once it commits.
pub(crate) async fn save_flags(mut conn: Dialect<'_>, change: &FlagChange) -> Result<()> {
    record_queries(2);
    let new = &change.new;
    on_dialect!(conn.reborrow(), SAVE_FLAGS, |c, statement| {
        sqlx::query(statement)
            .bind(new.use_unified)
            .bind(i32::from(new.unified_percent))
            .bind(new.fallback)
            .bind(new.dual_write)
            .bind(i32::from(new.shadow_percent))
            .bind(&change.actor)
            .execute(&mut *c)
            .await?;
    });
    on_dialect!(conn.reborrow(), INSERT_AUDIT, |c, statement| {
        sqlx::query(statement)
            .bind(&change.actor)
            .bind(sqlx::types::Json(&change.old))
            .bind(sqlx::types::Json(&change.new))
            .bind(&change.old_phase)
            .bind(&change.new_phase)
            .execute(&mut *c)
            .await?;
    });
    crate::notify::notify(conn, FLAGS_CHANNEL, "changed").await
}

/// Tells the other replicas the migration state changed (archive, restore), once it commits.
pub(crate) async fn notify_state_changed(conn: Dialect<'_>) -> Result<()> {
    crate::notify::notify(conn, FLAGS_CHANNEL, "state").await
}

pub(crate) async fn flag_audit(conn: Dialect<'_>, limit: i64) -> Result<Vec<FlagAuditEntry>> {
    record_queries(1);
    Ok(on_dialect!(conn, AUDIT, |c, statement| {
        sqlx::query_as(statement)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
    }))
}
