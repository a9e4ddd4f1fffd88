//! One entity's values: read from either store, and written in legacy form (a listing's rows,
//! a product's or variant's JSON document). The unified half of a write is `unified_values`.

use std::collections::HashSet;

use domain::{EffectiveSchema, EntityKind, EntityRef, EntityValues};
use flags::Store;

use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::{Result, StorageError};
use crate::rows::{self, ValueColumns};
use crate::stats::record_queries;

/// Writes lock the entity's row on PostgreSQL: a write and a backfill batch of the same
/// entity serialize. SQLite's write transaction already excludes other writers.
const LISTING_CATEGORY: Sql = Sql {
    pg: "SELECT category_id FROM marketplace_listings WHERE id = $1 FOR UPDATE",
    lite: "SELECT category_id FROM marketplace_listings WHERE id = $1",
};
const PRODUCT_CATEGORY: Sql = Sql {
    pg: "SELECT category_id FROM storefront_products WHERE id = $1 FOR UPDATE",
    lite: "SELECT category_id FROM storefront_products WHERE id = $1",
};
const VARIANT_CATEGORY: Sql = Sql {
    pg: "SELECT p.category_id FROM storefront_product_variants v
         JOIN storefront_products p ON p.id = v.product_id WHERE v.id = $1 FOR UPDATE OF v",
    lite: "SELECT p.category_id FROM storefront_product_variants v
         JOIN storefront_products p ON p.id = v.product_id WHERE v.id = $1",
};

/// The entity's category, its row locked until the write commits; `None`: no such entity.
pub(crate) async fn category_locked(conn: Dialect<'_>, entity: EntityRef) -> Result<Option<i64>> {
    record_queries(1);
    let statement = match entity.kind {
        EntityKind::Listing => LISTING_CATEGORY,
        EntityKind::Product => PRODUCT_CATEGORY,
        EntityKind::ProductVariant => VARIANT_CATEGORY,
    };
    let category: Option<i32> = on_dialect!(conn, statement, |c, statement| {
        sqlx::query_scalar(statement)
            .bind(entity.id)
            .fetch_optional(c)
            .await?
    });
    Ok(category.map(i64::from))
}

/// The entity's values in `store`; `None`: no such entity.
pub(crate) async fn read(
    conn: Dialect<'_>,
    store: Store,
    entity: EntityRef,
) -> Result<Option<EntityValues>> {
    match store {
        Store::Legacy => legacy(conn, entity).await,
        Store::Unified => unified(conn, entity).await,
    }
}

/// Legacy listing values; one row with `code` NULL proves a listing without values exists.
const LEGACY_LISTING_VALUES: Sql = Sql::same(
    "SELECT a.name AS code, a.attribute_type, v.text_value,
        CAST(v.numeric_value AS TEXT) AS numeric_value, v.boolean_value,
        CAST(NULL AS TEXT) AS date_value, v.json_value, v.unit
    FROM marketplace_listings l
    LEFT JOIN listing_attribute_values v ON v.listing_id = l.id
    LEFT JOIN category_attributes a ON a.id = v.attribute_id
    WHERE l.id = $1",
);

const PRODUCT_DOCUMENT: Sql = Sql::same("SELECT attributes FROM storefront_products WHERE id = $1");
const VARIANT_DOCUMENT: Sql =
    Sql::same("SELECT variant_attributes FROM storefront_product_variants WHERE id = $1");

async fn legacy(mut conn: Dialect<'_>, entity: EntityRef) -> Result<Option<EntityValues>> {
    if entity.kind == EntityKind::Listing {
        record_queries(1);
        return on_dialect!(conn, LEGACY_LISTING_VALUES, |c, statement| {
            let found = sqlx::query(statement).bind(entity.id).fetch_all(c).await?;
            rows::entity_values_of_rows(found.iter().map(rows::ValueRowRef::decode), true)
        });
    }
    record_queries(2);
    let statement = if entity.kind == EntityKind::Product {
        PRODUCT_DOCUMENT
    } else {
        VARIANT_DOCUMENT
    };
    // The outer `None`: no such entity; the inner: a NULL document.
    let document: Option<Option<sqlx::types::Json<serde_json::Value>>> =
        on_dialect!(conn.reborrow(), statement, |c, statement| {
            sqlx::query_scalar(statement)
                .bind(entity.id)
                .fetch_optional(c)
                .await?
        });
    let Some(document) = document else {
        return Ok(None);
    };
    let vocabulary: Vec<crate::legacy::VocabularyRow> =
        on_dialect!(conn, crate::legacy::VOCABULARY, |c, statement| {
            sqlx::query_as(statement).fetch_all(c).await?
        });
    let document = document.map_or(serde_json::Value::Null, |d| d.0);
    Ok(Some(crate::legacy::document_values(
        entity.kind,
        &document,
        &vocabulary,
    )))
}

