//! Writes that bypass the service, and the change feed.
//!
//! **Capture.** The marketplace's own code writes the legacy tables directly (its listing save
//! deletes a listing's rows and inserts them anew; its storefront code rewrites documents).
//! Triggers on those tables (migration 16) write, in the writer's transaction, a row into the
//! `attribute_changes` outbox naming the entity and what it touched — never failing that
//! transaction, and skipping this service's own transactions (`unified_attributes.writer`).
//! The service then applies them ([`Router::apply_captured`]): for each entity, the codes the
//! change touched are migrated again from legacy as it is now, under the entity's row lock, by
//! the same rules as a backfilled row (`backfill::migrate_codes`). Why a change log applied
//! after commit rather than doing it all in the trigger: the rules stay one set, in Rust, and
//! the marketplace's transaction pays one insert, never our validation or our failures. Since
//! each application reads the entity's current legacy state, the order in which changes of
//! one entity are applied does not matter: the last one applied reads the last committed.
//!
//! **The change feed.** Every change of values — through the service, in the write's
//! transaction, or captured — is a row of the same outbox. A sequencer, one at a time, gives
//! committed rows their `position` in id order; a row becomes visible only with its commit, so
//! a consumer reading `position > cursor` gets every change once, never before its commit, and
//! the changes of one entity in their commit order (writers of one entity take its row lock,
//! so the later one's outbox row gets the later id).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use domain::{EntityKind, EntityRef};
use serde::Serialize;
use serde_json::Value as Json;

use crate::backend::{Backend, Conn};
use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::Result;
use crate::invalidation::Invalidation;
use crate::router::Router;
use crate::stats::record_queries;

/// One change of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Change {
    pub position: i64,
    pub entity_type: String,
    pub entity_id: i64,
    /// `service` (written through this service) or `direct` (captured from the legacy tables).
    pub source: String,
    #[sqlx(try_from = "crate::rows::TimestampText")]
    pub changed_at: String,
}

/// How far capture and the feed are behind, and how much the legacy tables are still written
/// directly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
pub struct CaptureStatus {
    /// Captured changes not yet applied to unified, and the age of the oldest.
    pub unapplied: i64,
    pub oldest_unapplied_seconds: f64,
    /// Changes not yet given a feed position, and the age of the oldest.
    pub unsequenced: i64,
    pub oldest_unsequenced_seconds: f64,
    /// Writes that bypassed the service, lately.
    pub direct_last_hour: i64,
    pub direct_last_day: i64,
    pub last_direct_at: Option<String>,
    /// The oldest position the feed still holds (older ones were pruned).
    pub oldest_position: Option<i64>,
}

/// The feed's row and (PostgreSQL) the replicas' invalidation in one statement: one round trip
/// for both, and both take effect only if the write commits. SQLite has no other replica.
const RECORD_SERVICE_CHANGE: Sql = Sql {
    pg: "WITH change AS (
            INSERT INTO attribute_changes (entity_type, entity_id, source)
            VALUES ($1, $2, 'service'))
        SELECT pg_notify($3, $4)",
    lite: "INSERT INTO attribute_changes (entity_type, entity_id, source) VALUES ($1, $2, 'service')",
};

/// Puts a write through the service into the feed and tells every replica what it made stale,
/// in the write's transaction.
pub(crate) async fn record_service_change<B: Backend>(
    conn: &mut Conn<B>,
    entity: EntityRef,
    invalidations: &[Invalidation],
) -> Result<()> {
    record_queries(1);
    match B::dialect(conn) {
        Dialect::Pg(c) => {
            sqlx::query(RECORD_SERVICE_CHANGE.pg)
                .bind(entity.kind.as_str())
                .bind(entity.id)
                .bind(crate::invalidation::CHANNEL)
                .bind(crate::invalidation::payload(invalidations))
                .execute(c)
                .await?;
        }
        Dialect::Lite(c) => {
            sqlx::query(RECORD_SERVICE_CHANGE.lite)
                .bind(entity.kind.as_str())
                .bind(entity.id)
                .execute(c)
                .await?;
        }
    }
    Ok(())
}

/// Captured changes to apply (PostgreSQL: SQLite has no other writer). Rows another replica
/// is applying are skipped, not waited for.
const UNAPPLIED: &str = "SELECT id, entity_type, CAST(entity_id AS BIGINT) AS entity_id,
        attribute_ids, old_document
    FROM attribute_changes WHERE source = 'direct' AND applied_at IS NULL
    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED";

const MARK_APPLIED: &str =
    "UPDATE attribute_changes SET applied_at = clock_timestamp() WHERE id = ANY($1)";

#[derive(Debug, sqlx::FromRow)]
struct CapturedRow {
    id: i64,
    entity_type: String,
    entity_id: i64,
    attribute_ids: Option<Vec<i32>>,
    old_document: Option<Json>,
}

