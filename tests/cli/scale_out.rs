//! The backfill's throttle against a real streaming replica (300 ms of apply delay): it keeps
//! the replica's replay lag, as PostgreSQL measures it, under `--max-lag-ms`, and pauses and
//! resumes when `throttle` says so while it runs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::cluster::StreamingReplica;
use crate::common::{Backend, TestDb, postgres_admin_url};
use crate::{BINARY, cli};

const LISTINGS_PER_TEMPLATE: i64 = 3_334;
const MAX_LAG_MS: i64 = 1_000;

#[test]
fn a_backfill_of_200_000_listings_keeps_a_lagging_replica_under_its_limit_and_pauses_on_command() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    assert!(
        cli(&db, &["seed-demo", "--listings", "60"], &[])
            .status
            .success()
    );
    // 60 demo listings, each copied 3,334 times with two of its values: 200,100 listings.
    runtime.block_on(async {
        let raw = db.raw().await;
        raw.execute(&format!(
            "INSERT INTO marketplace_listings (id, category_id, title, status, user_id)
             SELECT 1000000 + g * 100 + l.id, l.category_id, l.title, l.status, l.user_id
             FROM marketplace_listings l, generate_series(1, {LISTINGS_PER_TEMPLATE}) g"
        ))
        .await;
        raw.execute(&format!(
            "INSERT INTO listing_attribute_values (listing_id, attribute_id, text_value,
                 numeric_value, boolean_value, json_value, unit, value_type)
             SELECT 1000000 + g * 100 + v.listing_id, v.attribute_id, v.text_value,
                 v.numeric_value, v.boolean_value, v.json_value, v.unit, v.value_type
             FROM (SELECT *, row_number() OVER (PARTITION BY listing_id ORDER BY attribute_id) AS n
                   FROM listing_attribute_values) v, generate_series(1, {LISTINGS_PER_TEMPLATE}) g
             WHERE v.n <= 2"
        ))
        .await;
        raw.execute("ANALYZE").await;
    });
    let count = |sql: &str| runtime.block_on(async { db.raw().await.count(sql).await });
    let listings = count("SELECT COUNT(*) FROM marketplace_listings");
    assert!(listings >= 200_000, "{listings} listings");

    let replica = StreamingReplica::start(Duration::from_millis(300));
    let database = db.url.rsplit('/').next().expect("a name").to_owned();
    let read_url = replica.url(&database);
    // PostgreSQL's own measure of the replica's lag, every 100 ms, while the backfill runs.
    let sampling = Arc::new(AtomicBool::new(true));
    let samples = Arc::new(Mutex::new(Vec::<(Instant, f64)>::new()));
    let sampler = {
        let (sampling, samples) = (Arc::clone(&sampling), Arc::clone(&samples));
        let name = replica.application_name();
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let out = Command::new("psql")
                    .args([&postgres_admin_url(), "-Atqc"])
                    .arg(format!(
                        "SELECT COALESCE(EXTRACT(epoch FROM replay_lag) * 1000, 0)
                         FROM pg_stat_replication WHERE application_name = '{name}'"
                    ))
                    .output()
                    .expect("psql");
                if let Ok(ms) = String::from_utf8_lossy(&out.stdout).trim().parse::<f64>() {
                    samples.lock().expect("samples").push((Instant::now(), ms));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let started = Instant::now();
    let mut backfill = Command::new(BINARY)
        .args(["backfill", "--batch-size", "2000", "--max-lag-ms"])
        .arg(MAX_LAG_MS.to_string())
        .args(["--database-url", &db.url])
        .env_clear()
        .env("NO_COLOR", "1")
        .env("DATABASE_READ_URL", &read_url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("backfill starts");
    let lines = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let reader = {
        let lines = Arc::clone(&lines);
        let stderr = backfill.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().expect("lines").push((Instant::now(), line));
            }
        })
    };
    let checkpoint = || {
        count(
            "SELECT COALESCE(MAX(last_id), 0) FROM backfill_checkpoint WHERE entity_type = 'listing'",
        )
    };
    while checkpoint() < 1_050_000 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the backfill does not advance"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The replica stops replaying (as a long query on it would make it): its lag grows past
    // the limit, and the backfill must stop adding WAL until it has caught up.
    let replica_sql = |sql: &str| {
        let out = Command::new("psql")
            .args([&read_url, "-Atqc", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    replica_sql("SELECT pg_wal_replay_pause()");
    let replay_paused = Instant::now();
    std::thread::sleep(Duration::from_millis(MAX_LAG_MS as u64) + Duration::from_secs(2));
    let held_by_lag = checkpoint();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        checkpoint(),
        held_by_lag,
        "the backfill ran a batch while the replica lagged past its limit"
    );
    replica_sql("SELECT pg_wal_replay_resume()");
    let replay_resumed = Instant::now();
    while checkpoint() == held_by_lag {
        assert!(
            replay_resumed.elapsed() < Duration::from_secs(60),
            "the backfill resumes once the replica caught up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let caught_up = Instant::now();

    let paused = cli(
        &db,
        &["throttle", "backfill", "--pause", "--actor", "test"],
        &[],
    );
    assert!(
        paused.status.success(),
        "{}",
        String::from_utf8_lossy(&paused.stderr)
    );
    // The batch in flight may finish; then nothing moves.
    std::thread::sleep(Duration::from_millis(1_500));
    let held_at = checkpoint();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(checkpoint(), held_at, "a paused backfill runs no batch");
    let shown = cli(&db, &["throttle", "backfill", "--json"], &[]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["paused"], true);
    assert!(
        shown["throttled"]
            .as_str()
            .is_some_and(|why| why.starts_with("paused by test")),
        "the running backfill reports why it waits: {shown}"
    );
    let resumed = cli(&db, &["throttle", "backfill", "--resume"], &[]);
    assert!(resumed.status.success());
    let status = backfill.wait().expect("backfill ends");
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    reader.join().expect("reader");
    let lines = lines.lock().expect("lines");
    assert!(
        status.success(),
        "{}",
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(checkpoint() > held_at, "resumed");
    assert!(
        lines
            .iter()
            .any(|(_, line)| line.contains("throttled: paused by test")),
        "the progress says why it waits"
    );
    let lag_waits = lines
        .iter()
        .filter(|(_, l)| l.contains("throttled: lag"))
        .count();
    assert!(lag_waits > 0, "the throttle waited for the replica's lag");
    // Outside the window in which the test held the replica's replay. That window ends when
    // PostgreSQL's own figure is back under the limit, not when the backfill moved again: the
    // walsender keeps the last `replay_lag` it computed while the replica has nothing left to
    // replay, and the WAL written before the hold, replayed after it, reports the hold's whole
    // length. Under a busy machine that stale figure can outlive the first batches after it.
    let samples = samples.lock().expect("samples");
    let held_until = samples
        .iter()
        .find(|(at, ms)| *at > replay_resumed && *ms <= MAX_LAG_MS as f64)
        .map(|(at, _)| *at)
        .expect("PostgreSQL's replay lag came back under the limit after the hold");
    assert!(
        held_until < caught_up + Duration::from_secs(60),
        "PostgreSQL's replay lag stayed over the limit for {:?} after the backfill moved again",
        held_until - caught_up
    );
    let samples: Vec<f64> = samples
        .iter()
        .filter(|(at, _)| *at < replay_paused || *at >= held_until)
        .map(|(_, ms)| *ms)
        .collect();
    let worst = samples.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "backfill of {listings} listings in {:?}: replay lag sampled {} times, worst {worst:.0} ms \
         (limit {MAX_LAG_MS} ms); {lag_waits} 'throttled: lag' lines",
        started.elapsed(),
        samples.len()
    );
    assert!(samples.len() > 10);
    assert!(
        worst <= MAX_LAG_MS as f64,
        "replay lag reached {worst:.0} ms, over the {MAX_LAG_MS} ms limit"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM listing_attribute_values"),
        count("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'listing'")
            + count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'"),
        "every legacy value migrated or quarantined"
    );
    drop(replica);
}
