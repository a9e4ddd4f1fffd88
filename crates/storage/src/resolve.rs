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

use crate::backend::Backend;
use crate::error::{Result, StorageError};
use crate::invalidation::Invalidation;
use crate::router::{Router, Written, ensure_legacy_in_place};

/// The longest alias or option value kept (the legacy `option_value` column's width).
const MAX_SPELLING: usize = 255;

/// One resolution as recorded: what was done, to which attribute, by whom, and what it
/// touched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Resolution {
    pub id: i64,
    /// `alias`, `option` or `move`.
    pub action: String,
    pub attribute_code: String,
    /// The request and its outcome (`{"alias": …, "option": …}`, `{"to": …, "moved": …}`).
    #[sqlx(json)]
    pub detail: serde_json::Value,
    /// Legacy values the resolution changed (moves); 0 for aliases and options, which take
    /// effect when the quarantine is retried.
    pub affected: i64,
    pub resolved_at: String,
    pub resolved_by: String,
}

/// What `move_values` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoveReport {
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
    ) -> Result<Written<Resolution>> {
        let alias = spelling("alias", alias)?;
        let mut tx = self.begin_write().await?;
        let definition = find_attribute(
            B::catalog(&mut tx, mode.authoritative()).await?,
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
        if !already {
            B::insert_alias(&mut tx, &definition, alias, &target.value, actor).await?;
        }
        let detail = serde_json::json!({
            "alias": alias, "option": target.value, "already_known": already,
        });
        let resolution =
            B::record_resolution(&mut tx, "alias", &definition.code, &detail, 0, actor).await?;
        let invalidations = vec![
            Invalidation::Catalog,
            Invalidation::Categories {
                ids: B::categories_using_attribute(&mut tx, definition.id).await?,
            },
            // Legacy reads give spellings the option they mean: cached answers change.
            Invalidation::AllValues,
        ];
        B::notify(&mut tx, &invalidations).await?;
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
    ) -> Result<Written<Resolution>> {
        let value = spelling("value", value)?;
        let mut tx = self.begin_fenced(mode).await?;
        let mut definition = find_attribute(
            B::catalog(&mut tx, mode.authoritative()).await?,
            "attribute",
            attribute,
        )?;
        with_options(&definition)?;
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
        let detail = serde_json::json!({"value": value, "label": label});
        let resolution =
            B::record_resolution(&mut tx, "option", &definition.code, &detail, 0, actor).await?;
        B::notify(&mut tx, &invalidations).await?;
        tx.commit().await?;
        Ok(Written {
            data: resolution,
            invalidations,
        })
    }

    /// Moves the quarantined listing values of attribute `from` (those with `raw_value`, or
    /// all) to attribute `to`, where they belong: the legacy rows change attribute, and the
    /// listings are migrated again in the same transaction, so both stores agree at commit.
    /// A listing that already has a value of `to` is left as it is and reported.
    pub(crate) async fn move_values(
        &self,
        from: &str,
        to: &str,
        raw_value: Option<&str>,
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
        let mut tx = self.begin_fenced(mode).await?;
        ensure_legacy_in_place::<B>(&mut tx).await?;
        crate::backfill::ensure_backfill_allowed(&B::state_row(&mut tx).await?)?;
        let catalog: HashMap<String, Attribute> = B::catalog(&mut tx, Store::Legacy)
            .await?
            .into_iter()
            .map(|a| (a.code.clone(), a))
            .collect();
        let listing_attribute = |field: &str, code: &str| -> Result<i64> {
            match catalog.get(code) {
                Some(a) if a.id < crate::VARIANT_AXIS_ID_OFFSET => Ok(a.id),
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
        let (from_id, to_id) = (
            listing_attribute("from", from)?,
            listing_attribute("to", to)?,
        );
        if from_id == to_id {
            return Err(invalid(
                "to",
                "is the attribute the values are under".into(),
            ));
        }
        let candidates =
            B::quarantined_ids_of(&mut tx, EntityKind::Listing, from, raw_value).await?;
        let moved = B::move_listing_values(&mut tx, from_id, to_id, &candidates).await?;
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
            moved,
            skipped,
            migrated,
            quarantined,
        };
        let detail = serde_json::json!({
            "to": to, "raw_value": raw_value, "moved": report.moved, "skipped": report.skipped,
            "migrated": report.migrated, "quarantined": report.quarantined,
        });
        let affected = report.moved.len() as i64;
        let resolution =
            B::record_resolution(&mut tx, "move", from, &detail, affected, actor).await?;
        let mut invalidations: Vec<Invalidation> = report
            .moved
            .iter()
            .map(|id| Invalidation::entity(domain::EntityRef::listing(*id)))
            .collect();
        invalidations.push(Invalidation::AllRanges);
        B::notify(&mut tx, &invalidations).await?;
        tx.commit().await?;
        Ok(Written {
            data: (resolution, report),
            invalidations,
        })
    }

    /// The resolutions, newest first.
    pub(crate) async fn resolutions(&self, limit: i64) -> Result<Vec<Resolution>> {
        let mut conn = self.acquire().await?;
        B::resolutions(&mut conn, limit).await
    }
}

/// The statements of this module; both backends accept them.
pub(crate) const INSERT_ALIAS: &str = "INSERT INTO attribute_option_aliases
        (attribute_id, alias_key, alias, option_value, attribute_code, created_by)
    VALUES ($1, $2, $3, $4, $5, $6)";

pub(crate) const INSERT_RESOLUTION: &str = "INSERT INTO quarantine_resolutions
        (action, attribute_code, detail, affected, resolved_by)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING CAST(id AS BIGINT) AS id, action, attribute_code, detail, affected,
        CAST(resolved_at AS TEXT) AS resolved_at, resolved_by";

pub(crate) const RESOLUTIONS: &str = "SELECT CAST(id AS BIGINT) AS id, action, attribute_code,
        detail, affected, CAST(resolved_at AS TEXT) AS resolved_at, resolved_by
    FROM quarantine_resolutions ORDER BY id DESC LIMIT $1";

pub(crate) const QUARANTINED_IDS_OF: &str = "SELECT entity_id FROM backfill_quarantine
    WHERE entity_type = $1 AND attribute_code = $2 AND ($3 IS NULL OR raw_value = $3)
    ORDER BY entity_id";

/// Moves a listing's value to another attribute unless the listing has one there already.
pub(crate) const MOVE_LISTING_VALUE: &str = "UPDATE listing_attribute_values
    SET attribute_id = $2
    WHERE listing_id = $3 AND attribute_id = $1
      AND NOT EXISTS (SELECT 1 FROM listing_attribute_values o
                      WHERE o.listing_id = $3 AND o.attribute_id = $2)";

/// The key an alias is unique under, per attribute.
pub(crate) fn alias_key(alias: &str) -> String {
    alias.trim().to_lowercase()
}
