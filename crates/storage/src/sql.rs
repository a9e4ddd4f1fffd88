//! SQL text. Statements that both backends accept are written once here; the backend
//! modules hold the few that differ (aggregates, casts, transaction start).

/// The category and its ancestors, nearest first. The depth bound stops a cycle in
/// hand-edited category data from looping forever.
macro_rules! category_chain_cte {
    () => {
        "WITH RECURSIVE chain (id, parent_id, depth) AS (
            SELECT id, parent_id, 0 FROM marketplace_categories WHERE id = $1
            UNION ALL
            SELECT c.id, c.parent_id, chain.depth + 1
            FROM marketplace_categories c JOIN chain ON c.id = chain.parent_id
            WHERE chain.depth < 16
        ) "
    };
}

/// The aliases operators registered for the options of the attribute whose id is `$id` (the
/// same in both stores), as an `{"alias": "option value"}` object aggregated by `$aggregate`
/// (NULL when none).
macro_rules! option_aliases_column {
    ($aggregate:literal, $id:literal) => {
        concat!(
            "(SELECT ",
            $aggregate,
            " FROM attribute_option_aliases x
              WHERE x.attribute_id = ",
            $id,
            ") AS aliases"
        )
    };
}

/// The columns of a legacy definition `a`, with its translations — the shared `translations`
/// table's and, as `option.{value}` fields, `attribute_option_translations`' Russian and
/// Serbian option labels — aggregated by `$translations` into a `{"lang:field": text}` object. `$later` reads `affects_stock` and
/// `is_variant_compatible`, which the monolith added later: older databases lack them.
macro_rules! legacy_attribute_columns {
    ($translations:literal, $later:literal, $aliases:literal) => {
        concat!(
            "a.name, a.display_name, a.attribute_type, a.options, a.validation_rules,
                a.is_searchable, a.is_filterable, a.is_required, a.sort_order, a.custom_component,
                a.show_in_card, a.show_in_list, a.icon, CAST(a.created_at AS TEXT) AS created_at,
                ", $later, ", ",
                $crate::sql::option_aliases_column!($aliases, "a.id"), ",
                EXISTS (SELECT 1 FROM product_variant_attributes p
                        WHERE lower(p.name) = lower(a.name)) AS has_variant_axis,
                (SELECT ", $translations, " FROM (
                    SELECT t.language, t.field_name, t.translated_text FROM translations t
                    WHERE t.entity_type = 'attribute' AND t.entity_id = a.id
                    UNION ALL
                    SELECT 'ru', 'option.' || o.option_value, o.ru_translation
                    FROM attribute_option_translations o
                    WHERE o.attribute_name = a.name AND o.ru_translation IS NOT NULL
                    UNION ALL
                    SELECT 'sr', 'option.' || o.option_value, o.sr_translation
                    FROM attribute_option_translations o
                    WHERE o.attribute_name = a.name AND o.sr_translation IS NOT NULL
                  ) t) AS translations"
        )
    };
}

/// The legacy schema of a category chain in one query.
macro_rules! legacy_schema_sql {
    ($translations:literal, $later:literal, $aliases:literal) => {
        concat!(
            $crate::sql::category_chain_cte!(),
            "SELECT chain.id AS chain_id, m.attribute_id,
                m.is_enabled AS b_is_enabled, m.is_required AS b_is_required,
                m.sort_order AS b_sort_order, m.custom_component AS b_custom_component,
                m.show_in_card AS b_show_in_card, m.show_in_list AS b_show_in_list, ",
            $crate::sql::legacy_attribute_columns!($translations, $later, $aliases),
            "
            FROM chain
            LEFT JOIN category_attribute_mapping m ON m.category_id = chain.id
            LEFT JOIN category_attributes a ON a.id = m.attribute_id
            ORDER BY chain.depth, m.attribute_id"
        )
    };
}

