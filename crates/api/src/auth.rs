//! Who may write, decided by extractors that run before a handler's body is read: a route that
//! takes [`ValueWriter`] or [`Admin`] cannot be reached without credentials, and an
//! unauthenticated write gets 401 before its body could earn a 400, 413 or 415.
//!
//! Service tokens (`Authorization: Bearer`, compared in constant time, never logged) are for
//! backend-to-backend calls. The marketplace's users carry the RS256 JWT its auth service signs,
//! in `Authorization: Bearer` or the `access_token` cookie; issuer, audience and expiry are
//! checked. A user writes the values of what they own; the `admin` role opens the admin routes.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;
use crate::settings::AuthSettings;

/// The cookie browsers carry the user's token in.
pub const TOKEN_COOKIE: &str = "access_token";

/// Accepts the request when its `Authorization: Bearer …` matches one of `tokens`. With no
/// token configured nothing matches: the routes stay closed, never open.
pub fn require_token(request: &HttpRequest, tokens: &[SecretString]) -> Result<(), ApiError> {
    if bearer(request).is_some_and(|presented| matches_any(presented, tokens)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn bearer(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Checks every token so the time taken does not tell which one matched.
fn matches_any(presented: &str, tokens: &[SecretString]) -> bool {
    let matched = tokens.iter().fold(subtle::Choice::from(0), |found, token| {
        found | token.expose_secret().as_bytes().ct_eq(presented.as_bytes())
    });
    bool::from(matched)
}

/// Who makes an audited change with the admin token: `admin-api`, with what the caller claims
/// in `X-Actor` (any script, control characters as spaces) as a claim of the token's holder —
/// `admin-api (claims: ops-on-call)` — so no caller can write an audit row that reads as a JWT
/// user's (`user:42`) or the environment's. The whole fits the audit columns (200 characters).
pub fn actor(request: &HttpRequest) -> String {
    const PREFIX: &str = "admin-api (claims: ";
    const AUDIT_WIDTH: usize = 200;
    let claimed = request
        .headers()
        .get("X-Actor")
        .and_then(|h| std::str::from_utf8(h.as_bytes()).ok())
        .map(|a| {
            a.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
        })
        .filter(|a| !a.trim().is_empty());
    match claimed {
        Some(claimed) => {
            let room = AUDIT_WIDTH - PREFIX.len() - 1;
            let claimed: String = claimed.trim().chars().take(room).collect();
            format!("{PREFIX}{})", claimed.trim_end())
        }
        None => "admin-api".to_owned(),
    }
}

/// Verifies the marketplace's user tokens.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

/// The claims the service reads; the rest of the token is ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    /// Issued at, in seconds since the Unix epoch: a token issued in the future is refused.
    iat: Option<u64>,
    sub: String,
    user_id: Option<i64>,
    #[serde(default)]
    roles: Vec<String>,
}

/// A user the token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub admin: bool,
}

impl JwtVerifier {
    /// The verifier the settings describe; `None` when no key is configured. A key without an
    /// issuer and an audience is a configuration error: such tokens would be accepted from
    /// any service that shares the auth service's key.
    pub fn from_settings(auth: &AuthSettings) -> Result<Option<Self>, String> {
        let pem = match (&auth.jwt_public_key, &auth.jwt_public_key_file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err("set JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE, not both".into());
            }
            (Some(pem), None) => pem.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("JWT_PUBLIC_KEY_FILE {}: {e}", path.display()))?,
        };
        let key = DecodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| format!("the JWT public key is not an RSA public key in PEM: {e}"))?;
        let (Some(issuer), Some(audience)) = (&auth.jwt_issuer, &auth.jwt_audience) else {
            return Err("a JWT public key needs JWT_ISSUER and JWT_AUDIENCE".into());
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        // `exp`, and `nbf` when present, with the same leeway; `iat` is checked in `user`.
        validation.validate_nbf = true;
        Ok(Some(Self { key, validation }))
    }

    /// The user of a valid token; `None` for an expired, forged or foreign one.
    pub fn user(&self, token: &str) -> Option<User> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|err| tracing::debug!(%err, "token refused"))
            .ok()?
            .claims;
        if claims
            .iat
            .is_some_and(|iat| iat > jsonwebtoken::get_current_timestamp() + self.validation.leeway)
        {
            tracing::debug!(iat = claims.iat, "token refused: issued in the future");
            return None;
        }
        let id = claims.user_id.or_else(|| claims.sub.parse().ok())?;
        Some(User {
            id,
            admin: claims.roles.iter().any(|role| role == "admin"),
        })
    }
}

