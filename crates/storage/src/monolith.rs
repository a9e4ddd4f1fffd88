//! The marketplace's own half-migration (LEGACY.md, "What the monolith had done by Day 15"):
//! its `unified_attributes`, `unified_category_attributes` and `unified_attribute_values` in
//! `public` hold definitions and values that exist nowhere else. Beside the legacy tables they
//! are a second source:
//!
//! - **Definitions.** One of its definitions that names a legacy attribute (its
//!   `legacy_category_attribute_id` / `legacy_product_variant_attribute_id`, else the same code)
//!   is that attribute; any other is adopted as ours with id [`MONOLITH_ID_OFFSET`] + its id, with
//!   its bindings and its labels (`translations`, entity type `unified_attribute`).
//!   `monolith_attributes` records which of its rows each of ours is.
//! - **Values.** Its values join the legacy ones. Where both hold a value of one entity and
//!   attribute and they differ, the newer wins ([`monolith_wins`]); the other is quarantined
//!   as a `conflict` with both values in the reason.
//! - **Writes.** A value written through the service to an attribute it knows is written to its
//!   table too ([`mirror_values`]), so its own v2 readers, and a rollback, lose nothing.
//! - **Archive.** Its tables move with the legacy ones, foreign keys into them intact.
//!
//! PostgreSQL only: an SQLite file is this service's own, and never holds the marketplace's
//! tables. Nothing here runs unless our schema is not `public` and its tables are there.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use domain::attribute::{UiSettings, normalize_code};
use domain::{
    Attribute, AttributeType, CategoryBinding, EntityKind, EntityRef, EntityValues, Language,
    LocalizedText, Purpose, TypedValue, ValidationRules,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sqlx::PgConnection;

use crate::backend::{Backend, Conn};
use crate::checksum::{Checksum, TableEvidence};
use crate::dialect::Dialect;
use crate::error::Result;
use crate::quarantine::{QuarantineKind, QuarantinedRow};
use crate::rows::ValueRow;
use crate::stats::record_queries;

/// Ours = this + the monolith's id, for the definitions that exist only in its tables.
pub const MONOLITH_ID_OFFSET: i64 = 2_000_000;

/// Its tables that are a source, in the order they move.
pub(crate) const TABLES: [&str; 3] = [
    "unified_attributes",
    "unified_category_attributes",
    "unified_attribute_values",
];

/// The schema its archive migration (000036) moves legacy tables to.
const ITS_ARCHIVE: &str = "archive_legacy";

/// The legacy tables we read and dual-write; where they are is the first thing a plan says.
const LEGACY_TABLES: [&str; 11] = [
    "marketplace_categories",
    "marketplace_listings",
    "storefront_products",
    "storefront_product_variants",
    "category_attributes",
    "category_attribute_mapping",
    "listing_attribute_values",
    "product_variant_attributes",
    "product_variant_attribute_values",
    "translations",
    "attribute_option_translations",
];

/// The connection's PostgreSQL side; `None` on SQLite.
fn pg<B: Backend>(conn: &mut Conn<B>) -> Option<&mut PgConnection> {
    match B::dialect(conn) {
        Dialect::Pg(c) => Some(c),
        Dialect::Lite(_) => None,
    }
}

/// Its tables are a source: our schema is not `public` (`current_schema()` is the first of the
/// search path that exists) and `public` holds its tables as tables.
const SOURCE_PRESENT: &str = "SELECT current_schema() <> 'public' AND (
        SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
          AND c.relname IN ('unified_attributes', 'unified_attribute_values')) = 2";

pub(crate) async fn source_present<B: Backend>(conn: &mut Conn<B>) -> Result<bool> {
    let Some(c) = pg::<B>(conn) else {
        return Ok(false);
    };
    record_queries(1);
    Ok(sqlx::query_scalar(SOURCE_PRESENT).fetch_one(c).await?)
}

// ---------------------------------------------------------------------------------------------
// The pre-flight

/// A table found, where, with its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundTable {
    pub schema: String,
    pub table: String,
    pub rows: i64,
}

/// What `migrate plan` found in the database, and what `migrate` will do with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Our schema (PostgreSQL).
    pub schema: Option<String>,
    /// Our migrations: applied in our schema, or found in `public` (an earlier layout).
    pub ours: String,
    pub legacy_tables: Vec<FoundTable>,
    /// The marketplace's own unified tables.
    pub monolith_tables: Vec<FoundTable>,
    /// Foreign keys of the marketplace's into its unified tables (`table.column → table`).
    pub foreign_keys: Vec<String>,
    /// Views in `public` that a move of an earlier layout left for older binaries.
    pub public_views: Vec<String>,
    /// What `migrate` does, in order.
    pub steps: Vec<String>,
    /// Why `migrate` would refuse, and how to proceed; nothing is changed then.
    pub refusal: Option<String>,
}

const TABLES_FOUND: &str = "SELECT CAST(n.nspname AS TEXT), CAST(c.relname AS TEXT)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1) AND c.relname = ANY($2)
    ORDER BY array_position($2, CAST(c.relname AS TEXT)), n.nspname";

