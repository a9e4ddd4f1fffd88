//! The binary as a user runs it: `serve` on a fresh machine with no set-up, and the
//! `migrate` / `seed-demo` subcommands against PostgreSQL.

#[path = "../common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Backend, TestDb};

mod console;
mod lease;
mod scale_out;

const BINARY: &str = env!("CARGO_BIN_EXE_unified-attributes");

/// Kills the service when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a subcommand against `db` with only `vars` set (and `--json` when asked).
fn cli(db: &TestDb, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    Command::new(BINARY)
        .args(args)
        .args(["--database-url", &db.url])
        .env_clear()
        .envs(vars.iter().copied())
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

/// Starts `unified-attributes serve` with no variables at all in `dir`, and returns the
/// address it printed.
fn serve_with_no_setup(dir: &std::path::Path) -> (Running, String) {
    serve_with(dir, &[])
}

/// Starts `unified-attributes serve` in `dir` with only these variables, and returns the
/// address it printed.
fn serve_with(dir: &std::path::Path, vars: &[(&str, &str)]) -> (Running, String) {
    let mut child = Command::new(BINARY)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env_clear()
        .envs(vars.iter().copied())
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel();
    // Once the address is read, the service's log goes to the test's output (shown on failure).
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Err(mpsc::SendError(line)) = lines.send(line) {
                eprintln!("service: {line}");
            }
        }
    });
    let running = Running(child);
    loop {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .expect("the service prints its address within a minute");
        if let Some(start) = line.find("http://127.0.0.1:") {
            let address: String = line[start..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            return (running, address);
        }
    }
}

#[actix_web::test]
async fn the_run_command_serves_demo_data_with_no_environment_and_no_setup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_service, address) = serve_with_no_setup(dir.path());
    let client = awc::Client::default();
    let mut response = client
        .get(format!(
            "{address}/api/v2/marketplace/categories/1311/attributes"
        ))
        .send()
        .await
        .expect("the service answers");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    let bound_on: Vec<i64> = body["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["bound_on"].as_i64())
        .collect();
    // 1311 → 1310 → 1301 → 1003: attributes bound two and three levels up are inherited.
    assert!(
        bound_on.contains(&1301) && bound_on.contains(&1003),
        "{bound_on:?}"
    );
    assert!(
        dir.path().join("unified-attributes.db").exists(),
        "the embedded SQLite file is created"
    );
}

/// A backfill in small, paced batches in the background, for a position to watch move.
fn slow_backfill(db: &TestDb) -> Running {
    Running(
        Command::new(BINARY)
            .args(["backfill", "--batch-size", "20", "--batch-delay", "40"])
            .args(["--database-url", &db.url])
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    )
}

