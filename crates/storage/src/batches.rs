//! Many entities at once: the pages of ids and the batch reads and writes with which the
//! backfill, verify, the legacy sync and the capture walk the tables.
//!
//! Statements built with a variable number of ids run unprepared (`persistent(false)`): each
//! list length would be a prepared statement of its own, and a cached generic plan made while
//! a table was empty (a backfill's first batches) would scan the whole table forever after.

use std::collections::HashMap;

use domain::{EntityKind, EntityValues};
use flags::Store;

use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::Result;
use crate::legacy::{Documents, VocabularyRow};
use crate::rows::{self, ValueColumns};
use crate::sql::entity_table;
use crate::stats::record_queries;

/// A backfill or sync batch locks its entities' rows until it commits; SQLite needs no row
/// locks, its write transaction already excludes every other writer.
const LOCK_ROWS: Sql = Sql {
    pg: " FOR UPDATE",
    lite: "",
};

/// The next `limit` ids of `kind` after `after`, in order; locked until the transaction ends
/// when `lock`.
pub(crate) async fn entity_ids_after(
    conn: Dialect<'_>,
    kind: EntityKind,
    after: i64,
    limit: i64,
    lock: bool,
) -> Result<Vec<i64>> {
    record_queries(1);
    Ok(on_dialect!(conn, LOCK_ROWS, |c, lock_rows| {
        let statement = format!(
            // Ids are `integer` in older marketplace databases, `bigint` in newer ones.
            "SELECT CAST(id AS BIGINT) FROM {} WHERE id > $1 ORDER BY id LIMIT $2{}",
            entity_table(kind),
            if lock { lock_rows } else { "" }
        );
        sqlx::query_scalar(&statement)
            .bind(after)
            .bind(limit)
            .fetch_all(c)
            .await?
    }))
}

/// [`entity_ids_after`], of the entities with a quarantined value only; always locked.
pub(crate) async fn quarantined_entity_ids_after(
    conn: Dialect<'_>,
    kind: EntityKind,
    after: i64,
    limit: i64,
) -> Result<Vec<i64>> {
    record_queries(1);
    Ok(on_dialect!(conn, LOCK_ROWS, |c, lock_rows| {
        let statement = format!(
            "SELECT CAST(e.id AS BIGINT) FROM {} e WHERE e.id > $1 AND e.id IN
                (SELECT q.entity_id FROM backfill_quarantine q WHERE q.entity_type = $2)
             ORDER BY e.id LIMIT $3{lock_rows}",
            entity_table(kind),
        );
        sqlx::query_scalar(&statement)
            .bind(after)
            .bind(kind.as_str())
            .bind(limit)
            .fetch_all(c)
            .await?
    }))
}

/// The legacy documents of products or variants `ids`, with the vocabulary their keys name.
pub(crate) async fn legacy_documents(
    mut conn: Dialect<'_>,
    kind: EntityKind,
    ids: &[i64],
) -> Result<Documents> {
    record_queries(2);
    let column = if kind == EntityKind::Product {
        "attributes"
    } else {
        "variant_attributes"
    };
    // The real schema lets a document be NULL: it holds nothing.
    let documents: Vec<(i64, Option<sqlx::types::Json<serde_json::Value>>)> =
        on_dialect!(conn.reborrow(), |c| {
            let mut query = sqlx::QueryBuilder::new(format!(
                "SELECT CAST(id AS BIGINT), {column} FROM {} WHERE id IN ",
                entity_table(kind)
            ));
            push_id_list(&mut query, ids);
            query.push(" ORDER BY id");
            query
                .build_query_as()
                .persistent(false)
                .fetch_all(&mut *c)
                .await?
        });
    let vocabulary: Vec<VocabularyRow> =
        on_dialect!(conn, crate::legacy::VOCABULARY, |c, statement| {
            sqlx::query_as(statement).fetch_all(c).await?
        });
    Ok((
        documents
            .into_iter()
            .map(|(id, document)| (id, document.map_or(serde_json::Value::Null, |d| d.0)))
            .collect(),
        vocabulary,
    ))
}

/// Unified values of many entities of one kind; the caller appends the kind and the ids.
const UNIFIED_VALUES_OF_KIND: &str = "SELECT v.entity_id, a.code, a.attribute_type, v.text_value,
        CAST(v.numeric_value AS TEXT) AS numeric_value, v.boolean_value,
        CAST(v.date_value AS TEXT) AS date_value, v.json_value, v.unit
    FROM unified_attribute_values v JOIN unified_attributes a ON a.id = v.attribute_id
    WHERE v.entity_type = ";

/// The unified values of entities `ids` of `kind`, by entity (none: absent).
pub(crate) async fn unified_values_batch(
    conn: Dialect<'_>,
    kind: EntityKind,
    ids: &[i64],
) -> Result<HashMap<i64, EntityValues>> {
    record_queries(1);
    let rows: Vec<rows::BatchValueRowInOrder> = on_dialect!(conn, |c| {
        let mut query = sqlx::QueryBuilder::new(UNIFIED_VALUES_OF_KIND);
        query.push_bind(kind.as_str()).push(" AND v.entity_id IN ");
        push_id_list(&mut query, ids);
        query
            .build_query_as()
            .persistent(false)
            .fetch_all(c)
            .await?
    });
    Ok(rows::batch_values(rows::batch_rows(rows), false))
}

/// The unified values of listings `ids`; the ids travel as one array (PostgreSQL) or one JSON
/// list (SQLite), so the statement is prepared once.
const UNIFIED_LISTING_VALUES: Sql = Sql {
    pg: crate::sql::unified_listing_values_batch_sql!("= ANY($1)"),
    lite: crate::sql::unified_listing_values_batch_sql!("IN (SELECT value FROM json_each($1))"),
};

