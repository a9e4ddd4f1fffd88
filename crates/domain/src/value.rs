//! Typed attribute values and their JSON form.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value as Json;

use crate::attribute::AttributeType;
use crate::rules::decimal_from_json;
use crate::validate::FieldErrorKind;

/// The largest number the stores keep exactly: `numeric(20,5)` has 15 integer digits.
const MAX_INTEGER_DIGITS: u32 = 15;
/// Fraction digits of `numeric(20,5)`.
pub const MAX_SCALE: u32 = 5;

/// The dates both stores hold exactly: four-digit years of the common era. PostgreSQL's `date`
/// spells years before 1 as `BC` and refuses `-0001-01-01`; SQLite keeps the text, which
/// would then never reach PostgreSQL (a backfill or sync would fail on it).
pub const FIRST_DATE: NaiveDate = NaiveDate::from_ymd_opt(1, 1, 1).expect("a valid date");
pub const LAST_DATE: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a valid date");

/// One value, typed by its attribute's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `text` and `textarea`.
    Text(String),
    /// Exact decimal; equality is numeric (`1.50 == 1.5`).
    Number(Decimal),
    Boolean(bool),
    Date(NaiveDate),
    Select(String),
    /// Order as given; duplicates are rejected on input.
    Multiselect(Vec<String>),
    /// An option value, or a `#rrggbb` hex colour when the attribute has no options.
    Color(String),
    Size(String),
}

/// A value with the unit it was entered in (`km`, `m²`), when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedValue {
    pub value: Value,
    pub unit: Option<String>,
}

impl TypedValue {
    pub fn new(value: Value) -> Self {
        Self { value, unit: None }
    }

    pub fn with_unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    /// Reads a value sent by a client for an attribute of type `attribute_type`: either the
    /// bare value, or `{"value": …, "unit": "km"}`. Numbers may be sent as JSON numbers or
    /// numeric strings; both are read exactly.
    pub fn from_json(attribute_type: AttributeType, raw: &Json) -> Result<Self, FieldErrorKind> {
        let (raw_value, unit) = match raw {
            Json::Object(obj) if obj.contains_key("value") => {
                if let Some(key) = obj.keys().find(|k| *k != "value" && *k != "unit") {
                    return Err(FieldErrorKind::InvalidValueShape(format!(
                        "unexpected key '{key}'; a value object has only 'value' and 'unit'"
                    )));
                }
                let unit = match obj.get("unit") {
                    None | Some(Json::Null) => None,
                    Some(Json::String(u)) if !u.trim().is_empty() && u.chars().count() <= 20 => {
                        Some(u.trim().to_owned())
                    }
                    Some(other) => {
                        return Err(FieldErrorKind::InvalidValueShape(format!(
                            "unit must be a text of 1 to 20 characters, got {other}"
                        )));
                    }
                };
                (&obj["value"], unit)
            }
            other => (other, None),
        };
        let value = Value::from_json(attribute_type, raw_value)?;
        Ok(Self { value, unit })
    }
}

