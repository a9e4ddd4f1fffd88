//! The `unified-attributes` binary: loads settings, starts telemetry, runs one subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use api::{Application, Settings, telemetry};
use clap::{Args, Parser, Subcommand};
use storage::Storage;
use storage::demo::Dataset;

/// Moves marketplace product attributes from the legacy tables to one unified model without
/// downtime, and serves them.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML settings file, layered over the defaults and under the environment.
    #[arg(long, global = true, env = "APP_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// `postgres://…` or `sqlite://…` (default: an SQLite file in the working directory).
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve(ServeArgs),
    /// Apply the schema migrations that are not applied yet (`migrate` or `migrate up`), or
    /// revert the last N (`migrate down N`).
    Migrate(MigrateArgs),
    /// Load the demo marketplace, in legacy form, into an empty database.
    SeedDemo(SeedArgs),
    /// Show the flags in force, where each came from, and the phase they mean.
    Flags(FlagsArgs),
    /// Compare legacy and unified listing values (quarantined rows left out); exit 1 on drift.
    Verify(VerifyArgs),
    /// Bring legacy up to date from unified (rollback after unified-only writes). Needs
    /// dual-write in force, so writes made during the sync reach legacy too.
    SyncLegacy(SyncArgs),
    /// Copy legacy definitions, bindings and listing values to the unified tables: batched,
    /// resumable from its checkpoint, idempotent; refused rows go to the quarantine.
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// Listings per batch (one transaction each).
    #[arg(long, default_value_t = 1000)]
    batch_size: i64,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Listings compared per page.
    #[arg(long, default_value_t = 1000)]
    page_size: i64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// A check ran and found a problem: exit code 1 (errors are 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CheckFailed(String);

#[derive(Debug, Args)]
struct BackfillArgs {
    /// Listings per batch (one transaction each).
    #[arg(long, default_value_t = 1000)]
    batch_size: i64,
    /// Pause between batches, in milliseconds.
    #[arg(long, default_value_t = 0)]
    batch_delay: u64,
    /// Upper bound of legacy rows migrated per second (0: none).
    #[arg(long, default_value_t = 0)]
    max_rows_per_sec: u64,
    /// Start over from the first listing instead of the stored checkpoint.
    #[arg(long)]
    restart: bool,
    /// Stop after this many batches (the checkpoint keeps the place).
    #[arg(long)]
    max_batches: Option<u64>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct FlagsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct MigrateArgs {
    #[command(subcommand)]
    direction: Option<Direction>,
}

#[derive(Debug, Subcommand)]
enum Direction {
    /// Apply every pending migration (the default).
    Up,
    /// Revert the last N applied migrations. The legacy tables are never dropped.
    Down {
        steps: usize,
        /// Also allow reverting the migration that creates the unified tables (drops their data).
        #[arg(long)]
        allow_data_loss: bool,
    },
}

#[derive(Debug, Args, Default)]
struct ServeArgs {
    /// `host:port` to listen on; port 0 picks a free port.
    #[arg(long)]
    bind: Option<String>,
}

#[derive(Debug, Args)]
struct SeedArgs {
    /// How many listings (products: a tenth, three variants each).
    #[arg(long, default_value_t = 500)]
    listings: usize,
    /// The same seed always gives the same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is::<CheckFailed>() => {
            eprintln!("check failed: {err}");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref()).context("invalid settings")?;
    telemetry::init(&settings.telemetry);
    if let Some(url) = cli.database_url {
        settings.database.url = Some(url.into());
    }
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            if let Some(bind) = args.bind {
                settings.server.bind = bind;
            }
            let application = Application::build(&settings).await?;
            application
                .run_until_stopped()
                .await
                .context("server stopped with an error")
        }
        Command::Migrate(args) => {
            let storage = connect(&settings).await?;
            match args.direction.unwrap_or(Direction::Up) {
                Direction::Up => {
                    storage.migrate().await.context("migration failed")?;
                    tracing::info!(database = storage.backend_name(), "schema is up to date");
                }
                Direction::Down {
                    steps,
                    allow_data_loss,
                } => {
                    let reverted = storage
                        .migrate_down(steps, allow_data_loss)
                        .await
                        .context("migrating down failed")?;
                    tracing::info!(?reverted, "migrations reverted");
                }
            }
            Ok(())
        }
        Command::Flags(args) => show_flags(&settings, args.json).await,
        Command::Backfill(args) => backfill(&settings, &args).await,
        Command::Verify(args) => verify(&settings, &args).await,
        Command::SyncLegacy(args) => sync_legacy(&settings, &args).await,
        Command::SeedDemo(args) => {
            let storage = connect(&settings).await?;
            storage.migrate().await.context("migration failed")?;
            if storage.has_legacy_definitions().await? {
                bail!(
                    "the database already holds legacy attribute definitions; seed-demo loads into an empty database"
                );
            }
            let dataset = Dataset::marketplace(args.listings, args.seed);
            storage
                .seed_legacy(&dataset)
                .await
                .context("seeding failed")?;
            tracing::info!(
                listings = dataset.listings.len(),
                products = dataset.products.len(),
                variants = dataset.variants.len(),
                "demo marketplace loaded in legacy form"
            );
            Ok(())
        }
    }
}

