//! `resolve undo ID`: a resolution taken back while nothing has been written on top of it. An
//! acceptance is withdrawn (or restored); an alias is removed unless values were migrated
//! through it; an option is removed unless values choose it (the same check as an admin edit
//! that drops an option); moved values go back to the attribute they came from unless their
//! listings changed since. Each undo is itself recorded, and is not repeated.

use std::collections::{BTreeMap, HashMap};

use domain::{Attribute, EntityKind, EntityRef};
use flags::{Store, WriteMode};

use crate::backend::{Backend, Conn};
use crate::dialect::{Sql, on_dialect};
use crate::error::{Resource, Result, StorageError};
use crate::invalidation::Invalidation;
use crate::quarantine::{AcceptFilter, QuarantineKind};
use crate::resolve::{Resolution, ResolutionAction};
use crate::router::{Router, Written, ensure_legacy_in_place};
use crate::stats::record_queries;

const RESOLUTION: Sql = Sql::same(
    "SELECT CAST(id AS BIGINT) AS id, action, attribute_code, detail, affected,
        CAST(resolved_at AS TEXT) AS resolved_at, resolved_by
    FROM quarantine_resolutions WHERE id = $1",
);

/// Resolutions recorded after `$1` on attribute `$2`, undos of it excepted: what was written on
/// top of it.
const LATER: Sql = Sql::same(
    "SELECT CAST(id AS BIGINT) AS id, action, attribute_code, detail, affected,
        CAST(resolved_at AS TEXT) AS resolved_at, resolved_by
    FROM quarantine_resolutions WHERE id > $1 AND attribute_code = $2 ORDER BY id",
);

/// Legacy listing rows of attribute `$1` spelled as alias `$2` (any case, trimmed) whose listing
/// has a unified value of the attribute with id `$3`: migrated through the alias.
const MIGRATED_THROUGH_ALIAS: Sql = Sql::same(
    "SELECT COUNT(*) FROM listing_attribute_values l
    WHERE l.attribute_id = $1 AND lower(trim(l.text_value)) = $2
      AND EXISTS (SELECT 1 FROM unified_attribute_values u WHERE u.entity_type = 'listing'
                  AND u.entity_id = l.listing_id AND u.attribute_id = $3)",
);

const DELETE_ALIAS: Sql =
    Sql::same("DELETE FROM attribute_option_aliases WHERE attribute_id = $1 AND alias_key = $2");

async fn resolutions<B: Backend>(
    conn: &mut Conn<B>,
    sql: Sql,
    id: i64,
    attribute: Option<&str>,
) -> Result<Vec<Resolution>> {
    record_queries(1);
    Ok(on_dialect!(B::dialect(&mut *conn), sql, |c, statement| {
        let query = sqlx::query_as(statement).bind(id);
        match attribute {
            Some(code) => query.bind(code).fetch_all(&mut *c).await?,
            None => query.fetch_all(&mut *c).await?,
        }
    }))
}

fn written_on_top(what: &str) -> StorageError {
    StorageError::Conflict(format!(
        "{what}: undoing it now would change what was written since; resolve again instead"
    ))
}

