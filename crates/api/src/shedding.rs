//! Load shedding: each worker serves at most `server.max_in_flight` requests at once; the next
//! gets 503 with `Retry-After` at once (counted in `unified_attributes_shed_total`) instead of
//! queueing on the pool, so the requests a pod admits keep their latency under a spike and the
//! mesh retries the rest elsewhere. Probes and scrapes are never shed: an overloaded pod must
//! still say it is alive and be seen.
//!
//! Fair share: no one client takes a worker's slots. A client is its credentials (the
//! `Authorization` value, else the `access_token` cookie) or, when it sends none, its address.
//! Each may have `server.max_in_flight_per_client` requests in flight on a worker, and of them
//! `server.max_writes_in_flight_per_client` with a body (a client may send a body slowly; the
//! body deadline ends it); the next gets 429 at once.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use std::sync::Mutex;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{AUTHORIZATION, COOKIE};
use tokio::sync::OwnedSemaphorePermit;

use crate::AppState;
use crate::error::ApiError;

/// What an admitted request holds until it is answered: its slots, given back when dropped.
#[derive(Debug)]
pub(crate) struct Admission {
    _in_flight: Option<OwnedSemaphorePermit>,
    _write: Option<ClientSlot>,
    _client: Option<ClientSlot>,
}

/// Admits the request, or names its refusal (429 or 503, counted as shed). Probes and scrapes
/// are always admitted.
pub(crate) fn admit(request: &ServiceRequest, state: &AppState) -> Result<Admission, ApiError> {
    let exempt = request.path().starts_with("/health/") || request.path() == "/metrics";
    if exempt {
        return Ok(Admission {
            _in_flight: None,
            _write: None,
            _client: None,
        });
    }
    let writes_body = matches!(
        *request.method(),
        actix_web::http::Method::POST
            | actix_web::http::Method::PUT
            | actix_web::http::Method::PATCH
    );
    let client = client_of(request, state.trust_forwarded_for);
    let refuse = |error: ApiError| {
        state.metrics.shed();
        Err(error)
    };
    let Some(client_slot) = state.requests_per_client.enter(client.key()) else {
        return refuse(ApiError::TooManyRequests);
    };
    let write_slot = if writes_body {
        match state.writes_per_client.enter(client.key()) {
            Some(slot) => Some(slot),
            None => return refuse(ApiError::TooManyRequests),
        }
    } else {
        None
    };
    let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
        return refuse(ApiError::Overloaded);
    };
    Ok(Admission {
        _in_flight: Some(permit),
        _write: write_slot,
        _client: Some(client_slot),
    })
}

/// Who a request counts against: its credentials, or its address when it has none.
enum Client<'a> {
    Credentials(&'a [u8]),
    Address([u8; 17]),
}

impl Client<'_> {
    fn key(&self) -> &[u8] {
        match self {
            Client::Credentials(credentials) => credentials,
            Client::Address(address) => address,
        }
    }
}

fn client_of(request: &ServiceRequest, trust_forwarded_for: bool) -> Client<'_> {
    let headers = request.headers();
    if let Some(credentials) = headers.get(AUTHORIZATION) {
        return Client::Credentials(credentials.as_bytes());
    }
    // The user's token cookie; the rest of the header (a cohort cookie, tracking) is not who.
    if let Some(token) = headers
        .get_all(COOKIE)
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .find(|pair| {
            pair.starts_with(crate::auth::TOKEN_COOKIE.as_bytes())
                && pair.get(crate::auth::TOKEN_COOKIE.len()) == Some(&b'=')
        })
    {
        return Client::Credentials(token);
    }
    let forwarded = trust_forwarded_for
        .then(|| headers.get("x-forwarded-for"))
        .flatten()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    let address = forwarded.or_else(|| request.peer_addr().map(|peer| peer.ip()));
    // Tagged so that no credentials hash alike: a header value never starts with 0xff.
    let mut key = [0xff_u8; 17];
    match address {
        Some(IpAddr::V4(v4)) => key[1..5].copy_from_slice(&v4.octets()),
        Some(IpAddr::V6(v6)) => key[1..].copy_from_slice(&v6.octets()),
        None => {}
    }
    Client::Address(key)
}

/// Requests (or writes) in flight per client on one worker.
#[derive(Debug)]
pub struct PerClient {
    limit: usize,
    /// Keyed by a hash of the client's key (never the secret itself), with a per-process seed;
    /// that hash is spread again by foldhash, not by a second SipHash.
    counts: Mutex<HashMap<u64, usize, foldhash::fast::RandomState>>,
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

    /// A slot for the client with this key, or `None` at its bound (0: no bound).
    pub fn enter(self: &std::sync::Arc<Self>, client: &[u8]) -> Option<ClientSlot> {
        if self.limit == 0 {
            return Some(ClientSlot {
                clients: self.clone(),
                key: None,
            });
        }
        let key = self.seed.hash_one(client);
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
