//! The operations behind the subcommands: each prints a human report, or JSON with `--json`,
//! and returns an error that `main` turns into the exit code.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use api::Settings;
use clap::{Args, Subcommand};
use domain::EntityKind;
use serde::Serialize;
use storage::Storage;
use storage::demo::Dataset;
use storage::location::Place;

use crate::lease::{HeldLease, Stop};
use crate::progress::Progress;

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

#[derive(Debug, Subcommand, Default)]
pub enum Direction {
    /// Apply every pending migration (the default).
    #[default]
    Up,
    /// Revert the last N applied migrations. The legacy tables are never dropped.
    Down {
        steps: usize,
        /// Also allow reverting the migration that creates the unified tables (drops their data).
        #[arg(long)]
        allow_data_loss: bool,
    },
    /// Say what `migrate` finds and would do, changing nothing: where this service's tables
    /// are, the legacy tables, the marketplace's own unified tables and the foreign keys into
    /// them, and why it would refuse.
    Plan,
    /// Drop the views an earlier layout's move left in `public` for older binaries (once no
    /// older binary runs).
    DropPublicViews,
    /// List this binary's migrations, applied and pending, changing nothing.
    Info,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many listings.
    #[arg(long, default_value_t = 500)]
    listings: usize,
    /// How many B2C products, three variants each (default: a tenth of the listings).
    #[arg(long)]
    products: Option<usize>,
    /// The same seed always gives the same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
pub struct FlagsArgs {
    #[command(subcommand)]
    step: Option<FlagStep>,
    /// Change these flags at runtime, e.g. `{"dual_write": true}`; refused (exit 1) when the
    /// result breaks a guardrail. `use_unified` turned on without `unified_percent` starts the
    /// smallest canary, with fallback.
    #[arg(long, value_name = "JSON")]
    set: Option<String>,
    /// Who changes them, for the audit.
    #[arg(long, default_value = "cli", global = true)]
    actor: String,
}

/// A step of the migration by name: the flags of the next or previous rung, all at once,
/// judged by the guardrails and audited like `--set`.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum FlagStep {
    /// One rung up: legacy → dual-write → canary 1 %, 10 %, 50 %, 100 % with fallback →
    /// unified reads with dual-write → unified only (then `archive`).
    Promote,
    /// One rung down the same ladder.
    Abort,
}

impl FlagStep {
    fn target(self, rung: flags::Rung) -> Option<flags::Rung> {
        match self {
            Self::Promote => rung.next(),
            Self::Abort => rung.previous(),
        }
    }
}

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
async fn start_throttle<'a>(
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

