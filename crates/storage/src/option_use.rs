//! Options still in use: an admin change that drops an option from an attribute is refused
//! while values still choose it, in any store the change writes — those values would turn
//! unreadable in unified and fail every later backfill or verify — unless the change re-maps
//! them to a kept option, which it then does in the same transaction.

use std::collections::BTreeMap;

use domain::{Attribute, FieldError, FieldErrorKind};
use flags::{Store, WriteMode};

use crate::backend::{Backend, Conn};
use crate::dialect::{Sql, on_dialect};
use crate::error::{Result, StorageError};

/// Unified values of attribute `$1` that choose option `$2` (one choice, or one of a list).
const UNIFIED_USES: Sql = Sql {
    pg: "SELECT COUNT(*) FROM unified_attribute_values WHERE attribute_id = $1
        AND (text_value = $2 OR json_value @> jsonb_build_array(CAST($2 AS TEXT)))",
    lite: "SELECT COUNT(*) FROM unified_attribute_values v WHERE v.attribute_id = $1
        AND (v.text_value = $2
            OR EXISTS (SELECT 1 FROM json_each(v.json_value) e WHERE e.value = $2))",
};

/// Legacy listing rows of attribute `$1` that choose option `$2`: as the whole text in any
/// case, as an item of a comma-separated list, or in a JSON list.
const LEGACY_USES: Sql = Sql {
    pg: "SELECT COUNT(*) FROM listing_attribute_values WHERE attribute_id = $1
        AND (lower(trim(text_value)) = lower($2)
            OR lower($2) IN (SELECT lower(trim(item)) FROM unnest(string_to_array(text_value, ',')) item)
            OR json_value @> jsonb_build_array(CAST($2 AS TEXT)))",
    lite: "SELECT COUNT(*) FROM listing_attribute_values v WHERE v.attribute_id = $1
        AND (lower(trim(v.text_value)) = lower($2)
            OR (',' || replace(lower(v.text_value), ', ', ',') || ',') LIKE '%,' || lower($2) || ',%'
            OR EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(v.json_value)
                THEN v.json_value END) e WHERE e.value = $2))",
};

/// Every row of attribute `$1` that could choose an option, keyed for the update below.
const UNIFIED_ROWS: Sql = Sql::same(
    "SELECT entity_type, CAST(entity_id AS BIGINT), text_value, CAST(json_value AS TEXT)
    FROM unified_attribute_values WHERE attribute_id = $1",
);
const UNIFIED_REWRITE: Sql = Sql {
    pg: "UPDATE unified_attribute_values SET text_value = $4, json_value = CAST($5 AS JSONB)
        WHERE entity_type = $1 AND entity_id = $2 AND attribute_id = $3",
    lite: "UPDATE unified_attribute_values SET text_value = $4, json_value = $5
        WHERE entity_type = $1 AND entity_id = $2 AND attribute_id = $3",
};
const LEGACY_ROWS: Sql = Sql::same(
    "SELECT 'listing', CAST(listing_id AS BIGINT), text_value, CAST(json_value AS TEXT)
    FROM listing_attribute_values WHERE attribute_id = $1",
);
const LEGACY_REWRITE: Sql = Sql {
    pg: "UPDATE listing_attribute_values SET text_value = $4, json_value = CAST($5 AS JSONB)
        WHERE $1 = 'listing' AND listing_id = $2 AND attribute_id = $3",
    lite: "UPDATE listing_attribute_values SET text_value = $4, json_value = $5
        WHERE $1 = 'listing' AND listing_id = $2 AND attribute_id = $3",
};

type ValueRow = (String, i64, Option<String>, Option<String>);

