//! The operations behind the subcommands: each prints a human report, or JSON with `--json`,
//! and returns an error that `main` turns into the exit code.
//!
//! One module per family of subcommands; what they share (the output, the errors that pick
//! the exit code, the connection that names its database) is here.

mod backfill;
mod legacy;
mod migrate;
mod quarantine;
mod runtime_flags;
mod throttle;

pub use backfill::{BackfillArgs, SweepArgs, VerifyArgs, backfill, sweep_orphans, verify};
pub use legacy::{ArchiveArgs, SyncArgs, archive, restore_archive, sync_legacy};
pub use migrate::{Direction, SeedArgs, migrate, seed_demo};
pub use quarantine::{QuarantineArgs, ResolveArgs, quarantine, resolve};
pub use runtime_flags::{FlagsArgs, flags};
pub use throttle::{ThrottleArgs, throttle};
use throttle::{ThrottleLimits, start_throttle};

use anyhow::{Context, bail};
use api::Settings;
use serde::Serialize;
use storage::Storage;
use storage::location::Place;

use crate::lease::Stop;

/// A check ran and found a problem, or a rule refused the step: exit code 1 (see `failure`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// A flag change refused, with every guardrail it breaks (exit 1; `--json` lists the rules).
#[derive(Debug)]
pub struct RulesBroken {
    pub rules: Vec<flags::GuardrailViolation>,
    /// The quarantine's refusal as the storage put it: what holds unified reads up.
    pub quarantine: Option<String>,
}

impl std::error::Error for RulesBroken {}

impl std::fmt::Display for RulesBroken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the flags were not changed: the change breaks {} guardrail(s)",
            self.rules.len()
        )?;
        for rule in &self.rules {
            match (rule, &self.quarantine) {
                (
                    flags::GuardrailViolation::UnifiedReadsHideQuarantinedValues,
                    Some(quarantine),
                ) => write!(f, "\n  - {quarantine}")?,
                _ => write!(f, "\n  - {}: {rule}", rule.rule())?,
            }
        }
        Ok(())
    }
}

/// A bulk operation stopped at a batch boundary before its end (Ctrl-C, SIGTERM, or its lease
/// taken over): exit code 130. What it committed stays; it resumes from its checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// How a command reports its result.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `report` as JSON, or the human text `human` writes.
    #[allow(clippy::print_stdout)] // the report is what the command is for
    pub fn report<T: Serialize>(
        self,
        report: &T,
        human: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{:#}", serde_json::to_value(report)?);
        } else {
            println!("{}", human(report));
        }
        REPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Whether a report went to stdout already: a failure after it (verify's drift, validate's
    /// failed checks) is told on stderr only, so stdout stays one JSON document.
    pub fn reported() -> bool {
        REPORTED.load(std::sync::atomic::Ordering::Relaxed)
    }
}

static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What a command may do with a database the operator may not have meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `seed-demo`: may create the embedded SQLite file, and fills an empty database.
    Creates,
    /// `migrate`: sets an empty database up on purpose; creates an SQLite file only when it is
    /// named (`--database-url`, `DATABASE_URL`), never the default one.
    SetsUp,
    /// Every other command: works on a database that this service or the marketplace set up.
    Operates,
}

/// Names the database on the command's first line, refuses one the command was not meant for
/// (before anything is created or migrated), and connects.
async fn connect(settings: &Settings, purpose: Purpose) -> anyhow::Result<Storage> {
    Ok(connect_as(settings, purpose).await?.0)
}

/// [`connect`], and the database as its first line named it.
pub async fn connect_as(
    settings: &Settings,
    purpose: Purpose,
) -> anyhow::Result<(Storage, String)> {
    let url = settings.database.url();
    let place = Place::of(&url, &settings.database.schema);
    if let Some(place) = &place {
        let named = settings.database.url.is_some();
        let may_create = purpose == Purpose::Creates || purpose == Purpose::SetsUp && named;
        if let Place::Sqlite {
            file,
            exists: false,
        } = &place
            && !may_create
        {
            bail!(
                "there is no database at {}: {} Name the marketplace's database with --database-url \
                 or DATABASE_URL; `seed-demo` creates the demo database",
                file.display(),
                if purpose == Purpose::SetsUp {
                    "migrate creates an SQLite file only when it is named, never the default one."
                } else {
                    "this command works on an existing database and creates none."
                }
            );
        }
        note(&format!("database: {place}"));
    }
    let storage = Storage::connect_with(
        &url,
        settings.database.pool(),
        &settings.database.topology(),
    )
    .await
    .with_context(|| format!("cannot open the database ({})", storage::redact_url(&url)))?;
    if purpose == Purpose::Operates {
        let contents = storage
            .contents()
            .await
            .context("cannot read what the database holds")?;
        if contents.is_foreign() {
            bail!(
                "this database has neither the marketplace's legacy attribute tables nor this \
                 service's: nothing was changed. Is --database-url / DATABASE_URL the marketplace's \
                 database? (`migrate` sets up an empty one on purpose.)"
            );
        }
    }
    let named = place.map_or_else(|| storage::redact_url(&url), |place| place.to_string());
    Ok((storage, named))
}

/// Connects and brings the schema up to date, as every data command needs.
async fn connect_migrated(settings: &Settings, purpose: Purpose) -> anyhow::Result<Storage> {
    let storage = connect(settings, purpose).await?;
    storage.migrate().await.context("migration failed")?;
    Ok(storage)
}

/// The flags in force: the stored runtime change, else the configured ones.
async fn flags_in_force(settings: &Settings, storage: &Storage) -> anyhow::Result<flags::Flags> {
    let configured = settings.flags.parse().context("invalid flag value")?;
    Ok(storage
        .stored_flags()
        .await?
        .map_or(configured, |stored| stored.flags))
}

/// The error of an operation stopped at a batch boundary, after `position` (what it did stays).
fn interrupted(stop: Stop, position: &str, resume: &str) -> anyhow::Error {
    Interrupted(match stop {
        Stop::Asked => format!("interrupted at {position}; run `{resume}` to resume"),
        Stop::LeaseLost => format!(
            "stopped at {position}: another run took the lease over (this one's heartbeat had stopped \
             for longer than the grace period); that run goes on from the checkpoint"
        ),
    })
    .into()
}

/// A line of progress that needs no bar.
#[allow(clippy::print_stderr)] // progress is part of the command's output
pub fn note(line: &str) {
    eprintln!("{line}");
}

/// Runs the post-deployment suite (its HTTP client needs an actix system of its own).
pub async fn validate(
    output: Output,
    args: crate::validate::ValidateArgs,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    let report_path = args.report.clone();
    let report = tokio::task::spawn_blocking(move || {
        actix_rt::System::new().block_on(crate::validate::run(args, database_url))
    })
    .await
    .context("the validation run stopped")?;
    if let Some(path) = report_path {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    output.report(&report, |report| {
        let mut text = format!(
            "validate {}: {} passed, {} failed, {} skipped",
            report.base_url, report.passed, report.failed, report.skipped
        );
        for check in &report.checks {
            text.push_str(&format!(
                "\n  {:<8} {:<12} {:<20} {:>6} ms  {}",
                format!("{:?}", check.outcome).to_uppercase(),
                check.category,
                check.name,
                check.millis,
                check.detail
            ));
        }
        text
    })?;
    if report.failed == 0 {
        Ok(())
    } else {
        Err(CheckFailed(format!(
            "{} of {} checks failed",
            report.failed,
            report.checks.len()
        ))
        .into())
    }
}
