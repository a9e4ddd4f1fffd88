//! Every request's way in, inside its id and its log span: the steps that were a middleware
//! each, run in one layer in the order they ran. A layer of actix-web's `from_fn` costs a boxed
//! future, a dynamic call and a poll through both a request; the uncached read paid for six.
//!
//! 1. The connection is busy while the request is in flight ([`connections`]).
//! 2. The answer is counted and timed ([`metrics`]), the refusals below included.
//! 3. Fair share and the worker's bound, else 429 or 503 ([`shedding`]).
//! 4. A sticky cohort for a client without a key while the rollout splits reads ([`cohort`]).
//! 5. A deadline on reading the body ([`body_deadline`]).
//! 6. A URL holding a NUL refused ([`url_guard`]).
//!
//! Each refusal is an answer made here, inside `request_id`'s scope, so it carries the id.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use crate::{AppState, body_deadline, cohort, connections, metrics, shedding, url_guard};

pub(crate) async fn guard(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let started = Instant::now();
    let _busy = connections::Busy::of(&request);
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(request).await?.map_into_left_body());
    };
    let response = match shedding::admit(&request, &state) {
        Err(refusal) => request
            .into_response(refusal.error_response())
            .map_into_right_body(),
        // The admission's slots are held until the answer is made.
        Ok(_admission) => {
            let assigned = cohort::assign(&request, &state);
            body_deadline::bound(&mut request, state.body_timeout);
            let mut response = match url_guard::refusal(&request) {
                Some(refusal) => request.error_response(refusal).map_into_right_body(),
                None => next.call(request).await?.map_into_left_body(),
            };
            if let Some(key) = assigned {
                cohort::keep(&mut response, key)?;
            }
            response
        }
    };
    metrics::record(&state.metrics, &response, started);
    Ok(response)
}
