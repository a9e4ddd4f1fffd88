//! How operators resolve the quarantine: an alias for an option (`дизель` → `diesel`), an
//! option for a legitimate legacy value (a car make), values moved to the attribute they belong
//! to. Each is one transaction that records itself in `quarantine_resolutions`; aliases and
//! options then take effect wherever options are read (backfill, verify, writes, legacy reads),
//! and `backfill --retry-quarantine` migrates the quarantined values again.

use std::collections::HashMap;

use domain::{
    Attribute, AttributeOption, EntityKind, FieldError, FieldErrorKind, LocalizedText,
    option_for_spelling,
};
use flags::{Store, WriteMode};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Conn};
use crate::dialect::{Dialect, Sql, on_dialect};
use crate::error::{Result, StorageError};
use crate::invalidation::Invalidation;
use crate::quarantine::{self, AcceptFilter, QuarantineKind, ValueMatch};
use crate::router::{Router, Written, ensure_legacy_in_place};

/// The longest alias or option value kept (the legacy `option_value` column's width).
const MAX_SPELLING: usize = 255;

/// What a resolution did (the `action` column's CHECK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolutionAction {
    Alias,
    Option,
    Move,
    Accept,
    Unaccept,
    Undo,
}

impl ResolutionAction {
    pub const ALL: [Self; 6] = [
        Self::Alias,
        Self::Option,
        Self::Move,
        Self::Accept,
        Self::Unaccept,
        Self::Undo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alias => "alias",
            Self::Option => "option",
            Self::Move => "move",
            Self::Accept => "accept",
            Self::Unaccept => "unaccept",
            Self::Undo => "undo",
        }
    }
}

impl std::fmt::Display for ResolutionAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ResolutionAction {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl TryFrom<String> for ResolutionAction {
    type Error = String;

    fn try_from(stored: String) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str() == stored)
            .ok_or_else(|| format!("unknown resolution action '{stored}'"))
    }
}

/// One resolution as recorded: what was done, to which attribute, by whom, and what it
/// touched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Resolution {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub action: ResolutionAction,
    pub attribute_code: String,
    /// The request and its outcome (`{"alias": …, "option": …}`, `{"to": …, "moved": …}`).
    #[sqlx(json)]
    pub detail: serde_json::Value,
    /// Legacy values the resolution changed (moves); 0 for aliases and options, which take
    /// effect when the quarantine is retried.
    pub affected: i64,
    #[sqlx(try_from = "crate::rows::TimestampText")]
    pub resolved_at: String,
    pub resolved_by: String,
    /// The same resolution was asked for again: this is the earlier one, nothing changed.
    #[sqlx(skip)]
    #[serde(default)]
    pub repeated: bool,
}

impl Resolution {
    fn repeated(self) -> Self {
        Self {
            repeated: true,
            ..self
        }
    }
}

/// Which quarantined values to move, and how carefully.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MoveRequest {
    pub from: String,
    pub to: String,
    /// Only the values users saw as this (trimmed, any case).
    #[serde(default)]
    pub raw_value: Option<String>,
    /// Only the values stored exactly as this (`text=Volkswagen, unit=`).
    #[serde(default)]
    pub raw_value_exact: Option<String>,
    /// Move although the target's type or rules refuse some of the values.
    #[serde(default)]
    pub force: bool,
    /// Report what would move, changing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl MoveRequest {
    fn value(&self) -> Option<ValueMatch<'_>> {
        match (&self.raw_value_exact, &self.raw_value) {
            (Some(exact), _) => Some(ValueMatch::Exact(exact)),
            (None, Some(seen)) => Some(ValueMatch::Seen(seen)),
            (None, None) => None,
        }
    }

    /// What a repeat of this move looks like in a recorded resolution's detail.
    fn same_as(&self, detail: &serde_json::Value) -> bool {
        detail["to"] == self.to.as_str()
            && detail["raw_value"].as_str() == self.raw_value.as_deref()
            && detail["raw_value_exact"].as_str() == self.raw_value_exact.as_deref()
    }
}

/// What `move_values` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoveReport {
    pub dry_run: bool,
    /// Nothing quarantined as "not valid for this attribute" matched: the values that are
    /// (as users saw them), so the operator can type one of them. Nothing was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nothing_matched: Option<Vec<String>>,
    /// Legacy values now under the target attribute (listing ids).
    pub moved: Vec<i64>,
    /// Listings left as they were: they already have a value of the target attribute.
    pub skipped: Vec<i64>,
    /// The moved listings are migrated again whole: their values now in unified, and those
    /// in the quarantine (a moved value the target refuses stays there, under the target).
    pub migrated: usize,
    pub quarantined: usize,
}

