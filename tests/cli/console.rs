//! The migration console in a real browser (headless Chromium): it renders the status of a
//! service whose backfill runs, and the backfill's position moves on the page. Chromium is
//! required, never skipped (`.ci/run` installs it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Backend, TestDb};
use crate::{cli, serve_with, slow_backfill};

const TOKEN: &str = "console-admin";

/// The page as Chromium renders it once its script has fetched the status.
fn rendered(url: &str) -> String {
    let profile = tempfile::tempdir().expect("a profile directory");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=1500",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("chromium is required for this test (Debian package chromium): {e}")
        });
    assert!(output.status.success(), "chromium failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The listing row's `data-percent`, as rendered.
fn listing_percent(dom: &str) -> Option<f64> {
    let row = dom.find("data-kind=\"listing\"")?;
    let rest = &dom[row..];
    let start = rest.find("data-percent=\"")? + "data-percent=\"".len();
    rest[start..].split('"').next()?.parse().ok()
}

#[test]
fn the_console_shows_the_phase_and_a_running_backfill_moving_in_a_browser() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::fresh(Backend::Postgres));
    assert!(
        cli(&db, &["seed-demo", "--listings", "3000"], &[])
            .status
            .success()
    );
    assert!(cli(&db, &["flags", "promote"], &[]).status.success());
    let dir = tempfile::tempdir().expect("temp dir");
    let (_service, address) = serve_with(
        dir.path(),
        &[("DATABASE_URL", &db.url), ("ADMIN_API_TOKEN", TOKEN)],
    );
    let page = format!("{address}/console#token={TOKEN}");

    let before = rendered(&page);
    assert!(before.contains("data-phase=\"dual_write\""), "{before}");
    assert!(before.contains("Running: no bulk operation"), "{before}");
    assert_eq!(listing_percent(&before), Some(0.0), "{before}");

    let mut backfill = slow_backfill(&db);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < 2 && Instant::now() < deadline {
        let dom = rendered(&page);
        if let Some(percent) = listing_percent(&dom).filter(|p| *p > 0.0 && *p < 100.0)
            && dom.contains("Running: backfill")
            && seen.last() != Some(&percent)
        {
            seen.push(percent);
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "the page showed the backfill moving: {seen:?}"
    );
    assert!(seen[0] < seen[1], "{seen:?}");
    assert!(backfill.0.wait().expect("the backfill ends").success());

    let after = rendered(&page);
    assert_eq!(listing_percent(&after), Some(100.0), "{after}");
    assert!(after.contains("completed"), "{after}");
    // Without the token the page asks for it and shows nothing of the status.
    let anonymous = rendered(&format!("{address}/console"));
    assert!(anonymous.contains("id=\"status\" hidden"), "{anonymous}");
}
