//! The backfill's durable state and the statements only it runs: legacy → unified in
//! keyset-paginated batches, one transaction each, with a checkpoint and a quarantine.

use std::collections::{HashMap, HashSet};

use domain::{Attribute, EntityKind};
use flags::{Store, WriteMode};

use crate::backend::{Backend, Conn};
use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::{Result, StorageError};
use crate::invalidation::Invalidation;
use crate::quarantine::{QuarantineKind, QuarantinedRow};
use crate::router::{Router, ensure_legacy_in_place};
use crate::stats::record_queries;

use serde::Serialize;

pub use crate::checkpoint::{Checkpoint, Progress};

/// How many legacy values the quarantine holds for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct QuarantineCount {
    pub entity_type: String,
    pub reason: String,
    pub count: i64,
}

/// The most common reasons first; the status shows a bounded list.
const QUARANTINE_BY_REASON: Sql = Sql::same(
    "SELECT entity_type, reason, COUNT(*) AS count
    FROM backfill_quarantine GROUP BY entity_type, reason
    ORDER BY COUNT(*) DESC, entity_type, reason LIMIT $1",
);

/// The quarantine's entity type of a legacy binding (keyed by its category).
pub(crate) const BINDING: &str = "binding";

/// What the definitions step of a backfill copied, and what it quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Definitions {
    pub attributes: usize,
    pub bindings: usize,
    /// Bindings of a category or attribute that does not exist.
    pub quarantined_bindings: usize,
    /// What came from the marketplace's own unified tables, when they are a source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monolith: Option<crate::monolith::MonolithDefinitions>,
}

const CATEGORY_IDS: Sql = Sql::same("SELECT CAST(id AS BIGINT) FROM marketplace_categories");

/// The ids of the marketplace's categories.
pub(crate) async fn category_ids(conn: Dialect<'_>) -> Result<HashSet<i64>> {
    record_queries(1);
    let ids: Vec<i64> = on_dialect!(conn, CATEGORY_IDS, |c, statement| {
        sqlx::query_scalar(statement).fetch_all(c).await?
    });
    Ok(ids.into_iter().collect())
}

/// Legacy values of listings that no longer exist, into the quarantine (the real schema has no
/// foreign key from a value to its listing). The `WHERE` also lets SQLite parse the upsert.
const QUARANTINE_ORPHAN_LISTING_VALUES: Sql = Sql::same(
    "INSERT INTO backfill_quarantine
        (entity_type, entity_id, attribute_code, raw_value, shown_value, reason, kind)
    SELECT 'listing', v.listing_id, COALESCE(lower(a.name), '#' || CAST(v.attribute_id AS TEXT)),
        COALESCE(v.text_value, CAST(v.numeric_value AS TEXT), CAST(v.json_value AS TEXT),
            CAST(v.boolean_value AS TEXT)),
        COALESCE(NULLIF(trim(v.text_value), ''), CAST(v.numeric_value AS TEXT),
            CAST(v.json_value AS TEXT), CAST(v.boolean_value AS TEXT)),
        'the listing does not exist', 'orphan'
    FROM listing_attribute_values v
    LEFT JOIN marketplace_listings l ON l.id = v.listing_id
    LEFT JOIN category_attributes a ON a.id = v.attribute_id
    WHERE l.id IS NULL
    ON CONFLICT (entity_type, entity_id, attribute_code) DO UPDATE
        SET raw_value = excluded.raw_value, shown_value = excluded.shown_value,
            reason = excluded.reason, kind = excluded.kind",
);

/// Quarantines the legacy values of listings that do not exist; returns how many.
async fn quarantine_orphan_listing_values(conn: Dialect<'_>) -> Result<u64> {
    record_queries(1);
    Ok(on_dialect!(
        conn,
        QUARANTINE_ORPHAN_LISTING_VALUES,
        |c, statement| sqlx::query(statement).execute(c).await?.rows_affected()
    ))
}

const LEGACY_BINDINGS: Sql = Sql::same(
    "SELECT category_id, attribute_id, is_enabled, is_required, sort_order,
        custom_component, show_in_card, show_in_list
    FROM category_attribute_mapping ORDER BY category_id, attribute_id",
);

/// Unified bindings in the columns legacy's mapping has.
const UNIFIED_BINDINGS_AS_LEGACY: Sql = Sql::same(
    "SELECT category_id, attribute_id, is_enabled, is_required, sort_order,
        custom_component, show_in_card, show_in_list
    FROM unified_category_attributes ORDER BY category_id, attribute_id",
);

