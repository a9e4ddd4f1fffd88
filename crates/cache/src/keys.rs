//! What the caches are keyed by, and what a cached response holds.

use bytes::Bytes;
use domain::{EntityKind, Language};
use flags::Store;

/// What a cached response is about; invalidations name scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Reads derived from a category's effective schema.
    Category(i64),
    /// A category's value ranges.
    Ranges(i64),
    /// One entity's values.
    Entity(EntityKind, i64),
}

/// The representations of a scope that are cached separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    Attributes,
    DetailedAttributes,
    VariantAttributes,
    V1Attributes,
    V1VariantAttributes,
    Ranges,
    /// The v1 ranges: with the legacy defaults of the category's attributes that have no data.
    V1Ranges,
    Values,
    /// The v1 listing values: with their definitions' labels and flags (from the catalog).
    V1Values,
}

impl View {
    /// Views built with the catalog, beyond the scope's own data: a catalog change drops them.
    pub(crate) fn uses_catalog(self) -> bool {
        matches!(
            self,
            View::VariantAttributes | View::V1VariantAttributes | View::V1Values
        )
    }
}

impl View {
    pub(crate) fn of(scope: Scope) -> &'static [View] {
        match scope {
            Scope::Category(_) => &[
                View::Attributes,
                View::DetailedAttributes,
                View::VariantAttributes,
                View::V1Attributes,
                View::V1VariantAttributes,
            ],
            Scope::Ranges(_) => &[View::Ranges, View::V1Ranges],
            Scope::Entity(..) => &[View::Values, View::V1Values],
        }
    }
}

/// One cached response: scope, view, the store that answered (reads differ per store
/// during a canary) and the label language (`None` where labels are not part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseKey {
    pub scope: Scope,
    pub view: View,
    pub store: Store,
    pub language: Option<Language>,
}

/// A response body as sent, with its fingerprint and the store that produced it.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    pub body: Bytes,
    pub fingerprint: Fingerprint,
    pub served_by: flags::ServedBy,
    /// Stamped by the cache when it stores the response: the listening epoch it was stored
    /// in (see [`AttributeCaches::confirm`]).
    pub epoch: u16,
}

/// A strong validator of a body (hash and length), kept inline: the API formats it as the
/// `ETag` header when it answers, so an entry holds no second allocation for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub(crate) hash: u64,
    pub(crate) len: usize,
}

impl Fingerprint {
    /// The same for the same bytes in every process of one build, so pods agree on a tag; a
    /// build with another hash changes the tags once, which costs clients one full answer.
    pub fn of(body: &[u8]) -> Self {
        use std::hash::BuildHasher;
        Self {
            hash: foldhash::quality::FixedState::default().hash_one(body),
            len: body.len(),
        }
    }

    /// The tag as `Display` writes it (`"0123456789abcdef-1a2"`), digit by digit: every answer
    /// sends it, and `write!` cost ten times as much.
    pub fn tag(&self) -> bytes::Bytes {
        fn push_hex(tag: &mut Vec<u8>, n: u64, min_digits: u32) {
            let digits = (u64::BITS - n.leading_zeros()).div_ceil(4).max(min_digits);
            for digit in (0..digits).rev() {
                tag.push(b"0123456789abcdef"[((n >> (digit * 4)) & 0xf) as usize]);
            }
        }
        let mut tag = Vec::with_capacity(36);
        tag.push(b'"');
        push_hex(&mut tag, self.hash, 16);
        tag.push(b'-');
        push_hex(&mut tag, self.len as u64, 1);
        tag.push(b'"');
        tag.into()
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{:016x}-{:x}\"", self.hash, self.len)
    }
}

/// What one cached response costs besides its body, in bytes of resident memory: moka's
/// entry, key and order-queue nodes, the response's fields, and the allocator's share of the
/// churn of a full cache. Measured with the load benchmark (a full cache under Zipf reads:
/// resident memory added, over entries, minus the bodies), so `max_bytes` bounds memory.
pub const RESPONSE_ENTRY_OVERHEAD: usize = 800;

#[cfg(test)]
mod tests {
    use super::Fingerprint;

    #[test]
    fn the_tag_is_what_display_writes() {
        for (hash, len) in [
            (0, 0),
            (1, 1),
            (0xf, 0x10),
            (0x0123_4567_89ab_cdef, 406),
            (u64::MAX, usize::MAX),
        ] {
            let fingerprint = Fingerprint { hash, len };
            assert_eq!(
                fingerprint.tag().as_ref(),
                fingerprint.to_string().as_bytes()
            );
        }
        let body = Fingerprint::of(br#"{"entity_id":1}"#);
        assert_eq!(body.tag().as_ref(), body.to_string().as_bytes());
    }
}
