//! The v1 reads the existing frontend still calls, in the legacy backend's shapes — its
//! `CategoryAttribute` (20 fields), attribute ranges, `ProductVariantAttribute` and
//! `ListingAttributeValue` models — answered from whichever store the flags select.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use cache::{ResponseKey, Scope, View};
use chrono::{DateTime, Datelike, Utc};
use domain::{
    Attribute, AttributeOption, EffectiveSchema, EntityKind, EntityRef, EntityValues, Language,
    Value,
};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value as Json;

use crate::AppState;
use crate::error::ApiError;
use crate::http_cache::{Freshness, cached, envelope, respond};
use crate::routes::categories::{self, variant_capable};
use crate::routes::{ReadContext, parse_id, to_bytes};
use crate::views::{label, option_translations, translations};

type OptionTranslations = BTreeMap<String, BTreeMap<String, String>>;

/// One option as the legacy `options` column listed it: `{"label", "value"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct V1Option {
    label: String,
    value: String,
}

fn v1_options(options: &[AttributeOption], language: Language) -> Vec<V1Option> {
    options
        .iter()
        .map(|o| V1Option {
            label: label(&o.label, language, &o.value),
            value: o.value.clone(),
        })
        .collect()
}

/// One attribute of a category, as the legacy `CategoryAttribute` model: its 20 fields, in
/// its order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct V1Attribute {
    id: i64,
    /// The machine name (the unified code).
    name: String,
    /// In the requested language.
    display_name: String,
    #[schema(value_type = crate::routes::admin_bodies::AttributeTypeName)]
    attribute_type: String,
    icon: Option<String>,
    /// The options with the labels the legacy column holds (Serbian).
    options: Vec<V1Option>,
    #[schema(value_type = crate::routes::admin_bodies::RulesBody)]
    validation_rules: Json,
    is_searchable: bool,
    is_filterable: bool,
    is_required: bool,
    show_in_card: bool,
    show_in_list: bool,
    sort_order: i32,
    #[schema(value_type = Option<String>, format = DateTime)]
    created_at: Option<DateTime<Utc>>,
    /// The display name in every language: `{"en": "Year", …}`.
    translations: BTreeMap<String, String>,
    /// The option labels per language, then option value: `{"en": {"used": "Used"}}`.
    option_translations: OptionTranslations,
    /// The options with their labels in the requested language.
    translated_options: Vec<V1Option>,
    custom_component: Option<String>,
    is_variant_compatible: bool,
    affects_stock: bool,
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
                display_name: label(&attribute.display_name, language, &attribute.code),
                attribute_type: attribute.attribute_type.as_str().to_owned(),
                icon: attribute.ui.icon.clone(),
                options: v1_options(&effective.options, Language::Sr),
                validation_rules: serde_json::to_value(&attribute.rules).unwrap_or(Json::Null),
                is_searchable: effective.is_searchable,
                is_filterable: effective.is_filterable,
                is_required: effective.is_required,
                show_in_card: effective.show_in_card,
                show_in_list: effective.show_in_list,
                sort_order: effective.sort_order,
                created_at: attribute.created_at,
                translations: translations(&attribute.display_name),
                option_translations: option_translations(&effective.options),
                translated_options: v1_options(&effective.options, language),
                custom_component: effective.custom_component.clone(),
                is_variant_compatible: attribute.is_variant_compatible,
                affects_stock: attribute.affects_stock,
            }
        })
        .collect()
}

/// `GET /api/v1/marketplace/categories/{id}/attributes`
#[utoipa::path(get, path = "/api/v1/marketplace/categories/{id}/attributes", tag = "v1", operation_id = "v1_category_attributes",
    params(("id" = i64, Path, minimum = 1, description = "Category id"), ("lang" = Option<String>, Query, description = "sr, en or ru")),
    responses(
        (status = 200, description = "The category's attributes, inherited ones included, in the legacy `CategoryAttribute` shape", body = inline(V1AttributesEnvelope)),
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
        parse_id(&path, storage::Resource::Category)?,
        View::V1Attributes,
        |schema, context, _| to_bytes(&v1_attributes(schema, context.language)),
    )
    .await
}

