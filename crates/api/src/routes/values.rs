//! Entity values: read (single and batch, cached per entity and store), replace (`PUT`) and
//! merge (`PATCH`), validated against the effective schema of the entity's category.

use actix_web::{HttpRequest, HttpResponse, web};
use cache::{ResponseKey, Scope, View};
use domain::{EntityKind, EntityRef};
use serde::Deserialize;
use serde_json::Value as Json;
use storage::{StorageError, ValuesChange};

use crate::AppState;
use crate::auth::ValueWriter;
use crate::error::ApiError;
use crate::http_cache::{Freshness, cached, envelope, respond};
use crate::routes::{Envelope, ReadContext, parse_id, refuse_nul_characters};
use crate::views::{EntityValuesBody, EntityValuesView};

/// Most listings one batch read may ask for (a results page shows 20–50).
pub const MAX_BATCH: usize = 100;

fn key(entity: EntityRef, context: &ReadContext) -> ResponseKey {
    ResponseKey {
        scope: Scope::Entity(entity.kind, entity.id),
        view: View::Values,
        store: context.store(),
        language: None,
    }
}

/// `GET /api/v2/marketplace/{listings|products|variants}/{id}/attributes`
#[utoipa::path(get, path = "/api/v2/marketplace/listings/{id}/attributes", tag = "values",
    params(("id" = i64, Path, minimum = 1, description = "Listing id; products and variants have the same routes")),
    responses(
        (status = 200, description = "The entity's values", body = inline(ValuesEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 404, description = "No such entity", body = crate::error::ErrorView)))]
pub async fn get(
    request: HttpRequest,
    kind: web::Data<EntityKind>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let entity = EntityRef {
        kind: **kind,
        id: parse_id(&path, (**kind).into())?,
    };
    let context = ReadContext::of(&request, &state.flags());
    if crate::shadow::sampled(&state) {
        crate::shadow::compare_entity(&state, entity);
    }
    let (fragment, _) = state
        .caches
        .response(key(entity, &context), || async {
            let mut read = state.storage.entity_values(entity, context.route).await?;
            if read.served_by != storage::ServedBy::Unified {
                state.canonical_legacy_values(&mut read.data).await?;
            }
            Ok::<_, ApiError>(cached(
                EntityValuesBody::of(entity, &read.data).to_bytes(),
                read.served_by,
            ))
        })
        .await
        .map_err(ApiError::Shared)?;
    state.metrics.read_served(fragment.served_by);
    let response = cache::CachedResponse {
        body: envelope(&fragment.body),
        ..fragment
    };
    Ok(respond(&request, &response, Freshness::Values))
}

