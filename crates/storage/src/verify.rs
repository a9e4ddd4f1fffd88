//! `verify`: legacy and unified compared per entity (listings, products, variants), in both
//! directions, with the values the backfill quarantined left out; counts per kind and per
//! attribute, and a bounded list of the drifted entities with the difference.

use std::collections::HashMap;

use domain::EntityKind;
use flags::Store;

use crate::backend::{Backend, Conn};
use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::Result;
use crate::router::{Router, ensure_legacy_in_place};
use crate::stats::record_queries;

use std::collections::{BTreeMap, HashSet};

use domain::{EntityRef, EntityValues};
use serde::Serialize;

/// Drifted entities kept in a report; the count is always complete.
pub const MAX_DRIFT_SHOWN: usize = 50;

/// How one entity differs between the stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub entity_type: &'static str,
    pub entity_id: i64,
    /// Codes with a value in legacy only.
    pub missing_in_unified: Vec<String>,
    /// Codes with a value in unified only.
    pub missing_in_legacy: Vec<String>,
    /// Codes whose values differ: (legacy, unified) as JSON text.
    pub different: BTreeMap<String, (String, String)>,
}

/// Entities of one kind checked and drifted, and values per attribute code in each store
/// (quarantined values left out of legacy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub checked: i64,
    pub drifted: i64,
    pub legacy_values_by_code: BTreeMap<String, i64>,
    pub unified_values_by_code: BTreeMap<String, i64>,
    /// Values of these entities in the marketplace's own unified table (a second source), how
    /// many say what legacy says, and how many differ from legacy's (one of each pair kept).
    pub monolith_values: i64,
    pub monolith_same_as_legacy: i64,
    pub monolith_conflicts: i64,
}

/// The result of a verify run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub checked: i64,
    pub drifted: i64,
    /// Per entity kind (`listing`, `product`, `product_variant`).
    pub kinds: BTreeMap<&'static str, KindCounts>,
    pub quarantined: i64,
    pub drift: Vec<Drift>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.drifted == 0
    }

    /// Compares one entity; `quarantined` holds the codes whose legacy values were refused.
    pub(crate) fn compare(
        &mut self,
        entity: EntityRef,
        mut legacy: EntityValues,
        unified: &EntityValues,
        quarantined: &HashSet<String>,
    ) {
        // A quarantine entry explains a value missing from unified; once unified has a value for
        // that code again (a later write), the two are compared as usual.
        legacy.retain(|code, _| !quarantined.contains(code) || unified.contains_key(code));
        self.checked += 1;
        let counts = self.kinds.entry(entity.kind.as_str()).or_default();
        counts.checked += 1;
        for code in legacy.keys() {
            *counts
                .legacy_values_by_code
                .entry(code.clone())
                .or_default() += 1;
        }
        for code in unified.keys() {
            *counts
                .unified_values_by_code
                .entry(code.clone())
                .or_default() += 1;
        }
        if &legacy == unified {
            return;
        }
        counts.drifted += 1;
        self.drifted += 1;
        if self.drift.len() >= MAX_DRIFT_SHOWN {
            return;
        }
        let text = |typed: &domain::TypedValue| {
            let mut json = typed.value.to_json().to_string();
            if let Some(unit) = &typed.unit {
                json.push(' ');
                json.push_str(unit);
            }
            json
        };
        self.drift.push(Drift {
            entity_type: entity.kind.as_str(),
            entity_id: entity.id,
            missing_in_unified: legacy
                .keys()
                .filter(|c| !unified.contains_key(*c))
                .cloned()
                .collect(),
            missing_in_legacy: unified
                .keys()
                .filter(|c| !legacy.contains_key(*c))
                .cloned()
                .collect(),
            different: legacy
                .iter()
                .filter_map(|(code, value)| {
                    let other = unified.get(code)?;
                    (other != value).then(|| (code.clone(), (text(value), text(other))))
                })
                .collect(),
        });
    }
}

const SAVE_RUN: Sql =
    Sql::same("INSERT INTO verify_runs (checked, drifted, report) VALUES ($1, $2, $3)");

const LAST_RUN: Sql = Sql::same(
    "SELECT CAST(finished_at AS TEXT), checked, drifted FROM verify_runs ORDER BY id DESC LIMIT 1",
);

