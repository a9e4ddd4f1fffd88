//! The effective attribute schema of a category, as category forms and filters need it.

use actix_web::{HttpRequest, HttpResponse, web};
use domain::{EffectiveAttribute, Language};
use serde::Serialize;
use serde_json::Value as Json;
use storage::ReadRoute;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::{Envelope, SOURCE_HEADER, language, parse_id, rollout_key};

#[derive(Serialize)]
struct OptionView<'a> {
    value: &'a str,
    label: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    color_hex: Option<&'a str>,
}

/// One attribute as it applies in the category, labels in the requested language.
#[derive(Serialize)]
struct AttributeView<'a> {
    id: i64,
    code: &'a str,
    name: &'a str,
    display_name: &'a str,
    #[serde(rename = "type")]
    attribute_type: &'static str,
    purpose: &'static str,
    options: Vec<OptionView<'a>>,
    validation_rules: Json,
    is_required: bool,
    is_filterable: bool,
    is_searchable: bool,
    show_in_card: bool,
    show_in_list: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_component: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon: Option<&'a str>,
    sort_order: i32,
    /// The category whose binding applies (this one or an ancestor).
    bound_on: i64,
    inherited: bool,
}

fn view(effective: &EffectiveAttribute, lang: Language) -> AttributeView<'_> {
    let attribute = &effective.attribute;
    AttributeView {
        id: attribute.id,
        code: &attribute.code,
        name: attribute.name.get(lang).unwrap_or(&attribute.code),
        display_name: attribute.display_name.get(lang).unwrap_or(&attribute.code),
        attribute_type: attribute.attribute_type.as_str(),
        purpose: attribute.purpose.as_str(),
        options: effective
            .options
            .iter()
            .map(|o| OptionView {
                value: &o.value,
                label: o.label.get(lang).unwrap_or(&o.value),
                color_hex: o.color_hex.as_deref(),
            })
            .collect(),
        validation_rules: serde_json::to_value(&attribute.rules).unwrap_or(Json::Null),
        is_required: effective.is_required,
        is_filterable: effective.is_filterable,
        is_searchable: effective.is_searchable,
        show_in_card: effective.show_in_card,
        show_in_list: effective.show_in_list,
        custom_component: effective.custom_component.as_deref(),
        icon: attribute.ui.icon.as_deref(),
        sort_order: effective.sort_order,
        bound_on: effective.bound_on,
        inherited: effective.inherited,
    }
}

/// `GET /api/v2/marketplace/categories/{id}/attributes`
pub async fn attributes(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let category_id = parse_id(&path, "category")?;
    let flags = state.flags;
    let route = ReadRoute::new(flags.read_store(&rollout_key(&request)), flags.fallback);
    let read = state.storage.category_schema(category_id, route).await?;
    let lang = language(&request);
    let attributes: Vec<_> = read.data.attributes.iter().map(|a| view(a, lang)).collect();
    Ok(HttpResponse::Ok()
        .insert_header((SOURCE_HEADER, read.served_by.as_str()))
        .json(Envelope::new(attributes)))
}