impl Value {
    pub fn from_json(attribute_type: AttributeType, raw: &Json) -> Result<Self, FieldErrorKind> {
        let wrong_type = || FieldErrorKind::WrongType {
            expected: attribute_type,
        };
        let text = || raw.as_str().map(str::to_owned).ok_or_else(wrong_type);
        match attribute_type {
            AttributeType::Text | AttributeType::Textarea => text().map(Value::Text),
            AttributeType::Number => {
                if !(raw.is_number() || raw.is_string()) {
                    return Err(wrong_type());
                }
                let number = decimal_from_json(raw).ok_or_else(wrong_type)?;
                check_precision(number)?;
                Ok(Value::Number(number))
            }
            AttributeType::Boolean => raw.as_bool().map(Value::Boolean).ok_or_else(wrong_type),
            AttributeType::Date => {
                let text = text()?;
                match NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
                    Ok(date) => check_date_range(date).map(|()| Value::Date(date)),
                    Err(_) if spells_a_distant_date(&text) => Err(FieldErrorKind::DateOutOfRange),
                    Err(_) => Err(wrong_type()),
                }
            }
            AttributeType::Select => text().map(Value::Select),
            AttributeType::Color => text().map(Value::Color),
            AttributeType::Size => text().map(Value::Size),
            AttributeType::Multiselect => {
                let items = raw.as_array().ok_or_else(wrong_type)?;
                let mut chosen = Vec::with_capacity(items.len());
                for item in items {
                    let item = item.as_str().ok_or_else(wrong_type)?;
                    if chosen.iter().any(|c| c == item) {
                        return Err(FieldErrorKind::DuplicateOption(item.to_owned()));
                    }
                    chosen.push(item.to_owned());
                }
                Ok(Value::Multiselect(chosen))
            }
        }
    }

    /// The JSON a client receives. Numbers are exact JSON numbers without trailing zeros.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Text(s) | Value::Select(s) | Value::Color(s) | Value::Size(s) => {
                Json::String(s.clone())
            }
            Value::Number(d) => serde_json::to_value(d.normalize()).unwrap_or(Json::Null),
            Value::Boolean(b) => Json::Bool(*b),
            Value::Date(d) => Json::String(d.format("%Y-%m-%d").to_string()),
            Value::Multiselect(items) => {
                Json::Array(items.iter().map(|i| Json::String(i.clone())).collect())
            }
        }
    }

    /// The same JSON as `to_json`, written straight to a serializer without building the tree
    /// (an uncached read encodes every value of the entity).
    pub fn as_json(&self) -> JsonOf<'_> {
        JsonOf(self)
    }

    /// Whether this value can belong to an attribute of that type.
    pub fn fits(&self, attribute_type: AttributeType) -> bool {
        matches!(
            (self, attribute_type),
            (
                Value::Text(_),
                AttributeType::Text | AttributeType::Textarea
            ) | (Value::Number(_), AttributeType::Number)
                | (Value::Boolean(_), AttributeType::Boolean)
                | (Value::Date(_), AttributeType::Date)
                | (Value::Select(_), AttributeType::Select)
                | (Value::Multiselect(_), AttributeType::Multiselect)
                | (Value::Color(_), AttributeType::Color)
                | (Value::Size(_), AttributeType::Size)
        )
    }

    /// The option values this value chooses, for types that choose options.
    pub fn chosen_options(&self) -> Vec<&str> {
        match self {
            Value::Select(s) | Value::Color(s) | Value::Size(s) => vec![s.as_str()],
            Value::Multiselect(items) => items.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// Refuses numbers that `numeric(20,5)` would round or reject, so what is stored is what was sent.
pub fn check_precision(number: Decimal) -> Result<(), FieldErrorKind> {
    let number = number.normalize();
    let integer_digits = number
        .trunc()
        .abs()
        .to_string()
        .trim_start_matches('0')
        .len() as u32;
    if number.scale() > MAX_SCALE || integer_digits > MAX_INTEGER_DIGITS {
        return Err(FieldErrorKind::TooPrecise {
            max_integer_digits: MAX_INTEGER_DIGITS,
            max_fraction_digits: MAX_SCALE,
        });
    }
    Ok(())
}

/// Refuses dates outside [`FIRST_DATE`]..=[`LAST_DATE`], which one of the stores cannot hold.
pub fn check_date_range(date: NaiveDate) -> Result<(), FieldErrorKind> {
    if (FIRST_DATE..=LAST_DATE).contains(&date) {
        Ok(())
    } else {
        Err(FieldErrorKind::DateOutOfRange)
    }
}

/// `+10000-01-01`, `-4713-11-24`: a year-month-day the parser may not take, whose year is
/// signed or longer than four digits — out of range rather than not a date.
fn spells_a_distant_date(text: &str) -> bool {
    let unsigned = text.trim_start_matches(['+', '-']);
    let mut parts = unsigned.split('-');
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(year), Some(month), Some(day), None) => {
            all_digits(year)
                && all_digits(month)
                && all_digits(day)
                && (unsigned.len() != text.len() || year.len() > 4)
        }
        _ => false,
    }
}

/// All values of one entity, keyed by attribute code.
pub type EntityValues = BTreeMap<String, TypedValue>;

/// A value serialized as `Value::to_json` would make it (see `Value::as_json`).
#[derive(Debug, Clone, Copy)]
pub struct JsonOf<'a>(&'a Value);