/// Runs a subcommand in `dir` with no variables and no `--database-url`: the default database.
fn cli_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn first_line(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn every_command_names_its_database_first_and_refuses_one_nobody_meant() {
    // `DATABASE_URL` forgotten, in an empty directory: nothing is created, nothing passes.
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [&["backfill"][..], &["verify"], &["flags"], &["migrate"]] {
        let refused = cli_in(dir.path(), args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        assert!(
            first_line(&refused).contains("there is no database at unified-attributes.db"),
            "{args:?}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
        assert!(
            !dir.path().join("unified-attributes.db").exists(),
            "{args:?} created the default database"
        );
    }
    // Only `seed-demo` creates the embedded default, and says so.
    let seeded = cli_in(dir.path(), &["seed-demo", "--listings", "5"]);
    assert!(seeded.status.success(), "{seeded:?}");
    assert_eq!(
        first_line(&seeded),
        "database: SQLite file unified-attributes.db (created now)"
    );
    let listed = cli_in(dir.path(), &["quarantine"]);
    assert_eq!(
        first_line(&listed),
        "database: SQLite file unified-attributes.db"
    );

    // A PostgreSQL database that is neither the marketplace's nor set up by us is refused
    // before anything is created in it.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    let name = db
        .url
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_owned();
    let refused = cli(&db, &["backfill"], &[]);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.lines()
            .next()
            .is_some_and(|line| line.starts_with("database: PostgreSQL ")
                && line.ends_with(&format!("/{name} (schema attributes)"))),
        "{said}"
    );
    assert!(
        said.contains("neither the marketplace's legacy attribute tables"),
        "{said}"
    );
    // `migrate info` looks without changing anything: every migration pending.
    let info = cli(&db, &["migrate", "info", "--json"], &[]);
    assert!(info.status.success(), "{info:?}");
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&info.stdout).expect("JSON");
    assert!(
        listed.len() >= 17 && listed.iter().all(|m| m["applied"] == false),
        "{listed:?}"
    );
    let tables = runtime.block_on(async {
        db.raw()
            .await
            .count("SELECT COUNT(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
            .await
    });
    assert_eq!(tables, 0, "the refused backfill created tables");

    // `migrate` sets it up on purpose, and says what it applied; a verify over its 0 entities
    // is no pass.
    let migrated = cli(&db, &["migrate"], &[]);
    assert!(migrated.status.success());
    assert!(
        String::from_utf8_lossy(&migrated.stdout)
            .contains(&format!("applied {} migration(s) now", listed.len())),
        "{}",
        String::from_utf8_lossy(&migrated.stdout)
    );
    let info = cli(&db, &["migrate", "info"], &[]);
    assert!(
        String::from_utf8_lossy(&info.stdout).starts_with(&format!(
            "{0} migrations: {0} applied, 0 pending",
            listed.len()
        )),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );
    let verified = cli(&db, &["verify"], &[]);
    assert_eq!(verified.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&verified.stderr).contains("nothing was verified: 0 entities"),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // A named SQLite file is `migrate`'s to create.
    let named = format!("sqlite://{}/named.db", dir.path().display());
    let created = Command::new(BINARY)
        .args(["migrate", "--database-url", &named])
        .env_clear()
        .output()
        .expect("the binary runs");
    assert!(created.status.success(), "{created:?}");
    assert!(first_line(&created).ends_with("named.db (created now)"));
}

#[test]
fn a_database_that_fails_is_exit_3_said_once_and_a_json_document_with_json() {
    // A directory where the SQLite file should be: it exists, and cannot be opened.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().display());
    let failed = Command::new(BINARY)
        .args(["verify", "--json", "--database-url", &url])
        .env_clear()
        .output()
        .expect("the binary runs");
    assert_eq!(failed.status.code(), Some(3), "{failed:?}");
    let said = String::from_utf8_lossy(&failed.stderr);
    let error_line = said
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line: {said}"));
    assert_eq!(
        error_line.matches("unable to open database file").count(),
        1,
        "each cause said once: {error_line}"
    );
    let error: serde_json::Value = serde_json::from_slice(&failed.stdout).expect("JSON");
    assert_eq!(error["kind"], "infrastructure");
    assert_eq!(error["exit_code"], 3);
    assert!(error["hint"].is_string(), "{error}");
}

#[test]
fn seed_demo_loads_the_marketplace_into_postgres_and_refuses_a_second_time() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    let run = |args: &[&str]| cli(&db, args, &[]);
    let migrated = run(&["migrate"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let seeded = run(&["seed-demo", "--listings", "40"]);
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let counts = runtime.block_on(async {
        let raw = db.raw().await;
        (
            raw.count("SELECT COUNT(*) FROM marketplace_listings").await,
            raw.count("SELECT COUNT(*) FROM category_attributes").await,
            raw.count("SELECT COUNT(*) FROM storefront_product_variants")
                .await,
        )
    });
    assert_eq!(counts, (40, 22, 12));
    let again = run(&["seed-demo"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("already holds legacy attribute definitions")
    );
}

#[test]
fn a_malformed_flag_stops_the_binary_with_a_message_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(BINARY)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env_clear()
        .env("UNIFIED_ATTRIBUTES_PERCENT", "150")
        .current_dir(dir.path())
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("UNIFIED_ATTRIBUTES_PERCENT") && stderr.contains("0 to 100"),
        "{stderr}"
    );
}

#[test]
fn a_backfill_killed_with_sigkill_resumes_from_its_checkpoint_and_finishes_without_duplicates() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    let run = |args: &[&str]| cli(&db, args, &[]);
    assert!(run(&["seed-demo", "--listings", "2000"]).status.success());
    let mut backfill = Command::new(BINARY)
        .args([
            "backfill",
            "--batch-size",
            "20",
            "--batch-delay",
            "40",
            "--database-url",
            &db.url,
        ])
        .env_clear()
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("backfill starts");
    let progress = BufReader::new(backfill.stderr.take().expect("stderr"));
    let batches_seen = progress
        .lines()
        .map_while(Result::ok)
        .filter(|line| line.starts_with("listings:"))
        .take(5)
        .count();
    assert_eq!(batches_seen, 5);
    backfill.kill().expect("SIGKILL");
    backfill.wait().expect("reaped");

    let count = |sql: &str| runtime.block_on(async { db.raw().await.count(sql).await });
    let interrupted_at =
        count("SELECT last_id FROM backfill_checkpoint WHERE entity_type = 'listing'");
    assert!(
        (100..2000).contains(&interrupted_at),
        "killed mid-run, at listing {interrupted_at}"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM backfill_checkpoint WHERE completed_at IS NOT NULL"),
        0
    );

    let resumed = run(&["backfill", "--batch-size", "200"]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let first_progress = String::from_utf8_lossy(&resumed.stderr)
        .lines()
        .find(|l| l.starts_with("listings:"))
        .map(str::to_owned);
    let first_id: i64 = first_progress
        .as_deref()
        .and_then(|l| l.split("up to id ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|id| id.parse().ok())
        .expect("a progress line");
    // The position counts from the start of the backfill, not of this run: the listings'
    // ids are 1…N here, so it is the checkpoint's id.
    let position: i64 = first_progress
        .as_deref()
        .and_then(|l| l.strip_prefix("listings: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the position on the progress line");
    assert_eq!(position, first_id, "{first_progress:?}");
    assert_eq!(
        first_id,
        interrupted_at + 200,
        "the resumed run starts after the checkpoint"
    );
    let legacy = count("SELECT COUNT(*) FROM listing_attribute_values");
    let migrated =
        count("SELECT COUNT(*) FROM unified_attribute_values WHERE entity_type = 'listing'");
    let quarantined =
        count("SELECT COUNT(*) FROM backfill_quarantine WHERE entity_type = 'listing'");
    assert_eq!(
        legacy,
        migrated + quarantined,
        "every legacy row migrated or quarantined, none twice"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM backfill_checkpoint WHERE completed_at IS NOT NULL"),
        3,
        "listings, products and variants"
    );
}

#[test]
fn migrate_down_reverts_the_latest_migrations_keeps_legacy_data_and_guards_the_unified_tables() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let db = runtime.block_on(TestDb::fresh(backend));
        let run = |args: &[&str]| cli(&db, args, &[]);
        assert!(run(&["seed-demo", "--listings", "20"]).status.success());
        let count = |sql: &str| runtime.block_on(async { db.raw().await.count(sql).await });
        let tables = |name: &str| {
            let sql = match backend {
                Backend::Postgres => format!(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '{name}'"
                ),
                Backend::Sqlite => format!(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{name}'"
                ),
            };
            count(&sql)
        };
        let evidence = run(&["migrate", "down", "14"]);
        assert_eq!(evidence.status.code(), Some(1), "{backend:?}");
        assert!(
            String::from_utf8_lossy(&evidence.stderr).contains("migration_state"),
            "the evidence of the phases is data: {}",
            String::from_utf8_lossy(&evidence.stderr)
        );
        assert_eq!(
            tables("archive_manifests"),
            1,
            "{backend:?}: nothing reverted"
        );
        let down = run(&["migrate", "down", "14", "--allow-data-loss"]);
        assert!(
            down.status.success(),
            "{}",
            String::from_utf8_lossy(&down.stderr)
        );
        assert_eq!(
            (
                tables("archive_manifests"),
                tables("verify_runs"),
                tables("backfill_checkpoint"),
                tables("flag_state")
            ),
            (0, 0, 0, 1),
            "{backend:?}"
        );
        let guarded = run(&["migrate", "down", "3"]);
        assert_eq!(guarded.status.code(), Some(1), "{backend:?}");
        assert!(String::from_utf8_lossy(&guarded.stderr).contains("--allow-data-loss"));
        assert_eq!(
            tables("unified_attributes"),
            1,
            "{backend:?}: refused, nothing reverted"
        );
        let all = run(&["migrate", "down", "3", "--allow-data-loss"]);
        assert!(
            all.status.success(),
            "{}",
            String::from_utf8_lossy(&all.stderr)
        );
        assert_eq!(tables("unified_attributes"), 0, "{backend:?}");
        assert_eq!(
            count("SELECT COUNT(*) FROM marketplace_listings"),
            20,
            "{backend:?}: legacy data survives"
        );
        assert!(run(&["migrate", "up"]).status.success());
        assert_eq!(
            (tables("unified_attributes"), tables("verify_runs")),
            (1, 1),
            "{backend:?}: back up"
        );
    }
}

#[test]
fn the_migration_subcommands_answer_in_json_and_archive_then_restore_the_legacy_tables() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    let run = |args: &[&str], flags: &[(&str, &str)]| {
        let with_json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        cli(&db, &with_json, flags)
    };
    let json = |output: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "{err}: stdout {:?}, stderr {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    };
    let seeded = run(
        &[
            "seed-demo",
            "--listings",
            "150",
            "--products",
            "7",
            "--seed",
            "9",
        ],
        &[],
    );
    assert_eq!(
        (
            json(&seeded)["listings"].as_i64(),
            json(&seeded)["variants"].as_i64()
        ),
        (Some(150), Some(21))
    );
    let dual = [("DUAL_WRITE_ATTRIBUTES", "true")];
    let backfill = run(&["backfill", "--batch-size", "40"], &dual);
    assert!(backfill.status.success());
    let summary = json(&backfill);
    assert_eq!(summary["completed"], true);
    let kinds: Vec<&str> = summary["entities"]
        .as_array()
        .expect("checkpoints")
        .iter()
        .filter_map(|c| c["entity_type"].as_str())
        .collect();
    assert_eq!(kinds, ["listing", "product", "product_variant"]);
    let quarantined: i64 = summary["entities"]
        .as_array()
        .expect("checkpoints")
        .iter()
        .filter_map(|c| c["quarantined"].as_i64())
        .sum();
    assert!(quarantined > 0, "the demo's defects are quarantined");

    let unified_phase = [
        ("DUAL_WRITE_ATTRIBUTES", "false"),
        ("USE_UNIFIED_ATTRIBUTES", "true"),
        ("UNIFIED_ATTRIBUTES_PERCENT", "100"),
        ("UNIFIED_ATTRIBUTES_FALLBACK", "false"),
    ];
    let early = run(&["archive"], &unified_phase);
    assert_eq!(early.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("run verify"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    let verified = run(&["verify"], &dual);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    assert_eq!(json(&verified)["checked"], 150 + 7 + 21);
    let listed = run(&["quarantine", "--limit", "5"], &[]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listing = json(&listed);
    assert!(listing["total"].as_i64() > Some(0), "{listing}");
    let groups = listing["groups"].as_array().expect("groups");
    assert!(
        !groups.is_empty()
            && groups.len() <= 5
            && groups
                .iter()
                .all(|g| g["attribute_code"].is_string() && g["count"].as_i64() > Some(0)),
        "{groups:?}"
    );
    // Nothing resolved yet: a retry migrates none of the quarantined values and says so.
    let retried = run(&["backfill", "--retry-quarantine"], &dual);
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    let retried = json(&retried);
    assert_eq!(retried["quarantined_before"], retried["quarantined_after"]);
    assert_eq!(retried["quarantined_after"].as_i64(), Some(quarantined));
    let wrong_phase = run(&["archive"], &dual);
    assert_eq!(wrong_phase.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong_phase.stderr).contains("'dual_write'"));

    // The demo's defects: the operator accepts that unified goes without them.
    let accepted = run(
        &[
            "quarantine",
            "accept",
            "--all",
            "--actor",
            "ops",
            "--note",
            "demo defects",
        ],
        &[],
    );
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(
        json(&accepted)["affected"].as_i64() > Some(0),
        "something was accepted"
    );
    // The unified phase came from the environment, unaudited: nobody can say how long it has
    // served, so the archive waits for its soak unless an operator waives it, saying why.
    let unsoaked = run(&["archive"], &unified_phase);
    assert_eq!(unsoaked.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unsoaked.stderr).contains("the archive waits for 24 h 00 min"),
        "{}",
        String::from_utf8_lossy(&unsoaked.stderr)
    );
    let without_reason = run(&["archive", "--now"], &unified_phase);
    assert_eq!(without_reason.status.code(), Some(2));
    let archived = run(
        &[
            "archive",
            "--now",
            "--reason",
            "rehearsal on a copy",
            "--actor",
            "ops",
        ],
        &unified_phase,
    );
    assert!(
        archived.status.success(),
        "{}",
        String::from_utf8_lossy(&archived.stderr)
    );
    let manifest = json(&archived);
    assert_eq!(manifest["action"], "archive");
    assert_eq!(
        manifest["waiver"],
        "soak of 24 h 00 min waived by ops after an unknown time of the unified phase: rehearsal on a copy"
    );
    assert_eq!(manifest["tables"].as_array().map(Vec::len), Some(7));
    let flags = run(&["flags"], &unified_phase);
    assert_eq!(json(&flags)["phase"], "archived");
    let status = run(&["flags"], &dual);
    assert_eq!(
        status.status.code(),
        Some(1),
        "dual-write after archive breaks a guardrail"
    );
    assert!(
        json(&status)["guardrail"]
            .as_str()
            .is_some_and(|g| g.contains("legacy_used_after_archive"))
    );

    let restored = run(&["restore-archive"], &unified_phase);
    assert!(restored.status.success());
    let restored = json(&restored);
    assert_eq!(restored["matches_archive_manifest"], true);
    assert_eq!(restored["manifest"]["tables"], manifest["tables"]);
    let migrated = run(&["migrate"], &[]);
    assert_eq!(json(&migrated)["reverted"], serde_json::json!([]));
}

/// One `GET` over a fresh connection; the whole raw response.
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(address.trim_start_matches("http://")).expect("connects");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("answered");
    response
}

/// Runs `validate` against `address`; returns the exit code and the checks that failed.
/// Runs `validate`; returns its exit code and the checks that failed and were skipped.
fn validate(
    address: &str,
    db_url: &str,
    extra: &[&str],
) -> (Option<i32>, Vec<String>, Vec<String>) {
    let output = Command::new(BINARY)
        .args([
            "validate",
            "--json",
            "--base-url",
            address,
            "--database-url",
            db_url,
        ])
        // Latency is the benchmarks' business: a loaded test machine must not fail this.
        .args(["--probe-requests", "40", "--max-p95-ms", "10000"])
        .args(extra)
        .env_clear()
        .env("ADMIN_API_TOKEN", "admin")
        .env("WRITER_API_TOKEN", "writer")
        .env("NO_COLOR", "1")
        .output()
        .expect("validate runs");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(
        report["checks"].as_array().map(Vec::len),
        Some(15),
        "{report}"
    );
    let with = |outcome: &str| -> Vec<String> {
        report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["outcome"] == outcome)
            .map(|c| {
                format!(
                    "{}.{}",
                    c["category"].as_str().unwrap_or(""),
                    c["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    (output.status.code(), with("fail"), with("skipped"))
}

#[test]
fn validate_passes_on_a_healthy_service_and_fails_the_right_checks_when_the_phase_or_the_database_is_wrong()
 {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    let dir = tempfile::tempdir().expect("temp dir");
    let vars = [
        ("DATABASE_URL", db.url.as_str()),
        ("ADMIN_API_TOKEN", "admin"),
        ("WRITER_API_TOKEN", "writer"),
        ("DUAL_WRITE_ATTRIBUTES", "true"),
        ("APP__DEMO__SEED_ON_FIRST_START", "true"),
        ("APP__DEMO__LISTINGS", "60"),
    ];
    let (_service, address) = serve_with(dir.path(), &vars);
    let run = |args: &[&str]| cli(&db, args, &[]);
    assert!(run(&["backfill"]).status.success());
    assert!(run(&["verify"]).status.success());

    // Read-only unless asked: ids found in the database, nothing written.
    let last_write = || {
        runtime.block_on(async {
            db.raw()
                .await
                .texts("SELECT CAST(MAX(updated_at) AS TEXT) FROM unified_attribute_values")
                .await
        })
    };
    let before = last_write();
    let (code, failed, skipped) = validate(&address, &db.url, &["--expect-phase", "dual_write"]);
    assert_eq!(
        (code, failed, skipped),
        (
            Some(0),
            Vec::<String>::new(),
            vec!["integration.write_then_read".to_owned()]
        ),
        "a healthy service passes; the write check waits to be asked"
    );
    assert_eq!(last_write(), before, "validate wrote nothing");
    let (code, failed, skipped) = validate(
        &address,
        &db.url,
        &["--expect-phase", "dual_write", "--write-listing", "6"],
    );
    assert_eq!(
        (code, failed, skipped.len()),
        (Some(0), Vec::<String>::new(), 0)
    );
    assert_ne!(
        last_write(),
        before,
        "asked, it writes the listing it was given"
    );

    let (code, failed, _) = validate(&address, &db.url, &["--expect-phase", "unified"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        failed,
        ["feature.flags_phase"],
        "only the phase check fails"
    );

    // Parity is compared now: drift made after the last recorded verify is found.
    runtime.block_on(async {
        db.raw()
            .await
            .execute(
                "UPDATE unified_attribute_values SET numeric_value = numeric_value + 1
                 WHERE entity_type = 'listing' AND numeric_value IS NOT NULL
                   AND entity_id = (SELECT MIN(entity_id) FROM unified_attribute_values
                                    WHERE entity_type = 'listing' AND numeric_value IS NOT NULL)",
            )
            .await
    });
    let (code, failed, _) = validate(&address, &db.url, &["--expect-phase", "dual_write"]);
    assert_eq!(code, Some(1));
    assert_eq!(failed, ["database.parity"], "the drift is seen now");

    // The database goes away for this service (the shared server keeps serving other tests).
    let name = db.url.rsplit('/').next().expect("database name").to_owned();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&common::postgres_admin_url())
            .await
            .expect("admin connection");
        for statement in [
            format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ),
        ] {
            sqlx::query(&statement)
                .execute(&mut admin)
                .await
                .expect("database closed");
        }
    });
    // Once the listener has noticed the lost connection, the cache is flushed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !http_get(&address, "/metrics")
        .lines()
        .any(|line| line == "unified_attributes_invalidation_listener_reconnects_total 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener notices the lost connection"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, failed, _) = validate(
        &address,
        &db.url,
        &[
            "--expect-phase",
            "dual_write",
            "--category",
            "1311",
            "--write-listing",
            "6",
        ],
    );
    assert_eq!(code, Some(1));
    // The cache is empty and the database unreachable: every read that needs the
    // database fails; what needs none still passes.
    for check in [
        "database.schema",
        "database.integrity",
        "database.parity",
        "api.category_attributes",
        "integration.write_then_read",
        "monitoring.health",
    ] {
        assert!(
            failed.iter().any(|f| f == check),
            "{check} fails: {failed:?}"
        );
    }
    for check in [
        "api.error_contract",
        "api.openapi",
        "monitoring.metrics_exported",
    ] {
        assert!(
            !failed.iter().any(|f| f == check),
            "{check} passes: {failed:?}"
        );
    }
}

#[test]
fn flags_set_changes_the_runtime_flags_with_an_audit_and_refuses_what_breaks_a_guardrail() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    let run = |args: &[&str]| {
        let with_json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        cli(&db, &with_json, &[])
    };
    assert!(run(&["migrate"]).status.success());
    let changed = run(&[
        "flags",
        "--set",
        r#"{"dual_write": true}"#,
        "--actor",
        "ops",
    ]);
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&changed.stdout).expect("JSON");
    assert_eq!(report["phase"], "dual_write");
    assert!(report["source"].as_str().is_some_and(|s| s.contains("ops")));
    let refused = run(&[
        "flags",
        "--set",
        r#"{"dual_write": false, "use_unified": true, "unified_percent": 50}"#,
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("guardrail"));
    // With --json the refusal is a document too, naming every rule it breaks at once.
    let error: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("JSON");
    let rules = serde_json::json!([
        "dual_write_off_while_legacy_serves_reads",
        "unified_reads_before_backfill",
        "unified_reads_before_verify"
    ]);
    assert_eq!(
        (&error["kind"], &error["exit_code"], &error["rules"]),
        (&serde_json::json!("refused"), &serde_json::json!(1), &rules),
        "{error}"
    );
    assert!(error["hint"].is_string(), "{error}");
    let said = String::from_utf8_lossy(&refused.stderr);
    for rule in rules.as_array().expect("rules") {
        assert!(said.contains(rule.as_str().expect("a rule")), "{said}");
    }
    let malformed = run(&["flags", "--set", r#"{"dual_write": "yes"}"#]);
    assert_eq!(malformed.status.code(), Some(2));
    let audit = runtime.block_on(async {
        db.raw()
            .await
            .texts("SELECT changed_by || ':' || old_phase || '->' || new_phase FROM flag_audit ORDER BY id")
            .await
    });
    assert_eq!(
        audit,
        [Some("ops:legacy->dual_write".to_owned())],
        "one audited change"
    );
}

#[test]
fn flags_promote_and_abort_step_one_rung_and_unified_reads_alone_start_the_smallest_canary() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    let run = |args: &[&str]| {
        let with_json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        cli(&db, &with_json, &[])
    };
    // The rung of the flags in force after a step, as `flags --json` reports it.
    let step = |args: &[&str]| -> serde_json::Value {
        let stepped = run(args);
        assert!(
            stepped.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&stepped.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&stepped.stdout).expect("JSON");
        report["rung"].clone()
    };
    assert!(run(&["seed-demo", "--listings", "30"]).status.success());
    let first = run(&["flags", "abort"]);
    assert_eq!(first.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&first.stderr).contains("legacy is the first rung"));

    assert_eq!(step(&["flags", "promote", "--actor", "ops"]), "dual_write");
    assert!(run(&["backfill"]).status.success());
    assert!(run(&["verify"]).status.success());
    assert_eq!(
        step(&["flags", "promote"]),
        serde_json::json!({"canary": 1})
    );
    assert_eq!(
        step(&["flags", "promote"]),
        serde_json::json!({"canary": 10})
    );
    assert_eq!(step(&["flags", "abort"]), serde_json::json!({"canary": 1}));
    assert_eq!(step(&["flags", "abort"]), "dual_write");
    // `use_unified` alone: the smallest canary with fallback, not every reader at once.
    assert_eq!(
        step(&["flags", "--set", r#"{"use_unified": true}"#]),
        serde_json::json!({"canary": 1})
    );
    for percent in [10, 50, 100] {
        assert_eq!(
            step(&["flags", "promote"]),
            serde_json::json!({ "canary": percent })
        );
    }
    assert_eq!(step(&["flags", "promote"]), "unified_reads");
    assert_eq!(step(&["flags", "promote"]), "unified_only");
    // The flags' last rung: the archive is its own command, with its own checks.
    let last = run(&["flags", "promote"]);
    assert_eq!(last.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&last.stderr).contains("archive --dry-run"),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert_eq!(step(&["flags", "abort"]), "unified_reads");
    // Flags set by hand that no rung names: a step would guess, so it is refused.
    step(&["flags", "--set", r#"{"unified_percent": 30}"#]);
    let off_ladder = run(&["flags", "abort"]);
    assert_eq!(off_ladder.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&off_ladder.stderr).contains("stand on no rung"));
    let both = run(&["flags", "promote", "--set", r#"{"dual_write": true}"#]);
    assert_eq!(both.status.code(), Some(2));
    let audit = runtime.block_on(async {
        db.raw()
            .await
            .texts("SELECT changed_by || ':' || CAST(new_flags ->> 'unified_percent' AS TEXT) FROM flag_audit ORDER BY id")
            .await
    });
    assert_eq!(
        audit.len(),
        13,
        "each change audited once, the refused ones not: {audit:?}"
    );
    assert_eq!(audit[0].as_deref(), Some("ops:100"));
    assert_eq!(audit[5].as_deref(), Some("cli:1"));

    // Unified only, audited: the archive waits for the phase to soak and says how long is left.
    step(&["flags", "--set", r#"{"unified_percent": 100}"#]);
    assert_eq!(step(&["flags", "promote"]), "unified_only");
    let soaking = run(&["archive"]);
    assert_eq!(soaking.status.code(), Some(1));
    let said = String::from_utf8_lossy(&soaking.stderr);
    assert!(
        said.contains("the unified phase has served for") && said.contains("of the 24 h 00 min"),
        "{said}"
    );
    let dry_run = run(&["archive", "--dry-run"]);
    assert_eq!(dry_run.status.code(), Some(1), "the dry run says the same");
    let shorter = run(&["archive", "--dry-run", "--soak-hours", "0"]);
    assert!(
        shorter.status.success(),
        "{}",
        String::from_utf8_lossy(&shorter.stderr)
    );
}

#[test]
fn status_follows_the_walk_phase_by_phase_and_shows_a_running_backfill_move() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    let run = |args: &[&str]| {
        let with_json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        let output = cli(&db, &with_json, &[]);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    let status = |args: &[&str]| -> serde_json::Value {
        let all: Vec<&str> = ["status"].iter().chain(args).copied().collect();
        serde_json::from_slice(&run(&all).stdout).expect("JSON")
    };
    let blocked_by = |status: &serde_json::Value| status["next"]["blocked_by"]["rule"].clone();
    let met = |status: &serde_json::Value, fact: &str| {
        status["evidence"]
            .as_array()
            .expect("evidence")
            .iter()
            .find(|e| e["fact"] == fact)
            .map(|e| e["met"].clone())
    };
    run(&["seed-demo", "--listings", "600"]);

    let legacy = status(&[]);
    assert!(
        legacy["database"]
            .as_str()
            .is_some_and(|d| d.starts_with("PostgreSQL "))
    );
    assert_eq!(
        (&legacy["phase"], &legacy["rung"]),
        (&"legacy".into(), &"legacy".into())
    );
    assert_eq!(legacy["next"]["command"], "flags promote");
    assert_eq!(legacy["next"]["to"], "dual-write");
    assert!(legacy["next"]["blocked_by"].is_null(), "{legacy}");
    assert_eq!(met(&legacy, "backfill_complete"), Some(false.into()));
    assert_eq!(legacy["backfill"][0]["percent"], 0.0);
    assert!(legacy["operation"].is_null() && legacy["flag_changes"] == serde_json::json!([]));

    run(&["flags", "promote", "--actor", "night-shift"]);
    let dual = status(&[]);
    assert_eq!(dual["phase"], "dual_write");
    assert_eq!(blocked_by(&dual), "unified_reads_before_backfill");
    assert_eq!(dual["flag_changes"][0]["changed_by"], "night-shift");
    let rfc3339 = |at: &serde_json::Value| {
        at.as_str()
            .is_some_and(|at| chrono::DateTime::parse_from_rfc3339(at).is_ok())
    };
    assert!(rfc3339(&dual["flag_changes"][0]["changed_at"]), "{dual}");

    // A backfill running: the status names it and its position moves.
    let mut backfill = slow_backfill(&db);
    let mut positions = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while positions.len() < 2 && std::time::Instant::now() < deadline {
        let running = status(&[]);
        let percent = running["backfill"][0]["percent"]
            .as_f64()
            .unwrap_or_default();
        if running["operation"]["operation"] == "backfill"
            && percent > 0.0
            && percent < 100.0
            && positions.last() != Some(&percent)
        {
            positions.push(percent);
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(
        positions.len(),
        2,
        "two positions of a running backfill: {positions:?}"
    );
    assert!(positions[0] < positions[1], "{positions:?}");
    assert!(backfill.0.wait().expect("the backfill ends").success());

    let backfilled = status(&[]);
    assert!(backfilled["operation"].is_null());
    assert!(
        backfilled["backfill"]
            .as_array()
            .expect("kinds")
            .iter()
            .all(|k| k["completed"] == true && k["percent"] == 100.0),
        "{backfilled}"
    );
    assert_eq!(met(&backfilled, "backfill_complete"), Some(true.into()));
    assert_eq!(blocked_by(&backfilled), "unified_reads_before_verify");
    assert!(backfilled["quarantine"]["total"].as_i64() > Some(0));

    run(&["verify"]);
    let verified = status(&[]);
    assert!(verified["next"]["blocked_by"].is_null(), "{verified}");
    assert_eq!(verified["last_verify"]["drifted"], 0);
    assert!(
        rfc3339(&verified["last_verify"]["finished_at"]),
        "{verified}"
    );
    assert_eq!(verified["next"]["to"], "canary 1% with fallback");

    // The demo's defects are seen by users: without fallback, unified reads would hide them.
    for _ in 0..4 {
        run(&["flags", "promote"]);
    }
    let canary = status(&[]);
    assert_eq!(canary["rung"], serde_json::json!({"canary": 100}));
    assert_eq!(blocked_by(&canary), "unified_reads_hide_quarantined_values");
    assert_eq!(met(&canary, "quarantine_settled"), Some(false.into()));
    assert!(
        !canary["quarantine"]["blocking_cut_over"]
            .as_array()
            .expect("blocking")
            .is_empty()
    );
    run(&["quarantine", "accept", "--all", "--actor", "night-shift"]);
    run(&["flags", "promote"]);
    run(&["flags", "promote"]);
    let unified = status(&[]);
    assert_eq!(unified["phase"], "unified");
    assert_eq!(unified["next"]["command"], "archive");
    assert!(
        unified["unified_for_seconds"]
            .as_f64()
            .is_some_and(|s| s >= 0.0)
    );
    assert_eq!(met(&unified, "unified_phase_soaked"), Some(false.into()));
    assert_eq!(
        met(&status(&["--soak-hours", "0"]), "unified_phase_soaked"),
        Some(true.into())
    );

    run(&["archive", "--soak-hours", "0"]);
    let archived = status(&[]);
    assert_eq!(archived["phase"], "archived");
    assert!(archived["next"].is_null() && archived["archived"] == true);
    assert!(archived["backfill"][0]["percent"].is_null());
    // Advice valid in the phase it is given in: dual-write is refused once archived.
    let backfill = cli(&db, &["backfill"], &[]);
    assert_eq!(backfill.status.code(), Some(1));
    let said = String::from_utf8_lossy(&backfill.stderr);
    assert!(
        said.contains("the legacy tables are archived") && !said.contains("turn dual-write on"),
        "{said}"
    );
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_its_write_then_the_service_exits_cleanly() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut service, address) = serve_with(dir.path(), &[("WRITER_API_TOKEN", "writer")]);
    let path = "/api/v2/marketplace/listings/6/attributes";
    let before = http_get(&address, path);
    let read: serde_json::Value =
        serde_json::from_str(before.split("\r\n\r\n").nth(1).expect("a body")).expect("JSON");
    let value = read["data"]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v.get("unit").is_none())
        .expect("a value without a unit");
    let body =
        serde_json::json!({ value["code"].as_str().expect("code"): value["value"] }).to_string();
    // The request is received and its handler waits for the body when the signal arrives.
    let mut stream =
        std::net::TcpStream::connect(address.trim_start_matches("http://")).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "PATCH {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer writer\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("head sent");
    // Time for a loaded machine to dispatch the head: a connection whose request has not
    // reached a handler is idle, and a graceful stop closes idle connections.
    std::thread::sleep(Duration::from_secs(1));
    let pid = service.0.id().to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(body.as_bytes()).expect("body sent");
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .expect("the reply is read");
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "the request in flight is answered: {reply}"
    );
    assert!(reply.contains("\"success\":true"), "{reply}");
    // Drained, the process exits by itself, cleanly.
    let deadline = std::time::Instant::now() + Duration::from_secs(35);
    let status = loop {
        if let Some(status) = service.0.try_wait().expect("status") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service exits within its 30 s drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit: {status:?}");
}

/// The operator's resolution of the demo's quarantine on SQLite: `quarantine` names the
/// spelling no option explains, `resolve alias` maps it (a spelling that already means another
/// option is refused, exit 2), `backfill --retry-quarantine` migrates it, `verify` stays clean,
/// and `resolve history` shows who did it.
#[test]
fn resolve_alias_then_retry_quarantine_migrates_the_spelling_and_records_who_did_it() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Sqlite));
    let dual = [("DUAL_WRITE_ATTRIBUTES", "true")];
    let run = |args: &[&str]| {
        let with_json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        cli(&db, &with_json, &dual)
    };
    let json = |output: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "{err}: stdout {:?}, stderr {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    };
    assert!(run(&["seed-demo", "--listings", "300"]).status.success());
    assert!(run(&["backfill"]).status.success());
    let spelled = |output: &std::process::Output| -> i64 {
        json(output)["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .filter(|g| g["value"] == "poluautomatik")
            .map(|g| g["count"].as_i64().expect("count"))
            .sum()
    };
    let listed = run(&["quarantine", "--attribute", "transmission"]);
    let quarantined = spelled(&listed);
    assert!(quarantined > 0, "the demo holds `poluautomatik`");

    let conflict = run(&[
        "resolve",
        "alias",
        "--attribute",
        "transmission",
        "--alias",
        "MANUAL",
        "--option",
        "automatic",
    ]);
    assert_eq!(conflict.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&conflict.stderr).contains("already means option 'manual'"),
        "{}",
        String::from_utf8_lossy(&conflict.stderr)
    );
    let alias = run(&[
        "resolve",
        "alias",
        "--attribute",
        "transmission",
        "--alias",
        "poluautomatik",
        "--option",
        "automatic",
        "--actor",
        "night-shift",
    ]);
    assert!(
        alias.status.success(),
        "{}",
        String::from_utf8_lossy(&alias.stderr)
    );
    assert_eq!(json(&alias)["action"], "alias");

    let retried = run(&["backfill", "--retry-quarantine"]);
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    let report = json(&retried);
    assert_eq!(
        report["quarantined_before"].as_i64().expect("before")
            - report["quarantined_after"].as_i64().expect("after"),
        quarantined,
        "exactly the aliased values left the quarantine: {report}"
    );
    assert_eq!(
        spelled(&run(&["quarantine", "--attribute", "transmission"])),
        0
    );
    assert!(run(&["verify"]).status.success());
    let history = json(&run(&["resolve", "history"]));
    assert_eq!(history[0]["resolved_by"], "night-shift");
    assert_eq!(history[0]["detail"]["alias"], "poluautomatik");
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(1),
        "the refusal left no record"
    );
    let in_words = cli(&db, &["resolve", "history"], &dual);
    let in_words = String::from_utf8_lossy(&in_words.stdout);
    assert!(
        in_words.contains("night-shift")
            && in_words.contains("transmission: 'poluautomatik' means option"),
        "the history says what the resolution did, not its JSON: {in_words}"
    );
    assert!(
        in_words.contains('T') && in_words.contains('Z') && !in_words.contains('{'),
        "RFC 3339 times, no raw JSON: {in_words}"
    );

    // The same alias again, as users spelled it: one idempotent answer, nothing recorded.
    let again = run(&[
        "resolve",
        "alias",
        "--attribute",
        "transmission",
        "--alias",
        " PoluAutomatik ",
        "--option",
        "automatic",
    ]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(json(&again)["repeated"], true);
    // A move that matches nothing exits 1, names what is quarantined, and records nothing.
    let nothing = cli(
        &db,
        &[
            "resolve",
            "move",
            "--from",
            "transmission",
            "--to",
            "fuel_type",
            "--raw-value",
            "warp drive",
        ],
        &dual,
    );
    assert_eq!(
        nothing.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&nothing.stderr)
    );
    assert!(
        String::from_utf8_lossy(&nothing.stderr).contains("nothing moved or recorded"),
        "{}",
        String::from_utf8_lossy(&nothing.stderr)
    );
    // Acceptance: a filter or --all; then the walk to unified reads is open.
    let unfiltered = cli(
        &db,
        &["quarantine", "accept", "--actor", "night-shift"],
        &dual,
    );
    assert_eq!(unfiltered.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unfiltered.stderr).contains("--all"));
    let text = cli(&db, &["quarantine"], &dual);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("resolve: "),
        "each group names the command that resolves it: {}",
        String::from_utf8_lossy(&text.stdout)
    );
    let accepted = run(&["quarantine", "accept", "--all", "--actor", "night-shift"]);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let accepted = json(&accepted);
    assert_eq!(accepted["action"], "accept");
    let undone = run(&["resolve", "undo", &accepted["id"].to_string()]);
    assert!(
        undone.status.success(),
        "{}",
        String::from_utf8_lossy(&undone.stderr)
    );
    assert_eq!(json(&undone)["detail"]["undoes"], accepted["id"]);
    assert_eq!(
        json(&run(&["resolve", "history"])).as_array().map(Vec::len),
        Some(3),
        "the alias, the acceptance and its undo; the repeats and refusals left no record"
    );
}

/// The marketplace's own 2025-08 database, not the demo: `validate` finds its ids itself
/// (none of the demo's defaults exist there), passes, and writes to no user entity — also
/// after the marketplace hard-deleted a listing, whose unified values `sweep-orphans` removes.
#[test]
fn validate_passes_on_the_marketplaces_own_database_with_its_own_ids_and_writes_nothing() {
    const SCHEMA: &str = include_str!("../fixtures/legacy_2025_08/schema.sql");
    const DATA: &str = include_str!("../fixtures/legacy_2025_08/data.sql");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    let sql = |statement: &str| runtime.block_on(async { db.raw().await.execute(statement).await });
    sql(SCHEMA);
    sql(DATA);
    let dir = tempfile::tempdir().expect("temp dir");
    let vars = [
        ("DATABASE_URL", db.url.as_str()),
        ("ADMIN_API_TOKEN", "admin"),
        ("WRITER_API_TOKEN", "writer"),
        ("DUAL_WRITE_ATTRIBUTES", "true"),
    ];
    let (_service, address) = serve_with(dir.path(), &vars);
    let run = |args: &[&str]| cli(&db, args, &[]);
    assert!(run(&["backfill"]).status.success());
    assert!(run(&["verify"]).status.success());
    let texts = |statement: &str| runtime.block_on(async { db.raw().await.texts(statement).await });
    let deleted = texts(
        "SELECT CAST(MIN(entity_id) AS TEXT) FROM unified_attribute_values WHERE entity_type = 'listing'",
    )
    .into_iter()
    .flatten()
    .next()
    .expect("a migrated listing");
    // The listing's row only, as the marketplace's hard delete does (its values have no foreign
    // key to it). A delete of its value rows would be captured, and the service's capture would
    // take the unified values away within a second, racing the sweep this test is about.
    sql(&format!(
        "DELETE FROM marketplace_listings WHERE id = {deleted};"
    ));
    // Every user-owned value, in both stores, with its last change.
    let user_data = || {
        texts(
            "SELECT string_agg(row, ';' ORDER BY row) FROM (
                SELECT concat_ws(',', 'legacy', listing_id, attribute_id, text_value, numeric_value,
                    boolean_value, json_value::text, unit) AS row FROM listing_attribute_values
                UNION ALL
                SELECT concat_ws(',', entity_type, entity_id, attribute_id, text_value, numeric_value,
                    boolean_value, json_value::text, unit, updated_at) FROM unified_attribute_values
                UNION ALL
                SELECT concat_ws(',', 'product', id, attributes::text) FROM storefront_products
             ) r",
        )
    };
    let before = user_data();

    let (code, failed, skipped) = validate(&address, &db.url, &["--expect-phase", "dual_write"]);
    assert_eq!(
        (code, failed, skipped),
        (
            Some(0),
            vec![],
            vec!["integration.write_then_read".to_owned()]
        ),
        "passes on the marketplace's ids; the write check waits to be asked"
    );
    assert_eq!(user_data(), before, "validate wrote nothing");

    let swept = run(&["sweep-orphans", "--json"]);
    assert!(
        swept.status.success(),
        "{}",
        String::from_utf8_lossy(&swept.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&swept.stdout).expect("JSON");
    assert!(report["listing"].as_i64().expect("count") > 0, "{report}");
    assert_eq!(
        texts(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) FROM unified_attribute_values WHERE entity_id = {deleted}"
        )),
        [Some("0".to_owned())]
    );
}

/// A password given as a query parameter of the database URL (or in its user-info part) is
/// never printed: not by a subcommand's error, not by `serve`'s.
#[test]
fn a_database_password_in_any_part_of_the_url_is_never_printed() {
    let url = format!(
        "postgres://postgres:topsecret@127.0.0.1:{}/ua_no_such_database?password=hunter2&sslmode=disable",
        url_port()
    );
    for args in [&["verify"][..], &["serve", "--bind", "127.0.0.1:0"][..]] {
        let output = Command::new(BINARY)
            .args(args)
            .args(["--database-url", &url])
            .env_clear()
            .output()
            .expect("the binary runs");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "{args:?}: {printed}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("topsecret"),
            "{args:?} printed a password: {printed}"
        );
        assert!(
            printed.contains("postgres:***@") && printed.contains("password=***"),
            "{args:?} names the database it could not open: {printed}"
        );
    }
}