/// Every binding of a category to an attribute in `store`, in the columns legacy has.
pub(crate) async fn bindings(
    conn: Dialect<'_>,
    store: Store,
) -> Result<Vec<domain::CategoryBinding>> {
    record_queries(1);
    let statement = match store {
        Store::Legacy => LEGACY_BINDINGS,
        Store::Unified => UNIFIED_BINDINGS_AS_LEGACY,
    };
    let rows: Vec<LegacyBindingRow> = on_dialect!(conn, statement, |c, statement| {
        sqlx::query_as(statement).fetch_all(c).await?
    });
    Ok(rows
        .into_iter()
        .map(LegacyBindingRow::into_binding)
        .collect())
}

const UNIFIED_IDS: Sql = Sql::same("SELECT CAST(id AS BIGINT) AS id, code FROM unified_attributes");

/// The id of each unified definition, by code.
async fn unified_ids(conn: Dialect<'_>) -> Result<HashMap<String, i64>> {
    record_queries(1);
    let rows: Vec<(i64, String)> = on_dialect!(conn, UNIFIED_IDS, |c, statement| {
        sqlx::query_as(statement).fetch_all(c).await?
    });
    Ok(rows.into_iter().map(|(id, code)| (code, id)).collect())
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LegacyBindingRow {
    pub category_id: i32,
    pub attribute_id: i32,
    pub is_enabled: bool,
    pub is_required: Option<bool>,
    pub sort_order: i32,
    pub custom_component: Option<String>,
    pub show_in_card: Option<bool>,
    pub show_in_list: Option<bool>,
}

impl LegacyBindingRow {
    pub(crate) fn into_binding(self) -> domain::CategoryBinding {
        domain::CategoryBinding {
            is_enabled: self.is_enabled,
            is_required: self.is_required,
            custom_component: self.custom_component,
            show_in_card: self.show_in_card,
            show_in_list: self.show_in_list,
            ..domain::CategoryBinding::new(
                self.category_id.into(),
                self.attribute_id.into(),
                self.sort_order,
            )
        }
    }
}

impl<B: Backend> Router<B> {
    /// Copies every legacy definition and binding to the unified tables (ids kept; upserts,
    /// so a second run changes nothing). Returns (definitions, bindings). Refused while
    /// unified holds writes legacy lacks: they would be overwritten with older data.
    pub(crate) async fn backfill_definitions(&self) -> Result<Definitions> {
        let mut tx = self.begin_write().await?;
        ensure_legacy_in_place::<B>(&mut tx).await?;
        crate::evidence::fence(B::dialect(&mut tx)).await?;
        ensure_backfill_allowed(&crate::evidence::state_row(B::dialect(&mut tx)).await?)?;
        let catalog = crate::schema::catalog(B::dialect(&mut tx), Store::Legacy).await?;
        for attribute in &catalog {
            let legacy_id =
                (attribute.id < crate::rows::VARIANT_AXIS_ID_OFFSET).then_some(attribute.id);
            crate::definitions::unified_upsert(B::dialect(&mut tx), attribute, legacy_id).await?;
        }
        // The real schema has no foreign key from a binding to its category: a binding of a
        // category (or an attribute) that does not exist is quarantined, not fatal.
        let categories = category_ids(B::dialect(&mut tx)).await?;
        let codes: HashMap<i64, &str> = catalog.iter().map(|a| (a.id, a.code.as_str())).collect();
        let mut copied = 0;
        let mut orphans = Vec::new();
        for binding in bindings(B::dialect(&mut tx), Store::Legacy).await? {
            let reason = match (
                categories.contains(&binding.category_id),
                codes.get(&binding.attribute_id),
            ) {
                (true, Some(_)) => {
                    crate::definitions::upsert_binding(
                        B::dialect(&mut tx),
                        Store::Unified,
                        &binding,
                    )
                    .await?;
                    copied += 1;
                    continue;
                }
                (false, _) => "the category does not exist",
                (true, None) => "the attribute does not exist or cannot be read",
            };
            orphans.push(QuarantinedRow {
                entity_id: binding.category_id,
                attribute_code: codes.get(&binding.attribute_id).map_or_else(
                    || format!("#{}", binding.attribute_id),
                    |code| (*code).to_owned(),
                ),
                raw_value: serde_json::to_string(&binding).unwrap_or_default(),
                shown_value: None,
                reason: reason.to_owned(),
                kind: QuarantineKind::Orphan,
            });
        }
        let categories_with_orphans: Vec<i64> = orphans.iter().map(|o| o.entity_id).collect();
        if !orphans.is_empty() {
            crate::quarantine::replace_entries::<B>(
                &mut tx,
                BINDING,
                &categories_with_orphans,
                &orphans,
            )
            .await?;
        }
        let monolith = crate::monolith::adopt_definitions::<B>(&mut tx, &catalog).await?;
        crate::invalidation::notify(B::dialect(&mut tx), &[Invalidation::Everything]).await?;
        tx.commit().await?;
        Ok(Definitions {
            attributes: catalog.len(),
            bindings: copied,
            quarantined_bindings: orphans.len(),
            monolith,
        })
    }

    /// The backfill checkpoint of one entity kind: the stored one, or a fresh pass with
    /// `restart`, when none is stored, or when the stored pass began before the current
    /// unified era (a write may have skipped unified since it began, so it proves nothing).
    pub(crate) async fn checkpoint(
        &self,
        kind: EntityKind,
        restart: bool,
    ) -> Result<crate::backfill::Checkpoint> {
        let mut conn = self.acquire().await?;
        let stored = crate::checkpoint::load(B::dialect(&mut conn), kind.as_str()).await?;
        let state = crate::evidence::state_row(B::dialect(&mut conn)).await?;
        Ok(match stored {
            Some(checkpoint)
                if !restart
                    && (state.era_of_new_pass().is_none()
                        || checkpoint.era == state.era_of_new_pass()) =>
            {
                checkpoint
            }
            _ => crate::backfill::Checkpoint::fresh(kind.as_str(), state.era_of_new_pass()),
        })
    }

    /// Migrates the next batch of entities of `kind` after `checkpoint` in one transaction:
    /// each legacy value (a listing's row, a key of a B2C document) becomes a unified value
    /// or a quarantine entry with the reason, and the checkpoint moves on in the same
    /// transaction. Returns the new checkpoint. Refused while unified holds writes legacy
    /// lacks, and when a write may have skipped unified since the pass began.
    pub(crate) async fn backfill_batch(
        &self,
        kind: EntityKind,
        checkpoint: &crate::backfill::Checkpoint,
        limit: i64,
        catalog: &HashMap<String, Attribute>,
    ) -> Result<crate::backfill::Checkpoint> {
        let BatchBegun { mut tx, ids } = self
            .begin_batch(kind, checkpoint, checkpoint.last_id, limit)
            .await?;
        if ids.is_empty() {
            return complete_kind::<B>(tx, kind, checkpoint).await;
        }
        let counts = migrate_entities::<B>(&mut tx, kind, &ids, catalog).await?;
        commit_batch::<B>(tx, kind, &ids, counts, checkpoint).await
    }

    /// The next two batches at once where the database takes concurrent writers (PostgreSQL),
    /// committed in order: the second's reads, judging and insert run beside the first's, on a
    /// connection of its own. Returns the checkpoint after each batch committed (one when the
    /// kind is done after the first, or the backend has one writer). The first never waits
    /// for the second: it commits as soon as it is done, so a lock the second queues for
    /// behind a flag change that waits on the first cannot hold both. The second saves its
    /// checkpoint only after the first committed, and is rolled back if the first fails.
    pub(crate) async fn backfill_two_batches(
        &self,
        kind: EntityKind,
        checkpoint: &crate::backfill::Checkpoint,
        limit: i64,
        catalog: &HashMap<String, Attribute>,
    ) -> Result<Vec<crate::backfill::Checkpoint>> {
        if !B::CONCURRENT_WRITERS {
            return Ok(vec![
                self.backfill_batch(kind, checkpoint, limit, catalog)
                    .await?,
            ]);
        }
        let BatchBegun { mut tx, ids } = self
            .begin_batch(kind, checkpoint, checkpoint.last_id, limit)
            .await?;
        let Some(&after) = ids.last() else {
            return Ok(vec![complete_kind::<B>(tx, kind, checkpoint).await?]);
        };
        let first = async {
            let counts = migrate_entities::<B>(&mut tx, kind, &ids, catalog).await?;
            commit_batch::<B>(tx, kind, &ids, counts, checkpoint).await
        };
        let second = async {
            let BatchBegun { mut tx, ids } =
                self.begin_batch(kind, checkpoint, after, limit).await?;
            if ids.is_empty() {
                // Dropped, so rolled back: the next call completes the kind after the first.
                return Ok(None);
            }
            let counts = migrate_entities::<B>(&mut tx, kind, &ids, catalog).await?;
            Ok::<_, StorageError>(Some((tx, ids, counts)))
        };
        let (first, second) = tokio::join!(first, second);
        // The first failed: the second is dropped here, uncommitted.
        let first = first?;
        let mut done = vec![first.clone()];
        if let Some((tx, ids, counts)) = second? {
            done.push(commit_batch::<B>(tx, kind, &ids, counts, &first).await?);
        }
        Ok(done)
    }

    /// A batch's transaction, its checks passed, and the next `limit` entities of `kind` after
    /// `after` (their rows locked; none when the kind is done).
    async fn begin_batch(
        &self,
        kind: EntityKind,
        checkpoint: &crate::backfill::Checkpoint,
        after: i64,
        limit: i64,
    ) -> Result<BatchBegun<B>> {
        let mut tx = self.begin_write().await?;
        crate::evidence::fence(B::dialect(&mut tx)).await?;
        let state = crate::evidence::state_row(B::dialect(&mut tx)).await?;
        ensure_backfill_allowed(&state)?;
        if state.era_of_new_pass().is_some() && checkpoint.era != state.era_of_new_pass() {
            return Err(StorageError::Conflict(
                "a write may have reached only legacy since this backfill pass began (dual-write was off in between): \
                 run backfill again; it starts a new pass"
                    .into(),
            ));
        }
        let ids =
            crate::batches::entity_ids_after(B::dialect(&mut tx), kind, after, limit, true).await?;
        Ok(BatchBegun { tx, ids })
    }

    /// Migrates again the next `limit` existing entities of `kind` after `after` that have
    /// quarantined values (after operators added options or labels), in one transaction, under
    /// the same conditions as a backfill batch. Returns the last entity done (`None`: no more),
    /// and (migrated, still quarantined) for the batch.
    pub(crate) async fn retry_quarantined(
        &self,
        kind: EntityKind,
        after: i64,
        limit: i64,
        catalog: &HashMap<String, Attribute>,
    ) -> Result<(Option<i64>, usize, usize)> {
        let mut tx = self.begin_write().await?;
        crate::evidence::fence(B::dialect(&mut tx)).await?;
        ensure_backfill_allowed(&crate::evidence::state_row(B::dialect(&mut tx)).await?)?;
        let ids =
            crate::batches::quarantined_entity_ids_after(B::dialect(&mut tx), kind, after, limit)
                .await?;
        let Some(&last) = ids.last() else {
            return Ok((None, 0, 0));
        };
        let (migrated, quarantined) = migrate_entities::<B>(&mut tx, kind, &ids, catalog).await?;
        crate::invalidation::notify(
            B::dialect(&mut tx),
            &[
                Invalidation::EntityRange {
                    kind,
                    first: ids[0],
                    last,
                },
                Invalidation::AllRanges,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok((Some(last), migrated, quarantined))
    }

    pub(crate) async fn quarantine_listing(
        &self,
        attribute: Option<&str>,
        limit: i64,
    ) -> Result<crate::quarantine::QuarantineListing> {
        let mut conn = self.acquire().await?;
        crate::quarantine::listing::<B>(&mut conn, attribute, limit).await
    }

    pub(crate) async fn unsettled_quarantine(
        &self,
    ) -> Result<Vec<crate::quarantine::UnsettledCount>> {
        let mut conn = self.acquire().await?;
        crate::quarantine::unsettled::<B>(&mut conn).await
    }

    pub(crate) async fn backfill_progress(&self) -> Result<Vec<crate::backfill::Progress>> {
        let mut conn = self.acquire().await?;
        crate::checkpoint::progress(B::dialect(&mut conn)).await
    }

    pub(crate) async fn analyze_unified_values(&self) -> Result<()> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        on_dialect!(B::dialect(&mut conn), |c| {
            sqlx::query("ANALYZE unified_attribute_values")
                .execute(c)
                .await?;
        });
        conn.commit().await
    }

    pub(crate) async fn quarantine_by_reason(
        &self,
        limit: i64,
    ) -> Result<Vec<crate::backfill::QuarantineCount>> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        Ok(on_dialect!(
            B::dialect(&mut conn),
            QUARANTINE_BY_REASON,
            |c, statement| sqlx::query_as(statement).bind(limit).fetch_all(c).await?
        ))
    }
}

/// One legacy value on its way to unified: the code it names, its raw form for a quarantine
/// entry, and what could be read of it (`Ok(None)`: a row with no usable value; `Err`: a
/// document key that names nothing readable, with the reason).
struct LegacyCandidate {
    entity_id: i64,
    code: String,
    raw: String,
    /// The value as legacy reads showed it to users.
    shown: Option<String>,
    read: std::result::Result<Option<domain::TypedValue>, String>,
}

/// The legacy values of these entities, one candidate per legacy row or document key.
async fn legacy_values_of<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
) -> Result<Vec<LegacyCandidate>> {
    if kind == EntityKind::Listing {
        let rows = crate::legacy::listing_rows(B::dialect(conn), ids).await?;
        return Ok(rows
            .into_iter()
            .filter_map(|row| {
                let code = row.value.code.clone()?;
                Some(LegacyCandidate {
                    entity_id: row.entity_id,
                    raw: row.value.raw_text(),
                    shown: row.value.shown_text(),
                    read: Ok(row.value.typed_value().map(|(_, typed)| typed)),
                    code,
                })
            })
            .collect());
    }
    let (documents, vocabulary) =
        crate::batches::legacy_documents(B::dialect(conn), kind, ids).await?;
    let mut candidates = Vec::new();
    for (entity_id, document) in &documents {
        let decoded = crate::legacy::decode_document(kind, document, &vocabulary);
        candidates.extend(
            decoded
                .values
                .into_iter()
                .map(|(code, typed)| LegacyCandidate {
                    entity_id: *entity_id,
                    code,
                    raw: typed.value.to_json().to_string(),
                    shown: crate::quarantine::shown_json(&typed.value.to_json()),
                    read: Ok(Some(typed)),
                }),
        );
        candidates.extend(decoded.refused.into_iter().map(|(key, raw, reason)| {
            LegacyCandidate {
                entity_id: *entity_id,
                code: key,
                shown: serde_json::from_str(&raw)
                    .ok()
                    .and_then(|json| crate::quarantine::shown_json(&json))
                    .or_else(|| Some(raw.clone())),
                raw,
                read: Err(reason),
            }
        }));
    }
    Ok(candidates)
}