impl serde::Serialize for JsonOf<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Text(s) | Value::Select(s) | Value::Color(s) | Value::Size(s) => {
                serializer.serialize_str(s)
            }
            Value::Number(d) => {
                let d = d.normalize();
                // A whole number is written as an integer: the same digits, without formatting
                // the decimal into a string and parsing that back as a JSON number.
                match i64::try_from(d.mantissa()) {
                    Ok(whole) if d.scale() == 0 => serializer.serialize_i64(whole),
                    _ => serde::Serialize::serialize(&d, serializer),
                }
            }
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::Date(d) => serializer.collect_str(&d.format("%Y-%m-%d")),
            Value::Multiselect(items) => serde::Serialize::serialize(items, serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use serde_json::json;

    use super::*;

    #[test]
    fn a_value_written_straight_is_the_json_to_json_builds() {
        let number = |text: &str| Value::Number(text.parse().expect("decimal"));
        for value in [
            Value::Text("Ana \"A\" \u{1F600}\n".into()),
            Value::Select("diesel".into()),
            Value::Color("#ff0000".into()),
            Value::Size("XL".into()),
            number("2019"),
            number("120000.50000"),
            number("-0.00100"),
            number("123456789012345.12345"),
            number("0"),
            number("-0"),
            number("-42"),
            number("2019.000"),
            number("120000"),
            number("9223372036854775807"),
            number("9223372036854775808"),
            number("-9223372036854775809"),
            number("99999999999999999999"),
            Value::Boolean(false),
            Value::Date(NaiveDate::from_ymd_opt(2022, 11, 1).expect("date")),
            Value::Multiselect(vec!["red".into(), "blue".into()]),
            Value::Multiselect(Vec::new()),
        ] {
            assert_eq!(
                serde_json::to_string(&value.as_json()).expect("encodes"),
                value.to_json().to_string(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn numeric_20_5_values_round_trip_exactly_through_json() {
        let raw: Json = serde_json::from_str("123456789012345.12345").expect("json");
        let value = Value::from_json(AttributeType::Number, &raw).expect("valid");
        assert_eq!(
            value,
            Value::Number(Decimal::from_str("123456789012345.12345").expect("decimal"))
        );
        assert_eq!(value.to_json().to_string(), "123456789012345.12345");
    }

    #[test]
    fn numbers_sent_as_strings_are_read_exactly() {
        let value = Value::from_json(AttributeType::Number, &json!("0.00001")).expect("valid");
        assert_eq!(value.to_json().to_string(), "0.00001");
    }

    #[test]
    fn numbers_beyond_numeric_20_5_are_refused() {
        for raw in ["1234567890123456", "0.000001"] {
            let raw: Json = serde_json::from_str(raw).expect("json");
            assert!(matches!(
                Value::from_json(AttributeType::Number, &raw),
                Err(FieldErrorKind::TooPrecise { .. })
            ));
        }
    }

    #[test]
    fn trailing_zeros_do_not_make_numbers_differ() {
        let a = Value::Number(Decimal::from_str("2015.00000").expect("decimal"));
        assert_eq!(a, Value::Number(Decimal::from(2015)));
        assert_eq!(a.to_json().to_string(), "2015");
    }

    #[test]
    fn a_value_object_carries_its_unit() {
        let typed = TypedValue::from_json(
            AttributeType::Number,
            &json!({"value": 120000, "unit": "km"}),
        )
        .expect("valid");
        assert_eq!(
            typed,
            TypedValue::new(Value::Number(Decimal::from(120000))).with_unit("km")
        );
    }

    #[test]
    fn a_value_object_with_stray_keys_is_refused() {
        assert!(
            TypedValue::from_json(AttributeType::Number, &json!({"value": 1, "units": "km"}))
                .is_err()
        );
    }

    #[test]
    fn wrong_json_types_are_refused_per_attribute_type() {
        let cases = [
            (AttributeType::Number, json!(true)),
            (AttributeType::Number, json!("twelve")),
            (AttributeType::Boolean, json!("true")),
            (AttributeType::Text, json!(12)),
            (AttributeType::Date, json!("26.11.2026")),
            (AttributeType::Multiselect, json!("red,blue")),
            (AttributeType::Select, json!(["a"])),
        ];
        for (attribute_type, raw) in cases {
            assert!(
                matches!(
                    Value::from_json(attribute_type, &raw),
                    Err(FieldErrorKind::WrongType { .. })
                ),
                "{attribute_type} accepted {raw}"
            );
        }
    }

    #[test]
    fn dates_outside_years_1_to_9999_are_refused_as_out_of_range() {
        for raw in ["-0001-01-01", "0000-01-01", "+10000-01-01", "-4713-11-24"] {
            assert_eq!(
                Value::from_json(AttributeType::Date, &json!(raw)),
                Err(FieldErrorKind::DateOutOfRange),
                "{raw}"
            );
        }
        for raw in ["0001-01-01", "9999-12-31", "2024-02-29"] {
            let value = Value::from_json(AttributeType::Date, &json!(raw)).expect(raw);
            assert_eq!(value.to_json(), json!(raw));
        }
    }

    #[test]
    fn multiselect_refuses_a_repeated_option() {
        assert_eq!(
            Value::from_json(AttributeType::Multiselect, &json!(["red", "red"])),
            Err(FieldErrorKind::DuplicateOption("red".into()))
        );
    }
}
