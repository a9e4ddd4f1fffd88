//! The OpenAPI schemas of the admin API's request bodies. The handlers read the bodies into
//! `domain::AttributeDraft` and `domain::BindingDraft`, which refuse unknown keys; these types
//! only describe them, and take their enumerations from the domain so the two cannot drift.

#![allow(dead_code)]

use domain::{AttributeType, Language, Purpose};
use serde::Deserialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

fn one_of(names: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .into()
}

/// One of the nine value types.
pub struct AttributeTypeName;

impl PartialSchema for AttributeTypeName {
    fn schema() -> RefOr<Schema> {
        one_of(AttributeType::ALL.iter().map(|t| t.as_str()))
    }
}

impl ToSchema for AttributeTypeName {}

/// Where an attribute is used.
pub struct PurposeName;

impl PartialSchema for PurposeName {
    fn schema() -> RefOr<Schema> {
        one_of(Purpose::ALL.iter().map(|p| p.as_str()))
    }
}

impl ToSchema for PurposeName {}

/// A text by language (`sr`, `en`, `ru`), at least one; no other key.
pub struct Labels;

impl PartialSchema for Labels {
    fn schema() -> RefOr<Schema> {
        labels_schema(Some(1))
    }
}

impl ToSchema for Labels {}

/// A text by language that may be empty (`{}`): a name then defaults to the display name.
pub struct OptionalLabels;

impl PartialSchema for OptionalLabels {
    fn schema() -> RefOr<Schema> {
        labels_schema(None)
    }
}

impl ToSchema for OptionalLabels {}

fn labels_schema(min_properties: Option<usize>) -> RefOr<Schema> {
    let mut labels = ObjectBuilder::new()
        .schema_type(Type::Object)
        .min_properties(min_properties)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for language in Language::ALL {
        labels = labels.property(
            language.as_str(),
            ObjectBuilder::new().schema_type(Type::String),
        );
    }
    labels.into()
}

/// An allowed value and its labels.
#[derive(Deserialize, ToSchema)]
pub struct OptionBody {
    #[schema(min_length = 1)]
    value: String,
    #[schema(value_type = Labels)]
    label: (),
    /// `#1a2b3c`
    #[schema(nullable = false, pattern = "^#[0-9a-fA-F]{6}$")]
    color_hex: Option<String>,
    /// A picture of the option (variant catalogues), an http(s) URL.
    #[schema(nullable = false, pattern = "^https?://")]
    image_url: Option<String>,
}

/// The checks a value must pass; `min`/`max` bound numbers, the lengths bound texts (a
/// minimum above its maximum is refused). In a request, `null` means "not set"; answers leave
/// unset checks out.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesBody {
    min: Option<f64>,
    max: Option<f64>,
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 4_294_967_295_u64)]
    min_length: Option<u32>,
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 4_294_967_295_u64)]
    max_length: Option<u32>,
    /// A regular expression the whole text must match.
    pattern: Option<String>,
    #[schema(nullable = false)]
    required: Option<bool>,
}

/// Presentation settings the frontend interprets.
#[derive(Deserialize, ToSchema)]
pub struct UiBody {
    custom_component: Option<String>,
    icon: Option<String>,
    #[schema(nullable = false)]
    show_in_list: Option<bool>,
}

/// An attribute definition to create, or to replace one with.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeBody {
    /// Lower-case letters, digits and `_`.
    #[schema(pattern = "^[a-z0-9]+(_[a-z0-9]+)*$", max_length = 100)]
    code: String,
    #[serde(rename = "type")]
    #[schema(value_type = AttributeTypeName)]
    attribute_type: (),
    /// `regular` when absent.
    #[schema(value_type = Option<PurposeName>, nullable = false)]
    purpose: (),
    /// Defaults to `display_name` (also when empty).
    #[schema(value_type = Option<OptionalLabels>, nullable = false)]
    name: (),
    /// At least one label.
    #[schema(value_type = Labels)]
    display_name: (),
    /// Only for `select`, `multiselect`, `color` and `size`.
    #[schema(nullable = false)]
    options: Option<Vec<OptionBody>>,
    #[schema(nullable = false)]
    validation_rules: Option<RulesBody>,
    #[schema(nullable = false)]
    ui: Option<UiBody>,
    #[schema(nullable = false)]
    is_searchable: Option<bool>,
    #[schema(nullable = false)]
    is_filterable: Option<bool>,
    #[schema(nullable = false)]
    is_required: Option<bool>,
    #[schema(nullable = false)]
    is_variant_compatible: Option<bool>,
    #[schema(nullable = false)]
    affects_stock: Option<bool>,
    #[schema(nullable = false)]
    affects_price: Option<bool>,
    #[schema(nullable = false)]
    show_in_card: Option<bool>,
    #[schema(nullable = false)]
    sort_order: Option<i32>,
    #[schema(nullable = false)]
    is_active: Option<bool>,
    /// On a change: each option the change drops, with the kept option its values move to (in
    /// the same transaction). A drop of an option values still choose is refused (409) without it.
    #[schema(nullable = false)]
    remap_options: Option<std::collections::BTreeMap<String, String>>,
}

