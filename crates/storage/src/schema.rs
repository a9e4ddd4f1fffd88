//! What the definitions say, read from either store: a category's effective schema, the whole
//! catalog, the numeric ranges of a category's listings, the category tree, and which legacy
//! columns this database has. Decimals and dates travel as text and are cast in the statement,
//! so they stay exact.

use flags::Store;

use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::Result;
use crate::rows::{self, AttributeRange, SchemaParts};
use crate::stats::record_queries;

const LEGACY_SCHEMA: Sql = Sql {
    pg: crate::sql::legacy_schema_sql!(
        "jsonb_object_agg(t.language || ':' || t.field_name, t.translated_text)",
        // Read through the row as JSON: a column an older database lacks reads as absent.
        "COALESCE(CAST(to_jsonb(a) ->> 'affects_stock' AS BOOLEAN), FALSE) AS affects_stock,
        COALESCE(CAST(to_jsonb(a) ->> 'is_variant_compatible' AS BOOLEAN), FALSE) AS is_variant_compatible",
        "jsonb_object_agg(x.alias, x.option_value)"
    ),
    lite: crate::sql::legacy_schema_sql!(
        "json_group_object(t.language || ':' || t.field_name, t.translated_text)",
        // SQLite databases are this service's own: every column is there.
        "a.affects_stock, a.is_variant_compatible",
        "json_group_object(x.alias, x.option_value)"
    ),
};

const UNIFIED_SCHEMA: Sql = Sql {
    pg: crate::sql::unified_schema_sql!("jsonb_object_agg(x.alias, x.option_value)"),
    lite: crate::sql::unified_schema_sql!("json_group_object(x.alias, x.option_value)"),
};

/// The definitions and bindings that make up `category_id`'s schema in `store`.
pub(crate) async fn schema(
    conn: Dialect<'_>,
    store: Store,
    category_id: i64,
) -> Result<SchemaParts> {
    record_queries(1);
    match store {
        Store::Legacy => {
            let rows: Vec<rows::LegacySchemaRow> =
                on_dialect!(conn, LEGACY_SCHEMA, |c, statement| {
                    sqlx::query_as(statement)
                        .bind(category_id)
                        .fetch_all(c)
                        .await?
                });
            Ok(rows::legacy_schema_parts(&rows))
        }
        Store::Unified => {
            let rows: Vec<rows::UnifiedSchemaRow> =
                on_dialect!(conn, UNIFIED_SCHEMA, |c, statement| {
                    sqlx::query_as(statement)
                        .bind(category_id)
                        .fetch_all(c)
                        .await?
                });
            rows::unified_schema_parts(&rows)
        }
    }
}

const LEGACY_CATALOG: Sql = Sql {
    pg: crate::sql::legacy_catalog_sql!(
        "jsonb_object_agg(t.language || ':' || t.field_name, t.translated_text)",
        // Read through the row as JSON: a column an older database lacks reads as absent.
        "COALESCE(CAST(to_jsonb(a) ->> 'affects_stock' AS BOOLEAN), FALSE) AS affects_stock,
        COALESCE(CAST(to_jsonb(a) ->> 'is_variant_compatible' AS BOOLEAN), FALSE) AS is_variant_compatible",
        "jsonb_object_agg(x.alias, x.option_value)"
    ),
    lite: crate::sql::legacy_catalog_sql!(
        "json_group_object(t.language || ':' || t.field_name, t.translated_text)",
        // SQLite databases are this service's own: every column is there.
        "a.affects_stock, a.is_variant_compatible",
        "json_group_object(x.alias, x.option_value)"
    ),
};

const LEGACY_VARIANT_AXES: Sql = Sql {
    pg: crate::sql::legacy_variant_axes_sql!(
        "jsonb_object_agg(t.language || ':' || t.field_name, t.translated_text)",
        "COALESCE(jsonb_agg(jsonb_build_object('value', o.value, 'label', o.display_name,
            'color_hex', o.color_hex, 'image_url', o.image_url, 'is_active', o.is_active) ORDER BY o.sort_order, o.id), '[]')",
        "COALESCE(CAST(to_jsonb(p) ->> 'affects_stock' AS BOOLEAN), FALSE) AS affects_stock",
        "jsonb_object_agg(x.alias, x.option_value)"
    ),
    lite: crate::sql::legacy_variant_axes_sql!(
        "json_group_object(t.language || ':' || t.field_name, t.translated_text)",
        "json_group_array(json_object('value', o.value, 'label', o.display_name, 'color_hex', o.color_hex, 'image_url', o.image_url, 'is_active', o.is_active))",
        "p.affects_stock",
        "json_group_object(x.alias, x.option_value)"
    ),
};

const UNIFIED_CATALOG: Sql = Sql {
    pg: crate::sql::unified_catalog_sql!("jsonb_object_agg(x.alias, x.option_value)"),
    lite: crate::sql::unified_catalog_sql!("json_group_object(x.alias, x.option_value)"),
};

