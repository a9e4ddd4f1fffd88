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

/// `200` with the body, or `304` when the client already has it. Every header is built
/// without parsing: the names and the fixed values are constants, the tag is written digit by
/// digit (formatting it, and parsing each header from text, took half of this function's work).
pub fn respond(
    request: &HttpRequest,
    response: &CachedResponse,
    freshness: Freshness,
) -> HttpResponse {
    let etag = response.fingerprint.tag();
    let not_modified = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| {
            tags.as_bytes()
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .any(|tag| tag == etag.as_ref() || tag == b"*")
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
            // The tag's bytes become the header's: one allocation per answer.
            HeaderValue::from_maybe_shared(etag).unwrap_or(HeaderValue::from_static("\"\"")),
        ))
        .insert_header((
            header::CACHE_CONTROL,
            match (freshness, split) {
                (Freshness::Schema, false) => PUBLIC_SCHEMA,
                (Freshness::Values, false) => PUBLIC_VALUES,
                (Freshness::Schema, true) => PRIVATE_SCHEMA,
                (Freshness::Values, true) => PRIVATE_VALUES,
            },
        ))
        // The answer depends on the language and, during a canary, on the user's cohort, which
        // any of these may choose (the cohort cookie and the token's subject included).
        .insert_header((header::VARY, if split { VARY_SPLIT } else { VARY_LANGUAGE }))
        .insert_header((
            SOURCE_HEADER,
            HeaderValue::from_static(response.served_by.as_str()),
        ));
    if not_modified {
        builder.finish()
    } else {
        builder
            .insert_header((header::CONTENT_TYPE, JSON))
            .body(response.body.clone())
    }
}

const PUBLIC_SCHEMA: HeaderValue =
    HeaderValue::from_static("public, max-age=30, stale-while-revalidate=30");
const PUBLIC_VALUES: HeaderValue = HeaderValue::from_static("public, no-cache");
const PRIVATE_SCHEMA: HeaderValue = HeaderValue::from_static("private, max-age=30");
const PRIVATE_VALUES: HeaderValue = HeaderValue::from_static("private, no-cache");
const VARY_LANGUAGE: HeaderValue = HeaderValue::from_static("Accept-Language");
const VARY_SPLIT: HeaderValue =
    HeaderValue::from_static("Accept-Language, X-User-Id, X-Session-Id, Cookie, Authorization");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Wraps a cached `data` fragment in the success envelope.
pub fn envelope(fragment: &[u8]) -> Bytes {
    let mut body = Vec::with_capacity(fragment.len() + 24);
    body.extend_from_slice(br#"{"success":true,"data":"#);
    body.extend_from_slice(fragment);
    body.push(b'}');
    Bytes::from(body)
}