fn invalid(field: &str, message: String) -> StorageError {
    StorageError::InvalidValues(vec![FieldError::new(
        field,
        &FieldErrorKind::InvalidValueShape(message),
    )])
}

/// A spelling as operators type it: trimmed, not empty, not too long.
fn spelling<'a>(field: &str, text: &'a str) -> Result<&'a str> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_SPELLING || text.contains('\0') {
        return Err(invalid(
            field,
            format!("must be 1 to {MAX_SPELLING} characters, without NUL"),
        ));
    }
    Ok(text)
}

fn find_attribute(catalog: Vec<Attribute>, field: &str, code: &str) -> Result<Attribute> {
    catalog
        .into_iter()
        .find(|a| a.code == code)
        .ok_or_else(|| invalid(field, format!("no attribute has the code '{code}'")))
}

fn with_options(attribute: &Attribute) -> Result<()> {
    if attribute.attribute_type.uses_options() && !attribute.options.is_empty() {
        Ok(())
    } else {
        Err(invalid(
            "attribute",
            format!(
                "'{}' is a {} attribute without a list of options",
                attribute.code, attribute.attribute_type
            ),
        ))
    }
}

impl MoveReport {
    fn nothing(dry_run: bool, nothing_matched: Option<Vec<String>>) -> Self {
        Self {
            dry_run,
            nothing_matched,
            moved: Vec::new(),
            skipped: Vec::new(),
            migrated: 0,
            quarantined: 0,
        }
    }
}

impl Resolution {
    /// What a dry run or a move that matched nothing answers: no id, nothing recorded.
    fn unrecorded(action: ResolutionAction, attribute_code: &str, actor: &str) -> Self {
        Self {
            id: 0,
            action,
            attribute_code: attribute_code.to_owned(),
            detail: serde_json::Value::Null,
            affected: 0,
            resolved_at: String::new(),
            resolved_by: actor.to_owned(),
            repeated: false,
        }
    }
}

/// The values about to move, read as the target attribute: refused when the target's type
/// differs or its rules refuse some of them (a `year` is no `mileage`), naming how many.
async fn ensure_target_holds<B: Backend>(
    conn: &mut Conn<B>,
    listings: &[i64],
    source: &Attribute,
    target: &Attribute,
) -> Result<()> {
    if source.attribute_type != target.attribute_type {
        return Err(StorageError::Conflict(format!(
            "'{}' is a {} attribute and '{}' a {} one: its values cannot hold them as they are; \
             pass --force (\"force\": true) to move them anyway (what '{}' refuses stays quarantined)",
            source.code, source.attribute_type, target.code, target.attribute_type, target.code
        )));
    }
    let rows = crate::legacy::listing_rows(B::dialect(conn), listings).await?;
    let mut refused = 0;
    for row in rows
        .iter()
        .filter(|r| r.value.code.as_deref() == Some(&source.code))
    {
        let Some((_, mut typed)) = row.value.typed_value() else {
            continue;
        };
        domain::canonical_spellings(&target.options, &mut typed.value);
        if domain::validate::check_typed(target, &target.options, &typed).is_err() {
            refused += 1;
        }
    }
    if refused > 0 {
        return Err(StorageError::Conflict(format!(
            "'{}' refuses {refused} of the {} value(s) to move: pass --force (\"force\": true) to \
             move them anyway (those stay quarantined under '{}')",
            target.code,
            listings.len(),
            target.code
        )));
    }
    Ok(())
}

const EARLIER_RESOLUTIONS: Sql = Sql::same(
    "SELECT CAST(id AS BIGINT) AS id, action, attribute_code, detail, affected,
        CAST(resolved_at AS TEXT) AS resolved_at, resolved_by
    FROM quarantine_resolutions WHERE action = $1 AND attribute_code = $2
    ORDER BY id DESC LIMIT 200",
);