/// The last verify run: when, how many listings, how many drifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastVerify {
    pub finished_at: String,
    pub checked: i64,
    pub drifted: i64,
}

/// Unified values whose entity no longer exists (the entity tables have no foreign key from
/// the values, which span three of them).
const ORPHANED_VALUES: Sql = Sql::same(
    "SELECT COUNT(*) FROM unified_attribute_values v WHERE
    (v.entity_type = 'listing' AND NOT EXISTS (SELECT 1 FROM marketplace_listings e WHERE e.id = v.entity_id))
    OR (v.entity_type = 'product' AND NOT EXISTS (SELECT 1 FROM storefront_products e WHERE e.id = v.entity_id))
    OR (v.entity_type = 'product_variant'
        AND NOT EXISTS (SELECT 1 FROM storefront_product_variants e WHERE e.id = v.entity_id))",
);

/// Unified values of entities the marketplace deleted (it owns them, and may hard-delete),
/// per kind: counted by `validate`, removed by `sweep-orphans`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Orphans {
    pub listing: i64,
    pub product: i64,
    pub product_variant: i64,
}

impl Orphans {
    pub fn total(&self) -> i64 {
        self.listing + self.product + self.product_variant
    }
}

/// The values of one kind whose entity no longer exists (`{kind}`, `{table}` filled in).
const ORPHANS_OF_KIND: &str = "FROM unified_attribute_values WHERE entity_type = '{kind}'
    AND NOT EXISTS (SELECT 1 FROM {table} e WHERE e.id = unified_attribute_values.entity_id)";

pub(crate) const ORPHAN_KINDS: [(&str, &str); 3] = [
    ("listing", "marketplace_listings"),
    ("product", "storefront_products"),
    ("product_variant", "storefront_product_variants"),
];

/// Unified values of `kind` whose entity is missing from `table` (both from `ORPHAN_KINDS`):
/// counted, or deleted with `delete`.
async fn orphans_of_kind<B: Backend>(
    conn: &mut Conn<B>,
    kind: &'static str,
    table: &'static str,
    delete: bool,
) -> Result<i64> {
    record_queries(1);
    let verb = if delete { "DELETE" } else { "SELECT COUNT(*)" };
    let statement = orphans_sql(verb, kind, table);
    let query = statement.as_str();
    Ok(match (B::dialect(conn), delete) {
        (Dialect::Pg(c), true) => rows(sqlx::query(query).execute(c).await?.rows_affected()),
        (Dialect::Lite(c), true) => rows(sqlx::query(query).execute(c).await?.rows_affected()),
        (Dialect::Pg(c), false) => sqlx::query_scalar(query).fetch_one(c).await?,
        (Dialect::Lite(c), false) => sqlx::query_scalar(query).fetch_one(c).await?,
    })
}

fn rows(affected: u64) -> i64 {
    i64::try_from(affected).unwrap_or(i64::MAX)
}

