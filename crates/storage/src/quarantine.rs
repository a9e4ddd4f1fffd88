//! The quarantine as part of the cut-over's evidence: every legacy value the backfill could not
//! migrate, of which kind, as users saw it, and whether an operator accepted that unified reads
//! go without it. An entry follows the legacy value it describes: a write through the service
//! that replaces or deletes that value removes the entry in the same transaction, and a
//! backfill that quarantines the same value again keeps its acceptance.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use domain::{EntityKind, EntityRef};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::backend::{Backend, Conn};
use crate::dialect::{Sql, on_dialect};
use crate::error::{Result, StorageError};
use crate::stats::record_queries;

pub use crate::error::{UnsettledCount, describe_unsettled};
pub(crate) use crate::rows::shown_json;

/// What kept a legacy value out of unified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineKind {
    /// Its listing, category or attribute does not exist.
    Orphan,
    /// The row holds no usable value.
    Empty,
    /// The unified rules refuse it: not an allowed option, a bad shape, out of range.
    Invalid,
    /// No definition of its code.
    Unknown,
    /// A document key that names nothing readable.
    Unreadable,
    /// The database refused it (a constraint or trigger).
    Refused,
    /// The marketplace's own unified table held another value of the same entity and
    /// attribute; the newer one was kept (see `monolith`).
    Conflict,
}

impl QuarantineKind {
    pub const ALL: [QuarantineKind; 7] = [
        QuarantineKind::Orphan,
        QuarantineKind::Empty,
        QuarantineKind::Invalid,
        QuarantineKind::Unknown,
        QuarantineKind::Unreadable,
        QuarantineKind::Refused,
        QuarantineKind::Conflict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineKind::Orphan => "orphan",
            QuarantineKind::Empty => "empty",
            QuarantineKind::Invalid => "invalid",
            QuarantineKind::Unknown => "unknown",
            QuarantineKind::Unreadable => "unreadable",
            QuarantineKind::Refused => "refused",
            QuarantineKind::Conflict => "conflict",
        }
    }

    /// Whether legacy reads show such a value today: orphans and empty rows nobody sees, so
    /// they never hold up unified reads.
    pub fn seen_by_users(self) -> bool {
        !matches!(self, QuarantineKind::Orphan | QuarantineKind::Empty)
    }
}

impl fmt::Display for QuarantineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QuarantineKind {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!("'{text}' is not a quarantine kind ({})", names.join(", "))
            })
    }
}

/// A legacy value the unified rules or the database refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuarantinedRow {
    pub entity_id: i64,
    pub attribute_code: String,
    /// The stored form (`text=Volkswagen, unit=`), for `--raw-value-exact`.
    pub raw_value: String,
    /// The value as users saw it (`Volkswagen`); `None` when they saw nothing.
    pub shown_value: Option<String>,
    pub reason: String,
    pub kind: QuarantineKind,
}

/// A JSON array of ids or codes, the one parameter both dialects expand into a list.
fn json_list<T: Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// The entries of these entities with their acceptance. On PostgreSQL it locks them: an
/// acceptance committing between this read and the delete below would otherwise be dropped
/// with the entries it changed; it now waits, then finds the rewritten ones. `$3`/`$4` bound
/// the ids: the key's range scan, whatever the planner believes of the list (a backfill batch
/// otherwise read every entry of its kind: the table's statistics are those of its start).
const ENTRIES_AMONG: Sql = Sql {
    pg: "SELECT CAST(entity_id AS BIGINT), attribute_code, COALESCE(raw_value, ''),
            accepted_by, CAST(accepted_at AS TEXT)
        FROM backfill_quarantine WHERE entity_type = $1 AND entity_id BETWEEN $3 AND $4
          AND entity_id IN (SELECT CAST(value AS BIGINT) FROM jsonb_array_elements_text(CAST($2 AS JSONB)))
        FOR UPDATE",
    lite: "SELECT CAST(entity_id AS BIGINT), attribute_code, COALESCE(raw_value, ''),
            accepted_by, CAST(accepted_at AS TEXT)
        FROM backfill_quarantine WHERE entity_type = $1 AND entity_id BETWEEN $3 AND $4
          AND entity_id IN (SELECT value FROM json_each($2))",
};

const DELETE_AMONG: Sql = Sql {
    pg: "DELETE FROM backfill_quarantine WHERE entity_type = $1 AND entity_id BETWEEN $3 AND $4
        AND entity_id IN (SELECT CAST(value AS BIGINT) FROM jsonb_array_elements_text(CAST($2 AS JSONB)))",
    lite: "DELETE FROM backfill_quarantine WHERE entity_type = $1 AND entity_id BETWEEN $3 AND $4
        AND entity_id IN (SELECT value FROM json_each($2))",
};