/// One entry of the v1 ranges.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct V1Range {
    #[schema(value_type = f64)]
    min: Decimal,
    #[schema(value_type = f64)]
    max: Decimal,
    /// The slider's step.
    #[schema(value_type = f64)]
    step: Decimal,
    /// Listings with a value; 0 for a default range.
    count: i64,
}

/// What the legacy backend answered for these attributes when a category had no listing with
/// a value, so that their range filters still draw: `(name, min, max, step)`. `None` as the
/// maximum of `year` is the current year.
const LEGACY_DEFAULT_RANGES: [(&str, i64, Option<i64>, Decimal); 9] = [
    ("year", 1950, None, Decimal::ONE),
    (
        "mileage",
        0,
        Some(500_000),
        Decimal::from_parts(1_000, 0, 0, false, 0),
    ),
    (
        "engine_capacity",
        0,
        Some(10_000),
        Decimal::from_parts(100, 0, 0, false, 0),
    ),
    ("power", 0, Some(1_000), Decimal::TEN),
    ("rooms", 1, Some(10), Decimal::from_parts(5, 0, 0, false, 1)),
    ("floor", -1, Some(50), Decimal::ONE),
    ("total_floors", 1, Some(50), Decimal::ONE),
    ("area", 10, Some(500), Decimal::ONE),
    ("land_area", 1, Some(10_000), Decimal::ONE),
];

/// The step of an attribute's range: the legacy one where it had one, else 1 for whole
/// numbers and 0.01 otherwise.
fn step(code: &str, min: Decimal, max: Decimal) -> Decimal {
    LEGACY_DEFAULT_RANGES
        .iter()
        .find(|(name, ..)| *name == code)
        .map(|(.., step)| *step)
        .unwrap_or(if min.fract().is_zero() && max.fract().is_zero() {
            Decimal::ONE
        } else {
            Decimal::new(1, 2)
        })
}

fn v1_ranges(
    ranges: &[storage::AttributeRange],
    schema: &EffectiveSchema,
) -> BTreeMap<String, V1Range> {
    let mut by_name: BTreeMap<String, V1Range> = ranges
        .iter()
        .map(|r| {
            let range = V1Range {
                min: r.min,
                max: r.max,
                step: step(&r.code, r.min, r.max),
                count: r.count,
            };
            (r.code.clone(), range)
        })
        .collect();
    for (name, min, max, step) in LEGACY_DEFAULT_RANGES {
        if schema.get(name).is_some() && !by_name.contains_key(name) {
            let max = max.unwrap_or_else(|| i64::from(Utc::now().year()));
            let range = V1Range {
                min: min.into(),
                max: max.into(),
                step,
                count: 0,
            };
            by_name.insert(name.to_owned(), range);
        }
    }
    by_name
}

/// `GET /api/v1/marketplace/categories/{id}/attribute-ranges`: `{name: {min, max, step, count}}`.
#[utoipa::path(get, path = "/api/v1/marketplace/categories/{id}/attribute-ranges", tag = "v1", operation_id = "v1_category_ranges",
    params(("id" = i64, Path, minimum = 1, description = "Category id")),
    responses(
        (status = 200, description = "Ranges keyed by attribute name, over the subtree's listings; the legacy defaults (count 0) for year, mileage, engine_capacity, power, rooms, floor, total_floors, area and land_area where the category binds them and no listing has a value", body = inline(V1RangesEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 404, description = "No such category", body = crate::error::ErrorView)))]
pub async fn ranges(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let category_id = parse_id(&path, storage::Resource::Category)?;
    categories::ranges_view(
        &request,
        &state,
        category_id,
        View::V1Ranges,
        |ranges, schema| to_bytes(&v1_ranges(ranges, schema)),
    )
    .await
}

