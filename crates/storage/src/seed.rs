//! Loads a demo [`Dataset`] into an empty database: in legacy form (with the defects of the
//! real data), or straight into the unified tables.

use std::collections::{HashMap, HashSet};

use domain::{EffectiveSchema, EntityKind, Language};
use flags::Store;

use crate::definitions::{INSERT_LEGACY_ATTRIBUTE, INSERT_TRANSLATION};
use crate::demo::Dataset;
use crate::dialect::{Dialect, on_dialect};
use crate::error::Result;
use crate::rows::ValueColumns;
use crate::stats::record_queries;

/// Listings per multi-row insert (SQLite allows 32,766 parameters a statement).
const SEED_CHUNK: usize = 250;

const INSERT_CATEGORY: &str =
    "INSERT INTO marketplace_categories (id, parent_id, name, slug, level)
    VALUES ($1, $2, $3, $4, $5)";
const INSERT_VARIANT_AXIS: &str = "INSERT INTO product_variant_attributes
        (id, name, display_name, type, is_required, sort_order, affects_stock, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, CURRENT_TIMESTAMP), COALESCE($8, CURRENT_TIMESTAMP))";
const INSERT_VARIANT_AXIS_OPTION: &str = "INSERT INTO product_variant_attribute_values
        (attribute_id, value, display_name, color_hex, sort_order, image_url)
    VALUES ($1, $2, $3, $4, $5, $6)";
const INSERT_STOREFRONT: &str = "INSERT INTO storefronts (id, user_id, name)
    VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING";
const INSERT_PRODUCT: &str = "INSERT INTO storefront_products
    (id, category_id, attributes, storefront_id) VALUES ($1, $2, $3, $4)";
const INSERT_VARIANT: &str = "INSERT INTO storefront_product_variants
    (id, product_id, variant_attributes) VALUES ($1, $2, $3)";

