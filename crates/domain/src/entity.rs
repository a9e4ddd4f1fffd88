//! The things attribute values belong to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Kinds of entity that carry attribute values. Listing and product ids come from one
/// shared sequence in the marketplace, so they never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Listing,
    Product,
    ProductVariant,
}

impl EntityKind {
    pub const ALL: [EntityKind; 3] = [
        EntityKind::Listing,
        EntityKind::Product,
        EntityKind::ProductVariant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Listing => "listing",
            EntityKind::Product => "product",
            EntityKind::ProductVariant => "product_variant",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntityKind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// One entity: its kind and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: EntityKind,
    pub id: i64,
}

impl EntityRef {
    pub fn listing(id: i64) -> Self {
        Self {
            kind: EntityKind::Listing,
            id,
        }
    }

    pub fn product(id: i64) -> Self {
        Self {
            kind: EntityKind::Product,
            id,
        }
    }

    pub fn variant(id: i64) -> Self {
        Self {
            kind: EntityKind::ProductVariant,
            id,
        }
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}
