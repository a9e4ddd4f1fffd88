//! Model-based: random sequences of operator actions (flag changes through the path the admin
//! API takes, partial and full backfills, verify, sync-legacy, archive, restore, migrate down
//! and up, a restart), each racing a user's write decided under the flags of the moment before.
//! After every step:
//! - every acknowledged write reads back from each store the flags in force read;
//! - no legacy value is lost: every listing keeps its other legacy rows (in the archive while
//!   archived);
//! - the flags in force pass the guardrails, so a restarted replica starts;
//! - with a complete backfill of the current era, dual-write in force and nothing pending,
//!   verify finds legacy = migrated + quarantined (its run is removed again, so the check
//!   grants no evidence);
//! - a value the backfill quarantined and its owner then deleted stays deleted in every store
//!   the flags read.
//!
//! The marketplace also writes the legacy tables itself: its listing save (every row of a car
//! listing deleted and inserted again, with a new year) runs as an action on PostgreSQL, its
//! capture is applied, and the year counts as acknowledged: every store the flags read serves
//! it; while archived the save must fail, naming the service.
//!
//! The operator also resolves the quarantine (accept and take back, an alias, an option, the
//! latest resolution undone, a retry); a year users see and a value no option explains are
//! planted so that it has something to resolve and unified reads without fallback wait for it.
//!
//! `PROPTEST_CASES` sets the number of sequences per backend (default 200 on SQLite; PostgreSQL
//! runs a fifth of them, as each needs a fresh database); `PROPTEST_RNG_SEED` draws other
//! sequences than the fixed default.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use domain::{EntityKind, EntityRef};
use flags::Flags;
use proptest::prelude::*;
use serde_json::json;
use storage::{Storage, StorageError, ValuesChange};

use crate::common::{Backend, Raw, TestDb};
use crate::{LEGACY, UNIFIED, object};

#[derive(Debug, Clone)]
enum Action {
    /// A runtime flag change; the guardrails may refuse it.
    Flags(Flags),
    Backfill {
        max_batches: Option<usize>,
        restart: bool,
    },
    Verify,
    SyncLegacy {
        dry_run: bool,
    },
    Archive,
    RestoreArchive,
    MigrateDownUp,
    /// A new process: reconnects, and records the flags in force as `serve` does at start-up.
    Restart,
    /// The operator's next step of the walk to the archive (README), from where things stand.
    Advance,
    /// The next step of the rollback ladder back to phase 0 (RUNBOOK).
    Retreat,
    /// `quarantine accept --all` (or `unaccept --all`).
    Accept {
        undo: bool,
    },
    /// Resolutions of the quarantine: an alias, an option, the latest one undone, a retry.
    Alias,
    AddOption,
    UndoLatest,
    RetryQuarantine,
    /// The owner deletes the planted value the backfill quarantines (a `PATCH` to null) under
    /// the flags in force.
    DeletePlanted,
    /// The marketplace's own listing save of the n-th car listing with this year, straight on
    /// the legacy table (PostgreSQL), then the capture applied.
    DirectSave(usize, i64),
}

#[derive(Debug, Clone)]
struct Step {
    action: Action,
    /// A PATCH of `year` on the n-th car listing, decided before the action starts.
    write: Option<(usize, i64)>,
}

const YEAR: i64 = 2202;

const PHASE0: Flags = Flags {
    use_unified: false,
    unified_percent: 100,
    fallback: false,
    dual_write: false,
    shadow_percent: 0,
};
const PHASE1: Flags = Flags {
    dual_write: true,
    ..PHASE0
};
const PHASE3: Flags = Flags {
    use_unified: true,
    ..PHASE0
};

const fn canary(percent: u8, fallback: bool) -> Flags {
    Flags {
        use_unified: true,
        unified_percent: percent,
        fallback,
        ..PHASE1
    }
}

