//! The migration at a glance, for the operator at 3 a.m.: one document for `status`, `status
//! --watch` and the admin API. Where the flags stand (phase, rung, where each came from), what
//! the next step needs and what supplies it, the bulk operation that runs (holder, position
//! per entity kind, throttle), the quarantine and what of it blocks the cut-over, the last verify
//! and flag changes, how long the unified phase has soaked, the read replicas. Read only.

use flags::{Flags, MigrationState, Phase, Rung};
use serde::Serialize;

use crate::backend::Backend;
use crate::dialect::{Sql, on_dialect};
use crate::error::Result;
use crate::router::Router;
use crate::stats::record_queries;
use crate::{Storage, flag_store, lease, quarantine, throttle, verify};

/// How many flag changes the status shows.
const FLAG_CHANGES_SHOWN: i64 = 5;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The database, as the first line of every command names it.
    pub database: String,
    /// The phase the flags in force mean; `None` when they break a guardrail (`guardrail`).
    pub phase: Option<&'static str>,
    pub guardrail: Option<String>,
    pub flags: Flags,
    /// `configured` (environment, settings file, defaults) or the runtime change's author.
    pub flags_source: String,
    /// The rung of `flags promote` / `flags abort`; `None` for flags set by hand off the ladder.
    pub rung: Option<Rung>,
    /// What comes next and whether it is allowed now; `None` once archived.
    pub next: Option<NextStep>,
    /// The facts the phases need, met or not, and the command that supplies each.
    pub evidence: Vec<Evidence>,
    /// The bulk operation holding the lease, if any.
    pub operation: Option<lease::LeaseHolder>,
    pub backfill: Vec<KindProgress>,
    pub throttles: Vec<throttle::Throttle>,
    pub quarantine: QuarantineSummary,
    pub last_verify: Option<verify::LastVerify>,
    /// The latest flag changes, newest first.
    pub flag_changes: Vec<flag_store::FlagAuditEntry>,
    /// How long the flags have meant the unified phase (the archive's soak), when they do.
    pub unified_for_seconds: Option<f64>,
    pub archived: bool,
    pub replicas: Vec<Replica>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextStep {
    /// The command that takes it.
    pub command: &'static str,
    /// What it leads to.
    pub to: String,
    /// The rule that refuses it now, with what to do; `None`: it may be taken.
    pub blocked_by: Option<Blocker>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Blocker {
    pub rule: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub fact: &'static str,
    pub met: bool,
    /// The step that needs it.
    pub needed_for: &'static str,
    /// What supplies it when it is missing.
    pub supply: &'static str,
}

/// Where the backfill of one entity kind stands: its checkpoint, and how many of the kind's
/// entities lie at or before it.
#[derive(Debug, Clone, Serialize)]
pub struct KindProgress {
    pub kind: String,
    pub last_id: i64,
    pub migrated: i64,
    pub quarantined: i64,
    pub completed: bool,
    /// Entities up to the checkpoint, of `entities`; `None` while the legacy tables are archived.
    pub done: Option<i64>,
    pub entities: Option<i64>,
    pub percent: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuarantineSummary {
    pub total: i64,
    pub seen_by_users: i64,
    pub accepted: i64,
    /// By entity kind and reason, most common first.
    pub by_reason: Vec<crate::backfill::QuarantineCount>,
    /// Values users see that no operator resolved or accepted: unified reads without fallback
    /// wait for them.
    pub blocking_cut_over: Vec<quarantine::UnsettledCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replica {
    pub name: String,
    pub state: String,
    pub lag_ms: Option<u128>,
}

/// The facts the metrics mirror (read in the background, so a scrape runs no query): the
/// quarantine by kind and what of it blocks the cut-over, the last verify, a pending reverse
/// sync, the archive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigrationFacts {
    /// Quarantined values by kind (`invalid`, `unknown`, `orphan`…).
    pub quarantine_by_kind: Vec<(String, i64)>,
    /// Values users see that nobody resolved or accepted.
    pub quarantine_blocking: i64,
    pub last_verify_epoch_seconds: Option<f64>,
    pub last_verify_checked: Option<i64>,
    pub last_verify_drifted: Option<i64>,
    pub sync_pending: bool,
    pub archived: bool,
}

const QUARANTINE_BY_KIND: Sql =
    Sql::same("SELECT kind, COUNT(*) FROM backfill_quarantine GROUP BY kind ORDER BY kind");

const QUARANTINE_BLOCKING: Sql = Sql::same(
    "SELECT COUNT(*) FROM backfill_quarantine WHERE kind NOT IN ('orphan', 'empty') AND accepted_at IS NULL",
);

const LAST_VERIFY_EPOCH: Sql = Sql {
    pg: "SELECT CAST(EXTRACT(EPOCH FROM finished_at) AS DOUBLE PRECISION), checked, drifted
        FROM verify_runs ORDER BY id DESC LIMIT 1",
    lite: "SELECT (julianday(finished_at) - 2440587.5) * 86400.0, checked, drifted
        FROM verify_runs ORDER BY id DESC LIMIT 1",
};

/// Entities of each kind at or before a checkpoint, and in all (one statement per kind).
const LISTINGS_UP_TO: Sql = Sql::same(
    "SELECT CAST(COUNT(*) FILTER (WHERE id <= $1) AS BIGINT), CAST(COUNT(*) AS BIGINT) FROM marketplace_listings",
);
const PRODUCTS_UP_TO: Sql = Sql::same(
    "SELECT CAST(COUNT(*) FILTER (WHERE id <= $1) AS BIGINT), CAST(COUNT(*) AS BIGINT) FROM storefront_products",
);
const VARIANTS_UP_TO: Sql = Sql::same(
    "SELECT CAST(COUNT(*) FILTER (WHERE id <= $1) AS BIGINT), CAST(COUNT(*) AS BIGINT) FROM storefront_product_variants",
);

/// How long the metrics' background count may run on PostgreSQL (their own patience).
const BACKGROUND_COUNT_LIMIT: &str = "SET LOCAL statement_timeout = 1000";

/// The checkpoints of the kinds whose backfill has not finished (a finished kind is at 100 %).
const UNFINISHED_CHECKPOINTS: Sql = Sql::same(
    "SELECT entity_type, last_id FROM backfill_checkpoint WHERE completed_at IS NULL ORDER BY entity_type",
);

impl<B: Backend> Router<B> {
    /// Each unfinished kind's backfill position in per cent of its entities, for the metrics:
    /// read in the background, so not counted with the requests' queries.
    pub(crate) async fn backfill_percent(&self) -> Result<Vec<(String, f64)>> {
        // The counts grow with the tables and the metrics stop waiting after a second: a count
        // they gave up on must stop on the server too, not pile up every few seconds. The limit
        // is the transaction's (outside one, `SET LOCAL` is ignored with a warning), and one
        // snapshot gives every kind's counts as of one moment.
        let mut conn = self.begin_snapshot().await?;
        if let crate::dialect::Dialect::Pg(c) = B::dialect(&mut conn) {
            sqlx::Executor::execute(&mut *c, BACKGROUND_COUNT_LIMIT).await?;
        }
        let unfinished = on_dialect!(B::dialect(&mut conn), UNFINISHED_CHECKPOINTS, |c, sql| {
            sqlx::query_as::<_, (String, i64)>(sql)
                .fetch_all(&mut *c)
                .await?
        });
        let mut percents = Vec::with_capacity(unfinished.len());
        for (kind, last_id) in unfinished {
            let Ok(entity) = kind.parse::<domain::EntityKind>() else {
                continue;
            };
            let (done, all) = count_up_to::<B>(&mut conn, entity, last_id).await?;
            percents.push((kind, percent(done, all)));
        }
        conn.commit().await?;
        Ok(percents)
    }

    /// `(done, all)` entities of `kind` for a checkpoint at `last_id`.
    pub(crate) async fn entities_up_to(
        &self,
        kind: domain::EntityKind,
        last_id: i64,
    ) -> Result<(i64, i64)> {
        let mut conn = self.acquire().await?;
        record_queries(1);
        let counts = count_up_to::<B>(&mut conn, kind, last_id).await?;
        conn.commit().await?;
        Ok(counts)
    }

    /// The metrics' facts in one transaction: the background refresh costs the database a
    /// handful of statements every few seconds, however often Prometheus scrapes.
    pub(crate) async fn migration_facts(&self) -> Result<MigrationFacts> {
        // Not counted with the queries: the metric counts what requests cost, and this is the
        // background's.
        let mut conn = self.acquire().await?;
        let by_kind = on_dialect!(B::dialect(&mut conn), QUARANTINE_BY_KIND, |c, sql| {
            sqlx::query_as::<_, (String, i64)>(sql)
                .fetch_all(&mut *c)
                .await?
        });
        let verify = on_dialect!(B::dialect(&mut conn), LAST_VERIFY_EPOCH, |c, sql| {
            sqlx::query_as::<_, (f64, i64, i64)>(sql)
                .fetch_optional(&mut *c)
                .await?
        });
        let blocking: i64 = on_dialect!(B::dialect(&mut conn), QUARANTINE_BLOCKING, |c, sql| {
            sqlx::query_scalar(sql).fetch_one(&mut *c).await?
        });
        // Uncounted, as every background read (the query counter is the requests').
        let state = on_dialect!(B::dialect(&mut conn), crate::evidence::STATE, |c, sql| {
            sqlx::query_as::<_, crate::evidence::StateRow>(sql)
                .fetch_one(&mut *c)
                .await?
        })
        .migration_state();
        conn.commit().await?;
        Ok(MigrationFacts {
            quarantine_by_kind: by_kind,
            quarantine_blocking: blocking,
            last_verify_epoch_seconds: verify.map(|(at, _, _)| at),
            last_verify_checked: verify.map(|(_, checked, _)| checked),
            last_verify_drifted: verify.map(|(_, _, drifted)| drifted),
            sync_pending: state.unified_only_writes_pending_sync,
            archived: state.archived,
        })
    }

    pub(crate) async fn unified_for(&self) -> Result<Option<std::time::Duration>> {
        let mut conn = self.acquire().await?;
        let soaked = crate::soak::unified_for::<B>(&mut conn).await?;
        conn.commit().await?;
        Ok(soaked)
    }
}

async fn count_up_to<B: Backend>(
    conn: &mut crate::backend::Conn<B>,
    kind: domain::EntityKind,
    last_id: i64,
) -> Result<(i64, i64)> {
    let sql = match kind {
        domain::EntityKind::Listing => LISTINGS_UP_TO,
        domain::EntityKind::Product => PRODUCTS_UP_TO,
        domain::EntityKind::ProductVariant => VARIANTS_UP_TO,
    };
    Ok(on_dialect!(B::dialect(conn), sql, |c, statement| {
        sqlx::query_as::<_, (i64, i64)>(statement)
            .bind(last_id)
            .fetch_one(&mut *c)
            .await?
    }))
}

impl Storage {
    /// Each unfinished kind's backfill position in per cent of its entities (the metrics').
    pub async fn backfill_percent(&self) -> Result<Vec<(String, f64)>> {
        match &self.0 {
            crate::Backends::Postgres(r) => r.backfill_percent().await,
            crate::Backends::Sqlite(r) => r.backfill_percent().await,
        }
    }

    /// Entities of `kind` at or before a backfill checkpoint at `last_id`: where a resumed
    /// run's progress starts.
    pub async fn entities_up_to(&self, kind: domain::EntityKind, last_id: i64) -> Result<i64> {
        let (done, _) = match &self.0 {
            crate::Backends::Postgres(r) => r.entities_up_to(kind, last_id).await?,
            crate::Backends::Sqlite(r) => r.entities_up_to(kind, last_id).await?,
        };
        Ok(done)
    }

    /// The facts the metrics mirror, read in one transaction.
    pub async fn migration_facts(&self) -> Result<MigrationFacts> {
        match &self.0 {
            crate::Backends::Postgres(r) => r.migration_facts().await,
            crate::Backends::Sqlite(r) => r.migration_facts().await,
        }
    }

    /// The status document. `configured`: the flags of the environment and settings, in force
    /// unless a runtime change overrides them; `database`: how the caller names the database;
    /// `soak`: how long the archive waits after the switch to the unified phase.
    pub async fn status(
        &self,
        configured: Flags,
        database: String,
        soak: std::time::Duration,
    ) -> Result<Status> {
        let stored = self.stored_flags().await?;
        let (flags, flags_source) = match &stored {
            Some(stored) => (
                stored.flags,
                format!(
                    "runtime (set by {} at {})",
                    stored.updated_by, stored.updated_at
                ),
            ),
            None => (configured, "configured".to_owned()),
        };
        let state = self.migration_state().await?;
        let checked = flags.check(&state);
        let rung = Rung::of(&flags);
        let listing = self.quarantine(None, 1).await?;
        let mut backfill = Vec::new();
        for kind in domain::EntityKind::ALL {
            let checkpoint = self.backfill_checkpoint(kind, false).await?;
            let counts = if state.archived {
                None
            } else {
                Some(match &self.0 {
                    crate::Backends::Postgres(r) => {
                        r.entities_up_to(kind, checkpoint.last_id).await?
                    }
                    crate::Backends::Sqlite(r) => {
                        r.entities_up_to(kind, checkpoint.last_id).await?
                    }
                })
            };
            backfill.push(KindProgress {
                kind: checkpoint.entity_type,
                last_id: checkpoint.last_id,
                migrated: checkpoint.migrated,
                quarantined: checkpoint.quarantined,
                completed: checkpoint.completed,
                done: counts.map(|(done, _)| done),
                entities: counts.map(|(_, all)| all),
                percent: counts.map(|(done, all)| percent(done, all)),
            });
        }
        let unified_for = match (checked, &self.0) {
            (Ok(Phase::Unified), crate::Backends::Postgres(r)) => r.unified_for().await?,
            (Ok(Phase::Unified), crate::Backends::Sqlite(r)) => r.unified_for().await?,
            _ => None,
        };
        Ok(Status {
            database,
            phase: checked.ok().map(Phase::as_str),
            guardrail: checked.err().map(|v| format!("{} ({v})", v.rule())),
            flags,
            flags_source,
            rung,
            next: next_step(&flags, rung, &state),
            evidence: evidence(
                &state,
                matches!(checked, Ok(Phase::Unified))
                    .then_some(unified_for.is_some_and(|d| d >= soak)),
            ),
            operation: self.lease_holder().await?,
            backfill,
            throttles: self.throttles().await?,
            quarantine: QuarantineSummary {
                total: listing.total,
                seen_by_users: listing.seen_by_users,
                accepted: listing.accepted,
                by_reason: self.quarantine_by_reason(20).await?,
                blocking_cut_over: self.unsettled_quarantine().await?,
            },
            last_verify: self.last_verify().await?,
            flag_changes: self.flag_audit(FLAG_CHANGES_SHOWN).await?,
            unified_for_seconds: unified_for.map(|d| d.as_secs_f64()),
            archived: state.archived,
            replicas: self
                .replicas()
                .into_iter()
                .map(|r| Replica {
                    name: r.name,
                    state: format!("{:?}", r.state).to_lowercase(),
                    lag_ms: r.lag.map(|lag| lag.as_millis()),
                })
                .collect(),
        })
    }
}

fn percent(done: i64, all: i64) -> f64 {
    if all == 0 {
        100.0
    } else {
        (done as f64 * 1000.0 / all as f64).round() / 10.0
    }
}

/// The next step from where the flags stand, and the rule that refuses it now.
fn next_step(flags: &Flags, rung: Option<Rung>, state: &MigrationState) -> Option<NextStep> {
    if state.archived {
        return None;
    }
    let Some(rung) = rung else {
        return Some(NextStep {
            command: "flags --set",
            to: "a rung of the ladder (the flags in force stand on none)".into(),
            blocked_by: None,
        });
    };
    let Some(target) = rung.next() else {
        return Some(NextStep {
            command: "archive",
            to: "the legacy tables archived".into(),
            blocked_by: None,
        });
    };
    let blocked_by = target
        .flags(flags.shadow_percent)
        .check_change(Some(flags), state)
        .err()
        .map(|violation| Blocker {
            rule: violation.rule(),
            message: violation.to_string(),
        });
    Some(NextStep {
        command: "flags promote",
        to: target.to_string(),
        blocked_by,
    })
}

/// `soaked`: in the unified phase, whether it has served long enough for the archive.
fn evidence(state: &MigrationState, soaked: Option<bool>) -> Vec<Evidence> {
    let mut facts = vec![
        Evidence {
            fact: "backfill_complete",
            met: state.backfill_complete,
            needed_for: "unified reads (the canary)",
            supply: "backfill, begun with dual-write on (flags promote to dual-write first)",
        },
        Evidence {
            fact: "verified_clean",
            met: state.verified_clean,
            needed_for: "unified reads (the canary)",
            supply: "verify (exit 0) after the backfill, dual-write still on",
        },
        Evidence {
            fact: "quarantine_settled",
            met: !state.quarantine_unsettled,
            needed_for: "unified reads without fallback",
            supply: "quarantine, then resolve alias/add-option/move and backfill --retry-quarantine, or quarantine accept",
        },
        Evidence {
            fact: "legacy_in_sync",
            met: !state.unified_only_writes_pending_sync,
            needed_for: "any read from legacy after unified-only writes",
            supply: "sync-legacy (with dual-write on)",
        },
    ];
    if let Some(soaked) = soaked {
        facts.push(Evidence {
            fact: "unified_phase_soaked",
            met: soaked,
            needed_for: "archive",
            supply: "time (archive --dry-run says how long is left), or archive --now --reason",
        });
    }
    facts
}