const FOREIGN_KEYS_INTO: &str = "SELECT CAST(src.relname AS TEXT) || '.' || CAST(a.attname AS TEXT)
        || ' → ' || CAST(dst.relname AS TEXT)
    FROM pg_constraint k
    JOIN pg_class src ON src.oid = k.conrelid
    JOIN pg_class dst ON dst.oid = k.confrelid
    JOIN pg_namespace n ON n.oid = dst.relnamespace
    JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
    WHERE k.contype = 'f' AND n.nspname = $1 AND dst.relname = ANY($2)
    ORDER BY 1";

/// Our ledger in `schema`: how many migrations it records (`None`: no ledger there).
async fn ledger_count(conn: &mut PgConnection, schema: &str) -> Result<Option<i64>> {
    let present: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{schema}._sqlx_migrations"))
        .fetch_one(&mut *conn)
        .await?;
    if !present {
        return Ok(None);
    }
    Ok(Some(
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {schema}._sqlx_migrations"))
            .fetch_one(conn)
            .await?,
    ))
}

async fn found(
    conn: &mut PgConnection,
    schemas: &[&str],
    tables: &[&str],
) -> Result<Vec<FoundTable>> {
    let names: Vec<(String, String)> = sqlx::query_as(TABLES_FOUND)
        .bind(schemas.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .bind(tables.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
    let mut found = Vec::with_capacity(names.len());
    for (schema, table) in names {
        let rows: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{schema}\".\"{table}\""))
                .fetch_one(&mut *conn)
                .await?;
        found.push(FoundTable {
            schema,
            table,
            rows,
        });
    }
    Ok(found)
}

/// Looks at the database as `migrate` finds it, changing nothing. `known` is how many
/// migrations this binary has.
pub(crate) async fn plan(conn: &mut PgConnection, schema: &str, known: usize) -> Result<Plan> {
    let mut plan = Plan {
        schema: Some(schema.to_owned()),
        ..Plan::default()
    };
    let in_schema = ledger_count(conn, schema).await?;
    let in_public = if schema == "public" {
        None
    } else {
        ledger_count(conn, "public").await?
    };
    plan.ours = match (in_schema, in_public) {
        (Some(n), _) => format!("schema {schema}: {n} of {known} migrations applied"),
        (None, Some(n)) => format!(
            "public (an earlier layout): {n} of {known} migrations applied; migrate moves them to schema {schema}"
        ),
        (None, None) => format!("none yet: migrate creates schema {schema}"),
    };
    plan.legacy_tables = found(conn, &["public", ITS_ARCHIVE], &LEGACY_TABLES).await?;
    // `public`'s tables of our names are the marketplace's unless they are ours: our ledger in
    // `public` (the earlier layout, or a schema set to `public`) says so.
    let public_is_ours = if schema == "public" {
        in_schema.is_some()
    } else {
        in_schema.is_none() && in_public.is_some()
    };
    if !public_is_ours {
        plan.monolith_tables = found(conn, &["public"], &TABLES).await?;
    }
    // A view left by a move is not the marketplace's table.
    plan.public_views = crate::our_tables::public_views(conn, schema).await?;
    plan.monolith_tables
        .retain(|t| !plan.public_views.contains(&t.table));
    if !plan.monolith_tables.is_empty() {
        plan.foreign_keys = sqlx::query_scalar(FOREIGN_KEYS_INTO)
            .bind("public")
            .bind(TABLES.map(str::to_owned).to_vec())
            .fetch_all(&mut *conn)
            .await?;
    }
    plan.refusal = refusal_in(&plan, schema, public_is_ours);
    if plan.refusal.is_none() {
        plan.steps = steps(&plan, schema, in_schema, in_public, known);
    }
    Ok(plan)
}

fn steps(
    plan: &Plan,
    schema: &str,
    in_schema: Option<i64>,
    in_public: Option<i64>,
    known: usize,
) -> Vec<String> {
    let mut steps = Vec::new();
    if in_schema.is_none() && in_public.is_some() {
        steps.push(format!(
            "move this service's tables from public to schema {schema} (one transaction), leaving a view \
             of each in public for older binaries (`migrate drop-public-views` once none runs)"
        ));
    }
    let missing: Vec<&str> = [
        "marketplace_categories",
        "category_attributes",
        "listing_attribute_values",
    ]
    .into_iter()
    .filter(|name| {
        !plan
            .legacy_tables
            .iter()
            .any(|t| t.table == *name && t.schema == "public")
    })
    .collect();
    if !missing.is_empty() {
        steps.push(format!(
            "create the legacy tables public lacks (a development database: {})",
            missing.join(", ")
        ));
    }
    let applied = in_schema.or(in_public).unwrap_or(0);
    steps.push(format!(
        "apply {} migration(s) in schema {schema}; the marketplace's tables and rows are never altered \
         or dropped — only capture triggers are added to its legacy attribute tables",
        (known as i64 - applied).max(0)
    ));
    if !plan.monolith_tables.is_empty() {
        steps.push(
            "leave the marketplace's own unified tables and the foreign keys into them as they are: \
             `backfill` reads them as a second source, `archive` moves them with the legacy tables"
                .to_owned(),
        );
    }
    steps
}

