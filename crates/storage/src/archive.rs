//! Archiving the legacy tables once the unified store serves everything, and restoring them:
//! the tables move (nothing is copied or dropped), and a manifest of row counts and checksums
//! taken before and after each move is the evidence that nothing changed on the way.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// The legacy tables that only the attributes use; they move whole.
pub(crate) const MOVED_TABLES: [&str; 5] = [
    "category_attributes",
    "category_attribute_mapping",
    "listing_attribute_values",
    "product_variant_attributes",
    "product_variant_attribute_values",
];

/// `translations` is shared by the whole marketplace: only the attributes' rows move, into an
/// archive table of the same name.
pub(crate) const TRANSLATIONS: &str = "translations";
pub(crate) const ATTRIBUTE_TRANSLATIONS: &str =
    "entity_type IN ('attribute', 'product_variant_attribute')";

/// One table's evidence: rows and an order-independent checksum of their full contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEvidence {
    pub table: String,
    pub rows: i64,
    pub checksum: String,
}

/// What one `archive` or `restore-archive` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Manifest {
    pub id: i64,
    pub action: String,
    pub recorded_at: String,
    pub phase: String,
    #[sqlx(json)]
    pub tables: Vec<TableEvidence>,
}

/// Sums a 64-bit hash of every row's text: the same rows in any order give the same checksum.
#[derive(Debug, Default)]
pub(crate) struct Checksum {
    rows: i64,
    sum: u64,
}

impl Checksum {
    pub(crate) fn add(&mut self, row_text: &str) {
        // murmur3 over an in-memory cursor cannot fail.
        let hash = murmur3::murmur3_x64_128(&mut Cursor::new(row_text.as_bytes()), 0).unwrap_or(0);
        self.sum = self.sum.wrapping_add(hash as u64);
        self.rows += 1;
    }

    pub(crate) fn finish(self, table: &str) -> TableEvidence {
        TableEvidence {
            table: table.to_owned(),
            rows: self.rows,
            checksum: format!("{:016x}", self.sum),
        }
    }
}

pub(crate) const SAVE_MANIFEST: &str =
    "INSERT INTO archive_manifests (action, phase, tables) VALUES ($1, $2, $3)";

pub(crate) const LAST_MANIFEST: &str = "SELECT CAST(id AS BIGINT) AS id, action,
        CAST(recorded_at AS TEXT) AS recorded_at, phase, tables
    FROM archive_manifests ORDER BY id DESC LIMIT 1";

pub(crate) const MARK_ARCHIVED: &str =
    "UPDATE migration_state SET archived_at = CURRENT_TIMESTAMP WHERE id = 1";
pub(crate) const MARK_RESTORED: &str = "UPDATE migration_state SET archived_at = NULL WHERE id = 1";

/// Whether the last verify run was clean and finished after the last moment legacy could
/// have been written alone: the last change of flags away from the legacy phase (legacy-only
/// writes until then) and the end of the backfill. `$ts` makes timestamps comparable (SQLite
/// stores them as text in two formats).
macro_rules! verified_since_legacy_writes_sql {
    ($ts:literal) => {
        concat!(
            "SELECT COALESCE((
                SELECT v.drifted = 0 AND ",
            $ts,
            "(v.finished_at) >= COALESCE((
                    SELECT MAX(b.at) FROM (
                        SELECT ",
            $ts,
            "(changed_at) AS at FROM flag_audit WHERE old_phase = 'legacy'
                        UNION ALL
                        SELECT ",
            $ts,
            "(completed_at) AS at FROM backfill_checkpoint
                    ) b), ",
            $ts,
            "(v.finished_at))
                FROM verify_runs v ORDER BY v.id DESC LIMIT 1), false)"
        )
    };
}
pub(crate) use verified_since_legacy_writes_sql;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_ignores_row_order_and_sees_any_change() {
        let rows = ["(1,a)", "(2,b)", "(3,c)"];
        let mut forward = Checksum::default();
        rows.iter().for_each(|row| forward.add(row));
        let mut backward = Checksum::default();
        rows.iter().rev().for_each(|row| backward.add(row));
        let mut changed = Checksum::default();
        ["(1,a)", "(2,B)", "(3,c)"]
            .iter()
            .for_each(|row| changed.add(row));
        let (forward, backward, changed) = (
            forward.finish("t"),
            backward.finish("t"),
            changed.finish("t"),
        );
        assert_eq!(forward, backward);
        assert_eq!(forward.rows, 3);
        assert_ne!(forward.checksum, changed.checksum);
    }
}