async fn connect(settings: &Settings) -> anyhow::Result<Storage> {
    let url = settings.database.url();
    Storage::connect(&url, settings.database.max_connections)
        .await
        .with_context(|| {
            format!(
                "cannot open the database ({})",
                url.split('@').next_back().unwrap_or(&url)
            )
        })
}

/// The configured flags (environment, settings file, defaults), the runtime change that
/// overrides them if any, and the phase of the flags in force.
#[allow(clippy::print_stdout)] // the report is what the command is for
async fn show_flags(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let configured = settings.flags.parse().context("invalid flag value")?;
    let storage = connect(settings).await?;
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
        .map_err(|violation| anyhow::anyhow!("{violation}"));
    if json {
        let report = serde_json::json!({
            "flags": in_force, "configured": configured, "source": source, "state": state,
            "phase": phase.as_ref().ok(), "guardrail": phase.as_ref().err().map(ToString::to_string),
        });
        println!("{report:#}");
    } else {
        let env_or = |name: &str| {
            if std::env::var_os(name).is_some() {
                "env"
            } else {
                "default/file"
            }
        };
        println!("source: {source}");
        println!(
            "{:<36} {:<8} {:<10} configured from",
            "flag", "in force", "configured"
        );
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
        for (name, now, conf) in rows {
            println!("{name:<36} {now:<8} {conf:<10} {}", env_or(name));
        }
        println!(
            "state: archived={} unified_only_writes_pending_sync={}",
            state.archived, state.unified_only_writes_pending_sync
        );
        match &phase {
            Ok(phase) => println!("phase: {phase}"),
            Err(violation) => println!("phase: none — {violation}"),
        }
    }
    phase.map(|_| ())
}

