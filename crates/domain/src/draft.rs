//! What an admin sends to create or change an attribute or a category binding, and the
//! checks that turn it into a domain object.

use serde::Deserialize;

use crate::attribute::{Attribute, AttributeType, Purpose, UiSettings, normalize_code};
use crate::i18n::LocalizedText;
use crate::options::AttributeOption;
use crate::rules::ValidationRules;
use crate::schema::CategoryBinding;
use crate::validate::{FieldError, FieldErrorKind};

/// An attribute definition as the admin API receives it. Unknown keys are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeDraft {
    pub code: String,
    #[serde(rename = "type")]
    pub attribute_type: AttributeType,
    #[serde(default = "regular")]
    pub purpose: Purpose,
    /// Defaults to `display_name`.
    #[serde(default)]
    pub name: LocalizedText,
    pub display_name: LocalizedText,
    #[serde(default)]
    pub options: Vec<AttributeOption>,
    #[serde(default)]
    pub validation_rules: ValidationRules,
    #[serde(default)]
    pub ui: UiSettings,
    #[serde(default)]
    pub is_searchable: bool,
    #[serde(default = "yes")]
    pub is_filterable: bool,
    #[serde(default)]
    pub is_required: bool,
    #[serde(default)]
    pub is_variant_compatible: bool,
    #[serde(default)]
    pub affects_stock: bool,
    #[serde(default)]
    pub affects_price: bool,
    #[serde(default = "yes")]
    pub show_in_card: bool,
    #[serde(default)]
    pub sort_order: i32,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// On a change: options dropped by it, each with the kept option its values move to in the
    /// same transaction (`{"manual": "automatic"}`). Without it, a drop of an option values
    /// still choose is refused.
    #[serde(default)]
    pub remap_options: std::collections::BTreeMap<String, String>,
}

/// `varchar(255)`: labels, a variant option's value and label, a custom component.
const LABEL_WIDTH: usize = 255;
/// `category_attributes.icon varchar(10)`.
const ICON_WIDTH: usize = 10;

fn regular() -> Purpose {
    Purpose::Regular
}

fn yes() -> bool {
    true
}