const INSERT_ROWS: Sql = Sql {
    pg: "INSERT INTO backfill_quarantine
            (entity_type, entity_id, attribute_code, raw_value, shown_value, reason, kind,
             accepted_by, accepted_at)
        SELECT $1, r.entity_id, r.attribute_code, r.raw_value, r.shown_value, r.reason, r.kind,
            r.accepted_by, r.accepted_at
        FROM jsonb_to_recordset(CAST($2 AS JSONB)) AS r(entity_id bigint, attribute_code text,
            raw_value text, shown_value text, reason text, kind text, accepted_by text,
            accepted_at timestamptz)",
    lite: "INSERT INTO backfill_quarantine
            (entity_type, entity_id, attribute_code, raw_value, shown_value, reason, kind,
             accepted_by, accepted_at)
        SELECT $1, json_extract(value, '$.entity_id'), json_extract(value, '$.attribute_code'),
            json_extract(value, '$.raw_value'), json_extract(value, '$.shown_value'),
            json_extract(value, '$.reason'), json_extract(value, '$.kind'),
            json_extract(value, '$.accepted_by'), json_extract(value, '$.accepted_at')
        FROM json_each($2)",
};

type EntryRow = (i64, String, String, Option<String>, Option<String>);
/// Who accepted an entry, and when.
type Acceptance = (Option<String>, Option<String>);

