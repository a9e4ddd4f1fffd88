//! The check of submitted values against a category's effective schema, with one reason per
//! field so that a form can show every problem at once.

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::attribute::{Attribute, AttributeType};
use crate::options::AttributeOption;
use crate::schema::{EffectiveAttribute, EffectiveSchema};
use crate::value::{EntityValues, TypedValue, Value};

/// Why one field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldErrorKind {
    #[error("no such attribute in this category")]
    UnknownAttribute,
    #[error("expected a value of type {expected}")]
    WrongType { expected: AttributeType },
    #[error("{0}")]
    InvalidValueShape(String),
    #[error(
        "numbers are kept with at most {max_integer_digits} integer and {max_fraction_digits} fraction digits"
    )]
    TooPrecise {
        max_integer_digits: u32,
        max_fraction_digits: u32,
    },
    #[error("option '{0}' is chosen twice")]
    DuplicateOption(String),
    #[error("'{given}' is not one of the allowed options ({})", allowed.join(", "))]
    OptionNotAllowed { given: String, allowed: Vec<String> },
    #[error("must be at least {min}")]
    BelowMinimum { min: Decimal },
    #[error("must be at most {max}")]
    AboveMaximum { max: Decimal },
    #[error("must have at least {min_length} characters")]
    TooShort { min_length: u32 },
    #[error("must have at most {max_length} characters")]
    TooLong { max_length: u32 },
    #[error("must match the pattern {pattern}")]
    PatternMismatch { pattern: String },
    #[error("a colour is a hex code like #1a2b3c")]
    InvalidColor,
    #[error("this attribute is required in this category")]
    Required,
    #[error("contains a NUL character (\\u0000), which stored text cannot hold")]
    NulCharacter,
    #[error("dates are kept from 0001-01-01 to 9999-12-31")]
    DateOutOfRange,
}

impl FieldErrorKind {
    /// The stable i18n key the frontend translates.
    pub fn i18n_key(&self) -> &'static str {
        match self {
            FieldErrorKind::UnknownAttribute => "errors.unknownAttribute",
            FieldErrorKind::WrongType { .. } => "errors.invalidValueType",
            FieldErrorKind::InvalidValueShape(_) => "errors.invalidValueShape",
            FieldErrorKind::TooPrecise { .. } => "errors.numberTooPrecise",
            FieldErrorKind::DuplicateOption(_) => "errors.duplicateOption",
            FieldErrorKind::OptionNotAllowed { .. } => "errors.optionNotAllowed",
            FieldErrorKind::BelowMinimum { .. } => "errors.valueBelowMinimum",
            FieldErrorKind::AboveMaximum { .. } => "errors.valueAboveMaximum",
            FieldErrorKind::TooShort { .. } => "errors.valueTooShort",
            FieldErrorKind::TooLong { .. } => "errors.valueTooLong",
            FieldErrorKind::PatternMismatch { .. } => "errors.valuePatternMismatch",
            FieldErrorKind::InvalidColor => "errors.invalidColor",
            FieldErrorKind::Required => "errors.requiredAttributeMissing",
            FieldErrorKind::NulCharacter => "errors.nulCharacter",
            FieldErrorKind::DateOutOfRange => "errors.dateOutOfRange",
        }
    }
}

/// One refused field: the attribute code, the i18n key and a human reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub key: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, kind: &FieldErrorKind) -> Self {
        Self {
            field: field.into(),
            key: kind.i18n_key(),
            reason: kind.to_string(),
        }
    }
}

