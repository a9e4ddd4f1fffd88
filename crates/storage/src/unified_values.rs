//! The unified store's values of one entity, replaced code by code: what a write through the
//! service, a resync of one entity and the demo seed put there. (The backfill's batches write
//! many entities in one statement: `batches::replace_unified`.)

use domain::{EntityRef, EntityValues};

use crate::dialect::{Dialect, Sql};
use crate::error::{Result, StorageError};
use crate::rows::ValueColumns;
use crate::stats::record_queries;

/// The values, each under the unified definition of its code, in one statement (one text
/// whatever their number, prepared once); it answers the codes unified has no definition for,
/// whose values it did not insert.
const INSERT_VALUES_PG: &str = "WITH v AS (
        SELECT * FROM UNNEST($3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BOOLEAN[], $7::TEXT[],
            $8::JSONB[], $9::TEXT[])
            AS v (code, text_value, numeric_value, boolean_value, date_value, json_value, unit)),
    inserted AS (
        INSERT INTO unified_attribute_values
            (entity_type, entity_id, attribute_id, text_value, numeric_value, boolean_value,
             date_value, json_value, unit)
        SELECT $1, $2, a.id, v.text_value, CAST(v.numeric_value AS NUMERIC), v.boolean_value,
            CAST(v.date_value AS DATE), v.json_value, v.unit
        FROM v JOIN unified_attributes a ON a.code = v.code)
    SELECT v.code FROM v WHERE NOT EXISTS (SELECT 1 FROM unified_attributes a WHERE a.code = v.code)";
/// SQLite: one value a statement (in process, a statement costs no round trip).
const INSERT_VALUE_LITE: &str = "INSERT INTO unified_attribute_values
        (entity_type, entity_id, attribute_id, text_value, numeric_value, boolean_value,
         date_value, json_value, unit)
    SELECT $1, $2, a.id, $4, $5, $6, $7, $8, $9
    FROM unified_attributes a WHERE a.code = $3";

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
    if set.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        Dialect::Pg(c) => {
            record_queries(1);
            let columns: Vec<ValueColumns> = set.values().map(ValueColumns::unified).collect();
            let text = |pick: fn(&ValueColumns) -> Option<&str>| -> Vec<Option<&str>> {
                columns.iter().map(pick).collect()
            };
            let undefined: Vec<String> = sqlx::query_scalar(INSERT_VALUES_PG)
                .bind(entity.kind.as_str())
                .bind(entity.id)
                .bind(set.keys().map(String::as_str).collect::<Vec<&str>>())
                .bind(text(|c| c.text_value.as_deref()))
                .bind(text(|c| c.numeric_value.as_deref()))
                .bind(columns.iter().map(|c| c.boolean_value).collect::<Vec<_>>())
                .bind(text(|c| c.date_value.as_deref()))
                .bind(
                    columns
                        .iter()
                        .map(|c| c.json_value.as_ref().map(sqlx::types::Json))
                        .collect::<Vec<_>>(),
                )
                .bind(text(|c| c.unit.as_deref()))
                .fetch_all(c)
                .await?;
            Ok(undefined)
        }
        Dialect::Lite(c) => {
            let mut undefined = Vec::new();
            for (code, typed) in set {
                let columns = ValueColumns::unified(typed);
                record_queries(1);
                let inserted = sqlx::query(INSERT_VALUE_LITE)
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
                    .rows_affected();
                if inserted != 1 {
                    undefined.push(code.clone());
                }
            }
            Ok(undefined)
        }
    }
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
