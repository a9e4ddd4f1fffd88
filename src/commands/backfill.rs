//! `backfill` (and its retry of the quarantine), `verify` and `sweep-orphans`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use api::Settings;
use clap::Args;
use domain::EntityKind;
use storage::Storage;

use crate::lease::HeldLease;
use crate::progress::Progress;

use super::*;

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Entities per batch (one transaction each).
    #[arg(long, default_value_t = 1000)]
    batch_size: i64,
    /// Pause between batches, in milliseconds.
    #[arg(long, default_value_t = 0)]
    batch_delay: u64,
    /// Upper bound of legacy rows migrated per second (0: none).
    #[arg(long, default_value_t = 0)]
    max_rows_per_sec: u64,
    /// Start over from the first entity instead of the stored checkpoints.
    #[arg(long)]
    restart: bool,
    /// Stop after this many batches (the checkpoints keep the place).
    #[arg(long)]
    max_batches: Option<u64>,
    /// Migrate again only the entities with quarantined values (after options or labels were
    /// added to resolve them); the checkpoints are left as they are.
    #[arg(long, conflicts_with = "restart")]
    retry_quarantine: bool,
    #[command(flatten)]
    limits: ThrottleLimits,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Entities compared per page.
    #[arg(long, default_value_t = 1000)]
    page_size: i64,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Count what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs the backfill: definitions and bindings, then each entity kind batch by batch, with
/// progress on stderr and a summary on stdout.
pub async fn backfill(
    settings: &Settings,
    output: Output,
    args: &BackfillArgs,
    grace: Duration,
) -> anyhow::Result<()> {
    if args.batch_size < 1 {
        bail!("--batch-size must be at least 1");
    }
    let storage = connect_migrated(settings, Purpose::Operates).await?;
    let lease = HeldLease::take(&storage, "backfill", grace, true).await?;
    let result = backfill_leased(settings, output, args, &storage, &lease).await;
    lease.release().await;
    result
}

async fn backfill_leased(
    settings: &Settings,
    output: Output,
    args: &BackfillArgs,
    storage: &Storage,
    lease: &HeldLease,
) -> anyhow::Result<()> {
    let in_force = flags_in_force(settings, storage).await?;
    // Advice that holds in the phase it is given in: once archived, dual-write is refused too.
    if storage.migration_state().await?.archived {
        return Err(CheckFailed(
            "the legacy tables are archived: there is nothing to migrate from (restore-archive \
             first, if legacy must be copied again)"
                .into(),
        )
        .into());
    }
    if in_force.write_mode() == flags::WriteMode::UnifiedOnly {
        return Err(CheckFailed(
            "the flags in force write only to the unified store (DUAL_WRITE_ATTRIBUTES=false, \
             USE_UNIFIED_ATTRIBUTES=true): a backfill would overwrite those writes with legacy values; \
             turn dual-write on first"
                .into(),
        )
        .into());
    }
    // Flags from the environment reach the evidence here (runtime changes record their own).
    storage.note_write_mode(in_force.write_mode()).await?;
    if !in_force.dual_write {
        note(
            "dual-write is off: legacy-only writes can reach legacy behind this pass, so it is no \
             evidence for unified reads (turn dual-write on, then backfill again)",
        );
    }
    let started = Instant::now();
    let definitions = storage
        .backfill_definitions()
        .await
        .context("definitions backfill failed")?;
    if args.retry_quarantine {
        return retry_quarantine(storage, output, args, started, lease).await;
    }
    note(&format!(
        "definitions: {} attributes, {} bindings copied, {} bindings quarantined (their category or attribute does not exist)",
        definitions.attributes, definitions.bindings, definitions.quarantined_bindings
    ));
    if let Some(its) = &definitions.monolith {
        note(&format!(
            "the marketplace's own unified tables: {} definitions are legacy attributes, {} exist only there (adopted), {} bindings taken",
            its.matched, its.adopted, its.bindings
        ));
        for skipped in &its.skipped {
            note(&format!(
                "  not adopted (no unified type carries it): {skipped}"
            ));
        }
    }
    let catalog = storage.backfill_catalog().await?;
    let counts = storage.migration_counts().await?;
    let mut throttler = start_throttle(
        storage,
        storage::throttle::Operation::Backfill,
        &args.limits,
    )
    .await?;
    let mut batches = 0;
    let mut checkpoints = Vec::new();
    for (kind, label, total) in [
        (EntityKind::Listing, "listings:", counts.listings),
        (EntityKind::Product, "products:", counts.products),
        (EntityKind::ProductVariant, "variants:", counts.variants),
    ] {
        let run = KindRun { kind, label, total };
        let checkpoint = backfill_kind(
            storage,
            args,
            &catalog,
            &mut batches,
            &mut throttler,
            lease,
            run,
        )
        .await
        .map_err(|err| match err.downcast::<Interrupted>() {
            Ok(interrupted) => interrupted.into(),
            Err(err) => err.context(format!("{kind} batch failed")),
        })?;
        checkpoints.push(checkpoint);
    }
    throttler.finish().await?;
    let completed = checkpoints.iter().all(|checkpoint| checkpoint.completed);
    let seconds = started.elapsed().as_secs_f64();
    let throttled = throttler.waited.as_secs_f64();
    let summary = serde_json::json!({
        "definitions": definitions.attributes, "bindings": definitions.bindings,
        "quarantined_bindings": definitions.quarantined_bindings, "entities": checkpoints,
        "batches": batches, "seconds": seconds, "throttled_seconds": throttled,
        "completed": completed,
    });
    output.report(&summary, |_| {
        let mut text = format!(
            "backfill {} in {seconds:.1} s ({batches} batches, {throttled:.1} s throttled); quarantined values are listed in backfill_quarantine",
            if completed { "complete" } else { "paused" },
        );
        for checkpoint in &checkpoints {
            text.push_str(&format!(
                "\n  {:<16} {:>10} values migrated {:>8} quarantined{}",
                checkpoint.entity_type,
                checkpoint.migrated,
                checkpoint.quarantined,
                if checkpoint.completed { "" } else { "  (not finished)" }
            ));
        }
        text
    })
}

