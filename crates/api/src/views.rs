//! The JSON shapes the API sends, built from domain objects, with their OpenAPI schemas.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::{
    Attribute, AttributeOption, EffectiveAttribute, EntityRef, EntityValues, Language,
    LocalizedText,
};
use serde::Serialize;
use serde_json::Value as Json;
use utoipa::ToSchema;

/// One allowed value with its label in the requested language.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptionView {
    pub value: String,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color_hex: Option<String>,
    /// A variant option's picture, from the B2C option catalogue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

impl OptionView {
    fn of(option: &AttributeOption, lang: Language) -> Self {
        Self {
            label: option.label.get(lang).unwrap_or(&option.value).to_owned(),
            value: option.value.clone(),
            color_hex: option.color_hex.clone(),
            image_url: option.image_url.clone(),
        }
    }
}

/// A label in `lang`, else `fallback` (the code or the option value).
pub(crate) fn label(text: &LocalizedText, lang: Language, fallback: &str) -> String {
    text.get(lang).unwrap_or(fallback).to_owned()
}

/// Every translation of a label: `{"en": "Year", "ru": "Год выпуска", "sr": "Godište"}`.
pub fn translations(text: &LocalizedText) -> BTreeMap<String, String> {
    text.iter()
        .map(|(l, t)| (l.as_str().to_owned(), t.to_owned()))
        .collect()
}

/// Every translation of the options' labels, per language then option value:
/// `{"en": {"automatic": "Automatic"}, "ru": {"automatic": "Автомат"}}`.
pub fn option_translations(
    options: &[AttributeOption],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut by_language: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for option in options {
        for (language, text) in option.label.iter() {
            by_language
                .entry(language.as_str().to_owned())
                .or_default()
                .insert(option.value.clone(), text.to_owned());
        }
    }
    by_language
}

/// How an attribute is presented (free-form settings the frontend interprets).
#[derive(Debug, Serialize, ToSchema)]
pub struct UiSettingsView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    pub show_in_list: bool,
}

impl UiSettingsView {
    fn of(attribute: &Attribute) -> Self {
        Self {
            custom_component: attribute.ui.custom_component.clone(),
            icon: attribute.ui.icon.clone(),
            show_in_list: attribute.ui.show_in_list,
        }
    }
}

/// An attribute definition, labels in the requested language.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttributeView {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub display_name: String,
    /// Every translation of the display name, by language.
    pub translations: BTreeMap<String, String>,
    /// Every translation of the option labels, by language then option value.
    pub option_translations: BTreeMap<String, BTreeMap<String, String>>,
    #[schema(value_type = crate::routes::admin_bodies::AttributeTypeName)]
    pub attribute_type: String,
    /// `regular`, `variant` or `both`.
    #[schema(value_type = crate::routes::admin_bodies::PurposeName)]
    pub purpose: String,
    pub options: Vec<OptionView>,
    /// `min`, `max`, `minLength`, `maxLength`, `pattern`, `required`, where set.
    #[schema(value_type = crate::routes::admin_bodies::RulesBody)]
    pub validation_rules: Json,
    pub is_searchable: bool,
    pub is_filterable: bool,
    pub is_required: bool,
    pub is_variant_compatible: bool,
    pub affects_stock: bool,
    pub affects_price: bool,
    pub show_in_card: bool,
    pub show_in_list: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    pub sort_order: i32,
    pub is_active: bool,
    pub ui_settings: UiSettingsView,
    /// When the store that answered created the definition.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<DateTime<Utc>>,
    /// When it last changed; `null` from the legacy store, which does not record it.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl AttributeView {
    pub fn of(attribute: &Attribute, lang: Language) -> Self {
        Self {
            id: attribute.id,
            code: attribute.code.clone(),
            name: label(&attribute.name, lang, &attribute.code),
            display_name: label(&attribute.display_name, lang, &attribute.code),
            translations: translations(&attribute.display_name),
            option_translations: option_translations(&attribute.options),
            attribute_type: attribute.attribute_type.as_str().to_owned(),
            purpose: attribute.purpose.as_str().to_owned(),
            options: attribute
                .options
                .iter()
                .map(|o| OptionView::of(o, lang))
                .collect(),
            validation_rules: serde_json::to_value(&attribute.rules).unwrap_or(Json::Null),
            is_searchable: attribute.is_searchable,
            is_filterable: attribute.is_filterable,
            is_required: attribute.is_required,
            is_variant_compatible: attribute.is_variant_compatible,
            affects_stock: attribute.affects_stock,
            affects_price: attribute.affects_price,
            show_in_card: attribute.show_in_card,
            show_in_list: attribute.ui.show_in_list,
            custom_component: attribute.ui.custom_component.clone(),
            icon: attribute.ui.icon.clone(),
            sort_order: attribute.sort_order,
            is_active: attribute.is_active,
            ui_settings: UiSettingsView::of(attribute),
            created_at: attribute.created_at,
            updated_at: attribute.updated_at,
        }
    }
}

