//! The one error contract of the API: every failure answers with the right HTTP status, a
//! stable i18n key, a human detail and, for refused values, one reason per field.
//! Internal detail is logged, never sent.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use domain::FieldError;
use serde::Serialize;
use storage::{Resource, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("'{given}' is not a valid {what} id: ids are positive whole numbers")]
    InvalidId { what: Resource, given: String },
    #[error("{what} {id} does not exist")]
    NotFound { what: Resource, id: i64 },
    #[error("no category has the slug '{0}'")]
    CategorySlugNotFound(String),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    BodyTimeout(String),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedContentType,
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be a JSON object mapping attribute codes to values")]
    ExpectedObject,
    #[error("some values were refused; see fields")]
    InvalidValues(Vec<FieldError>),
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidUrl(String),
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("{0}")]
    Conflict(String),
    /// The database refused the request's data (a value no check before it caught).
    #[error("{0}")]
    RefusedInput(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Guardrail(flags::GuardrailViolation),
    /// A guardrail with what holds it up (the unsettled quarantine).
    #[error("{1}")]
    GuardrailDetail(flags::GuardrailViolation, String),
    /// A flag change that breaks several guardrails: all of them (the first is `rule`), and
    /// the first one's words.
    #[error("{1}")]
    Guardrails(Vec<flags::GuardrailViolation>, String),
    #[error("no route for this path")]
    RouteNotFound,
    #[error("this method is not allowed here; allowed: {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("the database is busy or not reachable; nothing was written: retry shortly")]
    StorageUnavailable(#[source] StorageError),
    /// This client is at its bound of writes in flight on this replica.
    #[error("too many of this client's writes are in flight; nothing was done: retry shortly")]
    TooManyRequests,
    /// This replica is at its bound of requests in flight; another may have room.
    #[error("the service is at capacity; nothing was done: retry shortly")]
    Overloaded,
    #[error("internal error")]
    Internal(#[source] StorageError),
    /// One error shared by every request that waited on the same cache load.
    #[error(transparent)]
    Shared(std::sync::Arc<ApiError>),
}

impl ApiError {
    /// The stable key the frontend translates.
    pub fn i18n_key(&self) -> &'static str {
        match self {
            ApiError::Shared(inner) => inner.i18n_key(),
            ApiError::InvalidId { what, .. } => match what {
                Resource::Category => "errors.invalidCategoryId",
                Resource::Listing => "errors.invalidListingId",
                Resource::Product => "errors.invalidProductId",
                Resource::ProductVariant => "errors.invalidVariantId",
                Resource::Attribute => "errors.invalidAttributeId",
                Resource::Binding | Resource::Resolution => "errors.invalidId",
            },
            ApiError::NotFound { what, .. } => match what {
                Resource::Category => "errors.categoryNotFound",
                Resource::Listing => "errors.listingNotFound",
                Resource::Product => "errors.productNotFound",
                Resource::ProductVariant => "errors.variantNotFound",
                Resource::Attribute => "errors.attributeNotFound",
                Resource::Binding => "errors.bindingNotFound",
                Resource::Resolution => "errors.notFound",
            },
            ApiError::CategorySlugNotFound(_) => "errors.categoryNotFound",
            ApiError::MalformedJson(_) => "errors.malformedJson",
            ApiError::BodyTimeout(_) => "errors.requestTimeout",
            ApiError::UnsupportedContentType => "errors.unsupportedContentType",
            ApiError::PayloadTooLarge { .. } => "errors.payloadTooLarge",
            ApiError::ExpectedObject => "errors.expectedObject",
            ApiError::InvalidValues(_) => "errors.validationFailed",
            ApiError::Unauthorized => "errors.unauthorized",
            ApiError::InvalidQuery(_) => "errors.invalidQuery",
            ApiError::InvalidUrl(_) => "errors.invalidUrl",
            ApiError::RefusedInput(_) => "errors.invalidInput",
            ApiError::InvalidBody(_) => "errors.invalidBody",
            ApiError::Conflict(_) => "errors.conflict",
            ApiError::Forbidden(_) => "errors.forbidden",
            ApiError::Guardrail(_) | ApiError::GuardrailDetail(..) | ApiError::Guardrails(..) => {
                "errors.guardrailViolation"
            }
            ApiError::RouteNotFound => "errors.routeNotFound",
            ApiError::MethodNotAllowed { .. } => "errors.methodNotAllowed",
            ApiError::StorageUnavailable(_) => "errors.storageUnavailable",
            ApiError::Overloaded => "errors.overloaded",
            ApiError::TooManyRequests => "errors.tooManyRequests",
            ApiError::Internal(_) => "errors.internal",
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::NotFound { what, id } => ApiError::NotFound { what, id },
            StorageError::InvalidValues(fields) => ApiError::InvalidValues(fields),
            StorageError::Conflict(message) => ApiError::Conflict(message),
            leased @ StorageError::Leased(_) => ApiError::Conflict(leased.to_string()),
            StorageError::Forbidden(message) => ApiError::Forbidden(message),
            StorageError::Guardrail(violation) => ApiError::Guardrail(violation),
            ref unsettled @ StorageError::QuarantineUnsettled(_) => ApiError::GuardrailDetail(
                flags::GuardrailViolation::UnifiedReadsHideQuarantinedValues,
                unsettled.to_string(),
            ),
            StorageError::Saturated => ApiError::Overloaded,
            ref transient if transient.is_transient() => ApiError::StorageUnavailable(err),
            ref unique if unique.is_unique_violation() => {
                ApiError::Conflict("another record already has this key".into())
            }
            // A value the database refuses (a byte sequence, a length, a range, a trigger of the
            // marketplace's) is the client's: 422, never 500. Its words stay in the log.
            ref refused if refused.refused_data().is_some() => {
                static REFUSED: crate::telemetry::LogBudget = crate::telemetry::LogBudget::new();
                if let Some(suppressed) = REFUSED.allow_now() {
                    let reason = refused.refused_data().unwrap_or_default();
                    tracing::warn!(
                        reason = %crate::telemetry::Bounded(&reason),
                        suppressed,
                        "the database refused a request's data"
                    );
                }
                ApiError::RefusedInput(
                    "the database refused a value of this request; nothing was written".into(),
                )
            }
            other => ApiError::Internal(other),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    success: bool,
    error: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    fields: &'a [FieldError],
    /// The guardrail a refused flag change breaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'static str>,
    /// Every guardrail a refused flag change breaks, when it breaks several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rules: Vec<&'static str>,
    /// The request's id, as its `X-Request-Id` answer header says.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<std::sync::Arc<str>>,
}

impl cache::StandIn for ApiError {
    fn database_unavailable(&self) -> bool {
        match self {
            ApiError::Shared(inner) => inner.database_unavailable(),
            ApiError::StorageUnavailable(_) | ApiError::Overloaded => true,
            _ => false,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Shared(inner) => inner.status_code(),
            ApiError::InvalidId { .. }
            | ApiError::MalformedJson(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidUrl(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidBody(_) | ApiError::RefusedInput(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Conflict(_)
            | ApiError::Guardrail(_)
            | ApiError::GuardrailDetail(..)
            | ApiError::Guardrails(..) => StatusCode::CONFLICT,
            ApiError::NotFound { .. }
            | ApiError::CategorySlugNotFound(_)
            | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::ExpectedObject | ApiError::InvalidValues(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::StorageUnavailable(_) | ApiError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Shared(inner) = self {
            return inner.error_response();
        }
        // The cause chain goes to the log only, once a second per kind at most.
        static INTERNAL: crate::telemetry::LogBudget = crate::telemetry::LogBudget::new();
        static UNAVAILABLE: crate::telemetry::LogBudget = crate::telemetry::LogBudget::new();
        match self {
            ApiError::Internal(cause) => {
                if let Some(suppressed) = INTERNAL.allow_now() {
                    tracing::error!(error = %storage::Logged(cause), suppressed, "request failed");
                }
            }
            ApiError::StorageUnavailable(cause) => {
                if let Some(suppressed) = UNAVAILABLE.allow_now() {
                    tracing::error!(error = %storage::Logged(cause), suppressed, "request failed: the database is unavailable");
                }
            }
            _ => {}
        }
        let fields = match self {
            ApiError::InvalidValues(fields) => fields.as_slice(),
            _ => &[],
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::MethodNotAllowed { allow } = self {
            response.insert_header(("Allow", *allow));
        }
        if matches!(
            self,
            ApiError::StorageUnavailable(_) | ApiError::Overloaded | ApiError::TooManyRequests
        ) {
            // Transient by construction (a lock or pool wait, a flag change mid-write): nothing
            // was written, and the same request may succeed a moment later.
            response.insert_header(("Retry-After", "1"));
        }
        response.json(ErrorBody {
            success: false,
            error: self.i18n_key(),
            detail: self.to_string(),
            fields,
            rule: match self {
                ApiError::Guardrail(violation) | ApiError::GuardrailDetail(violation, _) => {
                    Some(violation.rule())
                }
                ApiError::Guardrails(violations, _) => violations.first().map(|v| v.rule()),
                _ => None,
            },
            rules: match self {
                ApiError::Guardrails(violations, _) => {
                    violations.iter().map(|v| v.rule()).collect()
                }
                _ => Vec::new(),
            },
            request_id: crate::request_id::current(),
        })
    }
}

/// Maps actix-web's JSON body errors into the contract.
pub fn json_error(err: actix_web::error::JsonPayloadError, limit: usize) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::ContentType => ApiError::UnsupportedContentType,
        E::Overflow { .. } | E::OverflowKnownLength { .. } => ApiError::PayloadTooLarge { limit },
        E::Payload(payload) if crate::body_deadline::is_deadline(&payload) => {
            ApiError::BodyTimeout(payload.to_string())
        }
        other => ApiError::MalformedJson(other.to_string()),
    }
}

/// The error body's schema, for the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorView {
    /// Always false.
    pub success: bool,
    /// Stable i18n key, e.g. `errors.invalidCategoryId`.
    pub error: String,
    /// A human explanation.
    pub detail: String,
    /// One entry per refused field, for `errors.validationFailed`.
    #[serde(default)]
    pub fields: Vec<FieldErrorView>,
    /// The guardrail a refused flag change breaks (409).
    pub rule: Option<String>,
    /// Every guardrail it breaks, when it breaks several.
    #[serde(default)]
    pub rules: Vec<String>,
    /// The request's id (the `X-Request-Id` answer header): the caller's when it sent a plain
    /// one, else a new UUID.
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FieldErrorView {
    pub field: String,
    pub key: String,
    pub reason: String,
}
