//! Load shedding: each worker serves at most `server.max_in_flight` requests at once; the next
//! gets 503 with `Retry-After` at once (counted in `unified_attributes_shed_total`) instead of
//! queueing on the pool, so the requests a pod admits keep their latency under a spike and the
//! mesh retries the rest elsewhere. Probes and scrapes are never shed: an overloaded pod must
//! still say it is alive and be seen.
//!
//! A write's body is read before its owner is known, and a client may send it slowly: each
//! client (its `Authorization` value) may have at most `server.max_writes_in_flight_per_client`
//! writes in flight on a worker, so one token trickling bodies holds those slots and no others;
//! the next of its writes gets 429 at once. Reads are not bounded per client (a frontend may
//! send all of its users' reads from one address).

use std::collections::HashMap;
use std::hash::BuildHasher;

use std::sync::Mutex;

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
    let writes_body = matches!(
        *request.method(),
        actix_web::http::Method::POST
            | actix_web::http::Method::PUT
            | actix_web::http::Method::PATCH
    );
    let client_slot = match (&state, request.headers().get("Authorization")) {
        (Some(state), Some(credentials)) if writes_body => {
            match state.writes_per_client.enter(credentials.as_bytes()) {
                Some(slot) => Some(slot),
                None => {
                    state.metrics.shed();
                    let response = ApiError::TooManyRequests.error_response();
                    return Ok(request.into_response(response).map_into_right_body());
                }
            }
        }
        _ => None,
    };
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
    drop(client_slot);
    Ok(response.map_into_left_body())
}

/// Writes in flight per client on one worker.
#[derive(Debug)]
pub struct PerClient {
    limit: usize,
    /// Keyed by a hash of the credentials (never the secret itself), with a per-process seed.
    counts: Mutex<HashMap<u64, usize>>,
    seed: std::collections::hash_map::RandomState,
}

/// A client's slot, given back when the request ends.
#[derive(Debug)]
pub struct ClientSlot {
    clients: std::sync::Arc<PerClient>,
    /// `None` when nothing is counted (no bound).
    key: Option<u64>,
}

impl PerClient {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            counts: Mutex::default(),
            seed: std::collections::hash_map::RandomState::new(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A slot for the client with these credentials, or `None` at its bound (0: no bound).
    pub fn enter(self: &std::sync::Arc<Self>, credentials: &[u8]) -> Option<ClientSlot> {
        if self.limit == 0 {
            return Some(ClientSlot {
                clients: self.clone(),
                key: None,
            });
        }
        let key = self.seed.hash_one(credentials);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: self.clone(),
            key: Some(key),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        let mut counts = self
            .clients
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }
}
