//! The operator's mistakes and the races of a migration, on both backends: each is refused
//! with a clear message, or done with nothing lost.

use std::time::Duration;

use domain::{EntityKind, EntityRef};
use flags::{Flags, GuardrailViolation, WriteMode};
use serde_json::json;
use storage::{PoolSettings, Storage, StorageError};

use crate::common::{Backend, TestDb, backfill_and_verify, run_backfill};
use crate::{LEGACY, UNIFIED, car_listing, dataset, object};

conformance_in!(
    sync_legacy_with_nothing_pending_changes_nothing_in_any_phase,
    sync_legacy_merges_and_keeps_what_unified_cannot_hold,
    unified_reads_need_a_backfill_under_dual_write_then_a_clean_verify,
    going_back_to_phase_0_voids_the_evidence_and_the_next_backfill_starts_a_new_pass,
    backfill_is_refused_over_unified_only_writes,
    a_write_keeps_legacy_rows_it_cannot_read_and_rows_outside_the_schema,
    a_write_decided_before_a_flag_change_commits_under_the_flags_in_force,
    migrate_down_refuses_to_drop_tables_that_hold_rows,
    a_binary_starts_beside_newer_additive_migrations_and_refuses_others,
    a_unified_only_write_during_sync_legacy_keeps_the_sync_pending,
    throttle_changes_racing_each_other_keep_both,
    sync_legacy_leaves_documents_nobody_wrote_byte_identical_and_keeps_the_marketplaces_spelling,
    an_option_unified_values_still_choose_cannot_be_dropped,
    a_value_legacy_refuses_keeps_the_sync_pending_and_the_rest_goes_through,
    look_alike_aliases_and_options_are_refused_and_wide_or_invisible_spellings_mean_their_option,
);

const CANARY: Flags = Flags {
    use_unified: true,
    unified_percent: 10,
    fallback: true,
    dual_write: true,
    shadow_percent: 0,
};

const PHASE1: Flags = Flags {
    dual_write: true,
    ..PHASE0
};
const PHASE0: Flags = Flags {
    use_unified: false,
    unified_percent: 100,
    fallback: false,
    dual_write: false,
    shadow_percent: 0,
};
const CANARY_100: Flags = Flags {
    unified_percent: 100,
    ..CANARY
};
const PHASE3: Flags = Flags {
    use_unified: true,
    ..PHASE0
};
/// Back from phase 3: dual-write on, every read still unified, no fallback.
const DUAL_WRITE_BACK_ON: Flags = Flags {
    fallback: false,
    ..CANARY_100
};

/// The operator's walk to phase 3: dual-write, a backfill and a clean verify, every read on
/// unified, dual-write off.
async fn walk_to_unified(storage: &Storage) {
    set_flags(storage, PHASE1).await.expect("phase 1");
    backfill_and_verify(storage).await;
    set_flags(storage, CANARY_100)
        .await
        .expect("phase 2 at 100 %");
    set_flags(storage, PHASE3).await.expect("phase 3");
}

async fn seeded(db: &TestDb) -> (Storage, storage::demo::Dataset) {
    let storage = db.storage().await;
    let data = dataset();
    storage.seed_legacy(&data).await.expect("seed legacy");
    (storage, data)
}

async fn set_flags(storage: &Storage, flags: Flags) -> Result<flags::Phase, StorageError> {
    storage
        .change_flags(Flags::default(), "test", |_| flags)
        .await
        .map(|change| change.phase)
}

fn refused_by(result: Result<flags::Phase, StorageError>, rule: GuardrailViolation) {
    match result {
        Err(StorageError::Guardrail(violation)) => assert_eq!(violation, rule),
        other => panic!("expected {rule:?}, got {other:?}"),
    }
}