/// The port of the test PostgreSQL server.
fn url_port() -> u16 {
    let admin = common::postgres_admin_url();
    admin
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or(5432)
}

/// The Day-15 database (tests/fixtures/day15): `migrate plan` names the marketplace's own
/// unified tables and the foreign key into them and changes nothing; `migrate` prints the plan
/// and succeeds; with legacy tables its archive migration moved away, both refuse (exit 1 and
/// 2) with the way back.
#[test]
fn migrate_prints_the_plan_of_the_day_15_database_and_refuses_what_it_cannot_adopt() {
    const LEGACY: &str = include_str!("../fixtures/legacy_2025_08/schema.sql");
    const DATA: &str = include_str!("../fixtures/legacy_2025_08/data.sql");
    const MONOLITH: &str = include_str!("../fixtures/day15/monolith.sql");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let day15 = |archived: bool| {
        let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
        runtime.block_on(async {
            let raw = db.raw().await;
            for sql in [LEGACY, DATA, MONOLITH] {
                raw.execute(sql).await;
            }
            if archived {
                raw.execute(
                    "CREATE SCHEMA archive_legacy;
                     ALTER TABLE category_attributes SET SCHEMA archive_legacy;
                     ALTER TABLE listing_attribute_values SET SCHEMA archive_legacy;",
                )
                .await;
            }
        });
        db
    };
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    let db = day15(false);
    let plan = cli(&db, &["migrate", "plan", "--json"], &[]);
    assert!(plan.status.success(), "{}", text(&plan));
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("JSON");
    assert_eq!(
        json["monolith_tables"][2]["table"],
        "unified_attribute_values"
    );
    assert_eq!(json["monolith_tables"][2]["rows"], 8);
    let count = |sql: &str| runtime.block_on(async { db.raw().await.count(sql).await });
    assert_eq!(
        count("SELECT COUNT(*) FROM pg_namespace WHERE nspname = 'attributes'"),
        0,
        "the plan changes nothing"
    );
    let migrate = cli(&db, &["migrate"], &[]);
    assert!(migrate.status.success(), "{}", text(&migrate));
    let said = text(&migrate);
    for words in [
        "the marketplace's own unified tables",
        "public.unified_attributes (7 rows)",
        "variant_attribute_mappings.variant_attribute_id → unified_attributes",
        "applied 17 migration(s)",
    ] {
        assert!(said.contains(words), "{words:?} not in: {said}");
    }

    let db = day15(true);
    let plan = cli(&db, &["migrate", "plan"], &[]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    let migrate = cli(&db, &["migrate"], &[]);
    assert_eq!(migrate.status.code(), Some(1), "{}", text(&migrate));
    assert!(
        text(&migrate)
            .contains("ALTER TABLE archive_legacy.category_attributes SET SCHEMA public;"),
        "{}",
        text(&migrate)
    );
}