macro_rules! unified_values_sql {
    ($entity_table:literal) => {
        Sql::same(concat!(
            "SELECT a.code, a.attribute_type, v.text_value,
                CAST(v.numeric_value AS TEXT) AS numeric_value, v.boolean_value,
                CAST(v.date_value AS TEXT) AS date_value, v.json_value, v.unit
            FROM ",
            $entity_table,
            " e
            LEFT JOIN unified_attribute_values v ON v.entity_type = $2 AND v.entity_id = e.id
            LEFT JOIN unified_attributes a ON a.id = v.attribute_id
            WHERE e.id = $1"
        ))
    };
}
const UNIFIED_LISTING_VALUES: Sql = unified_values_sql!("marketplace_listings");
const UNIFIED_PRODUCT_VALUES: Sql = unified_values_sql!("storefront_products");
const UNIFIED_VARIANT_VALUES: Sql = unified_values_sql!("storefront_product_variants");

async fn unified(conn: Dialect<'_>, entity: EntityRef) -> Result<Option<EntityValues>> {
    record_queries(1);
    let statement = match entity.kind {
        EntityKind::Listing => UNIFIED_LISTING_VALUES,
        EntityKind::Product => UNIFIED_PRODUCT_VALUES,
        EntityKind::ProductVariant => UNIFIED_VARIANT_VALUES,
    };
    on_dialect!(conn, statement, |c, statement| {
        let found = sqlx::query(statement)
            .bind(entity.id)
            .bind(entity.kind.as_str())
            .fetch_all(c)
            .await?;
        rows::entity_values_of_rows(found.iter().map(rows::ValueRowRef::decode), false)
    })
}

/// Writes `set` and removes `removed` in the entity's legacy form; `schema` gives each code's
/// legacy id, `readable` the legacy values the write was judged against (a listing's rows are
/// not read again). A listing's rows of other codes, and a document's other keys, stay as they
/// are.
pub(crate) async fn legacy_apply(
    mut conn: Dialect<'_>,
    entity: EntityRef,
    set: &EntityValues,
    removed: &[String],
    readable: Option<&EntityValues>,
    schema: &EffectiveSchema,
) -> Result<()> {
    let legacy_id = |code: &str| schema.get(code).map(|a| a.attribute.id);
    if entity.kind == EntityKind::Listing {
        // A code set is replaced whatever its row held (and whoever wrote that row since it was
        // read); a code removed loses only a row legacy could read, as `readable` (its values
        // read in this transaction) says.
        let readable_removed = removed
            .iter()
            .filter(|code| readable.is_some_and(|values| values.contains_key(*code)));
        let delete: Vec<(i64, i64)> = set
            .keys()
            .chain(readable_removed)
            .filter_map(|code| legacy_id(code).map(|attribute_id| (entity.id, attribute_id)))
            .collect();
        let mut insert = Vec::with_capacity(set.len());
        for (code, typed) in set {
            let attribute_id = legacy_id(code).ok_or_else(|| {
                StorageError::CorruptData(format!("'{code}' is not in the legacy schema"))
            })?;
            insert.push((entity.id, attribute_id, ValueColumns::legacy(typed)));
        }
        return merge_listing_rows(conn, &delete, &insert).await;
    }
    let (documents, vocabulary) =
        crate::batches::legacy_documents(conn.reborrow(), entity.kind, &[entity.id]).await?;
    let current = documents.into_iter().next().map(|(_, document)| document);
    let document = crate::legacy::merge_document(
        entity.kind,
        current.as_ref(),
        &vocabulary,
        set,
        removed,
        &HashSet::new(),
        legacy_id,
        |code, value| {
            if let Some(effective) = schema.get(code) {
                domain::canonical_spellings(&effective.attribute.options, value);
            }
        },
    )?;
    write_document(conn, entity, &document.document).await
}

/// PostgreSQL: one statement text whatever the number of rows, so it is prepared once per
/// connection and a write's rewrite costs one round trip each (a `VALUES` list of N rows is a new
/// text for every N, parsed and described again on every write).
const DELETE_LISTING_ROWS_PG: &str = "DELETE FROM listing_attribute_values v
    USING UNNEST($1::BIGINT[], $2::BIGINT[]) AS d (listing_id, attribute_id)
    WHERE v.listing_id = d.listing_id AND v.attribute_id = d.attribute_id";