/// The definitions legacy values are held to: the legacy ones, and those only the
/// marketplace's own unified tables held (as the definitions step copied them).
pub(crate) async fn catalog_of<B: Backend>(
    conn: &mut Conn<B>,
) -> Result<HashMap<String, Attribute>> {
    let mut catalog: HashMap<String, Attribute> =
        crate::schema::catalog(B::dialect(&mut *conn), Store::Legacy)
            .await?
            .into_iter()
            .map(|attribute| (attribute.code.clone(), attribute))
            .collect();
    for attribute in crate::schema::catalog(B::dialect(&mut *conn), Store::Unified).await? {
        if crate::monolith::is_its_alone(attribute.id) {
            catalog.entry(attribute.code.clone()).or_insert(attribute);
        }
    }
    Ok(catalog)
}

/// What one candidate becomes under the unified rules.
enum Judged {
    /// A unified value: its canonical form, and the unified attribute it belongs to.
    Value {
        unified_id: i64,
        typed: domain::TypedValue,
    },
    Quarantined(QuarantinedRow),
}

/// The one set of rules every legacy value passes, backfilled or captured: readable, of a
/// known code, usable, valid (spellings made canonical), with a unified definition.
fn judge(
    candidate: &LegacyCandidate,
    catalog: &HashMap<String, Attribute>,
    unified_ids: &HashMap<String, i64>,
) -> Judged {
    let refuse = |kind: QuarantineKind, reason: String| {
        Judged::Quarantined(QuarantinedRow {
            entity_id: candidate.entity_id,
            attribute_code: candidate.code.clone(),
            raw_value: candidate.raw.clone(),
            shown_value: candidate.shown.clone(),
            reason,
            kind,
        })
    };
    let typed = match &candidate.read {
        Err(reason) => return refuse(QuarantineKind::Unreadable, reason.clone()),
        Ok(typed) => typed,
    };
    let Some(attribute) = catalog.get(&candidate.code) else {
        return refuse(QuarantineKind::Unknown, "no definition of this code".into());
    };
    let Some(mut typed) = typed.clone() else {
        return refuse(
            QuarantineKind::Empty,
            format!("no usable {} value in the row", attribute.attribute_type),
        );
    };
    domain::canonical_spellings(&attribute.options, &mut typed.value);
    if let Err(kind) = domain::validate::check_typed(attribute, &attribute.options, &typed) {
        return refuse(QuarantineKind::Invalid, kind.to_string());
    }
    let Some(&unified_id) = unified_ids.get(&candidate.code) else {
        return refuse(
            QuarantineKind::Unknown,
            "no unified definition (run the definitions backfill)".into(),
        );
    };
    Judged::Value { unified_id, typed }
}