/// Why `migrate` must not go on, with how to proceed.
fn refusal_in(plan: &Plan, schema: &str, public_is_ours: bool) -> Option<String> {
    let archived_by_it: Vec<&str> = plan
        .legacy_tables
        .iter()
        .filter(|t| t.schema == ITS_ARCHIVE)
        .filter(|t| {
            !plan
                .legacy_tables
                .iter()
                .any(|p| p.schema == "public" && p.table == t.table)
        })
        .map(|t| t.table.as_str())
        .collect();
    if !archived_by_it.is_empty() {
        let moves: Vec<String> = archived_by_it
            .iter()
            .map(|t| format!("ALTER TABLE {ITS_ARCHIVE}.{t} SET SCHEMA public;"))
            .collect();
        return Some(format!(
            "the marketplace's own archive migration (000036) moved {} to schema {ITS_ARCHIVE}; this \
             service reads and dual-writes them in public. Nothing was changed. Move them back (its down \
             migration does: {}), then run migrate again: its unified tables stay a source beside them",
            archived_by_it.join(", "),
            moves.join(" ")
        ));
    }
    if schema == "public" && !public_is_ours && !plan.monolith_tables.is_empty() {
        return Some(
            "public already holds the marketplace's own unified tables, and database.schema is 'public': \
             this service's tables would collide with them. Nothing was changed. Set DATABASE_SCHEMA \
             (default 'attributes') to a schema of this service's own"
                .to_owned(),
        );
    }
    None
}

/// The refusal `migrate` checks before it changes anything.
pub(crate) async fn refusal(conn: &mut PgConnection, schema: &str) -> Result<Option<String>> {
    let as_found = |names: Vec<(String, String)>| -> Vec<FoundTable> {
        names
            .into_iter()
            .map(|(schema, table)| FoundTable {
                schema,
                table,
                rows: 0,
            })
            .collect()
    };
    let public_is_ours = schema == "public" && ledger_count(conn, "public").await?.is_some();
    let monolith = if schema == "public" && !public_is_ours {
        found_names(conn, &["public"], &TABLES).await?
    } else {
        Vec::new()
    };
    let plan = Plan {
        legacy_tables: as_found(found_names(conn, &["public", ITS_ARCHIVE], &LEGACY_TABLES).await?),
        monolith_tables: as_found(monolith),
        ..Plan::default()
    };
    Ok(refusal_in(&plan, schema, public_is_ours))
}

async fn found_names(
    conn: &mut PgConnection,
    schemas: &[&str],
    tables: &[&str],
) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(TABLES_FOUND)
        .bind(schemas.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .bind(tables.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?)
}

// ---------------------------------------------------------------------------------------------
// Definitions

/// One of its definitions, read through `to_jsonb` so that a column its older migrations lack
/// (`is_variant_compatible`) reads as absent.
#[derive(Debug, Deserialize)]
struct ItsDefinition {
    id: i64,
    code: String,
    name: Option<String>,
    display_name: Option<String>,
    attribute_type: String,
    purpose: Option<String>,
    options: Option<Json>,
    validation_rules: Option<Json>,
    #[serde(default)]
    is_searchable: Option<bool>,
    #[serde(default)]
    is_filterable: Option<bool>,
    #[serde(default)]
    is_required: Option<bool>,
    #[serde(default)]
    is_variant_compatible: Option<bool>,
    #[serde(default)]
    affects_stock: Option<bool>,
    #[serde(default)]
    affects_price: Option<bool>,
    #[serde(default)]
    sort_order: Option<i32>,
    #[serde(default)]
    is_active: Option<bool>,
    legacy_category_attribute_id: Option<i64>,
    legacy_product_variant_attribute_id: Option<i64>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

const ITS_DEFINITIONS: &str = "SELECT to_jsonb(a) FROM public.unified_attributes a ORDER BY a.id";

/// Its labels: `translations` rows of entity type `unified_attribute`, by its id.
const ITS_LABELS: &str = "SELECT CAST(entity_id AS BIGINT), language, translated_text
    FROM translations
    WHERE entity_type = 'unified_attribute' AND field_name = 'display_name'";

const ITS_BINDINGS: &str = "SELECT to_jsonb(b) FROM public.unified_category_attributes b
    ORDER BY b.category_id, b.attribute_id";

const RECORD_SOURCE: &str = "INSERT INTO monolith_attributes
        (monolith_attribute_id, attribute_id, monolith_code)
    VALUES ($1, $2, $3)
    ON CONFLICT (monolith_attribute_id) DO UPDATE SET
        attribute_id = excluded.attribute_id, monolith_code = excluded.monolith_code";

/// A binding of an attribute it alone defines: its word is the only one.
const UPSERT_ITS_BINDING: &str = "INSERT INTO unified_category_attributes
        (category_id, attribute_id, is_enabled, is_required, sort_order, category_specific_options)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (category_id, attribute_id) DO UPDATE SET
        is_enabled = excluded.is_enabled, is_required = excluded.is_required,
        sort_order = excluded.sort_order,
        category_specific_options = excluded.category_specific_options";

/// A binding of a legacy attribute that legacy lacks (e.g. the car category's `auto_part_*`
/// is its own, but it also bound legacy attributes to new categories): legacy's binding, where
/// there is one, wins.
const INSERT_ITS_BINDING_IF_ABSENT: &str = "INSERT INTO unified_category_attributes
        (category_id, attribute_id, is_enabled, is_required, sort_order, category_specific_options)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (category_id, attribute_id) DO NOTHING";

const CODE_TAKEN: &str = "SELECT id FROM unified_attributes WHERE code = $1";

/// What the definitions step took from its tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MonolithDefinitions {
    /// Its definitions that are a legacy attribute.
    pub matched: usize,
    /// Its definitions that exist only there, now ours.
    pub adopted: usize,
    pub bindings: usize,
    /// Definitions it holds that no unified type can carry, with the reason.
    pub skipped: Vec<String>,
}

