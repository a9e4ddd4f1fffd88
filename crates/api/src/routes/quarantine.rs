//! Resolving the quarantine (admin token): an alias for an option, an option for a legitimate
//! legacy value, values moved to the attribute they belong to, and the record of each. The
//! quarantined values are then migrated again by `backfill --retry-quarantine`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use storage::resolve::{MoveReport, Resolution};

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::Envelope;

/// `POST /api/v2/admin/attributes/quarantine/aliases`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasBody {
    /// The attribute's code.
    #[schema(min_length = 1, max_length = 255)]
    attribute: String,
    /// Another spelling of the option, as legacy values hold it (`дизель`); case is ignored.
    #[schema(min_length = 1, max_length = 255)]
    alias: String,
    /// The option value it means (`diesel`).
    #[schema(min_length = 1, max_length = 255)]
    option: String,
}

/// `POST /api/v2/admin/attributes/quarantine/options`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOptionBody {
    #[schema(min_length = 1, max_length = 255)]
    attribute: String,
    /// The new option's value.
    #[schema(min_length = 1, max_length = 255)]
    value: String,
    /// Its labels by language (`{"sr": "Volkswagen"}`); the value in Serbian when absent.
    #[serde(default)]
    #[schema(value_type = Object)]
    label: domain::LocalizedText,
}

/// `POST /api/v2/admin/attributes/quarantine/moves`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// The attribute the quarantined listing values are under.
    #[schema(min_length = 1, max_length = 255)]
    from: String,
    /// The attribute they belong to.
    #[schema(min_length = 1, max_length = 255)]
    to: String,
    /// Only values with this raw form, as the quarantine lists it (`text=Volkswagen`).
    raw_value: Option<String>,
}

#[derive(Debug, Serialize)]
struct Moved {
    resolution: Resolution,
    #[serde(flatten)]
    report: MoveReport,
}

/// Registers another spelling of an option; it applies at once to reads and writes, and to
/// quarantined values at the next `backfill --retry-quarantine`.
#[utoipa::path(post, path = "/api/v2/admin/attributes/quarantine/aliases", tag = "admin",
    request_body = AliasBody,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The alias, as recorded among the resolutions", body = Object),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 409, description = "The spelling already means another option", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Unknown attribute or option, or an empty alias", body = crate::error::ErrorView)))]
pub async fn add_alias(
    admin: Admin,
    body: web::Json<AliasBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let written = state
        .storage
        .add_alias(
            &body.attribute,
            &body.alias,
            &body.option,
            &admin.actor,
            state.flags().write_mode(),
        )
        .await?;
    state.invalidate(&written.invalidations).await;
    Ok(HttpResponse::Created().json(Envelope::new(written.data)))
}

/// Adds an option to an attribute, in every store the flags write.
#[utoipa::path(post, path = "/api/v2/admin/attributes/quarantine/options", tag = "admin",
    request_body = NewOptionBody,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The option, as recorded among the resolutions", body = Object),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 409, description = "The value already means an option", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Unknown attribute, or one without options", body = crate::error::ErrorView),
        (status = 503, description = "The database is busy; retry", body = crate::error::ErrorView)))]
pub async fn add_option(
    admin: Admin,
    body: web::Json<NewOptionBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let written = state
        .storage
        .add_option(
            &body.attribute,
            &body.value,
            body.label,
            &admin.actor,
            state.flags().write_mode(),
        )
        .await?;
    state.invalidate(&written.invalidations).await;
    Ok(HttpResponse::Created().json(Envelope::new(written.data)))
}

/// Moves quarantined listing values to the attribute they belong to and migrates them again,
/// in one transaction.
#[utoipa::path(post, path = "/api/v2/admin/attributes/quarantine/moves", tag = "admin",
    request_body = MoveBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "What moved, what was left, what migrated", body = Object),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 409, description = "The flags or the migration state forbid it now", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Unknown attribute", body = crate::error::ErrorView),
        (status = 503, description = "The database is busy; retry", body = crate::error::ErrorView)))]
pub async fn move_values(
    admin: Admin,
    body: web::Json<MoveBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let written = state
        .storage
        .move_values(
            &body.from,
            &body.to,
            body.raw_value.as_deref(),
            &admin.actor,
            state.flags().write_mode(),
        )
        .await?;
    state.invalidate(&written.invalidations).await;
    let (resolution, report) = written.data;
    Ok(HttpResponse::Ok().json(Envelope::new(Moved { resolution, report })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ResolutionsQuery {
    /// 1 to 1,000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// The resolutions of the quarantine, newest first: who did what, to which attribute.
#[utoipa::path(get, path = "/api/v2/admin/attributes/quarantine/resolutions", tag = "admin",
    params(ResolutionsQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The resolutions, newest first", body = Object),
        (status = 400, description = "Invalid query", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView)))]
pub async fn resolutions(
    _admin: Admin,
    query: web::Query<ResolutionsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = crate::routes::admin_limit(query.limit)?;
    Ok(HttpResponse::Ok().json(Envelope::new(state.storage.resolutions(limit).await?)))
}