/// Migrates the legacy values of `codes` of one entity as they are now (a change captured
/// from a write that bypassed the service): each becomes its unified value or a quarantine
/// entry, a code legacy no longer holds is removed from unified and the quarantine; the
/// entity's other codes are left as they are (after unified-only writes they are newer than
/// legacy's). Returns (migrated, quarantined).
pub(crate) async fn migrate_codes<B: Backend>(
    conn: &mut Conn<B>,
    entity: domain::EntityRef,
    codes: &std::collections::BTreeSet<String>,
    catalog: &HashMap<String, Attribute>,
) -> Result<(usize, usize)> {
    if codes.is_empty() {
        return Ok((0, 0));
    }
    let unified_ids = unified_ids(B::dialect(&mut *conn)).await?;
    let ids = [entity.id];
    let mut legacy = legacy_values_of::<B>(&mut *conn, entity.kind, &ids).await?;
    let mut quarantined =
        with_its_values::<B>(&mut *conn, entity.kind, &ids, catalog, &mut legacy).await?;
    quarantined.retain(|row| codes.contains(&row.attribute_code));
    let mut set = domain::EntityValues::new();
    for candidate in legacy.iter().filter(|c| codes.contains(&c.code)) {
        match judge(candidate, catalog, &unified_ids) {
            Judged::Value { typed, .. } => {
                set.insert(candidate.code.clone(), typed);
            }
            Judged::Quarantined(row) => quarantined.push(row),
        }
    }
    let removed: Vec<String> = codes
        .iter()
        .filter(|c| !set.contains_key(*c))
        .cloned()
        .collect();
    crate::unified_values::replace_defined(B::dialect(&mut *conn), entity, &set, &removed).await?;
    let mut seen = std::collections::HashSet::new();
    quarantined.reverse();
    quarantined.retain(|row| seen.insert(row.attribute_code.clone()));
    let touched: Vec<&str> = codes.iter().map(String::as_str).collect();
    crate::quarantine::forget_written::<B>(&mut *conn, entity, &touched).await?;
    crate::quarantine::add_entries::<B>(&mut *conn, entity.kind.as_str(), &quarantined).await?;
    Ok((set.len(), quarantined.len()))
}