/// One allowed value of a variant attribute, as the legacy option catalogue held it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct V1VariantValue {
    value: String,
    /// In the requested language.
    display_name: String,
    color_hex: Option<String>,
    image_url: Option<String>,
    sort_order: i32,
    is_active: bool,
}

/// A variant attribute, as the legacy `ProductVariantAttribute` model.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct V1VariantAttribute {
    id: i64,
    name: String,
    /// In the requested language.
    display_name: String,
    #[serde(rename = "type")]
    #[schema(value_type = crate::routes::admin_bodies::AttributeTypeName)]
    attribute_type: String,
    is_required: bool,
    sort_order: i32,
    affects_stock: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    created_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    updated_at: Option<DateTime<Utc>>,
    values: Vec<V1VariantValue>,
}

impl V1VariantAttribute {
    fn of(attribute: &Attribute, language: Language) -> Self {
        Self {
            id: attribute.id,
            name: attribute.code.clone(),
            display_name: label(&attribute.display_name, language, &attribute.code),
            attribute_type: attribute.attribute_type.as_str().to_owned(),
            is_required: attribute.is_required,
            sort_order: attribute.sort_order,
            affects_stock: attribute.affects_stock,
            created_at: attribute.created_at,
            updated_at: attribute.updated_at.or(attribute.created_at),
            values: attribute
                .options
                .iter()
                .zip(0..)
                .map(|(option, position)| V1VariantValue {
                    value: option.value.clone(),
                    display_name: label(&option.label, language, &option.value),
                    color_hex: option.color_hex.clone(),
                    image_url: option.image_url.clone(),
                    sort_order: position,
                    is_active: true,
                })
                .collect(),
        }
    }
}

/// `GET /api/v1/marketplace/product-variant-attributes`: every variant attribute.
#[utoipa::path(get, path = "/api/v1/marketplace/product-variant-attributes", tag = "v1", operation_id = "v1_product_variant_attributes",
    params(("lang" = Option<String>, Query, description = "sr, en or ru")),
    responses(
        (status = 200, description = "The variant axes and the attributes that are both (e.g. color), in the legacy `ProductVariantAttribute` shape", body = inline(V1VariantAttributesEnvelope)),
        (status = 304, description = "Not modified")))]
pub async fn product_variant_attributes(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let context = ReadContext::of(&request, &state.flags());
    let catalog = state.catalog(context.route).await?;
    let mut axes: Vec<&Attribute> = catalog
        .iter()
        .filter(|a| a.is_active && a.purpose != domain::Purpose::Regular)
        .collect();
    axes.sort_by(|a, b| (a.sort_order, &a.code).cmp(&(b.sort_order, &b.code)));
    let views: Vec<_> = axes
        .into_iter()
        .map(|a| V1VariantAttribute::of(a, context.language))
        .collect();
    // Built from the cached catalog on every request; the store name is the route's.
    let response = cached(envelope(&to_bytes(&views)), context.store().into());
    Ok(respond(&request, &response, Freshness::Schema))
}