/// Checks the options `updated` drops from `current` in the stores `mode` writes: the values
/// of a dropped option that `remap` names move to its target (returns how many rows changed);
/// a dropped option values still choose and `remap` does not name refuses the change, with the
/// counts per option and store.
pub(crate) async fn settle_dropped_options<B: Backend>(
    conn: &mut Conn<B>,
    mode: WriteMode,
    current: &Attribute,
    updated: &Attribute,
    remap: &BTreeMap<String, String>,
) -> Result<u64> {
    if let Some(stranger) = remap
        .keys()
        .find(|from| !current.options.iter().any(|o| o.value == **from))
    {
        return Err(StorageError::InvalidValues(vec![FieldError::new(
            "remap_options",
            &FieldErrorKind::InvalidValueShape(format!(
                "'{stranger}' is not an option of '{}'",
                current.code
            )),
        )]));
    }
    let dropped: Vec<&str> = current
        .options
        .iter()
        .map(|o| o.value.as_str())
        .filter(|value| !updated.options.iter().any(|o| o.value == *value))
        .collect();
    let mut in_use = Vec::new();
    let mut moved = 0;
    for (store, uses_sql, rows_sql, rewrite_sql) in [
        (Store::Legacy, LEGACY_USES, LEGACY_ROWS, LEGACY_REWRITE),
        (Store::Unified, UNIFIED_USES, UNIFIED_ROWS, UNIFIED_REWRITE),
    ] {
        if !mode.writes(store) {
            continue;
        }
        for option in dropped.iter().filter(|o| !remap.contains_key(**o)) {
            let uses: i64 = on_dialect!(B::dialect(&mut *conn), uses_sql, |c, statement| {
                sqlx::query_scalar(statement)
                    .bind(current.id)
                    .bind(*option)
                    .fetch_one(&mut *c)
                    .await?
            });
            if uses > 0 {
                in_use.push(format!("'{option}' by {uses} {} value(s)", store.as_str()));
            }
        }
        let moves: Vec<(&str, &str)> = remap
            .iter()
            .filter(|(from, _)| dropped.contains(&from.as_str()))
            .map(|(from, to)| (from.as_str(), to.as_str()))
            .collect();
        if moves.is_empty() || !in_use.is_empty() {
            continue;
        }
        let rows: Vec<ValueRow> = on_dialect!(B::dialect(&mut *conn), rows_sql, |c, statement| {
            sqlx::query_as(statement)
                .bind(current.id)
                .fetch_all(&mut *c)
                .await?
        });
        // Legacy spells options in any case; unified holds them exactly.
        let loose = store == Store::Legacy;
        for (entity_type, entity_id, text, json) in rows {
            let new_text = text.as_deref().map(|t| remap_text(t, &moves, loose));
            let new_json = json.as_deref().map(|j| remap_json(j, &moves, loose));
            if new_text.as_ref() == text.as_ref() && new_json.as_ref() == json.as_ref() {
                continue;
            }
            moved += 1;
            on_dialect!(B::dialect(&mut *conn), rewrite_sql, |c, statement| {
                sqlx::query(statement)
                    .bind(&entity_type)
                    .bind(entity_id)
                    .bind(current.id)
                    .bind(&new_text)
                    .bind(&new_json)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            });
        }
    }
    if in_use.is_empty() {
        return Ok(moved);
    }
    Err(StorageError::Conflict(format!(
        "attribute '{}' would drop options that values still choose: {}; re-map them to a kept \
         option in the same change (\"remap_options\": {{\"old\": \"new\"}}), or keep the option",
        updated.code,
        in_use.join(", ")
    )))
}

fn same(a: &str, b: &str, loose: bool) -> bool {
    if loose {
        a.trim().to_lowercase() == b.to_lowercase()
    } else {
        a == b
    }
}

/// The option `text` names after the moves: the whole text, or each item of a comma list (a
/// target chosen twice is kept once).
fn remap_text(text: &str, moves: &[(&str, &str)], loose: bool) -> String {
    let target = |item: &str| {
        moves
            .iter()
            .find(|(from, _)| same(item, from, loose))
            .map(|(_, to)| *to)
    };
    if let Some(to) = target(text) {
        return to.to_owned();
    }
    if !text.contains(',') {
        return text.to_owned();
    }
    let mut items: Vec<String> = Vec::new();
    for item in text.split(',') {
        let item = target(item).map_or_else(|| item.trim().to_owned(), str::to_owned);
        if !items.contains(&item) {
            items.push(item);
        }
    }
    let joined = items.join(",");
    // Untouched lists keep their own spacing.
    if text.split(',').any(|item| target(item).is_some()) {
        joined
    } else {
        text.to_owned()
    }
}

/// A JSON list of options after the moves; anything else stays as it is.
fn remap_json(json: &str, moves: &[(&str, &str)], loose: bool) -> String {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        return json.to_owned();
    };
    let mut changed = false;
    let mut out: Vec<serde_json::Value> = Vec::new();
    for item in items {
        let item = match item.as_str().and_then(|text| {
            moves
                .iter()
                .find(|(from, _)| same(text, from, loose))
                .map(|(_, to)| *to)
        }) {
            Some(to) => {
                changed = true;
                serde_json::Value::String(to.to_owned())
            }
            None => item,
        };
        if !out.contains(&item) {
            out.push(item);
        }
    }
    if changed {
        serde_json::Value::Array(out).to_string()
    } else {
        json.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_rewrites_a_choice_an_item_of_a_list_and_a_json_list_once() {
        let moves = [("manual", "automatic")];
        assert_eq!(remap_text("Manual", &moves, true), "automatic");
        assert_eq!(remap_text("Manual", &moves, false), "Manual");
        assert_eq!(remap_text("automatic, manual", &moves, true), "automatic");
        assert_eq!(remap_text("red, blue", &moves, true), "red, blue");
        assert_eq!(
            remap_json(r#"["manual","other"]"#, &moves, false),
            r#"["automatic","other"]"#
        );
        assert_eq!(
            remap_json(r#"["manual","automatic"]"#, &moves, false),
            r#"["automatic"]"#
        );
        assert_eq!(remap_json(r#"{"a": 1}"#, &moves, false), r#"{"a": 1}"#);
    }
}
