//! Validation rules of an attribute (min, max, lengths, pattern, required).

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;

/// A regular expression that a whole text value must match.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    anchored: Regex,
}

/// Patterns compiled so far, by source. Definitions are decoded on every write (from the rows
/// read in its transaction), and compiling a pattern costs more than the rest of a write's own
/// work; a compiled `Regex` is shared by cloning. Bounded: emptied when full.
static COMPILED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Regex>>> =
    std::sync::LazyLock::new(Default::default);
const MAX_COMPILED: usize = 1024;

/// `source` anchored and compiled, once per source while it stays among the compiled.
fn compiled(source: &str) -> Result<Regex, regex::Error> {
    let known = COMPILED
        .lock()
        .ok()
        .and_then(|patterns| patterns.get(source).cloned());
    if let Some(anchored) = known {
        return Ok(anchored);
    }
    // Anchored so that `[0-9]{5}` means "five digits", not "contains five digits".
    let anchored = Regex::new(&format!("^(?:{source})$"))?;
    if let Ok(mut patterns) = COMPILED.lock() {
        if patterns.len() >= MAX_COMPILED {
            patterns.clear();
        }
        patterns.insert(source.to_owned(), anchored.clone());
    }
    Ok(anchored)
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            source: source.to_owned(),
            anchored: compiled(source)?,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, text: &str) -> bool {
        self.anchored.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        Pattern::new(&source).map_err(serde::de::Error::custom)
    }
}

/// The checks a value must pass. `min`/`max` bound numbers; the lengths bound texts in
/// characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidationRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Pattern>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

impl ValidationRules {
    /// Reads a legacy `validation_rules` value leniently: known keys in either case style,
    /// numbers as numbers or numeric strings. What cannot be read is skipped and reported.
    pub fn from_legacy_json(raw: &Json) -> (Self, Vec<String>) {
        let mut rules = Self::default();
        let mut warnings = Vec::new();
        let Json::Object(map) = raw else {
            if !raw.is_null() {
                warnings.push(format!("validation_rules is not an object: {raw}"));
            }
            return (rules, warnings);
        };
        for (key, value) in map {
            match key.as_str() {
                "min" => rules.min = decimal_or_warn(key, value, &mut warnings),
                "max" => rules.max = decimal_or_warn(key, value, &mut warnings),
                "minLength" | "min_length" => {
                    rules.min_length = length_or_warn(key, value, &mut warnings)
                }
                "maxLength" | "max_length" => {
                    rules.max_length = length_or_warn(key, value, &mut warnings)
                }
                "pattern" => match value.as_str().map(Pattern::new) {
                    Some(Ok(pattern)) => rules.pattern = Some(pattern),
                    _ => warnings.push(format!("pattern skipped: {value}")),
                },
                "required" => rules.required = value.as_bool().unwrap_or(false),
                other => warnings.push(format!("unknown rule '{other}' skipped")),
            }
        }
        (rules, warnings)
    }
}

/// Reads an exact decimal from a JSON number or numeric string.
pub fn decimal_from_json(value: &Json) -> Option<Decimal> {
    let text = match value {
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

fn decimal_or_warn(key: &str, value: &Json, warnings: &mut Vec<String>) -> Option<Decimal> {
    let parsed = decimal_from_json(value);
    if parsed.is_none() {
        warnings.push(format!("{key} is not a number: {value}"));
    }
    parsed
}

fn length_or_warn(key: &str, value: &Json, warnings: &mut Vec<String>) -> Option<u32> {
    let parsed = decimal_from_json(value).and_then(|d| u32::try_from(d.trunc().mantissa()).ok());
    if parsed.is_none() {
        warnings.push(format!("{key} is not a length: {value}"));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn legacy_rules_accept_numbers_and_numeric_strings() {
        let (rules, warnings) = ValidationRules::from_legacy_json(
            &json!({"min": 1950, "max": "2026", "maxLength": 17}),
        );
        assert_eq!(rules.min, Some(Decimal::from(1950)));
        assert_eq!(rules.max, Some(Decimal::from(2026)));
        assert_eq!(rules.max_length, Some(17));
        assert!(warnings.is_empty());
    }

    #[test]
    fn unreadable_legacy_rules_are_reported_not_guessed() {
        let (rules, warnings) =
            ValidationRules::from_legacy_json(&json!({"min": "abc", "pattern": "(", "step": 1}));
        assert_eq!(rules, ValidationRules::default());
        assert_eq!(warnings.len(), 3);
    }

    #[test]
    fn a_pattern_is_compiled_once_and_the_compiled_stay_bounded() {
        Pattern::new("[0-9]{4}-once").expect("valid pattern");
        let held = |source: &str| COMPILED.lock().expect("not poisoned").contains_key(source);
        assert!(
            held("[0-9]{4}-once"),
            "kept for the next definition that names it"
        );
        let again = Pattern::new("[0-9]{4}-once").expect("valid pattern");
        assert!(again.matches("2024-once") && !again.matches("x2024-once"));
        assert!(Pattern::new("(unclosed").is_err());
        assert!(!held("(unclosed"), "an error is not kept");
        for n in 0..MAX_COMPILED + 10 {
            Pattern::new(&format!("bound-{n}")).expect("valid pattern");
            let held = COMPILED.lock().expect("not poisoned").len();
            assert!(held <= MAX_COMPILED, "{held} compiled patterns held");
        }
        assert!(
            Pattern::new("bound-3")
                .expect("valid pattern")
                .matches("bound-3")
        );
    }

    #[test]
    fn patterns_must_match_the_whole_text() {
        let pattern = Pattern::new("[0-9]{3}").expect("valid pattern");
        assert!(pattern.matches("123"));
        assert!(!pattern.matches("1234"));
    }

    #[test]
    fn rules_round_trip_through_their_stored_json() {
        let rules = ValidationRules {
            min: Some(Decimal::new(15, 1)),
            pattern: Some(Pattern::new("[A-Z]+").expect("valid pattern")),
            required: true,
            ..Default::default()
        };
        let json = serde_json::to_value(&rules).expect("serializes");
        assert_eq!(
            json,
            json!({"min": 1.5, "pattern": "[A-Z]+", "required": true})
        );
        let back: ValidationRules = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, rules);
    }
}