const INSERT_LISTING_ROWS_PG: &str = "INSERT INTO listing_attribute_values
        (listing_id, attribute_id, text_value, numeric_value, boolean_value, json_value, unit,
         value_type)
    SELECT listing_id, attribute_id, text_value, CAST(numeric_value AS NUMERIC), boolean_value,
        json_value, unit, value_type
    FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BOOLEAN[], $6::JSONB[],
        $7::TEXT[], $8::TEXT[])
        AS r (listing_id, attribute_id, text_value, numeric_value, boolean_value, json_value,
              unit, value_type)";

/// Deletes the (listing, attribute) rows `delete`, then inserts `insert`, 2,000 rows a statement.
pub(crate) async fn merge_listing_rows(
    mut conn: Dialect<'_>,
    delete: &[(i64, i64)],
    insert: &[(i64, i64, ValueColumns)],
) -> Result<()> {
    for chunk in delete.chunks(2_000) {
        record_queries(1);
        match conn.reborrow() {
            Dialect::Pg(c) => {
                let (listings, attributes): (Vec<i64>, Vec<i64>) = chunk.iter().copied().unzip();
                sqlx::query(DELETE_LISTING_ROWS_PG)
                    .bind(listings)
                    .bind(attributes)
                    .execute(c)
                    .await?;
            }
            Dialect::Lite(c) => {
                let mut statement = sqlx::QueryBuilder::new(
                    "DELETE FROM listing_attribute_values WHERE (listing_id, attribute_id) IN (",
                );
                statement.push_values(chunk, |mut row, (listing_id, attribute_id)| {
                    row.push_bind(*listing_id).push_bind(*attribute_id);
                });
                statement.push(")");
                statement.build().persistent(false).execute(c).await?;
            }
        }
    }
    for chunk in insert.chunks(2_000) {
        record_queries(1);
        match conn.reborrow() {
            Dialect::Pg(c) => {
                let column = |pick: fn(&ValueColumns) -> Option<&str>| -> Vec<Option<&str>> {
                    chunk.iter().map(|(_, _, columns)| pick(columns)).collect()
                };
                sqlx::query(INSERT_LISTING_ROWS_PG)
                    .bind(chunk.iter().map(|row| row.0).collect::<Vec<i64>>())
                    .bind(chunk.iter().map(|row| row.1).collect::<Vec<i64>>())
                    .bind(column(|c| c.text_value.as_deref()))
                    .bind(column(|c| c.numeric_value.as_deref()))
                    .bind(
                        chunk
                            .iter()
                            .map(|(_, _, columns)| columns.boolean_value)
                            .collect::<Vec<Option<bool>>>(),
                    )
                    .bind(
                        chunk
                            .iter()
                            .map(|(_, _, columns)| {
                                columns.json_value.as_ref().map(sqlx::types::Json)
                            })
                            .collect::<Vec<_>>(),
                    )
                    .bind(column(|c| c.unit.as_deref()))
                    .bind(
                        chunk
                            .iter()
                            .map(|(_, _, columns)| columns.legacy_value_type)
                            .collect::<Vec<&str>>(),
                    )
                    .execute(c)
                    .await?;
            }
            Dialect::Lite(c) => {
                let mut statement = sqlx::QueryBuilder::new(
                    "INSERT INTO listing_attribute_values
                        (listing_id, attribute_id, text_value, numeric_value, boolean_value,
                         json_value, unit, value_type) ",
                );
                statement.push_values(chunk, |mut row, (listing_id, attribute_id, columns)| {
                    row.push_bind(*listing_id)
                        .push_bind(*attribute_id)
                        .push_bind(&columns.text_value)
                        .push_bind(&columns.numeric_value)
                        .push_bind(columns.boolean_value)
                        .push_bind(columns.json_value.as_ref().map(sqlx::types::Json))
                        .push_bind(&columns.unit)
                        .push_bind(columns.legacy_value_type);
                });
                statement.build().persistent(false).execute(c).await?;
            }
        }
    }
    Ok(())
}

const UPDATE_PRODUCT_DOCUMENT: Sql =
    Sql::same("UPDATE storefront_products SET attributes = $2 WHERE id = $1");
const UPDATE_VARIANT_DOCUMENT: Sql =
    Sql::same("UPDATE storefront_product_variants SET variant_attributes = $2 WHERE id = $1");

/// Replaces a product's or variant's legacy document.
pub(crate) async fn write_document(
    conn: Dialect<'_>,
    entity: EntityRef,
    document: &serde_json::Value,
) -> Result<()> {
    record_queries(1);
    let statement = if entity.kind == EntityKind::Product {
        UPDATE_PRODUCT_DOCUMENT
    } else {
        UPDATE_VARIANT_DOCUMENT
    };
    on_dialect!(conn, statement, |c, statement| {
        sqlx::query(statement)
            .bind(entity.id)
            .bind(sqlx::types::Json(document))
            .execute(c)
            .await?;
    });
    Ok(())
}
