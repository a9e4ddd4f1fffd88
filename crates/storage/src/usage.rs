//! Who still uses the legacy tables, so that the operator archives knowing who is left: the
//! writes that bypassed the service (captured, `capture`), PostgreSQL's counters of reads and
//! writes per legacy table since its statistics were last reset, and the sessions other than
//! this service's (by `application_name`; ours connect as `unified-attributes`) whose current
//! or last statement names a legacy table. PostgreSQL only: an SQLite file has no other user.

use serde::Serialize;

use crate::backend::{Backend, Conn};
use crate::dialect::Dialect;
use crate::error::Result;
use crate::stats::record_queries;

/// What this service's connections call themselves (`application_name`).
pub const APPLICATION_NAME: &str = "unified-attributes";

/// The legacy tables the marketplace's code reads and writes.
const WATCHED: [&str; 6] = [
    "category_attributes",
    "category_attribute_mapping",
    "listing_attribute_values",
    "product_variant_attributes",
    "storefront_products",
    "storefront_product_variants",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TableUsage {
    pub table: String,
    /// Scans (sequential and by index) and rows written, since the statistics were reset.
    pub reads: i64,
    pub writes: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SessionUsage {
    pub application: String,
    pub client: String,
    pub user_name: String,
    pub state: String,
    /// Its current or last statement, shortened.
    pub statement: String,
    pub since: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LegacyUsage {
    pub direct_writes_last_hour: i64,
    pub direct_writes_last_day: i64,
    pub last_direct_write_at: Option<String>,
    pub tables: Vec<TableUsage>,
    pub sessions: Vec<SessionUsage>,
}

const TABLES: &str = "SELECT CAST(relname AS TEXT) AS table,
        CAST(COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) AS BIGINT) AS reads,
        CAST(n_tup_ins + n_tup_upd + n_tup_del AS BIGINT) AS writes
    FROM pg_stat_user_tables WHERE schemaname = 'public' AND relname = ANY($1)
    ORDER BY relname";

const SESSIONS: &str = "SELECT COALESCE(NULLIF(application_name, ''), '(none set)') AS application,
        COALESCE(CAST(client_addr AS TEXT), 'local') AS client,
        COALESCE(CAST(usename AS TEXT), '') AS user_name, COALESCE(state, '') AS state,
        left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS statement,
        CAST(query_start AS TEXT) AS since
    FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND backend_type = 'client backend'
      AND COALESCE(application_name, '') <> $1
      AND query ~* $2
    ORDER BY query_start DESC NULLS LAST LIMIT 50";

pub(crate) async fn legacy_usage<B: Backend>(conn: &mut Conn<B>) -> Result<LegacyUsage> {
    let Dialect::Pg(c) = B::dialect(conn) else {
        return Ok(LegacyUsage::default());
    };
    record_queries(2);
    let tables = sqlx::query_as(TABLES)
        .bind(WATCHED.map(str::to_owned).to_vec())
        .fetch_all(&mut *c)
        .await?;
    let mut sessions: Vec<SessionUsage> = sqlx::query_as(SESSIONS)
        .bind(APPLICATION_NAME)
        .bind(format!("({})", WATCHED.join("|")))
        .fetch_all(&mut *c)
        .await?;
    for session in &mut sessions {
        session.since = session.since.take().map(crate::rows::rfc3339);
    }
    Ok(LegacyUsage {
        tables,
        sessions,
        ..LegacyUsage::default()
    })
}
