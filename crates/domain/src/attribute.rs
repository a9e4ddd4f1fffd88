//! Attribute definitions: what a value means, how it is shown, which values are allowed.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::i18n::LocalizedText;
use crate::options::AttributeOption;
use crate::rules::ValidationRules;

/// A name that is not one of an enum's variants, with the accepted ones for the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{given}' (expected one of: {accepted})")]
pub struct UnknownVariant {
    pub what: &'static str,
    pub given: String,
    pub accepted: String,
}

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // Every stored value row is parsed so, on every read: the name as it is written
                // first (one `match`), then compared in place, case and spaces aside.
                match s {
                    $($text => return Ok($name::$variant),)+
                    _ => {}
                }
                let wanted = s.trim();
                Self::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(wanted)).ok_or_else(|| UnknownVariant {
                    what: $what,
                    given: s.to_owned(),
                    accepted: Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    };
}

named_enum!(
    /// The nine value types of the unified model. `color` and `size` come from the B2C
    /// variant axes; the C2C system had the other seven.
    AttributeType, "attribute type" {
        Text => "text",
        Textarea => "textarea",
        Number => "number",
        Boolean => "boolean",
        Select => "select",
        Multiselect => "multiselect",
        Date => "date",
        Color => "color",
        Size => "size",
    }
);

named_enum!(
    /// Where an attribute is used: on listings/products, as a variant axis, or both.
    Purpose, "purpose" {
        Regular => "regular",
        Variant => "variant",
        Both => "both",
    }
);

impl AttributeType {
    /// Types whose values must be one (or several) of the attribute's options when it has any.
    pub fn uses_options(self) -> bool {
        matches!(
            self,
            AttributeType::Select
                | AttributeType::Multiselect
                | AttributeType::Color
                | AttributeType::Size
        )
    }
}

/// How an attribute is presented; free-form settings the frontend interprets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default)]
    pub show_in_list: bool,
}

/// One attribute definition. `id` is the public id: attributes that came from the C2C
/// system keep their legacy id in the unified table, so clients see the same id in both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub id: i64,
    /// Stable machine name (`year`, `car_make`): the identity of an attribute across stores.
    pub code: String,
    pub name: LocalizedText,
    pub display_name: LocalizedText,
    pub attribute_type: AttributeType,
    pub purpose: Purpose,
    pub options: Vec<AttributeOption>,
    /// Options a catalogue retired (inactive in the B2C catalogue): carried with the definition
    /// so nothing of the catalogue is lost, never offered to clients or accepted in a value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_options: Vec<AttributeOption>,
    pub rules: ValidationRules,
    pub ui: UiSettings,
    pub is_searchable: bool,
    pub is_filterable: bool,
    pub is_required: bool,
    pub is_variant_compatible: bool,
    pub affects_stock: bool,
    pub affects_price: bool,
    pub show_in_card: bool,
    pub sort_order: i32,
    pub is_active: bool,
    /// When the definition was created, and last changed, as the store that holds it
    /// recorded (the legacy table records only the creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Attribute {
    /// Moves the options marked inactive out of `options` into `retired_options`.
    pub fn retire_inactive_options(mut self) -> Self {
        let (active, retired): (Vec<_>, Vec<_>) =
            self.options.drain(..).partition(|option| option.is_active);
        self.options = active;
        self.retired_options.extend(retired);
        self
    }

    /// Every option as a store keeps it: the offered ones, then the retired ones (marked).
    pub fn stored_options(&self) -> Vec<&AttributeOption> {
        self.options.iter().chain(&self.retired_options).collect()
    }

    /// A definition with the legacy defaults (filterable, shown in cards, active).
    pub fn new(id: i64, code: impl Into<String>, attribute_type: AttributeType) -> Self {
        Self {
            id,
            code: code.into(),
            name: LocalizedText::new(),
            display_name: LocalizedText::new(),
            attribute_type,
            purpose: Purpose::Regular,
            options: Vec::new(),
            retired_options: Vec::new(),
            rules: ValidationRules::default(),
            ui: UiSettings::default(),
            is_searchable: false,
            is_filterable: true,
            is_required: false,
            is_variant_compatible: false,
            affects_stock: false,
            affects_price: false,
            show_in_card: true,
            sort_order: 0,
            is_active: true,
            created_at: None,
            updated_at: None,
        }
    }
}

/// Turns a legacy machine name or label into a unified code: lower case, words joined by `_`.
/// `Car Make`, `car-make` and `CAR_MAKE` all become `car_make`.
/// Normalizes `code` where it stands: a name that already is a code (the common case, every
/// read) is left as it is, without the copy `normalize_code` makes.
pub fn normalize_code_in_place(code: &mut String) {
    if !is_normal_code(code) {
        *code = normalize_code(code);
    }
}

/// What `normalize_code` returns unchanged: lowercase ASCII letters and digits in words joined
/// by single underscores.
fn is_normal_code(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes[0] != b'_'
        && bytes[bytes.len() - 1] != b'_'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        // Not `contains("__")`: below 16 bytes, most codes, it builds a two-way searcher first.
        && !bytes.windows(2).any(|pair| pair == b"__")
}

pub fn normalize_code(name: &str) -> String {
    let mut code = String::with_capacity(name.len());
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            code.push(c);
        } else if !code.is_empty() && !code.ends_with('_') {
            code.push('_');
        }
    }
    while code.ends_with('_') {
        code.pop();
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_normalized_in_place_is_what_normalize_code_makes() {
        for name in [
            "year",
            "car_make",
            "Car Make",
            "  fuel-type ",
            "_x_",
            "a__b",
            "Цвет",
            "x2",
            "",
            "ÉTAT",
            "body_type_",
            "_",
            "a_b_2",
            "a_",
        ] {
            let mut code = name.to_owned();
            normalize_code_in_place(&mut code);
            assert_eq!(code, normalize_code(name), "{name:?}");
        }
    }

    #[test]
    fn every_type_parses_from_its_own_name() {
        for t in AttributeType::ALL {
            assert_eq!(t.as_str().parse::<AttributeType>(), Ok(*t));
            // Legacy rows also hold `Number` and ` select `.
            let shouted = format!(" {} ", t.as_str().to_ascii_uppercase());
            assert_eq!(shouted.parse::<AttributeType>(), Ok(*t), "{shouted:?}");
        }
        assert_eq!(AttributeType::ALL.len(), 9);
    }

    #[test]
    fn an_unknown_type_names_the_accepted_ones() {
        let err = "checkbox"
            .parse::<AttributeType>()
            .expect_err("must be refused");
        assert!(err.to_string().contains("text, textarea, number"));
    }

    #[test]
    fn codes_are_normalized_from_names_and_labels() {
        assert_eq!(normalize_code("Car Make"), "car_make");
        assert_eq!(normalize_code(" car-make "), "car_make");
        assert_eq!(normalize_code("CAR__MAKE!"), "car_make");
        assert_eq!(normalize_code("Veličina"), "veličina");
    }
}
