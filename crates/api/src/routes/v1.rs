//! The v1 reads the existing frontend still calls, in the legacy response shape (the columns
//! of `category_attributes`), answered from whichever store the flags select.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use cache::View;
use domain::{EffectiveSchema, Language};
use serde::Serialize;
use serde_json::Value as Json;

use crate::AppState;
use crate::routes::{categories, to_bytes};

/// One attribute as the v1 endpoint returned it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct V1Attribute {
    id: i64,
    /// The machine name (the unified code).
    name: String,
    display_name: String,
    attribute_type: String,
    /// `[{"label", "value"}]`.
    #[schema(value_type = Vec<Object>)]
    options: Json,
    #[schema(value_type = Object)]
    validation_rules: Json,
    is_searchable: bool,
    is_filterable: bool,
    is_required: bool,
    sort_order: i32,
    custom_component: Option<String>,
    show_in_card: bool,
    show_in_list: bool,
    icon: Option<String>,
}

fn v1_attributes(schema: &EffectiveSchema, language: Language) -> Vec<V1Attribute> {
    schema
        .attributes
        .iter()
        .map(|effective| {
            let attribute = &effective.attribute;
            V1Attribute {
                id: attribute.id,
                name: attribute.code.clone(),
                display_name: attribute.display_name.get(language).unwrap_or(&attribute.code).to_owned(),
                attribute_type: attribute.attribute_type.as_str().to_owned(),
                options: Json::Array(
                    effective
                        .options
                        .iter()
                        .map(|o| serde_json::json!({"label": o.label.get(language).unwrap_or(&o.value), "value": o.value}))
                        .collect(),
                ),
                validation_rules: serde_json::to_value(&attribute.rules).unwrap_or(Json::Null),
                is_searchable: effective.is_searchable,
                is_filterable: effective.is_filterable,
                is_required: effective.is_required,
                sort_order: effective.sort_order,
                custom_component: effective.custom_component.clone(),
                show_in_card: effective.show_in_card,
                show_in_list: effective.show_in_list,
                icon: attribute.ui.icon.clone(),
            }
        })
        .collect()
}

/// `GET /api/v1/marketplace/categories/{id}/attributes`
#[utoipa::path(get, path = "/api/v1/marketplace/categories/{id}/attributes", tag = "v1", operation_id = "v1_category_attributes",
    params(("id" = i64, Path, minimum = 1, description = "Category id"), ("lang" = Option<String>, Query, description = "sr, en or ru")),
    responses(
        (status = 200, description = "The category's attributes, inherited ones included, in the v1 shape", body = inline(V1AttributesEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 404, description = "No such category", body = crate::error::ErrorView)))]
pub async fn attributes(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    categories::schema_view(
        &request,
        &state,
        &path,
        View::V1Attributes,
        |schema, context, _| to_bytes(&v1_attributes(schema, context.language)),
    )
    .await
}

/// `GET /api/v1/marketplace/categories/{id}/attribute-ranges`: `{name: {min, max, count}}`.
#[utoipa::path(get, path = "/api/v1/marketplace/categories/{id}/attribute-ranges", tag = "v1", operation_id = "v1_category_ranges",
    params(("id" = i64, Path, minimum = 1, description = "Category id")),
    responses(
        (status = 200, description = "Ranges keyed by attribute name", body = Object),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 404, description = "No such category", body = crate::error::ErrorView)))]
pub async fn ranges(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    categories::ranges_view(&request, &state, &path, View::V1Ranges, |ranges| {
        let by_name: BTreeMap<&str, Json> = ranges
            .iter()
            .map(|r| {
                (
                    r.code.as_str(),
                    serde_json::json!({"min": r.min, "max": r.max, "count": r.count}),
                )
            })
            .collect();
        to_bytes(&by_name)
    })
    .await
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct V1AttributesEnvelope {
    success: bool,
    data: Vec<V1Attribute>,
}
