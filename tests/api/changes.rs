//! The change feed and capture over HTTP: writes through the API from concurrent clients and
//! the marketplace's own SQL on the legacy tables while the service serves — every acknowledged
//! write appears in the feed exactly once, in commit order per entity, and a direct save shows
//! in the service's answers (v1 and v2) without anyone calling it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flags::{Flags, WriteMode};
use serde_json::Value as Json;

use crate::common::{Backend, TestDb, backfill_and_verify, monolith_save};
use crate::helpers::{ADMIN_TOKEN, TestApp, WRITER_TOKEN, serve_as_is};

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
    let app = serve_as_is(
        db,
        &[
            ("WRITER_API_TOKEN", WRITER_TOKEN),
            ("ADMIN_API_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
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
        let at = change["changed_at"].as_str().expect("time");
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "changed_at in RFC 3339: {at}"
        );
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

/// The marketplace's statements of every shape, at each phase, while the service serves and a
/// client writes through the API: its save and a storefront document update show in v1 and v2;
/// its listing page, map filter and admin count run; verify stays clean wherever dual-write
/// keeps legacy whole; then archive (its readers answer the same rows from the views, its save
/// fails loudly) and restore (the tables back as they were).
#[actix_web::test]
async fn the_monoliths_statements_at_every_phase_while_the_service_serves() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    raw.execute(SCHEMA).await;
    raw.execute(DATA).await;
    let storage = db.storage().await;
    let app = serve_as_is(
        db,
        &[
            ("WRITER_API_TOKEN", WRITER_TOKEN),
            ("ADMIN_API_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    let set_flags = |change: &'static str| {
        let app = &app;
        async move {
            let reply = app
                .json(
                    "PUT",
                    "/api/v2/admin/attributes/feature-status",
                    change,
                    Some(ADMIN_TOKEN),
                )
                .await;
            assert_eq!(reply.status, 200, "{change}: {}", reply.body);
            // Every worker hears of the change within a second.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
    };
    let readers = [
        "SELECT a.name || '=' || COALESCE(v.text_value, CAST(CAST(v.numeric_value AS INTEGER) AS TEXT))
         FROM listing_attribute_values v
         JOIN category_attributes a ON a.id = v.attribute_id
         JOIN marketplace_listings l ON l.id = v.listing_id
         JOIN category_attribute_mapping m ON m.attribute_id = a.id AND m.category_id = l.category_id
         WHERE v.listing_id = 101 ORDER BY a.name",
        "SELECT CAST(l.id AS TEXT) FROM marketplace_listings l WHERE EXISTS (
             SELECT 1 FROM listing_attribute_values v
             WHERE v.listing_id = l.id AND v.attribute_id = 2201 AND v.text_value = 'petrol')
         ORDER BY l.id",
        "SELECT attribute_id || ':' || COUNT(*) FROM listing_attribute_values
         WHERE listing_id = 101 GROUP BY attribute_id ORDER BY attribute_id",
    ];

    set_flags(r#"{"dual_write": true}"#).await;
    backfill_and_verify(&storage).await;
    // A DBA fixes the one document sync-legacy could not merge into (captured like any write).
    raw.execute("UPDATE storefront_products SET attributes = '{}' WHERE id = 202")
        .await;
    let phases: [(&str, &'static str, bool); 4] = [
        ("dual-write, legacy reads", r#"{"dual_write": true}"#, true),
        (
            "canary with fallback",
            r#"{"use_unified": true, "unified_percent": 100, "fallback": true}"#,
            true,
        ),
        ("unified reads", r#"{"fallback": false}"#, true),
        ("unified only", r#"{"dual_write": false}"#, false),
    ];
    let mut api_year = 0;
    for (n, (phase, change, dual_write)) in phases.into_iter().enumerate() {
        if phase == "unified reads" {
            crate::common::accept_all_quarantined(&storage).await;
        }
        set_flags(change).await;
        let (saved_year, product_year) = (2010 + n as i64, 2000 + n as i64);
        // Another client writes listing 100 through the API while the monolith saves 101 and
        // rewrites product 201's document.
        let api_writes = async {
            let mut last = None;
            for k in 0..5 {
                let year = 1990 + (n * 5 + k) as i64;
                let reply = app
                    .json(
                        "PATCH",
                        "/api/v2/marketplace/listings/100/attributes",
                        &format!(r#"{{"year": {year}}}"#),
                        Some(WRITER_TOKEN),
                    )
                    .await;
                assert_eq!(reply.status, 200, "{phase}: {}", reply.body);
                last = Some(year);
            }
            last
        };
        let direct = async {
            raw.execute(&monolith_save(
                101,
                &[
                    (2201, Some("petrol"), None),
                    (2202, None, Some(saved_year as f64)),
                ],
            ))
            .await;
            raw.execute(&format!(
                "UPDATE storefront_products SET attributes = '{{\"2202\": {product_year}}}' WHERE id = 201"
            ))
            .await;
        };
        let (last, ()) = futures_util::join!(api_writes, direct);
        api_year = last.expect("the API writes");
        // Its save shows in v2 and v1, within the capture's lag where unified answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listing = app.listing_values(101).await.to_string();
            let product = app
                .get("/api/v2/marketplace/products/201/attributes")
                .await
                .body
                .to_string();
            if listing.contains(&saved_year.to_string())
                && product.contains(&product_year.to_string())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{phase}: the direct writes never showed: {listing} / {product}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let v1 = app
            .get("/api/v1/marketplace/listings/101/attributes?lang=en")
            .await;
        assert!(
            v1.body["data"]
                .as_array()
                .expect("list")
                .iter()
                .any(|v| v["attribute_name"] == "year"
                    && v["numeric_value"].as_f64() == Some(saved_year as f64)),
            "{phase}: v1 {}",
            v1.body
        );
        assert!(
            app.listing_values(100)
                .await
                .to_string()
                .contains(&api_year.to_string()),
            "{phase}: the API client's last write"
        );
        // Its readers run against the legacy tables as ever.
        assert_eq!(
            raw.texts(readers[0]).await,
            [
                Some("fuel_type=petrol".to_owned()),
                Some(format!("year={saved_year}"))
            ],
            "{phase}"
        );
        if dual_write {
            assert!(
                storage.verify(10, |_| {}).await.expect("verify").is_clean(),
                "{phase}: verify"
            );
        }
    }

    // Back to dual-write, legacy brought up to date, verify clean, then the unified phase.
    set_flags(r#"{"dual_write": true}"#).await;
    storage
        .sync_legacy(WriteMode::Dual, 50, false, async |_| {})
        .await
        .expect("sync-legacy");
    assert!(storage.verify(10, |_| {}).await.expect("verify").is_clean());
    set_flags(r#"{"dual_write": false}"#).await;
    let mut before = Vec::new();
    for sql in readers {
        before.push(raw.texts(sql).await);
    }
    let unified = Flags {
        use_unified: true,
        unified_percent: 100,
        fallback: false,
        dual_write: false,
        shadow_percent: 0,
    };
    crate::common::accept_all_quarantined(&storage).await;
    storage.archive(unified).await.expect("archive");
    for (sql, answer) in readers.iter().zip(&before) {
        assert_eq!(&raw.texts(sql).await, answer, "after archive: {sql}");
    }
    let pool = sqlx::PgPool::connect(&app.db.sql_url())
        .await
        .expect("pool");
    let refused = sqlx::raw_sql(&monolith_save(101, &[(2201, Some("diesel"), None)]))
        .execute(&pool)
        .await
        .expect_err("its save after archive");
    assert!(
        refused.to_string().contains("unified attributes service"),
        "{refused}"
    );
    assert!(
        app.listing_values(100)
            .await
            .to_string()
            .contains(&api_year.to_string()),
        "the API still serves from unified"
    );
    let (_, unchanged) = storage.restore_archive(unified).await.expect("restore");
    assert!(unchanged, "the tables back as they were archived");
    assert_eq!(raw.texts(readers[0]).await, before[0]);
}
