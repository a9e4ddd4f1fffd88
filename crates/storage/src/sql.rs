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

/// The legacy schema of a category chain in one query; `$translations` aggregates the
/// attribute's translations into a `{"lang:field": text}` object.
macro_rules! legacy_schema_sql {
    ($translations:literal) => {
        concat!(
            $crate::sql::category_chain_cte!(),
            "SELECT chain.id AS chain_id, m.attribute_id,
                m.is_enabled AS b_is_enabled, m.is_required AS b_is_required,
                m.sort_order AS b_sort_order, m.custom_component AS b_custom_component,
                m.show_in_card AS b_show_in_card, m.show_in_list AS b_show_in_list,
                a.name, a.display_name, a.attribute_type, a.options, a.validation_rules,
                a.is_searchable, a.is_filterable, a.is_required, a.sort_order, a.custom_component,
                a.show_in_card, a.show_in_list, a.icon, a.affects_stock, a.is_variant_compatible,
                EXISTS (SELECT 1 FROM product_variant_attributes p
                        WHERE lower(p.name) = lower(a.name)) AS has_variant_axis,
                (SELECT ", $translations, " FROM translations t
                  WHERE t.entity_type = 'attribute' AND t.entity_id = a.id) AS translations
            FROM chain
            LEFT JOIN category_attribute_mapping m ON m.category_id = chain.id
            LEFT JOIN category_attributes a ON a.id = m.attribute_id
            ORDER BY chain.depth, m.attribute_id"
        )
    };
}
pub(crate) use {category_chain_cte, legacy_schema_sql};

pub(crate) const UNIFIED_SCHEMA: &str = concat!(
    category_chain_cte!(),
    "SELECT chain.id AS chain_id, b.attribute_id,
        b.is_enabled AS b_is_enabled, b.is_required AS b_is_required,
        b.is_filterable AS b_is_filterable, b.is_searchable AS b_is_searchable,
        b.show_in_card AS b_show_in_card, b.show_in_list AS b_show_in_list,
        b.custom_component AS b_custom_component, b.sort_order AS b_sort_order,
        b.category_specific_options AS b_category_specific_options,
        a.code, a.name, a.display_name, a.attribute_type, a.purpose, a.options,
        a.validation_rules, a.ui_settings, a.is_searchable, a.is_filterable, a.is_required,
        a.is_variant_compatible, a.affects_stock, a.affects_price, a.show_in_card,
        a.sort_order, a.is_active
    FROM chain
    LEFT JOIN unified_category_attributes b ON b.category_id = chain.id
    LEFT JOIN unified_attributes a ON a.id = b.attribute_id
    ORDER BY chain.depth, b.attribute_id"
);

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

pub(crate) const DELETE_LEGACY_LISTING_VALUES: &str =
    "DELETE FROM listing_attribute_values WHERE listing_id = $1";
pub(crate) const UPDATE_PRODUCT_DOCUMENT: &str =
    "UPDATE storefront_products SET attributes = $2 WHERE id = $1";
pub(crate) const UPDATE_VARIANT_DOCUMENT: &str =
    "UPDATE storefront_product_variants SET variant_attributes = $2 WHERE id = $1";
pub(crate) const DELETE_UNIFIED_VALUES: &str =
    "DELETE FROM unified_attribute_values WHERE entity_type = $1 AND entity_id = $2";

pub(crate) const INSERT_UNIFIED_ATTRIBUTE: &str = "INSERT INTO unified_attributes
        (id, code, name, display_name, attribute_type, purpose, options, validation_rules,
         ui_settings, is_searchable, is_filterable, is_required, is_variant_compatible,
         affects_stock, affects_price, show_in_card, sort_order, is_active,
         legacy_category_attribute_id, legacy_product_variant_attribute_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
    ON CONFLICT (code) DO NOTHING";

pub(crate) const INSERT_UNIFIED_BINDING: &str = "INSERT INTO unified_category_attributes
        (category_id, attribute_id, is_enabled, is_required, is_filterable, is_searchable,
         show_in_card, show_in_list, custom_component, sort_order, category_specific_options)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

pub(crate) const RECORD_UNIFIED_ONLY_WRITE: &str = "UPDATE migration_state
    SET unified_only_write_at = CURRENT_TIMESTAMP WHERE id = 1 AND unified_only_write_at IS NULL";

pub(crate) const MIGRATION_STATE: &str = "SELECT archived_at IS NOT NULL AS archived,
        unified_only_write_at IS NOT NULL AS unified_only_writes_pending_sync
    FROM migration_state WHERE id = 1";

pub(crate) const COUNT_LEGACY_DEFINITIONS: &str = "SELECT COUNT(*) FROM category_attributes";

// Seeding: plain inserts of legacy rows.
pub(crate) const INSERT_CATEGORY: &str = "INSERT INTO marketplace_categories (id, parent_id, name, slug, level) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const INSERT_LISTING: &str = "INSERT INTO marketplace_listings (id, category_id, title, status) VALUES ($1, $2, $3, 'active')";
pub(crate) const INSERT_PRODUCT: &str =
    "INSERT INTO storefront_products (id, category_id, attributes) VALUES ($1, $2, $3)";
pub(crate) const INSERT_VARIANT: &str = "INSERT INTO storefront_product_variants (id, product_id, variant_attributes) VALUES ($1, $2, $3)";
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
        (id, name, display_name, type, is_required, sort_order, affects_stock) VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const INSERT_VARIANT_AXIS_OPTION: &str = "INSERT INTO product_variant_attribute_values
        (attribute_id, value, display_name, color_hex, sort_order) VALUES ($1, $2, $3, $4, $5)";