/// Replaces the quarantine entries of these entities (`entity_type`: an entity kind, or
/// `binding` for bindings by category) with `rows`. An entry quarantined again with the same
/// stored value keeps the operator's acceptance; a changed value must be looked at again.
pub(crate) async fn replace_entries<B: Backend>(
    conn: &mut Conn<B>,
    entity_type: &str,
    ids: &[i64],
    rows: &[QuarantinedRow],
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids_json = json_list(ids);
    let (first, last) = (ids.iter().min(), ids.iter().max());
    record_queries(2);
    let entries: Vec<EntryRow> =
        on_dialect!(B::dialect(&mut *conn), ENTRIES_AMONG, |c, statement| {
            sqlx::query_as(statement)
                .bind(entity_type)
                .bind(&ids_json)
                .bind(first)
                .bind(last)
                .fetch_all(&mut *c)
                .await?
        });
    let accepted: HashMap<(i64, &str, &str), Acceptance> = entries
        .iter()
        .filter(|(.., at)| at.is_some())
        .map(|(id, code, raw, by, at)| {
            ((*id, code.as_str(), raw.as_str()), (by.clone(), at.clone()))
        })
        .collect();
    on_dialect!(B::dialect(&mut *conn), DELETE_AMONG, |c, statement| {
        sqlx::query(statement)
            .bind(entity_type)
            .bind(&ids_json)
            .bind(first)
            .bind(last)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    insert_rows::<B>(conn, entity_type, rows, &accepted).await
}

/// Adds entries for codes that hold none (their entries were forgotten first).
pub(crate) async fn add_entries<B: Backend>(
    conn: &mut Conn<B>,
    entity_type: &str,
    rows: &[QuarantinedRow],
) -> Result<()> {
    insert_rows::<B>(conn, entity_type, rows, &HashMap::new()).await
}

async fn insert_rows<B: Backend>(
    conn: &mut Conn<B>,
    entity_type: &str,
    rows: &[QuarantinedRow],
    accepted: &HashMap<(i64, &str, &str), Acceptance>,
) -> Result<()> {
    for chunk in rows.chunks(2_000) {
        let records: Vec<Json> = chunk
            .iter()
            .map(|row| {
                let (by, at) = accepted
                    .get(&(
                        row.entity_id,
                        row.attribute_code.as_str(),
                        row.raw_value.as_str(),
                    ))
                    .cloned()
                    .unwrap_or_default();
                serde_json::json!({
                    "entity_id": row.entity_id, "attribute_code": row.attribute_code,
                    "raw_value": row.raw_value, "shown_value": row.shown_value,
                    "reason": row.reason, "kind": row.kind.as_str(),
                    "accepted_by": by, "accepted_at": at,
                })
            })
            .collect();
        let records = Json::Array(records).to_string();
        record_queries(1);
        on_dialect!(B::dialect(&mut *conn), INSERT_ROWS, |c, statement| {
            sqlx::query(statement)
                .bind(entity_type)
                .bind(&records)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
    }
    Ok(())
}

const FORGET_WRITTEN: Sql = Sql {
    pg: "DELETE FROM backfill_quarantine WHERE entity_type = $1 AND entity_id = $2
        AND attribute_code IN (SELECT jsonb_array_elements_text(CAST($3 AS JSONB)))",
    lite: "DELETE FROM backfill_quarantine WHERE entity_type = $1 AND entity_id = $2
        AND attribute_code IN (SELECT value FROM json_each($3))",
};

/// A write through the service replaced or deleted these values of `entity`: the legacy
/// values their quarantine entries described are gone (or were never the user's last word),
/// so the entries go too, in the write's transaction. Returns how many went.
pub(crate) async fn forget_written<B: Backend>(
    conn: &mut Conn<B>,
    entity: EntityRef,
    codes: &[&str],
) -> Result<u64> {
    if codes.is_empty() {
        return Ok(0);
    }
    record_queries(1);
    let codes = json_list(codes);
    Ok(on_dialect!(
        B::dialect(&mut *conn),
        FORGET_WRITTEN,
        |c, statement| {
            sqlx::query(statement)
                .bind(entity.kind.as_str())
                .bind(entity.id)
                .bind(&codes)
                .execute(&mut *c)
                .await?
                .rows_affected()
        }
    ))
}

const SEEN_AMONG: Sql = Sql {
    pg: "SELECT DISTINCT CAST(entity_id AS BIGINT) FROM backfill_quarantine
        WHERE entity_type = $1 AND kind NOT IN ('orphan', 'empty')
          AND entity_id IN (SELECT CAST(value AS BIGINT) FROM jsonb_array_elements_text(CAST($2 AS JSONB)))",
    lite: "SELECT DISTINCT CAST(entity_id AS BIGINT) FROM backfill_quarantine
        WHERE entity_type = $1 AND kind NOT IN ('orphan', 'empty')
          AND entity_id IN (SELECT value FROM json_each($2))",
};

/// Which of these entities have quarantined values users see in legacy reads: with fallback,
/// unified answers them from legacy so that nobody loses a value they saw.
pub(crate) async fn entities_with_seen_values<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    ids: &[i64],
) -> Result<HashSet<i64>> {
    record_queries(1);
    let ids = json_list(ids);
    let found: Vec<i64> = on_dialect!(B::dialect(&mut *conn), SEEN_AMONG, |c, statement| {
        sqlx::query_scalar(statement)
            .bind(kind.as_str())
            .bind(&ids)
            .fetch_all(&mut *c)
            .await?
    });
    Ok(found.into_iter().collect())
}

const UNSETTLED: Sql = Sql::same(
    "SELECT attribute_code, kind, COUNT(*) AS count FROM backfill_quarantine
    WHERE kind NOT IN ('orphan', 'empty') AND accepted_at IS NULL
    GROUP BY attribute_code, kind ORDER BY COUNT(*) DESC, attribute_code, kind",
);

/// What holds up unified reads without fallback, most common first.
pub(crate) async fn unsettled<B: Backend>(conn: &mut Conn<B>) -> Result<Vec<UnsettledCount>> {
    record_queries(1);
    let counts = on_dialect!(B::dialect(&mut *conn), UNSETTLED, |c, statement| {
        sqlx::query_as::<_, UnsettledCount>(statement)
            .persistent(true)
            .fetch_all(&mut *c)
            .await?
    });
    Ok(counts)
}

/// Which quarantined values an acceptance (or its undoing) covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptFilter {
    pub attribute: Option<String>,
    pub kind: Option<QuarantineKind>,
}

impl AcceptFilter {
    fn is_everything(&self) -> bool {
        self.attribute.is_none() && self.kind.is_none()
    }
}

const ACCEPT: Sql = Sql {
    pg: "UPDATE backfill_quarantine SET accepted_by = $1, accepted_at = now()
        WHERE accepted_at IS NULL AND kind NOT IN ('orphan', 'empty')
          AND (CAST($2 AS TEXT) IS NULL OR attribute_code = $2)
          AND (CAST($3 AS TEXT) IS NULL OR kind = $3)",
    lite: "UPDATE backfill_quarantine
        SET accepted_by = $1, accepted_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
        WHERE accepted_at IS NULL AND kind NOT IN ('orphan', 'empty')
          AND ($2 IS NULL OR attribute_code = $2) AND ($3 IS NULL OR kind = $3)",
};

const UNACCEPT: Sql = Sql::same(
    "UPDATE backfill_quarantine SET accepted_by = NULL, accepted_at = NULL
    WHERE accepted_at IS NOT NULL
      AND (CAST($1 AS TEXT) IS NULL OR attribute_code = $1)
      AND (CAST($2 AS TEXT) IS NULL OR kind = $2)",
);

/// A guardrail refusal as operators read it: the quarantine's rule names what holds it up.
pub(crate) async fn refusal<B: Backend>(
    conn: &mut Conn<B>,
    violation: flags::GuardrailViolation,
) -> StorageError {
    if violation != flags::GuardrailViolation::UnifiedReadsHideQuarantinedValues {
        return StorageError::Guardrail(violation);
    }
    match unsettled::<B>(conn).await {
        Ok(counts) => StorageError::QuarantineUnsettled(counts),
        Err(err) => err,
    }
}

/// Accepts (or, with `undo`, takes back the acceptance of) the quarantined values `filter`
/// names; returns how many changed. Everything at once only when `all` says so. Taking an
/// acceptance back is refused while the flags in force hide legacy-only values: they were
/// decided on it.
pub(crate) async fn set_accepted<B: Backend>(
    conn: &mut Conn<B>,
    filter: &AcceptFilter,
    all: bool,
    actor: &str,
    undo: bool,
) -> Result<u64> {
    if let Some(code) = &filter.attribute
        && (code.is_empty() || code.chars().count() > 100 || code.contains('\0'))
    {
        return Err(StorageError::InvalidValues(vec![domain::FieldError::new(
            "attribute",
            &domain::FieldErrorKind::InvalidValueShape(
                "an attribute code has 1 to 100 characters, without NUL".into(),
            ),
        )]));
    }
    if filter.is_everything() && !all {
        return Err(StorageError::Conflict(
            "name an attribute (--attribute) or a kind (--reason), or pass --all to accept every \
             quarantined value users see"
                .into(),
        ));
    }
    if undo
        && crate::stored_flags::load_flags(B::dialect(&mut *conn))
            .await?
            .is_some_and(|stored| stored.flags.hides_legacy_only_values())
    {
        return Err(StorageError::Conflict(
            "the flags in force read unified without fallback, decided on these acceptances: \
             turn fallback on (or read legacy) before taking one back"
                .into(),
        ));
    }
    let attribute = filter.attribute.as_deref();
    let kind = filter.kind.map(QuarantineKind::as_str);
    record_queries(1);
    Ok(if undo {
        on_dialect!(B::dialect(&mut *conn), UNACCEPT, |c, statement| {
            sqlx::query(statement)
                .bind(attribute)
                .bind(kind)
                .execute(&mut *c)
                .await?
                .rows_affected()
        })
    } else {
        on_dialect!(B::dialect(&mut *conn), ACCEPT, |c, statement| {
            sqlx::query(statement)
                .bind(actor)
                .bind(attribute)
                .bind(kind)
                .execute(&mut *c)
                .await?
                .rows_affected()
        })
    })
}

/// Quarantined values of one attribute that users saw alike, with the same reason: what an
/// operator looks at and resolves at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct QuarantinedValues {
    pub entity_type: String,
    pub attribute_code: String,
    /// The value as users saw it (`Volkswagen`, `456`); empty when they saw nothing.
    pub value: String,
    /// One stored form of it (`text=Volkswagen, unit=`).
    pub raw_value: String,
    pub reason: String,
    pub kind: String,
    pub count: i64,
    /// How many of them an operator accepted.
    pub accepted: i64,
}

const BY_ATTRIBUTE: Sql = Sql::same(
    "SELECT entity_type, attribute_code, COALESCE(shown_value, '') AS value,
        MIN(COALESCE(raw_value, '')) AS raw_value, reason, kind, COUNT(*) AS count,
        COUNT(accepted_at) AS accepted
    FROM backfill_quarantine WHERE (CAST($1 AS TEXT) IS NULL OR attribute_code = $1)
    GROUP BY entity_type, attribute_code, COALESCE(shown_value, ''), reason, kind
    ORDER BY COUNT(*) DESC, entity_type, attribute_code, COALESCE(shown_value, ''), reason
    LIMIT $2",
);

const TOTALS: Sql = Sql::same(
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN kind NOT IN ('orphan', 'empty') THEN 1 ELSE 0 END), 0),
        COUNT(accepted_at)
    FROM backfill_quarantine WHERE (CAST($1 AS TEXT) IS NULL OR attribute_code = $1)",
);

