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
    /// Answer what it would do, changing nothing.
    #[serde(default)]
    dry_run: bool,
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
    /// Answer what it would do, changing nothing.
    #[serde(default)]
    dry_run: bool,
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
    /// Only values users saw as this, as the quarantine lists it (`Volkswagen`): trimmed, any
    /// case.
    raw_value: Option<String>,
    /// Only values stored exactly as this (`text=Volkswagen, unit=`).
    raw_value_exact: Option<String>,
    /// Move although the target's type or rules refuse some of the values.
    #[serde(default)]
    force: bool,
    /// Answer what would move, changing nothing.
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v2/admin/attributes/quarantine/acceptances[/undo]`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// Only this attribute's values.
    #[schema(min_length = 1, max_length = 255)]
    attribute: Option<String>,
    /// Only values quarantined for this kind of reason.
    #[schema(value_type = Option<String>, example = "invalid")]
    reason: Option<storage::quarantine::QuarantineKind>,
    /// Every quarantined value users see (needed when neither filter is given).
    #[serde(default)]
    all: bool,
    /// Why, for the audit.
    #[schema(max_length = 1000)]
    note: Option<String>,
}

/// A resolution's answer: 201 when recorded now, 200 when it repeats an earlier one (or is
/// a dry run) and nothing changed.
fn resolved(resolution: &Resolution) -> actix_web::HttpResponseBuilder {
    if resolution.repeated || resolution.id == 0 {
        HttpResponse::Ok()
    } else {
        HttpResponse::Created()
    }
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
            body.dry_run,
        )
        .await?;
    state.invalidate(&written.invalidations).await;
    Ok(resolved(&written.data).json(Envelope::new(written.data)))
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
            body.dry_run,
        )
        .await?;
    state.invalidate(&written.invalidations).await;
    Ok(resolved(&written.data).json(Envelope::new(written.data)))
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
    let body = body.into_inner();
    let request = storage::resolve::MoveRequest {
        from: body.from,
        to: body.to,
        raw_value: body.raw_value,
        raw_value_exact: body.raw_value_exact,
        force: body.force,
        dry_run: body.dry_run,
    };
    let written = state
        .storage
        .move_values(&request, &admin.actor, state.flags().write_mode())
        .await?;
    state.invalidate(&written.invalidations).await;
    let (resolution, report) = written.data;
    if let Some(known) = &report.nothing_matched {
        return Err(ApiError::Conflict(format!(
            "no value of '{}' quarantined as not valid for it matches; nothing moved or recorded. \
             Its quarantined values, as users saw them: {}",
            request.from,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(" | ")
            }
        )));
    }
    Ok(HttpResponse::Ok().json(Envelope::new(Moved { resolution, report })))
}

/// Accepts that unified reads go without the quarantined values named (audited): unified reads
/// without fallback need every value users see resolved or accepted.
#[utoipa::path(post, path = "/api/v2/admin/attributes/quarantine/acceptances", tag = "admin",
    request_body = AcceptBody,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The acceptance, as recorded among the resolutions", body = Object),
        (status = 200, description = "It repeats an earlier one: nothing changed", body = Object),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 409, description = "Neither a filter nor `all`", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "An unknown reason kind", body = crate::error::ErrorView)))]
pub async fn accept(
    admin: Admin,
    body: web::Json<AcceptBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    accept_or_undo(admin, body.into_inner(), state, false).await
}

/// Takes an acceptance back: those values hold up unified reads again.
#[utoipa::path(post, path = "/api/v2/admin/attributes/quarantine/acceptances/undo", tag = "admin",
    request_body = AcceptBody,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Recorded among the resolutions", body = Object),
        (status = 200, description = "It repeats an earlier one: nothing changed", body = Object),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 409, description = "Neither a filter nor `all`", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "An unknown reason kind", body = crate::error::ErrorView)))]
pub async fn unaccept(
    admin: Admin,
    body: web::Json<AcceptBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    accept_or_undo(admin, body.into_inner(), state, true).await
}

async fn accept_or_undo(
    admin: Admin,
    body: AcceptBody,
    state: web::Data<AppState>,
    undo: bool,
) -> Result<HttpResponse, ApiError> {
    let filter = storage::quarantine::AcceptFilter {
        attribute: body.attribute,
        kind: body.reason,
    };
    let resolution = state
        .storage
        .accept_quarantined(&filter, body.all, body.note.as_deref(), &admin.actor, undo)
        .await?;
    // The guardrail that reads this changed: every replica reloads the migration state.
    Ok(resolved(&resolution).json(Envelope::new(resolution)))
}

/// Takes a resolution back while nothing was written on top of it; recorded as an `undo`.
#[utoipa::path(post, path = "/api/v2/admin/attributes/quarantine/resolutions/{id}/undo", tag = "admin",
    params(("id" = i64, Path, minimum = 1, description = "The resolution's id")),
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The undo, as recorded among the resolutions", body = Object),
        (status = 200, description = "It was undone already: nothing changed", body = Object),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 404, description = "No such resolution", body = crate::error::ErrorView),
        (status = 409, description = "Something was written on top of it", body = crate::error::ErrorView),
        (status = 503, description = "The database is busy; retry", body = crate::error::ErrorView)))]
pub async fn undo(
    admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = crate::routes::parse_id(&path, storage::Resource::Resolution)?;
    let written = state
        .storage
        .undo_resolution(id, &admin.actor, state.flags().write_mode())
        .await?;
    state.invalidate(&written.invalidations).await;
    Ok(resolved(&written.data).json(Envelope::new(written.data)))
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
