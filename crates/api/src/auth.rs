//! Bearer-token checks for writes. Tokens are compared in constant time and never logged.

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Accepts the request when its `Authorization: Bearer …` matches one of `tokens`. With no
/// token configured nothing matches: the routes stay closed, never open.
pub fn require_token(request: &HttpRequest, tokens: &[SecretString]) -> Result<(), ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    // Check every token so the time taken does not tell which one matched.
    let matched = tokens.iter().fold(subtle::Choice::from(0), |found, token| {
        found | token.expose_secret().as_bytes().ct_eq(presented.as_bytes())
    });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Who makes an audited change: the `X-Actor` header (at most 200 characters), else
/// `admin-api`.
pub fn actor(request: &HttpRequest) -> String {
    request
        .headers()
        .get("X-Actor")
        .and_then(|h| h.to_str().ok())
        .map(|a| a.chars().take(200).collect::<String>())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "admin-api".to_owned())
}