/// Every legacy C2C definition, shaped like a schema row without a binding.
macro_rules! legacy_catalog_sql {
    ($translations:literal, $later:literal, $aliases:literal) => {
        concat!(
            "SELECT CAST(0 AS INTEGER) AS chain_id, a.id AS attribute_id,
                CAST(NULL AS BOOLEAN) AS b_is_enabled, CAST(NULL AS BOOLEAN) AS b_is_required,
                CAST(NULL AS INTEGER) AS b_sort_order, CAST(NULL AS TEXT) AS b_custom_component,
                CAST(NULL AS BOOLEAN) AS b_show_in_card, CAST(NULL AS BOOLEAN) AS b_show_in_list, ",
            $crate::sql::legacy_attribute_columns!($translations, $later, $aliases),
            " FROM category_attributes a ORDER BY a.id"
        )
    };
}

/// B2C variant axes that no C2C definition shares a name with, with their option catalogue.
macro_rules! legacy_variant_axes_sql {
    ($translations:literal, $options:literal, $affects_stock:literal, $aliases:literal) => {
        concat!(
            "SELECT p.id, p.name, p.display_name, p.type AS attribute_type, p.is_required,
                p.sort_order, CAST(p.created_at AS TEXT) AS created_at,
                CAST(p.updated_at AS TEXT) AS updated_at, ", $affects_stock, ", ",
                $crate::sql::option_aliases_column!($aliases, "1000000 + p.id"), ",
                (SELECT ", $translations, " FROM translations t
                  WHERE t.entity_type = 'product_variant_attribute' AND t.entity_id = p.id) AS translations,
                (SELECT ", $options, " FROM (SELECT * FROM product_variant_attribute_values o
                  WHERE o.attribute_id = p.id ORDER BY o.sort_order, o.id) o) AS options
            FROM product_variant_attributes p
            WHERE NOT EXISTS (SELECT 1 FROM category_attributes a WHERE lower(a.name) = lower(p.name))
            ORDER BY p.id"
        )
    };
}
pub(crate) use {
    legacy_attribute_columns, legacy_catalog_sql, legacy_variant_axes_sql, option_aliases_column,
};

pub(crate) use {category_chain_cte, legacy_schema_sql};

/// The unified definition columns of `a`, with the aliases of its options.
macro_rules! unified_attribute_columns {
    ($aliases:literal) => {
        concat!(
            "a.code, a.name, a.display_name, a.attribute_type, a.purpose, a.options,
            a.validation_rules, a.ui_settings, a.is_searchable, a.is_filterable, a.is_required,
            a.is_variant_compatible, a.affects_stock, a.affects_price, a.show_in_card,
            a.sort_order, a.is_active, CAST(a.created_at AS TEXT) AS created_at,
            CAST(a.updated_at AS TEXT) AS updated_at, ",
            $crate::sql::option_aliases_column!($aliases, "a.id")
        )
    };
}

/// Every unified definition, shaped like a schema row without a binding.
macro_rules! unified_catalog_sql {
    ($aliases:literal) => {
        concat!(
            "SELECT CAST(0 AS INTEGER) AS chain_id, a.id AS attribute_id,
                CAST(NULL AS BOOLEAN) AS b_is_enabled, CAST(NULL AS BOOLEAN) AS b_is_required,
                CAST(NULL AS BOOLEAN) AS b_is_filterable, CAST(NULL AS BOOLEAN) AS b_is_searchable,
                CAST(NULL AS BOOLEAN) AS b_show_in_card, CAST(NULL AS BOOLEAN) AS b_show_in_list,
                CAST(NULL AS TEXT) AS b_custom_component, CAST(NULL AS INTEGER) AS b_sort_order,
                NULL AS b_category_specific_options, ",
            $crate::sql::unified_attribute_columns!($aliases),
            " FROM unified_attributes a ORDER BY a.id"
        )
    };
}

/// The unified schema of a category chain in one query.
macro_rules! unified_schema_sql {
    ($aliases:literal) => {
        concat!(
            $crate::sql::category_chain_cte!(),
            "SELECT chain.id AS chain_id, b.attribute_id,
                b.is_enabled AS b_is_enabled, b.is_required AS b_is_required,
                b.is_filterable AS b_is_filterable, b.is_searchable AS b_is_searchable,
                b.show_in_card AS b_show_in_card, b.show_in_list AS b_show_in_list,
                b.custom_component AS b_custom_component, b.sort_order AS b_sort_order,
                b.category_specific_options AS b_category_specific_options, ",
            $crate::sql::unified_attribute_columns!($aliases),
            "
            FROM chain
            LEFT JOIN unified_category_attributes b ON b.category_id = chain.id
            LEFT JOIN unified_attributes a ON a.id = b.attribute_id
            ORDER BY chain.depth, b.attribute_id"
        )
    };
}
pub(crate) use {unified_attribute_columns, unified_catalog_sql, unified_schema_sql};

