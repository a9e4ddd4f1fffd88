//! The change feed and capture over HTTP: writes through the API from concurrent clients and
//! the marketplace's own SQL on the legacy tables while the service serves — every acknowledged
//! write appears in the feed exactly once, in commit order per entity, and a direct save shows
//! in the service's answers (v1 and v2) without anyone calling it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flags::{Flags, WriteMode};
use serde_json::Value as Json;

use crate::common::{Backend, TestDb, backfill_and_verify, monolith_save};
use crate::helpers::{ADMIN_TOKEN, TestApp, WRITER_TOKEN, settings_for, start};

const SCHEMA: &str = include_str!("../fixtures/legacy_2025_08/schema.sql");
const DATA: &str = include_str!("../fixtures/legacy_2025_08/data.sql");

async fn feed(app: &TestApp, after: i64, wait: u64) -> (Vec<Json>, i64) {
    let reply = app
        .get_as(
            &format!("/api/v2/admin/changes?after={after}&limit=50&wait={wait}"),
            ("Authorization", &format!("Bearer {ADMIN_TOKEN}")),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let changes = reply.body["data"]["changes"]
        .as_array()
        .expect("changes")
        .clone();
    (changes, reply.body["data"]["next"].as_i64().expect("next"))
}

/// The 2025-08 database, backfilled and verified, served with unified reads and dual-write.
async fn serving_fixture() -> (TestApp, storage::Storage) {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA).await;
    raw.execute(DATA).await;
    let storage = db.storage().await;
    storage
        .note_write_mode(WriteMode::Dual)
        .await
        .expect("dual");
    backfill_and_verify(&storage).await;
    crate::common::accept_all_quarantined(&storage).await;
    storage
        .change_flags(Flags::default(), "ops", |_| Flags {
            use_unified: true,
            unified_percent: 100,
            fallback: false,
            dual_write: true,
            shadow_percent: 0,
        })
        .await
        .expect("canary");
    let mut settings = settings_for(
        &db,
        &[
            ("WRITER_API_TOKEN", WRITER_TOKEN),
            ("ADMIN_API_TOKEN", ADMIN_TOKEN),
        ],
    );
    settings.demo.seed_on_first_start = Some(false);
    let app = TestApp {
        address: start(&settings).await,
        db,
        client: awc::Client::default(),
    };
    (app, storage)
}

#[actix_web::test]
async fn every_acknowledged_write_is_in_the_feed_once_in_commit_order_per_entity() {
    let (app, _storage) = serving_fixture().await;
    let (_, start_at) = feed(&app, 0, 0).await;
    // Four clients write three listings at once; a fifth reads the feed meanwhile.
    let listings = [100_i64, 101, 102];
    let writers = (0..4).map(|client| {
        let app = TestApp {
            address: app.address.clone(),
            db: app.db.share(),
            client: awc::Client::default(),
        };
        async move {
            let mut acknowledged = BTreeMap::<i64, i64>::new();
            for i in 0..12 {
                let listing = listings[(client + i) % listings.len()];
                let year = 1990 + ((client * 12 + i) % 30) as i64;
                let reply = app
                    .json(
                        "PATCH",
                        &format!("/api/v2/marketplace/listings/{listing}/attributes"),
                        &format!(r#"{{"year": {year}}}"#),
                        Some(WRITER_TOKEN),
                    )
                    .await;
                if reply.status == 200 {
                    *acknowledged.entry(listing).or_default() += 1;
                }
            }
            acknowledged
        }
    });
    let acknowledged = futures_util::future::join_all(writers).await;
    let mut expected = BTreeMap::<i64, i64>::new();
    for counts in acknowledged {
        for (listing, n) in counts {
            *expected.entry(listing).or_default() += n;
        }
    }
    let total: i64 = expected.values().sum();
    assert!(total >= 40, "most writes acknowledged: {expected:?}");

    let mut seen = Vec::new();
    let mut cursor = start_at;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (seen.len() as i64) < total && Instant::now() < deadline {
        let (changes, next) = feed(&app, cursor, 1).await;
        seen.extend(changes);
        cursor = next;
    }
    let positions: Vec<i64> = seen
        .iter()
        .map(|c| c["position"].as_i64().expect("position"))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice: {positions:?}"
    );
    let mut delivered = BTreeMap::<i64, i64>::new();
    let mut times = BTreeMap::<i64, Vec<String>>::new();
    for change in &seen {
        assert_eq!(change["source"], "service");
        let id = change["entity_id"].as_i64().expect("id");
        *delivered.entry(id).or_default() += 1;
        times
            .entry(id)
            .or_default()
            .push(change["changed_at"].as_str().expect("time").to_owned());
    }
    assert_eq!(delivered, expected, "every acknowledged write exactly once");
    for (id, at) in times {
        assert!(
            at.windows(2).all(|w| w[0] <= w[1]),
            "listing {id} in commit order: {at:?}"
        );
    }
    // Nothing more: the cursor is at the end.
    let (more, _) = feed(&app, cursor, 0).await;
    assert!(more.is_empty(), "{more:?}");
}

#[actix_web::test]
async fn a_direct_save_of_the_monolith_shows_in_both_api_versions_and_in_the_feed() {
    let (app, storage) = serving_fixture().await;
    let raw = app.db.raw().await;
    let (_, cursor) = feed(&app, 0, 0).await;
    raw.execute(&monolith_save(
        101,
        &[(2201, Some("diesel"), None), (2202, None, Some(2018.0))],
    ))
    .await;
    // Nobody calls the service: its capture applies the save within its lag.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let values = app.listing_values(101).await;
        if values.to_string().contains("2018") {
            assert!(values.to_string().contains("diesel"), "{values}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the direct save never showed: {values}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v1 = app
        .get("/api/v1/marketplace/listings/101/attributes?lang=en")
        .await;
    assert_eq!(v1.status, 200);
    let year = v1.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|v| v["attribute_name"] == "year")
        .expect("year")
        .clone();
    assert_eq!(year["numeric_value"].as_f64(), Some(2018.0), "{year}");
    let (changes, _) = feed(&app, cursor, 5).await;
    let direct: BTreeSet<i64> = changes
        .iter()
        .filter(|c| c["source"] == "direct")
        .map(|c| c["entity_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(direct, BTreeSet::from([101]));
    assert!(storage.verify(10, |_| {}).await.expect("verify").is_clean());
}
