//! One connection as the dialect it speaks. Every concern runs its statements through
//! [`Dialect`], each arm type-checked with its own sqlx types, and keeps each statement's two
//! spellings ([`Sql`]) beside the code that runs it.

use sqlx::{PgConnection, SqliteConnection};

/// A connection of either backend, borrowed for one operation.
#[derive(Debug)]
pub(crate) enum Dialect<'c> {
    Pg(&'c mut PgConnection),
    Lite(&'c mut SqliteConnection),
}

impl Dialect<'_> {
    /// The same connection for one more statement, this one kept for the next.
    pub(crate) fn reborrow(&mut self) -> Dialect<'_> {
        match self {
            Dialect::Pg(c) => Dialect::Pg(c),
            Dialect::Lite(c) => Dialect::Lite(c),
        }
    }
}

/// One statement as PostgreSQL and SQLite spell it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    pub pg: &'static str,
    pub lite: &'static str,
}

impl Sql {
    /// A statement both dialects spell alike.
    pub(crate) const fn same(statement: &'static str) -> Self {
        Self {
            pg: statement,
            lite: statement,
        }
    }
}

/// Runs `$body` on the connection with `$statement` bound to the dialect's spelling of `$sql`
/// (or without a statement, for a body that builds its own); the body is compiled once per
/// arm, with that arm's connection type.
macro_rules! on_dialect {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::dialect::Dialect::Pg($c) => $body,
            $crate::dialect::Dialect::Lite($c) => $body,
        }
    };
    ($conn:expr, $sql:expr, |$c:ident, $statement:ident| $body:expr) => {
        match $conn {
            $crate::dialect::Dialect::Pg($c) => {
                let $statement = $sql.pg;
                $body
            }
            $crate::dialect::Dialect::Lite($c) => {
                let $statement = $sql.lite;
                $body
            }
        }
    };
}
pub(crate) use on_dialect;