/// Runs the backfill: definitions and bindings, then listing values batch by batch, with a
/// progress line per batch on stderr and a summary on stdout.
#[allow(clippy::print_stdout, clippy::print_stderr)] // progress and summary are the command's output
async fn backfill(settings: &Settings, args: &BackfillArgs) -> anyhow::Result<()> {
    if args.batch_size < 1 {
        bail!("--batch-size must be at least 1");
    }
    let storage = connect(settings).await?;
    storage.migrate().await.context("migration failed")?;
    let (definitions, bindings) = storage
        .backfill_definitions()
        .await
        .context("definitions backfill failed")?;
    eprintln!("definitions: {definitions} attributes, {bindings} bindings copied");
    let catalog: std::collections::HashMap<String, domain::Attribute> = storage
        .catalog(storage::ReadRoute::new(flags::Store::Legacy, false))
        .await?
        .data
        .into_iter()
        .map(|attribute| (attribute.code.clone(), attribute))
        .collect();
    let total = storage.migration_counts().await?.listings;
    let mut checkpoint = storage.listing_checkpoint(args.restart).await?;
    let started = std::time::Instant::now();
    let (migrated_before, quarantined_before) = (checkpoint.migrated, checkpoint.quarantined);
    let mut batches = 0;
    while !checkpoint.completed && args.max_batches.is_none_or(|max| batches < max) {
        let batch_started = std::time::Instant::now();
        let next = storage
            .backfill_listing_batch(&checkpoint, args.batch_size, &catalog)
            .await
            .context("batch failed")?;
        let rows =
            (next.migrated + next.quarantined) - (checkpoint.migrated + checkpoint.quarantined);
        checkpoint = next;
        batches += 1;
        let done = (checkpoint.migrated + checkpoint.quarantined
            - migrated_before
            - quarantined_before) as f64;
        eprintln!(
            "listings: up to id {} of {total} ({:.0}%), {} migrated, {} quarantined, {:.0} rows/s",
            checkpoint.last_id,
            (checkpoint.last_id as f64 * 100.0 / total.max(1) as f64).min(100.0),
            checkpoint.migrated,
            checkpoint.quarantined,
            done / started.elapsed().as_secs_f64().max(0.001),
        );
        let mut pause = std::time::Duration::from_millis(args.batch_delay);
        if args.max_rows_per_sec > 0 {
            let budget =
                std::time::Duration::from_secs_f64(rows as f64 / args.max_rows_per_sec as f64);
            pause = pause.max(budget.saturating_sub(batch_started.elapsed()));
        }
        if !pause.is_zero() && !checkpoint.completed {
            tokio::time::sleep(pause).await;
        }
    }
    let summary = serde_json::json!({
        "definitions": definitions, "bindings": bindings, "listings": checkpoint,
        "batches": batches, "seconds": started.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{summary:#}");
    } else {
        println!(
            "backfill {}: {} values migrated, {} quarantined (see backfill_quarantine), {batches} batches in {:.1} s",
            if checkpoint.completed {
                "complete"
            } else {
                "paused"
            },
            checkpoint.migrated,
            checkpoint.quarantined,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Compares both stores listing by listing; drift exits with 1.
#[allow(clippy::print_stdout, clippy::print_stderr)] // progress and report are the command's output
async fn verify(settings: &Settings, args: &VerifyArgs) -> anyhow::Result<()> {
    if args.page_size < 1 {
        bail!("--page-size must be at least 1");
    }
    let storage = connect(settings).await?;
    storage.migrate().await.context("migration failed")?;
    let total = storage.migration_counts().await?.listings;
    let started = std::time::Instant::now();
    let report = storage
        .verify_listings(args.page_size, |report| {
            eprintln!(
                "verified {} of {total} listings, {} drifted",
                report.listings_checked, report.listings_drifted
            );
        })
        .await
        .context("verify failed")?;
    if args.json {
        println!("{:#}", serde_json::to_value(&report)?);
    } else {
        println!(
            "{} listings checked in {:.1} s: {} drifted; {} legacy rows quarantined (left out)",
            report.listings_checked,
            started.elapsed().as_secs_f64(),
            report.listings_drifted,
            report.quarantined
        );
        for drift in &report.drift {
            println!(
                "  listing {}: only in legacy {:?}, only in unified {:?}, different {:?}",
                drift.listing_id,
                drift.missing_in_unified,
                drift.missing_in_legacy,
                drift.different
            );
        }
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(CheckFailed(format!(
            "{} of {} listings differ between the stores",
            report.listings_drifted, report.listings_checked
        ))
        .into())
    }
}

/// Copies unified back to legacy, with the flags in force deciding whether that is safe.
#[allow(clippy::print_stdout, clippy::print_stderr)] // progress and summary are the command's output
async fn sync_legacy(settings: &Settings, args: &SyncArgs) -> anyhow::Result<()> {
    let storage = connect(settings).await?;
    storage.migrate().await.context("migration failed")?;
    let configured = settings.flags.parse().context("invalid flag value")?;
    let in_force = storage
        .stored_flags()
        .await?
        .map_or(configured, |stored| stored.flags);
    let total = storage.migration_counts().await?.listings;
    let started = std::time::Instant::now();
    let synced = storage
        .sync_legacy(in_force.write_mode(), args.batch_size.max(1), |synced| {
            eprintln!("synced {synced} of {total} listings")
        })
        .await
        .context("sync-legacy failed")?;
    println!(
        "legacy is up to date: {synced} listings synced in {:.1} s; reads may go back to legacy",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
