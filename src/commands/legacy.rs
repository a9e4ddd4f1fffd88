//! The legacy tables' end of the migration: `sync-legacy`, `archive`, `restore-archive`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use api::Settings;
use clap::Args;
use storage::Storage;

use crate::lease::HeldLease;
use crate::progress::Progress;

use super::*;

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Entities per batch (one transaction each).
    #[arg(long, default_value_t = 1000)]
    batch_size: i64,
    /// Report per entity kind what the sync would insert, update and delete, and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    limits: ThrottleLimits,
}

/// Copies unified back to legacy, with the flags in force deciding whether that is safe.
pub async fn sync_legacy(
    settings: &Settings,
    output: Output,
    args: &SyncArgs,
    grace: Duration,
) -> anyhow::Result<()> {
    let storage = connect_migrated(settings, Purpose::Operates).await?;
    // Stopping a sync between batches would leave legacy half-synced with "pending" still
    // set: Ctrl-C ends it as before and the next run redoes it.
    let lease = HeldLease::take(&storage, "sync-legacy", grace, false).await?;
    let result = sync_legacy_leased(settings, output, args, &storage).await;
    lease.release().await;
    result
}

async fn sync_legacy_leased(
    settings: &Settings,
    output: Output,
    args: &SyncArgs,
    storage: &Storage,
) -> anyhow::Result<()> {
    let in_force = flags_in_force(settings, storage).await?;
    let counts = storage.migration_counts().await?;
    let total = counts.listings + counts.products + counts.variants;
    let started = Instant::now();
    let progress = Progress::new("synced", total.max(0) as u64);
    let mut throttler = start_throttle(
        storage,
        storage::throttle::Operation::SyncLegacy,
        &args.limits,
    )
    .await?;
    let mut throttle_failed = None;
    let report = storage
        .sync_legacy(
            in_force.write_mode(),
            args.batch_size.max(1),
            args.dry_run,
            async |synced| {
                progress.step(synced as u64, format!("{synced} of {total} entities"));
                if throttle_failed.is_none()
                    && let Err(err) = throttler.wait_turn(|line| progress.note(line)).await
                {
                    throttle_failed = Some(err);
                }
            },
        )
        .await
        .context("sync-legacy failed")?;
    progress.finish();
    if let Some(err) = throttle_failed {
        return Err(err.context("sync-legacy ran unthrottled after its throttle failed"));
    }
    throttler.finish().await?;
    let seconds = started.elapsed().as_secs_f64();
    output.report(&report, |report| {
        if report.nothing_to_sync {
            return "nothing to sync: no write has reached only the unified store since the last sync; \
                    legacy was left as it is"
                .to_owned();
        }
        let mut text = format!(
            "{} {} entities in {seconds:.1} s; {} definitions added to legacy",
            if report.dry_run { "dry run: would sync" } else { "synced" },
            report.entities,
            report.definitions_inserted
        );
        for (kind, counts) in &report.kinds {
            text.push_str(&format!(
                "\n  {kind:<16} {:>8} inserted {:>8} updated {:>8} deleted {:>8} kept (quarantined, unreadable or unknown to unified)",
                counts.inserted, counts.updated, counts.deleted, counts.kept
            ));
            for refused in &counts.refused {
                text.push_str(&format!(
                    "\n    legacy refused {kind} {}: {}",
                    refused.id, refused.reason
                ));
            }
        }
        text.push_str(if report.dry_run {
            "\nnothing was changed"
        } else if report.complete {
            "\nlegacy is up to date: reads may go back to legacy"
        } else {
            "\nwrites reached only unified while the sync ran: legacy may be behind them; run sync-legacy again"
        });
        text
    })?;
    let refused: usize = report.kinds.values().map(|c| c.entities_refused).sum();
    if report.complete || report.dry_run {
        Ok(())
    } else if refused > 0 {
        Err(CheckFailed(format!(
            "legacy refused the values of {refused} entities (listed above): they stay as they were \
             and legacy is not up to date; fix what refuses them, then run sync-legacy again"
        ))
        .into())
    } else {
        Err(CheckFailed("legacy is not yet up to date: run sync-legacy again".into()).into())
    }
}

