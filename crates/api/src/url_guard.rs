//! Requests whose URL carries a NUL character (`%00`, in the path or the query) are refused
//! with 400 before any handler runs: no store can hold a NUL, and PostgreSQL answers a
//! parameter holding one with an error (22021) that was a 500 — on demand, unauthenticated,
//! feeding every 5xx alert and the canary analysis.

use actix_web::dev::ServiceRequest;

use crate::error::ApiError;

/// The refusal of a URL that carries a NUL, if this one does.
pub(crate) fn refusal(request: &ServiceRequest) -> Option<ApiError> {
    let carries_nul = request.uri().path_and_query().is_some_and(|url| {
        url.as_str()
            .as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    });
    carries_nul.then(|| {
        ApiError::InvalidUrl(
            "the URL holds a NUL character (%00), which no parameter may contain".into(),
        )
    })
}