/// Every definition of `store`; legacy's include the variant axes of B2C products.
pub(crate) async fn catalog(mut conn: Dialect<'_>, store: Store) -> Result<Vec<domain::Attribute>> {
    match store {
        Store::Legacy => {
            record_queries(2);
            let rows: Vec<rows::LegacySchemaRow> =
                on_dialect!(conn.reborrow(), LEGACY_CATALOG, |c, statement| {
                    sqlx::query_as(statement).fetch_all(c).await?
                });
            let mut catalog = rows::legacy_catalog(&rows);
            let axes: Vec<rows::VariantAxisRow> =
                on_dialect!(conn, LEGACY_VARIANT_AXES, |c, statement| {
                    sqlx::query_as(statement).fetch_all(c).await?
                });
            catalog.extend(axes.iter().filter_map(rows::VariantAxisRow::attribute));
            Ok(catalog)
        }
        Store::Unified => {
            record_queries(1);
            let rows: Vec<rows::UnifiedSchemaRow> =
                on_dialect!(conn, UNIFIED_CATALOG, |c, statement| {
                    sqlx::query_as(statement).fetch_all(c).await?
                });
            rows::unified_catalog(&rows)
        }
    }
}

/// Legacy numbers are read from `numeric_value`, or from `text_value` where they are numbers;
/// SQLite keeps decimals as text and compares them as REAL (exact to 15 digits).
const LEGACY_RANGES: Sql = Sql {
    pg: crate::sql::legacy_ranges_sql!(
        "COALESCE(v.numeric_value, CASE WHEN v.text_value ~ '^-?[0-9]+(\\.[0-9]+)?$'
            THEN CAST(v.text_value AS NUMERIC) END)"
    ),
    lite: crate::sql::legacy_ranges_sql!(
        "CAST(COALESCE(v.numeric_value, CASE WHEN v.text_value GLOB '*[0-9]*'
            AND v.text_value NOT GLOB '*[^0-9.-]*' THEN v.text_value END) AS REAL)"
    ),
};

const UNIFIED_RANGES: Sql = Sql {
    pg: crate::sql::unified_ranges_sql!("v.numeric_value"),
    lite: crate::sql::unified_ranges_sql!("CAST(v.numeric_value AS REAL)"),
};

/// min/max/count of each number attribute over the listings of `category_id`'s subtree.
pub(crate) async fn ranges(
    conn: Dialect<'_>,
    store: Store,
    category_id: i64,
) -> Result<Vec<AttributeRange>> {
    record_queries(1);
    let statement = match store {
        Store::Legacy => LEGACY_RANGES,
        Store::Unified => UNIFIED_RANGES,
    };
    let rows: Vec<rows::RangeRow> = on_dialect!(conn, statement, |c, statement| {
        sqlx::query_as(statement)
            .bind(category_id)
            .fetch_all(c)
            .await?
    });
    Ok(rows::ranges(rows))
}

const CATEGORY_EXISTS: Sql = Sql::same("SELECT COUNT(*) FROM marketplace_categories WHERE id = $1");

pub(crate) async fn category_exists(conn: Dialect<'_>, category_id: i64) -> Result<bool> {
    record_queries(1);
    let count: i64 = on_dialect!(conn, CATEGORY_EXISTS, |c, statement| {
        sqlx::query_scalar(statement)
            .bind(category_id)
            .fetch_one(c)
            .await?
    });
    Ok(count > 0)
}

const CATEGORY_BY_SLUG: Sql =
    Sql::same("SELECT id FROM marketplace_categories WHERE slug = $1 ORDER BY id LIMIT 1");

pub(crate) async fn category_by_slug(conn: Dialect<'_>, slug: &str) -> Result<Option<i64>> {
    record_queries(1);
    let id: Option<i32> = on_dialect!(conn, CATEGORY_BY_SLUG, |c, statement| {
        sqlx::query_scalar(statement)
            .bind(slug)
            .fetch_optional(c)
            .await?
    });
    Ok(id.map(i64::from))
}

const CATEGORY_SUBTREE: Sql = Sql::same(concat!(
    crate::sql::subtree_cte!(),
    "SELECT id FROM subtree"
));

/// `category_id` and every category below it.
pub(crate) async fn category_subtree(conn: Dialect<'_>, category_id: i64) -> Result<Vec<i64>> {
    record_queries(1);
    let ids: Vec<i32> = on_dialect!(conn, CATEGORY_SUBTREE, |c, statement| {
        sqlx::query_scalar(statement)
            .bind(category_id)
            .fetch_all(c)
            .await?
    });
    Ok(ids.into_iter().map(i64::from).collect())
}

const LEGACY_COLUMNS: Sql = Sql {
    pg: "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns
         WHERE table_schema = 'public'",
    lite: "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p
         WHERE m.type = 'table'",
};

/// Every (table, column) of the marketplace's schema.
pub(crate) async fn legacy_columns(conn: Dialect<'_>) -> Result<Vec<(String, String)>> {
    record_queries(1);
    Ok(on_dialect!(conn, LEGACY_COLUMNS, |c, statement| {
        sqlx::query_as(statement).fetch_all(c).await?
    }))
}