/// The token of a user request: the bearer token, else the `access_token` cookie.
fn user_token(request: &HttpRequest) -> Option<String> {
    bearer(request)
        .map(str::to_owned)
        .or_else(|| request.cookie(TOKEN_COOKIE).map(|c| c.value().to_owned()))
}

/// The user a request's token names, if it carries a valid one.
fn user_of(request: &HttpRequest, state: &AppState) -> Option<User> {
    let verifier = state.jwt.as_ref()?;
    verifier.user(&user_token(request)?)
}

/// The subject a request's token names, unverified: only a rollout key (which store answers a
/// read), never a permission, so it costs no signature check.
pub fn unverified_subject(request: &HttpRequest) -> Option<String> {
    #[derive(Deserialize)]
    struct Subject {
        sub: String,
    }
    let token = user_token(request)?;
    jsonwebtoken::dangerous::insecure_decode::<Subject>(token)
        .ok()
        .map(|data| data.claims.sub)
}

fn state(request: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    request
        .app_data::<web::Data<AppState>>()
        .ok_or(ApiError::Unauthorized)
}

/// Extractor: who writes entity values — a service with the writer token, or a user with a
/// valid token (who may write only what they own; an admin writes anything). A user's
/// ownership of the entity the path names is decided here, before the body is read: one token
/// cannot hold a worker's slots sending bodies to what it may not write. (The write decides
/// again on locked rows at its commit.)
#[derive(Debug, Clone, Copy)]
pub struct ValueWriter(pub storage::ValueWriter);

impl FromRequest for ValueWriter {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let decided = state(request).and_then(|state| {
            if bearer(request).is_some_and(|t| matches_any(t, &state.writer_tokens)) {
                return Ok(storage::ValueWriter::Service);
            }
            match user_of(request, state) {
                Some(User { admin: true, .. }) => Ok(storage::ValueWriter::Service),
                Some(User { id, .. }) => Ok(storage::ValueWriter::User(id)),
                None => Err(ApiError::Unauthorized),
            }
        });
        let user = match decided {
            Ok(storage::ValueWriter::User(user)) => user,
            other => return Box::pin(ready(other.map(Self))),
        };
        // The entity the path names; a malformed id is the handler's 400.
        let entity = request
            .app_data::<web::Data<domain::EntityKind>>()
            .zip(request.match_info().get("id"))
            .and_then(|(kind, id)| {
                Some(domain::EntityRef {
                    kind: ***kind,
                    id: id.parse().ok()?,
                })
            });
        let (Some(entity), Ok(state)) = (entity, state(request).cloned()) else {
            return Box::pin(ready(Ok(Self(storage::ValueWriter::User(user)))));
        };
        Box::pin(async move {
            match state.storage.owner_now(entity).await? {
                None => Err(ApiError::NotFound {
                    what: entity.kind.into(),
                    id: entity.id,
                }),
                Some(owner) if owner != Some(user) => Err(ApiError::Forbidden(format!(
                    "{} {} is not yours: only its owner writes its values",
                    entity.kind.as_str(),
                    entity.id
                ))),
                Some(_) => Ok(Self(storage::ValueWriter::User(user))),
            }
        })
    }
}

/// Extractor: an administrator — the admin token, or a user token with the `admin` role. Holds
/// the actor recorded in audits (`X-Actor` for the token, `user:{id}` for a user).
#[derive(Debug, Clone)]
pub struct Admin {
    pub actor: String,
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(state(request).and_then(|state| {
            if bearer(request).is_some_and(|t| matches_any(t, &state.admin_tokens)) {
                return Ok(Self {
                    actor: actor(request),
                });
            }
            match user_of(request, state) {
                Some(User { id, admin: true }) => Ok(Self {
                    actor: format!("user:{id}"),
                }),
                Some(_) => Err(ApiError::Forbidden(
                    "the admin routes need the admin role".into(),
                )),
                None => Err(ApiError::Unauthorized),
            }
        }))
    }
}

/// A verifier shared by every worker.
pub type SharedVerifier = Option<Arc<JwtVerifier>>;
