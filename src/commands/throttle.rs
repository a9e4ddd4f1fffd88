//! `throttle`: pause, resume and limit the bulk operations.

use anyhow::bail;
use api::Settings;
use clap::Args;
use storage::Storage;

use super::*;

/// Throttle limits given when an operation starts; stored, so `throttle` can change them
/// while it runs.
#[derive(Debug, Args)]
pub struct ThrottleLimits {
    /// Wait before a batch while a read replica's replay lag exceeds this (DATABASE_READ_URL).
    #[arg(long)]
    max_lag_ms: Option<i64>,
    /// Wait before a batch while the primary runs more statements than this at once.
    #[arg(long)]
    max_load: Option<i64>,
}

/// `throttle`: shows an operation's throttle; changes it first when told to.
#[derive(Debug, Args)]
pub struct ThrottleArgs {
    /// `backfill` or `sync-legacy`.
    #[arg(default_value = "backfill")]
    operation: storage::throttle::Operation,
    /// Hold the operation before its next batch until `--resume`.
    #[arg(long, conflicts_with = "resume")]
    pause: bool,
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    limits: ThrottleLimits,
    /// Remove the replay lag limit.
    #[arg(long, conflicts_with = "max_lag_ms")]
    no_max_lag: bool,
    /// Remove the load limit.
    #[arg(long, conflicts_with = "max_load")]
    no_max_load: bool,
    /// Who changes it, for the record.
    #[arg(long, default_value = "cli")]
    actor: String,
}

impl ThrottleLimits {
    fn change(&self) -> anyhow::Result<storage::throttle::ThrottleChange> {
        for (name, limit) in [
            ("--max-lag-ms", self.max_lag_ms),
            ("--max-load", self.max_load),
        ] {
            if limit.is_some_and(|limit| limit < 1) {
                bail!("{name} must be at least 1");
            }
        }
        Ok(storage::throttle::ThrottleChange {
            paused: None,
            max_lag_ms: self.max_lag_ms.map(Some),
            max_load: self.max_load.map(Some),
        })
    }
}

/// Shows (after changing, if told) the throttle of a bulk operation.
pub async fn throttle(
    settings: &Settings,
    output: Output,
    args: &ThrottleArgs,
) -> anyhow::Result<()> {
    let mut change = args.limits.change()?;
    if args.pause || args.resume {
        change.paused = Some(args.pause);
    }
    if args.no_max_lag {
        change.max_lag_ms = Some(None);
    }
    if args.no_max_load {
        change.max_load = Some(None);
    }
    let storage = connect_migrated(settings, Purpose::Operates).await?;
    let throttle = apply_throttle(&storage, args.operation, change, &args.actor).await?;
    output.report(&throttle, |t| {
        let limit = |value: Option<i64>, unit: &str| {
            value.map_or_else(|| "none".to_owned(), |v| format!("{v}{unit}"))
        };
        format!(
            "{}: {}; max lag {}, max load {}{}{}",
            args.operation.command(),
            if t.paused { "paused" } else { "not paused" },
            limit(t.max_lag_ms, " ms"),
            limit(t.max_load, " active backends"),
            if t.updated_by.is_empty() {
                String::new()
            } else {
                format!(" (set by {})", t.updated_by)
            },
            t.throttled.as_ref().map_or_else(String::new, |why| format!(
                "\nthe running operation waits: {why}"
            )),
        )
    })
}

/// The operation's throttle after `change` (read only when the change names nothing).
async fn apply_throttle(
    storage: &Storage,
    operation: storage::throttle::Operation,
    change: storage::throttle::ThrottleChange,
    actor: &str,
) -> anyhow::Result<storage::throttle::Throttle> {
    Ok(if change == storage::throttle::ThrottleChange::default() {
        storage.throttle(operation).await?
    } else {
        storage.change_throttle(operation, change, actor).await?
    })
}

/// Stores the limits an operation was started with, and says when it starts paused.
pub(super) async fn start_throttle<'a>(
    storage: &'a Storage,
    operation: storage::throttle::Operation,
    limits: &ThrottleLimits,
) -> anyhow::Result<crate::throttle::Throttler<'a>> {
    let throttle =
        apply_throttle(storage, operation, limits.change()?, operation.command()).await?;
    if throttle.max_lag_ms.is_some() && storage.replicas().is_empty() {
        note(
            "--max-lag-ms is set but no read replica is configured (DATABASE_READ_URL): it has nothing to measure",
        );
    }
    if throttle.paused {
        note(&format!(
            "{} is paused (by {}): it waits until `throttle {} --resume`",
            operation.command(),
            throttle.updated_by,
            operation.command()
        ));
    }
    Ok(crate::throttle::Throttler::new(storage, operation))
}