/// The dataset in the legacy tables, as the monolith would have written it.
pub(crate) async fn legacy(mut conn: Dialect<'_>, dataset: &Dataset) -> Result<()> {
    for category in &dataset.categories {
        on_dialect!(conn.reborrow(), |c| {
            sqlx::query(INSERT_CATEGORY)
                .bind(category.id)
                .bind(category.parent_id)
                .bind(&category.name)
                .bind(&category.slug)
                .bind(category.level)
                .execute(c)
                .await?;
        });
    }
    for attribute in &dataset.attributes {
        let row = crate::legacy::encode_definition(attribute, true);
        crate::definitions::run_legacy_definition(conn.reborrow(), INSERT_LEGACY_ATTRIBUTE, &row)
            .await?;
        crate::definitions::keep_legacy_created_at(conn.reborrow(), attribute).await?;
    }
    for binding in &dataset.bindings {
        crate::definitions::upsert_binding(conn.reborrow(), Store::Legacy, binding).await?;
    }
    for axis in &dataset.variant_axes {
        let attribute = &axis.attribute;
        on_dialect!(conn.reborrow(), |c| {
            sqlx::query(INSERT_VARIANT_AXIS)
                .bind(axis.legacy_id)
                .bind(&attribute.code)
                .bind(
                    attribute
                        .display_name
                        .get(Language::Sr)
                        .unwrap_or(&attribute.code),
                )
                .bind(attribute.attribute_type.as_str())
                .bind(attribute.is_required)
                .bind(attribute.sort_order)
                .bind(attribute.affects_stock)
                .bind(attribute.created_at)
                .execute(c)
                .await?;
        });
        for (position, option) in attribute.options.iter().enumerate() {
            on_dialect!(conn.reborrow(), |c| {
                sqlx::query(INSERT_VARIANT_AXIS_OPTION)
                    .bind(axis.legacy_id)
                    .bind(&option.value)
                    .bind(option.label.get(Language::Sr))
                    .bind(&option.color_hex)
                    .bind(position as i32)
                    .bind(&option.image_url)
                    .execute(c)
                    .await?;
            });
        }
    }
    for row in crate::legacy::encode_translations(dataset) {
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
    legacy_listings(conn.reborrow(), dataset).await?;
    for (id, user_id) in crate::demo::STOREFRONTS {
        record_queries(1);
        on_dialect!(conn.reborrow(), |c| {
            sqlx::query(INSERT_STOREFRONT)
                .bind(id)
                .bind(user_id)
                .bind(format!("Demo shop {id}"))
                .execute(c)
                .await?;
        });
    }
    for product in &dataset.products {
        let schema = dataset.schema(product.category_id);
        let document = crate::legacy::document_for(EntityKind::Product, &product.values, &schema)?;
        on_dialect!(conn.reborrow(), |c| {
            sqlx::query(INSERT_PRODUCT)
                .bind(product.id)
                .bind(product.category_id)
                .bind(sqlx::types::Json(&document))
                .bind(crate::demo::product_storefront(product.id))
                .execute(c)
                .await?;
        });
    }
    for variant in &dataset.variants {
        let document = crate::legacy::variant_document_with_mixed_keys(dataset, variant);
        on_dialect!(conn.reborrow(), |c| {
            sqlx::query(INSERT_VARIANT)
                .bind(variant.id)
                .bind(variant.product_id)
                .bind(sqlx::types::Json(&document))
                .execute(c)
                .await?;
        });
    }
    Ok(())
}

/// Multi-row inserts: a demo of 200,000 listings loads in seconds, not minutes.
async fn legacy_listings(mut conn: Dialect<'_>, dataset: &Dataset) -> Result<()> {
    let schemas: HashMap<i64, EffectiveSchema> = dataset
        .listings
        .iter()
        .map(|l| l.category_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .map(|category| (category, dataset.schema(category)))
        .collect();
    for (chunk_index, chunk) in dataset.listings.chunks(SEED_CHUNK).enumerate() {
        record_queries(1);
        let rows: Vec<(i64, i64, ValueColumns)> = chunk
            .iter()
            .flat_map(|listing| {
                crate::legacy::encode_listing_values(
                    &schemas[&listing.category_id],
                    listing,
                    dataset.all_defects,
                )
                .into_iter()
                .map(move |(attribute_id, columns)| (listing.id, attribute_id, columns))
            })
            .collect();
        on_dialect!(conn.reborrow(), |c| {
            let mut listings = sqlx::QueryBuilder::new(
                "INSERT INTO marketplace_listings (id, category_id, title, status, user_id) ",
            );
            listings.push_values(chunk, |mut row, listing| {
                row.push_bind(listing.id)
                    .push_bind(listing.category_id)
                    .push_bind(&listing.title)
                    .push_bind("active")
                    .push_bind(crate::demo::listing_owner(listing.id));
            });
            listings.build().persistent(false).execute(&mut *c).await?;
        });
        crate::entity_values::merge_listing_rows(conn.reborrow(), &[], &rows).await?;
        let loaded = (chunk_index + 1) * SEED_CHUNK;
        if loaded.is_multiple_of(25_000) {
            tracing::info!(
                listings = loaded,
                of = dataset.listings.len(),
                "seeding listings"
            );
        }
    }
    Ok(())
}

/// The dataset straight into the unified tables.
pub(crate) async fn unified(mut conn: Dialect<'_>, dataset: &Dataset) -> Result<()> {
    for (attribute, legacy_c2c_id, legacy_variant_id) in dataset.unified_attributes() {
        crate::definitions::unified_insert(
            conn.reborrow(),
            &attribute,
            legacy_c2c_id,
            legacy_variant_id,
        )
        .await?;
    }
    for binding in &dataset.bindings {
        crate::definitions::upsert_binding(conn.reborrow(), Store::Unified, binding).await?;
    }
    for (entity, values) in dataset.entities() {
        crate::unified_values::replace_defined(conn.reborrow(), entity, values, &[]).await?;
    }
    Ok(())
}
