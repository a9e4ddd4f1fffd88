//! The unified store's values of one entity, replaced code by code: what a write through the
//! service, a resync of one entity and the demo seed put there. (The backfill's batches write
//! many entities in one statement: `batches::replace_unified`.)

use domain::{EntityRef, EntityValues};

use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::{Result, StorageError};
use crate::rows::ValueColumns;
use crate::stats::record_queries;

/// One value, under the unified definition of its code (none: nothing is inserted).
const INSERT_VALUE: Sql = Sql {
    pg: "INSERT INTO unified_attribute_values
            (entity_type, entity_id, attribute_id, text_value, numeric_value, boolean_value,
             date_value, json_value, unit)
        SELECT $1, $2, a.id, $4, CAST($5 AS NUMERIC), $6, CAST($7 AS DATE), $8, $9
        FROM unified_attributes a WHERE a.code = $3",
    lite: "INSERT INTO unified_attribute_values
            (entity_type, entity_id, attribute_id, text_value, numeric_value, boolean_value,
             date_value, json_value, unit)
        SELECT $1, $2, a.id, $4, $5, $6, $7, $8, $9
        FROM unified_attributes a WHERE a.code = $3",
};

/// The entity's values of these codes (one statement text, prepared once, whatever their number).
const DELETE_CODES: Sql = Sql {
    pg: "DELETE FROM unified_attribute_values WHERE entity_type = $1 AND entity_id = $2
        AND attribute_id IN (SELECT id FROM unified_attributes WHERE code = ANY($3))",
    lite: "DELETE FROM unified_attribute_values WHERE entity_type = $1 AND entity_id = $2
        AND attribute_id IN (SELECT id FROM unified_attributes
                             WHERE code IN (SELECT value FROM json_each($3)))",
};

/// Replaces the entity's values of the codes `set` and `removed` name: those of `removed` are
/// gone, those of `set` hold the new values. Returns the codes of `set` that unified has no
/// definition for: their values were not written (a dual write creates the definition from
/// legacy's and writes them again).
pub(crate) async fn replace(
    mut conn: Dialect<'_>,
    entity: EntityRef,
    set: &EntityValues,
    removed: &[String],
) -> Result<Vec<String>> {
    let codes: Vec<&str> = set
        .keys()
        .chain(removed.iter())
        .map(String::as_str)
        .collect();
    if !codes.is_empty() {
        record_queries(1);
        match conn.reborrow() {
            Dialect::Pg(c) => {
                sqlx::query(DELETE_CODES.pg)
                    .bind(entity.kind.as_str())
                    .bind(entity.id)
                    .bind(&codes)
                    .execute(c)
                    .await?;
            }
            Dialect::Lite(c) => {
                sqlx::query(DELETE_CODES.lite)
                    .bind(entity.kind.as_str())
                    .bind(entity.id)
                    .bind(serde_json::to_string(&codes).unwrap_or_else(|_| "[]".into()))
                    .execute(c)
                    .await?;
            }
        }
    }
    let mut undefined = Vec::new();
    for (code, typed) in set {
        let columns = ValueColumns::unified(typed);
        record_queries(1);
        let inserted = on_dialect!(conn.reborrow(), INSERT_VALUE, |c, statement| {
            sqlx::query(statement)
                .bind(entity.kind.as_str())
                .bind(entity.id)
                .bind(code)
                .bind(&columns.text_value)
                .bind(&columns.numeric_value)
                .bind(columns.boolean_value)
                .bind(&columns.date_value)
                .bind(columns.json_value.as_ref().map(sqlx::types::Json))
                .bind(&columns.unit)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        if inserted != 1 {
            undefined.push(code.clone());
        }
    }
    Ok(undefined)
}

/// [`replace`], where every code must have its unified definition already.
pub(crate) async fn replace_defined(
    conn: Dialect<'_>,
    entity: EntityRef,
    set: &EntityValues,
    removed: &[String],
) -> Result<()> {
    match replace(conn, entity, set, removed).await?.first() {
        Some(code) => Err(undefined(code)),
        None => Ok(()),
    }
}

pub(crate) fn undefined(code: &str) -> StorageError {
    StorageError::CorruptData(format!("no unified definition for '{code}'"))
}