/// Every string of a write's body, keys included, that holds a NUL character, by its path
/// (`display_name.sr`, `options[2].value`). PostgreSQL stores no NUL in `text` or `jsonb`, so
/// such a body is refused whole, on every backend alike, before anything is written.
pub fn nul_characters(body: &Json) -> Vec<FieldError> {
    /// One step into the body; a path is spelled only when a NUL is found.
    enum Step<'a> {
        Key(&'a str),
        Index(usize),
    }
    fn spell(steps: &[Step]) -> String {
        let mut path = String::new();
        for step in steps {
            match step {
                Step::Key(key) if path.is_empty() => path.push_str(key),
                Step::Key(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Step::Index(index) => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }
    fn walk<'a>(value: &'a Json, steps: &mut Vec<Step<'a>>, found: &mut Vec<FieldError>) {
        match value {
            Json::String(text) if text.contains('\0') => {
                found.push(FieldError::new(spell(steps), &FieldErrorKind::NulCharacter));
            }
            Json::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    steps.push(Step::Index(index));
                    walk(item, steps, found);
                    steps.pop();
                }
            }
            Json::Object(map) => {
                for (key, item) in map {
                    steps.push(Step::Key(key));
                    if key.contains('\0') {
                        found.push(FieldError::new(spell(steps), &FieldErrorKind::NulCharacter));
                    }
                    walk(item, steps, found);
                    steps.pop();
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(body, &mut Vec::new(), &mut found);
    found
}

/// Checks a full replacement of an entity's values (`{code: value}`) against the effective
/// schema of its category. Every field is checked; all problems are returned together.
pub fn validate_replacement(
    schema: &EffectiveSchema,
    input: &Map<String, Json>,
) -> Result<EntityValues, Vec<FieldError>> {
    let mut values = EntityValues::new();
    let mut errors = Vec::new();
    for (code, raw) in input {
        let Some(attribute) = schema.get(code) else {
            errors.push(FieldError::new(code, &FieldErrorKind::UnknownAttribute));
            continue;
        };
        match check_value(attribute, raw) {
            Ok(value) => {
                values.insert(code.clone(), value);
            }
            Err(kind) => errors.push(FieldError::new(code, &kind)),
        }
    }
    for attribute in schema.attributes.iter().filter(|a| a.is_required) {
        if !input.contains_key(&attribute.attribute.code) {
            errors.push(FieldError::new(
                &attribute.attribute.code,
                &FieldErrorKind::Required,
            ));
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// Checks a partial update (`PATCH`): each given value is checked, `null` removes a value,
/// untouched values stay. The merged result must still hold every required attribute.
pub fn validate_patch(
    schema: &EffectiveSchema,
    current: &EntityValues,
    input: &Map<String, Json>,
) -> Result<EntityValues, Vec<FieldError>> {
    let mut merged = current.clone();
    let mut errors = Vec::new();
    for (code, raw) in input {
        let Some(attribute) = schema.get(code) else {
            errors.push(FieldError::new(code, &FieldErrorKind::UnknownAttribute));
            continue;
        };
        if raw.is_null() {
            merged.remove(code);
            continue;
        }
        match check_value(attribute, raw) {
            Ok(value) => {
                merged.insert(code.clone(), value);
            }
            Err(kind) => errors.push(FieldError::new(code, &kind)),
        }
    }
    for attribute in schema.attributes.iter().filter(|a| a.is_required) {
        let code = &attribute.attribute.code;
        if !merged.contains_key(code) && !errors.iter().any(|e| &e.field == code) {
            errors.push(FieldError::new(code, &FieldErrorKind::Required));
        }
    }
    if errors.is_empty() {
        Ok(merged)
    } else {
        Err(errors)
    }
}

/// Parses one value and checks it against the attribute's options and rules. An option
/// spelled another way that certainly means one option (its label, another case, an alias
/// operators registered) is stored as that option, as the backfill stores legacy spellings.
pub fn check_value(
    attribute: &EffectiveAttribute,
    raw: &Json,
) -> Result<TypedValue, FieldErrorKind> {
    let mut typed = TypedValue::from_json(attribute.attribute.attribute_type, raw)?;
    crate::options::canonical_spellings(&attribute.options, &mut typed.value);
    check_typed(&attribute.attribute, &attribute.options, &typed)?;
    Ok(typed)
}

/// Checks a typed value against an attribute's rules and the options that apply (the
/// category's or the attribute's). The backfill uses it on values read from legacy rows.
pub fn check_typed(
    attribute: &Attribute,
    options: &[AttributeOption],
    typed: &TypedValue,
) -> Result<(), FieldErrorKind> {
    if !typed.value.fits(attribute.attribute_type) {
        return Err(FieldErrorKind::WrongType {
            expected: attribute.attribute_type,
        });
    }
    let rules = &attribute.rules;
    match &typed.value {
        Value::Number(number) => {
            crate::value::check_precision(*number)?;
            if let Some(min) = rules.min.filter(|min| number < min) {
                return Err(FieldErrorKind::BelowMinimum {
                    min: min.normalize(),
                });
            }
            if let Some(max) = rules.max.filter(|max| number > max) {
                return Err(FieldErrorKind::AboveMaximum {
                    max: max.normalize(),
                });
            }
        }
        Value::Text(text) => {
            let length = text.chars().count();
            if let Some(min_length) = rules.min_length.filter(|min| length < *min as usize) {
                return Err(FieldErrorKind::TooShort { min_length });
            }
            if let Some(max_length) = rules.max_length.filter(|max| length > *max as usize) {
                return Err(FieldErrorKind::TooLong { max_length });
            }
            if let Some(pattern) = rules.pattern.as_ref().filter(|p| !p.matches(text)) {
                return Err(FieldErrorKind::PatternMismatch {
                    pattern: pattern.as_str().to_owned(),
                });
            }
        }
        Value::Color(hex) if options.is_empty() && !is_hex_colour(hex) => {
            return Err(FieldErrorKind::InvalidColor);
        }
        Value::Date(date) => crate::value::check_date_range(*date)?,
        _ => {}
    }
    if attribute.attribute_type.uses_options() && !options.is_empty() {
        for chosen in typed.value.chosen_options() {
            if !options.iter().any(|o| o.value == chosen) {
                return Err(FieldErrorKind::OptionNotAllowed {
                    given: chosen.to_owned(),
                    allowed: options.iter().map(|o| o.value.clone()).collect(),
                });
            }
        }
    }
    Ok(())
}

fn is_hex_colour(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::attribute::Attribute;
    use crate::options::AttributeOption;
    use crate::rules::{Pattern, ValidationRules};
    use crate::schema::CategoryBinding;

    #[test]
    fn nul_characters_are_found_in_values_and_keys_at_any_depth() {
        let body = json!({
            "code": "fine",
            "display_name": {"sr": "a\u{0}b", "en": "ok"},
            "options": [{"value": "x"}, {"value": "y\u{0}"}],
            "k\u{0}ey": 1,
        });
        let paths: Vec<_> = nul_characters(&body).into_iter().map(|e| e.field).collect();
        assert_eq!(paths, ["display_name.sr", "k\u{0}ey", "options[1].value"]);
        assert!(nul_characters(&json!({"vin": "ABC", "n": [1, null, true]})).is_empty());
        let error = &nul_characters(&json!("\u{0}"))[0];
        assert_eq!(
            (error.field.as_str(), error.key),
            ("", "errors.nulCharacter")
        );
    }

    fn schema() -> EffectiveSchema {
        let mut year = Attribute::new(2202, "year", AttributeType::Number);
        year.rules = ValidationRules {
            min: Some(Decimal::from(1950)),
            max: Some(Decimal::from(2026)),
            ..Default::default()
        };
        let mut transmission = Attribute::new(2205, "transmission", AttributeType::Select);
        transmission.options = vec![
            AttributeOption::plain("automatic"),
            AttributeOption::plain("manual"),
        ];
        let mut vin = Attribute::new(2206, "vin", AttributeType::Text);
        vin.rules.pattern = Some(Pattern::new("[A-HJ-NPR-Z0-9]{17}").expect("valid"));
        let mut color = Attribute::new(2004, "color", AttributeType::Multiselect);
        color.options = vec![
            AttributeOption::plain("red"),
            AttributeOption::plain("blue"),
        ];
        let paint = Attribute::new(2401, "paint", AttributeType::Color);
        let attributes = [year, transmission, vin, color, paint];
        let bindings: Vec<_> = attributes
            .iter()
            .map(|a| CategoryBinding {
                is_required: Some(a.code == "year"),
                ..CategoryBinding::new(1301, a.id, 0)
            })
            .collect();
        EffectiveSchema::resolve(&[1301], &bindings, &attributes)
    }

    fn errors_for(input: Json) -> Vec<(String, &'static str)> {
        let input = input.as_object().expect("object").clone();
        match validate_replacement(&schema(), &input) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| (e.field, e.key)).collect(),
        }
    }

    #[test]
    fn valid_values_are_accepted_and_typed() {
        let input =
            json!({"year": 2015, "transmission": "manual", "color": ["red"], "paint": "#a1b2c3"});
        let values =
            validate_replacement(&schema(), input.as_object().expect("object")).expect("valid");
        assert_eq!(values["year"].value, Value::Number(Decimal::from(2015)));
        assert_eq!(
            values["color"].value,
            Value::Multiselect(vec!["red".into()])
        );
    }

    #[test]
    fn each_problem_is_reported_on_its_field() {
        let errors = errors_for(json!({
            "year": 1, "transmission": "poluautomatik", "vin": "short", "color": ["green"],
            "paint": "blue", "doors": 4
        }));
        assert!(errors.contains(&("year".into(), "errors.valueBelowMinimum")));
        assert!(errors.contains(&("transmission".into(), "errors.optionNotAllowed")));
        assert!(errors.contains(&("vin".into(), "errors.valuePatternMismatch")));
        assert!(errors.contains(&("color".into(), "errors.optionNotAllowed")));
        assert!(errors.contains(&("paint".into(), "errors.invalidColor")));
        assert!(errors.contains(&("doors".into(), "errors.unknownAttribute")));
        assert_eq!(errors.len(), 6);
    }

    #[test]
    fn a_spelling_that_certainly_means_one_option_is_stored_as_that_option() {
        let mut schema = schema();
        let transmission = schema
            .attributes
            .iter_mut()
            .find(|a| a.attribute.code == "transmission")
            .expect("transmission");
        transmission.options[0].aliases.push("автомат".into());
        let input = json!({"year": 2015, "transmission": "АВТОМАТ", "color": ["Red", "blue"]});
        let values = validate_replacement(&schema, input.as_object().expect("object"))
            .expect("spellings mapped");
        assert_eq!(
            values["transmission"].value,
            Value::Select("automatic".into())
        );
        assert_eq!(
            values["color"].value,
            Value::Multiselect(vec!["red".into(), "blue".into()])
        );
    }

    #[test]
    fn a_missing_required_attribute_is_reported() {
        assert_eq!(
            errors_for(json!({"transmission": "manual"})),
            [("year".to_string(), "errors.requiredAttributeMissing")]
        );
    }

    #[test]
    fn a_patch_merges_removes_with_null_and_keeps_required_ones() {
        let current = validate_replacement(
            &schema(),
            json!({"year": 2010, "transmission": "manual"})
                .as_object()
                .expect("object"),
        )
        .expect("valid");
        let patched = validate_patch(
            &schema(),
            &current,
            json!({"transmission": null, "color": ["blue"]})
                .as_object()
                .expect("object"),
        )
        .expect("valid patch");
        assert_eq!(patched.keys().collect::<Vec<_>>(), ["color", "year"]);
        let errors = validate_patch(
            &schema(),
            &current,
            json!({"year": null}).as_object().expect("object"),
        )
        .expect_err("year is required");
        assert_eq!(errors[0].key, "errors.requiredAttributeMissing");
    }

    #[test]
    fn above_maximum_is_reported() {
        assert_eq!(
            errors_for(json!({"year": 2027})),
            [("year".to_string(), "errors.valueAboveMaximum")]
        );
    }

    proptest! {
        #[test]
        fn a_number_passes_exactly_when_it_is_within_min_and_max(year in -10_000i64..10_000) {
            let result = validate_replacement(&schema(), json!({"year": year}).as_object().expect("object"));
            prop_assert_eq!(result.is_ok(), (1950..=2026).contains(&year));
        }

        #[test]
        fn validation_never_panics_on_arbitrary_text(text in ".*") {
            let input = json!({"year": text.clone(), "vin": text.clone(), "transmission": text});
            let _ = validate_replacement(&schema(), input.as_object().expect("object"));
        }
    }
}