/// `PUT …/{id}/attributes`: the body is the full new set `{code: value}`.
#[utoipa::path(put, path = "/api/v2/marketplace/listings/{id}/attributes", tag = "values",
    params(("id" = i64, Path, minimum = 1, description = "Listing id; products and variants have the same routes")),
    request_body(content = crate::routes::admin_bodies::ValuesBody, description = "`{code: value}` or `{code: {\"value\": …, \"unit\": \"km\"}}`"),
    security(("writer_token" = []), ("user_token" = [])),
    responses(
        (status = 200, description = "The stored values", body = inline(ValuesEnvelope)),
        (status = 400, description = "Invalid id or JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid writer or user token", body = crate::error::ErrorView),
        (status = 403, description = "A user writing what is not theirs", body = crate::error::ErrorView),
        (status = 404, description = "No such entity", body = crate::error::ErrorView),
        (status = 413, description = "Body too large", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Refused values, one reason per field", body = crate::error::ErrorView)))]
pub async fn put(
    writer: ValueWriter,
    kind: web::Data<EntityKind>,
    path: web::Path<String>,
    body: web::Json<Json>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    write(writer, **kind, &path, body.into_inner(), &state, false).await
}

/// `POST …/{id}/attributes`: as `PUT` — the legacy backend accepted both, and its frontend
/// still sends POST.
#[utoipa::path(post, path = "/api/v2/marketplace/listings/{id}/attributes", tag = "values",
    params(("id" = i64, Path, minimum = 1, description = "Listing id; products and variants have the same routes")),
    request_body(content = crate::routes::admin_bodies::ValuesBody, description = "`{code: value}`: the full new set, as with PUT"),
    security(("writer_token" = []), ("user_token" = [])),
    responses(
        (status = 200, description = "The stored values", body = inline(ValuesEnvelope)),
        (status = 400, description = "Invalid id or JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid writer or user token", body = crate::error::ErrorView),
        (status = 403, description = "A user writing what is not theirs", body = crate::error::ErrorView),
        (status = 404, description = "No such entity", body = crate::error::ErrorView),
        (status = 413, description = "Body too large", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Refused values, one reason per field", body = crate::error::ErrorView)))]
pub async fn post(
    writer: ValueWriter,
    kind: web::Data<EntityKind>,
    path: web::Path<String>,
    body: web::Json<Json>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    write(writer, **kind, &path, body.into_inner(), &state, false).await
}

/// `PATCH …/{id}/attributes`: merges the body in; `null` removes a value.
#[utoipa::path(patch, path = "/api/v2/marketplace/listings/{id}/attributes", tag = "values",
    params(("id" = i64, Path, minimum = 1, description = "Listing id; products and variants have the same routes")),
    request_body(content = crate::routes::admin_bodies::ValuesPatch, description = "`{code: value}`; `{code: null}` removes the value"),
    security(("writer_token" = []), ("user_token" = [])),
    responses(
        (status = 200, description = "The stored values after the merge", body = inline(ValuesEnvelope)),
        (status = 400, description = "Invalid id or JSON", body = crate::error::ErrorView),
        (status = 401, description = "No valid writer or user token", body = crate::error::ErrorView),
        (status = 403, description = "A user writing what is not theirs", body = crate::error::ErrorView),
        (status = 404, description = "No such entity", body = crate::error::ErrorView),
        (status = 413, description = "Body too large", body = crate::error::ErrorView),
        (status = 415, description = "Not JSON", body = crate::error::ErrorView),
        (status = 422, description = "Refused values, one reason per field", body = crate::error::ErrorView)))]
pub async fn patch(
    writer: ValueWriter,
    kind: web::Data<EntityKind>,
    path: web::Path<String>,
    body: web::Json<Json>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    write(writer, **kind, &path, body.into_inner(), &state, true).await
}

async fn write(
    ValueWriter(writer): ValueWriter,
    kind: EntityKind,
    raw_id: &str,
    body: Json,
    state: &AppState,
    merge: bool,
) -> Result<HttpResponse, ApiError> {
    let entity = EntityRef {
        kind,
        id: parse_id(raw_id, kind.into())?,
    };
    refuse_nul_characters(&body)?;
    let Json::Object(input) = body else {
        return Err(ApiError::ExpectedObject);
    };
    let change = if merge {
        ValuesChange::Merge(&input)
    } else {
        ValuesChange::Replace(&input)
    };
    let mode = state.flags().write_mode();
    let written = state
        .storage
        .write_values_as(entity, change, mode, writer)
        .await;
    state.metrics.write(
        mode,
        match &written {
            Ok(_) => "committed",
            Err(StorageError::InvalidValues(_) | StorageError::NotFound { .. }) => "refused",
            Err(_) => "failed",
        },
    );
    let written = written?;
    state.invalidate(&written.invalidations).await;
    Ok(HttpResponse::Ok().json(Envelope::new(EntityValuesView::of(entity, &written.data))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct BatchQuery {
    /// Comma-separated listing ids, at most 100.
    #[param(
        pattern = r"^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){0,99}$",
        example = "1,2,3"
    )]
    ids: String,
}

/// `GET /api/v2/marketplace/listings/attributes?ids=1,2,3`: the values of many listings.
/// Cached listings cost no query; the others are read in one statement.
#[utoipa::path(get, path = "/api/v2/marketplace/listings/attributes", tag = "values", params(BatchQuery),
    responses(
        (status = 200, description = "Values per listing, and the ids that do not exist", body = inline(BatchEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Missing or invalid ids", body = crate::error::ErrorView)))]
pub async fn batch(
    request: HttpRequest,
    query: web::Query<BatchQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let too_many = || {
        ApiError::InvalidQuery(format!(
            "ids must list 1 to {MAX_BATCH} listing ids, comma-separated"
        ))
    };
    // Bounded while parsing: a list of thousands is refused at its 101st id, not after it was
    // all parsed and de-duplicated.
    let mut ids: Vec<i64> = Vec::new();
    for (position, raw) in query
        .ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        if position >= 2 * MAX_BATCH {
            return Err(too_many());
        }
        let id = parse_id(raw, storage::Resource::Listing)?;
        if !ids.contains(&id) {
            if ids.len() == MAX_BATCH {
                return Err(too_many());
            }
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(too_many());
    }
    let context = ReadContext::of(&request, &state.flags());
    let mut fragments: Vec<Option<bytes::Bytes>> = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    let mut served_by = storage::ServedBy::from(context.store());
    for &id in &ids {
        let cached_fragment = state
            .caches
            .cached(&key(EntityRef::listing(id), &context))
            .await;
        if cached_fragment.is_none() {
            missing.push((
                id,
                state
                    .caches
                    .generation(&Scope::Entity(EntityKind::Listing, id)),
            ));
        }
        fragments.push(cached_fragment.map(|c| c.body));
    }
    let mut not_found = Vec::new();
    if !missing.is_empty() {
        let missing_ids: Vec<i64> = missing.iter().map(|(id, _)| *id).collect();
        let mut read = state
            .storage
            .listing_values_batch(&missing_ids, context.route)
            .await?;
        if read.served_by != storage::ServedBy::Unified {
            for values in read.data.values_mut() {
                state.canonical_legacy_values(values).await?;
            }
        }
        served_by = read.served_by;
        for (id, generation) in missing {
            let entity = EntityRef::listing(id);
            let Some(values) = read.data.get(&id) else {
                not_found.push(id);
                continue;
            };
            let fragment = EntityValuesBody::of(entity, values).to_bytes();
            state
                .caches
                .store_response(
                    key(entity, &context),
                    cached(fragment.clone(), read.served_by),
                    generation,
                )
                .await;
            if let Some(slot) = ids.iter().position(|i| *i == id) {
                fragments[slot] = Some(fragment);
            }
        }
    }
    state.metrics.read_served(served_by);
    let mut data = Vec::with_capacity(
        fragments
            .iter()
            .flatten()
            .map(|f| f.len() + 1)
            .sum::<usize>()
            + 64,
    );
    data.extend_from_slice(br#"{"items":["#);
    for (index, fragment) in fragments.iter().flatten().enumerate() {
        if index > 0 {
            data.push(b',');
        }
        data.extend_from_slice(fragment);
    }
    data.extend_from_slice(br#"],"not_found":"#);
    data.extend_from_slice(&serde_json::to_vec(&not_found).unwrap_or_default());
    data.push(b'}');
    let body = envelope(&data);
    let response = crate::http_cache::cached(body, served_by);
    Ok(respond(&request, &response, Freshness::Values))
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ValuesEnvelope {
    success: bool,
    data: EntityValuesView,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BatchData {
    items: Vec<EntityValuesView>,
    not_found: Vec<i64>,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BatchEnvelope {
    success: bool,
    data: BatchData,
}
