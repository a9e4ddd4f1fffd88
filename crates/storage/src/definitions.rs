//! The definitions and category bindings of either store, written one at a time: the admin
//! API's writes, the backfill's and the capture's copies into unified, the sync's copies back
//! into legacy. The legacy statements leave out the columns an older marketplace database
//! lacks ([`without_columns`]).

use domain::{Attribute, CategoryBinding, EffectiveSchema, EntityValues};
use flags::Store;

use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::Result;
use crate::legacy::LegacyDefinitionRow;
use crate::stats::record_queries;

/// Columns of `category_attributes` the monolith added later (absent from older databases),
/// with the placeholder the definition statements bind each to.
pub(crate) const LATER_DEFINITION_COLUMNS: [(&str, &str); 2] =
    [("affects_stock", "$15"), ("is_variant_compatible", "$16")];

/// A definition statement without the later columns in `missing`: each column leaves the
/// column list or the `SET` list together with its placeholder. The value stays bound and
/// unused, as PostgreSQL allows.
pub(crate) fn without_columns(statement: &str, missing: &[&str]) -> String {
    let mut statement = statement.to_owned();
    for (column, placeholder) in LATER_DEFINITION_COLUMNS {
        if missing.contains(&column) {
            for gone in [
                format!(", {column} = {placeholder}"),
                format!(",\n        {column} = {placeholder}"),
                format!(", {column}"),
                format!(", {placeholder}"),
            ] {
                statement = statement.replacen(&gone, "", 1);
            }
        }
    }
    statement
}

pub(crate) const INSERT_LEGACY_ATTRIBUTE: &str = "INSERT INTO category_attributes
        (id, name, display_name, attribute_type, options, validation_rules, is_searchable,
         is_filterable, is_required, sort_order, custom_component, show_in_card, show_in_list,
         icon, affects_stock, is_variant_compatible)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
pub(crate) const INSERT_TRANSLATION: &str = "INSERT INTO translations
        (entity_type, entity_id, language, field_name, translated_text) VALUES ($1, $2, $3, $4, $5)";

const LATER_DEFINITION_COLUMNS_PRESENT: Sql = Sql {
    pg: "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = 'category_attributes'
           AND column_name IN ('affects_stock', 'is_variant_compatible')",
    lite: "SELECT name FROM pragma_table_info('category_attributes')
         WHERE name IN ('affects_stock', 'is_variant_compatible')",
};

