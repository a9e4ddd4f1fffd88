//! A deadline on reading a request's body: a client that trickles its body (or stops sending
//! it) is answered 408 when the deadline passes, instead of holding a worker's slot and a
//! request in flight for as long as it likes. The head has its own timeout (actix-web's
//! `client_request_timeout`); this covers what follows it.

use std::io;
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::PayloadError;
use futures_util::StreamExt;

/// The error a body read gets past the deadline; `json_error` answers it with 408.
pub(crate) fn is_deadline(err: &PayloadError) -> bool {
    matches!(err, PayloadError::Io(e) if e.kind() == io::ErrorKind::TimedOut)
}

/// Puts the request's body, if it has one, behind a deadline `limit` from now.
pub(crate) fn bound(request: &mut ServiceRequest, limit: Duration) {
    use actix_web::http::header;
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    if !has_body {
        // Reads (the hot path) carry no body: nothing to bound.
        return;
    }
    let deadline = tokio::time::Instant::now() + limit;
    let payload = request.take_payload();
    let bounded = futures_util::stream::unfold(Some(payload), move |payload| async move {
        let mut payload = payload?;
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(payload))),
            Ok(None) => None,
            Err(_) => Some((
                Err(PayloadError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the body was not received within {} ms", limit.as_millis()),
                ))),
                None,
            )),
        }
    });
    let boxed: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, PayloadError>>>,
    > = Box::pin(bounded);
    request.set_payload(Payload::from(boxed));
}