impl AttributeDraft {
    /// Checks the draft and builds the definition with `id`.
    pub fn into_attribute(self, id: i64) -> Result<Attribute, Vec<FieldError>> {
        let mut errors = Vec::new();
        let invalid = |field: &str, reason: String| {
            FieldError::new(field, &FieldErrorKind::InvalidValueShape(reason))
        };
        if normalize_code(&self.code) != self.code || self.code.is_empty() || self.code.len() > 100
        {
            errors.push(invalid(
                "code",
                format!(
                    "'{}' is not a code: lower-case letters, digits and '_', at most 100",
                    self.code
                ),
            ));
        }
        if self.display_name.is_empty() {
            errors.push(invalid(
                "display_name",
                "at least one label (sr, en or ru) is required".into(),
            ));
        }
        if !self.attribute_type.uses_options() && !self.options.is_empty() {
            errors.push(invalid(
                "options",
                format!("a {} attribute has no options", self.attribute_type),
            ));
        }
        for (index, option) in self.options.iter().enumerate() {
            if option.value.trim().is_empty() {
                errors.push(invalid(
                    "options",
                    format!("option {index} has an empty value"),
                ));
            }
            if let Some(url) = option.image_url.as_deref()
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                errors.push(invalid(
                    "options",
                    format!("option '{}': image_url is an http(s) URL", option.value),
                ));
            }
            if self.options[..index]
                .iter()
                .any(|o| o.value == option.value)
            {
                errors.push(invalid(
                    "options",
                    format!("option '{}' is listed twice", option.value),
                ));
            }
        }
        if let (Some(min), Some(max)) = (self.validation_rules.min, self.validation_rules.max)
            && min > max
        {
            errors.push(invalid(
                "validation_rules",
                format!("min {min} is above max {max}"),
            ));
        }
        if let (Some(min), Some(max)) = (
            self.validation_rules.min_length,
            self.validation_rules.max_length,
        ) && min > max
        {
            errors.push(invalid(
                "validation_rules",
                format!("minLength {min} is above maxLength {max}"),
            ));
        }
        // What both stores hold: the legacy columns' widths (display_name, a variant option's
        // value and label varchar(255), icon varchar(10), custom_component varchar(255)).
        let too_long = |text: &str, max: usize| text.chars().count() > max;
        for (field, labels) in [("display_name", &self.display_name), ("name", &self.name)] {
            for (language, label) in labels.iter() {
                if too_long(label, LABEL_WIDTH) {
                    errors.push(invalid(
                        field,
                        format!("the {language} label is longer than {LABEL_WIDTH} characters"),
                    ));
                }
            }
        }
        for option in &self.options {
            if too_long(&option.value, LABEL_WIDTH)
                || option
                    .label
                    .iter()
                    .any(|(_, label)| too_long(label, LABEL_WIDTH))
            {
                errors.push(invalid(
                    "options",
                    format!("an option's value and labels are at most {LABEL_WIDTH} characters"),
                ));
            }
            if let Some(hex) = option.color_hex.as_deref()
                && !(hex.len() == 7
                    && hex.starts_with('#')
                    && hex[1..].chars().all(|c| c.is_ascii_hexdigit()))
            {
                errors.push(invalid(
                    "options",
                    format!("option '{}': color_hex is #rrggbb", option.value),
                ));
            }
        }
        if self
            .ui
            .icon
            .as_deref()
            .is_some_and(|icon| too_long(icon, ICON_WIDTH))
        {
            errors.push(invalid(
                "ui",
                format!("icon is at most {ICON_WIDTH} characters"),
            ));
        }
        if self
            .ui
            .custom_component
            .as_deref()
            .is_some_and(|component| too_long(component, LABEL_WIDTH))
        {
            errors.push(invalid(
                "ui",
                format!("custom_component is at most {LABEL_WIDTH} characters"),
            ));
        }
        for (from, to) in &self.remap_options {
            if self.options.iter().any(|o| o.value == *from) {
                errors.push(invalid(
                    "remap_options",
                    format!(
                        "'{from}' is kept among the options: only a dropped option is re-mapped"
                    ),
                ));
            }
            if !self.options.iter().any(|o| o.value == *to) {
                errors.push(invalid(
                    "remap_options",
                    format!("'{from}' is re-mapped to '{to}', which is not among the options"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Attribute {
            id,
            name: if self.name.is_empty() {
                self.display_name.clone()
            } else {
                self.name
            },
            code: self.code,
            display_name: self.display_name,
            attribute_type: self.attribute_type,
            purpose: self.purpose,
            options: self.options,
            retired_options: Vec::new(),
            rules: self.validation_rules,
            ui: self.ui,
            is_searchable: self.is_searchable,
            is_filterable: self.is_filterable,
            is_required: self.is_required,
            is_variant_compatible: self.is_variant_compatible,
            affects_stock: self.affects_stock,
            affects_price: self.affects_price,
            show_in_card: self.show_in_card,
            sort_order: self.sort_order,
            is_active: self.is_active,
            created_at: None,
            updated_at: None,
        })
    }
}

/// A category binding as the admin API receives it (the category comes from the path).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingDraft {
    pub attribute_id: i64,
    #[serde(default = "yes")]
    pub is_enabled: bool,
    #[serde(default)]
    pub is_required: Option<bool>,
    #[serde(default)]
    pub is_filterable: Option<bool>,
    #[serde(default)]
    pub is_searchable: Option<bool>,
    #[serde(default)]
    pub show_in_card: Option<bool>,
    #[serde(default)]
    pub show_in_list: Option<bool>,
    #[serde(default)]
    pub custom_component: Option<String>,
    #[serde(default)]
    pub sort_order: i32,
    #[serde(default)]
    pub category_specific_options: Option<Vec<AttributeOption>>,
}

impl BindingDraft {
    /// The binding of `category_id`; refused when a field is wider than both stores hold.
    pub fn into_binding(self, category_id: i64) -> Result<CategoryBinding, Vec<FieldError>> {
        if self
            .custom_component
            .as_deref()
            .is_some_and(|component| component.chars().count() > LABEL_WIDTH)
        {
            return Err(vec![FieldError::new(
                "custom_component",
                &FieldErrorKind::InvalidValueShape(format!(
                    "custom_component is at most {LABEL_WIDTH} characters"
                )),
            )]);
        }
        Ok(CategoryBinding {
            category_id,
            attribute_id: self.attribute_id,
            is_enabled: self.is_enabled,
            is_required: self.is_required,
            is_filterable: self.is_filterable,
            is_searchable: self.is_searchable,
            show_in_card: self.show_in_card,
            show_in_list: self.show_in_list,
            custom_component: self.custom_component,
            sort_order: self.sort_order,
            category_specific_options: self.category_specific_options,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn draft(value: serde_json::Value) -> AttributeDraft {
        serde_json::from_value(value).expect("a draft")
    }

    #[test]
    fn a_minimal_draft_gets_the_legacy_defaults() {
        let attribute = draft(
            json!({"code": "engine_power", "type": "number", "display_name": {"sr": "Snaga"}}),
        )
        .into_attribute(7)
        .expect("valid");
        assert!(attribute.is_filterable && attribute.show_in_card && attribute.is_active);
        assert_eq!(attribute.name, attribute.display_name);
    }

    #[test]
    fn bad_codes_options_and_bounds_are_each_reported() {
        let errors = draft(json!({
            "code": "Engine Power", "type": "number", "display_name": {},
            "options": [{"value": "a", "label": {"sr": "A"}}],
            "validation_rules": {"min": 10, "max": 1}
        }))
        .into_attribute(7)
        .expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["code", "display_name", "options", "validation_rules"]
        );
    }

    #[test]
    fn lengths_that_no_text_can_meet_are_refused() {
        let errors = draft(json!({
            "code": "vin", "type": "text", "display_name": {"sr": "VIN"},
            "validation_rules": {"minLength": 18, "maxLength": 17}
        }))
        .into_attribute(7)
        .expect_err("minLength above maxLength");
        assert_eq!(errors[0].field, "validation_rules");
        assert!(errors[0].reason.contains("minLength 18"), "{errors:?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<AttributeDraft, _> = serde_json::from_value(
            json!({"code": "x", "type": "text", "display_name": {"sr": "X"}, "colour": 1}),
        );
        assert!(parsed.is_err());
    }
}
