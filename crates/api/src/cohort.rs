//! Sticky cohorts for clients that name no user and no session. During the canary a read's
//! store depends on its rollout key; a browser that sends neither `X-User-Id` nor
//! `X-Session-Id` would be bucketed anew on every request, and one page could mix legacy and
//! unified answers. Such a client gets a cohort cookie on its first answer and keeps its bucket
//! with it — no frontend change needed.

use actix_web::cookie::{Cookie, SameSite, time::Duration};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{HttpMessage, HttpRequest};

/// The cookie that carries an anonymous client's rollout key.
pub const COOKIE: &str = "ua_cohort";

/// Longer keys are not ours: a cookie is only trusted as a bucket key of this size.
const MAX_KEY_LENGTH: usize = 64;

/// The key given to this request when it arrived without one.
#[derive(Debug, Clone)]
pub(crate) struct AssignedKey(String);

/// The sticky rollout key a client sent: its token's subject (unverified: a bucket, never a
/// permission), else the user id, else the session id, else its cohort cookie (else, during the canary, the one this answer assigns). `None`: the client cannot be
/// kept in a cohort.
pub fn rollout_key(request: &HttpRequest) -> Option<String> {
    crate::auth::unverified_subject(request)
        .or_else(|| {
            ["X-User-Id", "X-Session-Id"]
                .iter()
                .find_map(|name| request.headers().get(*name).and_then(|h| h.to_str().ok()))
                .filter(|key| !key.is_empty())
                .map(str::to_owned)
        })
        .or_else(|| {
            request
                .cookie(COOKIE)
                .map(|cookie| cookie.value().to_owned())
                .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_LENGTH)
        })
        .or_else(|| {
            request
                .extensions()
                .get::<AssignedKey>()
                .map(|key| key.0.clone())
        })
}

/// Whether the rollout splits reads between the stores now: then an answer depends on who asks.
pub fn splitting(state: &crate::AppState) -> bool {
    let flags = state.flags();
    flags.use_unified && (1..100).contains(&flags.unified_percent)
}

/// While the rollout splits reads between the stores, a client without a key gets one, used
/// for this request; [`keep`] sets it as a cookie on the answer.
pub(crate) fn assign(request: &ServiceRequest, state: &crate::AppState) -> Option<AssignedKey> {
    if !splitting(state) || rollout_key(request.request()).is_some() {
        return None;
    }
    let key = AssignedKey(format!("{:016x}", rand::random::<u64>()));
    request.extensions_mut().insert(key.clone());
    Some(key)
}

/// The assigned key as a cookie for the client's next requests (30 days, `HttpOnly`, `Lax`;
/// this answer is `Cache-Control: private`).
pub(crate) fn keep<B>(
    response: &mut ServiceResponse<B>,
    key: AssignedKey,
) -> Result<(), actix_web::Error> {
    let cookie = Cookie::build(COOKIE, key.0)
        .path("/")
        .max_age(Duration::days(30))
        .same_site(SameSite::Lax)
        .http_only(true)
        .finish();
    response.response_mut().add_cookie(&cookie)?;
    // A shared cache must not hand this cookie (this cohort) to other clients.
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("private, no-cache"),
    );
    Ok(())
}