fn flag_sets() -> Vec<Flags> {
    let (phase0, phase1, phase3) = (PHASE0, PHASE1, PHASE3);
    vec![
        phase0,
        phase1,
        phase1,
        canary(10, true),
        canary(50, true),
        canary(100, true),
        canary(100, false),
        phase3,
        phase3,
        // Never safe: refused whatever the data says.
        Flags {
            unified_percent: 50,
            ..phase3
        },
        Flags {
            fallback: true,
            ..phase3
        },
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => prop::sample::select(flag_sets()).prop_map(Action::Flags),
        3 => Just(Action::Backfill { max_batches: None, restart: false }),
        1 => (1usize..4).prop_map(|n| Action::Backfill { max_batches: Some(n), restart: false }),
        1 => Just(Action::Backfill { max_batches: None, restart: true }),
        3 => Just(Action::Verify),
        2 => any::<bool>().prop_map(|dry_run| Action::SyncLegacy { dry_run }),
        1 => Just(Action::Archive),
        1 => Just(Action::RestoreArchive),
        1 => Just(Action::MigrateDownUp),
        1 => Just(Action::Restart),
        8 => Just(Action::Advance),
        3 => Just(Action::Retreat),
        1 => any::<bool>().prop_map(|undo| Action::Accept { undo }),
        1 => Just(Action::Alias),
        1 => Just(Action::AddOption),
        1 => Just(Action::UndoLatest),
        1 => Just(Action::RetryQuarantine),
        1 => Just(Action::DeletePlanted),
        1 => (0usize..4, 1990i64..2024).prop_map(|(car, year)| Action::DirectSave(car, year)),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (
        action(),
        proptest::option::weighted(0.7, (0usize..4, 1990i64..2024)),
    )
        .prop_map(|(action, write)| Step { action, write });
    prop::collection::vec(step, 1..24)
}

fn cases(backend: Backend) -> u32 {
    let base = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    match backend {
        Backend::Sqlite => base,
        Backend::Postgres => (base / 5).max(1),
    }
}

/// Refusals and transient failures are answers an operator gets; anything else is a defect.
fn expected(result: Result<(), StorageError>) -> Result<(), TestCaseError> {
    match result {
        Ok(())
        | Err(
            StorageError::Conflict(_)
            | StorageError::Guardrail(_)
            | StorageError::QuarantineUnsettled(_),
        ) => Ok(()),
        Err(err) if err.is_transient() => Ok(()),
        Err(err) => Err(TestCaseError::fail(format!("unexpected error: {err:?}"))),
    }
}

async fn flags_in_force(storage: &Storage) -> Flags {
    storage
        .stored_flags()
        .await
        .expect("stored flags")
        .map_or_else(Flags::default, |stored| stored.flags)
}

async fn backfill(
    storage: &Storage,
    max_batches: Option<usize>,
    restart: bool,
) -> Result<(), StorageError> {
    storage.backfill_definitions().await?;
    let catalog = storage.backfill_catalog().await?;
    let mut batches = 0;
    for kind in EntityKind::ALL {
        let mut checkpoint = storage.backfill_checkpoint(kind, restart).await?;
        while !checkpoint.completed && max_batches.is_none_or(|max| batches < max) {
            // As the command does unpaced: two batches side by side while two more are allowed.
            let committed = if max_batches.is_none_or(|max| batches + 2 <= max) {
                storage
                    .backfill_two_batches(kind, &checkpoint, 10, &catalog)
                    .await?
            } else {
                vec![
                    storage
                        .backfill_batch(kind, &checkpoint, 10, &catalog)
                        .await?,
                ]
            };
            batches += committed.len();
            checkpoint = committed.into_iter().last().expect("a batch committed");
        }
    }
    Ok(())
}

/// The concrete step `Advance` or `Retreat` means now.
async fn next_step(storage: &Storage, action: &Action) -> Result<Option<Action>, StorageError> {
    let state = storage.migration_state().await?;
    let flags = flags_in_force(storage).await;
    let advance = matches!(action, Action::Advance);
    Ok(Some(match (flags.check(&state), advance) {
        (Err(_), _) => return Ok(None),
        (Ok(flags::Phase::Legacy), true) => Action::Flags(PHASE1),
        (Ok(flags::Phase::Legacy), false) => return Ok(None),
        (Ok(flags::Phase::DualWrite), true) if !state.backfill_complete => Action::Backfill {
            max_batches: None,
            restart: false,
        },
        (Ok(flags::Phase::DualWrite), true) if !state.verified_clean => Action::Verify,
        (Ok(flags::Phase::DualWrite), true) => Action::Flags(canary(10, true)),
        (Ok(flags::Phase::DualWrite), false) => Action::Flags(PHASE0),
        (Ok(flags::Phase::Canary), true) if flags.unified_percent < 100 => {
            Action::Flags(canary(100, true))
        }
        // Unified reads without fallback wait for the operator's decision on the quarantine.
        (Ok(flags::Phase::Canary), true) if flags.fallback && state.quarantine_unsettled => {
            Action::Accept { undo: false }
        }
        (Ok(flags::Phase::Canary), true) if flags.fallback => Action::Flags(canary(100, false)),
        (Ok(flags::Phase::Canary), true) => Action::Flags(PHASE3),
        (Ok(flags::Phase::Canary), false) if state.unified_only_writes_pending_sync => {
            Action::SyncLegacy { dry_run: false }
        }
        (Ok(flags::Phase::Canary), false) => Action::Flags(PHASE1),
        (Ok(flags::Phase::Unified), true) => Action::Archive,
        (Ok(flags::Phase::Unified), false) => Action::Flags(canary(100, false)),
        (Ok(flags::Phase::Archived), true) => return Ok(None),
        (Ok(flags::Phase::Archived), false) => Action::RestoreArchive,
    }))
}

/// A value the backfill quarantines (not one of the options), planted on a car listing whose
/// category does not require the attribute: the owner may delete it.
#[derive(Debug, Clone)]
struct Planted {
    listing: i64,
    code: String,
    legacy_id: i64,
}

async fn run(
    storage: &mut Storage,
    db: &TestDb,
    action: &Action,
    planted: &Planted,
) -> Result<(), StorageError> {
    if matches!(action, Action::Advance | Action::Retreat) {
        return match next_step(storage, action).await? {
            Some(step) => Box::pin(run(storage, db, &step, planted)).await,
            None => Ok(()),
        };
    }
    let in_force = flags_in_force(storage).await;
    match action {
        Action::Flags(flags) => {
            let flags = *flags;
            storage
                .change_flags(in_force, "model", |_| flags)
                .await
                .map(drop)
        }
        Action::Backfill {
            max_batches,
            restart,
        } => backfill(storage, *max_batches, *restart).await,
        Action::Verify => storage.verify(13, |_| {}).await.map(drop),
        Action::SyncLegacy { dry_run } => storage
            .sync_legacy(in_force.write_mode(), 7, *dry_run, async |_| {})
            .await
            .map(drop),
        Action::Archive => storage.archive(in_force).await.map(drop),
        Action::RestoreArchive => storage.restore_archive(in_force).await.map(drop),
        Action::MigrateDownUp => {
            storage.migrate_down(1, false).await?;
            storage.migrate().await.map(drop)
        }
        Action::Advance | Action::Retreat => unreachable!("resolved above"),
        Action::Accept { undo } => storage
            .accept_quarantined(
                &storage::quarantine::AcceptFilter::default(),
                true,
                None,
                "model",
                *undo,
            )
            .await
            .map(drop),
        // The planted year of 456 as a spelling of nothing it can mean: refused (422), or an
        // alias of an option when the attribute has one.
        Action::Alias => resolution(
            storage
                .add_alias(
                    "transmission",
                    "poluautomatik",
                    "automatic",
                    "model",
                    in_force.write_mode(),
                    false,
                )
                .await,
        ),
        Action::AddOption => resolution(
            storage
                .add_option(
                    "transmission",
                    "poluautomatik",
                    domain::LocalizedText::new(),
                    "model",
                    in_force.write_mode(),
                    false,
                )
                .await,
        ),
        Action::UndoLatest => match storage.resolutions(1).await?.first() {
            Some(latest) => resolution(
                storage
                    .undo_resolution(latest.id, "model", in_force.write_mode())
                    .await,
            ),
            None => Ok(()),
        },
        Action::DeletePlanted => storage
            .write_values(
                EntityRef::listing(planted.listing),
                ValuesChange::Merge(&object(json!({ planted.code.clone(): null }))),
                in_force.write_mode(),
            )
            .await
            .map(drop),
        // Done before the racing write (see the loop).
        Action::DirectSave(..) => Ok(()),
        Action::RetryQuarantine => {
            let catalog = storage.backfill_catalog().await?;
            for kind in EntityKind::ALL {
                let mut after = 0;
                while let (Some(last), _, _) =
                    storage.retry_quarantined(kind, after, 10, &catalog).await?
                {
                    after = last;
                }
            }
            Ok(())
        }
        Action::Restart => {
            *storage = db.storage().await;
            // `serve` refuses to start on flags that break a guardrail; it notes the others.
            if in_force.check(&storage.migration_state().await?).is_ok() {
                storage.note_write_mode(in_force.write_mode()).await?;
            }
            Ok(())
        }
    }
}

/// The monolith's save of a car listing: all its rows deleted and inserted again in one
/// transaction, the year changed (added when it had none). Returns the year when the save
/// committed and its capture was applied; `None` on SQLite (its file has no other writer).
/// While archived the save must fail, naming the service.
async fn direct_save(
    storage: &Storage,
    db: &TestDb,
    listing: i64,
    year: i64,
) -> Result<Option<i64>, TestCaseError> {
    if db.backend == Backend::Sqlite {
        return Ok(None);
    }
    let archived = storage.migration_state().await.expect("state").archived;
    let save = format!(
        "BEGIN;
         CREATE TEMP TABLE keep ON COMMIT DROP AS
             SELECT * FROM listing_attribute_values WHERE listing_id = {listing};
         DELETE FROM listing_attribute_values WHERE listing_id = {listing};
         INSERT INTO listing_attribute_values
             (listing_id, attribute_id, text_value, numeric_value, boolean_value, json_value, unit)
         SELECT listing_id, attribute_id,
                CASE WHEN attribute_id = {YEAR} THEN NULL ELSE text_value END,
                CASE WHEN attribute_id = {YEAR} THEN {year} ELSE numeric_value END,
                boolean_value, json_value, unit
         FROM keep
         UNION ALL
         SELECT {listing}, {YEAR}, NULL, {year}, NULL, NULL, NULL
         WHERE NOT EXISTS (SELECT 1 FROM keep WHERE attribute_id = {YEAR});
         COMMIT;"
    );
    let pool = sqlx::PgPool::connect(&db.sql_url()).await.expect("pool");
    let saved = sqlx::raw_sql(&save).execute(&pool).await;
    pool.close().await;
    if archived {
        let refused = saved.expect_err("a save to an archived table must fail");
        prop_assert!(
            refused.to_string().contains("unified attributes service"),
            "the refusal names the service: {refused}"
        );
        return Ok(None);
    }
    saved.expect("the marketplace's save commits");
    while storage.apply_captured(100).await.expect("capture applied") > 0 {}
    COVERAGE.direct_saves.fetch_add(1, Ordering::Relaxed);
    Ok(Some(year))
}

/// A resolution's refusals for its input (no such attribute or option) are answers too.
fn resolution<T>(result: Result<T, StorageError>) -> Result<(), StorageError> {
    match result {
        Ok(_) | Err(StorageError::InvalidValues(_) | StorageError::NotFound { .. }) => Ok(()),
        Err(err) => Err(err),
    }
}

async fn year_in(
    storage: &Storage,
    listing: i64,
    route: storage::ReadRoute,
) -> Option<serde_json::Value> {
    storage
        .entity_values(EntityRef::listing(listing), route)
        .await
        .expect("read")
        .data
        .get("year")
        .map(|typed| typed.value.to_json())
}

/// Legacy rows other than `year` and the planted value, per listing, wherever the legacy
/// table is.
async fn other_legacy_rows(
    db: &TestDb,
    raw: &Raw,
    archived: bool,
    planted: &Planted,
) -> BTreeMap<i64, i64> {
    let table = match (archived, db.backend) {
        (false, _) => "listing_attribute_values",
        (true, Backend::Postgres) => "legacy_archive.listing_attribute_values",
        (true, Backend::Sqlite) => "legacy_archive_listing_attribute_values",
    };
    let rows = raw
        .texts(&format!(
            "SELECT CAST(listing_id AS TEXT) || ':' || CAST(COUNT(*) AS TEXT) FROM {table}
             WHERE attribute_id <> {YEAR}
               AND NOT (listing_id = {} AND attribute_id = {})
             GROUP BY listing_id",
            planted.listing, planted.legacy_id
        ))
        .await;
    rows.into_iter()
        .flatten()
        .filter_map(|row| {
            let (listing, count) = row.split_once(':')?;
            Some((listing.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

async fn check_invariants(
    storage: &Storage,
    db: &TestDb,
    raw: &Raw,
    acked: &HashMap<i64, i64>,
    baseline: &BTreeMap<i64, i64>,
    (planted, planted_deleted): (&Planted, bool),
    step: usize,
) -> Result<(), TestCaseError> {
    let flags = flags_in_force(storage).await;
    let state = storage.migration_state().await.expect("state");
    // Whatever happened, the flags in force still pass the guardrails: a restarted replica
    // starts (it refuses flags that break one).
    prop_assert!(
        flags.check(&state).is_ok(),
        "step {}: the flags in force {:?} now break {:?} ({:?})",
        step,
        flags,
        flags.check(&state),
        state
    );
    for (&listing, &year) in acked {
        if flags.use_unified && flags.unified_percent > 0 {
            prop_assert_eq!(
                year_in(storage, listing, UNIFIED).await,
                Some(json!(year)),
                "step {}: unified lost listing {}'s acknowledged write ({:?}, {:?})",
                step,
                listing,
                flags,
                state
            );
        }
        if flags.reads_legacy() && !state.archived {
            prop_assert_eq!(
                year_in(storage, listing, LEGACY).await,
                Some(json!(year)),
                "step {}: legacy lost listing {}'s acknowledged write ({:?}, {:?})",
                step,
                listing,
                flags,
                state
            );
        }
    }
    // A value the owner deleted after the backfill quarantined it stays deleted in every store
    // the flags read — also after a rollback's sync-legacy.
    if planted_deleted {
        let entity = EntityRef::listing(planted.listing);
        if flags.use_unified && flags.unified_percent > 0 {
            let unified = storage.entity_values(entity, UNIFIED).await.expect("read");
            prop_assert!(
                !unified.data.contains_key(&planted.code),
                "step {}: unified serves the deleted {}",
                step,
                planted.code
            );
        }
        if flags.reads_legacy() && !state.archived {
            let legacy = storage.entity_values(entity, LEGACY).await.expect("read");
            prop_assert!(
                !legacy.data.contains_key(&planted.code),
                "step {}: legacy serves the {} the owner deleted ({:?}, {:?})",
                step,
                planted.code,
                flags,
                state
            );
        }
    }
    prop_assert_eq!(
        &other_legacy_rows(db, raw, state.archived, planted).await,
        baseline,
        "step {}: a legacy value was lost",
        step
    );
    if flags.dual_write
        && state.backfill_complete
        && !state.unified_only_writes_pending_sync
        && !state.archived
    {
        let report = storage.verify(13, |_| {}).await.expect("verify");
        raw.execute("DELETE FROM verify_runs WHERE id = (SELECT MAX(id) FROM verify_runs)")
            .await;
        prop_assert!(
            report.is_clean(),
            "step {}: legacy ≠ migrated + quarantined: {:?}",
            step,
            report.drift
        );
    }
    Ok(())
}

async fn run_sequence(backend: Backend, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let db = TestDb::fresh(backend).await;
    let mut storage = db.storage().await;
    let data = storage::demo::Dataset::marketplace(40, 5);
    storage.seed_legacy(&data).await.expect("seed");
    let cars: Vec<i64> = data
        .listings
        .iter()
        .filter(|l| l.category_id == 1311)
        .map(|l| l.id)
        .take(4)
        .collect();
    prop_assume!(cars.len() == 4);
    let raw = db.raw().await;
    let optional = data
        .schema(1311)
        .attributes
        .into_iter()
        .find(|a| {
            !a.is_required
                && a.attribute.attribute_type.uses_options()
                && !a.attribute.options.is_empty()
        })
        .expect("an optional attribute with options on cars");
    let planted = Planted {
        listing: cars[1],
        code: optional.attribute.code.clone(),
        legacy_id: optional.attribute.id,
    };
    raw.execute(&format!(
        "DELETE FROM listing_attribute_values WHERE listing_id = {0} AND attribute_id = {1};
         INSERT INTO listing_attribute_values (listing_id, attribute_id, text_value)
         VALUES ({0}, {1}, 'not-one-of-the-options')",
        planted.listing, planted.legacy_id
    ))
    .await;
    // A year users see that unified cannot hold: quarantined by the backfill, it holds up
    // unified reads without fallback until accepted or written over.
    raw.execute(&format!(
        "UPDATE listing_attribute_values SET text_value = NULL, numeric_value = 456
         WHERE listing_id = {} AND attribute_id = {YEAR}",
        cars[0]
    ))
    .await;
    let baseline = other_legacy_rows(&db, &raw, false, &planted).await;
    let mut planted_deleted = false;
    let mut acked: HashMap<i64, i64> = HashMap::new();
    for (n, step) in steps.iter().enumerate() {
        // The write's mode is decided from the flags before the action, as a request would.
        let decided = flags_in_force(&storage).await.write_mode();
        let writer = storage.clone();
        let write = async {
            match step.write {
                Some((car, year)) => Some((
                    cars[car],
                    year,
                    writer
                        .write_values(
                            EntityRef::listing(cars[car]),
                            ValuesChange::Merge(&object(json!({"year": year}))),
                            decided,
                        )
                        .await,
                )),
                None => None,
            }
        };
        // The marketplace's save and a user's write of the same listing race with no order
        // the model could know: the save is left out when they would meet.
        if let (Action::DirectSave(car, year), write) = (&step.action, step.write)
            && write.is_none_or(|(written, _)| written != *car)
            && let Some(saved) = direct_save(&storage, &db, cars[*car], *year).await?
        {
            acked.insert(cars[*car], saved);
        }
        let (outcome, written) =
            tokio::join!(run(&mut storage, &db, &step.action, &planted), write);
        if matches!(step.action, Action::DeletePlanted) && outcome.is_ok() {
            planted_deleted = true;
        }
        expected(outcome)?;
        if let Some((listing, year, result)) = written {
            match result {
                Ok(_) => {
                    acked.insert(listing, year);
                }
                // Refused (values the schema rejects, such as a defect's missing required
                // value) or transient: nothing written, nothing acknowledged.
                Err(StorageError::InvalidValues(_)) => {}
                // The schema changed under it (reverting a migration under a running service
                // is the operator's risk): it failed whole, nothing to acknowledge.
                Err(_) if matches!(step.action, Action::MigrateDownUp) => {}
                Err(err) => expected(Err(err))?,
            }
        }
        check_invariants(
            &storage,
            &db,
            &raw,
            &acked,
            &baseline,
            (&planted, planted_deleted),
            n,
        )
        .await?;
        COVERAGE.note(&storage).await;
    }
    Ok(())
}

/// Steps that ended in the deeper states, counted so a run that never reached them fails
/// instead of passing on the easy states alone.
struct Coverage {
    unified: AtomicUsize,
    pending_sync: AtomicUsize,
    archived: AtomicUsize,
    /// The marketplace's saves that committed and were captured (PostgreSQL).
    direct_saves: AtomicUsize,
}

static COVERAGE: Coverage = Coverage {
    unified: AtomicUsize::new(0),
    pending_sync: AtomicUsize::new(0),
    archived: AtomicUsize::new(0),
    direct_saves: AtomicUsize::new(0),
};

impl Coverage {
    async fn note(&self, storage: &Storage) {
        let state = storage.migration_state().await.expect("state");
        let flags = flags_in_force(storage).await;
        if flags.check(&state) == Ok(flags::Phase::Unified) {
            self.unified.fetch_add(1, Ordering::Relaxed);
        }
        if state.unified_only_writes_pending_sync {
            self.pending_sync.fetch_add(1, Ordering::Relaxed);
        }
        if state.archived {
            self.archived.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn check_sequences(backend: Backend) {
    let defaults = ProptestConfig::default();
    let config = ProptestConfig {
        cases: cases(backend),
        failure_persistence: None,
        // The same sequences on every run unless `PROPTEST_RNG_SEED` asks for others, so CI
        // tells about the code, not about the draw.
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            defaults.rng_seed
        } else {
            proptest::test_runner::RngSeed::Fixed(20261130)
        },
        ..defaults
    };
    proptest!(config, |(steps in steps())| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run_sequence(backend, steps))?;
    });
}

#[test]
fn random_operator_sequences_racing_writes_lose_nothing_on_sqlite() {
    check_sequences(Backend::Sqlite);
    if cases(Backend::Sqlite) >= 100 {
        let reached = |counter: &AtomicUsize| counter.load(Ordering::Relaxed);
        assert!(
            reached(&COVERAGE.unified) > 0
                && reached(&COVERAGE.pending_sync) > 0
                && reached(&COVERAGE.archived) > 0,
            "the sequences never reached phase 3, a pending reverse sync or the archive: \
             unified {}, pending {}, archived {}",
            reached(&COVERAGE.unified),
            reached(&COVERAGE.pending_sync),
            reached(&COVERAGE.archived)
        );
    }
}

#[test]
fn random_operator_sequences_racing_writes_lose_nothing_on_postgres() {
    check_sequences(Backend::Postgres);
    assert!(
        COVERAGE.direct_saves.load(Ordering::Relaxed) > 0,
        "no sequence ran the marketplace's own save"
    );
}