/// Takes its definitions and bindings (after the legacy ones: `legacy` is that catalog).
pub(crate) async fn adopt_definitions<B: Backend>(
    conn: &mut Conn<B>,
    legacy: &[Attribute],
) -> Result<Option<MonolithDefinitions>> {
    if !source_present::<B>(&mut *conn).await? {
        return Ok(None);
    }
    let (rows, labels) = {
        let Some(c) = pg::<B>(&mut *conn) else {
            return Ok(None);
        };
        record_queries(2);
        let rows: Vec<Json> = sqlx::query_scalar(ITS_DEFINITIONS)
            .fetch_all(&mut *c)
            .await?;
        let mut labels: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        for (id, language, text) in sqlx::query_as::<_, (i64, String, String)>(ITS_LABELS)
            .fetch_all(&mut *c)
            .await?
        {
            labels.entry(id).or_default().push((language, text));
        }
        (rows, labels)
    };
    let mut report = MonolithDefinitions::default();
    // Its id → ours, and whether ours is its alone.
    let mut ours: HashMap<i64, (i64, bool)> = HashMap::new();
    for row in rows {
        let its: ItsDefinition = match serde_json::from_value(row.clone()) {
            Ok(its) => its,
            Err(err) => {
                report.skipped.push(format!("{row}: {err}"));
                continue;
            }
        };
        let (id, alone) = if let Some(attribute) = legacy_counterpart(&its, legacy) {
            report.matched += 1;
            (attribute.id, false)
        } else {
            let attribute = match adopted(&its, labels.get(&its.id).map(Vec::as_slice)) {
                Ok(attribute) => attribute,
                Err(reason) => {
                    report
                        .skipped
                        .push(format!("{} (#{}): {reason}", its.code, its.id));
                    continue;
                }
            };
            let taken: Option<i32> = match pg::<B>(&mut *conn) {
                Some(c) => {
                    record_queries(1);
                    sqlx::query_scalar(CODE_TAKEN)
                        .bind(&attribute.code)
                        .fetch_optional(c)
                        .await?
                }
                None => None,
            };
            match taken {
                // Created through this service meanwhile under the same code: the same attribute.
                Some(id) if i64::from(id) != attribute.id => (i64::from(id), false),
                _ => {
                    crate::definitions::unified_upsert(B::dialect(&mut *conn), &attribute, None)
                        .await?;
                    report.adopted += 1;
                    (attribute.id, true)
                }
            }
        };
        if let Some(c) = pg::<B>(&mut *conn) {
            record_queries(1);
            sqlx::query(RECORD_SOURCE)
                .bind(its.id as i32)
                .bind(id as i32)
                .bind(&its.code)
                .execute(c)
                .await?;
        }
        ours.insert(its.id, (id, alone));
    }
    let Some(c) = pg::<B>(conn) else {
        return Ok(Some(report));
    };
    record_queries(1);
    let bindings: Vec<Json> = sqlx::query_scalar(ITS_BINDINGS).fetch_all(&mut *c).await?;
    for row in bindings {
        let field = |name: &str| row.get(name).cloned().unwrap_or(Json::Null);
        let (Some(category_id), Some(its_attribute)) = (
            field("category_id").as_i64(),
            field("attribute_id").as_i64(),
        ) else {
            continue;
        };
        let Some(&(attribute_id, alone)) = ours.get(&its_attribute) else {
            continue;
        };
        let statement = if alone {
            UPSERT_ITS_BINDING
        } else {
            INSERT_ITS_BINDING_IF_ABSENT
        };
        let specific = field("category_specific_options");
        record_queries(1);
        sqlx::query(statement)
            .bind(category_id as i32)
            .bind(attribute_id as i32)
            .bind(field("is_enabled").as_bool().unwrap_or(true))
            .bind(field("is_required").as_bool())
            .bind(field("sort_order").as_i64().unwrap_or(0) as i32)
            .bind((!specific.is_null()).then_some(specific))
            .execute(&mut *c)
            .await?;
        report.bindings += 1;
    }
    Ok(Some(report))
}

/// The legacy attribute one of its definitions is: by its legacy ids, else by code (its codes
/// were derived from the legacy names as `lower(replace(name, ' ', '_'))`).
fn legacy_counterpart<'a>(its: &ItsDefinition, legacy: &'a [Attribute]) -> Option<&'a Attribute> {
    let by_id = |id: i64| legacy.iter().find(|a| a.id == id);
    its.legacy_category_attribute_id
        .and_then(by_id)
        .or_else(|| {
            its.legacy_product_variant_attribute_id
                .and_then(|id| by_id(crate::rows::VARIANT_AXIS_ID_OFFSET + id))
        })
        .or_else(|| {
            let code = normalize_code(&its.code);
            legacy.iter().find(|a| a.code == code)
        })
}