/// Adds the values of the marketplace's own unified table (when it is a source) to the legacy
/// candidates: where both hold a value of one entity and attribute, the one
/// [`crate::monolith::kept`] keeps stays a candidate and the other is returned as a `conflict`
/// entry with both values.
async fn with_its_values<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
    catalog: &HashMap<String, Attribute>,
    candidates: &mut Vec<LegacyCandidate>,
) -> Result<Vec<QuarantinedRow>> {
    use crate::monolith::{ITS_SOURCE, Kept, LEGACY_SOURCE, conflict_entry, kept};
    let its = crate::monolith::values_of::<B>(&mut *conn, kind, ids).await?;
    if its.is_empty() {
        return Ok(Vec::new());
    }
    let times = crate::monolith::legacy_times::<B>(&mut *conn, kind, ids).await?;
    let mut lost = Vec::new();
    for value in its {
        let theirs = LegacyCandidate {
            entity_id: value.entity_id,
            code: value.code.clone(),
            raw: value.raw.clone(),
            shown: value.shown.clone(),
            read: Ok(value.typed.clone()),
        };
        let Some(i) = candidates
            .iter()
            .position(|c| c.entity_id == value.entity_id && c.code == value.code)
        else {
            candidates.push(theirs);
            continue;
        };
        let legacy_typed = candidates[i].read.as_ref().ok().and_then(Option::as_ref);
        let legacy_time = times.get(&(value.entity_id, value.code.clone())).copied();
        match kept(
            catalog,
            &value.code,
            (legacy_typed, legacy_time),
            (value.typed.as_ref(), value.updated_at),
        ) {
            Kept::Same => {}
            Kept::Monolith => {
                let old = std::mem::replace(&mut candidates[i], theirs);
                lost.push(conflict_entry(
                    value.entity_id,
                    &value.code,
                    (LEGACY_SOURCE, &old.raw, old.shown),
                    (ITS_SOURCE, &value.raw),
                ));
            }
            // Neither accepted: legacy's goes its usual way, with its own entry.
            Kept::Legacy
                if legacy_typed
                    .and_then(|t| crate::monolith::acceptable(catalog, &value.code, t))
                    .is_none() => {}
            Kept::Legacy => lost.push(conflict_entry(
                value.entity_id,
                &value.code,
                (ITS_SOURCE, &value.raw, value.shown),
                (LEGACY_SOURCE, &candidates[i].raw),
            )),
        }
    }
    Ok(lost)
}