/// One sequencer at a time, across replicas.
const SEQUENCER_LOCK: i64 = 0x5541_4348_414e_4745; // "UACHANGE"

const SEQUENCE: &str = "UPDATE attribute_changes c SET position = s.position
    FROM (SELECT o.id, nextval('attribute_change_positions') AS position
          FROM (SELECT id FROM attribute_changes WHERE position IS NULL ORDER BY id LIMIT $1) o
          ORDER BY o.id) s
    WHERE c.id = s.id";

const UNSEQUENCED_LITE: &str =
    "SELECT id FROM attribute_changes WHERE position IS NULL ORDER BY id LIMIT $1";
const LAST_POSITION_LITE: &str = "SELECT COALESCE(MAX(position), 0) FROM attribute_changes";
const SET_POSITION_LITE: &str = "UPDATE attribute_changes SET position = $1 WHERE id = $2";

const CHANGES_AFTER: Sql = Sql::same(
    "SELECT CAST(position AS BIGINT) AS position, entity_type,
        CAST(entity_id AS BIGINT) AS entity_id, source, CAST(changed_at AS TEXT) AS changed_at
    FROM attribute_changes WHERE position > $1 ORDER BY position LIMIT $2",
);

const STATUS: Sql = Sql {
    pg: "SELECT
        (SELECT COUNT(*) FROM attribute_changes WHERE source = 'direct' AND applied_at IS NULL) AS unapplied,
        COALESCE((SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp() - MIN(changed_at)) AS DOUBLE PRECISION)
            FROM attribute_changes WHERE source = 'direct' AND applied_at IS NULL), 0) AS oldest_unapplied_seconds,
        (SELECT COUNT(*) FROM attribute_changes WHERE position IS NULL) AS unsequenced,
        COALESCE((SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp() - MIN(changed_at)) AS DOUBLE PRECISION)
            FROM attribute_changes WHERE position IS NULL), 0) AS oldest_unsequenced_seconds,
        (SELECT COUNT(*) FROM attribute_changes WHERE source = 'direct'
            AND changed_at > clock_timestamp() - interval '1 hour') AS direct_last_hour,
        (SELECT COUNT(*) FROM attribute_changes WHERE source = 'direct'
            AND changed_at > clock_timestamp() - interval '1 day') AS direct_last_day,
        (SELECT CAST(MAX(changed_at) AS TEXT) FROM attribute_changes WHERE source = 'direct') AS last_direct_at,
        (SELECT MIN(position) FROM attribute_changes) AS oldest_position",
    lite: "SELECT
        0 AS unapplied, 0.0 AS oldest_unapplied_seconds,
        (SELECT COUNT(*) FROM attribute_changes WHERE position IS NULL) AS unsequenced,
        COALESCE((SELECT (julianday('now') - julianday(MIN(changed_at))) * 86400.0
            FROM attribute_changes WHERE position IS NULL), 0.0) AS oldest_unsequenced_seconds,
        0 AS direct_last_hour, 0 AS direct_last_day, NULL AS last_direct_at,
        (SELECT MIN(position) FROM attribute_changes) AS oldest_position",
};

/// Rows past the retention that the feed delivered and capture applied.
const PRUNE: Sql = Sql {
    pg: "DELETE FROM attribute_changes WHERE position IS NOT NULL
        AND (source = 'service' OR applied_at IS NOT NULL)
        AND changed_at < clock_timestamp() - make_interval(secs => $1)",
    lite: "DELETE FROM attribute_changes WHERE position IS NOT NULL
        AND (source = 'service' OR applied_at IS NOT NULL)
        AND julianday(changed_at) < julianday('now') - $1 / 86400.0",
};

/// Whether anything waits for the sequencer or the applier (the partial indexes answer it).
const PENDING: Sql = Sql {
    pg: "SELECT EXISTS (SELECT 1 FROM attribute_changes WHERE position IS NULL)
        OR EXISTS (SELECT 1 FROM attribute_changes WHERE source = 'direct' AND applied_at IS NULL)",
    lite: "SELECT EXISTS (SELECT 1 FROM attribute_changes WHERE position IS NULL)",
};