/// An attribute as it applies in a category: overrides resolved, inheritance shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryAttributeView {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub display_name: String,
    /// Every translation of the display name, by language.
    pub translations: BTreeMap<String, String>,
    /// Every translation of the option labels, by language then option value.
    pub option_translations: BTreeMap<String, BTreeMap<String, String>>,
    #[schema(value_type = crate::routes::admin_bodies::AttributeTypeName)]
    pub attribute_type: String,
    #[schema(value_type = crate::routes::admin_bodies::PurposeName)]
    pub purpose: String,
    pub options: Vec<OptionView>,
    #[schema(value_type = crate::routes::admin_bodies::RulesBody)]
    pub validation_rules: Json,
    pub is_required: bool,
    pub is_filterable: bool,
    pub is_searchable: bool,
    pub is_variant_compatible: bool,
    pub affects_stock: bool,
    pub affects_price: bool,
    pub is_active: bool,
    pub show_in_card: bool,
    pub show_in_list: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    pub ui_settings: UiSettingsView,
    pub sort_order: i32,
    /// The category whose binding applies: this one or an ancestor.
    pub bound_on: i64,
    pub inherited: bool,
    /// When the store that answered created the definition.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<DateTime<Utc>>,
    /// When it last changed; `null` from the legacy store, which does not record it.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl CategoryAttributeView {
    pub fn of(effective: &EffectiveAttribute, lang: Language) -> Self {
        let attribute = &effective.attribute;
        Self {
            id: attribute.id,
            code: attribute.code.clone(),
            name: label(&attribute.name, lang, &attribute.code),
            display_name: label(&attribute.display_name, lang, &attribute.code),
            translations: translations(&attribute.display_name),
            option_translations: option_translations(&effective.options),
            attribute_type: attribute.attribute_type.as_str().to_owned(),
            purpose: attribute.purpose.as_str().to_owned(),
            options: effective
                .options
                .iter()
                .map(|o| OptionView::of(o, lang))
                .collect(),
            validation_rules: serde_json::to_value(&attribute.rules).unwrap_or(Json::Null),
            is_required: effective.is_required,
            is_filterable: effective.is_filterable,
            is_searchable: effective.is_searchable,
            is_variant_compatible: attribute.is_variant_compatible,
            affects_stock: attribute.affects_stock,
            affects_price: attribute.affects_price,
            is_active: attribute.is_active,
            show_in_card: effective.show_in_card,
            show_in_list: effective.show_in_list,
            custom_component: effective.custom_component.clone(),
            icon: attribute.ui.icon.clone(),
            ui_settings: UiSettingsView::of(attribute),
            sort_order: effective.sort_order,
            bound_on: effective.bound_on,
            inherited: effective.inherited,
            created_at: attribute.created_at,
            updated_at: attribute.updated_at,
        }
    }
}

/// The binding that applies in a category, next to the full definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetailedBindingView {
    pub category_id: i64,
    pub bound_on: i64,
    pub inherited: bool,
    pub is_required: bool,
    pub is_filterable: bool,
    pub is_searchable: bool,
    pub show_in_card: bool,
    pub show_in_list: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_component: Option<String>,
    pub sort_order: i32,
    /// The options that apply in this category (its own list, or the attribute's).
    pub options: Vec<OptionView>,
    pub attribute: AttributeView,
}

impl DetailedBindingView {
    pub fn of(category_id: i64, effective: &EffectiveAttribute, lang: Language) -> Self {
        Self {
            category_id,
            bound_on: effective.bound_on,
            inherited: effective.inherited,
            is_required: effective.is_required,
            is_filterable: effective.is_filterable,
            is_searchable: effective.is_searchable,
            show_in_card: effective.show_in_card,
            show_in_list: effective.show_in_list,
            custom_component: effective.custom_component.clone(),
            sort_order: effective.sort_order,
            options: effective
                .options
                .iter()
                .map(|o| OptionView::of(o, lang))
                .collect(),
            attribute: AttributeView::of(&effective.attribute, lang),
        }
    }
}

