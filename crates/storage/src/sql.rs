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

/// The table of an entity kind (ids are shared by both stores).
pub(crate) fn entity_table(kind: domain::EntityKind) -> &'static str {
    match kind {
        domain::EntityKind::Listing => "marketplace_listings",
        domain::EntityKind::Product => "storefront_products",
        domain::EntityKind::ProductVariant => "storefront_product_variants",
    }
}

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
