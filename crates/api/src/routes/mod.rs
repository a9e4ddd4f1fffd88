//! HTTP handlers, one module per resource, and what they share.

pub mod admin;
pub(crate) mod admin_bodies;
pub mod attributes;
pub mod categories;
pub mod changes;
pub mod console;
pub mod health;
pub mod migration;
pub mod quarantine;
pub mod throttle;
pub mod v1;
pub mod values;

use actix_web::HttpRequest;
use domain::Language;
use flags::{Flags, Store};
use serde::Serialize;
use storage::ReadRoute;

use crate::error::ApiError;

/// The success envelope the marketplace frontend parses.
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    pub success: bool,
    pub data: T,
}

impl<T> Envelope<T> {
    pub fn new(data: T) -> Self {
        Self {
            success: true,
            data,
        }
    }
}

/// Header naming the store that answered a read (`legacy`, `unified`, `fallback_…`).
pub const SOURCE_HEADER: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-attributes-source");

/// Parses an id path segment; ids are positive.
pub fn parse_id(raw: &str, what: storage::Resource) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::InvalidId {
            what,
            given: raw.chars().take(40).collect(),
        })
}

/// The label language: `?lang=`, else `Accept-Language`, else Serbian.
pub fn language(request: &HttpRequest) -> Language {
    let query = request.query_string();
    let from_query = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("lang="))
        .find_map(|lang| lang.parse().ok());
    from_query
        .or_else(|| {
            request
                .headers()
                .get(actix_web::http::header::ACCEPT_LANGUAGE)
                .and_then(|h| h.to_str().ok())
                .and_then(Language::from_accept_language)
        })
        .unwrap_or(Language::Sr)
}

/// The sticky rollout key ([`crate::cohort::rollout_key`]), else a random key: such a request
/// is not sticky, and is not always "in".
pub fn rollout_key(request: &HttpRequest) -> String {
    crate::cohort::rollout_key(request).unwrap_or_else(|| rand::random::<u64>().to_string())
}

/// What a read needs to know about its request: the store the flags pick for this user,
/// and the label language.
#[derive(Debug, Clone, Copy)]
pub struct ReadContext {
    pub route: ReadRoute,
    pub language: Language,
}

impl ReadContext {
    pub fn of(request: &HttpRequest, flags: &Flags) -> Self {
        // The rollout key matters only while some reads may go to the unified store.
        let store = if flags.use_unified {
            flags.read_store(&rollout_key(request))
        } else {
            Store::Legacy
        };
        Self {
            route: ReadRoute::new(store, flags.fallback),
            language: language(request),
        }
    }

    pub fn store(&self) -> Store {
        self.route.store
    }
}

/// Refuses a write's body whole (422, a field error per string) when a string in it holds a
/// NUL character: the database could not store it, and nothing must be half-written.
pub fn refuse_nul_characters(body: &serde_json::Value) -> Result<(), ApiError> {
    let refused = domain::nul_characters(body);
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidValues(refused))
    }
}

/// Serializes a view; serialization of our own views cannot fail.
pub fn to_bytes<T: Serialize>(value: &T) -> bytes::Bytes {
    written(|bytes| serde_json::to_writer(bytes, value))
}

/// The bytes `write` puts in a buffer, empty if it fails. The buffer starts at about a
/// listing's answer (`to_vec` starts at 128 bytes and grew twice for one), and the bytes are
/// trimmed to their length (spare capacity would stay with a cached body; the allocator
/// shrinks a block in place down to half its size).
pub(crate) fn written(write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>) -> bytes::Bytes {
    let mut bytes = Vec::with_capacity(512);
    if write(&mut bytes).is_err() {
        bytes.clear();
    }
    bytes::Bytes::from(bytes.into_boxed_slice())
}

/// The `limit` of an admin listing: 1 to 1,000, 100 when absent.
pub fn admin_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(100);
    if (1..=1_000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::InvalidQuery(
            "limit is a whole number from 1 to 1000".into(),
        ))
    }
}
