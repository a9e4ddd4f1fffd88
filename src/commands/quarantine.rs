//! `quarantine` (list, accept) and `resolve` (alias, option, move, undo, history).

use anyhow::{Context, bail};
use api::Settings;
use clap::Args;
use serde::Serialize;
use storage::resolve::ResolutionAction;

use super::*;

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
    match r.action {
        ResolutionAction::Alias => format!(
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
        ResolutionAction::Option => format!(
            "new option '{}'{}",
            text("value"),
            matching("quarantined_matching")
        ),
        ResolutionAction::Move => format!(
            "values moved to '{}': {} moved, {} skipped, {} migrated again, {} quarantined",
            text("to"),
            count("moved"),
            count("skipped"),
            count("migrated"),
            count("quarantined")
        ),
        ResolutionAction::Accept | ResolutionAction::Unaccept => format!(
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
        ResolutionAction::Undo => format!("undid resolution {} ({})", d["undoes"], text("action")),
    }
}
