//! `NOTIFY` inside a transaction: PostgreSQL delivers it to every listening replica only if the
//! transaction commits. SQLite has one process per file: there is no other replica to tell.

use crate::dialect::Dialect;
use crate::error::Result;
use crate::stats::record_queries;

pub(crate) async fn notify(conn: Dialect<'_>, channel: &str, payload: &str) -> Result<()> {
    if let Dialect::Pg(c) = conn {
        record_queries(1);
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(c)
            .await?;
    }
    Ok(())
}