/// One of its definitions as ours. Its `name` is English; its `display_name` the label its
/// forms show, taken as Serbian unless its translations say otherwise.
fn adopted(
    its: &ItsDefinition,
    labels: Option<&[(String, String)]>,
) -> std::result::Result<Attribute, String> {
    let attribute_type: AttributeType = its
        .attribute_type
        .parse()
        .map_err(|err| format!("type: {err}"))?;
    let purpose: Purpose = its
        .purpose
        .as_deref()
        .unwrap_or("regular")
        .parse()
        .map_err(|err| format!("purpose: {err}"))?;
    let code = normalize_code(&its.code);
    if code.is_empty() {
        return Err("an empty code".into());
    }
    let english = its.name.clone().unwrap_or_else(|| its.code.clone());
    let mut label =
        LocalizedText::serbian(its.display_name.clone().unwrap_or_else(|| english.clone()));
    label.set(Language::En, english);
    for (language, text) in labels.unwrap_or_default() {
        if let Ok(language) = language.parse::<Language>() {
            label.set(language, text.clone());
        }
    }
    let parsed = domain::parse_legacy_options(its.options.as_ref().unwrap_or(&Json::Null));
    let (rules, _) =
        ValidationRules::from_legacy_json(its.validation_rules.as_ref().unwrap_or(&Json::Null));
    Ok(Attribute {
        id: MONOLITH_ID_OFFSET + its.id,
        code,
        name: label.clone(),
        display_name: label,
        attribute_type,
        purpose,
        options: parsed.options,
        retired_options: Vec::new(),
        rules,
        ui: UiSettings::default(),
        is_searchable: its.is_searchable.unwrap_or(false),
        is_filterable: its.is_filterable.unwrap_or(true),
        is_required: its.is_required.unwrap_or(false),
        is_variant_compatible: its.is_variant_compatible.unwrap_or(false),
        affects_stock: its.affects_stock.unwrap_or(false),
        affects_price: its.affects_price.unwrap_or(false),
        show_in_card: true,
        sort_order: its.sort_order.unwrap_or(0),
        is_active: its.is_active.unwrap_or(true),
        created_at: crate::rows::timestamp(its.created_at.as_deref()),
        updated_at: crate::rows::timestamp(its.updated_at.as_deref()),
    })
}

/// Whether ours is a definition that exists only in its tables.
pub(crate) fn is_its_alone(attribute_id: i64) -> bool {
    attribute_id >= MONOLITH_ID_OFFSET
}

// ---------------------------------------------------------------------------------------------
// Values

/// One of its values of an entity, under our code.
#[derive(Debug)]
pub(crate) struct ItsValue {
    pub entity_id: i64,
    pub code: String,
    pub raw: String,
    pub shown: Option<String>,
    pub typed: Option<TypedValue>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, sqlx::FromRow)]
struct ItsValueRow {
    entity_id: i64,
    #[sqlx(flatten)]
    value: ValueRow,
    updated_at: Option<String>,
}

/// Its values (`$1` the entity type) and what `$where` keeps, each under our code (the
/// attribute of ours it maps to, else its own code), with what its attribute's type reads.
macro_rules! its_values_sql {
    ($where:literal) => {
        concat!(
            "SELECT CAST(v.entity_id AS BIGINT) AS entity_id,
                COALESCE(u.code, a.code) AS code, a.attribute_type,
                v.text_value, CAST(v.numeric_value AS TEXT) AS numeric_value, v.boolean_value,
                CAST(v.date_value AS TEXT) AS date_value, v.json_value,
                CAST(NULL AS TEXT) AS unit, CAST(v.updated_at AS TEXT) AS updated_at
            FROM public.unified_attribute_values v
            JOIN public.unified_attributes a ON a.id = v.attribute_id
            LEFT JOIN monolith_attributes m ON m.monolith_attribute_id = a.id
            LEFT JOIN unified_attributes u ON u.id = m.attribute_id
            WHERE v.entity_type = $1 AND ",
            $where
        )
    };
}

/// Its values of these entities.
const ITS_VALUES: &str = its_values_sql!("v.entity_id = ANY($2) ORDER BY v.entity_id, a.id");

/// Its connection when its tables are a source (PostgreSQL, ours not in `public`).
async fn its_source<B: Backend>(conn: &mut Conn<B>) -> Result<Option<&mut PgConnection>> {
    if !source_present::<B>(&mut *conn).await? {
        return Ok(None);
    }
    Ok(pg::<B>(conn))
}

pub(crate) async fn values_of<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
) -> Result<Vec<ItsValue>> {
    let Some(c) = its_source::<B>(conn).await? else {
        return Ok(Vec::new());
    };
    record_queries(1);
    let rows: Vec<ItsValueRow> = sqlx::query_as(ITS_VALUES)
        .bind(kind.as_str())
        .bind(ids.to_vec())
        .fetch_all(c)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(ItsValue {
                entity_id: row.entity_id,
                code: row.value.code.clone()?,
                raw: row.value.raw_text(),
                shown: row.value.shown_text(),
                typed: row.value.typed_value().map(|(_, typed)| typed),
                updated_at: crate::rows::timestamp(row.updated_at.as_deref()),
            })
        })
        .collect())
}

/// Its values of entities that no longer exist (the marketplace deletes listings and products;
/// nothing cascades into its table), per kind: quarantined as orphans at the end of the kind's
/// backfill, so every one of its rows is migrated or quarantined.
const ITS_ORPHANS: &str = its_values_sql!(
    "NOT EXISTS (
        SELECT 1 FROM marketplace_listings l WHERE $1 = 'listing' AND l.id = v.entity_id
        UNION ALL
        SELECT 1 FROM storefront_products p WHERE $1 = 'product' AND p.id = v.entity_id
        UNION ALL
        SELECT 1 FROM storefront_product_variants pv WHERE $1 = 'product_variant' AND pv.id = v.entity_id)
    ORDER BY v.entity_id"
);