/// The values of listings `ids` in `store`, by listing.
pub(crate) async fn listing_values_batch(
    conn: Dialect<'_>,
    store: Store,
    ids: &[i64],
) -> Result<HashMap<i64, EntityValues>> {
    let rows = match store {
        Store::Legacy => crate::legacy::listing_rows(conn, ids).await?,
        Store::Unified => {
            record_queries(1);
            let rows: Vec<rows::BatchValueRowInOrder> = match conn {
                Dialect::Pg(c) => {
                    sqlx::query_as(UNIFIED_LISTING_VALUES.pg)
                        .bind(ids)
                        .fetch_all(c)
                        .await?
                }
                Dialect::Lite(c) => {
                    sqlx::query_as(UNIFIED_LISTING_VALUES.lite)
                        .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
                        .fetch_all(c)
                        .await?
                }
            };
            rows::batch_rows(rows)
        }
    };
    Ok(rows::batch_values(rows, false))
}

/// Replaces the unified values of entities `ids` with `values` (entity, attribute, columns).
pub(crate) async fn replace_unified(
    mut conn: Dialect<'_>,
    kind: EntityKind,
    ids: &[i64],
    values: &[(i64, i64, ValueColumns)],
) -> Result<()> {
    record_queries(1);
    on_dialect!(conn.reborrow(), |c| {
        let mut delete =
            sqlx::QueryBuilder::new("DELETE FROM unified_attribute_values WHERE entity_type = ");
        delete.push_bind(kind.as_str()).push(" AND entity_id IN ");
        push_id_list(&mut delete, ids);
        delete.build().persistent(false).execute(&mut *c).await?;
    });
    match conn {
        Dialect::Pg(c) => insert_unified_rows_pg(c, kind, values).await,
        Dialect::Lite(c) => insert_unified_rows_lite(c, kind, values).await,
    }
}

/// One statement per batch: each column travels as one array (`UNNEST`), so a batch of
/// thousands of rows is one parse, one plan, nine binds.
async fn insert_unified_rows_pg(
    conn: &mut sqlx::PgConnection,
    kind: EntityKind,
    rows: &[(i64, i64, ValueColumns)],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    record_queries(1);
    let column = |f: fn(&ValueColumns) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|(_, _, columns)| f(columns)).collect()
    };
    sqlx::query(
        "INSERT INTO unified_attribute_values
            (entity_type, entity_id, attribute_id, text_value, numeric_value, boolean_value,
             date_value, json_value, unit)
        SELECT $1, u.entity_id, u.attribute_id, u.text_value, CAST(u.numeric_value AS NUMERIC),
            u.boolean_value, CAST(u.date_value AS DATE), CAST(u.json_value AS JSONB), u.unit
        FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bool[], $7::text[],
            $8::text[], $9::text[])
            AS u(entity_id, attribute_id, text_value, numeric_value, boolean_value, date_value,
                 json_value, unit)",
    )
    .bind(kind.as_str())
    .bind(
        rows.iter()
            .map(|(entity, _, _)| *entity)
            .collect::<Vec<i64>>(),
    )
    .bind(
        rows.iter()
            .map(|(_, attribute, _)| *attribute)
            .collect::<Vec<i64>>(),
    )
    .bind(column(|c| c.text_value.clone()))
    .bind(column(|c| c.numeric_value.clone()))
    .bind(
        rows.iter()
            .map(|(_, _, c)| c.boolean_value)
            .collect::<Vec<Option<bool>>>(),
    )
    .bind(column(|c| c.date_value.clone()))
    .bind(column(|c| c.json_value.as_ref().map(ToString::to_string)))
    .bind(column(|c| c.unit.clone()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Multi-row statements of 2,000 rows (SQLite allows 32,766 parameters a statement).
async fn insert_unified_rows_lite(
    conn: &mut sqlx::SqliteConnection,
    kind: EntityKind,
    rows: &[(i64, i64, ValueColumns)],
) -> Result<()> {
    for chunk in rows.chunks(2_000) {
        record_queries(1);
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO unified_attribute_values
                (entity_type, entity_id, attribute_id, text_value, numeric_value, boolean_value,
                 date_value, json_value, unit) ",
        );
        insert.push_values(chunk, |mut row, (entity_id, attribute_id, columns)| {
            row.push_bind(kind.as_str())
                .push_bind(*entity_id)
                .push_bind(*attribute_id)
                .push_bind(&columns.text_value)
                .push_bind(&columns.numeric_value)
                .push_bind(columns.boolean_value)
                .push_bind(&columns.date_value)
                .push_bind(columns.json_value.as_ref().map(sqlx::types::Json))
                .push_bind(&columns.unit);
        });
        insert.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The (entity, code) pairs of entities `ids` that the backfill quarantined.
pub(crate) async fn quarantined_codes(
    conn: Dialect<'_>,
    kind: EntityKind,
    ids: &[i64],
) -> Result<Vec<(i64, String)>> {
    record_queries(1);
    Ok(on_dialect!(conn, |c| {
        let mut query = sqlx::QueryBuilder::new(
            "SELECT entity_id, attribute_code FROM backfill_quarantine WHERE entity_type = ",
        );
        query.push_bind(kind.as_str()).push(" AND entity_id IN ");
        push_id_list(&mut query, ids);
        query
            .build_query_as()
            .persistent(false)
            .fetch_all(c)
            .await?
    }))
}

/// Appends `(id, id, …)` as bound parameters: the "one of these ids" of a built statement.
pub(crate) fn push_id_list<'args, DB>(query: &mut sqlx::QueryBuilder<'args, DB>, ids: &[i64])
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    query.push("(");
    let mut separated = query.separated(", ");
    for id in ids {
        separated.push_bind(*id);
    }
    separated.push_unseparated(")");
}