/// A backfill overwrites unified values with legacy ones: refused while unified holds writes
/// legacy lacks, or while the stored flags write only to unified.
pub(crate) fn ensure_backfill_allowed(state: &crate::evidence::StateRow) -> Result<()> {
    if state.archived {
        return Err(StorageError::Conflict(
            "the legacy tables are archived: there is nothing to migrate from; run restore-archive \
             first"
                .into(),
        ));
    }
    if state.pending_sync {
        return Err(StorageError::Conflict(
            "writes have reached only the unified store since the last reverse sync: a backfill would \
             overwrite them with older legacy values; run sync-legacy first (with dual-write on)"
                .into(),
        ));
    }
    if state.stored_write_mode() == Some(WriteMode::UnifiedOnly) {
        return Err(StorageError::Conflict(
            "the flags in force write only to the unified store: a backfill would overwrite those writes \
             with legacy values; turn dual-write on first"
                .into(),
        ));
    }
    Ok(())
}

/// A backfill batch's open transaction and the entities it holds locked.
struct BatchBegun<B: Backend> {
    tx: sqlx::Transaction<'static, B::Db>,
    ids: Vec<i64>,
}

/// Moves the checkpoint past a migrated batch (`counts`: values migrated, quarantined) and
/// commits it with the batch.
async fn commit_batch<B: Backend>(
    mut tx: sqlx::Transaction<'static, B::Db>,
    kind: EntityKind,
    ids: &[i64],
    (migrated, quarantined): (usize, usize),
    checkpoint: &crate::backfill::Checkpoint,
) -> Result<crate::backfill::Checkpoint> {
    let (first, last_id) = (ids[0], ids[ids.len() - 1]);
    let next = crate::backfill::Checkpoint {
        last_id,
        migrated: checkpoint.migrated + migrated as i64,
        quarantined: checkpoint.quarantined + quarantined as i64,
        completed: false,
        ..checkpoint.clone()
    };
    crate::checkpoint::save(B::dialect(&mut tx), &next).await?;
    // Unified values of the batch changed, and with them the unified value ranges.
    let invalidations = [
        Invalidation::EntityRange {
            kind,
            first,
            last: last_id,
        },
        Invalidation::AllRanges,
    ];
    crate::invalidation::notify(B::dialect(&mut tx), &invalidations).await?;
    tx.commit().await?;
    Ok(next)
}

