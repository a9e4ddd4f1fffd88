//! One bulk operation at a time: a second one is refused naming the first; a killed one's lease
//! is taken over after the grace period and its backfill finishes from the checkpoint, which
//! never moves backwards; SIGTERM stops a backfill at a batch boundary and gives the lease back.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Backend, TestDb};
use crate::{BINARY, Running, cli};

const GRACE: (&str, &str) = ("OPERATION_LEASE_GRACE_SECONDS", "2");

/// A slow backfill (small batches, a pause after each) in the background, as if on `host`.
fn slow_backfill(db: &TestDb, host: &str) -> Running {
    Running(
        Command::new(BINARY)
            .args(["backfill", "--batch-size", "40", "--batch-delay", "60"])
            .args(["--database-url", &db.url])
            .env_clear()
            .env(GRACE.0, GRACE.1)
            .env("HOSTNAME", host)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts"),
    )
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut text).expect("stderr");
    }
    text
}

async fn listing_checkpoint(pool: &sqlx::PgPool) -> Option<i64> {
    sqlx::query_scalar("SELECT last_id FROM backfill_checkpoint WHERE entity_type = 'listing'")
        .fetch_optional(pool)
        .await
        .expect("checkpoint")
}

async fn wait_for_progress(pool: &sqlx::PgPool, past: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(last_id) = listing_checkpoint(pool).await.filter(|id| *id > past) {
            return last_id;
        }
        assert!(Instant::now() < deadline, "the backfill made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Two workers: the sampler keeps sampling while the test waits for a command to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_bulk_operation_is_refused_and_a_killed_ones_lease_is_taken_over() {
    let db = TestDb::fresh(Backend::Postgres).await;
    assert!(cli(&db, &["migrate"], &[]).status.success());
    assert!(
        cli(&db, &["seed-demo", "--listings", "3000"], &[])
            .status
            .success()
    );
    let pool = sqlx::PgPool::connect(&db.sql_url()).await.expect("pool");
    // Every checkpoint the run stores, sampled: it must never go back.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let pool = pool.clone();
        let sampling = Arc::clone(&sampling);
        async move {
            let mut seen = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                if let Some(id) = listing_checkpoint(&pool).await {
                    seen.push(id);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        }
    });

    // On another pod: nothing here can tell whether its process lives, so the grace decides.
    let mut first = slow_backfill(&db, "job-pod-a");
    let first_pid = first.0.id();
    wait_for_progress(&pool, 200).await;
    for (args, operation) in [
        (&["backfill"][..], "backfill"),
        (&["archive"][..], "archive"),
    ] {
        let refused = cli(&db, args, &[GRACE]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{operation}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "another bulk operation is running: backfill (pid {first_pid} on "
            )),
            "{operation} names the holder: {stderr}"
        );
    }

    first.0.kill().expect("kill -9");
    first.0.wait().expect("reaped");
    let killed_at = listing_checkpoint(&pool).await.expect("a checkpoint");
    let too_soon = cli(&db, &["backfill"], &[GRACE]);
    assert_eq!(
        too_soon.status.code(),
        Some(1),
        "within the grace period the killed run's lease still holds"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let second = cli(&db, &["backfill", "--batch-size", "200"], &[GRACE]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "took over the lease of backfill (pid {first_pid} on "
        )),
        "{stderr}"
    );

    sampling.store(false, Ordering::Relaxed);
    let seen = sampler.await.expect("sampler");
    assert!(seen.len() > 10, "sampled {} checkpoints", seen.len());
    assert!(
        seen.windows(2).all(|pair| pair[0] <= pair[1]),
        "the checkpoint went back: {seen:?}"
    );
    assert!(
        seen.contains(&killed_at) && seen.last() > Some(&killed_at),
        "killed at {killed_at}, then {:?}",
        seen.last()
    );
    let (legacy, migrated, quarantined): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM listing_attribute_values),
                (SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'listing'),
                (SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing')",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!(legacy, migrated + quarantined);
    let leases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM operation_lease")
        .fetch_one(&pool)
        .await
        .expect("leases");
    assert_eq!(leases, 0, "the finished run gave the lease back");
}

#[tokio::test]
async fn sigterm_stops_a_backfill_at_a_batch_boundary_and_releases_the_lease() {
    let db = TestDb::fresh(Backend::Postgres).await;
    assert!(cli(&db, &["migrate"], &[]).status.success());
    assert!(
        cli(&db, &["seed-demo", "--listings", "2000"], &[])
            .status
            .success()
    );
    let pool = sqlx::PgPool::connect(&db.sql_url()).await.expect("pool");
    let mut running = slow_backfill(&db, "job-pod-b");
    wait_for_progress(&pool, 0).await;
    let terminated = Command::new("kill")
        .args(["-TERM", &running.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    let status = running.0.wait().expect("it ends by itself");
    let stderr = stderr_of(&mut running.0);
    assert_eq!(status.code(), Some(130), "{stderr}");
    let stopped_at = listing_checkpoint(&pool).await.expect("a checkpoint");
    assert!(
        stderr.contains(&format!(
            "interrupted at listing id {stopped_at}; run `backfill` to resume"
        )),
        "{stderr}"
    );
    let leases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM operation_lease")
        .fetch_one(&pool)
        .await
        .expect("leases");
    assert_eq!(leases, 0, "the lease was given back");
    let resumed = cli(&db, &["backfill"], &[]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
}