#[derive(Debug, Args)]
pub struct QuarantineArgs {
    #[command(subcommand)]
    action: Option<QuarantineAction>,
    /// Only this attribute's values.
    #[arg(long)]
    attribute: Option<String>,
    /// At most this many groups.
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

#[derive(Debug, clap::Subcommand)]
enum QuarantineAction {
    /// Accept that unified reads go without these quarantined values (audited): what no
    /// resolution can bring over. Unified reads without fallback need every value users see
    /// resolved or accepted.
    Accept(AcceptArgs),
    /// Take an acceptance back: those values hold up unified reads again.
    Unaccept(AcceptArgs),
}

#[derive(Debug, Args)]
struct AcceptArgs {
    /// Only this attribute's values.
    #[arg(long)]
    attribute: Option<String>,
    /// Only values quarantined for this kind of reason (invalid, unknown, unreadable, refused).
    #[arg(long = "reason", value_name = "KIND")]
    kind: Option<storage::quarantine::QuarantineKind>,
    /// Every quarantined value users see (needed when neither filter is given).
    #[arg(long)]
    all: bool,
    /// Who decides, for the audit.
    #[arg(long)]
    actor: String,
    /// Why, for the audit.
    #[arg(long)]
    note: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    #[command(subcommand)]
    action: Resolve,
    /// Who resolves, for the audit.
    #[arg(long, global = true, default_value = "cli")]
    actor: String,
}

#[derive(Debug, clap::Subcommand)]
enum Resolve {
    /// Register another spelling of an option (`дизель` → `diesel`), ignoring case.
    Alias {
        /// The attribute's code.
        #[arg(long)]
        attribute: String,
        /// The spelling found in legacy values.
        #[arg(long)]
        alias: String,
        /// The option value it means.
        #[arg(long)]
        option: String,
        /// Print what it would do, changing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Add an option for a legitimate legacy value (a car make under `brand`).
    AddOption {
        #[arg(long)]
        attribute: String,
        /// The option value.
        #[arg(long)]
        value: String,
        /// Its label as `lang=text` (sr, en, ru), repeatable; default: the value in Serbian.
        #[arg(long = "label", value_name = "LANG=TEXT")]
        labels: Vec<String>,
        /// Print what it would do, changing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move quarantined listing values to the attribute they belong to, and migrate them again.
    Move {
        /// The attribute the values are under now.
        #[arg(long)]
        from: String,
        /// The attribute they belong to.
        #[arg(long)]
        to: String,
        /// Only values users saw as this, as `quarantine` lists it (`Volkswagen`): trimmed,
        /// any case.
        #[arg(long)]
        raw_value: Option<String>,
        /// Only values stored exactly as this (`text=Volkswagen, unit=`).
        #[arg(long, conflicts_with = "raw_value")]
        raw_value_exact: Option<String>,
        /// Move although the target's type or rules refuse some of the values.
        #[arg(long)]
        force: bool,
        /// Print what would move, changing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take resolution ID back while nothing was written on top of it (an alias no value was
    /// migrated through, an option no value chooses, moved values whose listings did not
    /// change, an acceptance); recorded as an `undo`.
    Undo {
        /// The resolution's id, as `resolve history` lists it.
        id: i64,
    },
    /// The resolutions made, newest first.
    History {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
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

pub async fn migrate(
    settings: &Settings,
    output: Output,
    direction: Direction,
    grace: Duration,
) -> anyhow::Result<()> {
    let storage = connect(settings, Purpose::SetsUp).await?;
    #[derive(Serialize)]
    struct Report {
        database: &'static str,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        applied: Vec<i64>,
        reverted: Vec<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        plan: Option<storage::monolith::Plan>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        dropped_views: Vec<String>,
    }
    let mut plan = None;
    let mut dropped_views = Vec::new();
    let mut applied = Vec::new();
    let reverted = match direction {
        Direction::Plan => {
            let found = storage.migration_plan().await.context("the plan failed")?;
            output.report(&found, plan_text)?;
            return match found.refusal {
                Some(refusal) => {
                    Err(CheckFailed(format!("migrate would refuse: {refusal}")).into())
                }
                None => Ok(()),
            };
        }
        Direction::Info => {
            let migrations = storage
                .migrations()
                .await
                .context("the migrations could not be read")?;
            return output.report(&migrations, |migrations| {
                let pending = migrations.iter().filter(|m| !m.applied).count();
                let mut text = format!(
                    "{} migrations: {} applied, {pending} pending",
                    migrations.len(),
                    migrations.len() - pending
                );
                for m in migrations {
                    text.push_str(&format!(
                        "\n  {} {:<8} {}",
                        m.version,
                        if m.applied { "applied" } else { "pending" },
                        m.description
                    ));
                }
                text
            });
        }
        Direction::DropPublicViews => {
            dropped_views = storage
                .drop_public_views()
                .await
                .context("dropping the views failed")?;
            Vec::new()
        }
        Direction::Up => {
            let found = storage.migration_plan().await.context("the plan failed")?;
            if !output.json {
                note(&plan_text(&found));
            }
            applied = storage.migrate().await.context("migration failed")?;
            plan = Some(found);
            Vec::new()
        }
        Direction::Down {
            steps,
            allow_data_loss,
        } => {
            // The lease's own table may be among what is reverted: a lease that cannot be
            // released then is gone with its table.
            let lease = HeldLease::take(&storage, "migrate down", grace, false).await?;
            let reverted = storage.migrate_down(steps, allow_data_loss).await;
            lease.release().await;
            reverted.context("migrating down failed")?
        }
    };
    let report = Report {
        database: storage.backend_name(),
        applied,
        reverted,
        plan,
        dropped_views,
    };
    output.report(&report, |report| {
        if !report.dropped_views.is_empty() {
            format!(
                "{}: dropped the views left in public for older binaries: {}",
                report.database,
                report.dropped_views.join(", ")
            )
        } else if !report.applied.is_empty() {
            format!(
                "{}: applied {} migration(s) now ({}); none is pending (`migrate info` lists them)",
                report.database,
                report.applied.len(),
                report
                    .applied
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if report.reverted.is_empty() {
            format!(
                "{}: nothing to apply: every migration of this binary was applied before",
                report.database
            )
        } else {
            format!(
                "{}: reverted migrations {:?}",
                report.database, report.reverted
            )
        }
    })
}

/// The plan as an operator reads it: what is there, then what `migrate` does (or why not).
fn plan_text(plan: &storage::monolith::Plan) -> String {
    let mut lines = vec!["migrate plan".to_owned()];
    if let Some(schema) = &plan.schema {
        lines.push(format!("  this service's schema: {schema}"));
    }
    lines.push(format!("  this service's tables: {}", plan.ours));
    let table = |t: &storage::monolith::FoundTable| {
        format!("    {}.{} ({} rows)", t.schema, t.table, t.rows)
    };
    if !plan.legacy_tables.is_empty() {
        lines.push("  legacy tables:".to_owned());
        lines.extend(plan.legacy_tables.iter().map(table));
    }
    if !plan.monolith_tables.is_empty() {
        lines.push("  the marketplace's own unified tables (a source of the backfill):".to_owned());
        lines.extend(plan.monolith_tables.iter().map(table));
    }
    if !plan.foreign_keys.is_empty() {
        lines.push("  foreign keys into them (kept valid):".to_owned());
        lines.extend(plan.foreign_keys.iter().map(|k| format!("    {k}")));
    }
    if !plan.public_views.is_empty() {
        lines.push(format!(
            "  views left in public for older binaries: {} (`migrate drop-public-views` once none runs)",
            plan.public_views.join(", ")
        ));
    }
    match &plan.refusal {
        Some(refusal) => lines.push(format!("  refused: {refusal}")),
        None => {
            lines.push("  migrate will:".to_owned());
            lines.extend(plan.steps.iter().map(|s| format!("    - {s}")));
        }
    }
    lines.join("\n")
}

pub async fn seed_demo(settings: &Settings, output: Output, args: &SeedArgs) -> anyhow::Result<()> {
    let storage = connect_migrated(settings, Purpose::Creates).await?;
    if storage.has_legacy_definitions().await? {
        bail!(
            "the database already holds legacy attribute definitions; seed-demo loads into an empty database"
        );
    }
    let products = args.products.unwrap_or(args.listings.div_ceil(10));
    let dataset = Dataset::marketplace_with(args.listings, products, args.seed).with_all_defects();
    storage
        .seed_legacy(&dataset)
        .await
        .context("seeding failed")?;
    let report = serde_json::json!({
        "listings": dataset.listings.len(),
        "products": dataset.products.len(),
        "variants": dataset.variants.len(),
        "seed": args.seed,
    });
    output.report(&report, |report| {
        format!(
            "demo marketplace loaded in legacy form: {} listings, {} products, {} variants (seed {})",
            report["listings"], report["products"], report["variants"], report["seed"]
        )
    })
}

/// Applies `--set` if given, then shows the flags: the configured ones (environment,
/// settings file, defaults), the runtime change that overrides them if any, and the phase of
/// the flags in force.
pub async fn flags(settings: &Settings, output: Output, args: &FlagsArgs) -> anyhow::Result<()> {
    let configured = settings.flags.parse().context("invalid flag value")?;
    let storage = connect(settings, Purpose::Operates).await?;
    let current = flags_in_force(settings, &storage)
        .await
        .context("cannot read the runtime flags (run migrate first?)")?;
    let change: Option<Box<dyn Fn(flags::Flags) -> flags::Flags>> = match (&args.set, args.step) {
        (Some(_), Some(_)) => bail!("give either --set or a step (promote, abort), not both"),
        (Some(set), None) => {
            let update: flags::FlagUpdate =
                serde_json::from_str(set).context("--set takes a JSON object of flags")?;
            update.check().map_err(anyhow::Error::msg)?;
            Some(Box::new(move |flags| update.apply(flags)))
        }
        (None, Some(step)) => {
            let rung = flags::Rung::of(&current).ok_or_else(|| {
                CheckFailed(format!(
                    "the flags in force ({}) stand on no rung of the ladder (set by hand?): \
                     set the rung you mean with --set",
                    serde_json::to_string(&current).unwrap_or_default()
                ))
            })?;
            let Some(target) = step.target(rung) else {
                return Err(CheckFailed(match step {
                    FlagStep::Promote => format!(
                        "{rung} is the last rung of the flags; the legacy tables' archive is its \
                         own step: `archive --dry-run`, then `archive`"
                    ),
                    FlagStep::Abort => format!("{rung} is the first rung: nothing to step back to"),
                })
                .into());
            };
            note(&format!("step: {rung} → {target}"));
            // Decided again on the flags the change finds under its lock: a change that came
            // in between moves from where it left the flags.
            Some(Box::new(move |flags: flags::Flags| {
                flags::Rung::of(&flags)
                    .and_then(|rung| step.target(rung))
                    .map_or(flags, |target| target.flags(flags.shadow_percent))
            }))
        }
        (None, None) => None,
    };
    if let Some(change) = change {
        match storage.change_flags(current, &args.actor, &change).await {
            Ok(changed) => note(&format!(
                "flags changed: phase {} → {}",
                changed.old_phase, changed.new_phase
            )),
            // Every rule the change breaks, not only the first: one fix, not one per try.
            Err(
                refused @ (storage::StorageError::Guardrail(_)
                | storage::StorageError::QuarantineUnsettled(_)),
            ) => {
                let state = storage.migration_state().await?;
                let rules = change(current).violations(Some(&current), &state);
                return Err(RulesBroken {
                    rules,
                    quarantine: matches!(refused, storage::StorageError::QuarantineUnsettled(_))
                        .then(|| refused.to_string()),
                }
                .into());
            }
            Err(err) => return Err(err).context("the flags were not changed"),
        }
    }
    let stored = storage
        .stored_flags()
        .await
        .context("cannot read the runtime flags (run migrate first?)")?;
    let state = storage.migration_state().await?;
    let (in_force, source) = match &stored {
        Some(stored) => (
            stored.flags,
            format!(
                "runtime (set by {} at {})",
                stored.updated_by, stored.updated_at
            ),
        ),
        None => (
            configured,
            "configured (environment, settings file, defaults)".to_owned(),
        ),
    };
    let phase = in_force
        .check(&state)
        .map(storage::phase_name)
        .map_err(|violation| format!("{} ({})", violation, violation.rule()));
    let from = |name: &str| {
        if stored.is_some() {
            "runtime"
        } else if std::env::var_os(name).is_some() {
            "env"
        } else {
            "settings file or default"
        }
    };
    let rows = [
        (
            flags::vars::DUAL_WRITE,
            in_force.dual_write.to_string(),
            configured.dual_write.to_string(),
        ),
        (
            flags::vars::USE_UNIFIED,
            in_force.use_unified.to_string(),
            configured.use_unified.to_string(),
        ),
        (
            flags::vars::UNIFIED_PERCENT,
            in_force.unified_percent.to_string(),
            configured.unified_percent.to_string(),
        ),
        (
            flags::vars::FALLBACK,
            in_force.fallback.to_string(),
            configured.fallback.to_string(),
        ),
        (
            flags::vars::SHADOW_PERCENT,
            in_force.shadow_percent.to_string(),
            configured.shadow_percent.to_string(),
        ),
    ];
    let rung = flags::Rung::of(&in_force);
    let report = serde_json::json!({
        "flags": in_force, "configured": configured, "source": source, "state": state,
        "sources": rows.iter().map(|(name, ..)| (name.to_string(), from(name))).collect::<HashMap<_, _>>(),
        "phase": phase.as_ref().ok(), "guardrail": phase.as_ref().err(),
        "rung": rung,
    });
    let steps = rung.map(|rung| (FlagStep::Promote.target(rung), FlagStep::Abort.target(rung)));
    output.report(&report, |_| {
        // Each flag by the name `--set` takes, then its variable.
        let keys = [
            "dual_write",
            "use_unified",
            "unified_percent",
            "fallback",
            "shadow_percent",
        ];
        let mut text = format!(
            "source: {source}\n{:<16} {:<36} {:<8} {:<10} from\n",
            "flag", "variable", "in force", "configured"
        );
        for (key, (name, now, conf)) in keys.iter().zip(&rows) {
            text.push_str(&format!(
                "{key:<16} {name:<36} {now:<8} {conf:<10} {}\n",
                from(name)
            ));
        }
        let named = |rung: Option<flags::Rung>| rung.map_or("none".to_owned(), |r| r.to_string());
        match (rung, steps) {
            (Some(rung), Some((up, down))) => text.push_str(&format!(
                "rung: {rung} (flags promote → {}; flags abort → {})\n",
                named(up),
                named(down)
            )),
            _ => text.push_str("rung: none (flags set by hand; promote and abort need a rung)\n"),
        }
        text.push_str(&format!(
            "state: archived={} unified_only_writes_pending_sync={}\n",
            state.archived, state.unified_only_writes_pending_sync
        ));
        match &phase {
            Ok(phase) => text.push_str(&format!("phase: {phase}")),
            Err(violation) => text.push_str(&format!("phase: none — {violation}")),
        }
        text
    })?;
    phase
        .map(|_| ())
        .map_err(|violation| CheckFailed(violation).into())
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
        let next = storage
            .backfill_batch(kind, &checkpoint, args.batch_size, catalog)
            .await?;
        let rows =
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

/// Lists the quarantine by attribute, raw value and reason.
pub async fn quarantine(
    settings: &Settings,
    output: Output,
    args: &QuarantineArgs,
) -> anyhow::Result<()> {
    if args.limit < 1 {
        bail!("--limit must be at least 1");
    }
    let storage = connect_migrated(settings, Purpose::Operates).await?;
    if let Some(QuarantineAction::Accept(accept) | QuarantineAction::Unaccept(accept)) =
        &args.action
    {
        let undo = matches!(args.action, Some(QuarantineAction::Unaccept(_)));
        let filter = storage::quarantine::AcceptFilter {
            attribute: accept.attribute.clone(),
            kind: accept.kind,
        };
        let resolution = match storage
            .accept_quarantined(
                &filter,
                accept.all,
                accept.note.as_deref(),
                &accept.actor,
                undo,
            )
            .await
        {
            Err(storage::StorageError::Conflict(why)) => bail!("{why}"),
            other => other?,
        };
        return output.report(&resolution, |r| {
            let verb = if undo {
                "no longer accepted"
            } else {
                "accepted"
            };
            if r.repeated {
                format!(
                    "already resolved by resolution {} ({} of {} value(s)); nothing changed",
                    r.id, r.action, r.affected
                )
            } else {
                format!(
                    "{} value(s) {verb}; recorded as resolution {}",
                    r.affected, r.id
                )
            }
        });
    }
    let listing = storage
        .quarantine(args.attribute.as_deref(), args.limit)
        .await?;
    output.report(&listing, |listing| {
        if listing.groups.is_empty() {
            return "the quarantine holds no value".to_owned();
        }
        let mut text = format!(
            "{} quarantined value(s): {} users see in legacy reads ({} accepted), {} they never saw \
             (orphans, empty rows)\n",
            listing.total,
            listing.seen_by_users,
            listing.accepted,
            listing.total - listing.seen_by_users
        );
        text.push_str("count  accepted  entity     attribute            kind       value → reason");
        for group in &listing.groups {
            let shown = if group.value.is_empty() { "(nothing)" } else { &group.value };
            text.push_str(&format!(
                "\n{:>5}  {:>8}  {:<10} {:<20} {:<10} {} → {}\n       resolve: {}",
                group.count,
                group.accepted,
                group.entity_type,
                group.attribute_code,
                group.kind,
                shown,
                group.reason,
                resolving_command(group)
            ));
        }
        text
    })
}

/// The command that would resolve a group of quarantined values, as an operator types it.
fn resolving_command(group: &storage::quarantine::QuarantinedValues) -> String {
    let quoted = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
    let (code, value) = (&group.attribute_code, quoted(&group.value));
    match group.kind.as_str() {
        "orphan" | "empty" => {
            "nothing to do: users never saw it, it does not hold up unified reads".into()
        }
        "invalid" if group.entity_type == "listing" => format!(
            "resolve add-option --attribute {code} --value {value} | resolve alias --attribute {code} \
             --alias {value} --option OPTION | resolve move --from {code} --to CODE --raw-value {value}; \
             then backfill --retry-quarantine. Or: quarantine accept --attribute {code} --reason invalid --actor NAME"
        ),
        kind => format!("quarantine accept --attribute {code} --reason {kind} --actor NAME"),
    }
}

/// Resolves the quarantine: an alias, an option, values moved; or lists what was resolved.
pub async fn resolve(
    settings: &Settings,
    output: Output,
    args: &ResolveArgs,
) -> anyhow::Result<()> {
    let storage = connect_migrated(settings, Purpose::Operates).await?;
    let mode = flags_in_force(settings, &storage).await?.write_mode();
    let actor = args.actor.as_str();
    let repeated = |r: &storage::resolve::Resolution| {
        format!(
            "already resolved by resolution {} ({} of '{}' by {} at {}); nothing changed",
            r.id, r.action, r.attribute_code, r.resolved_by, r.resolved_at
        )
    };
    let done = |resolution: &storage::resolve::Resolution| {
        format!(
            "recorded as resolution {} ({} of '{}'); run `backfill --retry-quarantine` next",
            resolution.id, resolution.action, resolution.attribute_code
        )
    };
    let result = match &args.action {
        Resolve::Alias {
            attribute,
            alias,
            option,
            dry_run,
        } => storage
            .add_alias(attribute, alias, option, actor, mode, *dry_run)
            .await
            .map(|written| {
                output.report(&written.data, |r| {
                    if r.repeated {
                        return repeated(r);
                    }
                    let matching = r.detail["quarantined_matching"].as_u64().unwrap_or(0);
                    let reach = if matching == 0 {
                        "no quarantined value is spelled so (it still serves future writes)".to_owned()
                    } else {
                        format!("{matching} quarantined value(s) are spelled so")
                    };
                    if *dry_run {
                        format!("dry run: '{alias}' would mean option '{option}' of '{attribute}'; {reach}; nothing changed")
                    } else {
                        format!("'{alias}' now means option '{option}' of '{attribute}'; {reach}: {}", done(r))
                    }
                })
            }),
        Resolve::AddOption {
            attribute,
            value,
            labels,
            dry_run,
        } => {
            let mut label = domain::LocalizedText::new();
            for entry in labels {
                let (language, text) = entry
                    .split_once('=')
                    .and_then(|(l, t)| Some((l.parse::<domain::Language>().ok()?, t)))
                    .with_context(|| format!("--label {entry:?}: expected sr=…, en=… or ru=…"))?;
                label.set(language, text);
            }
            storage
                .add_option(attribute, value, label, actor, mode, *dry_run)
                .await
                .map(|written| {
                    output.report(&written.data, |r| {
                        if r.repeated {
                            return repeated(r);
                        }
                        let matching = r.detail["quarantined_matching"].as_u64().unwrap_or(0);
                        if *dry_run {
                            format!("dry run: option '{value}' would be added to '{attribute}'; {matching} quarantined value(s) are spelled so; nothing changed")
                        } else {
                            format!("option '{value}' added to '{attribute}' ({matching} quarantined value(s) are spelled so): {}", done(r))
                        }
                    })
                })
        }
        Resolve::Move {
            from,
            to,
            raw_value,
            raw_value_exact,
            force,
            dry_run,
        } => {
            let request = storage::resolve::MoveRequest {
                from: from.clone(),
                to: to.clone(),
                raw_value: raw_value.clone(),
                raw_value_exact: raw_value_exact.clone(),
                force: *force,
                dry_run: *dry_run,
            };
            storage.move_values(&request, actor, mode).await.map(|written| {
                let (resolution, report) = written.data;
                if let Some(known) = &report.nothing_matched {
                    let wanted = raw_value
                        .as_deref()
                        .or(raw_value_exact.as_deref())
                        .map_or_else(String::new, |v| format!(" as '{v}'"));
                    return Err(CheckFailed(format!(
                        "no value of '{from}' quarantined as not valid for it matches{wanted}; nothing \
                         moved or recorded. Its quarantined values, as users saw them: {}",
                        if known.is_empty() { "none".to_owned() } else { known.join(" | ") }
                    ))
                    .into());
                }
                #[derive(Serialize)]
                struct Moved {
                    resolution: storage::resolve::Resolution,
                    #[serde(flatten)]
                    report: storage::resolve::MoveReport,
                }
                output.report(&Moved { resolution, report }, |m| {
                    if m.resolution.repeated {
                        return repeated(&m.resolution);
                    }
                    let mut text = format!(
                        "{}{} listing value(s) moved from '{from}' to '{to}'; those listings were \
                         migrated again: {} values migrated, {} quarantined",
                        if m.report.dry_run { "dry run: " } else { "" },
                        m.report.moved.len(),
                        m.report.migrated,
                        m.report.quarantined,
                    );
                    if m.report.dry_run {
                        text.push_str("; nothing changed");
                    } else {
                        text.push_str(&format!("; recorded as resolution {}", m.resolution.id));
                    }
                    if !m.report.skipped.is_empty() {
                        text.push_str(&format!(
                            "\nleft as they are (they have a '{to}' value already): listings {:?}",
                            m.report.skipped
                        ));
                    }
                    text
                })
            })
        }
        Resolve::Undo { id } => storage
            .undo_resolution(*id, actor, mode)
            .await
            .map(|written| {
                output.report(&written.data, |r| {
                    if r.repeated {
                        return repeated(r);
                    }
                    format!(
                        "resolution {id} ({} of '{}') undone ({} changed); recorded as resolution {}",
                        r.detail["action"].as_str().unwrap_or("?"),
                        r.attribute_code,
                        r.affected,
                        r.id
                    )
                })
            }),
        Resolve::History { limit } => {
            if *limit < 1 {
                bail!("--limit must be at least 1");
            }
            storage.resolutions(*limit).await.map(|history| {
                output.report(&history, |history| {
                    if history.is_empty() {
                        return "no resolution yet".to_owned();
                    }
                    let mut text = String::from(
                        "id  at                          by         action    attribute: what it did",
                    );
                    for r in history {
                        text.push_str(&format!(
                            "\n{:<3} {:<27} {:<10} {:<9} {}: {}",
                            r.id,
                            r.resolved_at,
                            r.resolved_by,
                            r.action,
                            r.attribute_code,
                            resolution_detail(r)
                        ));
                    }
                    text
                })
            })
        }
    };
    match result {
        Ok(printed) => printed,
        Err(storage::StorageError::InvalidValues(fields)) => bail!(
            "refused: {}",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Err(err) => Err(err.into()),
    }
}

/// A recorded resolution's detail in words, for `resolve history` (`--json` keeps the record).
fn resolution_detail(r: &storage::resolve::Resolution) -> String {
    let d = &r.detail;
    let text = |key: &str| d[key].as_str().unwrap_or("?").to_owned();
    let count = |key: &str| {
        d[key]
            .as_array()
            .map_or_else(|| d[key].as_u64().unwrap_or(0), |list| list.len() as u64)
    };
    let matching = |key: &str| match count(key) {
        0 => String::new(),
        n => format!("; {n} quarantined value(s) matched"),
    };
    match r.action.as_str() {
        "alias" => format!(
            "'{}' means option '{}'{}{}",
            text("alias"),
            text("option"),
            if d["already_known"] == true {
                " (already known)"
            } else {
                ""
            },
            matching("quarantined_matching")
        ),
        "option" => format!(
            "new option '{}'{}",
            text("value"),
            matching("quarantined_matching")
        ),
        "move" => format!(
            "values moved to '{}': {} moved, {} skipped, {} migrated again, {} quarantined",
            text("to"),
            count("moved"),
            count("skipped"),
            count("migrated"),
            count("quarantined")
        ),
        "accept" | "unaccept" => format!(
            "{} value(s){}{}",
            count("values"),
            d["reason"]
                .as_str()
                .map(|kind| format!(" quarantined as {kind}"))
                .unwrap_or_default(),
            d["note"]
                .as_str()
                .map(|note| format!(" — {note}"))
                .unwrap_or_default()
        ),
        "undo" => format!("undid resolution {} ({})", d["undoes"], text("action")),
        _ => d.to_string(),
    }
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
