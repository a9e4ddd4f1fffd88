//! Admin writes of definitions and category bindings (admin token). They go through the
//! flag-routed storage like value writes, and drop exactly the cached reads they change.

use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use domain::{BindingDraft, Language};
use serde_json::Value as Json;

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::{Envelope, language, parse_id, refuse_nul_characters};
use crate::views::AttributeView;

fn draft<T: serde::de::DeserializeOwned>(body: Json) -> Result<T, ApiError> {
    refuse_nul_characters(&body)?;
    // Serde reads a struct from an array too (by position); a client sending one meant
    // something else, so the documented object shape is the only one accepted.
    for key in ["validation_rules", "ui", "name", "display_name"] {
        if let Some(value) = body.get(key)
            && !value.is_object()
            && !value.is_null()
        {
            return Err(ApiError::InvalidBody(format!("{key} must be an object")));
        }
    }
    serde_json::from_value(body).map_err(|e| ApiError::InvalidBody(e.to_string()))
}

fn attribute_response(
    status: actix_web::http::StatusCode,
    attribute: &domain::Attribute,
    lang: Language,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((LOCATION, format!("/api/v2/attributes/{}", attribute.id)))
        .json(Envelope::new(AttributeView::of(attribute, lang)))
}

/// `POST /api/v2/admin/attributes`
#[utoipa::path(post, path = "/api/v2/admin/attributes", tag = "admin",
    request_body(content = crate::routes::admin_bodies::AttributeBody),
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Created", body = inline(crate::routes::attributes::AttributeEnvelope)),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 409, description = "The code is taken", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Invalid definition", body = crate::error::ErrorView)))]
pub async fn create_attribute(
    _admin: Admin,
    request: HttpRequest,
    body: web::Json<Json>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let written = state
        .storage
        .create_attribute(draft(body.into_inner())?, state.flags().write_mode())
        .await?;
    state.invalidate(&written.invalidations).await;
    Ok(attribute_response(
        actix_web::http::StatusCode::CREATED,
        &written.data,
        language(&request),
    ))
}

/// `PUT /api/v2/admin/attributes/{id}`
#[utoipa::path(put, path = "/api/v2/admin/attributes/{id}", tag = "admin",
    params(("id" = i64, Path, minimum = 1, description = "Attribute id")),
    request_body(content = crate::routes::admin_bodies::AttributeBody, description = "The full definition, as for creation"),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Updated", body = inline(crate::routes::attributes::AttributeEnvelope)),
        (status = 400, description = "Invalid id or JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 404, description = "No such attribute", body = crate::error::ErrorView),
        (status = 409, description = "The code is taken", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Invalid definition", body = crate::error::ErrorView)))]
pub async fn update_attribute(
    _admin: Admin,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Json>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path, storage::Resource::Attribute)?;
    let written = state
        .storage
        .update_attribute(id, draft(body.into_inner())?, state.flags().write_mode())
        .await?;
    state.invalidate(&written.invalidations).await;
    Ok(attribute_response(
        actix_web::http::StatusCode::OK,
        &written.data,
        language(&request),
    ))
}

/// `DELETE /api/v2/admin/attributes/{id}`: with its bindings and values.
#[utoipa::path(delete, path = "/api/v2/admin/attributes/{id}", tag = "admin",
    params(("id" = i64, Path, minimum = 1, description = "Attribute id")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 404, description = "No such attribute", body = crate::error::ErrorView)))]
pub async fn delete_attribute(
    _admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path, storage::Resource::Attribute)?;
    let written = state
        .storage
        .delete_attribute(id, state.flags().write_mode())
        .await?;
    state.invalidate(&written.invalidations).await;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v2/admin/categories/{id}/attributes`: binds an attribute (or changes the binding).
#[utoipa::path(post, path = "/api/v2/admin/categories/{id}/attributes", tag = "admin",
    params(("id" = i64, Path, minimum = 1, description = "Category id")),
    request_body(content = crate::routes::admin_bodies::BindingBody),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The binding", body = Object),
        (status = 400, description = "Invalid id or JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 404, description = "No such category or attribute", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Invalid binding", body = crate::error::ErrorView)))]
pub async fn create_binding(
    _admin: Admin,
    path: web::Path<String>,
    body: web::Json<Json>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let category_id = parse_id(&path, storage::Resource::Category)?;
    put_binding(&state, category_id, draft(body.into_inner())?).await
}

/// `PUT /api/v2/admin/categories/{id}/attributes/{attribute_id}`
#[utoipa::path(put, path = "/api/v2/admin/categories/{id}/attributes/{attribute_id}", tag = "admin",
    params(("id" = i64, Path, minimum = 1, description = "Category id"), ("attribute_id" = i64, Path, minimum = 1, description = "Attribute id")),
    request_body(content = crate::routes::admin_bodies::BindingChangeBody),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The binding", body = Object),
        (status = 400, description = "Invalid id or JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 404, description = "No such category or attribute", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Invalid binding", body = crate::error::ErrorView)))]
pub async fn update_binding(
    _admin: Admin,
    path: web::Path<(String, String)>,
    body: web::Json<Json>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let category_id = parse_id(&path.0, storage::Resource::Category)?;
    let attribute_id = parse_id(&path.1, storage::Resource::Attribute)?;
    let Json::Object(mut fields) = body.into_inner() else {
        return Err(ApiError::ExpectedObject);
    };
    fields.insert("attribute_id".into(), Json::from(attribute_id));
    put_binding(&state, category_id, draft(Json::Object(fields))?).await
}

async fn put_binding(
    state: &AppState,
    category_id: i64,
    draft: BindingDraft,
) -> Result<HttpResponse, ApiError> {
    let written = state
        .storage
        .put_binding(category_id, draft, state.flags().write_mode())
        .await?;
    state.invalidate(&written.invalidations).await;
    Ok(HttpResponse::Ok().json(Envelope::new(written.data)))
}

/// `DELETE /api/v2/admin/categories/{id}/attributes/{attribute_id}`
#[utoipa::path(delete, path = "/api/v2/admin/categories/{id}/attributes/{attribute_id}", tag = "admin",
    params(("id" = i64, Path, minimum = 1, description = "Category id"), ("attribute_id" = i64, Path, minimum = 1, description = "Attribute id")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Unbound"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 401, description = "No valid admin token", body = crate::error::ErrorView),
        (status = 404, description = "No such binding", body = crate::error::ErrorView)))]
pub async fn delete_binding(
    _admin: Admin,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let category_id = parse_id(&path.0, storage::Resource::Category)?;
    let attribute_id = parse_id(&path.1, storage::Resource::Attribute)?;
    let written = state
        .storage
        .delete_binding(category_id, attribute_id, state.flags().write_mode())
        .await?;
    state.invalidate(&written.invalidations).await;
    Ok(HttpResponse::NoContent().finish())
}