/// The quarantine as operators read it: totals and the groups, most common first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineListing {
    pub total: i64,
    /// Values legacy reads show users today (not orphans, not empty rows).
    pub seen_by_users: i64,
    pub accepted: i64,
    pub groups: Vec<QuarantinedValues>,
}

pub(crate) async fn listing<B: Backend>(
    conn: &mut Conn<B>,
    attribute: Option<&str>,
    limit: i64,
) -> Result<QuarantineListing> {
    record_queries(2);
    let groups = on_dialect!(B::dialect(&mut *conn), BY_ATTRIBUTE, |c, statement| {
        sqlx::query_as(statement)
            .bind(attribute)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
    });
    let (total, seen_by_users, accepted): (i64, i64, i64) =
        on_dialect!(B::dialect(&mut *conn), TOTALS, |c, statement| {
            sqlx::query_as(statement)
                .bind(attribute)
                .fetch_one(&mut *c)
                .await?
        });
    Ok(QuarantineListing {
        total,
        seen_by_users,
        accepted,
        groups,
    })
}

/// How a value an operator typed is compared with the quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueMatch<'a> {
    /// As users saw it: trimmed, any case.
    Seen(&'a str),
    /// The stored form, byte for byte.
    Exact(&'a str),
}

const CANDIDATES_OF: Sql = Sql::same(
    "SELECT CAST(entity_id AS BIGINT), COALESCE(shown_value, ''), COALESCE(raw_value, '')
    FROM backfill_quarantine WHERE entity_type = $1 AND attribute_code = $2 AND kind = $3
    ORDER BY entity_id",
);

/// Entities of `kind` with a value of `code` quarantined as `why`, matching `value` if given.
/// Compared in Rust: SQLite's `lower` folds ASCII only, and `серый металлик` must match too.
pub(crate) async fn ids_of<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    code: &str,
    why: QuarantineKind,
    value: Option<ValueMatch<'_>>,
) -> Result<Vec<i64>> {
    record_queries(1);
    let candidates: Vec<(i64, String, String)> =
        on_dialect!(B::dialect(&mut *conn), CANDIDATES_OF, |c, statement| {
            sqlx::query_as(statement)
                .bind(kind.as_str())
                .bind(code)
                .bind(why.as_str())
                .fetch_all(&mut *c)
                .await?
        });
    let typed = |text: &str| text.trim().to_lowercase();
    Ok(candidates
        .into_iter()
        .filter(|(_, shown, raw)| match value {
            None => true,
            Some(ValueMatch::Seen(text)) => typed(shown) == typed(text),
            Some(ValueMatch::Exact(text)) => raw == text,
        })
        .map(|(id, _, _)| id)
        .collect())
}

