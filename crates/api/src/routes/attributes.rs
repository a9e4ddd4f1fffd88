//! The attribute catalog: a filtered, paginated list and single definitions. The catalog of
//! each store is cached whole; filters and pages are cut from it in memory.

use actix_web::{HttpRequest, HttpResponse, web};
use domain::{Attribute, AttributeType, Purpose};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::ApiError;
use crate::http_cache::{Freshness, cached, respond};
use crate::routes::{Envelope, ReadContext, to_bytes};
use crate::views::AttributeView;

const MAX_PER_PAGE: usize = 200;
/// Far past any catalog; bounded so that the document can say what is accepted.
const MAX_PAGE: usize = 1_000_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `regular`, `variant` or `both`.
    #[param(value_type = Option<crate::routes::admin_bodies::PurposeName>)]
    purpose: Option<String>,
    /// One of the nine attribute types.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<crate::routes::admin_bodies::AttributeTypeName>)]
    attribute_type: Option<String>,
    filterable: Option<bool>,
    searchable: Option<bool>,
    /// Matches code and labels, case-insensitively.
    q: Option<String>,
    /// From 1 to 1,000,000.
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<usize>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    per_page: Option<usize>,
    /// sr, en or ru. (Read from the raw query by `routes::language`; declared so that it is
    /// accepted and documented.)
    #[allow(dead_code)]
    lang: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttributePage {
    items: Vec<AttributeView>,
    page: usize,
    per_page: usize,
    total: usize,
}

/// `GET /api/v2/attributes`
#[utoipa::path(get, path = "/api/v2/attributes", tag = "attributes", params(ListQuery),
    responses(
        (status = 200, description = "One page of matching attributes", body = inline(AttributePageEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid filter", body = crate::error::ErrorView)))]
pub async fn list(
    request: HttpRequest,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let purpose = query
        .purpose
        .as_deref()
        .map(str::parse::<Purpose>)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let attribute_type = query
        .attribute_type
        .as_deref()
        .map(str::parse::<AttributeType>)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let page = query.page.unwrap_or(1);
    let per_page = query.per_page.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&page) || !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(ApiError::InvalidQuery(format!(
            "page is 1 to {MAX_PAGE}; per_page is 1 to {MAX_PER_PAGE}"
        )));
    }
    let context = ReadContext::of(&request, &state.flags());
    let catalog = state.catalog(context.route).await?;
    let needle = query.q.as_deref().map(str::to_lowercase);
    let matches = |a: &&Attribute| {
        purpose.is_none_or(|p| a.purpose == p)
            && attribute_type.is_none_or(|t| a.attribute_type == t)
            && query.filterable.is_none_or(|f| a.is_filterable == f)
            && query.searchable.is_none_or(|s| a.is_searchable == s)
            && needle.as_deref().is_none_or(|n| {
                a.code.contains(n)
                    || a.display_name
                        .iter()
                        .any(|(_, label)| label.to_lowercase().contains(n))
            })
    };
    let matching: Vec<&Attribute> = catalog.iter().filter(matches).collect();
    let items = matching
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|a| AttributeView::of(a, context.language))
        .collect();
    let body = to_bytes(&Envelope::new(AttributePage {
        items,
        page,
        per_page,
        total: matching.len(),
    }));
    state.metrics.read_served(context.store().into());
    Ok(respond(
        &request,
        &cached(body, context.store().into()),
        Freshness::Schema,
    ))
}

/// `GET /api/v2/attributes/{id-or-code}`
#[utoipa::path(get, path = "/api/v2/attributes/{id_or_code}", tag = "attributes",
    params(("id_or_code" = String, Path, description = "Numeric id or code such as `year`")),
    responses(
        (status = 200, description = "The attribute", body = inline(AttributeEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such attribute", body = crate::error::ErrorView)))]
pub async fn one(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let context = ReadContext::of(&request, &state.flags());
    let catalog = state.catalog(context.route).await?;
    let wanted = path.into_inner();
    let id = wanted.parse::<i64>().ok();
    let attribute = catalog
        .iter()
        .find(|a| Some(a.id) == id || a.code == wanted)
        .ok_or(ApiError::NotFound {
            what: storage::Resource::Attribute,
            id: id.unwrap_or(0),
        })?;
    let body = to_bytes(&Envelope::new(AttributeView::of(
        attribute,
        context.language,
    )));
    state.metrics.read_served(context.store().into());
    Ok(respond(
        &request,
        &cached(body, context.store().into()),
        Freshness::Schema,
    ))
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AttributePageEnvelope {
    success: bool,
    data: AttributePage,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AttributeEnvelope {
    success: bool,
    data: AttributeView,
}
