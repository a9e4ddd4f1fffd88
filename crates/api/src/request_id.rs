//! Every request's id: the caller's `X-Request-Id` when it is a plain token (a gateway's, a
//! client's), else a new UUID. It is in the request's log span, in every answer's
//! `X-Request-Id` and in every error body, so a user's report, the gateway's log and ours name
//! the same request.

use std::sync::Arc;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming id kept; a longer one is replaced, never cut (a cut id names nothing).
const LONGEST: usize = 128;

/// A request's id, in its extensions and, while it is handled, in [`current`].
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<Arc<str>> {
    CURRENT.try_with(|id| id.0.clone()).ok()
}

/// An incoming id is kept when it is 1 to 128 characters of letters, digits and `._:-`: what
/// gateways and tracing systems send, and nothing a log line or header could be hurt by.
fn accepted(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let plain = (1..=LONGEST).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    plain.then_some(text)
}

/// Every middleware inside this one answers its refusals as responses (`ServiceRequest::
/// error_response`), and handlers' errors become responses inside too: all of them are made
/// while [`current`] knows the id.
pub async fn assign(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let (id, header): (Arc<str>, HeaderValue) = match request.headers().get(HEADER) {
        // The caller's header is answered as it came: a handle on its bytes, not a copy.
        Some(value) if let Some(text) = accepted(value) => (text.into(), value.clone()),
        // Written into a buffer on the stack: `to_string` went through the formatter, and
        // the header was then checked and copied from the text again.
        _ => {
            let mut buffer = uuid::Uuid::encode_buffer();
            let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
            let header = HeaderValue::from_str(text).expect("a UUID is a valid header value");
            (Arc::from(&*text), header)
        }
    };
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = CURRENT.scope(RequestId(id), next.call(request)).await?;
    response.headers_mut().insert(HEADER, header);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_kept_and_anything_else_is_replaced() {
        for kept in [
            "abc-123",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "a.b:c_d",
        ] {
            assert_eq!(accepted(&HeaderValue::from_static(kept)), Some(kept));
        }
        let long = "x".repeat(LONGEST + 1);
        for replaced in ["", "two words", "<script>", long.as_str()] {
            let value = HeaderValue::from_str(replaced).expect("a header value");
            assert_eq!(accepted(&value), None, "{replaced:?}");
        }
    }
}