/// The end of a kind's pass, no entity left: what is left in quarantine of entities that are
/// gone, then the checkpoint marked completed.
async fn complete_kind<B: Backend>(
    mut tx: sqlx::Transaction<'static, B::Db>,
    kind: EntityKind,
    checkpoint: &crate::backfill::Checkpoint,
) -> Result<crate::backfill::Checkpoint> {
    // The marketplace's own unified table's values of entities that are gone, first:
    // legacy's orphan of the same listing and code then takes the entry.
    let its = crate::monolith::orphans::<B>(&mut tx, kind).await?;
    if !its.is_empty() {
        let mut gone: Vec<i64> = its.iter().map(|row| row.entity_id).collect();
        gone.dedup();
        crate::quarantine::replace_entries::<B>(&mut tx, kind.as_str(), &gone, &its).await?;
    }
    let orphans = its.len() as i64
        + if kind == EntityKind::Listing {
            quarantine_orphan_listing_values(B::dialect(&mut tx)).await? as i64
        } else {
            0
        };
    let done = crate::backfill::Checkpoint {
        completed: true,
        quarantined: checkpoint.quarantined + orphans,
        ..checkpoint.clone()
    };
    crate::checkpoint::save(B::dialect(&mut tx), &done).await?;
    crate::evidence::record_backfilled(B::dialect(&mut tx)).await?;
    tx.commit().await?;
    Ok(done)
}