/// The latest resolution of `action` on `attribute` whose detail `same` recognises: a repeat
/// answers it instead of recording another.
async fn earlier_resolution<B: Backend>(
    conn: &mut Conn<B>,
    action: ResolutionAction,
    attribute: &str,
    same: impl Fn(&serde_json::Value) -> bool,
) -> Result<Option<Resolution>> {
    crate::stats::record_queries(1);
    let earlier: Vec<Resolution> = on_dialect!(
        B::dialect(&mut *conn),
        EARLIER_RESOLUTIONS,
        |c, statement| {
            sqlx::query_as(statement)
                .bind(action.as_str())
                .bind(attribute)
                .fetch_all(&mut *c)
                .await?
        }
    );
    Ok(earlier.into_iter().find(|r| same(&r.detail)))
}

impl<B: Backend> Router<B> {
    /// Registers `alias` as another spelling of `option` of `attribute`. Refused when the
    /// spelling already means another option (it would no longer be certain); accepted without
    /// change when it already means this one.
    pub(crate) async fn add_alias(
        &self,
        attribute: &str,
        alias: &str,
        option: &str,
        actor: &str,
        mode: WriteMode,
        dry_run: bool,
    ) -> Result<Written<Resolution>> {
        let alias = spelling("alias", alias)?;
        let mut tx = self.begin_write().await?;
        let definition = find_attribute(
            crate::schema::catalog(B::dialect(&mut tx), mode.authoritative()).await?,
            "attribute",
            attribute,
        )?;
        with_options(&definition)?;
        let Some(target) = definition.options.iter().find(|o| o.value == option) else {
            return Err(StorageError::InvalidValues(vec![FieldError::new(
                "option",
                &FieldErrorKind::OptionNotAllowed {
                    given: option.to_owned(),
                    allowed: definition.options.iter().map(|o| o.value.clone()).collect(),
                },
            )]));
        };
        if let Some(other) = definition
            .options
            .iter()
            .find(|o| o.value != target.value && o.is_spelled(alias))
        {
            return Err(StorageError::Conflict(format!(
                "'{alias}' already means option '{}' of '{attribute}': an alias must name one option only",
                other.value
            )));
        }
        if let Some(other) = definition
            .options
            .iter()
            .find(|o| o.value != target.value && o.looks_like(alias))
        {
            return Err(StorageError::Conflict(format!(
                "'{alias}' looks like option '{}' of '{attribute}' (Unicode confusables): an alias that \
                 can be mistaken for another option would store that option's look-alike as '{}'",
                other.value, target.value
            )));
        }
        let already = option_for_spelling(&definition.options, alias) == Some(&target.value);
        if already {
            let same = |d: &serde_json::Value| {
                d["option"] == target.value.as_str()
                    && d["alias"].as_str().map(alias_key) == Some(alias_key(alias))
            };
            if let Some(earlier) =
                earlier_resolution::<B>(&mut tx, ResolutionAction::Alias, &definition.code, same)
                    .await?
            {
                return Ok(Written {
                    data: earlier.repeated(),
                    invalidations: Vec::new(),
                });
            }
        } else {
            insert_alias(
                B::dialect(&mut tx),
                &definition,
                alias,
                &target.value,
                actor,
            )
            .await?;
        }
        // How many quarantined values users saw spelled so: they migrate at the next retry.
        let matching = quarantine::ids_of::<B>(
            &mut tx,
            EntityKind::Listing,
            &definition.code,
            QuarantineKind::Invalid,
            Some(ValueMatch::Seen(alias)),
        )
        .await?
        .len();
        let detail = serde_json::json!({
            "alias": alias, "option": target.value, "already_known": already,
            "quarantined_matching": matching,
        });
        if dry_run {
            return Ok(Written {
                data: Resolution {
                    detail,
                    ..Resolution::unrecorded(ResolutionAction::Alias, &definition.code, actor)
                },
                invalidations: Vec::new(),
            });
        }
        let resolution = record_resolution(
            B::dialect(&mut tx),
            ResolutionAction::Alias,
            &definition.code,
            &detail,
            0,
            actor,
        )
        .await?;
        let invalidations = vec![
            Invalidation::Catalog,
            Invalidation::Categories {
                ids: crate::affected::categories_using_attribute::<B>(&mut tx, definition.id)
                    .await?,
            },
            // Legacy reads give spellings the option they mean: cached answers change.
            Invalidation::AllValues,
        ];
        crate::invalidation::notify(B::dialect(&mut tx), &invalidations).await?;
        tx.commit().await?;
        Ok(Written {
            data: resolution,
            invalidations,
        })
    }

