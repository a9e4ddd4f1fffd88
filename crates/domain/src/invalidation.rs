//! What a committed write made stale, so that caches drop exactly that.

use serde::{Deserialize, Serialize};

use crate::entity::{EntityKind, EntityRef};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "drop", rename_all = "snake_case")]
pub enum Invalidation {
    /// One entity's values.
    Entity {
        kind: EntityKind,
        id: i64,
    },
    /// The schemas of these categories (attributes, detailed, variant attributes).
    Categories {
        ids: Vec<i64>,
    },
    /// The value ranges of these categories.
    Ranges {
        ids: Vec<i64>,
    },
    /// The attribute list and single-attribute reads.
    Catalog,
    /// The values of the entities of one kind with ids in `first..=last` (a backfill batch:
    /// one message instead of thousands).
    EntityRange {
        kind: EntityKind,
        first: i64,
        last: i64,
    },
    /// Every entity's values.
    AllValues,
    /// Every category's value ranges.
    AllRanges,
    Everything,
}

impl Invalidation {
    pub fn entity(entity: EntityRef) -> Self {
        Invalidation::Entity {
            kind: entity.kind,
            id: entity.id,
        }
    }
}
