//! HTTP handlers, one module per resource.

pub mod categories;
pub mod health;
pub mod values;

use actix_web::HttpRequest;
use domain::Language;
use serde::Serialize;

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
pub const SOURCE_HEADER: &str = "X-Attributes-Source";

/// Parses an id path segment; ids are positive.
pub fn parse_id(raw: &str, what: &'static str) -> Result<i64, ApiError> {
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

/// The sticky rollout key: the user id, else the session id, else a random key (an
/// anonymous request without a session is not sticky, and is not always "in").
pub fn rollout_key(request: &HttpRequest) -> String {
    ["X-User-Id", "X-Session-Id"]
        .iter()
        .find_map(|name| request.headers().get(*name).and_then(|h| h.to_str().ok()))
        .map(str::to_owned)
        .filter(|key| !key.is_empty())
        .unwrap_or_else(|| rand::random::<u64>().to_string())
}