    /// Adds `value` (labelled `label`) to the options of `attribute`, in every store `mode`
    /// writes: for a legacy value that is legitimate but was not in the list.
    pub(crate) async fn add_option(
        &self,
        attribute: &str,
        value: &str,
        label: LocalizedText,
        actor: &str,
        mode: WriteMode,
        dry_run: bool,
    ) -> Result<Written<Resolution>> {
        let value = spelling("value", value)?;
        let mut tx = self.begin_fenced(mode).await?;
        let mut definition = find_attribute(
            crate::schema::catalog(B::dialect(&mut tx), mode.authoritative()).await?,
            "attribute",
            attribute,
        )?;
        with_options(&definition)?;
        if definition.options.iter().any(|o| o.value == value)
            && let Some(earlier) =
                earlier_resolution::<B>(&mut tx, ResolutionAction::Option, &definition.code, |d| {
                    d["value"] == value
                })
                .await?
        {
            return Ok(Written {
                data: earlier.repeated(),
                invalidations: Vec::new(),
            });
        }
        if let Some(other) = definition.options.iter().find(|o| o.is_spelled(value)) {
            return Err(StorageError::Conflict(format!(
                "'{value}' already means option '{}' of '{attribute}'",
                other.value
            )));
        }
        if let Some(other) = definition.options.iter().find(|o| o.looks_like(value)) {
            return Err(StorageError::Conflict(format!(
                "'{value}' looks like option '{}' of '{attribute}' (Unicode confusables): two \
                 options people cannot tell apart are refused",
                other.value
            )));
        }
        let label = if label.is_empty() {
            LocalizedText::serbian(value)
        } else {
            label
        };
        definition.options.push(AttributeOption {
            label: label.clone(),
            ..AttributeOption::plain(value)
        });
        if mode.writes(Store::Legacy) {
            ensure_legacy_in_place::<B>(&mut tx).await?;
        }
        let invalidations =
            crate::writes::store_definition::<B>(&mut tx, mode, &definition).await?;
        let matching = quarantine::ids_of::<B>(
            &mut tx,
            EntityKind::Listing,
            &definition.code,
            QuarantineKind::Invalid,
            Some(ValueMatch::Seen(value)),
        )
        .await?
        .len();
        let detail =
            serde_json::json!({"value": value, "label": label, "quarantined_matching": matching});
        if dry_run {
            return Ok(Written {
                data: Resolution {
                    detail,
                    ..Resolution::unrecorded(ResolutionAction::Option, &definition.code, actor)
                },
                invalidations: Vec::new(),
            });
        }
        let resolution = record_resolution(
            B::dialect(&mut tx),
            ResolutionAction::Option,
            &definition.code,
            &detail,
            0,
            actor,
        )
        .await?;
        crate::invalidation::notify(B::dialect(&mut tx), &invalidations).await?;
        tx.commit().await?;
        Ok(Written {
            data: resolution,
            invalidations,
        })
    }