/// `GET /api/v1/marketplace/categories/{slug}/variant-attributes`
#[utoipa::path(get, path = "/api/v1/marketplace/categories/{slug}/variant-attributes", tag = "v1", operation_id = "v1_category_variant_attributes",
    params(("slug" = String, Path, description = "Category slug (an id is accepted too)"), ("lang" = Option<String>, Query, description = "sr, en or ru")),
    responses(
        (status = 200, description = "The attributes that can define product variants in the category, in the legacy `ProductVariantAttribute` shape", body = inline(V1VariantAttributesEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such category", body = crate::error::ErrorView)))]
pub async fn category_variant_attributes(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let slug = path.into_inner();
    // One query per slug, not per request: the id is cached (slugs that exist only).
    let found = state
        .caches
        .category_slugs
        .get_or_try_load(slug.clone(), || async {
            state
                .storage
                .category_by_slug(&slug)
                .await
                .map_err(ApiError::from)?
                .ok_or_else(|| ApiError::CategorySlugNotFound(slug.chars().take(80).collect()))
        })
        .await;
    let category_id = match found {
        Ok((id, _)) => id,
        Err(err) => match slug.parse::<i64>().ok().filter(|id| *id > 0) {
            Some(id) if matches!(*err, ApiError::CategorySlugNotFound(_)) => id,
            _ => return Err(ApiError::Shared(err).into()),
        },
    };
    categories::schema_view(
        &request,
        &state,
        category_id,
        View::V1VariantAttributes,
        |schema, context, catalog| {
            let views: Vec<_> = variant_capable(schema, catalog)
                .map(|a| V1VariantAttribute::of(a, context.language))
                .collect();
            to_bytes(&views)
        },
    )
    .await
}

/// One value of a listing, as the legacy `ListingAttributeValue` model: the value in the
/// legacy columns, its definition's labels and flags, and the text a listing page shows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct V1ListingValue {
    attribute_id: i64,
    attribute_name: String,
    /// In the requested language.
    display_name: String,
    #[schema(value_type = crate::routes::admin_bodies::AttributeTypeName)]
    attribute_type: String,
    /// Text, choices, colours, sizes and dates (`YYYY-MM-DD`); a multiselect joined by commas.
    text_value: Option<String>,
    #[schema(value_type = Option<f64>)]
    numeric_value: Option<Json>,
    boolean_value: Option<bool>,
    /// A multiselect as a list of option values.
    #[schema(value_type = Option<Vec<String>>)]
    json_value: Option<Json>,
    /// The value as a listing page shows it, in the requested language (option labels, unit).
    display_value: String,
    unit: Option<String>,
    translations: BTreeMap<String, String>,
    option_translations: OptionTranslations,
    is_required: bool,
    show_in_card: bool,
    show_in_list: bool,
}

fn yes_no(value: bool, language: Language) -> &'static str {
    match (language, value) {
        (Language::Sr, true) => "Da",
        (Language::Sr, false) => "Ne",
        (Language::En, true) => "Yes",
        (Language::En, false) => "No",
        (Language::Ru, true) => "Да",
        (Language::Ru, false) => "Нет",
    }
}

fn v1_listing_value(
    attribute: &Attribute,
    typed: &domain::TypedValue,
    language: Language,
) -> V1ListingValue {
    let option_label = |value: &str| match attribute.options.iter().find(|o| o.value == value) {
        Some(option) => label(&option.label, language, value),
        None => value.to_owned(),
    };
    let (mut text_value, mut numeric_value, mut boolean_value, mut json_value) =
        (None, None, None, None);
    let shown = match &typed.value {
        Value::Text(text) => {
            text_value = Some(text.clone());
            text.clone()
        }
        Value::Select(choice) | Value::Color(choice) | Value::Size(choice) => {
            text_value = Some(choice.clone());
            option_label(choice)
        }
        Value::Multiselect(choices) => {
            text_value = Some(choices.join(","));
            json_value = Some(typed.value.to_json());
            choices
                .iter()
                .map(|c| option_label(c))
                .collect::<Vec<_>>()
                .join(", ")
        }
        Value::Number(number) => {
            numeric_value = Some(typed.value.to_json());
            number.normalize().to_string()
        }
        Value::Boolean(flag) => {
            boolean_value = Some(*flag);
            yes_no(*flag, language).to_owned()
        }
        Value::Date(date) => {
            let text = date.format("%Y-%m-%d").to_string();
            text_value = Some(text.clone());
            text
        }
    };
    let display_value = match &typed.unit {
        Some(unit) => format!("{shown} {unit}"),
        None => shown,
    };
    V1ListingValue {
        attribute_id: attribute.id,
        attribute_name: attribute.code.clone(),
        display_name: label(&attribute.display_name, language, &attribute.code),
        attribute_type: attribute.attribute_type.as_str().to_owned(),
        text_value,
        numeric_value,
        boolean_value,
        json_value,
        display_value,
        unit: typed.unit.clone(),
        translations: translations(&attribute.display_name),
        option_translations: option_translations(&attribute.options),
        is_required: attribute.is_required,
        show_in_card: attribute.show_in_card,
        show_in_list: attribute.ui.show_in_list,
    }
}

/// A listing's values with their definitions, in the definitions' order.
fn v1_listing_values(
    values: &EntityValues,
    catalog: &[Attribute],
    language: Language,
) -> Vec<V1ListingValue> {
    let mut rows: Vec<(&Attribute, &domain::TypedValue)> = values
        .iter()
        .filter_map(|(code, typed)| Some((catalog.iter().find(|a| &a.code == code)?, typed)))
        .collect();
    rows.sort_by(|(a, _), (b, _)| (a.sort_order, &a.code).cmp(&(b.sort_order, &b.code)));
    rows.into_iter()
        .map(|(attribute, typed)| v1_listing_value(attribute, typed, language))
        .collect()
}

/// `GET /api/v1/marketplace/listings/{id}/attributes`
#[utoipa::path(get, path = "/api/v1/marketplace/listings/{id}/attributes", tag = "v1", operation_id = "v1_listing_values",
    params(("id" = i64, Path, minimum = 1, description = "Listing id"), ("lang" = Option<String>, Query, description = "sr, en or ru")),
    responses(
        (status = 200, description = "The listing's values in the legacy `ListingAttributeValue` shape", body = inline(V1ListingValuesEnvelope)),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorView),
        (status = 404, description = "No such listing", body = crate::error::ErrorView)))]