pub(crate) async fn orphans<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
) -> Result<Vec<QuarantinedRow>> {
    let Some(c) = its_source::<B>(conn).await? else {
        return Ok(Vec::new());
    };
    record_queries(1);
    let rows: Vec<ItsValueRow> = sqlx::query_as(ITS_ORPHANS)
        .bind(kind.as_str())
        .fetch_all(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| QuarantinedRow {
            entity_id: row.entity_id,
            attribute_code: row.value.code.clone().unwrap_or_default(),
            raw_value: row.value.raw_text(),
            shown_value: row.value.shown_text(),
            reason: format!(
                "the {} does not exist (a value of the marketplace's unified table)",
                kind.as_str().replace('_', " ")
            ),
            kind: QuarantineKind::Orphan,
        })
        .collect())
}

/// When legacy listing values were last written, where legacy records it (the 2025-08 schema
/// has no `updated_at`: then none), by (listing, our code).
const LEGACY_LISTING_TIMES: &str = "SELECT CAST(v.listing_id AS BIGINT), a.name,
        to_jsonb(v) ->> 'updated_at'
    FROM listing_attribute_values v JOIN category_attributes a ON a.id = v.attribute_id
    WHERE v.listing_id = ANY($1)";

pub(crate) async fn legacy_times<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
) -> Result<HashMap<(i64, String), DateTime<Utc>>> {
    let Some(c) = pg::<B>(conn) else {
        return Ok(HashMap::new());
    };
    if kind != EntityKind::Listing {
        // A B2C document keeps no time per value.
        return Ok(HashMap::new());
    }
    record_queries(1);
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(LEGACY_LISTING_TIMES)
        .bind(ids.to_vec())
        .fetch_all(c)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, name, at)| {
            Some((
                (id, normalize_code(&name)),
                crate::rows::timestamp(at.as_deref())?,
            ))
        })
        .collect())
}

/// The rule where both sources hold a different value of one entity and attribute: the newer
/// wins. A legacy value without a time (the 2025-08 schema, a B2C document) counts as older:
/// its v2 routes wrote after legacy's era, and never to legacy. A tie goes to its table.
pub(crate) fn monolith_wins(legacy: Option<DateTime<Utc>>, its: Option<DateTime<Utc>>) -> bool {
    match (legacy, its) {
        (Some(legacy), Some(its)) => its >= legacy,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// A value as unified would hold it (its spelling made canonical), if the unified rules of
/// its attribute accept it.
pub(crate) fn acceptable(
    catalog: &HashMap<String, Attribute>,
    code: &str,
    typed: &TypedValue,
) -> Option<TypedValue> {
    let attribute = catalog.get(code)?;
    let mut typed = typed.clone();
    domain::canonical_spellings(&attribute.options, &mut typed.value);
    domain::validate::check_typed(attribute, &attribute.options, &typed).ok()?;
    Some(typed)
}

/// Which of two values of one entity and attribute unified keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    /// Both say the same.
    Same,
    Legacy,
    Monolith,
}

/// The rule where both sources hold a value: a value the unified rules refuse never wins over
/// one they accept; between two they accept, the newer ([`monolith_wins`]). When neither is
/// accepted legacy's goes its usual way (the quarantine, with its reason).
pub(crate) fn kept(
    catalog: &HashMap<String, Attribute>,
    code: &str,
    legacy: (Option<&TypedValue>, Option<DateTime<Utc>>),
    its: (Option<&TypedValue>, Option<DateTime<Utc>>),
) -> Kept {
    let accepted = |typed: Option<&TypedValue>| typed.and_then(|t| acceptable(catalog, code, t));
    match (accepted(legacy.0), accepted(its.0)) {
        (Some(l), Some(m)) if l == m => Kept::Same,
        (Some(_), Some(_)) if monolith_wins(legacy.1, its.1) => Kept::Monolith,
        (None, Some(_)) => Kept::Monolith,
        _ => Kept::Legacy,
    }
}

/// The quarantine entry of the value that lost a conflict, both values in the reason.
pub(crate) fn conflict_entry(
    entity_id: i64,
    code: &str,
    loser: (&str, &str, Option<String>),
    winner: (&str, &str),
) -> QuarantinedRow {
    let (loser_source, loser_raw, loser_shown) = loser;
    let (winner_source, winner_raw) = winner;
    QuarantinedRow {
        entity_id,
        attribute_code: code.to_owned(),
        raw_value: loser_raw.to_owned(),
        shown_value: loser_shown,
        reason: format!(
            "{winner_source} holds another value ({winner_raw}), kept (the newer, or the only one \
             the unified rules accept); {loser_source} held this one"
        ),
        kind: QuarantineKind::Conflict,
    }
}

/// Where a conflict entry says a value came from.
pub(crate) const LEGACY_SOURCE: &str = "legacy";
pub(crate) const ITS_SOURCE: &str = "the marketplace's unified table";

/// What verify saw of its values on one page.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Overlay {
    pub values: i64,
    pub same_as_legacy: i64,
    pub conflicts: i64,
}