/// Records a finished run: what the status and the evidence read back.
async fn save_run<B: Backend>(conn: &mut Conn<B>, report: &VerifyReport) -> Result<()> {
    record_queries(1);
    on_dialect!(B::dialect(conn), SAVE_RUN, |c, statement| {
        sqlx::query(statement)
            .bind(report.checked)
            .bind(report.drifted)
            .bind(sqlx::types::Json(report))
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

fn orphans_sql(verb: &str, kind: &str, table: &str) -> String {
    format!(
        "{verb} {}",
        ORPHANS_OF_KIND
            .replace("{kind}", kind)
            .replace("{table}", table)
    )
}

impl<B: Backend> Router<B> {
    /// Removes (or with `dry_run` only counts) the unified values of entities the marketplace
    /// deleted, kind by kind, each in its own transaction; the caches of those entities are
    /// dropped with an invalidation of all values of the kind.
    pub(crate) async fn sweep_orphans(&self, dry_run: bool) -> Result<Orphans> {
        let mut swept = Orphans::default();
        for (kind, table) in ORPHAN_KINDS {
            let mut tx = self.begin_write().await?;
            let count = orphans_of_kind::<B>(&mut tx, kind, table, !dry_run).await?;
            if count > 0 && !dry_run {
                // Another process's caches may still hold a deleted entity's answer.
                crate::invalidation::notify(
                    B::dialect(&mut tx),
                    &[domain::Invalidation::AllValues],
                )
                .await?;
            }
            tx.commit().await?;
            match kind {
                "listing" => swept.listing = count,
                "product" => swept.product = count,
                _ => swept.product_variant = count,
            }
        }
        Ok(swept)
    }

    /// Compares every entity's values in both stores, kind by kind and page by page, and
    /// records the result. With `sample`, only the first `sample` entities of each kind are
    /// compared, and nothing is recorded: a spot check is no evidence for a phase.
    pub(crate) async fn verify(
        &self,
        page: i64,
        sample: Option<i64>,
        mut progress: impl FnMut(&crate::verify::VerifyReport),
    ) -> Result<crate::verify::VerifyReport> {
        let page = sample.map_or(page, |n| page.min(n.max(1)));
        // A recorded run first applies the writes that bypassed the service and wait: they are
        // in legacy, and would read as drift. One committing while the comparison runs may
        // still do so; a second run settles it. A spot check writes nothing.
        if sample.is_none() {
            while self.apply_captured(500).await? > 0 {}
        }
        let mut report = crate::verify::VerifyReport::default();
        // The era this run can vouch for is fixed when it begins: one that ends meanwhile is not
        // covered by it.
        let (era, catalog): (_, HashMap<String, domain::Attribute>) = {
            let mut conn = self.acquire().await?;
            ensure_legacy_in_place::<B>(&mut conn).await?;
            let era = crate::evidence::state_row(B::dialect(&mut conn))
                .await?
                .era_to_verify();
            let mut catalog: HashMap<String, domain::Attribute> =
                crate::schema::catalog(B::dialect(&mut conn), Store::Legacy)
                    .await?
                    .into_iter()
                    .map(|attribute| (attribute.code.clone(), attribute))
                    .collect();
            // The definitions only the marketplace's own unified tables held.
            for attribute in crate::schema::catalog(B::dialect(&mut conn), Store::Unified).await? {
                if crate::monolith::is_its_alone(attribute.id) {
                    catalog.entry(attribute.code.clone()).or_insert(attribute);
                }
            }
            (era, catalog)
        };
        for kind in EntityKind::ALL {
            let mut after = 0;
            let mut compared = 0;
            loop {
                if sample.is_some_and(|n| compared >= n) {
                    break;
                }
                // One snapshot per page: a write committing between the two reads is not drift.
                let mut conn = self.begin_snapshot().await?;
                let ids = crate::batches::entity_ids_after(
                    B::dialect(&mut conn),
                    kind,
                    after,
                    page,
                    false,
                )
                .await?;
                let Some(&last) = ids.last() else { break };
                let (mut legacy, unified) = match kind {
                    EntityKind::Listing => (
                        crate::batches::listing_values_batch(
                            B::dialect(&mut conn),
                            Store::Legacy,
                            &ids,
                        )
                        .await?,
                        crate::batches::listing_values_batch(
                            B::dialect(&mut conn),
                            Store::Unified,
                            &ids,
                        )
                        .await?,
                    ),
                    _ => {
                        let (documents, vocabulary) =
                            crate::batches::legacy_documents(B::dialect(&mut conn), kind, &ids)
                                .await?;
                        let legacy = documents
                            .iter()
                            .map(|(id, document)| {
                                let decoded =
                                    crate::legacy::decode_document(kind, document, &vocabulary);
                                (*id, decoded.values)
                            })
                            .collect();
                        (
                            legacy,
                            crate::batches::unified_values_batch(B::dialect(&mut conn), kind, &ids)
                                .await?,
                        )
                    }
                };
                let its =
                    crate::monolith::overlay::<B>(&mut conn, kind, &ids, &mut legacy, &catalog)
                        .await?;
                let counts = report.kinds.entry(kind.as_str()).or_default();
                counts.monolith_values += its.values;
                counts.monolith_same_as_legacy += its.same_as_legacy;
                counts.monolith_conflicts += its.conflicts;
                let mut quarantined: HashMap<i64, std::collections::HashSet<String>> =
                    HashMap::new();
                for (id, code) in
                    crate::batches::quarantined_codes(B::dialect(&mut conn), kind, &ids).await?
                {
                    quarantined.entry(id).or_default().insert(code);
                }
                report.quarantined += quarantined
                    .values()
                    .map(|codes| codes.len() as i64)
                    .sum::<i64>();
                let none = std::collections::HashSet::new();
                let empty = EntityValues::new();
                for id in &ids {
                    // Legacy spellings compare as the option they certainly mean, as backfilled.
                    let mut legacy_values = legacy.get(id).cloned().unwrap_or_default();
                    for (code, typed) in legacy_values.iter_mut() {
                        if let Some(attribute) = catalog.get(code) {
                            domain::canonical_spellings(&attribute.options, &mut typed.value);
                        }
                    }
                    report.compare(
                        EntityRef { kind, id: *id },
                        legacy_values,
                        unified.get(id).unwrap_or(&empty),
                        quarantined.get(id).unwrap_or(&none),
                    );
                }
                conn.commit().await?;
                progress(&report);
                compared += ids.len() as i64;
                after = last;
            }
        }
        if sample.is_some() {
            return Ok(report);
        }
        let mut conn = self.acquire().await?;
        save_run::<B>(&mut conn, &report).await?;
        // A verify over nothing proves nothing: it is no evidence for a phase.
        if let Some(era) = era.filter(|_| report.is_clean() && report.checked > 0) {
            crate::evidence::record_verified(B::dialect(&mut conn), era).await?;
        }
        conn.commit().await?;
        Ok(report)
    }

    pub(crate) async fn last_verify(&self) -> Result<Option<LastVerify>> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        let row = on_dialect!(B::dialect(&mut conn), LAST_RUN, |c, statement| {
            sqlx::query_as::<_, (String, i64, i64)>(statement)
                .fetch_optional(&mut *c)
                .await?
        });
        Ok(row.map(|(finished_at, checked, drifted)| LastVerify {
            finished_at: crate::rows::rfc3339(finished_at),
            checked,
            drifted,
        }))
    }

    pub(crate) async fn sample_ids(&self) -> Result<(Option<i64>, Option<i64>)> {
        let mut conn = self.acquire().await?;
        let archived = crate::evidence::migration_state(B::dialect(&mut conn))
            .await?
            .archived;
        let mut found = [None, None];
        for (slot, (unified, legacy)) in found.iter_mut().zip([
            (SAMPLE_UNIFIED_CATEGORY, SAMPLE_LEGACY_CATEGORY),
            (SAMPLE_UNIFIED_LISTING, SAMPLE_LEGACY_LISTING),
        ]) {
            *slot = sample_id(B::dialect(&mut conn), unified).await?;
            if slot.is_none() && !archived {
                *slot = sample_id(B::dialect(&mut conn), legacy).await?;
            }
        }
        Ok((found[0], found[1]))
    }

    pub(crate) async fn orphaned_values(&self) -> Result<i64> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        Ok(on_dialect!(
            B::dialect(&mut conn),
            ORPHANED_VALUES,
            |c, statement| sqlx::query_scalar(statement).fetch_one(&mut *c).await?
        ))
    }
}

/// Real ids for checks of a running service: a category with attributes, a listing with
/// values — in unified, else in legacy (both backends accept these statements).
const SAMPLE_UNIFIED_CATEGORY: &str = "SELECT CAST(b.category_id AS BIGINT)
    FROM unified_category_attributes b ORDER BY b.category_id LIMIT 1";
const SAMPLE_LEGACY_CATEGORY: &str = "SELECT CAST(m.category_id AS BIGINT)
    FROM category_attribute_mapping m JOIN marketplace_categories c ON c.id = m.category_id
    ORDER BY m.category_id LIMIT 1";
const SAMPLE_UNIFIED_LISTING: &str = "SELECT CAST(v.entity_id AS BIGINT)
    FROM unified_attribute_values v JOIN marketplace_listings l ON l.id = v.entity_id
    WHERE v.entity_type = 'listing' ORDER BY v.entity_id LIMIT 1";
const SAMPLE_LEGACY_LISTING: &str = "SELECT CAST(v.listing_id AS BIGINT)
    FROM listing_attribute_values v JOIN marketplace_listings l ON l.id = v.listing_id
    ORDER BY v.listing_id LIMIT 1";

/// The id one of the statements above finds, if any.
async fn sample_id(conn: Dialect<'_>, statement: &'static str) -> Result<Option<i64>> {
    record_queries(1);
    Ok(on_dialect!(conn, Sql::same(statement), |c, statement| {
        sqlx::query_scalar(statement).fetch_optional(c).await?
    }))
}
