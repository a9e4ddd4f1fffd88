//! `migrate` (its plan, `info`, `down`) and `seed-demo`: the commands that set a database up.

use std::time::Duration;

use anyhow::{Context, bail};
use api::Settings;
use clap::{Args, Subcommand};
use serde::Serialize;
use storage::demo::Dataset;

use crate::lease::HeldLease;

use super::*;

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
