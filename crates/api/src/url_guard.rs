//! Requests whose URL carries a NUL character (`%00`, in the path or the query) are refused
//! with 400 before any handler runs: no store can hold a NUL, and PostgreSQL answers a
//! parameter holding one with an error (22021) that was a 500 — on demand, unauthenticated,
//! feeding every 5xx alert and the canary analysis.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::error::ApiError;

pub async fn refuse_nul(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let carries_nul = request.uri().path_and_query().is_some_and(|url| {
        url.as_str()
            .as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    });
    if carries_nul {
        // Answered here, as every middleware's refusal is: inside `request_id`'s scope.
        let refusal = ApiError::InvalidUrl(
            "the URL holds a NUL character (%00), which no parameter may contain".into(),
        );
        return Ok(request.error_response(refusal).map_into_right_body());
    }
    Ok(next.call(request).await?.map_into_left_body())
}
