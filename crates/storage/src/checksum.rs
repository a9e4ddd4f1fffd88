//! A table's evidence: its rows and an order-independent checksum of their contents, taken
//! before and after a move of the table to show that nothing changed on the way.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// One table's evidence: rows and an order-independent checksum of their full contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEvidence {
    pub table: String,
    pub rows: i64,
    pub checksum: String,
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