/// Lays its values over the legacy ones as the backfill merged them: what unified must hold.
pub(crate) async fn overlay<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
    legacy: &mut HashMap<i64, EntityValues>,
    catalog: &HashMap<String, Attribute>,
) -> Result<Overlay> {
    let its = values_of::<B>(&mut *conn, kind, ids).await?;
    let mut overlay = Overlay::default();
    if its.is_empty() {
        return Ok(overlay);
    }
    let times = legacy_times::<B>(&mut *conn, kind, ids).await?;
    for value in its {
        overlay.values += 1;
        let values = legacy.entry(value.entity_id).or_default();
        let legacy_time = times.get(&(value.entity_id, value.code.clone())).copied();
        let decision = kept(
            catalog,
            &value.code,
            (values.get(&value.code), legacy_time),
            (value.typed.as_ref(), value.updated_at),
        );
        match decision {
            Kept::Same => overlay.same_as_legacy += 1,
            _ if values.contains_key(&value.code) => overlay.conflicts += 1,
            _ => {}
        }
        if decision == Kept::Monolith
            && let Some(typed) = value
                .typed
                .as_ref()
                .and_then(|t| acceptable(catalog, &value.code, t))
        {
            values.insert(value.code, typed);
        }
    }
    Ok(overlay)
}

// ---------------------------------------------------------------------------------------------
// Writes

/// Its attributes among these codes: (our code, its attribute id).
const ITS_ATTRIBUTES_AMONG: &str = "SELECT u.code, m.monolith_attribute_id
    FROM monolith_attributes m JOIN unified_attributes u ON u.id = m.attribute_id
    WHERE u.code = ANY($1) AND to_regclass('public.unified_attribute_values') IS NOT NULL
      AND current_schema() <> 'public'";

const UPSERT_ITS_VALUE: &str = "INSERT INTO public.unified_attribute_values
        (entity_type, entity_id, attribute_id, text_value, numeric_value, boolean_value,
         date_value, json_value, created_at, updated_at)
    VALUES ($1, $2, $3, $4, CAST($5 AS NUMERIC), $6, CAST($7 AS DATE), $8,
            CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)
    ON CONFLICT (entity_type, entity_id, attribute_id) DO UPDATE SET
        text_value = excluded.text_value, numeric_value = excluded.numeric_value,
        boolean_value = excluded.boolean_value, date_value = excluded.date_value,
        json_value = excluded.json_value, updated_at = CURRENT_TIMESTAMP";

const DELETE_ITS_VALUE: &str = "DELETE FROM public.unified_attribute_values
    WHERE entity_type = $1 AND entity_id = $2 AND attribute_id = $3";

