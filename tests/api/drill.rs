//! The rollback drill, end to end on PostgreSQL: while a writer keeps writing through the
//! service, walk 0 → 1 → backfill → verify → 2 (10, 50, 100 %) → 3 → archive (4) →
//! restore-archive → back to 2 → sync-legacy → 1 → 0. At every step each acknowledged write is readable, from both stores where the
//! phase maintains them; at the end verify finds no drift.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{EntityRef, Value};
use flags::Store;
use storage::{ReadRoute, Storage};

use crate::common::Backend;
use crate::helpers::{ADMIN_TOKEN, TestApp, WRITER_TOKEN, spawn_app};

/// Car listings of the demo data (category 1311: `year` is required there).
const CARS: [i64; 6] = [6, 7, 18, 19, 30, 31];

#[derive(Default)]
struct Writer {
    /// The last acknowledged year of each listing.
    acknowledged: Mutex<HashMap<i64, i64>>,
    writes: AtomicI64,
    paused: AtomicBool,
    /// Set while a write is in flight, so a check can wait for it.
    in_flight: AtomicBool,
    stop: AtomicBool,
}

async fn write_forever(app: Rc<TestApp>, writer: Arc<Writer>) {
    let mut n: i64 = 0;
    while !writer.stop.load(Ordering::SeqCst) {
        // Announce the write before looking at `paused`, so a pause never misses it.
        writer.in_flight.store(true, Ordering::SeqCst);
        if writer.paused.load(Ordering::SeqCst) {
            writer.in_flight.store(false, Ordering::SeqCst);
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let listing = CARS[(n as usize) % CARS.len()];
        let year = 1950 + (n % 77);
        let body = format!(r#"{{"year": {year}, "car_make": "bmw"}}"#);
        let reply = app
            .put_json(
                &format!("/api/v2/marketplace/listings/{listing}/attributes"),
                &body,
                Some(WRITER_TOKEN),
            )
            .await;
        if reply.status == 200 {
            writer
                .acknowledged
                .lock()
                .expect("lock")
                .insert(listing, year);
            writer.writes.fetch_add(1, Ordering::SeqCst);
        }
        writer.in_flight.store(false, Ordering::SeqCst);
        n += 1;
    }
}

async fn pause(writer: &Writer) {
    writer.paused.store(true, Ordering::SeqCst);
    while writer.in_flight.load(Ordering::SeqCst) {
        actix_web::rt::time::sleep(Duration::from_millis(2)).await;
    }
}

fn year(values: &domain::EntityValues) -> Option<i64> {
    match values.get("year").map(|t| &t.value) {
        Some(Value::Number(n)) => n.normalize().to_string().parse().ok(),
        _ => None,
    }
}

/// Every acknowledged write is in each store the phase maintains, and the API answers it
/// for users of every cohort.
async fn check(step: &str, app: &TestApp, storage: &Storage, writer: &Writer, stores: &[Store]) {
    pause(writer).await;
    let acknowledged = writer.acknowledged.lock().expect("lock").clone();
    assert!(!acknowledged.is_empty(), "{step}: the writer wrote nothing");
    for (listing, expected) in &acknowledged {
        for store in stores {
            let read = storage
                .entity_values(EntityRef::listing(*listing), ReadRoute::new(*store, false))
                .await
                .expect("read");
            assert_eq!(
                year(&read.data),
                Some(*expected),
                "{step}: listing {listing} in {store:?}: {:?}",
                read.data
            );
        }
        for user in ["1", "42", "777", "9001"] {
            let reply = app
                .get_as(
                    &format!("/api/v2/marketplace/listings/{listing}/attributes"),
                    ("X-User-Id", user),
                )
                .await;
            let served = reply.body["data"]["values"]
                .as_array()
                .expect("values")
                .iter()
                .find(|v| v["code"] == "year")
                .cloned();
            assert_eq!(
                served.and_then(|v| v["value"].as_i64()),
                Some(*expected),
                "{step}: listing {listing}, user {user}"
            );
        }
    }
    writer.paused.store(false, Ordering::SeqCst);
}

async fn set_flags(app: &TestApp, change: &str, phase: &str) {
    let reply = app
        .json(
            "PUT",
            "/api/v2/admin/attributes/feature-status",
            change,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{change}: {}", reply.body);
    assert_eq!(reply.body["data"]["phase"], phase, "{change}");
}

async fn let_it_write(writer: &Writer) {
    let before = writer.writes.load(Ordering::SeqCst);
    while writer.writes.load(Ordering::SeqCst) < before + 10 {
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_web::test]
async fn the_rollback_drill_loses_no_acknowledged_write() {
    let app = Rc::new(spawn_app(Backend::Postgres).await);
    let storage = app.db.storage().await;
    let writer = Arc::new(Writer::default());
    let writing = actix_web::rt::spawn(write_forever(Rc::clone(&app), Arc::clone(&writer)));
    let (legacy, unified, both) = (
        [Store::Legacy],
        [Store::Unified],
        [Store::Legacy, Store::Unified],
    );

    let_it_write(&writer).await;
    check("phase 0", &app, &storage, &writer, &legacy).await;

    set_flags(&app, r#"{"dual_write": true}"#, "dual_write").await;
    crate::common::run_backfill(&storage, &domain::EntityKind::ALL, 5, true, None).await;
    let_it_write(&writer).await;
    check("phase 1 after the backfill", &app, &storage, &writer, &both).await;
    let verified = storage.verify(20, |_| {}).await.expect("verify");
    assert!(
        verified.is_clean(),
        "verify during writes: {:?}",
        verified.drift
    );

    for percent in [10, 50, 100] {
        set_flags(
            &app,
            &format!(r#"{{"use_unified": true, "unified_percent": {percent}, "fallback": true}}"#),
            "canary",
        )
        .await;
        let_it_write(&writer).await;
        check(
            &format!("phase 2 at {percent} %"),
            &app,
            &storage,
            &writer,
            &both,
        )
        .await;
    }

    set_flags(
        &app,
        r#"{"dual_write": false, "fallback": false}"#,
        "unified",
    )
    .await;
    let_it_write(&writer).await;
    check("phase 3", &app, &storage, &writer, &unified).await;

    // Phase 4: the legacy tables move to the archive while the writer keeps writing.
    let configured = flags::Flags::default();
    let archived = storage.archive(configured).await.expect("archive");
    assert_eq!(archived.phase, "unified");
    let mut phase = String::new();
    for _ in 0..100 {
        let status = app
            .get_as(
                "/api/v2/admin/attributes/feature-status",
                ("Authorization", &format!("Bearer {ADMIN_TOKEN}")),
            )
            .await;
        phase = status.body["data"]["phase"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if phase == "archived" {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        phase, "archived",
        "the service hears of the archive within a second"
    );
    let_it_write(&writer).await;
    check("phase 4 (archived)", &app, &storage, &writer, &unified).await;
    let refused = app
        .json(
            "PUT",
            "/api/v2/admin/attributes/feature-status",
            r#"{"dual_write": true}"#,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body["rule"], "legacy_used_after_archive");

    // Roll back: restore the archive, dual-write again (reads stay unified), bring legacy up
    // to date with the writes it missed, then back.
    let (restored, unchanged) = storage.restore_archive(configured).await.expect("restore");
    assert!(unchanged, "the archive is restored as it was made");
    assert_eq!(restored.tables, archived.tables);
    let_it_write(&writer).await;
    check(
        "phase 3 after the restore",
        &app,
        &storage,
        &writer,
        &unified,
    )
    .await;
    set_flags(&app, r#"{"dual_write": true}"#, "canary").await;
    let refused = app
        .json(
            "PUT",
            "/api/v2/admin/attributes/feature-status",
            r#"{"use_unified": false}"#,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(refused.body["rule"], "legacy_reads_before_reverse_sync");
    storage
        .sync_legacy(flags::WriteMode::Dual, 5, false, async |_| {})
        .await
        .expect("sync-legacy");
    let_it_write(&writer).await;
    check("phase 2 after sync-legacy", &app, &storage, &writer, &both).await;

    set_flags(&app, r#"{"use_unified": false}"#, "dual_write").await;
    let_it_write(&writer).await;
    check("back in phase 1", &app, &storage, &writer, &both).await;

    // The writer stops before phase 0: legacy-only writes would rightly make unified drift.
    writer.stop.store(true, Ordering::SeqCst);
    writing.await.expect("the writer stops");
    set_flags(&app, r#"{"dual_write": false}"#, "legacy").await;
    writer.stop.store(false, Ordering::SeqCst);
    check("back in phase 0", &app, &storage, &writer, &both).await;
    let writes = writer.writes.load(Ordering::SeqCst);
    assert!(writes >= 80, "{writes} acknowledged writes");
    let last = storage.verify(20, |_| {}).await.expect("verify");
    assert!(last.is_clean(), "final verify: {:?}", last.drift);
}