pub async fn listing_values(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let entity = EntityRef {
        kind: EntityKind::Listing,
        id: parse_id(&path, storage::Resource::Listing)?,
    };
    let context = ReadContext::of(&request, &state.flags());
    let key = ResponseKey {
        scope: Scope::Entity(entity.kind, entity.id),
        view: View::V1Values,
        store: context.store(),
        language: Some(context.language),
    };
    let (response, _) = state
        .caches
        .response(key, || async {
            let mut read = state.storage.entity_values(entity, context.route).await?;
            if read.served_by != storage::ServedBy::Unified {
                state.canonical_legacy_values(&mut read.data).await?;
            }
            let catalog = state.catalog(context.route).await?;
            let values = v1_listing_values(&read.data, &catalog, context.language);
            Ok::<_, ApiError>(cached(envelope(&to_bytes(&values)), read.served_by))
        })
        .await
        .map_err(ApiError::Shared)?;
    state.metrics.read_served(response.served_by);
    Ok(respond(&request, &response, Freshness::Values))
}

// Envelope schemas for the OpenAPI document.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct V1AttributesEnvelope {
    success: bool,
    data: Vec<V1Attribute>,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct V1RangesEnvelope {
    success: bool,
    data: BTreeMap<String, V1Range>,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct V1VariantAttributesEnvelope {
    success: bool,
    data: Vec<V1VariantAttribute>,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct V1ListingValuesEnvelope {
    success: bool,
    data: Vec<V1ListingValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_the_legacy_ones_else_follow_the_data() {
        assert_eq!(
            step("mileage", Decimal::ZERO, Decimal::ONE),
            Decimal::from(1_000)
        );
        assert_eq!(
            step("rooms", Decimal::ONE, Decimal::TEN),
            Decimal::new(5, 1)
        );
        assert_eq!(step("weight", Decimal::ONE, Decimal::TEN), Decimal::ONE);
        assert_eq!(
            step("weight", Decimal::new(15, 1), Decimal::TEN),
            Decimal::new(1, 2)
        );
    }
}