impl<B: Backend> Router<B> {
    /// Takes resolution `id` back (see the module). Repeating it answers the earlier undo.
    pub(crate) async fn undo_resolution(
        &self,
        id: i64,
        actor: &str,
        mode: WriteMode,
    ) -> Result<Written<Resolution>> {
        let mut tx = self.begin_fenced(mode).await?;
        let Some(undone) = resolutions::<B>(&mut tx, RESOLUTION, id, None).await?.pop() else {
            return Err(StorageError::NotFound {
                what: Resource::Resolution,
                id,
            });
        };
        if undone.action == ResolutionAction::Undo {
            return Err(StorageError::Conflict(format!(
                "resolution {id} is an undo itself: resolve again instead"
            )));
        }
        let later =
            resolutions::<B>(&mut tx, LATER, id, Some(undone.attribute_code.as_str())).await?;
        if let Some(earlier) = later
            .iter()
            .find(|r| r.action == ResolutionAction::Undo && r.detail["undoes"] == id)
        {
            return Ok(Written {
                data: Resolution {
                    repeated: true,
                    ..earlier.clone()
                },
                invalidations: Vec::new(),
            });
        }
        if let Some(next) = later.first() {
            return Err(written_on_top(&format!(
                "resolution {} ({} of '{}') came after it",
                next.id, next.action, next.attribute_code
            )));
        }
        let detail = &undone.detail;
        let text = |key: &str| detail[key].as_str().map(str::to_owned);
        let mut invalidations = Vec::new();
        let mut affected = 0;
        match undone.action {
            ResolutionAction::Accept | ResolutionAction::Unaccept => {
                let filter = AcceptFilter {
                    attribute: text("attribute"),
                    kind: text("reason").and_then(|k| k.parse::<QuarantineKind>().ok()),
                };
                affected = crate::quarantine::set_accepted::<B>(
                    &mut tx,
                    &filter,
                    true,
                    actor,
                    undone.action == ResolutionAction::Accept,
                )
                .await?;
            }
            ResolutionAction::Alias if detail["already_known"] == true => {}
            ResolutionAction::Alias => {
                let definition = self.definition(&mut tx, &undone, mode).await?;
                let key = crate::resolve::alias_key(&text("alias").unwrap_or_default());
                let migrated: i64 = on_dialect!(
                    B::dialect(&mut *tx),
                    MIGRATED_THROUGH_ALIAS,
                    |c, statement| {
                        sqlx::query_scalar(statement)
                            .bind(definition.id)
                            .bind(&key)
                            .bind(definition.id)
                            .fetch_one(&mut *c)
                            .await?
                    }
                );
                if migrated > 0 {
                    return Err(written_on_top(&format!(
                        "{migrated} value(s) spelled '{key}' were migrated through this alias"
                    )));
                }
                affected = on_dialect!(B::dialect(&mut *tx), DELETE_ALIAS, |c, statement| {
                    sqlx::query(statement)
                        .bind(definition.id)
                        .bind(&key)
                        .execute(&mut *c)
                        .await?
                        .rows_affected()
                });
                invalidations = vec![Invalidation::Catalog, Invalidation::AllValues];
            }
            ResolutionAction::Option => {
                let current = self.definition(&mut tx, &undone, mode).await?;
                let value = text("value").unwrap_or_default();
                let mut updated = current.clone();
                updated.options.retain(|o| o.value != value);
                if updated.options.len() < current.options.len() {
                    // Refused, with the counts, while values still choose the option.
                    crate::option_use::settle_dropped_options::<B>(
                        &mut tx,
                        mode,
                        &current,
                        &updated,
                        &BTreeMap::new(),
                    )
                    .await?;
                    if mode.writes(Store::Legacy) {
                        ensure_legacy_in_place::<B>(&mut tx).await?;
                    }
                    invalidations =
                        crate::writes::store_definition::<B>(&mut tx, mode, &updated).await?;
                    affected = 1;
                }
            }
            ResolutionAction::Move => {
                if !mode.writes(Store::Legacy) {
                    return Err(StorageError::Conflict(
                        "a move is undone in the legacy tables: turn dual-write on first".into(),
                    ));
                }
                ensure_legacy_in_place::<B>(&mut tx).await?;
                let catalog: HashMap<String, Attribute> =
                    crate::schema::catalog(B::dialect(&mut tx), Store::Legacy)
                        .await?
                        .into_iter()
                        .map(|a| (a.code.clone(), a))
                        .collect();
                let id_of = |code: &str| {
                    catalog.get(code).map(|a| a.id).ok_or_else(|| {
                        StorageError::Conflict(format!("attribute '{code}' no longer exists"))
                    })
                };
                let from = id_of(&undone.attribute_code)?;
                let to = id_of(&text("to").unwrap_or_default())?;
                let moved: Vec<i64> = detail["moved"]
                    .as_array()
                    .map(|ids| ids.iter().filter_map(|v| v.as_i64()).collect())
                    .unwrap_or_default();
                let back =
                    crate::resolve::move_listing_values(B::dialect(&mut tx), to, from, &moved)
                        .await?;
                if back.len() != moved.len() {
                    return Err(written_on_top(&format!(
                        "{} of the {} moved listing(s) changed since",
                        moved.len() - back.len(),
                        moved.len()
                    )));
                }
                if !back.is_empty() {
                    crate::backfill::migrate_entities::<B>(
                        &mut tx,
                        EntityKind::Listing,
                        &back,
                        &catalog,
                    )
                    .await?;
                }
                affected = back.len() as u64;
                invalidations = back
                    .iter()
                    .map(|id| Invalidation::entity(EntityRef::listing(*id)))
                    .collect();
                invalidations.push(Invalidation::AllRanges);
            }
            ResolutionAction::Undo => {
                return Err(StorageError::Conflict(format!(
                    "a resolution of kind '{}' cannot be undone",
                    undone.action
                )));
            }
        }
        let record = serde_json::json!({"undoes": id, "action": undone.action});
        let resolution = crate::resolve::record_resolution(
            B::dialect(&mut tx),
            ResolutionAction::Undo,
            &undone.attribute_code,
            &record,
            affected as i64,
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

    /// The definition a resolution names, as the authoritative store holds it.
    async fn definition(
        &self,
        conn: &mut Conn<B>,
        resolution: &Resolution,
        mode: WriteMode,
    ) -> Result<Attribute> {
        crate::schema::catalog(B::dialect(conn), mode.authoritative())
            .await?
            .into_iter()
            .find(|a| a.code == resolution.attribute_code)
            .ok_or_else(|| {
                StorageError::Conflict(format!(
                    "attribute '{}' no longer exists",
                    resolution.attribute_code
                ))
            })
    }
}
