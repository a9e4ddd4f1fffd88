//! An entity's attribute values: read, and replace after validation against the effective
//! schema of its category.

use actix_web::{HttpRequest, HttpResponse, web};
use domain::{EntityRef, EntityValues};
use serde::Serialize;
use serde_json::Value as Json;
use storage::ReadRoute;

use crate::AppState;
use crate::auth::require_token;
use crate::error::ApiError;
use crate::routes::{Envelope, SOURCE_HEADER, parse_id, rollout_key};

#[derive(Serialize)]
struct ValueView<'a> {
    code: &'a str,
    value: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
}

#[derive(Serialize)]
struct ValuesView<'a> {
    listing_id: i64,
    values: Vec<ValueView<'a>>,
}

fn view(listing_id: i64, values: &EntityValues) -> ValuesView<'_> {
    ValuesView {
        listing_id,
        values: values
            .iter()
            .map(|(code, typed)| ValueView {
                code,
                value: typed.value.to_json(),
                unit: typed.unit.as_deref(),
            })
            .collect(),
    }
}

/// `GET /api/v2/marketplace/listings/{id}/attributes`
pub async fn get_listing(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let listing_id = parse_id(&path, "listing")?;
    let flags = state.flags;
    let route = ReadRoute::new(flags.read_store(&rollout_key(&request)), flags.fallback);
    let read = state
        .storage
        .entity_values(EntityRef::listing(listing_id), route)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((SOURCE_HEADER, read.served_by.as_str()))
        .json(Envelope::new(view(listing_id, &read.data))))
}

/// `PUT /api/v2/marketplace/listings/{id}/attributes` — replaces all values of the listing
/// with the body's `{code: value}`; writer token required.
pub async fn put_listing(
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Json>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state.writer_tokens)?;
    let listing_id = parse_id(&path, "listing")?;
    let Json::Object(input) = body.into_inner() else {
        return Err(ApiError::ExpectedObject);
    };
    let values = state
        .storage
        .replace_values(
            EntityRef::listing(listing_id),
            &input,
            state.flags.write_mode(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(Envelope::new(view(listing_id, &values))))
}