pub(crate) const LISTING_CATEGORY: &str =
    "SELECT category_id FROM marketplace_listings WHERE id = $1";
pub(crate) const PRODUCT_CATEGORY: &str =
    "SELECT category_id FROM storefront_products WHERE id = $1";
pub(crate) const VARIANT_CATEGORY: &str = "SELECT p.category_id FROM storefront_product_variants v
     JOIN storefront_products p ON p.id = v.product_id WHERE v.id = $1";

/// Legacy listing values; one row with `code` NULL proves a listing without values exists.
pub(crate) const LEGACY_LISTING_VALUES: &str =
    "SELECT a.name AS code, a.attribute_type, v.text_value,
        CAST(v.numeric_value AS TEXT) AS numeric_value, v.boolean_value,
        CAST(NULL AS TEXT) AS date_value, v.json_value, v.unit
    FROM marketplace_listings l
    LEFT JOIN listing_attribute_values v ON v.listing_id = l.id
    LEFT JOIN category_attributes a ON a.id = v.attribute_id
    WHERE l.id = $1";

macro_rules! unified_values_sql {
    ($entity_table:literal) => {
        concat!(
            "SELECT a.code, a.attribute_type, v.text_value,
                CAST(v.numeric_value AS TEXT) AS numeric_value, v.boolean_value,
                CAST(v.date_value AS TEXT) AS date_value, v.json_value, v.unit
            FROM ",
            $entity_table,
            " e
            LEFT JOIN unified_attribute_values v ON v.entity_type = $2 AND v.entity_id = e.id
            LEFT JOIN unified_attributes a ON a.id = v.attribute_id
            WHERE e.id = $1"
        )
    };
}
pub(crate) const UNIFIED_LISTING_VALUES: &str = unified_values_sql!("marketplace_listings");
pub(crate) const UNIFIED_PRODUCT_VALUES: &str = unified_values_sql!("storefront_products");
pub(crate) const UNIFIED_VARIANT_VALUES: &str = unified_values_sql!("storefront_product_variants");

/// The table of an entity kind (ids are shared by both stores).
pub(crate) fn entity_table(kind: domain::EntityKind) -> &'static str {
    match kind {
        domain::EntityKind::Listing => "marketplace_listings",
        domain::EntityKind::Product => "storefront_products",
        domain::EntityKind::ProductVariant => "storefront_product_variants",
    }
}

/// Unified values of many entities of one kind; the caller appends the kind and the ids.
pub(crate) const UNIFIED_VALUES_OF_KIND: &str =
    "SELECT v.entity_id, a.code, a.attribute_type, v.text_value,
        CAST(v.numeric_value AS TEXT) AS numeric_value, v.boolean_value,
        CAST(v.date_value AS TEXT) AS date_value, v.json_value, v.unit
    FROM unified_attribute_values v JOIN unified_attributes a ON a.id = v.attribute_id
    WHERE v.entity_type = ";

pub(crate) const PRODUCT_DOCUMENT: &str =
    "SELECT attributes FROM storefront_products WHERE id = $1";
pub(crate) const VARIANT_DOCUMENT: &str =
    "SELECT variant_attributes FROM storefront_product_variants WHERE id = $1";

/// Definitions that a B2C document may name: C2C attributes and variant axes, with their
/// translated labels, so that keys like `Veličina` or `Цвет` resolve to a code.
macro_rules! legacy_vocabulary_sql {
    ($translations:literal) => {
        concat!(
            "SELECT a.id, a.name, a.display_name, a.attribute_type, 'attribute' AS source,
                (SELECT ",
            $translations,
            " FROM translations t
                  WHERE t.entity_type = 'attribute' AND t.entity_id = a.id) AS translations
            FROM category_attributes a
            UNION ALL
            SELECT p.id, p.name, p.display_name, p.type, 'product_variant_attribute',
                (SELECT ",
            $translations,
            " FROM translations t
                  WHERE t.entity_type = 'product_variant_attribute' AND t.entity_id = p.id)
            FROM product_variant_attributes p"
        )
    };
}
pub(crate) use legacy_vocabulary_sql;