/// `backfill --retry-quarantine`: every entity with quarantined values is migrated again from
/// legacy, batch by batch; the report gives the quarantine before and after, by reason.
async fn retry_quarantine(
    storage: &Storage,
    output: Output,
    args: &BackfillArgs,
    started: Instant,
    lease: &HeldLease,
) -> anyhow::Result<()> {
    let before = storage.quarantine_by_reason(1_000).await?;
    let catalog = storage.backfill_catalog().await?;
    let mut retried = 0;
    let mut migrated = 0;
    for kind in EntityKind::ALL {
        let mut after = 0;
        loop {
            if let Some(stop) = lease.stop() {
                return Err(interrupted(
                    stop,
                    &format!("{kind} id {after}"),
                    "backfill --retry-quarantine",
                ));
            }
            let (Some(last), done, _) = storage
                .retry_quarantined(kind, after, args.batch_size, &catalog)
                .await
                .with_context(|| format!("{kind} retry failed"))?
            else {
                break;
            };
            after = last;
            retried += 1;
            migrated += done;
            note(&format!(
                "{kind}: retried up to id {last}, {migrated} values migrated so far"
            ));
        }
    }
    let after = storage.quarantine_by_reason(1_000).await?;
    let total =
        |counts: &[storage::backfill::QuarantineCount]| counts.iter().map(|c| c.count).sum::<i64>();
    let report = serde_json::json!({
        "batches": retried, "values_migrated": migrated,
        "quarantined_before": total(&before), "quarantined_after": total(&after),
        "quarantine": after, "seconds": started.elapsed().as_secs_f64(),
    });
    output.report(&report, |_| {
        let mut text = format!(
            "quarantine retried: {} → {} quarantined values ({migrated} migrated); run verify next",
            total(&before),
            total(&after)
        );
        for count in &after {
            text.push_str(&format!(
                "\n  {:<16} {:>8}  {}",
                count.entity_type, count.count, count.reason
            ));
        }
        text
    })
}

/// One entity kind of a backfill run: which, its progress label, how many entities it has.
struct KindRun {
    kind: EntityKind,
    label: &'static str,
    total: i64,
}