    /// Moves the quarantined listing values of attribute `from` that its rules refused (those
    /// users saw as `raw_value`, or all) to attribute `to`: the legacy rows change attribute,
    /// and the listings are migrated again in the same transaction, so both stores agree at
    /// commit. Orphans, empty rows and unknown codes are never moved. A listing that already
    /// has a value of `to` is left as it is and reported. A target whose type or rules refuse
    /// some of the values needs `force`; a move that matches nothing records nothing.
    pub(crate) async fn move_values(
        &self,
        request: &MoveRequest,
        actor: &str,
        mode: WriteMode,
    ) -> Result<Written<(Resolution, MoveReport)>> {
        if !mode.writes(Store::Legacy) {
            return Err(StorageError::Conflict(
                "values are moved in the legacy tables, the backfill's source: the flags in force \
                 write only to unified; turn dual-write on first"
                    .into(),
            ));
        }
        let (from, to) = (request.from.as_str(), request.to.as_str());
        let mut tx = self.begin_fenced(mode).await?;
        ensure_legacy_in_place::<B>(&mut tx).await?;
        crate::backfill::ensure_backfill_allowed(
            &crate::evidence::state_row(B::dialect(&mut tx)).await?,
        )?;
        let catalog: HashMap<String, Attribute> =
            crate::schema::catalog(B::dialect(&mut tx), Store::Legacy)
                .await?
                .into_iter()
                .map(|a| (a.code.clone(), a))
                .collect();
        let listing_attribute = |field: &str, code: &str| -> Result<&Attribute> {
            match catalog.get(code) {
                Some(a) if a.id < crate::VARIANT_AXIS_ID_OFFSET => Ok(a),
                Some(_) => Err(invalid(
                    field,
                    format!("'{code}' is a B2C variant axis: listings cannot hold it"),
                )),
                None => Err(invalid(
                    field,
                    format!("no attribute has the code '{code}'"),
                )),
            }
        };
        let (source, target) = (
            listing_attribute("from", from)?,
            listing_attribute("to", to)?,
        );
        if source.id == target.id {
            return Err(invalid(
                "to",
                "is the attribute the values are under".into(),
            ));
        }
        let candidates = quarantine::ids_of::<B>(
            &mut tx,
            EntityKind::Listing,
            from,
            QuarantineKind::Invalid,
            request.value(),
        )
        .await?;
        if candidates.is_empty() {
            if let Some(earlier) =
                earlier_resolution::<B>(&mut tx, ResolutionAction::Move, from, |d| {
                    request.same_as(d)
                })
                .await?
            {
                return Ok(Written {
                    data: (
                        earlier.repeated(),
                        MoveReport::nothing(request.dry_run, None),
                    ),
                    invalidations: Vec::new(),
                });
            }
            let known = quarantine::shown_values_of::<B>(
                &mut tx,
                EntityKind::Listing,
                from,
                QuarantineKind::Invalid,
            )
            .await?;
            return Ok(Written {
                data: (
                    Resolution::unrecorded(ResolutionAction::Move, from, actor),
                    MoveReport::nothing(request.dry_run, Some(known)),
                ),
                invalidations: Vec::new(),
            });
        }
        if !request.force {
            ensure_target_holds::<B>(&mut tx, &candidates, source, target).await?;
        }
        let moved =
            move_listing_values(B::dialect(&mut tx), source.id, target.id, &candidates).await?;
        let skipped: Vec<i64> = candidates
            .iter()
            .copied()
            .filter(|id| !moved.contains(id))
            .collect();
        let (migrated, quarantined) = if moved.is_empty() {
            (0, 0)
        } else {
            crate::backfill::migrate_entities::<B>(&mut tx, EntityKind::Listing, &moved, &catalog)
                .await?
        };
        let report = MoveReport {
            dry_run: request.dry_run,
            nothing_matched: None,
            moved,
            skipped,
            migrated,
            quarantined,
        };
        if request.dry_run {
            // Everything above ran in the transaction, which is dropped: nothing changed.
            return Ok(Written {
                data: (
                    Resolution::unrecorded(ResolutionAction::Move, from, actor),
                    report,
                ),
                invalidations: Vec::new(),
            });
        }
        let detail = serde_json::json!({
            "to": to, "raw_value": request.raw_value, "raw_value_exact": request.raw_value_exact,
            "force": request.force, "moved": report.moved, "skipped": report.skipped,
            "migrated": report.migrated, "quarantined": report.quarantined,
        });
        let affected = report.moved.len() as i64;
        let resolution = record_resolution(
            B::dialect(&mut tx),
            ResolutionAction::Move,
            from,
            &detail,
            affected,
            actor,
        )
        .await?;
        let mut invalidations: Vec<Invalidation> = report
            .moved
            .iter()
            .map(|id| Invalidation::entity(domain::EntityRef::listing(*id)))
            .collect();
        invalidations.push(Invalidation::AllRanges);
        crate::invalidation::notify(B::dialect(&mut tx), &invalidations).await?;
        tx.commit().await?;
        Ok(Written {
            data: (resolution, report),
            invalidations,
        })
    }

    /// Accepts that unified reads go without the quarantined values `filter` names (or, with
    /// `undo`, takes that back), audited as a resolution. Repeating an acceptance that changes
    /// nothing answers the earlier one.
    pub(crate) async fn accept_quarantined(
        &self,
        filter: &AcceptFilter,
        all: bool,
        note: Option<&str>,
        actor: &str,
        undo: bool,
    ) -> Result<Resolution> {
        let action = if undo {
            ResolutionAction::Unaccept
        } else {
            ResolutionAction::Accept
        };
        let attribute = filter.attribute.as_deref().unwrap_or("*");
        let mut tx = self.begin_write().await?;
        let changed = quarantine::set_accepted::<B>(&mut tx, filter, all, actor, undo).await?;
        if changed == 0 {
            let same = |detail: &serde_json::Value| {
                detail["reason"].as_str() == filter.kind.map(QuarantineKind::as_str)
            };
            if let Some(earlier) = earlier_resolution::<B>(&mut tx, action, attribute, same).await?
            {
                return Ok(earlier.repeated());
            }
        }
        let detail = serde_json::json!({
            "attribute": filter.attribute, "reason": filter.kind.map(QuarantineKind::as_str),
            "note": note, "values": changed,
        });
        let resolution = record_resolution(
            B::dialect(&mut tx),
            action,
            attribute,
            &detail,
            changed as i64,
            actor,
        )
        .await?;
        tx.commit().await?;
        Ok(resolution)
    }

