//! `status`: the migration at a glance (see `storage::status`), once or refreshed with
//! `--watch`, as text or JSON. Read only: it changes nothing, not even the schema.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use api::Settings;
use clap::Args;
use storage::status::{KindProgress, Status};

use crate::commands::{self, Output, Purpose};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Refresh every SECONDS (2 when given alone) until Ctrl-C; the backfill's rate and time
    /// left are measured between refreshes.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    watch: Option<u64>,
    /// How long the archive waits after the switch to the unified phase (as `archive`;
    /// default: the setting `migration.archive_soak_hours`, `ARCHIVE_SOAK_HOURS`, 24).
    #[arg(long, value_name = "HOURS")]
    soak_hours: Option<u32>,
}

pub async fn status(settings: &Settings, output: Output, args: &StatusArgs) -> anyhow::Result<()> {
    let (storage, place) = commands::connect_as(settings, Purpose::Operates).await?;
    let pending = storage.pending_migrations().await?;
    if pending > 0 {
        bail!(
            "this database's schema lacks {pending} of this binary's migrations: run `migrate` \
             (`migrate plan` says what it would do), or use the binary that set it up"
        );
    }
    let configured = settings.flags.parse().context("invalid flag value")?;
    let soak = settings.migration.archive_soak_or(args.soak_hours);
    let mut previous: Option<(Instant, Status)> = None;
    loop {
        let now = Instant::now();
        let status = storage
            .status(configured, place.clone(), soak)
            .await
            .context("the status could not be read")?;
        let rates = previous
            .as_ref()
            .map(|(then, before)| rates(before, &status, now.duration_since(*then)));
        if args.watch.is_some() && !output.json && std::io::stdout().is_terminal() {
            // Redraw in place, as `watch` does.
            print_raw("\x1b[2J\x1b[H");
        }
        output.report(&status, |status| text(status, rates.as_deref()))?;
        let Some(every) = args.watch else {
            return Ok(());
        };
        previous = Some((now, status));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(every)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[allow(clippy::print_stdout)] // a terminal control sequence, part of the redraw
fn print_raw(text: &str) {
    print!("{text}");
}

/// One kind's entities per second between two readings, and the time left at that rate.
type Rate = Option<(f64, Option<Duration>)>;

/// [`Rate`] per kind, in the status's order.
fn rates(before: &Status, now: &Status, elapsed: Duration) -> Vec<Rate> {
    now.backfill
        .iter()
        .zip(&before.backfill)
        .map(|(now, before)| {
            let (Some(done), Some(done_before), Some(all)) = (now.done, before.done, now.entities)
            else {
                return None;
            };
            let rate = (done - done_before) as f64 / elapsed.as_secs_f64().max(0.001);
            let left = (rate > 0.0).then(|| Duration::from_secs_f64((all - done) as f64 / rate));
            Some((rate, left))
        })
        .collect()
}

fn text(status: &Status, rates: Option<&[Rate]>) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("database: {}", status.database));
    match (status.phase, &status.guardrail) {
        (Some(phase), _) => line(format!("phase: {phase}")),
        (None, Some(rule)) => line(format!("phase: none — the flags in force break {rule}")),
        (None, None) => line("phase: none".into()),
    }
    let f = &status.flags;
    line(format!(
        "flags: dual_write={} use_unified={} unified_percent={} fallback={} shadow_percent={} — {}",
        f.dual_write,
        f.use_unified,
        f.unified_percent,
        f.fallback,
        f.shadow_percent,
        status.flags_source
    ));
    line(format!(
        "rung: {}",
        status
            .rung
            .map_or("none (flags set by hand)".to_owned(), |r| r.to_string())
    ));
    match &status.next {
        Some(next) => match &next.blocked_by {
            None => line(format!(
                "next: {} → {} (allowed now)",
                next.command, next.to
            )),
            Some(blocker) => line(format!(
                "next: {} → {} — refused now by {}: {}",
                next.command, next.to, blocker.rule, blocker.message
            )),
        },
        None => line("next: nothing — the legacy tables are archived".into()),
    }
    line("evidence:".into());
    for fact in &status.evidence {
        line(format!(
            "  [{}] {:<22} for {}{}",
            if fact.met { "x" } else { " " },
            fact.fact,
            fact.needed_for,
            if fact.met {
                String::new()
            } else {
                format!(" — supply: {}", fact.supply)
            }
        ));
    }
    match &status.operation {
        Some(holder) => line(format!(
            "running: {} (pid {} on {}, heartbeat {:.1} s ago)",
            holder.operation, holder.pid, holder.host, holder.heartbeat_age_seconds
        )),
        None => line("running: no bulk operation".into()),
    }
    line("backfill:".into());
    for (i, kind) in status.backfill.iter().enumerate() {
        let rate = rates.and_then(|r| r.get(i).copied().flatten());
        line(format!("  {}", progress_line(kind, rate)));
    }
    for throttle in &status.throttles {
        let mut parts = Vec::new();
        if throttle.paused {
            parts.push("paused".to_owned());
        }
        if let Some(why) = &throttle.throttled {
            parts.push(format!("waiting: {why}"));
        }
        if let Some(lag) = throttle.max_lag_ms {
            parts.push(format!("max lag {lag} ms"));
        }
        if let Some(load) = throttle.max_load {
            parts.push(format!("max load {load}"));
        }
        if !parts.is_empty() {
            line(format!(
                "throttle {}: {}",
                throttle.operation,
                parts.join(", ")
            ));
        }
    }
    let q = &status.quarantine;
    line(format!(
        "quarantine: {} values ({} seen by users, {} accepted)",
        q.total, q.seen_by_users, q.accepted
    ));
    for reason in &q.by_reason {
        line(format!(
            "  {:<16} {:<40} {}",
            reason.entity_type, reason.reason, reason.count
        ));
    }
    if !q.blocking_cut_over.is_empty() {
        let blocking: Vec<String> = q
            .blocking_cut_over
            .iter()
            .map(|u| format!("{} ({}) {}", u.attribute_code, u.kind, u.count))
            .collect();
        line(format!(
            "  blocking unified reads without fallback: {}",
            blocking.join(", ")
        ));
    }
    match &status.last_verify {
        Some(v) => line(format!(
            "last verify: {} — {} checked, {} drifted",
            v.finished_at, v.checked, v.drifted
        )),
        None => line("last verify: never".into()),
    }
    if let Some(seconds) = status.unified_for_seconds {
        line(format!(
            "unified phase for: {}",
            storage::soak::human(Duration::from_secs_f64(seconds))
        ));
    }
    line("flag changes:".into());
    if status.flag_changes.is_empty() {
        line("  none at runtime (the flags are the configured ones)".into());
    }
    for change in &status.flag_changes {
        line(format!(
            "  {} {}: {} → {}",
            change.changed_at, change.changed_by, change.old_phase, change.new_phase
        ));
    }
    if status.replicas.is_empty() {
        line("replicas: none configured".into());
    }
    for replica in &status.replicas {
        line(format!(
            "replica {}: {}{}",
            replica.name,
            replica.state,
            replica
                .lag_ms
                .map_or(String::new(), |lag| format!(", lag {lag} ms"))
        ));
    }
    out.trim_end().to_owned()
}

fn progress_line(kind: &KindProgress, rate: Rate) -> String {
    let position = match (kind.done, kind.entities, kind.percent) {
        (Some(done), Some(all), Some(percent)) => format!("{done} of {all} ({percent:.1} %)"),
        _ => format!("up to id {}", kind.last_id),
    };
    let state = if kind.completed {
        "completed".to_owned()
    } else if kind.last_id == 0 {
        "not started".to_owned()
    } else {
        "in progress".to_owned()
    };
    let speed = match rate {
        Some((rate, Some(left))) if rate > 0.0 => {
            format!(", {rate:.0}/s, {} left", storage::soak::human(left))
        }
        Some((rate, None)) if !kind.completed => format!(", {rate:.0}/s"),
        _ => String::new(),
    };
    format!(
        "{:<16} {position}: {state}; {} values migrated, {} quarantined{speed}",
        kind.kind, kind.migrated, kind.quarantined
    )
}