/// Backfills one entity kind from its checkpoint, throttled, until done or out of batches.
async fn backfill_kind(
    storage: &Storage,
    args: &BackfillArgs,
    catalog: &HashMap<String, domain::Attribute>,
    batches: &mut u64,
    throttler: &mut crate::throttle::Throttler<'_>,
    lease: &HeldLease,
    KindRun { kind, label, total }: KindRun,
) -> anyhow::Result<storage::backfill::Checkpoint> {
    let started = Instant::now();
    let mut checkpoint = storage.backfill_checkpoint(kind, args.restart).await?;
    let progress = Progress::new(label, total.max(0) as u64);
    let (migrated_before, quarantined_before) = (checkpoint.migrated, checkpoint.quarantined);
    // Where a resumed run starts: the entities up to its checkpoint are done already.
    let mut done = storage.entities_up_to(kind, checkpoint.last_id).await?;
    // Statistics are refreshed each time the migrated rows double: a handful of ANALYZEs per run.
    let mut analyzed_at = 0;
    while !checkpoint.completed && args.max_batches.is_none_or(|max| *batches < max) {
        if checkpoint.migrated > 2 * analyzed_at {
            storage.analyze_unified_values().await?;
            analyzed_at = checkpoint.migrated.max(1);
        }
        throttler.wait_turn(|line| progress.note(line)).await?;
        if let Some(stop) = lease.stop() {
            progress.finish();
            return Err(interrupted(
                stop,
                &format!("{kind} id {}", checkpoint.last_id),
                "backfill",
            ));
        }
        let batch_started = Instant::now();
        // Unpaced, two batches run side by side (one connection each, committed in order);
        // a pace is kept batch by batch.
        let paced = args.batch_delay > 0 || args.max_rows_per_sec > 0;
        let side_by_side = !paced && args.max_batches.is_none_or(|max| *batches + 2 <= max);
        let committed = if side_by_side {
            storage
                .backfill_two_batches(kind, &checkpoint, args.batch_size, catalog)
                .await?
        } else {
            vec![
                storage
                    .backfill_batch(kind, &checkpoint, args.batch_size, catalog)
                    .await?,
            ]
        };
        let mut rows = 0;
        for next in committed {
            rows +=
                (next.migrated + next.quarantined) - (checkpoint.migrated + checkpoint.quarantined);
            checkpoint = next;
            *batches += 1;
            done += args.batch_size;
            let rows_done = (checkpoint.migrated + checkpoint.quarantined
                - migrated_before
                - quarantined_before) as f64;
            progress.step(
                if checkpoint.completed {
                    total
                } else {
                    done.min(total)
                }
                .max(0) as u64,
                format!(
                    "up to id {} ({} migrated, {} quarantined, {:.0} rows/s)",
                    checkpoint.last_id,
                    checkpoint.migrated,
                    checkpoint.quarantined,
                    rows_done / started.elapsed().as_secs_f64().max(0.001),
                ),
            );
        }
        let mut pause = Duration::from_millis(args.batch_delay);
        if args.max_rows_per_sec > 0 {
            let budget = Duration::from_secs_f64(rows as f64 / args.max_rows_per_sec as f64);
            pause = pause.max(budget.saturating_sub(batch_started.elapsed()));
        }
        if !pause.is_zero() && !checkpoint.completed {
            tokio::time::sleep(pause).await;
        }
    }
    progress.finish();
    Ok(checkpoint)
}

/// Compares both stores entity by entity; drift exits with 1.
pub async fn verify(settings: &Settings, output: Output, args: &VerifyArgs) -> anyhow::Result<()> {
    if args.page_size < 1 {
        bail!("--page-size must be at least 1");
    }
    let storage = connect_migrated(settings, Purpose::Operates).await?;
    let counts = storage.migration_counts().await?;
    let total = counts.listings + counts.products + counts.variants;
    let started = Instant::now();
    let progress = Progress::new("verified", total.max(0) as u64);
    let report = storage
        .verify(args.page_size, |report| {
            progress.step(
                report.checked as u64,
                format!(
                    "{} of {total} entities, {} drifted",
                    report.checked, report.drifted
                ),
            );
        })
        .await
        .context("verify failed")?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    output.report(&report, |report| {
        let mut text = format!(
            "{} entities checked in {seconds:.1} s: {} drifted; {} quarantined legacy values left out",
            report.checked, report.drifted, report.quarantined
        );
        for (kind, counts) in &report.kinds {
            text.push_str(&format!(
                "\n  {kind:<16} {:>9} checked {:>6} drifted  values legacy {} / unified {}",
                counts.checked,
                counts.drifted,
                counts.legacy_values_by_code.values().sum::<i64>(),
                counts.unified_values_by_code.values().sum::<i64>(),
            ));
            if counts.monolith_values > 0 {
                text.push_str(&format!(
                    "\n  {:<16} the marketplace's unified table: {} values ({} the same as legacy's, \
                     {} in conflict: one kept, the other quarantined), counted with legacy's",
                    "",
                    counts.monolith_values,
                    counts.monolith_same_as_legacy,
                    counts.monolith_conflicts
                ));
            }
        }
        for drift in &report.drift {
            text.push_str(&format!(
                "\n  {} {}: only in legacy {:?}, only in unified {:?}, different {:?}",
                drift.entity_type,
                drift.entity_id,
                drift.missing_in_unified,
                drift.missing_in_legacy,
                drift.different
            ));
        }
        text
    })?;
    if report.checked == 0 {
        Err(CheckFailed(
            "nothing was verified: 0 entities in this database. A verify over nothing is not a pass \
             (is this the marketplace's database? has `backfill` run?)"
                .into(),
        )
        .into())
    } else if report.is_clean() {
        Ok(())
    } else {
        Err(CheckFailed(format!(
            "{} of {} entities differ between the stores",
            report.drifted, report.checked
        ))
        .into())
    }
}

pub async fn sweep_orphans(
    settings: &Settings,
    output: Output,
    args: &SweepArgs,
    grace: Duration,
) -> anyhow::Result<()> {
    let storage = connect_migrated(settings, Purpose::Operates).await?;
    let lease = HeldLease::take(&storage, "sweep-orphans", grace, false).await?;
    let orphans = storage.sweep_orphans(args.dry_run).await;
    lease.release().await;
    let orphans = orphans.context("sweep-orphans failed")?;
    output.report(&orphans, |o| {
        format!(
            "{} unified values of deleted entities {} (listings {}, products {}, variants {})",
            o.total(),
            if args.dry_run {
                "would be removed"
            } else {
                "removed"
            },
            o.listing,
            o.product,
            o.product_variant
        )
    })
}
