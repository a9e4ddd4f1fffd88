//! Answers built from cached bodies: `ETag`, `If-None-Match` → 304, `Cache-Control`, `Vary`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use cache::{CachedResponse, Fingerprint};

use crate::routes::SOURCE_HEADER;

/// A response as the cache keeps it: the body and its fingerprint.
pub fn cached(body: Bytes, served_by: storage::ServedBy) -> CachedResponse {
    CachedResponse {
        fingerprint: Fingerprint::of(&body),
        body,
        served_by,
        epoch: 0,
    }
}

/// How long clients and shared caches may keep an answer.
#[derive(Debug, Clone, Copy)]
pub enum Freshness {
    /// Category schemas change rarely: a short lifetime, then revalidation.
    Schema,
    /// Entity values change with every write: always revalidate.
    Values,
}

/// `200` with the body, or `304` when the client already has it.
pub fn respond(
    request: &HttpRequest,
    response: &CachedResponse,
    freshness: Freshness,
) -> HttpResponse {
    let etag = response.fingerprint.to_string();
    let not_modified = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    // During a canary a shared cache must not hand one cohort's answer to another.
    let split = request
        .app_data::<actix_web::web::Data<crate::AppState>>()
        .is_some_and(|state| crate::cohort::splitting(state));
    let mut builder = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    builder
        .insert_header((
            header::ETAG,
            // The formatted tag becomes the header's bytes: one allocation per answer.
            HeaderValue::from_maybe_shared(Bytes::from(etag))
                .unwrap_or(HeaderValue::from_static("\"\"")),
        ))
        .insert_header((
            header::CACHE_CONTROL,
            match (freshness, split) {
                (Freshness::Schema, false) => "public, max-age=30, stale-while-revalidate=30",
                (Freshness::Values, false) => "public, no-cache",
                (Freshness::Schema, true) => "private, max-age=30",
                (Freshness::Values, true) => "private, no-cache",
            },
        ))
        // The answer depends on the language and, during a canary, on the user's cohort, which
        // any of these may choose (the cohort cookie and the token's subject included).
        .insert_header((
            header::VARY,
            if split {
                "Accept-Language, X-User-Id, X-Session-Id, Cookie, Authorization"
            } else {
                "Accept-Language"
            },
        ))
        .insert_header((SOURCE_HEADER, response.served_by.as_str()));
    if not_modified {
        builder.finish()
    } else {
        builder
            .content_type("application/json")
            .body(response.body.clone())
    }
}

/// Wraps a cached `data` fragment in the success envelope.
pub fn envelope(fragment: &[u8]) -> Bytes {
    let mut body = Vec::with_capacity(fragment.len() + 24);
    body.extend_from_slice(br#"{"success":true,"data":"#);
    body.extend_from_slice(fragment);
    body.push(b'}');
    Bytes::from(body)
}