fn conflict<T: std::fmt::Debug>(result: Result<T, StorageError>) -> String {
    match result {
        Err(StorageError::Conflict(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn legacy_rows(db: &TestDb) -> i64 {
    db.raw()
        .await
        .count("SELECT COUNT(*) FROM listing_attribute_values")
        .await
}

async fn sync_legacy_with_nothing_pending_changes_nothing_in_any_phase(db: TestDb) {
    let (storage, _) = seeded(&db).await;
    set_flags(&storage, PHASE1).await.expect("phase 1");
    let before = legacy_rows(&db).await;
    // Mid-backfill (the first operator mistake): nothing is pending, so nothing is touched.
    run_backfill(&storage, &[EntityKind::Listing], 10, false, Some(2)).await;
    let report = storage
        .sync_legacy(WriteMode::Dual, 10, false, async |_| {})
        .await
        .expect("sync");
    assert!(report.nothing_to_sync, "{report:?}");
    assert_eq!(legacy_rows(&db).await, before, "legacy kept every row");
    // After a complete backfill, with quarantined values (the second mistake): the same.
    run_backfill(&storage, &EntityKind::ALL, 25, false, None).await;
    let quarantined = db
        .raw()
        .await
        .count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'")
        .await;
    assert!(quarantined > 0, "the demo's defects are quarantined");
    let report = storage
        .sync_legacy(WriteMode::Dual, 10, false, async |_| {})
        .await
        .expect("sync");
    assert!(report.nothing_to_sync && report.entities == 0, "{report:?}");
    assert_eq!(
        legacy_rows(&db).await,
        before,
        "quarantined legacy values stay"
    );
}

async fn sync_legacy_merges_and_keeps_what_unified_cannot_hold(db: TestDb) {
    let (storage, data) = seeded(&db).await;
    walk_to_unified(&storage).await;
    let car = car_listing(&data);
    let raw = db.raw().await;
    let others = format!("SELECT COUNT(*) FROM listing_attribute_values WHERE listing_id <> {car}");
    let other_rows = raw.count(&others).await;
    storage
        .write_values(
            EntityRef::listing(car),
            storage::ValuesChange::Merge(&object(json!({"year": 2011, "mileage": null}))),
            WriteMode::UnifiedOnly,
        )
        .await
        .expect("unified-only write");
    assert!(
        storage
            .migration_state()
            .await
            .expect("state")
            .unified_only_writes_pending_sync
    );
    set_flags(&storage, DUAL_WRITE_BACK_ON)
        .await
        .expect("dual-write back on, reads still unified");

    let dry = storage
        .sync_legacy(WriteMode::Dual, 7, true, async |_| {})
        .await
        .expect("dry run");
    let listings = dry.kinds["listing"].clone();
    assert!(dry.dry_run && !dry.nothing_to_sync, "{dry:?}");
    assert_eq!((listings.updated, listings.deleted), (1, 1), "{dry:?}");
    assert!(
        listings.kept > 0,
        "quarantined and unreadable rows are kept: {dry:?}"
    );
    assert!(
        storage
            .migration_state()
            .await
            .expect("state")
            .unified_only_writes_pending_sync,
        "a dry run changes nothing"
    );

    let synced = storage
        .sync_legacy(WriteMode::Dual, 7, false, async |_| {})
        .await
        .expect("sync");
    assert!(synced.complete, "{synced:?}");
    assert_eq!(
        synced.kinds["listing"], listings,
        "the dry run said what the sync did"
    );
    assert_eq!(
        raw.count(&others).await,
        other_rows,
        "no other listing lost a row"
    );
    let legacy = storage
        .entity_values(EntityRef::listing(car), LEGACY)
        .await
        .expect("legacy")
        .data;
    let unified = storage
        .entity_values(EntityRef::listing(car), UNIFIED)
        .await
        .expect("unified")
        .data;
    assert_eq!(legacy, unified, "the unified-only write reached legacy");
    assert!(
        !storage
            .migration_state()
            .await
            .expect("state")
            .unified_only_writes_pending_sync
    );
    let again = storage
        .sync_legacy(WriteMode::Dual, 7, false, async |_| {})
        .await
        .expect("second sync");
    assert!(again.nothing_to_sync, "{again:?}");
}

async fn unified_reads_need_a_backfill_under_dual_write_then_a_clean_verify(db: TestDb) {
    let (storage, _) = seeded(&db).await;
    // The third mistake: unified reads with nothing backfilled.
    refused_by(
        set_flags(
            &storage,
            Flags {
                use_unified: true,
                unified_percent: 100,
                ..Flags::default()
            },
        )
        .await,
        GuardrailViolation::UnifiedReadsBeforeBackfill,
    );
    refused_by(
        set_flags(&storage, CANARY).await,
        GuardrailViolation::UnifiedReadsBeforeBackfill,
    );
    // A backfill run before dual-write was on is no evidence.
    run_backfill(&storage, &EntityKind::ALL, 25, false, None).await;
    assert!(storage.verify(25, |_| {}).await.expect("verify").is_clean());
    set_flags(&storage, PHASE1).await.expect("phase 1");
    refused_by(
        set_flags(&storage, CANARY).await,
        GuardrailViolation::UnifiedReadsBeforeBackfill,
    );
    // Half a backfill is no evidence either.
    run_backfill(
        &storage,
        &[EntityKind::Listing, EntityKind::Product],
        25,
        false,
        None,
    )
    .await;
    refused_by(
        set_flags(&storage, CANARY).await,
        GuardrailViolation::UnifiedReadsBeforeBackfill,
    );
    run_backfill(&storage, &EntityKind::ALL, 25, false, None).await;
    refused_by(
        set_flags(&storage, CANARY).await,
        GuardrailViolation::UnifiedReadsBeforeVerify,
    );
    assert!(storage.verify(25, |_| {}).await.expect("verify").is_clean());
    assert_eq!(
        set_flags(&storage, CANARY).await.expect("canary"),
        flags::Phase::Canary
    );
    // The audit names the rule that refused nothing here, and no refused change was stored.
    assert_eq!(storage.flag_audit(10).await.expect("audit").len(), 2);
}

async fn going_back_to_phase_0_voids_the_evidence_and_the_next_backfill_starts_a_new_pass(
    db: TestDb,
) {
    let (storage, _) = seeded(&db).await;
    set_flags(&storage, PHASE1).await.expect("phase 1");
    backfill_and_verify(&storage).await;
    let first = storage
        .backfill_checkpoint(EntityKind::Listing, false)
        .await
        .expect("checkpoint");
    assert!(first.completed && first.era.is_some(), "{first:?}");
    set_flags(&storage, Flags::default())
        .await
        .expect("phase 0: a legitimate rollback");
    set_flags(&storage, PHASE1).await.expect("phase 1 again");
    refused_by(
        set_flags(&storage, CANARY).await,
        GuardrailViolation::UnifiedReadsBeforeBackfill,
    );
    let next = storage
        .backfill_checkpoint(EntityKind::Listing, false)
        .await
        .expect("checkpoint");
    assert!(!next.completed && next.last_id == 0, "a new pass: {next:?}");
    backfill_and_verify(&storage).await;
    let renewed = storage
        .backfill_checkpoint(EntityKind::Listing, false)
        .await
        .expect("checkpoint");
    assert!(
        renewed.era > first.era,
        "a pass of the new era: {renewed:?} after {first:?}"
    );
    set_flags(&storage, CANARY)
        .await
        .expect("canary with new evidence");
}

async fn backfill_is_refused_over_unified_only_writes(db: TestDb) {
    let (storage, data) = seeded(&db).await;
    walk_to_unified(&storage).await;
    // Reads and writes are unified-only: a backfill would overwrite them, written or not yet.
    assert!(conflict(storage.backfill_definitions().await).contains("turn dual-write on first"));
    let car = EntityRef::listing(car_listing(&data));
    let written = storage
        .write_values(
            car,
            storage::ValuesChange::Merge(&object(json!({"year": 2012}))),
            WriteMode::UnifiedOnly,
        )
        .await
        .expect("unified-only write")
        .data;
    set_flags(&storage, DUAL_WRITE_BACK_ON)
        .await
        .expect("dual-write back on");
    // The fourth mistake: `backfill --restart` after unified-only writes.
    assert!(conflict(storage.backfill_definitions().await).contains("run sync-legacy first"));
    let restart = storage
        .backfill_checkpoint(EntityKind::Listing, true)
        .await
        .expect("checkpoint");
    let catalog = storage.backfill_catalog().await.expect("catalog");
    // Retrying the quarantine overwrites unified values too: refused alike.
    assert!(
        conflict(
            storage
                .retry_quarantined(EntityKind::Listing, 0, 100, &catalog)
                .await
        )
        .contains("run sync-legacy first")
    );
    assert!(
        conflict(
            storage
                .backfill_batch(EntityKind::Listing, &restart, 100, &catalog)
                .await
        )
        .contains("run sync-legacy first")
    );
    let unified = storage
        .entity_values(car, UNIFIED)
        .await
        .expect("unified")
        .data;
    assert_eq!(unified, written, "the unified-only write survived");
}

async fn a_write_keeps_legacy_rows_it_cannot_read_and_rows_outside_the_schema(db: TestDb) {
    let (storage, data) = seeded(&db).await;
    let car = car_listing(&data);
    let raw = db.raw().await;
    // `mileage` (2203) stored as text nobody can read, and `brand` (2101, electronics) bound
    // nowhere in the car's category chain.
    raw.execute(&format!(
        "DELETE FROM listing_attribute_values WHERE listing_id = {car} AND attribute_id IN (2203, 2101);
         INSERT INTO listing_attribute_values (listing_id, attribute_id, text_value, value_type)
         VALUES ({car}, 2203, 'n/a', 'text'), ({car}, 2101, 'Samsung', 'text')"
    ))
    .await;
    let kept = format!(
        "SELECT COUNT(*) FROM listing_attribute_values WHERE listing_id = {car}
         AND ((attribute_id = 2203 AND text_value = 'n/a') OR (attribute_id = 2101 AND text_value = 'Samsung'))"
    );
    for mode in [WriteMode::LegacyOnly, WriteMode::Dual] {
        let patched = storage
            .write_values(
                EntityRef::listing(car),
                storage::ValuesChange::Merge(&object(json!({"year": 2013}))),
                mode,
            )
            .await
            .unwrap_or_else(|err| panic!("{mode:?}: a PATCH with an unbound legacy row: {err}"));
        assert_eq!(patched.data["year"].value.to_json(), json!(2013));
        assert_eq!(raw.count(&kept).await, 2, "{mode:?}: PATCH kept both rows");
    }
    let current = storage
        .entity_values(EntityRef::listing(car), LEGACY)
        .await
        .expect("legacy")
        .data;
    let mut replacement = serde_json::Map::new();
    for (code, typed) in current.iter().filter(|(code, _)| *code != "brand") {
        replacement.insert(code.clone(), typed.value.to_json());
    }
    replacement.insert("year".into(), json!(2014));
    storage
        .write_values(
            EntityRef::listing(car),
            storage::ValuesChange::Replace(&replacement),
            WriteMode::Dual,
        )
        .await
        .expect("PUT");
    assert_eq!(
        raw.count(&format!(
            "SELECT COUNT(*) FROM listing_attribute_values WHERE listing_id = {car} AND attribute_id = 2203 AND text_value = 'n/a'"
        ))
        .await,
        1,
        "PUT kept the row it cannot read"
    );
}

async fn a_write_decided_before_a_flag_change_commits_under_the_flags_in_force(db: TestDb) {
    let (storage, data) = seeded(&db).await;
    let car = EntityRef::listing(car_listing(&data));
    let write = |year: i64, mode: WriteMode| {
        let storage = storage.clone();
        async move {
            storage
                .write_values(
                    car,
                    storage::ValuesChange::Merge(&object(json!({"year": year}))),
                    mode,
                )
                .await
        }
    };
    set_flags(&storage, PHASE1).await.expect("phase 1");
    // A replica that has not heard of phase 1 yet decides a legacy-only write.
    write(2015, WriteMode::LegacyOnly)
        .await
        .expect("redone as a dual-write");
    let unified = storage
        .entity_values(car, UNIFIED)
        .await
        .expect("unified")
        .data;
    assert_eq!(
        unified["year"].value.to_json(),
        json!(2015),
        "it reached unified too"
    );
    backfill_and_verify(&storage).await;
    set_flags(&storage, CANARY)
        .await
        .expect("the evidence survived that write");
    set_flags(&storage, CANARY_100).await.expect("100 %");
    set_flags(&storage, PHASE3).await.expect("phase 3");
    // Held between its decision (phase 3: unified only) and its commit while ops go back to
    // dual-write: it commits as a dual-write, so legacy is not left behind.
    set_flags(&storage, DUAL_WRITE_BACK_ON)
        .await
        .expect("dual-write back on");
    write(2016, WriteMode::UnifiedOnly)
        .await
        .expect("redone as a dual-write");
    let legacy = storage
        .entity_values(car, LEGACY)
        .await
        .expect("legacy")
        .data;
    assert_eq!(
        legacy["year"].value.to_json(),
        json!(2016),
        "it reached legacy too"
    );
    assert!(
        !storage
            .migration_state()
            .await
            .expect("state")
            .unified_only_writes_pending_sync,
        "no unified-only write committed"
    );
}

async fn migrate_down_refuses_to_drop_tables_that_hold_rows(db: TestDb) {
    let (storage, _) = seeded(&db).await;
    // A run is recorded whatever it found (nothing is backfilled: it finds drift).
    storage.verify(25, |_| {}).await.expect("verify");
    // Thirteen steps: the archive's soak waiver (migration 17, a column of the manifests),
    // the change feed (16, empty), the monolith's source map (15,
    // empty), the quarantine's acceptance (14, nothing quarantined), the bulk
    // operations' lease (13), their throttles (12) and the environment's flags last seen (11),
    // bookkeeping all, dropped freely; the owners (10, the marketplace's: nothing dropped), the quarantine's
    // resolutions (9, empty), the option translations (8, legacy: nothing dropped), the phases'
    // evidence (7), the archive manifests (6, empty) and the verify runs (5).
    let message = conflict(storage.migrate_down(13, false).await);
    assert!(
        message.contains("migration_state")
            && message.contains("verify_runs")
            && !message.contains("archive_manifests")
            && !message.contains("attribute_option_aliases")
            && message.contains("--allow-data-loss"),
        "{message}"
    );
    assert_eq!(
        storage.pending_migrations().await.expect("pending"),
        0,
        "nothing reverted"
    );
    // An operator's alias and its record are data too.
    storage
        .add_alias(
            "transmission",
            "poluautomatik",
            "automatic",
            "ops",
            WriteMode::LegacyOnly,
            false,
        )
        .await
        .expect("an alias");
    let message = conflict(storage.migrate_down(9, false).await);
    assert!(
        message.contains("attribute_option_aliases") && message.contains("quarantine_resolutions"),
        "{message}"
    );
    // Set flags hold rows too: the audit and the flags in force.
    set_flags(&storage, PHASE1).await.expect("phase 1");
    let message = conflict(storage.migrate_down(15, false).await);
    assert!(message.contains("flag_audit"), "{message}");
}

/// A replica that has not heard of dual-write yet (its flags come from its environment) commits
/// a unified-only write while `sync-legacy` runs, after the sync passed that listing: the sync
/// must not clear "pending", and the next one carries the write to legacy.
async fn a_unified_only_write_during_sync_legacy_keeps_the_sync_pending(db: TestDb) {
    let (storage, data) = seeded(&db).await;
    storage
        .note_write_mode(WriteMode::Dual)
        .await
        .expect("phase 1 from the environment");
    backfill_and_verify(&storage).await;
    let car = EntityRef::listing(car_listing(&data));
    unified_only_year(&storage, car, 2018).await;
    // Between two batches of the sync (after the car's batch), on a connection of its own.
    let url = db.url.clone();
    let mut written = false;
    let report = storage
        .sync_legacy(WriteMode::Dual, 5, false, async |_| {
            if !written {
                written = true;
                let replica = Storage::connect(&url, PoolSettings::new(1))
                    .await
                    .expect("replica");
                unified_only_year(&replica, car, 2019).await;
            }
        })
        .await
        .expect("sync");
    assert!(
        !report.complete,
        "a unified-only write committed during the sync: {report:?}"
    );
    assert!(
        storage
            .migration_state()
            .await
            .expect("state")
            .unified_only_writes_pending_sync
    );
    let again = storage
        .sync_legacy(WriteMode::Dual, 5, false, async |_| {})
        .await
        .expect("second sync");
    assert!(again.complete, "{again:?}");
    let legacy = storage
        .entity_values(car, LEGACY)
        .await
        .expect("legacy")
        .data;
    assert_eq!(
        legacy["year"].value.to_json(),
        json!(2019),
        "the late write reached legacy"
    );
}

async fn unified_only_year(storage: &Storage, car: EntityRef, year: i64) {
    storage
        .write_values(
            car,
            storage::ValuesChange::Merge(&object(json!({"year": year}))),
            WriteMode::UnifiedOnly,
        )
        .await
        .expect("unified-only write");
}

/// Blue/green: the database holds a migration this binary does not know, as when the green
/// binary migrated and a blue pod restarts.
async fn a_binary_starts_beside_newer_additive_migrations_and_refuses_others(db: TestDb) {
    let (storage, _) = seeded(&db).await;
    let applied = |version: i64, description: &str| {
        let checksum = match db.backend {
            Backend::Postgres => "'\\x00'::bytea",
            Backend::Sqlite => "X'00'",
        };
        format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ({version}, '{description}', true, {checksum}, 1)"
        )
    };
    let raw = db.raw().await;
    raw.execute(&applied(20991231000001, "expand add a column"))
        .await;
    storage
        .migrate()
        .await
        .expect("an additive newer migration is no obstacle");
    assert!(
        storage.ready().await.expect("ready"),
        "ready: every migration it knows is applied"
    );
    raw.execute(&applied(20991231000002, "drop the legacy mirror"))
        .await;
    let refusal = conflict(storage.migrate().await);
    assert!(
        refusal.contains("20991231000002 (drop the legacy mirror)")
            && !refusal.contains("20991231000001"),
        "{refusal}"
    );
}

/// PostgreSQL only: a write queued behind a row lock gives up after `lock_timeout` with a
/// transient error (the API answers 503 with Retry-After), instead of waiting for the lock.
#[tokio::test]
async fn a_write_behind_a_held_row_lock_fails_fast_as_transient() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let (_, data) = seeded(&db).await;
    let car = car_listing(&data);
    let storage = Storage::connect(
        &db.url,
        PoolSettings {
            lock_timeout: Duration::from_millis(200),
            ..PoolSettings::new(2)
        },
    )
    .await
    .expect("connect");
    let holder = sqlx::PgPool::connect(&db.sql_url()).await.expect("holder");
    let mut held = holder.begin().await.expect("begin");
    sqlx::query(&format!(
        "SELECT id FROM marketplace_listings WHERE id = {car} FOR UPDATE"
    ))
    .execute(&mut *held)
    .await
    .expect("lock");
    // The lock is released only after the write has answered: an answer proves it gave up.
    let refused = storage
        .write_values(
            EntityRef::listing(car),
            storage::ValuesChange::Merge(&object(json!({"year": 2017}))),
            WriteMode::LegacyOnly,
        )
        .await
        .expect_err("the row is locked");
    assert!(refused.is_transient(), "{refused:?}");
    held.rollback().await.expect("release");
    storage
        .write_values(
            EntityRef::listing(car),
            storage::ValuesChange::Merge(&object(json!({"year": 2017}))),
            WriteMode::LegacyOnly,
        )
        .await
        .expect("the same write once the lock is gone");
}

/// Writes hold the migration state shared until they commit, and shared row locks admit each
/// other without queueing: a flag change must queue ahead of the writes that come after it, or
/// a steady stream of writes would hold it past any timeout.
#[tokio::test]
async fn a_flag_change_waits_for_the_writes_in_flight_only_not_for_those_after_it() {
    use sqlx::{Connection, Executor};
    let db = TestDb::fresh(Backend::Postgres).await;
    let (storage, _) = seeded(&db).await;
    let mut in_flight = sqlx::PgConnection::connect(&db.sql_url())
        .await
        .expect("a session");
    in_flight
        .execute("BEGIN; SELECT 1 FROM migration_state WHERE id = 1 FOR SHARE")
        .await
        .expect("a write's fence");
    let change = tokio::spawn({
        let storage = storage.clone();
        async move { set_flags(&storage, PHASE1).await }
    });
    let mut watcher = sqlx::PgConnection::connect(&db.sql_url())
        .await
        .expect("a session");
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND datname = current_database()";
    for _ in 0..100 {
        let count: i64 = sqlx::query_scalar(waiting)
            .fetch_one(&mut watcher)
            .await
            .expect("count");
        if count == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A write that comes now waits behind the change (its lock wait times out here).
    let mut later = sqlx::PgConnection::connect(&db.sql_url())
        .await
        .expect("a session");
    let queued = later
        .execute(
            "BEGIN; SET LOCAL lock_timeout = '300ms'; \
             SELECT 1 FROM migration_state WHERE id = 1 FOR SHARE",
        )
        .await;
    assert!(
        queued.is_err(),
        "a write after the flag change went ahead of it"
    );
    later.execute("ROLLBACK").await.expect("rollback");
    in_flight
        .execute("COMMIT")
        .await
        .expect("the write in flight commits");
    assert_eq!(
        change.await.expect("the change").expect("applied"),
        flags::Phase::DualWrite
    );
}

/// Ops pause a running backfill from one place while another changes its lag limit: each
/// change touches only what it names, so neither is lost whatever the interleaving.
async fn throttle_changes_racing_each_other_keep_both(db: TestDb) {
    use storage::throttle::{Operation, ThrottleChange};
    let pausing = db.storage().await;
    let limiting = db.storage().await;
    for round in 1..=20_i64 {
        let paused = round % 2 == 1;
        let (first, second) = tokio::join!(
            pausing.change_throttle(
                Operation::Backfill,
                ThrottleChange {
                    paused: Some(paused),
                    ..ThrottleChange::default()
                },
                "pausing",
            ),
            limiting.change_throttle(
                Operation::Backfill,
                ThrottleChange {
                    max_lag_ms: Some(Some(100 * round)),
                    ..ThrottleChange::default()
                },
                "limiting",
            ),
        );
        first.expect("the pause");
        second.expect("the limit");
        let stored = pausing
            .throttle(Operation::Backfill)
            .await
            .expect("the throttle");
        assert_eq!(
            (stored.paused, stored.max_lag_ms),
            (paused, Some(100 * round)),
            "round {round}: a change was lost"
        );
    }
}

/// How many sessions of this database wait for a lock now.
async fn sessions_waiting_for_a_lock(watcher: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    .fetch_one(watcher)
    .await
    .expect("count")
}

async fn until_one_session_waits(db: &TestDb) {
    use sqlx::Connection;
    let mut watcher = sqlx::PgConnection::connect(&db.sql_url())
        .await
        .expect("a session");
    for _ in 0..250 {
        if sessions_waiting_for_a_lock(&mut watcher).await == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the write never waited for the held lock");
}

/// A storefront's owner changes while a write to one of its products is in flight. The write
/// holds the storefront row it was authorised by, so the change waits for the write's commit;
/// a write that waited behind the change reads the new owner, is refused, and writes nothing.
/// (It used to commit for the previous owner after the change had committed.)
#[tokio::test]
async fn a_product_write_commits_only_for_the_owner_at_its_commit() {
    use sqlx::{Connection, Executor};
    let db = TestDb::fresh(Backend::Postgres).await;
    let (storage, data) = seeded(&db).await;
    set_flags(&storage, PHASE1).await.expect("phase 1");
    run_backfill(&storage, &EntityKind::ALL, 50, false, None).await;
    let mut found = None;
    for p in &data.products {
        let values = storage
            .entity_values(EntityRef::product(p.id), UNIFIED)
            .await
            .expect("unified")
            .data;
        if let Some((code, typed)) = values.into_iter().find(|(_, t)| t.unit.is_none()) {
            found = Some((p.id, code, typed.value.to_json()));
            break;
        }
    }
    let (product, code, value) = found.expect("a product with a value");
    let storefront = storage::demo::product_storefront(product);
    let owner = storage::demo::STOREFRONTS[(storefront - 1) as usize].1;
    let write = |change: serde_json::Value| {
        let storage = storage.clone();
        async move {
            storage
                .write_values_as(
                    EntityRef::product(product),
                    storage::ValuesChange::Merge(&object(change)),
                    WriteMode::Dual,
                    storage::ValueWriter::User(owner),
                )
                .await
                .map(|_| ())
        }
    };

    // Held after its ownership check (on the unified row it rewrites): the owner cannot change.
    let mut holder = sqlx::PgConnection::connect(&db.sql_url())
        .await
        .expect("holder");
    holder
        .execute(
            format!(
                "BEGIN; SELECT 1 FROM unified_attribute_values
                 WHERE entity_type = 'product' AND entity_id = {product} FOR UPDATE"
            )
            .as_str(),
        )
        .await
        .expect("hold the unified row");
    let one = |value: serde_json::Value| {
        serde_json::Value::Object([(code.clone(), value)].into_iter().collect())
    };
    let in_flight = tokio::spawn(write(one(value.clone())));
    until_one_session_waits(&db).await;
    let mut ops = sqlx::PgConnection::connect(&db.sql_url())
        .await
        .expect("ops");
    let changed = ops
        .execute(
            format!(
                "BEGIN; SET LOCAL lock_timeout = '300ms';
                 UPDATE storefronts SET user_id = 999 WHERE id = {storefront}"
            )
            .as_str(),
        )
        .await;
    assert!(
        changed.is_err(),
        "the owner changed while a write it no longer authorises was in flight"
    );
    ops.execute("ROLLBACK").await.expect("rollback");
    holder.execute("ROLLBACK").await.expect("release");
    in_flight
        .await
        .expect("the write")
        .expect("it commits for the owner it was authorised by");

    // Held before its ownership check (on the product row) while the owner changes: refused.
    holder
        .execute(
            format!("BEGIN; SELECT 1 FROM storefront_products WHERE id = {product} FOR UPDATE")
                .as_str(),
        )
        .await
        .expect("hold the product row");
    let after_the_change = tokio::spawn(write(one(serde_json::Value::Null)));
    until_one_session_waits(&db).await;
    holder
        .execute(
            format!("UPDATE storefronts SET user_id = 999 WHERE id = {storefront}; COMMIT")
                .as_str(),
        )
        .await
        .expect("the owner changes");
    let refused = after_the_change.await.expect("the write");
    assert!(
        matches!(refused, Err(StorageError::Forbidden(_))),
        "{refused:?}"
    );
    for route in [LEGACY, UNIFIED] {
        let values = storage
            .entity_values(EntityRef::product(product), route)
            .await
            .expect("read")
            .data;
        assert_eq!(
            values.get(&code).map(|t| t.value.to_json()),
            Some(value.clone())
        );
    }
}

/// Every B2C document as the database renders it, by entity.
async fn documents(db: &TestDb) -> Vec<(String, String)> {
    let raw = db.raw().await;
    let rows = raw
        .texts(
            "SELECT 'product ' || CAST(id AS TEXT) || ' ' || COALESCE(CAST(attributes AS TEXT), 'NULL')
             FROM storefront_products
             UNION ALL
             SELECT 'variant ' || CAST(id AS TEXT) || ' ' || COALESCE(CAST(variant_attributes AS TEXT), 'NULL')
             FROM storefront_product_variants ORDER BY 1",
        )
        .await;
    rows.into_iter()
        .flatten()
        .map(|row| {
            let mut parts = row.splitn(3, ' ');
            let entity = format!(
                "{} {}",
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default()
            );
            (entity, parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// A rollback's sync writes back only what unified changed, as the marketplace spells it: after
/// listing-only writes every product and variant document stays byte-identical (the dry run
/// says so too, entity for entity); after a variant write only that document changes, only in
/// the written key, under the key's own spelling and in its value's own JSON shape.
async fn sync_legacy_leaves_documents_nobody_wrote_byte_identical_and_keeps_the_marketplaces_spelling(
    db: TestDb,
) {
    let (storage, data) = seeded(&db).await;
    walk_to_unified(&storage).await;
    let before = documents(&db).await;
    let car = EntityRef::listing(car_listing(&data));
    unified_only_year(&storage, car, 2012).await;
    set_flags(&storage, DUAL_WRITE_BACK_ON)
        .await
        .expect("dual-write back on");
    let dry = storage
        .sync_legacy(WriteMode::Dual, 7, true, async |_| {})
        .await
        .expect("dry run");
    let synced = storage
        .sync_legacy(WriteMode::Dual, 7, false, async |_| {})
        .await
        .expect("sync");
    assert!(synced.complete, "{synced:?}");
    assert_eq!(
        dry.kinds, synced.kinds,
        "the dry run names what the sync did"
    );
    assert_eq!(synced.kinds["listing"].changed_sample, [car.id]);
    for kind in ["product", "product_variant"] {
        let counts = &synced.kinds[kind];
        assert_eq!(
            (
                counts.inserted,
                counts.updated,
                counts.deleted,
                counts.entities_changed
            ),
            (0, 0, 0, 0),
            "{kind}: {counts:?}"
        );
    }
    assert_eq!(documents(&db).await, before, "no document changed");

    // A variant whose document spells its keys its own way: one value changes in unified only.
    set_flags(&storage, PHASE3).await.expect("phase 3 again");
    let mut found = None;
    for (entity, document) in before.iter().filter(|(e, _)| e.starts_with("variant ")) {
        let Ok(parsed) =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(document)
        else {
            continue;
        };
        if !parsed.keys().any(|key| key.chars().any(char::is_uppercase)) {
            continue;
        }
        let variant: i64 = entity["variant ".len()..].parse().expect("id");
        let current = storage
            .entity_values(EntityRef::variant(variant), UNIFIED)
            .await
            .expect("unified")
            .data;
        if current.contains_key("color") {
            found = Some((entity.clone(), parsed, variant, current));
            break;
        }
    }
    let (entity, document, variant, current) =
        found.expect("a variant with a colour, its keys in the marketplace's spelling");
    let code = &"color".to_owned();
    let catalog = storage.catalog(UNIFIED).await.expect("catalog").data;
    let color = catalog
        .iter()
        .find(|a| a.code == "color")
        .expect("color in the catalog");
    let other = color
        .options
        .iter()
        .map(|o| o.value.clone())
        .find(|o| Some(o.as_str()) != current[code].value.chosen_options().first().copied())
        .expect("another colour");
    let as_list = current[code].value.to_json().is_array();
    let value = if as_list {
        json!([other])
    } else {
        json!(other)
    };
    storage
        .write_values(
            EntityRef::variant(variant),
            storage::ValuesChange::Merge(&object(json!({ "color": value.clone() }))),
            WriteMode::UnifiedOnly,
        )
        .await
        .expect("unified-only variant write");
    set_flags(&storage, DUAL_WRITE_BACK_ON)
        .await
        .expect("dual-write back on");
    let synced = storage
        .sync_legacy(WriteMode::Dual, 7, false, async |_| {})
        .await
        .expect("sync");
    assert_eq!(synced.kinds["product_variant"].changed_sample, [variant]);
    let after = documents(&db).await;
    for ((entity_before, old), (entity_after, new)) in before.iter().zip(&after) {
        assert_eq!(entity_before, entity_after);
        if *entity_before != entity {
            assert_eq!(old, new, "{entity_before} changed");
        }
    }
    let new: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        &after
            .iter()
            .find(|(e, _)| *e == entity)
            .expect("the variant")
            .1,
    )
    .expect("an object");
    assert_eq!(
        new.keys().collect::<Vec<_>>(),
        document.keys().collect::<Vec<_>>(),
        "the same keys, spelled the same"
    );
    let changed: Vec<&String> = new
        .iter()
        .filter(|(key, value)| document.get(*key) != Some(value))
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "only the written key: {new:?} was {document:?}"
    );
    let written = &new[changed[0]];
    match &document[changed[0]] {
        serde_json::Value::String(_) => {
            assert_eq!(written, &json!(other), "a string stays a string")
        }
        _ => assert_eq!(written, &value),
    }
}

/// In the unified phase the values live in unified only: a colour chosen in a multiselect list
/// (a JSON array there) still counts as a use of its option.
async fn an_option_unified_values_still_choose_cannot_be_dropped(db: TestDb) {
    let (storage, _) = seeded(&db).await;
    walk_to_unified(&storage).await;
    let colours = |options: &[&str]| -> domain::AttributeDraft {
        let options: Vec<_> = options
            .iter()
            .map(|value| json!({"value": value, "label": {"sr": value}}))
            .collect();
        serde_json::from_value(
            json!({"code": "color", "type": "multiselect", "purpose": "both",
            "display_name": {"sr": "Boja"}, "options": options}),
        )
        .expect("draft")
    };
    let raw = db.raw().await;
    let red = raw
        .count(match db.backend {
            Backend::Postgres => {
                "SELECT COUNT(*) FROM unified_attribute_values
                 WHERE attribute_id = 2004 AND json_value @> '[\"red\"]'"
            }
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM unified_attribute_values v WHERE attribute_id = 2004
                 AND EXISTS (SELECT 1 FROM json_each(v.json_value) e WHERE e.value = 'red')"
            }
        })
        .await;
    assert!(red > 0, "the demo chooses red");
    let message = conflict(
        storage
            .update_attribute(
                2004,
                colours(&["blue", "black", "white"]),
                WriteMode::UnifiedOnly,
            )
            .await,
    );
    assert!(
        message.contains(&format!("'red' by {red} unified value(s)")),
        "{message}"
    );
    storage
        .update_attribute(
            2004,
            colours(&["red", "blue", "black", "white"]),
            WriteMode::UnifiedOnly,
        )
        .await
        .expect("keeping every option in use is fine");
    // Re-mapped in the same change: red becomes blue, once per list.
    let mut remapped = colours(&["blue", "black", "white"]);
    remapped.remap_options = [("red".to_owned(), "blue".to_owned())].into();
    storage
        .update_attribute(2004, remapped, WriteMode::UnifiedOnly)
        .await
        .expect("red re-mapped to blue");
    let lists = raw
        .texts(
            "SELECT CAST(json_value AS TEXT) FROM unified_attribute_values WHERE attribute_id = 2004",
        )
        .await;
    assert!(!lists.is_empty());
    for list in lists.into_iter().flatten() {
        let items: Vec<String> = serde_json::from_str(&list).expect("a list");
        assert!(!items.contains(&"red".to_owned()), "{list}");
        let unique: std::collections::HashSet<&String> = items.iter().collect();
        assert_eq!(unique.len(), items.len(), "{list}");
    }
}

/// Legacy may refuse what unified holds (a trigger or constraint of the marketplace's): the
/// sync names the refused listing with the database's words, syncs every other one, and leaves
/// "pending" set — legacy is not up to date — until a run gets everything through.
async fn a_value_legacy_refuses_keeps_the_sync_pending_and_the_rest_goes_through(db: TestDb) {
    let (storage, data) = seeded(&db).await;
    walk_to_unified(&storage).await;
    let mut cars = data.listings.iter().filter(|l| l.category_id == 1311);
    let refused = EntityRef::listing(cars.next().expect("a car").id);
    let other = EntityRef::listing(cars.next().expect("another car").id);
    unified_only_year(&storage, refused, 2013).await;
    unified_only_year(&storage, other, 2014).await;
    set_flags(&storage, DUAL_WRITE_BACK_ON)
        .await
        .expect("dual-write back on");
    let raw = db.raw().await;
    raw.refuse_inserts_into(
        "listing_attribute_values",
        "CAST(NEW.numeric_value AS REAL) = 2013",
        "no 2013 here",
    )
    .await;
    let synced = storage
        .sync_legacy(WriteMode::Dual, 7, false, async |_| {})
        .await
        .expect("sync");
    assert!(!synced.complete, "{synced:?}");
    let listings = &synced.kinds["listing"];
    assert_eq!(listings.entities_refused, 1, "{listings:?}");
    assert_eq!(listings.refused[0].id, refused.id);
    assert!(
        listings.refused[0].reason.contains("no 2013 here"),
        "{listings:?}"
    );
    let year = |entity: EntityRef| {
        let storage = storage.clone();
        async move {
            storage
                .entity_values(entity, LEGACY)
                .await
                .expect("legacy")
                .data["year"]
                .value
                .to_json()
        }
    };
    assert_eq!(year(other).await, json!(2014), "the other listing synced");
    assert_ne!(year(refused).await, json!(2013));
    assert!(
        storage
            .migration_state()
            .await
            .expect("state")
            .unified_only_writes_pending_sync,
        "legacy is not up to date"
    );
    raw.stop_refusing_inserts_into("listing_attribute_values")
        .await;
    let again = storage
        .sync_legacy(WriteMode::Dual, 7, false, async |_| {})
        .await
        .expect("sync again");
    assert!(again.complete, "{again:?}");
    assert_eq!(year(refused).await, json!(2013));
}

/// An alias or option that people cannot tell from another option (full-width letters, a
/// zero-width space, a Cyrillic о in `yugo`) used to pass, and user writes of that spelling were
/// then stored as another make. Now they are refused; a wide or invisible-laden spelling of an
/// option means that option.
async fn look_alike_aliases_and_options_are_refused_and_wide_or_invisible_spellings_mean_their_option(
    db: TestDb,
) {
    let (storage, data) = seeded(&db).await;
    for alias in ["ＢＭＷ", "bmw\u{200B}"] {
        let message = conflict(
            storage
                .add_alias(
                    "car_make",
                    alias,
                    "tesla",
                    "ops",
                    WriteMode::LegacyOnly,
                    false,
                )
                .await,
        );
        assert!(message.contains("already means option 'bmw'"), "{message}");
    }
    let message = conflict(
        storage
            .add_alias(
                "car_make",
                "yugо",
                "tesla",
                "ops",
                WriteMode::LegacyOnly,
                false,
            )
            .await,
    );
    assert!(message.contains("looks like option 'yugo'"), "{message}");
    let message = conflict(
        storage
            .add_option(
                "car_make",
                "yugо",
                domain::LocalizedText::new(),
                "ops",
                WriteMode::LegacyOnly,
                false,
            )
            .await,
    );
    assert!(message.contains("looks like option 'yugo'"), "{message}");
    let car = EntityRef::listing(car_listing(&data));
    let written = storage
        .write_values(
            car,
            storage::ValuesChange::Merge(&object(json!({"car_make": "ＢＭＷ\u{200B}"}))),
            WriteMode::LegacyOnly,
        )
        .await
        .expect("a wide BMW is BMW")
        .data;
    assert_eq!(written["car_make"].value.to_json(), json!("bmw"));
    let refused = storage
        .write_values(
            car,
            storage::ValuesChange::Merge(&object(json!({"car_make": "yugо"}))),
            WriteMode::LegacyOnly,
        )
        .await;
    assert!(
        matches!(refused, Err(StorageError::InvalidValues(_))),
        "a look-alike is not an option: {refused:?}"
    );
}
