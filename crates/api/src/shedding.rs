//! Load shedding: each worker serves at most `server.max_in_flight` requests at once; the next
//! gets 503 with `Retry-After` at once (counted in `unified_attributes_shed_total`) instead of
//! queueing on the pool, so the requests a pod admits keep their latency under a spike and the
//! mesh retries the rest elsewhere. Probes and scrapes are never shed: an overloaded pod must
//! still say it is alive and be seen.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use crate::AppState;
use crate::error::ApiError;

pub async fn admit(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let exempt = request.path().starts_with("/health/") || request.path() == "/metrics";
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let permit = match state {
        Some(state) if !exempt => match state.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                state.metrics.shed();
                let response = ApiError::Overloaded.error_response();
                return Ok(request.into_response(response).map_into_right_body());
            }
        },
        _ => None,
    };
    let response = next.call(request).await?;
    drop(permit);
    Ok(response.map_into_left_body())
}