pub(crate) const UPDATE_PRODUCT_DOCUMENT: &str =
    "UPDATE storefront_products SET attributes = $2 WHERE id = $1";
pub(crate) const UPDATE_VARIANT_DOCUMENT: &str =
    "UPDATE storefront_product_variants SET variant_attributes = $2 WHERE id = $1";

/// Creates a unified definition if it is missing. Every unique index is an arbiter: a backfill
/// upserting the same definition at the same moment (by id) must not make this write fail on
/// the index it does not name (PostgreSQL raises on a non-arbiter index).
pub(crate) const INSERT_UNIFIED_ATTRIBUTE: &str = "INSERT INTO unified_attributes
        (id, code, name, display_name, attribute_type, purpose, options, validation_rules,
         ui_settings, is_searchable, is_filterable, is_required, is_variant_compatible,
         affects_stock, affects_price, show_in_card, sort_order, is_active,
         legacy_category_attribute_id, legacy_product_variant_attribute_id, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
            COALESCE($21, CURRENT_TIMESTAMP), COALESCE($21, CURRENT_TIMESTAMP))
    ON CONFLICT DO NOTHING";

pub(crate) const INSERT_UNIFIED_BINDING: &str = "INSERT INTO unified_category_attributes
        (category_id, attribute_id, is_enabled, is_required, is_filterable, is_searchable,
         show_in_card, show_in_list, custom_component, sort_order, category_specific_options)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

pub(crate) const COUNT_LEGACY_DEFINITIONS: &str = "SELECT COUNT(*) FROM category_attributes";

// Seeding: plain inserts of legacy rows.
pub(crate) const INSERT_CATEGORY: &str = "INSERT INTO marketplace_categories (id, parent_id, name, slug, level) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const INSERT_PRODUCT: &str = "INSERT INTO storefront_products
    (id, category_id, attributes, storefront_id) VALUES ($1, $2, $3, $4)";
pub(crate) const INSERT_STOREFRONT: &str = "INSERT INTO storefronts (id, user_id, name)
    VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING";
/// Who may write an entity's values: the listing's user, the product's (or the variant's
/// product's) storefront's user.
pub(crate) const INSERT_VARIANT: &str = "INSERT INTO storefront_product_variants (id, product_id, variant_attributes) VALUES ($1, $2, $3)";
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
pub(crate) const INSERT_LEGACY_BINDING: &str = "INSERT INTO category_attribute_mapping
        (category_id, attribute_id, is_enabled, is_required, sort_order, custom_component,
         show_in_card, show_in_list)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub(crate) const INSERT_TRANSLATION: &str = "INSERT INTO translations
        (entity_type, entity_id, language, field_name, translated_text) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const INSERT_VARIANT_AXIS: &str = "INSERT INTO product_variant_attributes
        (id, name, display_name, type, is_required, sort_order, affects_stock, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, CURRENT_TIMESTAMP), COALESCE($8, CURRENT_TIMESTAMP))";
/// Keeps the creation time a definition had elsewhere (demo data, a restored definition):
/// the legacy inserts leave it to the column's default.
pub(crate) const SET_LEGACY_ATTRIBUTE_CREATED_AT: &str =
    "UPDATE category_attributes SET created_at = $2 WHERE id = $1";
pub(crate) const INSERT_VARIANT_AXIS_OPTION: &str = "INSERT INTO product_variant_attribute_values
        (attribute_id, value, display_name, color_hex, sort_order, image_url)
    VALUES ($1, $2, $3, $4, $5, $6)";

/// Categories below (and including) `$1`; `UNION` stops on a cycle in the category data.
macro_rules! subtree_cte {
    () => {
        "WITH RECURSIVE subtree (id) AS (
            SELECT id FROM marketplace_categories WHERE id = $1
            UNION
            SELECT c.id FROM marketplace_categories c JOIN subtree s ON c.parent_id = s.id
        ) "
    };
}

