//! The tables our migrations create in our schema, and the views of them a move from the
//! earlier layout left in `public` for older binaries.

use sqlx::{Acquire, PgConnection, PgPool};

use crate::error::Result;

/// Every table our migrations create in our schema (sqlx's ledger included): what moves from
/// an earlier layout.
pub(crate) const OUR_TABLES: [&str; 18] = [
    "_sqlx_migrations",
    "migration_state",
    "unified_attributes",
    "unified_category_attributes",
    "unified_attribute_values",
    "flag_state",
    "flag_audit",
    "backfill_checkpoint",
    "backfill_quarantine",
    "verify_runs",
    "archive_manifests",
    "attribute_option_aliases",
    "quarantine_resolutions",
    "flag_environment",
    "operation_throttle",
    "operation_lease",
    "monolith_attributes",
    "attribute_changes",
];

/// Views in `public` named as our tables whose table is in our schema: left by a move for
/// older binaries.
const PUBLIC_VIEWS_OF_OURS: &str = "SELECT CAST(v.relname AS TEXT) FROM pg_class v
        JOIN pg_namespace vn ON vn.oid = v.relnamespace
        JOIN pg_class t ON t.relname = v.relname AND t.relkind = 'r'
        JOIN pg_namespace tn ON tn.oid = t.relnamespace
        WHERE vn.nspname = 'public' AND v.relkind = 'v' AND v.relname = ANY($1)
          AND tn.nspname = $2
        ORDER BY 1";

/// The views in `public` that a move left for older binaries (none once dropped).
pub(crate) async fn public_views(conn: &mut PgConnection, schema: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(PUBLIC_VIEWS_OF_OURS)
        .bind(OUR_TABLES.map(str::to_owned).to_vec())
        .bind(schema)
        .fetch_all(conn)
        .await?)
}

/// Drops the views a move left in `public` (the contract step: no older binary may run).
pub(crate) async fn drop_public_views(pool: &PgPool, schema: &str) -> Result<Vec<String>> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let views = public_views(&mut tx, schema).await?;
    for view in &views {
        sqlx::query(&format!("DROP VIEW public.{view}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(views)
}
