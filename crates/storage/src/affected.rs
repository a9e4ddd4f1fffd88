//! The categories whose effective schema an attribute change affects: those that bind it, in
//! either store, and their descendants. Once legacy is archived only the unified bindings are
//! left to read.

use crate::backend::{Backend, Conn};
use crate::dialect::{Sql, on_dialect};
use crate::error::Result;
use crate::stats::record_queries;

const BOTH_STORES: Sql = Sql::same(
    "WITH RECURSIVE affected (id) AS (
        SELECT category_id FROM (
            SELECT category_id FROM category_attribute_mapping WHERE attribute_id = $1
            UNION
            SELECT category_id FROM unified_category_attributes WHERE attribute_id = $1
        ) bound
        UNION
        SELECT c.id FROM marketplace_categories c JOIN affected a ON c.parent_id = a.id
    ) SELECT CAST(id AS BIGINT) FROM affected",
);

const UNIFIED_ONLY: Sql = Sql::same(
    "WITH RECURSIVE affected (id) AS (
        SELECT category_id FROM unified_category_attributes WHERE attribute_id = $1
        UNION
        SELECT c.id FROM marketplace_categories c JOIN affected a ON c.parent_id = a.id
    ) SELECT CAST(id AS BIGINT) FROM affected",
);

pub(crate) async fn categories_using_attribute<B: Backend>(
    conn: &mut Conn<B>,
    attribute_id: i64,
) -> Result<Vec<i64>> {
    let sql = if crate::evidence::archived(B::dialect(&mut *conn)).await? {
        UNIFIED_ONLY
    } else {
        BOTH_STORES
    };
    record_queries(1);
    Ok(on_dialect!(B::dialect(&mut *conn), sql, |c, statement| {
        sqlx::query_scalar(statement)
            .bind(attribute_id)
            .fetch_all(&mut *c)
            .await?
    }))
}