/// One value of an entity.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValueView {
    pub code: String,
    /// Typed: number, text, boolean, `YYYY-MM-DD` date, or a list of options.
    #[schema(value_type = crate::routes::admin_bodies::TypedValue)]
    pub value: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// All values of one entity.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityValuesView {
    /// `listing`, `product` or `product_variant`.
    pub entity_type: String,
    pub entity_id: i64,
    pub values: Vec<ValueView>,
}

impl EntityValuesView {
    pub fn of(entity: EntityRef, values: &EntityValues) -> Self {
        Self {
            entity_type: entity.kind.as_str().to_owned(),
            entity_id: entity.id,
            values: values
                .iter()
                .map(|(code, typed)| ValueView {
                    code: code.clone(),
                    value: typed.value.to_json(),
                    unit: typed.unit.clone(),
                })
                .collect(),
        }
    }
}

/// `EntityValuesView` as the reads encode it: borrowed from the domain values and written
/// straight to JSON, the same bytes without a copy of each code and a JSON tree per value. The
/// keys are written as the constants they are: serde escapes every key it writes, and with its
/// map machinery that was over 40 % of this encoding's instructions (three keys a value).
#[derive(Debug)]
pub struct EntityValuesBody<'a> {
    entity_type: &'static str,
    entity_id: i64,
    values: &'a EntityValues,
}

impl<'a> EntityValuesBody<'a> {
    pub fn of(entity: EntityRef, values: &'a EntityValues) -> Self {
        Self {
            entity_type: entity.kind.as_str(),
            entity_id: entity.id,
            values,
        }
    }

    /// The body's bytes; empty if a value cannot be encoded, as `routes::to_bytes`.
    pub fn to_bytes(&self) -> bytes::Bytes {
        crate::routes::written(|body| self.write(body))
    }

    fn write(&self, body: &mut Vec<u8>) -> serde_json::Result<()> {
        body.extend_from_slice(br#"{"entity_type":"#);
        serde_json::to_writer(&mut *body, self.entity_type)?;
        body.extend_from_slice(br#","entity_id":"#);
        serde_json::to_writer(&mut *body, &self.entity_id)?;
        body.extend_from_slice(br#","values":["#);
        for (n, (code, typed)) in self.values.iter().enumerate() {
            body.extend_from_slice(if n == 0 {
                br#"{"code":"#
            } else {
                br#",{"code":"#
            });
            serde_json::to_writer(&mut *body, code)?;
            body.extend_from_slice(br#","value":"#);
            serde_json::to_writer(&mut *body, &typed.value.as_json())?;
            if let Some(unit) = &typed.unit {
                body.extend_from_slice(br#","unit":"#);
                serde_json::to_writer(&mut *body, unit)?;
            }
            body.push(b'}');
        }
        body.extend_from_slice(b"]}");
        Ok(())
    }
}

/// Spread of one number attribute over a category subtree's listings.
#[derive(Debug, Serialize, ToSchema)]
pub struct RangeView {
    pub code: String,
    #[schema(value_type = f64)]
    pub min: Json,
    #[schema(value_type = f64)]
    pub max: Json,
    pub count: i64,
}

impl RangeView {
    pub fn of(range: &storage::AttributeRange) -> Self {
        Self {
            code: range.code.clone(),
            min: serde_json::to_value(range.min).unwrap_or(Json::Null),
            max: serde_json::to_value(range.max).unwrap_or(Json::Null),
            count: range.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use domain::{EntityKind, TypedValue, Value};

    use super::*;

    #[test]
    fn the_reads_encoding_is_the_documented_views_byte_for_byte() {
        let mut values = EntityValues::new();
        let typed = |value: Value, unit: Option<&str>| TypedValue {
            value,
            unit: unit.map(str::to_owned),
        };
        values.insert(
            "mileage".into(),
            typed(
                Value::Number("120000.500".parse().expect("decimal")),
                Some("km"),
            ),
        );
        values.insert(
            "color".into(),
            typed(Value::Multiselect(vec!["white".into()]), None),
        );
        values.insert("vin".into(), typed(Value::Text("0W\"C\\N".into()), None));
        values.insert("used".into(), typed(Value::Boolean(true), None));
        for entity in [
            EntityRef {
                kind: EntityKind::Listing,
                id: 6,
            },
            EntityRef {
                kind: EntityKind::ProductVariant,
                id: 9,
            },
        ] {
            for values in [&values, &EntityValues::new()] {
                assert_eq!(
                    EntityValuesBody::of(entity, values).to_bytes(),
                    serde_json::to_string(&EntityValuesView::of(entity, values)).expect("view"),
                );
            }
        }
    }
}
