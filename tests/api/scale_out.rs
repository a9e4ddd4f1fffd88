//! Scale-out on PostgreSQL's own machinery, against real servers this test starts: a streaming
//! replica 300 ms behind (`pg_basebackup`, `recovery_min_apply_delay`) and PgBouncer in
//! transaction mode. Two service replicas share them, as in production.

use std::time::{Duration, Instant};

use crate::common::cluster::{PgBouncer, StreamingReplica};
use crate::common::{Backend, TestDb};
use crate::helpers::{TestApp, WRITER_TOKEN, settings_for, start};

const REPLICA_LAG: Duration = Duration::from_millis(300);
/// A car of the demo marketplace: it has a mileage.
const CAR: i64 = 6;

fn database_name(db: &TestDb) -> String {
    db.url
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_owned()
}

/// A service replica over `db`, its uncached reads going to `read_url`.
async fn app_with_replica(db: &TestDb, read_url: &str, cache: bool) -> TestApp {
    let db = db.share();
    let mut settings = settings_for(&db, &[("WRITER_API_TOKEN", WRITER_TOKEN)]);
    settings.database.read_urls = Some(read_url.to_owned().into());
    settings.cache.enabled = cache;
    let address = start(&settings).await;
    TestApp {
        address,
        db,
        client: awc::Client::default(),
    }
}

