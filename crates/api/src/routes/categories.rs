//! Category reads: the effective schema (plain and detailed), variant attributes, and value
//! ranges. Answers are cached pre-serialized per category, store and language.

use actix_web::{HttpRequest, HttpResponse, web};
use cache::{ResponseKey, Scope, View};
use domain::{Attribute, EffectiveSchema, Purpose};

use crate::AppState;
use crate::error::ApiError;
use crate::http_cache::{Freshness, cached, envelope, respond};
use crate::routes::{ReadContext, parse_id, to_bytes};
use crate::views::{AttributeView, CategoryAttributeView, DetailedBindingView, RangeView};

/// Loads (once for concurrent misses) and answers one cached view of a category.
pub(crate) async fn schema_view(
    request: &HttpRequest,
    state: &AppState,
    category_id: i64,
    view: View,
    render: fn(&EffectiveSchema, &ReadContext, &[Attribute]) -> bytes::Bytes,
) -> Result<HttpResponse, actix_web::Error> {
    let context = ReadContext::of(request, &state.flags());
    let key = ResponseKey {
        scope: Scope::Category(category_id),
        view,
        store: context.store(),
        language: Some(context.language),
    };
    let (response, _) = state
        .caches
        .response(key, || async {
            let read = state
                .storage
                .category_schema(category_id, context.route)
                .await?;
            let catalog = if matches!(view, View::VariantAttributes | View::V1VariantAttributes) {
                state.catalog(context.route).await?
            } else {
                Default::default()
            };
            let body = envelope(&render(&read.data, &context, &catalog));
            Ok::<_, ApiError>(cached(body, read.served_by))
        })
        .await
        .map_err(ApiError::Shared)?;
    state.metrics.read_served(response.served_by);
    Ok(respond(request, &response, Freshness::Schema))
}

/// `GET /api/v2/marketplace/categories/{id}/attributes`
#[utoipa::path(get, path = "/api/v2/marketplace/categories/{id}/attributes", tag = "categories", operation_id = "category_attributes",
    params(("id" = i64, Path, minimum = 1, description = "Category id"), ("lang" = Option<String>, Query, description = "sr, en or ru")),
    responses(
        (status = 200, description = "The effective schema: own and inherited bindings, overrides applied, ordered", body = inline(CategoryAttributesEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 404, description = "No such category", body = crate::error::ErrorView)))]
pub async fn attributes(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    schema_view(
        &request,
        &state,
        parse_id(&path, storage::Resource::Category)?,
        View::Attributes,
        |schema, context, _| {
            let views: Vec<_> = schema
                .attributes
                .iter()
                .map(|a| CategoryAttributeView::of(a, context.language))
                .collect();
            to_bytes(&views)
        },
    )
    .await
}

/// `GET /api/v2/marketplace/categories/{id}/attributes/detailed`
#[utoipa::path(get, path = "/api/v2/marketplace/categories/{id}/attributes/detailed", tag = "categories",
    params(("id" = i64, Path, minimum = 1, description = "Category id"), ("lang" = Option<String>, Query, description = "sr, en or ru")),
    responses(
        (status = 200, description = "Each applying binding with its full attribute", body = inline(DetailedEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 404, description = "No such category", body = crate::error::ErrorView)))]
pub async fn detailed(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    schema_view(
        &request,
        &state,
        parse_id(&path, storage::Resource::Category)?,
        View::DetailedAttributes,
        |schema, context, _| {
            let views: Vec<_> = schema
                .attributes
                .iter()
                .map(|a| DetailedBindingView::of(schema.category_id, a, context.language))
                .collect();
            to_bytes(&views)
        },
    )
    .await
}

/// `GET /api/v2/marketplace/categories/{id}/variant-attributes`: the variant-capable
/// attributes of the category's schema, then the variant axes every category has.
#[utoipa::path(get, path = "/api/v2/marketplace/categories/{id}/variant-attributes", tag = "categories",
    params(("id" = i64, Path, minimum = 1, description = "Category id"), ("lang" = Option<String>, Query, description = "sr, en or ru")),
    responses(
        (status = 200, description = "Attributes that can define product variants here", body = inline(AttributeListEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 404, description = "No such category", body = crate::error::ErrorView)))]