pub(crate) const CATEGORY_SUBTREE: &str = concat!(subtree_cte!(), "SELECT id FROM subtree");

/// min/max/count of each number attribute over the listings of a category subtree. Legacy
/// numbers are read from `numeric_value`, or from `text_value` where they were tagged 'text';
/// `$number` is the backend's expression for that number.
macro_rules! legacy_ranges_sql {
    ($number:literal) => {
        concat!(
            $crate::sql::subtree_cte!(),
            "SELECT a.name AS code, CAST(MIN(x.n) AS TEXT) AS min, CAST(MAX(x.n) AS TEXT) AS max,
                COUNT(*) AS count
            FROM (SELECT v.attribute_id, ",
            $number,
            " AS n
                  FROM subtree JOIN marketplace_listings l ON l.category_id = subtree.id
                  JOIN listing_attribute_values v ON v.listing_id = l.id) x
            JOIN category_attributes a ON a.id = x.attribute_id AND a.attribute_type = 'number'
            WHERE x.n IS NOT NULL
            GROUP BY a.name ORDER BY a.name"
        )
    };
}

macro_rules! unified_ranges_sql {
    ($number:literal) => {
        concat!(
            $crate::sql::subtree_cte!(),
            "SELECT a.code, CAST(MIN(x.n) AS TEXT) AS min, CAST(MAX(x.n) AS TEXT) AS max, COUNT(*) AS count
            FROM (SELECT v.attribute_id, ", $number, " AS n
                  FROM subtree JOIN marketplace_listings l ON l.category_id = subtree.id
                  JOIN unified_attribute_values v ON v.entity_type = 'listing' AND v.entity_id = l.id) x
            JOIN unified_attributes a ON a.id = x.attribute_id AND a.attribute_type = 'number'
            WHERE x.n IS NOT NULL
            GROUP BY a.code ORDER BY a.code"
        )
    };
}
pub(crate) use {legacy_ranges_sql, subtree_cte, unified_ranges_sql};

/// Listing values of many listings at once; `$ids` is the backend's "one of these ids".
macro_rules! legacy_listing_values_batch_sql {
    ($ids:literal) => {
        concat!(
            "SELECT CAST(l.id AS BIGINT) AS entity_id, a.name AS code, a.attribute_type, v.text_value,
                CAST(v.numeric_value AS TEXT) AS numeric_value, v.boolean_value,
                CAST(NULL AS TEXT) AS date_value, v.json_value, v.unit
            FROM marketplace_listings l
            LEFT JOIN listing_attribute_values v ON v.listing_id = l.id
            LEFT JOIN category_attributes a ON a.id = v.attribute_id
            WHERE l.id ",
            $ids
        )
    };
}

macro_rules! unified_listing_values_batch_sql {
    ($ids:literal) => {
        concat!(
            "SELECT CAST(l.id AS BIGINT) AS entity_id, a.code, a.attribute_type, v.text_value,
                CAST(v.numeric_value AS TEXT) AS numeric_value, v.boolean_value,
                CAST(v.date_value AS TEXT) AS date_value, v.json_value, v.unit
            FROM marketplace_listings l
            LEFT JOIN unified_attribute_values v ON v.entity_type = 'listing' AND v.entity_id = l.id
            LEFT JOIN unified_attributes a ON a.id = v.attribute_id
            WHERE l.id ", $ids
        )
    };
}
pub(crate) use {legacy_listing_values_batch_sql, unified_listing_values_batch_sql};

pub(crate) const CATEGORY_EXISTS: &str =
    "SELECT COUNT(*) FROM marketplace_categories WHERE id = $1";
pub(crate) const CATEGORY_BY_SLUG: &str =
    "SELECT id FROM marketplace_categories WHERE slug = $1 ORDER BY id LIMIT 1";

// Admin writes of definitions and bindings.
pub(crate) const INSERT_LEGACY_ATTRIBUTE_AUTO_ID: &str = "INSERT INTO category_attributes
        (name, display_name, attribute_type, options, validation_rules, is_searchable,
         is_filterable, is_required, sort_order, custom_component, show_in_card, show_in_list,
         icon, affects_stock, is_variant_compatible)
    VALUES ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
    RETURNING id";