/// The columns of [`LATER_DEFINITION_COLUMNS`] this database lacks.
pub(crate) async fn missing_later_columns(conn: Dialect<'_>) -> Result<Vec<&'static str>> {
    record_queries(1);
    let present: Vec<String> =
        on_dialect!(conn, LATER_DEFINITION_COLUMNS_PRESENT, |c, statement| {
            sqlx::query_scalar(statement).fetch_all(c).await?
        });
    Ok(LATER_DEFINITION_COLUMNS
        .iter()
        .map(|(column, _)| *column)
        .filter(|column| !present.iter().any(|p| p == column))
        .collect())
}

const LEGACY_CODE_TAKEN: &str =
    "SELECT COUNT(*) FROM category_attributes WHERE lower(name) = lower($1) AND id <> $2";
const UNIFIED_CODE_TAKEN: &str =
    "SELECT COUNT(*) FROM unified_attributes WHERE code = $1 AND id <> $2";

/// Whether a definition other than `except_id` has `code` in `store`.
pub(crate) async fn code_taken(
    conn: Dialect<'_>,
    store: Store,
    code: &str,
    except_id: i64,
) -> Result<bool> {
    record_queries(1);
    let statement = match store {
        Store::Legacy => LEGACY_CODE_TAKEN,
        Store::Unified => UNIFIED_CODE_TAKEN,
    };
    let count: i64 = on_dialect!(conn, Sql::same(statement), |c, statement| {
        sqlx::query_scalar(statement)
            .bind(code)
            .bind(except_id)
            .fetch_one(c)
            .await?
    });
    Ok(count > 0)
}

const LEGACY_ATTRIBUTE_CODE: &str = "SELECT name FROM category_attributes WHERE id = $1";
const UNIFIED_ATTRIBUTE_CODE: &str = "SELECT code FROM unified_attributes WHERE id = $1";

/// The code of definition `id` in `store`, normalized.
pub(crate) async fn attribute_code(
    conn: Dialect<'_>,
    store: Store,
    id: i64,
) -> Result<Option<String>> {
    record_queries(1);
    let statement = match store {
        Store::Legacy => LEGACY_ATTRIBUTE_CODE,
        Store::Unified => UNIFIED_ATTRIBUTE_CODE,
    };
    let code: Option<String> = on_dialect!(conn, Sql::same(statement), |c, statement| {
        sqlx::query_scalar(statement)
            .bind(id)
            .fetch_optional(c)
            .await?
    });
    Ok(code.map(|c| domain::attribute::normalize_code(&c)))
}

const INSERT_LEGACY_ATTRIBUTE_AUTO_ID: &str = "INSERT INTO category_attributes
        (name, display_name, attribute_type, options, validation_rules, is_searchable,
         is_filterable, is_required, sort_order, custom_component, show_in_card, show_in_list,
         icon, affects_stock, is_variant_compatible)
    VALUES ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
    RETURNING id";

const UPDATE_LEGACY_ATTRIBUTE: &str = "UPDATE category_attributes SET
        name = $2, display_name = $3, attribute_type = $4, options = $5, validation_rules = $6,
        is_searchable = $7, is_filterable = $8, is_required = $9, sort_order = $10,
        custom_component = $11, show_in_card = $12, show_in_list = $13, icon = $14,
        affects_stock = $15, is_variant_compatible = $16
    WHERE id = $1";

/// Runs one of the legacy definition statements with `$1…$16` bound from `row`, without the
/// columns this database lacks; returns the id it `RETURNING`s, if it does.
pub(crate) async fn run_legacy_definition(
    mut conn: Dialect<'_>,
    statement: &'static str,
    row: &LegacyDefinitionRow,
) -> Result<Option<i32>> {
    let missing = missing_later_columns(conn.reborrow()).await?;
    let statement = without_columns(statement, &missing);
    record_queries(1);
    Ok(on_dialect!(conn, |c| {
        sqlx::query_scalar(&statement)
            .bind(row.id)
            .bind(row.name.as_str())
            .bind(row.display_name.as_str())
            .bind(row.attribute_type.as_str())
            .bind(sqlx::types::Json(&row.options))
            .bind(sqlx::types::Json(&row.validation_rules))
            .bind(row.is_searchable)
            .bind(row.is_filterable)
            .bind(row.is_required)
            .bind(row.sort_order)
            .bind(row.custom_component.as_deref())
            .bind(row.show_in_card)
            .bind(row.show_in_list)
            .bind(row.icon.as_deref())
            .bind(row.affects_stock)
            .bind(row.is_variant_compatible)
            .fetch_optional(c)
            .await?
    }))
}

/// A new legacy definition under an id legacy picks; returns that id.
pub(crate) async fn legacy_insert(mut conn: Dialect<'_>, attribute: &Attribute) -> Result<i64> {
    let row = crate::legacy::encode_definition(attribute, false);
    let id = run_legacy_definition(conn.reborrow(), INSERT_LEGACY_ATTRIBUTE_AUTO_ID, &row)
        .await?
        .ok_or_else(|| sqlx::Error::RowNotFound)?;
    let stored = Attribute {
        id: id.into(),
        ..attribute.clone()
    };
    keep_legacy_created_at(conn.reborrow(), &stored).await?;
    write_legacy_translations(conn, &stored).await?;
    Ok(id.into())
}

/// A legacy definition under the id `attribute` has (the sync's copy of a unified one).
pub(crate) async fn legacy_insert_with_id(
    mut conn: Dialect<'_>,
    attribute: &Attribute,
) -> Result<()> {
    let row = crate::legacy::encode_definition(attribute, false);
    run_legacy_definition(conn.reborrow(), INSERT_LEGACY_ATTRIBUTE, &row).await?;
    keep_legacy_created_at(conn.reborrow(), attribute).await?;
    write_legacy_translations(conn, attribute).await
}

pub(crate) async fn legacy_update(mut conn: Dialect<'_>, attribute: &Attribute) -> Result<()> {
    let row = crate::legacy::encode_definition(attribute, false);
    run_legacy_definition(conn.reborrow(), UPDATE_LEGACY_ATTRIBUTE, &row).await?;
    write_legacy_translations(conn, attribute).await
}

/// Keeps the creation time a definition had elsewhere (demo data, a restored definition):
/// the legacy inserts leave it to the column's default.
const SET_LEGACY_CREATED_AT: Sql =
    Sql::same("UPDATE category_attributes SET created_at = $2 WHERE id = $1");

pub(crate) async fn keep_legacy_created_at(conn: Dialect<'_>, attribute: &Attribute) -> Result<()> {
    if let Some(created_at) = attribute.created_at {
        record_queries(1);
        on_dialect!(conn, SET_LEGACY_CREATED_AT, |c, statement| {
            sqlx::query(statement)
                .bind(attribute.id)
                .bind(created_at)
                .execute(c)
                .await?;
        });
    }
    Ok(())
}

const DELETE_LEGACY_TRANSLATIONS: &str =
    "DELETE FROM translations WHERE entity_type = 'attribute' AND entity_id = $1";

/// Replaces the English and Russian labels of a legacy definition.
async fn write_legacy_translations(mut conn: Dialect<'_>, attribute: &Attribute) -> Result<()> {
    record_queries(1);
    on_dialect!(conn.reborrow(), |c| {
        sqlx::query(DELETE_LEGACY_TRANSLATIONS)
            .bind(attribute.id)
            .execute(c)
            .await?;
    });
    for row in crate::legacy::attribute_translations(attribute) {
        record_queries(1);
        on_dialect!(conn.reborrow(), |c| {
            sqlx::query(INSERT_TRANSLATION)
                .bind(row.entity_type)
                .bind(row.entity_id)
                .bind(row.language.as_str())
                .bind(&row.field_name)
                .bind(&row.text)
                .execute(c)
                .await?;
        });
    }
    Ok(())
}

/// New unified-only attributes take ids from 1,000,000 up, clear of legacy ids.
const NEXT_UNIFIED_ONLY_ID: Sql = Sql::same(
    "SELECT CAST(COALESCE(MAX(id) + 1, 1000000) AS BIGINT) FROM unified_attributes WHERE id >= 1000000",
);

pub(crate) async fn unified_next_id(conn: Dialect<'_>) -> Result<i64> {
    record_queries(1);
    Ok(on_dialect!(conn, NEXT_UNIFIED_ONLY_ID, |c, statement| {
        sqlx::query_scalar(statement).fetch_one(c).await?
    }))
}

macro_rules! insert_unified_attribute {
    () => {
        "INSERT INTO unified_attributes
        (id, code, name, display_name, attribute_type, purpose, options, validation_rules,
         ui_settings, is_searchable, is_filterable, is_required, is_variant_compatible,
         affects_stock, affects_price, show_in_card, sort_order, is_active,
         legacy_category_attribute_id, legacy_product_variant_attribute_id, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
            COALESCE($21, CURRENT_TIMESTAMP), COALESCE($21, CURRENT_TIMESTAMP))"
    };
}

/// Creates a unified definition if it is missing. Every unique index is an arbiter: a backfill
/// upserting the same definition at the same moment (by id) must not make this write fail on
/// the index it does not name (PostgreSQL raises on a non-arbiter index).
const INSERT_UNIFIED_ATTRIBUTE: Sql = Sql::same(concat!(
    insert_unified_attribute!(),
    " ON CONFLICT DO NOTHING"
));

const UPSERT_UNIFIED_ATTRIBUTE: Sql = Sql::same(concat!(
    insert_unified_attribute!(),
    " ON CONFLICT (id) DO UPDATE SET
        code = excluded.code, name = excluded.name, display_name = excluded.display_name,
        attribute_type = excluded.attribute_type, purpose = excluded.purpose,
        options = excluded.options, validation_rules = excluded.validation_rules,
        ui_settings = excluded.ui_settings, is_searchable = excluded.is_searchable,
        is_filterable = excluded.is_filterable, is_required = excluded.is_required,
        is_variant_compatible = excluded.is_variant_compatible, affects_stock = excluded.affects_stock,
        affects_price = excluded.affects_price, show_in_card = excluded.show_in_card,
        sort_order = excluded.sort_order, is_active = excluded.is_active,
        updated_at = CURRENT_TIMESTAMP"
));

/// Runs a unified definition insert or upsert with `$1…$21` bound from `attribute`.
async fn run_unified_definition(
    conn: Dialect<'_>,
    statement: Sql,
    attribute: &Attribute,
    legacy_c2c_id: Option<i64>,
    legacy_variant_id: Option<i64>,
) -> Result<()> {
    record_queries(1);
    on_dialect!(conn, statement, |c, statement| {
        sqlx::query(statement)
            .bind(attribute.id)
            .bind(&attribute.code)
            .bind(sqlx::types::Json(&attribute.name))
            .bind(sqlx::types::Json(&attribute.display_name))
            .bind(attribute.attribute_type.as_str())
            .bind(attribute.purpose.as_str())
            .bind(sqlx::types::Json(attribute.stored_options()))
            .bind(sqlx::types::Json(&attribute.rules))
            .bind(sqlx::types::Json(&attribute.ui))
            .bind(attribute.is_searchable)
            .bind(attribute.is_filterable)
            .bind(attribute.is_required)
            .bind(attribute.is_variant_compatible)
            .bind(attribute.affects_stock)
            .bind(attribute.affects_price)
            .bind(attribute.show_in_card)
            .bind(attribute.sort_order)
            .bind(attribute.is_active)
            .bind(legacy_c2c_id)
            .bind(legacy_variant_id)
            .bind(attribute.created_at)
            .execute(c)
            .await?;
    });
    Ok(())
}

/// The unified definition, created or replaced.
pub(crate) async fn unified_upsert(
    conn: Dialect<'_>,
    attribute: &Attribute,
    legacy_c2c_id: Option<i64>,
) -> Result<()> {
    run_unified_definition(
        conn,
        UPSERT_UNIFIED_ATTRIBUTE,
        attribute,
        legacy_c2c_id,
        None,
    )
    .await
}

/// The unified definition, created unless one exists.
pub(crate) async fn unified_insert(
    conn: Dialect<'_>,
    attribute: &Attribute,
    legacy_c2c_id: Option<i64>,
    legacy_variant_id: Option<i64>,
) -> Result<()> {
    run_unified_definition(
        conn,
        INSERT_UNIFIED_ATTRIBUTE,
        attribute,
        legacy_c2c_id,
        legacy_variant_id,
    )
    .await
}

/// The unified definitions of `values`' codes, copied from the schema's where missing.
pub(crate) async fn unified_ensure(
    mut conn: Dialect<'_>,
    schema: &EffectiveSchema,
    values: &EntityValues,
) -> Result<()> {
    for code in values.keys() {
        if let Some(effective) = schema.get(code) {
            let attribute = &effective.attribute;
            unified_insert(conn.reborrow(), attribute, Some(attribute.id), None).await?;
        }
    }
    Ok(())
}

const DELETE_LEGACY_ATTRIBUTE: &str = "DELETE FROM category_attributes WHERE id = $1";
const DELETE_UNIFIED_ATTRIBUTE: &str = "DELETE FROM unified_attributes WHERE id = $1";

/// Deletes definition `id` from `store` (legacy's labels with it); returns the rows deleted.
pub(crate) async fn delete(mut conn: Dialect<'_>, store: Store, id: i64) -> Result<u64> {
    let statement = match store {
        Store::Legacy => {
            record_queries(1);
            on_dialect!(conn.reborrow(), |c| {
                sqlx::query(DELETE_LEGACY_TRANSLATIONS)
                    .bind(id)
                    .execute(c)
                    .await?;
            });
            DELETE_LEGACY_ATTRIBUTE
        }
        Store::Unified => DELETE_UNIFIED_ATTRIBUTE,
    };
    record_queries(1);
    Ok(on_dialect!(conn, |c| {
        sqlx::query(statement)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
    }))
}

const UPSERT_LEGACY_BINDING: &str = "INSERT INTO category_attribute_mapping
        (category_id, attribute_id, is_enabled, is_required, sort_order, custom_component,
         show_in_card, show_in_list)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (category_id, attribute_id) DO UPDATE SET
        is_enabled = excluded.is_enabled, is_required = excluded.is_required,
        sort_order = excluded.sort_order, custom_component = excluded.custom_component,
        show_in_card = excluded.show_in_card, show_in_list = excluded.show_in_list";

const UPSERT_UNIFIED_BINDING: &str = "INSERT INTO unified_category_attributes
        (category_id, attribute_id, is_enabled, is_required, is_filterable, is_searchable,
         show_in_card, show_in_list, custom_component, sort_order, category_specific_options)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (category_id, attribute_id) DO UPDATE SET
        is_enabled = excluded.is_enabled, is_required = excluded.is_required,
        is_filterable = excluded.is_filterable, is_searchable = excluded.is_searchable,
        show_in_card = excluded.show_in_card, show_in_list = excluded.show_in_list,
        custom_component = excluded.custom_component, sort_order = excluded.sort_order,
        category_specific_options = excluded.category_specific_options,
        updated_at = CURRENT_TIMESTAMP";

/// The binding, created or replaced in `store`.
pub(crate) async fn upsert_binding(
    conn: Dialect<'_>,
    store: Store,
    binding: &CategoryBinding,
) -> Result<()> {
    record_queries(1);
    match store {
        Store::Legacy => on_dialect!(conn, |c| {
            sqlx::query(UPSERT_LEGACY_BINDING)
                .bind(binding.category_id)
                .bind(binding.attribute_id)
                .bind(binding.is_enabled)
                .bind(binding.is_required)
                .bind(binding.sort_order)
                .bind(&binding.custom_component)
                .bind(binding.show_in_card)
                .bind(binding.show_in_list)
                .execute(c)
                .await?;
        }),
        Store::Unified => on_dialect!(conn, |c| {
            sqlx::query(UPSERT_UNIFIED_BINDING)
                .bind(binding.category_id)
                .bind(binding.attribute_id)
                .bind(binding.is_enabled)
                .bind(binding.is_required)
                .bind(binding.is_filterable)
                .bind(binding.is_searchable)
                .bind(binding.show_in_card)
                .bind(binding.show_in_list)
                .bind(binding.custom_component.as_deref())
                .bind(binding.sort_order)
                .bind(
                    binding
                        .category_specific_options
                        .as_ref()
                        .map(sqlx::types::Json),
                )
                .execute(c)
                .await?;
        }),
    }
    Ok(())
}

const DELETE_LEGACY_BINDING: &str =
    "DELETE FROM category_attribute_mapping WHERE category_id = $1 AND attribute_id = $2";
const DELETE_UNIFIED_BINDING: &str =
    "DELETE FROM unified_category_attributes WHERE category_id = $1 AND attribute_id = $2";

/// Deletes the binding from `store`; returns the rows deleted.
pub(crate) async fn delete_binding(
    conn: Dialect<'_>,
    store: Store,
    category_id: i64,
    attribute_id: i64,
) -> Result<u64> {
    record_queries(1);
    let statement = match store {
        Store::Legacy => DELETE_LEGACY_BINDING,
        Store::Unified => DELETE_UNIFIED_BINDING,
    };
    Ok(on_dialect!(conn, |c| {
        sqlx::query(statement)
            .bind(category_id)
            .bind(attribute_id)
            .execute(c)
            .await?
            .rows_affected()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_statements_lose_exactly_the_missing_columns_and_their_placeholders() {
        let insert = without_columns(INSERT_LEGACY_ATTRIBUTE, &["is_variant_compatible"]);
        assert!(
            insert.contains("icon, affects_stock)") && insert.contains("$14, $15)"),
            "{insert}"
        );
        let insert = without_columns(
            INSERT_LEGACY_ATTRIBUTE_AUTO_ID,
            &["affects_stock", "is_variant_compatible"],
        );
        assert!(
            insert.contains("icon)") && insert.contains("$14)"),
            "{insert}"
        );
        let update = without_columns(
            UPDATE_LEGACY_ATTRIBUTE,
            &["affects_stock", "is_variant_compatible"],
        );
        assert!(
            !update.contains("affects_stock") && !update.contains("$16"),
            "{update}"
        );
        assert!(update.contains("icon = $14\n    WHERE id = $1"), "{update}");
        assert_eq!(
            without_columns(UPDATE_LEGACY_ATTRIBUTE, &[]),
            UPDATE_LEGACY_ATTRIBUTE
        );
    }
}
