//! `flags`: show the flags in force, change them (`--set`), walk the ladder (`promote`, `abort`).

use std::collections::HashMap;

use anyhow::{Context, bail};
use api::Settings;
use clap::{Args, Subcommand};

use super::*;

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
        .map(flags::Phase::as_str)
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