impl<B: Backend> Router<B> {
    /// Applies up to `limit` captured changes to unified in one transaction; returns how many.
    /// Nothing while the legacy tables are archived (the changes wait, counted by the status).
    pub(crate) async fn apply_captured(&self, limit: i64) -> Result<usize> {
        let mut tx = self.begin_write().await?;
        let Dialect::Pg(c) = B::dialect(&mut tx) else {
            return Ok(0);
        };
        record_queries(1);
        let rows: Vec<CapturedRow> = sqlx::query_as(UNAPPLIED).bind(limit).fetch_all(c).await?;
        if rows.is_empty()
            || crate::evidence::migration_state(B::dialect(&mut tx))
                .await?
                .archived
        {
            return Ok(0);
        }
        let catalog = crate::backfill::catalog_of::<B>(&mut tx).await?;
        // Definitions first: the values' codes are judged by them.
        let definitions: BTreeSet<i64> = rows
            .iter()
            .filter(|row| row.entity_type == DEFINITION)
            .map(|row| row.entity_id)
            .collect();
        let mut invalidations = vec![Invalidation::AllRanges];
        let catalog = if definitions.is_empty() {
            catalog
        } else {
            copy_definitions::<B>(&mut tx, &definitions).await?;
            invalidations.push(Invalidation::Everything);
            crate::backfill::catalog_of::<B>(&mut tx).await?
        };
        let legacy_codes: HashMap<i64, String> = catalog
            .values()
            .filter(|a| a.id < crate::rows::VARIANT_AXIS_ID_OFFSET)
            .map(|a| (a.id, a.code.clone()))
            .collect();
        // By entity, in a fixed order: entity locks are always taken in the same order.
        let mut touched: BTreeMap<(&'static str, i64), (EntityKind, BTreeSet<String>)> =
            BTreeMap::new();
        for row in &rows {
            let Ok(kind) = row.entity_type.parse::<EntityKind>() else {
                // A definition (copied above).
                continue;
            };
            let (_, codes) = touched
                .entry((kind.as_str(), row.entity_id))
                .or_insert_with(|| (kind, BTreeSet::new()));
            if kind == EntityKind::Listing {
                codes.extend(
                    row.attribute_ids
                        .iter()
                        .flatten()
                        .filter_map(|id| legacy_codes.get(&i64::from(*id)).cloned()),
                );
            } else {
                let changed =
                    document_changes::<B>(&mut tx, kind, row.entity_id, row.old_document.as_ref())
                        .await?;
                codes.extend(changed);
            }
        }

        for ((_, id), (kind, codes)) in &touched {
            let entity = EntityRef {
                kind: *kind,
                id: *id,
            };
            // The entity's row lock: a write through the service to it waits, or is waited for.
            crate::entity_values::category_locked(B::dialect(&mut tx), entity).await?;
            crate::backfill::migrate_codes::<B>(&mut tx, entity, codes, &catalog).await?;
            invalidations.push(Invalidation::entity(entity));
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        if let Dialect::Pg(c) = B::dialect(&mut tx) {
            record_queries(1);
            sqlx::query(MARK_APPLIED).bind(&ids).execute(c).await?;
        }
        crate::invalidation::notify(B::dialect(&mut tx), &invalidations).await?;
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Gives up to `limit` committed changes their feed position, in id order; one sequencer
    /// at a time (another finding the lock taken does nothing). Returns how many.
    pub(crate) async fn sequence_changes(&self, limit: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let sequenced = match B::dialect(&mut tx) {
            Dialect::Pg(c) => {
                record_queries(2);
                let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(SEQUENCER_LOCK)
                    .fetch_one(&mut *c)
                    .await?;
                if !ours {
                    return Ok(0);
                }
                sqlx::query(SEQUENCE)
                    .bind(limit)
                    .execute(c)
                    .await?
                    .rows_affected()
            }
            Dialect::Lite(c) => {
                record_queries(2);
                let ids: Vec<i64> = sqlx::query_scalar(UNSEQUENCED_LITE)
                    .bind(limit)
                    .fetch_all(&mut *c)
                    .await?;
                let last: i64 = sqlx::query_scalar(LAST_POSITION_LITE)
                    .fetch_one(&mut *c)
                    .await?;
                for (i, id) in ids.iter().enumerate() {
                    record_queries(1);
                    sqlx::query(SET_POSITION_LITE)
                        .bind(last + 1 + i as i64)
                        .bind(id)
                        .execute(&mut *c)
                        .await?;
                }
                ids.len() as u64
            }
        };
        tx.commit().await?;
        Ok(sequenced)
    }

    /// Whether changes wait to be sequenced or applied: one cheap read when idle.
    pub(crate) async fn changes_pending(&self) -> Result<bool> {
        let mut conn = self.acquire().await?;
        // Not counted with the requests' queries: the idle loop's look is no request's cost.
        let pending = on_dialect!(B::dialect(&mut conn), PENDING, |c, statement| {
            sqlx::query_scalar(statement).fetch_one(&mut *c).await?
        });
        conn.commit().await?;
        Ok(pending)
    }

    /// Up to `limit` changes after position `after`, in order.
    pub(crate) async fn changes_after(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        let changes = on_dialect!(B::dialect(&mut conn), CHANGES_AFTER, |c, statement| {
            sqlx::query_as(statement)
                .bind(after)
                .bind(limit)
                .fetch_all(&mut *c)
                .await?
        });
        conn.commit().await?;
        Ok(changes)
    }

    pub(crate) async fn capture_status(&self) -> Result<CaptureStatus> {
        let mut conn = self.acquire().await?;
        // Not counted with the requests' queries: the metrics read it in the background every
        // few seconds, and a request's count must not change with that timer.
        let mut status: CaptureStatus =
            on_dialect!(B::dialect(&mut conn), STATUS, |c, statement| {
                sqlx::query_as(statement).fetch_one(&mut *c).await?
            });
        conn.commit().await?;
        status.last_direct_at = status.last_direct_at.map(crate::rows::rfc3339);
        Ok(status)
    }

    pub(crate) async fn legacy_usage(&self) -> Result<crate::usage::LegacyUsage> {
        let mut conn = self.acquire().await?;
        let usage = crate::usage::legacy_usage::<B>(&mut conn).await?;
        conn.commit().await?;
        Ok(usage)
    }

    /// Removes the changes older than `retention` that were delivered and applied.
    pub(crate) async fn prune_changes(&self, retention: std::time::Duration) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        record_queries(1);
        let pruned = on_dialect!(B::dialect(&mut tx), PRUNE, |c, statement| {
            sqlx::query(statement)
                .bind(retention.as_secs_f64())
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        tx.commit().await?;
        Ok(pruned)
    }
}

/// A captured change of a definition or its bindings (the legacy attribute id).
const DEFINITION: &str = "attribute";

/// Copies these legacy definitions and their bindings to unified as legacy holds them now: a
/// definition legacy deleted is deleted (its values went with it, captured too), a binding
/// legacy no longer has is removed.
async fn copy_definitions<B: Backend>(conn: &mut Conn<B>, ids: &BTreeSet<i64>) -> Result<()> {
    let legacy = crate::schema::catalog(B::dialect(&mut *conn), flags::Store::Legacy).await?;
    for id in ids {
        match legacy.iter().find(|a| a.id == *id) {
            Some(attribute) => {
                crate::definitions::unified_upsert(B::dialect(&mut *conn), attribute, Some(*id))
                    .await?;
            }
            None => {
                crate::definitions::delete(B::dialect(&mut *conn), flags::Store::Unified, *id)
                    .await?;
            }
        }
    }
    let wanted: Vec<domain::CategoryBinding> =
        crate::backfill::bindings(B::dialect(&mut *conn), flags::Store::Legacy)
            .await?
            .into_iter()
            .filter(|b| ids.contains(&b.attribute_id))
            .collect();
    let categories: BTreeSet<i64> = crate::backfill::category_ids(B::dialect(&mut *conn))
        .await?
        .into_iter()
        .collect();
    for binding in &wanted {
        if categories.contains(&binding.category_id) {
            crate::definitions::upsert_binding(
                B::dialect(&mut *conn),
                flags::Store::Unified,
                binding,
            )
            .await?;
        }
    }
    for binding in crate::backfill::bindings(B::dialect(&mut *conn), flags::Store::Unified).await? {
        let kept = wanted.iter().any(|w| {
            w.category_id == binding.category_id && w.attribute_id == binding.attribute_id
        });
        if ids.contains(&binding.attribute_id) && !kept {
            crate::definitions::delete_binding(
                B::dialect(&mut *conn),
                flags::Store::Unified,
                binding.category_id,
                binding.attribute_id,
            )
            .await?;
        }
    }
    Ok(())
}

/// The codes whose value in the entity's document differs from `before` (`null`: the row was
/// inserted or the document empty; a deleted row reads as no document).
async fn document_changes<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    id: i64,
    before: Option<&Json>,
) -> Result<BTreeSet<String>> {
    let (documents, vocabulary) =
        crate::batches::legacy_documents(B::dialect(&mut *conn), kind, &[id]).await?;
    let now = documents.into_iter().next().map(|(_, document)| document);
    let decoded = |document: Option<&Json>| -> BTreeMap<String, String> {
        let Some(document) = document.filter(|d| !d.is_null()) else {
            return BTreeMap::new();
        };
        let decoded = crate::legacy::decode_document(kind, document, &vocabulary);
        decoded
            .values
            .into_iter()
            .map(|(code, typed)| (code, format!("{:?}", typed)))
            .chain(decoded.refused.into_iter().map(|(key, raw, _)| (key, raw)))
            .collect()
    };
    let (old, new) = (decoded(before), decoded(now.as_ref()));
    Ok(old
        .keys()
        .chain(new.keys())
        .filter(|code| old.get(*code) != new.get(*code))
        .cloned()
        .collect())
}