fn manifest_text(manifest: &storage::archive::Manifest) -> String {
    let mut text = format!(
        "manifest {} ({}, phase {}, {}):",
        manifest.id, manifest.action, manifest.phase, manifest.recorded_at
    );
    if let Some(waiver) = &manifest.waiver {
        text.push_str(&format!("\n  {waiver}"));
    }
    for table in &manifest.tables {
        text.push_str(&format!(
            "\n  {:<36} {:>10} rows  checksum {}",
            table.table, table.rows, table.checksum
        ));
    }
    text
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Say who still uses the legacy tables (writes that bypassed the service, PostgreSQL's
    /// counters, other sessions naming them) and what would move; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// How long the unified phase must have served before the archive (as the flag audit
    /// tells); 0 waits for nothing. Default: the setting `migration.archive_soak_hours`
    /// (`ARCHIVE_SOAK_HOURS`, 24).
    #[arg(long, value_name = "HOURS")]
    soak_hours: Option<u32>,
    /// Archive before the soak is over; needs --reason.
    #[arg(long, requires = "reason")]
    now: bool,
    /// Why the soak is waived, kept in the manifest with --actor.
    #[arg(long, value_name = "TEXT", requires = "now")]
    reason: Option<String>,
    /// Who archives, for the manifest.
    #[arg(long, default_value = "cli")]
    actor: String,
}

impl ArchiveArgs {
    fn soak(&self, settings: &Settings) -> anyhow::Result<storage::soak::Soak> {
        let waived = match &self.reason {
            Some(reason) if reason.trim().is_empty() => {
                bail!("--reason needs the reason the soak is waived")
            }
            Some(reason) => Some(storage::soak::Waiver {
                actor: self.actor.clone(),
                reason: reason.trim().to_owned(),
            }),
            None => None,
        };
        Ok(storage::soak::Soak {
            at_least: settings.migration.archive_soak_or(self.soak_hours),
            waived,
        })
    }
}

fn usage_text(usage: &storage::usage::LegacyUsage) -> String {
    let mut text = format!(
        "who still uses the legacy tables:\n  writes that bypassed the service: {} in the last hour, {} in the last day (last {})",
        usage.direct_writes_last_hour,
        usage.direct_writes_last_day,
        usage.last_direct_write_at.as_deref().unwrap_or("never")
    );
    if !usage.tables.is_empty() {
        text.push_str(
            "\n  since PostgreSQL's statistics were reset (all sessions, this service's too):",
        );
        for table in &usage.tables {
            text.push_str(&format!(
                "\n    {:<34} {:>10} scans {:>10} rows written",
                table.table, table.reads, table.writes
            ));
        }
    }
    if usage.sessions.is_empty() {
        text.push_str("\n  no other session names them now");
    } else {
        text.push_str("\n  other sessions whose current or last statement names them:");
        for session in &usage.sessions {
            text.push_str(&format!(
                "\n    {} from {} as {} ({}, since {}): {}",
                session.application,
                session.client,
                session.user_name,
                session.state,
                session.since.as_deref().unwrap_or("?"),
                session.statement
            ));
        }
    }
    text
}

pub async fn archive(
    settings: &Settings,
    output: Output,
    args: &ArchiveArgs,
    grace: Duration,
) -> anyhow::Result<()> {
    let soak = args.soak(settings)?;
    let storage = connect_migrated(settings, Purpose::Operates).await?;
    let configured = settings.flags.parse().context("invalid flag value")?;
    if args.dry_run {
        let usage = storage.legacy_usage().await.context("legacy usage")?;
        let would = storage.archive_dry_run(configured, &soak).await;
        let report = serde_json::json!({
            "usage": usage,
            "would_move": would.as_ref().ok(),
            "refused": would.as_ref().err().map(ToString::to_string),
        });
        output.report(&report, |_| {
            let plan = match &would {
                Ok(manifest) => format!("archive would move:\n{}", manifest_text(manifest)),
                Err(refused) => format!("archive would be refused: {refused}"),
            };
            format!("{}\n{plan}", usage_text(&usage))
        })?;
        return match would {
            Ok(_) => Ok(()),
            Err(refused) => Err(CheckFailed(format!("archive would be refused: {refused}")).into()),
        };
    }
    let lease = HeldLease::take(&storage, "archive", grace, false).await?;
    let manifest = storage.archive_after(configured, &soak).await;
    lease.release().await;
    let manifest = manifest.context("archive refused")?;
    output.report(&manifest, |manifest| {
        format!(
            "legacy tables archived; restore-archive moves them back.\n{}",
            manifest_text(manifest)
        )
    })
}

pub async fn restore_archive(
    settings: &Settings,
    output: Output,
    grace: Duration,
) -> anyhow::Result<()> {
    let storage = connect_migrated(settings, Purpose::Operates).await?;
    let configured = settings.flags.parse().context("invalid flag value")?;
    let lease = HeldLease::take(&storage, "restore-archive", grace, false).await?;
    let restored = storage.restore_archive(configured).await;
    lease.release().await;
    let (manifest, unchanged) = restored.context("restore-archive failed")?;
    let report = serde_json::json!({"manifest": manifest, "matches_archive_manifest": unchanged});
    output.report(&report, |_| {
        format!(
            "legacy tables restored{}.\n{}",
            if unchanged {
                ", exactly as archived"
            } else {
                ", BUT the archive differs from its manifest"
            },
            manifest_text(&manifest)
        )
    })?;
    if unchanged {
        Ok(())
    } else {
        Err(CheckFailed(
            "the archive no longer matched the archive manifest; compare the two manifests".into(),
        )
        .into())
    }
}