/// Writes the change to its table too, for the codes its definitions are: its own v2 readers
/// (and a rollback to them) see what users wrote through this service. In the write's
/// transaction; nothing once its tables are archived.
pub(crate) async fn mirror_values<B: Backend>(
    conn: &mut Conn<B>,
    entity: EntityRef,
    set: &EntityValues,
    removed: &[String],
) -> Result<()> {
    let Some(c) = pg::<B>(conn) else {
        return Ok(());
    };
    let codes: Vec<String> = set.keys().chain(removed).cloned().collect();
    if codes.is_empty() {
        return Ok(());
    }
    record_queries(1);
    let its: Vec<(String, i32)> = sqlx::query_as(ITS_ATTRIBUTES_AMONG)
        .bind(&codes)
        .fetch_all(&mut *c)
        .await?;
    for (code, its_id) in its {
        record_queries(1);
        match set.get(&code) {
            Some(typed) => {
                let columns = crate::rows::ValueColumns::unified(typed);
                sqlx::query(UPSERT_ITS_VALUE)
                    .bind(entity.kind.as_str())
                    .bind(entity.id as i32)
                    .bind(its_id)
                    .bind(&columns.text_value)
                    .bind(&columns.numeric_value)
                    .bind(columns.boolean_value)
                    .bind(&columns.date_value)
                    .bind(&columns.json_value)
                    .execute(&mut *c)
                    .await?;
            }
            None => {
                sqlx::query(DELETE_ITS_VALUE)
                    .bind(entity.kind.as_str())
                    .bind(entity.id as i32)
                    .bind(its_id)
                    .execute(&mut *c)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Its attributes (those that exist only there) bound in the category chain, as unified
/// holds them: a write while legacy is authoritative validates against legacy's schema plus
/// these, since legacy has no home for them.
const ITS_BOUND_IN_CHAIN: &str = "SELECT DISTINCT b.attribute_id FROM unified_category_attributes b
    JOIN monolith_attributes m ON m.attribute_id = b.attribute_id
    WHERE b.category_id = ANY($1) AND b.attribute_id >= 2000000";

pub(crate) async fn alone_bound_in<B: Backend>(
    conn: &mut Conn<B>,
    chain: &[i64],
) -> Result<HashSet<i64>> {
    let Some(c) = pg::<B>(conn) else {
        return Ok(HashSet::new());
    };
    record_queries(1);
    let ids: Vec<i32> = sqlx::query_scalar(ITS_BOUND_IN_CHAIN)
        .bind(chain.to_vec())
        .fetch_all(c)
        .await?;
    Ok(ids.into_iter().map(i64::from).collect())
}

/// Adds to `parts` (legacy's schema of a chain) the bindings and definitions of its
/// attributes that `unified` (the same chain's unified schema) holds.
pub(crate) fn with_its_attributes(
    mut parts: crate::rows::SchemaParts,
    unified: crate::rows::SchemaParts,
    its: &HashSet<i64>,
) -> crate::rows::SchemaParts {
    parts.bindings.extend(
        unified
            .bindings
            .into_iter()
            .filter(|b: &CategoryBinding| its.contains(&b.attribute_id)),
    );
    parts.attributes.extend(
        unified
            .attributes
            .into_iter()
            .filter(|a| its.contains(&a.id)),
    );
    parts
}

// ---------------------------------------------------------------------------------------------
// Archive

/// Its tables as a source: in `public` (`archived`: in the archive schema).
const ITS_TABLES_IN: &str = "SELECT CAST(c.relname AS TEXT) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2)
    ORDER BY array_position($2, CAST(c.relname AS TEXT))";

/// Its tables that move with an archive: in `public` when ours are elsewhere and we took from
/// them; in the archive once moved.
pub(crate) async fn archived_tables<B: Backend>(
    conn: &mut Conn<B>,
    archived: bool,
) -> Result<Vec<String>> {
    let Some(c) = pg::<B>(conn) else {
        return Ok(Vec::new());
    };
    record_queries(2);
    let ours_elsewhere: bool = sqlx::query_scalar("SELECT current_schema() <> 'public'")
        .fetch_one(&mut *c)
        .await?;
    if !ours_elsewhere {
        return Ok(Vec::new());
    }
    let schema = if archived { "legacy_archive" } else { "public" };
    Ok(sqlx::query_scalar(ITS_TABLES_IN)
        .bind(schema)
        .bind(TABLES.map(str::to_owned).to_vec())
        .fetch_all(c)
        .await?)
}

/// Rows and checksums of its tables, where they are; named `public.{table}`.
pub(crate) async fn evidence<B: Backend>(
    conn: &mut Conn<B>,
    tables: &[String],
    archived: bool,
) -> Result<Vec<TableEvidence>> {
    use futures_util::TryStreamExt;
    let Some(c) = pg::<B>(conn) else {
        return Ok(Vec::new());
    };
    let schema = if archived { "legacy_archive" } else { "public" };
    let mut evidence = Vec::new();
    for table in tables {
        record_queries(1);
        let mut checksum = Checksum::default();
        let select = format!("SELECT CAST(t AS TEXT) FROM {schema}.{table} t");
        let mut rows = sqlx::query_scalar::<_, String>(&select).fetch(&mut *c);
        while let Some(text) = rows.try_next().await? {
            checksum.add(&text);
        }
        evidence.push(checksum.finish(&format!("public.{table}")));
    }
    Ok(evidence)
}

/// Moves its tables into the archive schema or back. `SET SCHEMA` keeps every row, index,
/// sequence and foreign key — the marketplace's into them included.
pub(crate) async fn move_tables<B: Backend>(
    conn: &mut Conn<B>,
    tables: &[String],
    to_archive: bool,
) -> Result<()> {
    let Some(c) = pg::<B>(conn) else {
        return Ok(());
    };
    for table in tables {
        let statement = if to_archive {
            format!("ALTER TABLE public.{table} SET SCHEMA legacy_archive")
        } else {
            format!("ALTER TABLE legacy_archive.{table} SET SCHEMA public")
        };
        record_queries(1);
        sqlx::query(&statement).execute(&mut *c).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newer_value_wins_and_an_untimed_legacy_value_counts_as_older() {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let early = at("2025-09-01T10:00:00Z");
        let late = at("2025-09-03T10:00:00Z");
        assert!(monolith_wins(early, late));
        assert!(!monolith_wins(late, early));
        assert!(monolith_wins(late, late), "a tie goes to its table");
        assert!(monolith_wins(None, late));
        assert!(monolith_wins(None, None));
        assert!(!monolith_wins(late, None));
    }

    #[test]
    fn one_of_its_definitions_becomes_ours_with_its_labels_and_options() {
        let its: ItsDefinition = serde_json::from_value(serde_json::json!({
            "id": 7, "code": "pet_type", "name": "Pet Type", "display_name": "Tip životinje",
            "attribute_type": "select", "purpose": "regular",
            "options": [{"value": "dog", "label": "Pas"}, "cat"],
            "validation_rules": {}, "is_required": true,
            "legacy_category_attribute_id": null, "legacy_product_variant_attribute_id": null,
            "created_at": "2025-09-03T10:00:00", "updated_at": null
        }))
        .expect("a definition");
        let labels = [("ru".to_owned(), "Тип животного".to_owned())];
        let attribute = adopted(&its, Some(&labels)).expect("adopted");
        assert_eq!(attribute.id, MONOLITH_ID_OFFSET + 7);
        assert_eq!(attribute.code, "pet_type");
        assert_eq!(attribute.display_name.exact(Language::En), Some("Pet Type"));
        assert_eq!(
            attribute.display_name.exact(Language::Sr),
            Some("Tip životinje")
        );
        assert_eq!(
            attribute.display_name.exact(Language::Ru),
            Some("Тип животного")
        );
        let values: Vec<&str> = attribute.options.iter().map(|o| o.value.as_str()).collect();
        assert_eq!(values, ["dog", "cat"]);
        assert!(attribute.is_required);
        assert!(attribute.created_at.is_some());
        let mut bad = its;
        bad.attribute_type = "rating".into();
        assert!(adopted(&bad, None).is_err());
    }
}