    /// The resolutions, newest first.
    pub(crate) async fn resolutions(&self, limit: i64) -> Result<Vec<Resolution>> {
        let mut conn = self.acquire().await?;
        crate::stats::record_queries(1);
        Ok(on_dialect!(
            B::dialect(&mut conn),
            RESOLUTIONS,
            |c, statement| sqlx::query_as(statement).bind(limit).fetch_all(c).await?
        ))
    }
}

const INSERT_ALIAS: Sql = Sql::same(
    "INSERT INTO attribute_option_aliases
        (attribute_id, alias_key, alias, option_value, attribute_code, created_by)
    VALUES ($1, $2, $3, $4, $5, $6)",
);

/// Records that `alias` of the attribute's values means its option `option`.
async fn insert_alias(
    conn: Dialect<'_>,
    attribute: &domain::Attribute,
    alias: &str,
    option: &str,
    actor: &str,
) -> Result<()> {
    crate::stats::record_queries(1);
    on_dialect!(conn, INSERT_ALIAS, |c, statement| {
        sqlx::query(statement)
            .bind(attribute.id)
            .bind(alias_key(alias))
            .bind(alias)
            .bind(option)
            .bind(&attribute.code)
            .bind(actor)
            .execute(c)
            .await?;
    });
    Ok(())
}

const INSERT_RESOLUTION: Sql = Sql::same(
    "INSERT INTO quarantine_resolutions
        (action, attribute_code, detail, affected, resolved_by)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING CAST(id AS BIGINT) AS id, action, attribute_code, detail, affected,
        CAST(resolved_at AS TEXT) AS resolved_at, resolved_by",
);

/// Records a resolution (or its undoing) in the transaction that makes it.
pub(crate) async fn record_resolution(
    conn: Dialect<'_>,
    action: ResolutionAction,
    attribute_code: &str,
    detail: &serde_json::Value,
    affected: i64,
    actor: &str,
) -> Result<Resolution> {
    crate::stats::record_queries(1);
    Ok(on_dialect!(conn, INSERT_RESOLUTION, |c, statement| {
        sqlx::query_as(statement)
            .bind(action.as_str())
            .bind(attribute_code)
            .bind(sqlx::types::Json(detail))
            .bind(affected)
            .bind(actor)
            .fetch_one(c)
            .await?
    }))
}

const RESOLUTIONS: Sql = Sql::same(
    "SELECT CAST(id AS BIGINT) AS id, action, attribute_code,
        detail, affected, CAST(resolved_at AS TEXT) AS resolved_at, resolved_by
    FROM quarantine_resolutions ORDER BY id DESC LIMIT $1",
);

/// Moves a listing's value to another attribute unless the listing has one there already.
const MOVE_LISTING_VALUE: Sql = Sql::same(
    "UPDATE listing_attribute_values
    SET attribute_id = $2
    WHERE listing_id = $3 AND attribute_id = $1
      AND NOT EXISTS (SELECT 1 FROM listing_attribute_values o
                      WHERE o.listing_id = $3 AND o.attribute_id = $2)",
);

/// Moves each listing's legacy value of attribute `from` to `to`; returns the listings moved
/// (not those that hold a value of `to` already).
pub(crate) async fn move_listing_values(
    mut conn: Dialect<'_>,
    from: i64,
    to: i64,
    listings: &[i64],
) -> Result<Vec<i64>> {
    let mut moved = Vec::new();
    for &listing in listings {
        crate::stats::record_queries(1);
        let changed = on_dialect!(conn.reborrow(), MOVE_LISTING_VALUE, |c, statement| {
            sqlx::query(statement)
                .bind(from)
                .bind(to)
                .bind(listing)
                .execute(c)
                .await?
                .rows_affected()
        });
        if changed > 0 {
            moved.push(listing);
        }
    }
    Ok(moved)
}

/// The key an alias is unique under, per attribute.
pub(crate) fn alias_key(alias: &str) -> String {
    alias.trim().to_lowercase()
}