/// Migrates the legacy values of these entities: each becomes a unified value or a quarantine
/// entry with the reason, replacing what unified and the quarantine held for them. Returns
/// (migrated, quarantined).
pub(crate) async fn migrate_entities<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
    catalog: &HashMap<String, Attribute>,
) -> Result<(usize, usize)> {
    let unified_ids = unified_ids(B::dialect(&mut *conn)).await?;
    let mut legacy = legacy_values_of::<B>(&mut *conn, kind, ids).await?;
    let mut quarantined = with_its_values::<B>(&mut *conn, kind, ids, catalog, &mut legacy).await?;
    let mut values = Vec::new();
    // Each value's code and raw form, for the quarantine entry should the database refuse it.
    let mut sources = Vec::new();
    for candidate in legacy {
        match judge(&candidate, catalog, &unified_ids) {
            Judged::Value { unified_id, typed } => {
                values.push((
                    candidate.entity_id,
                    unified_id,
                    crate::rows::ValueColumns::unified(&typed),
                ));
                sources.push((candidate.code, candidate.raw, candidate.shown));
            }
            Judged::Quarantined(row) => quarantined.push(row),
        }
    }
    let migrated =
        store_values::<B>(&mut *conn, kind, ids, &values, &sources, &mut quarantined).await?;
    // One entry per entity and code: a conflict's loser gives way to a later entry of the value
    // that won (refused by the rules or the database), whose reason matters more.
    let mut seen = std::collections::HashSet::new();
    quarantined.reverse();
    quarantined.retain(|row| seen.insert((row.entity_id, row.attribute_code.clone())));
    quarantined.reverse();
    crate::quarantine::replace_entries::<B>(&mut *conn, kind.as_str(), ids, &quarantined).await?;
    Ok((migrated, quarantined.len()))
}

/// Replaces the unified values of `ids` with `values`. No row is fatal: when the database
/// refuses the batch for its data (a value the domain let through that a store cannot hold, a
/// constraint or trigger of the marketplace's), the entities are written one by one under
/// savepoints, a refused entity's values are tried one by one, and each value the database
/// refuses goes to `quarantined` with the database's reason (`sources[i]` names `values[i]`).
/// Anything else (a lost connection, a timeout) fails the batch, which resumes from its
/// checkpoint. Returns how many values were written.
async fn store_values<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
    values: &[(i64, i64, crate::rows::ValueColumns)],
    sources: &[(String, String, Option<String>)],
    quarantined: &mut Vec<QuarantinedRow>,
) -> Result<usize> {
    if attempt::<B>(conn, kind, ids, values, true).await?.is_none() {
        return Ok(values.len());
    }
    tracing::warn!(
        kind = kind.as_str(),
        first = ids.first(),
        "the database refused a value of this batch: writing it entity by entity"
    );
    let mut written = 0;
    for &id in ids {
        let mine: Vec<usize> = (0..values.len()).filter(|&i| values[i].0 == id).collect();
        let rows: Vec<_> = mine.iter().map(|&i| values[i].clone()).collect();
        if attempt::<B>(conn, kind, &[id], &rows, true)
            .await?
            .is_none()
        {
            written += rows.len();
            continue;
        }
        let mut storable = Vec::new();
        for i in mine {
            let one = std::slice::from_ref(&values[i]);
            match attempt::<B>(conn, kind, &[id], one, false).await? {
                None => storable.push(values[i].clone()),
                Some(reason) => quarantined.push(QuarantinedRow {
                    entity_id: id,
                    attribute_code: sources[i].0.clone(),
                    raw_value: sources[i].1.clone(),
                    shown_value: sources[i].2.clone(),
                    reason,
                    kind: QuarantineKind::Refused,
                }),
            }
        }
        written += storable.len();
        crate::batches::replace_unified(B::dialect(&mut *conn), kind, &[id], &storable).await?;
    }
    Ok(written)
}

/// Replaces the unified values of `ids` with `rows` under a savepoint, kept when `keep` and the
/// database took them. Returns the database's reason when it refused them for their data.
async fn attempt<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
    rows: &[(i64, i64, crate::rows::ValueColumns)],
    keep: bool,
) -> Result<Option<String>> {
    let mut savepoint = sqlx::Connection::begin(&mut *conn).await?;
    let outcome =
        crate::batches::replace_unified(B::dialect(&mut savepoint), kind, ids, rows).await;
    crate::savepoint::settle(savepoint, outcome, keep).await
}