pub async fn variant_attributes(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    schema_view(
        &request,
        &state,
        parse_id(&path, storage::Resource::Category)?,
        View::VariantAttributes,
        |schema, context, catalog| {
            let views: Vec<_> = variant_capable(schema, catalog)
                .map(|a| AttributeView::of(a, context.language))
                .collect();
            to_bytes(&views)
        },
    )
    .await
}

/// The attributes that can define product variants in a category: the variant-capable ones
/// of its schema, then the variant axes of the catalog (they apply to every category).
pub(crate) fn variant_capable<'a>(
    schema: &'a EffectiveSchema,
    catalog: &'a [Attribute],
) -> impl Iterator<Item = &'a Attribute> {
    let bound = schema
        .attributes
        .iter()
        .map(|a| &a.attribute)
        .filter(|a| a.purpose != Purpose::Regular || a.is_variant_compatible);
    let mut axes: Vec<&Attribute> = catalog
        .iter()
        .filter(|a| a.purpose == Purpose::Variant && a.is_active && schema.get(&a.code).is_none())
        .collect();
    axes.sort_by(|a, b| (a.sort_order, &a.code).cmp(&(b.sort_order, &b.code)));
    bound.chain(axes)
}

/// `GET /api/v2/marketplace/categories/{id}/attribute-ranges`
#[utoipa::path(get, path = "/api/v2/marketplace/categories/{id}/attribute-ranges", tag = "categories", operation_id = "category_ranges",
    params(("id" = i64, Path, minimum = 1, description = "Category id")),
    responses(
        (status = 200, description = "min, max and count of each number attribute over the subtree's listings", body = inline(RangesEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 404, description = "No such category", body = crate::error::ErrorView)))]
pub async fn ranges(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let category_id = parse_id(&path, storage::Resource::Category)?;
    ranges_view(&request, &state, category_id, View::Ranges, |ranges, _| {
        to_bytes(&ranges.iter().map(RangeView::of).collect::<Vec<_>>())
    })
    .await
}

/// Loads and answers one cached view of a category's value ranges; the v1 view also reads
/// the category's schema (its defaults are for the attributes the category binds).
pub(crate) async fn ranges_view(
    request: &HttpRequest,
    state: &AppState,
    category_id: i64,
    view: View,
    render: fn(&[storage::AttributeRange], &EffectiveSchema) -> bytes::Bytes,
) -> Result<HttpResponse, actix_web::Error> {
    let context = ReadContext::of(request, &state.flags());
    let key = ResponseKey {
        scope: Scope::Ranges(category_id),
        view,
        store: context.store(),
        language: None,
    };
    let (response, _) = state
        .caches
        .response(key, || async {
            let read = state.storage.ranges(category_id, context.route).await?;
            let schema = if view == View::V1Ranges {
                state
                    .storage
                    .category_schema(category_id, context.route)
                    .await?
                    .data
            } else {
                EffectiveSchema {
                    category_id,
                    attributes: Vec::new(),
                }
            };
            Ok::<_, ApiError>(cached(
                envelope(&render(&read.data, &schema)),
                read.served_by,
            ))
        })
        .await
        .map_err(ApiError::Shared)?;
    state.metrics.read_served(response.served_by);
    Ok(respond(request, &response, Freshness::Values))
}

// Envelope schemas for the OpenAPI document.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CategoryAttributesEnvelope {
    success: bool,
    data: Vec<CategoryAttributeView>,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DetailedEnvelope {
    success: bool,
    data: Vec<DetailedBindingView>,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AttributeListEnvelope {
    success: bool,
    data: Vec<AttributeView>,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RangesEnvelope {
    success: bool,
    data: Vec<RangeView>,
}