/// How a category uses an attribute; unset overrides inherit the attribute's own flags.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingChangeBody {
    #[schema(nullable = false)]
    is_enabled: Option<bool>,
    is_required: Option<bool>,
    is_filterable: Option<bool>,
    is_searchable: Option<bool>,
    show_in_card: Option<bool>,
    show_in_list: Option<bool>,
    custom_component: Option<String>,
    #[schema(nullable = false)]
    sort_order: Option<i32>,
    /// Replaces the attribute's options in this category.
    category_specific_options: Option<Vec<OptionBody>>,
}

/// A binding of an attribute to the category of the path: the attribute, and the change.
pub struct BindingBody;

impl PartialSchema for BindingBody {
    fn schema() -> RefOr<Schema> {
        let mut binding = BindingChangeBody::schema();
        if let RefOr::T(Schema::Object(object)) = &mut binding {
            object.description =
                Some("A binding of an attribute to the category of the path.".into());
            object.properties.insert(
                "attribute_id".into(),
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .into(),
            );
            object.required.push("attribute_id".into());
        }
        binding
    }
}

impl ToSchema for BindingBody {}

/// A runtime change of the flags: any of them (`null` or absent: unchanged).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagsBody {
    use_unified: Option<bool>,
    #[schema(minimum = 0, maximum = 100)]
    unified_percent: Option<u8>,
    fallback: Option<bool>,
    dual_write: Option<bool>,
    #[schema(minimum = 0, maximum = 100)]
    shadow_percent: Option<u8>,
}

/// A stored value, typed by its attribute: a number, a text (also dates as `YYYY-MM-DD` and
/// single options), a boolean, or a list of options.
pub struct TypedValue;

impl PartialSchema for TypedValue {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)))
            .into()
    }
}

impl ToSchema for TypedValue {}

/// A value to write: the typed value, or `{"value": …, "unit": "km"}`.
pub struct ValueInput;

impl PartialSchema for ValueInput {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::OneOfBuilder;
        let with_unit = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("value", TypedValue::schema())
            .property("unit", ObjectBuilder::new().schema_type(Type::String))
            .required("value")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let mut one_of = OneOfBuilder::new();
        if let RefOr::T(Schema::OneOf(typed)) = TypedValue::schema() {
            for item in typed.items {
                one_of = one_of.item(item);
            }
        }
        one_of.item(with_unit).into()
    }
}

impl ToSchema for ValueInput {}

/// `PUT`/`POST` body: the full new set of values, `{code: value}`.
pub struct ValuesBody;

impl PartialSchema for ValuesBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::RefOr(ValueInput::schema())))
            .into()
    }
}

impl ToSchema for ValuesBody {}

/// `PATCH` body: values to set, `null` to remove one.
pub struct ValuesPatch;

impl PartialSchema for ValuesPatch {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::OneOfBuilder;
        let value_or_null = OneOfBuilder::new()
            .item(ValueInput::schema())
            .item(ObjectBuilder::new().schema_type(Type::Null));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::RefOr(value_or_null.into())))
            .into()
    }
}

impl ToSchema for ValuesPatch {}

/// A bulk operation whose throttle the admin API shows and changes.
pub struct OperationName;

impl PartialSchema for OperationName {
    fn schema() -> RefOr<Schema> {
        one_of(storage::throttle::Operation::ALL.map(storage::throttle::Operation::command))
    }
}

impl ToSchema for OperationName {}

/// A change of a bulk operation's throttle: any of these keys, no other.
pub struct ThrottleBody;

impl PartialSchema for ThrottleBody {
    fn schema() -> RefOr<Schema> {
        let limit = |description: &str| {
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::Integer,
                    Type::Null,
                ]))
                .minimum(Some(1))
                .description(Some(description))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("paused", ObjectBuilder::new().schema_type(Type::Boolean))
            .property(
                "max_lag_ms",
                limit("Wait while a read replica lags more (ms); null removes the limit"),
            )
            .property(
                "max_load",
                limit(
                    "Wait while the primary runs more statements at once; null removes the limit",
                ),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for ThrottleBody {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_enumerations_are_the_domain_s() {
        let schema = serde_json::to_value(AttributeTypeName::schema()).expect("schema");
        assert_eq!(
            schema["enum"].as_array().map(Vec::len),
            Some(AttributeType::ALL.len())
        );
        assert_eq!(schema["enum"][4], json!("select"));
        let labels = serde_json::to_value(Labels::schema()).expect("schema");
        assert_eq!(
            labels["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["en".to_owned(), "ru".to_owned(), "sr".to_owned()])
        );
        assert_eq!(labels["additionalProperties"], json!(false));
        let binding = serde_json::to_value(BindingBody::schema()).expect("schema");
        assert_eq!(binding["required"], json!(["attribute_id"]));
        assert_eq!(binding["additionalProperties"], json!(false));
        assert!(binding["properties"]["category_specific_options"].is_object());
    }
}
