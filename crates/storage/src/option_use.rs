//! Options still in use: an admin change that drops an option from an attribute is refused
//! while values still choose it, in any store the change writes — those values would turn
//! unreadable in unified and fail every later backfill or verify.

use domain::Attribute;
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

/// Refuses `updated` when it drops options of `current` that values still choose, in the
/// stores `mode` writes; the refusal counts them per option and store.
pub(crate) async fn ensure_dropped_options_unused<B: Backend>(
    conn: &mut Conn<B>,
    mode: WriteMode,
    current: &Attribute,
    updated: &Attribute,
) -> Result<()> {
    let dropped: Vec<&str> = current
        .options
        .iter()
        .map(|o| o.value.as_str())
        .filter(|value| !updated.options.iter().any(|o| o.value == *value))
        .collect();
    let mut in_use = Vec::new();
    for option in dropped {
        for (store, sql) in [(Store::Legacy, LEGACY_USES), (Store::Unified, UNIFIED_USES)] {
            if !mode.writes(store) {
                continue;
            }
            let uses: i64 = on_dialect!(B::dialect(&mut *conn), sql, |c, statement| {
                sqlx::query_scalar(statement)
                    .bind(current.id)
                    .bind(option)
                    .fetch_one(&mut *c)
                    .await?
            });
            if uses > 0 {
                in_use.push(format!("'{option}' by {uses} {} value(s)", store.as_str()));
            }
        }
    }
    if in_use.is_empty() {
        return Ok(());
    }
    Err(StorageError::Conflict(format!(
        "attribute '{}' would drop options that values still choose: {}; change those values to \
         another option first, or keep the option",
        updated.code,
        in_use.join(", ")
    )))
}