async fn wait_for_metric(app: &TestApp, sample: &str, at_least: f64) {
    let started = Instant::now();
    while app.metric(sample).await < at_least {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{sample} stayed below {at_least}:\n{}",
            app.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mileage(values: &serde_json::Value) -> Option<i64> {
    values
        .as_array()?
        .iter()
        .find(|v| v["code"] == "mileage")
        .and_then(|v| v["value"].as_f64())
        .map(|v| v as i64)
}

async fn write_mileage(app: &TestApp, listing: i64, value: i64) {
    let reply = app
        .json(
            "PATCH",
            &format!("/api/v2/marketplace/listings/{listing}/attributes"),
            &format!(r#"{{"mileage": {{"value": {value}, "unit": "km"}}}}"#),
            Some(WRITER_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Writes through `writer` then reads through `reader`, `count` times; returns how long after
/// each write's acknowledgement the reader answered it. Fails on any read older than a write
/// once the reader has heard that write's invalidation, and on any read of the writer's own
/// replica older than its write.
async fn write_then_read(writer: &TestApp, reader: &TestApp, count: usize) -> Vec<Duration> {
    let heard = "unified_attributes_invalidations_heard_total";
    // Only this pair's writes notify in this database, so the count moves with them alone.
    let mut heard_so_far = reader.metric(heard).await;
    let mut visible_after = Vec::with_capacity(count);
    for pair in 0..count {
        let value = 100_000 + pair as i64;
        write_mileage(writer, CAR, value).await;
        let acknowledged = Instant::now();
        assert_eq!(
            mileage(&writer.listing_values(CAR).await),
            Some(value),
            "pair {pair}: the writer's own replica reads its write"
        );
        loop {
            let now_heard = reader.metric(heard).await;
            if now_heard > heard_so_far {
                heard_so_far = now_heard;
                break;
            }
            assert!(
                acknowledged.elapsed() < Duration::from_secs(10),
                "pair {pair}: the invalidation never reached the reader"
            );
        }
        assert_eq!(
            mileage(&reader.listing_values(CAR).await),
            Some(value),
            "pair {pair}: a read older than a write whose invalidation arrived"
        );
        visible_after.push(acknowledged.elapsed());
    }
    visible_after
}

#[actix_web::test]
async fn behind_a_lagging_replica_no_read_goes_back_before_a_write_it_has_heard_of() {
    // Four databases, a writer and a reader service replica on each, all reading from one
    // streaming replica of the server: four times 2,500 pairs, side by side.
    let mut dbs = Vec::new();
    for _ in 0..4 {
        dbs.push(TestDb::fresh(Backend::Postgres).await);
    }
    let replica = StreamingReplica::start(REPLICA_LAG);
    let mut services = Vec::new();
    for db in &dbs {
        let read_url = replica.url(&database_name(db));
        let writer = app_with_replica(db, &read_url, true).await;
        let reader = app_with_replica(db, &read_url, true).await;
        let up = format!(
            "unified_attributes_replica_up{{replica=\"127.0.0.1:{}/{}\"}}",
            replica.port,
            database_name(db)
        );
        wait_for_metric(&writer, &up, 1.0).await;
        wait_for_metric(&reader, &up, 1.0).await;
        services.push((writer, reader));
    }
    let pairs = 2_500;
    let mut visible_after: Vec<Duration> = futures_util::future::join_all(
        services
            .iter()
            .map(|(writer, reader)| write_then_read(writer, reader, pairs)),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    visible_after.sort();
    eprintln!(
        "{} write-then-read pairs, replica {} ms behind: visible on the other service replica \
         after p50 {:?}, p99 {:?}, max {:?}",
        visible_after.len(),
        REPLICA_LAG.as_millis(),
        percentile(&visible_after, 0.5),
        percentile(&visible_after, 0.99),
        visible_after.last().expect("pairs")
    );
    let (db, (_, reader)) = (&dbs[0], &services[0]);
    let read_url = replica.url(&database_name(db));
    let up = format!(
        "unified_attributes_replica_up{{replica=\"127.0.0.1:{}/{}\"}}",
        replica.port,
        database_name(db)
    );
    // The rule was needed: reads the replica had not replayed went to the primary.
    assert!(
        reader
            .metric("unified_attributes_primary_reads_total{reason=\"stale\"}")
            .await
            > 0.0
    );

    // A service replica with no cache: once the replica has replayed the writes, it answers.
    let cold = app_with_replica(db, &read_url, false).await;
    wait_for_metric(&cold, &up, 1.0).await;
    tokio::time::sleep(REPLICA_LAG * 3).await;
    assert_eq!(
        mileage(&cold.listing_values(CAR).await),
        Some(100_000 + pairs as i64 - 1)
    );
    let replica_reads = format!(
        "unified_attributes_replica_reads_total{{replica=\"127.0.0.1:{}/{}\"}}",
        replica.port,
        database_name(db)
    );
    assert!(
        cold.metric(&replica_reads).await >= 1.0,
        "{}",
        cold.metrics().await
    );

    // The replica restarts under uncached reads: the primary answers meanwhile, no error.
    let reads = {
        let address = cold.address.clone();
        actix_web::rt::spawn(async move {
            let client = awc::Client::default();
            let (mut ok, mut failed) = (0, 0);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(6) {
                let url = format!("{address}/api/v2/marketplace/listings/{CAR}/attributes");
                match client.get(url).send().await {
                    Ok(response) if response.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = Instant::now();
    let replica = tokio::task::spawn_blocking(move || {
        replica.restart();
        replica
    })
    .await
    .expect("restart");
    eprintln!("replica restarted in {:?}", restarted.elapsed());
    let (ok, failed) = reads.await.expect("reads");
    eprintln!("reads through the replica's restart: {ok} answered, {failed} failed");
    assert_eq!(failed, 0, "the primary answers while the replica is away");
    assert!(ok > 0);
    let taken_out = format!(
        "unified_attributes_replica_taken_out_total{{replica=\"127.0.0.1:{}/{}\"}}",
        replica.port,
        database_name(db)
    );
    assert!(cold.metric(&taken_out).await >= 1.0);
    wait_for_metric(&cold, &up, 1.0).await;
    drop(replica);
}

#[actix_web::test]
async fn through_pgbouncer_in_transaction_mode_every_answer_is_right_and_a_restart_costs_only_its_outage()
 {
    let db = TestDb::fresh(Backend::Postgres).await;
    // Two server connections for every client: statements of different clients interleave on
    // them all the time.
    let bouncer = PgBouncer::start(2);
    let pooled = |cache: bool| {
        let db = db.share();
        let url = bouncer.url(&database_name(&db));
        async move {
            let mut settings = settings_for(&db, &[("WRITER_API_TOKEN", WRITER_TOKEN)]);
            settings.database.session_url = Some(db.url.clone().into());
            settings.database.url = Some(url.into());
            settings.database.transaction_pooler = true;
            settings.cache.enabled = cache;
            settings.database.max_connections = 8;
            let address = start(&settings).await;
            TestApp {
                address,
                db,
                client: awc::Client::default(),
            }
        }
    };
    let first = pooled(false).await;
    let second = pooled(true).await;

    // What each listing holds, read one at a time.
    let mut expected = Vec::new();
    for listing in 1..=60 {
        expected.push((listing, first.listing_values(listing).await));
    }
    // Concurrent reads of every listing, and writes to one, through the pooler.
    let clients: Vec<_> = (0..16)
        .map(|client| {
            let address = first.address.clone();
            let expected = expected.clone();
            actix_web::rt::spawn(async move {
                let http = awc::Client::default();
                for round in 0..40 {
                    let (listing, values) = &expected[(client * 7 + round) % expected.len()];
                    let url = format!("{address}/api/v2/marketplace/listings/{listing}/attributes");
                    let mut response = http.get(url).send().await.expect("answered");
                    assert_eq!(response.status(), 200);
                    let body: serde_json::Value = response.json().await.expect("JSON");
                    if *listing != CAR {
                        assert_eq!(&body["data"]["values"], values, "listing {listing}");
                    }
                }
            })
        })
        .collect();
    for value in 0..50 {
        write_mileage(&first, CAR, 200_000 + value).await;
        assert_eq!(
            mileage(&first.listing_values(CAR).await),
            Some(200_000 + value)
        );
    }
    for client in clients {
        client.await.expect("every answer right");
    }
    // The other service replica heard the writes through its direct LISTEN connection.
    assert_eq!(mileage(&second.listing_values(CAR).await), Some(200_049));

    // PgBouncer restarts under load: requests fail only while it is down.
    let load = {
        let address = first.address.clone();
        actix_web::rt::spawn(async move {
            let http = awc::Client::default();
            let mut outcomes = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(6) {
                let url = format!("{address}/api/v2/marketplace/listings/1/attributes");
                let ok = http.get(url).send().await.is_ok_and(|r| r.status() == 200);
                outcomes.push((Instant::now(), ok));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down = Instant::now();
    let bouncer = tokio::task::spawn_blocking(move || {
        bouncer.restart(Duration::from_millis(500));
        bouncer
    })
    .await
    .expect("restart");
    let up = Instant::now();
    let outcomes = load.await.expect("load");
    let failed: Vec<_> = outcomes.iter().filter(|(_, ok)| !ok).collect();
    eprintln!(
        "through a PgBouncer restart ({:?} down): {} requests, {} failed",
        up - down,
        outcomes.len(),
        failed.len()
    );
    // The read that found a cut connection fails once; after a grace second, all succeed.
    let grace = up + Duration::from_secs(1);
    assert!(
        failed.iter().all(|(at, _)| *at >= down && *at <= grace),
        "failures outside the outage"
    );
    assert!(outcomes.iter().any(|(at, ok)| *at > grace && *ok));
    write_mileage(&second, CAR, 300_000).await;
    assert_eq!(mileage(&first.listing_values(CAR).await), Some(300_000));
    drop(bouncer);
}

#[actix_web::test]
async fn any_service_replica_pauses_and_limits_a_bulk_operation_for_ops() {
    use crate::helpers::{ADMIN_TOKEN, spawn_app};
    let app = spawn_app(Backend::Postgres).await;
    let path = "/api/v2/admin/operations/backfill/throttle";
    let reply = app
        .json("PUT", path, r#"{"paused": true, "max_lag_ms": 750}"#, None)
        .await;
    reply.assert_error(401, "errors.unauthorized");
    let reply = app
        .send(
            app.client
                .put(format!("{}{path}", app.address))
                .insert_header(("Content-Type", "application/json"))
                .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")))
                .insert_header(("X-Actor", "ops-on-call")),
            Some(r#"{"paused": true, "max_lag_ms": 750}"#.into()),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["data"]["paused"], true);
    assert_eq!(reply.body["data"]["max_lag_ms"], 750);
    assert_eq!(
        reply.body["data"]["updated_by"],
        "admin-api (claims: ops-on-call)"
    );
    // What a running backfill reads before its next batch: the stored row.
    let stored = app
        .db
        .storage()
        .await
        .throttle(storage::throttle::Operation::Backfill)
        .await
        .expect("the throttle");
    assert!(stored.paused);
    assert_eq!(stored.max_lag_ms, Some(750));
    let reply = app
        .json(
            "PUT",
            path,
            r#"{"max_lag_ms": null, "paused": false}"#,
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["data"]["paused"], false);
    assert!(reply.body["data"]["max_lag_ms"].is_null());
    app.json("PUT", path, r#"{"max_load": 0}"#, Some(ADMIN_TOKEN))
        .await
        .assert_error(422, "errors.invalidBody");
    app.json("PUT", path, r#"{"pause": true}"#, Some(ADMIN_TOKEN))
        .await
        .assert_error(422, "errors.invalidBody");
    app.json(
        "PUT",
        "/api/v2/admin/operations/vacuum/throttle",
        r#"{"paused": true}"#,
        Some(ADMIN_TOKEN),
    )
    .await
    .assert_error(404, "errors.routeNotFound");
    let shown = app
        .get_as(
            "/api/v2/admin/operations/sync-legacy/throttle",
            ("Authorization", &format!("Bearer {ADMIN_TOKEN}")),
        )
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.body["data"]["operation"], "sync_legacy");
    assert_eq!(shown.body["data"]["paused"], false);
}
