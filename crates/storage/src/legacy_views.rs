//! What the marketplace's unmodified code finds once the legacy tables are archived: in place
//! of each table its readers use, a view with the legacy shape over the unified tables (as
//! pgroll serves an old schema version through views). Its map filter, listing page and admin
//! counts answer as before; a write to a view fails with an error that names this service,
//! never succeeds to vanish. The storefront documents stay in the marketplace's tables (they
//! hold more than attributes), but a change of their attributes fails the same way: once the
//! definitions that give their keys meaning are archived, such a change could not reach
//! unified. `restore-archive` drops the views and those guards before the tables come back.
//! PostgreSQL only: an SQLite file has no other readers.

use crate::backend::{Backend, Conn};
use crate::dialect::Dialect;
use crate::error::Result;
use crate::stats::record_queries;

/// The views, in the order they are made (and dropped in reverse).
const VIEWS: [(&str, &str); 3] = [
    (
        "category_attributes",
        "SELECT a.id, a.code AS name,
            COALESCE(a.display_name ->> 'sr', a.display_name ->> 'en', a.code) AS display_name,
            a.attribute_type, a.options, a.validation_rules, a.is_searchable, a.is_filterable,
            a.is_required, a.sort_order, a.created_at,
            a.ui_settings ->> 'custom_component' AS custom_component, a.show_in_card,
            COALESCE(CAST(a.ui_settings ->> 'show_in_list' AS BOOLEAN), FALSE) AS show_in_list,
            a.ui_settings ->> 'icon' AS icon, a.affects_stock, a.is_variant_compatible
        FROM unified_attributes a WHERE a.purpose <> 'variant'",
    ),
    (
        "category_attribute_mapping",
        "SELECT b.category_id, b.attribute_id, b.is_enabled, b.is_required, b.sort_order,
            b.custom_component, b.show_in_card, b.show_in_list
        FROM unified_category_attributes b",
    ),
    (
        "listing_attribute_values",
        "SELECT CAST(NULL AS INTEGER) AS id, CAST(v.entity_id AS INTEGER) AS listing_id,
            v.attribute_id,
            COALESCE(v.text_value, CAST(v.date_value AS TEXT),
                (SELECT string_agg(x, ',') FROM jsonb_array_elements_text(
                    CASE WHEN jsonb_typeof(v.json_value) = 'array' THEN v.json_value END) x)) AS text_value,
            v.numeric_value, v.boolean_value, v.json_value, v.unit,
            CASE WHEN v.numeric_value IS NOT NULL THEN 'numeric' ELSE 'text' END AS value_type,
            v.created_at, v.updated_at
        FROM unified_attribute_values v WHERE v.entity_type = 'listing'",
    ),
];

const REFUSE_WRITES: &str = "CREATE OR REPLACE FUNCTION refuse_archived_legacy_write()
    RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'feature_not_supported',
        MESSAGE = format('%s is archived: attribute data lives in the unified attributes service', TG_TABLE_NAME),
        HINT = 'write through its API (PATCH /api/v2/marketplace/listings/{id}/attributes, the admin attribute routes); restore-archive brings the table back';
END $$";

/// A change of a storefront document's attributes after archive fails, naming the service.
const REFUSE_DOCUMENT_WRITES: &str = "CREATE OR REPLACE FUNCTION refuse_archived_document_write()
    RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(NEW) -> TG_ARGV[0]) IS DISTINCT FROM
       (CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) -> TG_ARGV[0] END)
       AND COALESCE(to_jsonb(NEW) -> TG_ARGV[0], 'null'::jsonb) NOT IN ('null'::jsonb, '{}'::jsonb)
    THEN
        RAISE EXCEPTION USING
            ERRCODE = 'feature_not_supported',
            MESSAGE = format('%s.%s is archived: attribute data lives in the unified attributes service', TG_TABLE_NAME, TG_ARGV[0]),
            HINT = 'write through its API (PATCH /api/v2/marketplace/{products|variants}/{id}/attributes); restore-archive brings the legacy tables back';
    END IF;
    RETURN NEW;
END $$";

/// The documents guarded after archive: (table, column).
const DOCUMENTS: [(&str, &str); 2] = [
    ("storefront_products", "attributes"),
    ("storefront_product_variants", "variant_attributes"),
];

/// Makes the views in the marketplace's schema, after the tables moved out.
pub(crate) async fn create<B: Backend>(conn: &mut Conn<B>) -> Result<()> {
    let Dialect::Pg(c) = B::dialect(conn) else {
        return Ok(());
    };
    record_queries(2);
    sqlx::query(REFUSE_WRITES).execute(&mut *c).await?;
    sqlx::query(REFUSE_DOCUMENT_WRITES).execute(&mut *c).await?;
    for (table, column) in DOCUMENTS {
        record_queries(1);
        sqlx::query(&format!(
            "CREATE TRIGGER unified_attributes_archived BEFORE INSERT OR UPDATE ON public.{table}
             FOR EACH ROW EXECUTE FUNCTION refuse_archived_document_write('{column}')"
        ))
        .execute(&mut *c)
        .await?;
    }
    for (name, select) in VIEWS {
        record_queries(2);
        sqlx::query(&format!("CREATE VIEW public.{name} AS {select}"))
            .execute(&mut *c)
            .await?;
        sqlx::query(&format!(
            "CREATE TRIGGER refuse_writes INSTEAD OF INSERT OR UPDATE OR DELETE ON public.{name}
             FOR EACH ROW EXECUTE FUNCTION refuse_archived_legacy_write()"
        ))
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

/// Drops the views (before the tables move back).
pub(crate) async fn drop<B: Backend>(conn: &mut Conn<B>) -> Result<()> {
    let Dialect::Pg(c) = B::dialect(conn) else {
        return Ok(());
    };
    for (table, _) in DOCUMENTS {
        record_queries(1);
        sqlx::query(&format!(
            "DROP TRIGGER IF EXISTS unified_attributes_archived ON public.{table}"
        ))
        .execute(&mut *c)
        .await?;
    }
    for (name, _) in VIEWS.iter().rev() {
        record_queries(1);
        sqlx::query(&format!("DROP VIEW IF EXISTS public.{name}"))
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}
