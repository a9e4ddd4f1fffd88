//! The bulk operations' throttle for ops (admin token): any service replica shows it and
//! changes it, as the `throttle` subcommand does; a running backfill or sync-legacy follows
//! before its next batch.

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value as Json};
use storage::throttle::{Operation, ThrottleChange};

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::Envelope;

fn operation(path: &str) -> Result<Operation, ApiError> {
    path.parse().map_err(|_| ApiError::RouteNotFound)
}

/// `GET /api/v2/admin/operations/{operation}/throttle`
#[utoipa::path(get, path = "/api/v2/admin/operations/{operation}/throttle", tag = "admin",
    params(("operation" = inline(crate::routes::admin_bodies::OperationName), Path, description = "`backfill` or `sync-legacy`")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Paused or not, the limits, and why the running operation waits", body = Object),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 404, description = "No such operation", body = crate::error::ErrorView)))]
pub async fn show(
    _admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let throttle = state.storage.throttle(operation(&path)?).await?;
    Ok(HttpResponse::Ok().json(Envelope::new(throttle)))
}

/// `PUT /api/v2/admin/operations/{operation}/throttle`: any of `paused` (boolean),
/// `max_lag_ms` and `max_load` (a positive integer, or null to remove the limit). `X-Actor`
/// names who asked.
#[utoipa::path(put, path = "/api/v2/admin/operations/{operation}/throttle", tag = "admin",
    params(("operation" = inline(crate::routes::admin_bodies::OperationName), Path, description = "`backfill` or `sync-legacy`")),
    request_body(content = crate::routes::admin_bodies::ThrottleBody, description = "Any of paused (boolean), max_lag_ms and max_load (integer ≥ 1, or null)"),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The throttle now stored", body = Object),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 404, description = "No such operation", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Unknown field or value out of range", body = crate::error::ErrorView)))]
pub async fn change(
    admin: Admin,
    path: web::Path<String>,
    body: web::Json<Json>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let operation = operation(&path)?;
    let Json::Object(fields) = body.into_inner() else {
        return Err(ApiError::ExpectedObject);
    };
    let change = parse(&fields).map_err(ApiError::InvalidBody)?;
    let throttle = state
        .storage
        .change_throttle(operation, change, &admin.actor)
        .await?;
    tracing::info!(actor = %admin.actor, operation = operation.as_str(), ?change, "throttle changed");
    Ok(HttpResponse::Ok().json(Envelope::new(throttle)))
}

/// Reads a change; absent fields stay as they are.
fn parse(fields: &Map<String, Json>) -> Result<ThrottleChange, String> {
    let mut change = ThrottleChange::default();
    let limit = |name: &str, value: &Json| match value {
        Json::Null => Ok(None),
        value => value
            .as_i64()
            .filter(|limit| *limit >= 1)
            .map(Some)
            .ok_or_else(|| format!("{name} must be an integer of at least 1, or null")),
    };
    for (name, value) in fields {
        match name.as_str() {
            "paused" => {
                change.paused = Some(value.as_bool().ok_or("paused must be true or false")?);
            }
            "max_lag_ms" => change.max_lag_ms = Some(limit(name, value)?),
            "max_load" => change.max_load = Some(limit(name, value)?),
            other => {
                return Err(format!(
                    "unknown field '{other}': paused, max_lag_ms or max_load"
                ));
            }
        }
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> Result<ThrottleChange, String> {
        let Json::Object(fields) = serde_json::from_str(json).expect("JSON") else {
            panic!("an object")
        };
        parse(&fields)
    }

    #[test]
    fn a_change_names_only_what_it_changes_and_null_removes_a_limit() {
        assert_eq!(
            parsed(r#"{"paused": true, "max_lag_ms": null}"#),
            Ok(ThrottleChange {
                paused: Some(true),
                max_lag_ms: Some(None),
                max_load: None,
            })
        );
        assert_eq!(
            parsed(r#"{"max_load": 32}"#).map(|c| c.max_load),
            Ok(Some(Some(32)))
        );
        assert!(parsed(r#"{"max_lag_ms": 0}"#).is_err());
        assert!(parsed(r#"{"max_lag_ms": "1"}"#).is_err());
        assert!(parsed(r#"{"paused": 1}"#).is_err());
        assert!(parsed(r#"{"pause": true}"#).is_err());
    }
}
