//! The `unified-attributes` binary: loads settings, starts telemetry, runs one subcommand.

mod commands;
mod failure;
mod lease;
mod progress;
mod status;
mod throttle;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use api::{Application, Settings, telemetry};
use clap::{Args, Parser, Subcommand};

// A request that misses the cache makes a few dozen small allocations (rows, strings, the JSON
// body); glibc's malloc took a tenth of the service's CPU on that path (perf, load benchmark).
// Its 2.x line (see Cargo.toml): 3.x took its slow path for a quarter of them, every time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Moves marketplace product attributes from the legacy tables to one unified model without
/// downtime, and serves them.
///
/// Exit codes, the same in every command: 0 done; 1 refused — a check found a problem (verify
/// found drift, a restored archive had changed) or a rule refused the step (a guardrail, the
/// wrong phase, the archive's soak, another bulk operation holding the lease); 2 usage — the
/// command line, the settings, or what they name; 3 infrastructure — the database could not be
/// reached or failed; 130 a bulk operation stopped at a batch boundary by Ctrl-C or SIGTERM.
/// With `--json`, a failure is also an object on stdout: `{error, kind, exit_code, rules, hint}`.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML settings file, layered over the defaults and under the environment.
    #[arg(long, global = true, env = "APP_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// `postgres://…` or `sqlite://…` (default: an SQLite file in the working directory).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Print the result as JSON on stdout (progress stays on stderr). Not for `serve`.
    #[arg(long, global = true)]
    json: bool,
    /// Bulk operations run one at a time under a lease; one whose heartbeat stopped this long
    /// ago (its process was killed) is taken over by the next.
    #[arg(long, global = true, env = "OPERATION_LEASE_GRACE_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_grace_seconds: u64,
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
    /// Load the demo marketplace, in legacy form with the real data's defects, into an empty
    /// database.
    SeedDemo(commands::SeedArgs),
    /// The migration at a glance: the database, phase and rung, what the next step needs and
    /// what supplies it, the bulk operation running and where it stands, the quarantine and
    /// what of it blocks the cut-over, the last verify and flag changes, the replicas.
    /// `--watch` refreshes it. Read only.
    Status(status::StatusArgs),
    /// Show the flags in force, where each came from, and the phase they mean; with `--set`,
    /// change them at runtime first (stored, audited, heard by every replica).
    Flags(commands::FlagsArgs),
    /// Copy legacy definitions, bindings and the values of listings, products and variants to
    /// the unified tables: batched, resumable from its checkpoint, idempotent; refused rows go
    /// to the quarantine.
    Backfill(commands::BackfillArgs),
    /// Show or change the throttle of a running backfill or sync-legacy: pause, resume, the
    /// replay lag and load limits it waits for (stored: takes effect before its next batch).
    Throttle(commands::ThrottleArgs),
    /// Compare legacy and unified values of every entity (quarantined rows left out); exit 1
    /// on drift.
    Verify(commands::VerifyArgs),
    /// Bring legacy up to date from unified (rollback after unified-only writes). Needs
    /// dual-write in force, so writes made during the sync reach legacy too.
    SyncLegacy(commands::SyncArgs),
    /// List the quarantined legacy values by attribute, raw value and reason, most common
    /// first: what to resolve (then `backfill --retry-quarantine`).
    Quarantine(commands::QuarantineArgs),
    /// Resolve the quarantine, audited: an alias for an option, an option for a legitimate
    /// value, values moved to the attribute they belong to; `resolve history` lists them.
    Resolve(commands::ResolveArgs),
    /// Remove the unified values of listings, products and variants the marketplace deleted
    /// (it owns them and may hard-delete; nothing cascades into our tables); `--dry-run`
    /// counts them.
    SweepOrphans(commands::SweepArgs),
    /// Move the legacy attribute tables to the archive (PostgreSQL: schema `legacy_archive`;
    /// SQLite: `legacy_archive_` prefix), with a manifest of counts and checksums. Needs the
    /// unified phase and a clean verify since legacy was last written. `--dry-run` says who
    /// still uses the legacy tables and what would move, changing nothing.
    Archive(commands::ArchiveArgs),
    /// Move the archived legacy tables back, with a manifest; exit 1 if the archive no longer
    /// matches what was archived (it is restored all the same).
    RestoreArchive,
    /// The post-deployment suite against a running service: API, database, performance,
    /// feature, integration and monitoring checks, pass/fail each; exit 1 on any failure.
    Validate(validate::ValidateArgs),
}

#[derive(Debug, Args)]
struct MigrateArgs {
    #[command(subcommand)]
    direction: Option<commands::Direction>,
}

#[derive(Debug, Args, Default)]
struct ServeArgs {
    /// `host:port` to listen on; port 0 picks a free port.
    #[arg(long)]
    bind: Option<String>,
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
    let json = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => ExitCode::from(failure::report(&err, json)),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref()).context("invalid settings")?;
    let serving = matches!(cli.command, None | Some(Command::Serve(_)));
    telemetry::init(&settings.telemetry, !serving);
    if let Some(url) = cli.database_url {
        settings.database.url = Some(url.into());
    }
    let output = commands::Output { json: cli.json };
    let grace = std::time::Duration::from_secs(cli.lease_grace_seconds);
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
            commands::migrate(&settings, output, args.direction.unwrap_or_default(), grace).await
        }
        Command::SeedDemo(args) => commands::seed_demo(&settings, output, &args).await,
        Command::Flags(args) => commands::flags(&settings, output, &args).await,
        Command::Status(args) => status::status(&settings, output, &args).await,
        Command::Backfill(args) => commands::backfill(&settings, output, &args, grace).await,
        Command::Verify(args) => commands::verify(&settings, output, &args).await,
        Command::Throttle(args) => commands::throttle(&settings, output, &args).await,
        Command::SyncLegacy(args) => commands::sync_legacy(&settings, output, &args, grace).await,
        Command::Quarantine(args) => commands::quarantine(&settings, output, &args).await,
        Command::Resolve(args) => commands::resolve(&settings, output, &args).await,
        Command::SweepOrphans(args) => {
            commands::sweep_orphans(&settings, output, &args, grace).await
        }
        Command::Archive(args) => commands::archive(&settings, output, &args, grace).await,
        Command::RestoreArchive => commands::restore_archive(&settings, output, grace).await,
        Command::Validate(args) => {
            let database_url = settings
                .database
                .url
                .is_some()
                .then(|| settings.database.url());
            commands::validate(output, args, database_url).await
        }
    }
}