const SHOWN_VALUES_OF: Sql = Sql::same(
    "SELECT DISTINCT COALESCE(shown_value, '') FROM backfill_quarantine
    WHERE entity_type = $1 AND attribute_code = $2 AND kind = $3
    ORDER BY COALESCE(shown_value, '') LIMIT 20",
);

/// The values (as users saw them) quarantined as `why` for `code`: what a move that matched
/// nothing lists.
pub(crate) async fn shown_values_of<B: Backend>(
    conn: &mut Conn<B>,
    kind: EntityKind,
    code: &str,
    why: QuarantineKind,
) -> Result<Vec<String>> {
    record_queries(1);
    Ok(on_dialect!(
        B::dialect(&mut *conn),
        SHOWN_VALUES_OF,
        |c, statement| {
            sqlx::query_scalar(statement)
                .bind(kind.as_str())
                .bind(code)
                .bind(why.as_str())
                .fetch_all(&mut *c)
                .await?
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_people_saw_them() {
        assert_eq!(
            shown_json(&serde_json::json!(" Volkswagen ")).as_deref(),
            Some("Volkswagen")
        );
        assert_eq!(
            shown_json(&serde_json::json!(["red", "blue"])).as_deref(),
            Some("red, blue")
        );
        assert_eq!(shown_json(&serde_json::json!(456)).as_deref(), Some("456"));
        assert_eq!(shown_json(&serde_json::json!("  ")), None);
        assert_eq!(shown_json(&Json::Null), None);
    }

    #[test]
    fn kinds_read_back_and_only_orphans_and_empty_rows_go_unseen() {
        for kind in QuarantineKind::ALL {
            assert_eq!(kind.as_str().parse::<QuarantineKind>(), Ok(kind));
        }
        let unseen: Vec<_> = QuarantineKind::ALL
            .into_iter()
            .filter(|k| !k.seen_by_users())
            .collect();
        assert_eq!(unseen, [QuarantineKind::Orphan, QuarantineKind::Empty]);
        assert!("dunno".parse::<QuarantineKind>().is_err());
    }
}