pub(crate) const UPDATE_LEGACY_ATTRIBUTE: &str = "UPDATE category_attributes SET
        name = $2, display_name = $3, attribute_type = $4, options = $5, validation_rules = $6,
        is_searchable = $7, is_filterable = $8, is_required = $9, sort_order = $10,
        custom_component = $11, show_in_card = $12, show_in_list = $13, icon = $14,
        affects_stock = $15, is_variant_compatible = $16
    WHERE id = $1";
pub(crate) const DELETE_LEGACY_TRANSLATIONS: &str =
    "DELETE FROM translations WHERE entity_type = 'attribute' AND entity_id = $1";
pub(crate) const DELETE_LEGACY_ATTRIBUTE: &str = "DELETE FROM category_attributes WHERE id = $1";
pub(crate) const DELETE_UNIFIED_ATTRIBUTE: &str = "DELETE FROM unified_attributes WHERE id = $1";
pub(crate) const LEGACY_CODE_TAKEN: &str =
    "SELECT COUNT(*) FROM category_attributes WHERE lower(name) = lower($1) AND id <> $2";
pub(crate) const UNIFIED_CODE_TAKEN: &str =
    "SELECT COUNT(*) FROM unified_attributes WHERE code = $1 AND id <> $2";
pub(crate) const LEGACY_ATTRIBUTE_CODE: &str = "SELECT name FROM category_attributes WHERE id = $1";
pub(crate) const UNIFIED_ATTRIBUTE_CODE: &str = "SELECT code FROM unified_attributes WHERE id = $1";
/// New unified-only attributes take ids from 1,000,000 up, clear of legacy ids.
pub(crate) const NEXT_UNIFIED_ONLY_ID: &str = "SELECT CAST(COALESCE(MAX(id) + 1, 1000000) AS BIGINT) FROM unified_attributes WHERE id >= 1000000";
pub(crate) const UPSERT_UNIFIED_ATTRIBUTE: &str = "INSERT INTO unified_attributes
        (id, code, name, display_name, attribute_type, purpose, options, validation_rules,
         ui_settings, is_searchable, is_filterable, is_required, is_variant_compatible,
         affects_stock, affects_price, show_in_card, sort_order, is_active,
         legacy_category_attribute_id, legacy_product_variant_attribute_id, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
            COALESCE($21, CURRENT_TIMESTAMP), COALESCE($21, CURRENT_TIMESTAMP))
    ON CONFLICT (id) DO UPDATE SET
        code = excluded.code, name = excluded.name, display_name = excluded.display_name,
        attribute_type = excluded.attribute_type, purpose = excluded.purpose,
        options = excluded.options, validation_rules = excluded.validation_rules,
        ui_settings = excluded.ui_settings, is_searchable = excluded.is_searchable,
        is_filterable = excluded.is_filterable, is_required = excluded.is_required,
        is_variant_compatible = excluded.is_variant_compatible, affects_stock = excluded.affects_stock,
        affects_price = excluded.affects_price, show_in_card = excluded.show_in_card,
        sort_order = excluded.sort_order, is_active = excluded.is_active,
        updated_at = CURRENT_TIMESTAMP";
pub(crate) const UPSERT_LEGACY_BINDING: &str = "INSERT INTO category_attribute_mapping
        (category_id, attribute_id, is_enabled, is_required, sort_order, custom_component,
         show_in_card, show_in_list)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (category_id, attribute_id) DO UPDATE SET
        is_enabled = excluded.is_enabled, is_required = excluded.is_required,
        sort_order = excluded.sort_order, custom_component = excluded.custom_component,
        show_in_card = excluded.show_in_card, show_in_list = excluded.show_in_list";
pub(crate) const UPSERT_UNIFIED_BINDING: &str = "INSERT INTO unified_category_attributes
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
pub(crate) const DELETE_LEGACY_BINDING: &str =
    "DELETE FROM category_attribute_mapping WHERE category_id = $1 AND attribute_id = $2";
pub(crate) const DELETE_UNIFIED_BINDING: &str =
    "DELETE FROM unified_category_attributes WHERE category_id = $1 AND attribute_id = $2";

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
