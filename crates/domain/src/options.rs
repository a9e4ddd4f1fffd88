//! Allowed values of select-like attributes, in one normalized form, and the parser that
//! reads every shape the legacy `options` column came in.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::i18n::LocalizedText;

/// One allowed value: the machine value stored in values, and its labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeOption {
    pub value: String,
    pub label: LocalizedText,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color_hex: Option<String>,
    /// The picture of a variant option (a fabric, a pattern), as the B2C catalogue keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// `false` for an option the B2C catalogue retired (`is_active`): kept with the definition,
    /// never offered or accepted (see `Attribute::retired_options`).
    #[serde(default = "active", skip_serializing_if = "is_active")]
    pub is_active: bool,
    /// Other spellings operators registered for this option (`дизель`, `БУ`). They live in a
    /// table of their own, audited, and are attached when definitions are read: never stored
    /// with the definition, never served.
    #[serde(skip)]
    pub aliases: Vec<String>,
}

fn active() -> bool {
    true
}

fn is_active(active: &bool) -> bool {
    *active
}

impl AttributeOption {
    /// An option whose Serbian label is its value, as the legacy string lists had it.
    pub fn plain(value: impl Into<String>) -> Self {
        let value = value.into();
        Self {
            label: LocalizedText::serbian(value.clone()),
            value,
            color_hex: None,
            image_url: None,
            is_active: true,
            aliases: Vec::new(),
        }
    }

    /// Whether `spelling` names this option ignoring case: its value, a label in any
    /// language, or an alias.
    pub fn is_spelled(&self, spelling: &str) -> bool {
        let wanted = folded(spelling);
        self.spellings().any(|known| folded(known) == wanted)
    }

    /// Whether `spelling` could be mistaken for this option's value, a label or an alias: the
    /// same confusable skeleton (Unicode TS #39), as `yugо` with a Cyrillic `о` is for `yugo`.
    pub fn looks_like(&self, spelling: &str) -> bool {
        let wanted = skeleton(spelling);
        self.spellings().any(|known| skeleton(known) == wanted)
    }

    fn spellings(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.value.as_str())
            .chain(self.label.iter().map(|(_, label)| label))
            .chain(self.aliases.iter().map(String::as_str))
    }
}

/// A spelling as people see it: compatibility-normalised (NFKC: the full-width `ＢＭＷ` is
/// `BMW`), without invisible characters (zero-width spaces and joiners, soft hyphens, byte
/// order marks, variation selectors), lower-cased and trimmed.
pub fn folded(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    // Most spellings are ASCII (legacy reads fold every option's labels on a near miss):
    // nothing there to normalise or to hide.
    if text.is_ascii() {
        return text.trim().to_ascii_lowercase();
    }
    text.nfkc()
        .filter(|c| !is_invisible(*c))
        .collect::<String>()
        .to_lowercase()
        .trim()
        .to_owned()
}

/// The confusable skeleton of a folded spelling (Unicode TS #39): two spellings with the same
/// skeleton can be mistaken for each other.
pub fn skeleton(text: &str) -> String {
    unicode_security::confusable_detection::skeleton(&folded(text)).collect()
}

/// Default-ignorable code points: they render as nothing.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{E0000}'..='\u{E0FFF}')
}

/// The option a legacy spelling stands for: the exact value; else the one option whose value,
/// label in any language or alias equals it ignoring case (`Automatic`, `автомат` →
/// `automatic`). `None` when no option matches, or several do: then the spelling is not certain.
pub fn option_for_spelling<'a>(options: &'a [AttributeOption], spelling: &str) -> Option<&'a str> {
    if let Some(exact) = options.iter().find(|o| o.value == spelling) {
        return Some(&exact.value);
    }
    let mut matching = options.iter().filter(|option| option.is_spelled(spelling));
    match (matching.next(), matching.next()) {
        (Some(only), None) => Some(&only.value),
        _ => None,
    }
}

/// Rewrites the option spellings of a select-like value to the option values they certainly
/// mean; spellings that are not certain stay as they are (the rules then refuse them).
pub fn canonical_spellings(options: &[AttributeOption], value: &mut crate::Value) {
    use crate::Value;
    let respell = |spelling: &mut String| {
        if let Some(option) = option_for_spelling(options, spelling)
            && option != spelling
        {
            *spelling = option.to_owned();
        }
    };
    match value {
        Value::Select(spelling) | Value::Color(spelling) | Value::Size(spelling) => {
            respell(spelling)
        }
        Value::Multiselect(spellings) => spellings.iter_mut().for_each(respell),
        _ => {}
    }
}

/// What the legacy parser found: the options, and the stray keys a few rows carried.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedOptions {
    pub options: Vec<AttributeOption>,
    /// `min`/`max` that some rows kept in `options` instead of `validation_rules`.
    pub min: Option<Json>,
    pub max: Option<Json>,
    /// Anything the parser skipped, said in words, so the backfill can report it.
    pub warnings: Vec<String>,
}

/// Reads a legacy `options` value in any of its four shapes:
/// `{"values": [..]}`, `{}`, a plain array of strings, and an array of `{label, value}`.
/// `null` means no options. Keys such as `default` and `placeholder` are ignored.
pub fn parse_legacy_options(raw: &Json) -> ParsedOptions {
    let mut parsed = ParsedOptions::default();
    match raw {
        Json::Null => {}
        Json::Array(items) => parse_items(items, &mut parsed),
        Json::Object(map) => {
            for (key, value) in map {
                match key.as_str() {
                    "values" | "options" => match value {
                        Json::Array(items) => parse_items(items, &mut parsed),
                        other => parsed
                            .warnings
                            .push(format!("'{key}' is not an array: {other}")),
                    },
                    "min" => parsed.min = Some(value.clone()),
                    "max" => parsed.max = Some(value.clone()),
                    "default" | "placeholder" => {}
                    other => parsed.warnings.push(format!("unknown key '{other}'")),
                }
            }
        }
        // A bare string is a single option only by accident; keep it visible.
        Json::String(s) => {
            parsed.warnings.push(format!("options is a string: {s:?}"));
        }
        other => parsed
            .warnings
            .push(format!("options of unexpected shape: {other}")),
    }
    parsed
}

fn parse_items(items: &[Json], parsed: &mut ParsedOptions) {
    for item in items {
        let option = match item {
            Json::String(value) => Some(AttributeOption::plain(value.trim())),
            Json::Number(n) => Some(AttributeOption::plain(n.to_string())),
            Json::Object(obj) => {
                let value = obj.get("value").and_then(json_scalar_text);
                let label = obj.get("label").and_then(json_scalar_text);
                value
                    .or_else(|| label.clone())
                    .map(|value| AttributeOption {
                        label: LocalizedText::serbian(label.unwrap_or_else(|| value.clone())),
                        color_hex: obj
                            .get("color_hex")
                            .and_then(Json::as_str)
                            .map(str::to_owned),
                        image_url: obj
                            .get("image_url")
                            .and_then(Json::as_str)
                            .map(str::to_owned),
                        // SQLite spells the catalogue's boolean as 0/1.
                        is_active: obj.get("is_active").is_none_or(|active| {
                            active
                                .as_bool()
                                .or_else(|| active.as_i64().map(|n| n != 0))
                                .unwrap_or(true)
                        }),
                        value,
                        aliases: Vec::new(),
                    })
            }
            _ => None,
        };
        match option {
            Some(option) if option.value.is_empty() => {
                parsed.warnings.push("empty option value skipped".into())
            }
            Some(option) if parsed.options.iter().any(|o| o.value == option.value) => parsed
                .warnings
                .push(format!("duplicate option '{}' skipped", option.value)),
            Some(option) => parsed.options.push(option),
            None => parsed
                .warnings
                .push(format!("option of unexpected shape skipped: {item}")),
        }
    }
}

fn json_scalar_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.trim().to_owned()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spellings_compare_the_way_people_see_them() {
        let bmw = AttributeOption::plain("bmw");
        for seen in ["BMW", "ＢＭＷ", "bmw\u{200B}", "\u{FEFF}b\u{00AD}mw "] {
            assert!(bmw.is_spelled(seen), "{seen:?}");
        }
        let yugo = AttributeOption::plain("yugo");
        assert!(
            !yugo.is_spelled("yugо"),
            "a Cyrillic о is another spelling…"
        );
        assert!(yugo.looks_like("yugо"), "…that looks the same");
        assert!(yugo.looks_like("YUGO") && !yugo.looks_like("audi"));
    }

    fn values(parsed: &ParsedOptions) -> Vec<&str> {
        parsed.options.iter().map(|o| o.value.as_str()).collect()
    }

    #[test]
    fn the_values_object_shape_is_read() {
        let parsed = parse_legacy_options(&json!({"values": ["new", "used"]}));
        assert_eq!(values(&parsed), ["new", "used"]);
        assert!(parsed.warnings.is_empty());
    }

    #[test]
    fn empty_object_and_empty_array_mean_no_options() {
        assert!(parse_legacy_options(&json!({})).options.is_empty());
        assert!(parse_legacy_options(&json!([])).options.is_empty());
        assert!(parse_legacy_options(&Json::Null).options.is_empty());
    }

    #[test]
    fn a_plain_string_array_is_read() {
        let parsed = parse_legacy_options(&json!(["petrol", "diesel"]));
        assert_eq!(values(&parsed), ["petrol", "diesel"]);
    }

    #[test]
    fn label_value_objects_keep_their_labels() {
        let parsed = parse_legacy_options(&json!([
            {"label": "Automatski", "value": "automatic"},
            {"label": "Manuelni", "value": "manual"}
        ]));
        assert_eq!(values(&parsed), ["automatic", "manual"]);
        assert_eq!(
            parsed.options[0].label.exact(crate::Language::Sr),
            Some("Automatski")
        );
    }

    #[test]
    fn stray_min_max_are_kept_and_placeholders_ignored() {
        let parsed = parse_legacy_options(&json!({
            "values": [], "min": 1950, "max": 2026, "placeholder": "Izaberite", "default": 2020
        }));
        assert_eq!(parsed.min, Some(json!(1950)));
        assert_eq!(parsed.max, Some(json!(2026)));
        assert!(parsed.warnings.is_empty());
    }

    #[test]
    fn duplicates_and_junk_are_skipped_with_a_warning() {
        let parsed = parse_legacy_options(&json!(["a", "a", true, ""]));
        assert_eq!(values(&parsed), ["a"]);
        assert_eq!(parsed.warnings.len(), 3);
    }

    #[test]
    fn spellings_that_differ_in_case_or_script_map_to_the_one_option_they_mean() {
        let automatic = AttributeOption {
            value: "automatic".into(),
            label: LocalizedText::serbian("Automatski")
                .with(crate::Language::En, "Automatic")
                .with(crate::Language::Ru, "Автомат"),
            color_hex: None,
            image_url: None,
            is_active: true,
            aliases: Vec::new(),
        };
        let options = [automatic, AttributeOption::plain("manual")];
        assert_eq!(
            option_for_spelling(&options, "automatic"),
            Some("automatic")
        );
        assert_eq!(
            option_for_spelling(&options, "Automatic"),
            Some("automatic")
        );
        assert_eq!(option_for_spelling(&options, "автомат"), Some("automatic"));
        assert_eq!(option_for_spelling(&options, "MANUAL"), Some("manual"));
        assert_eq!(option_for_spelling(&options, "poluautomatik"), None);
        // Two options answer to "auto": not certain, so no mapping.
        let twins = [
            AttributeOption::plain("Auto"),
            AttributeOption::plain("AUTO"),
        ];
        assert_eq!(option_for_spelling(&twins, "auto"), None);
        let mut value = crate::Value::Multiselect(vec!["Automatic".into(), "x".into()]);
        canonical_spellings(&options, &mut value);
        assert_eq!(
            value,
            crate::Value::Multiselect(vec!["automatic".into(), "x".into()])
        );
    }

    #[test]
    fn an_alias_maps_a_spelling_no_label_explains() {
        let mut used = AttributeOption::plain("used");
        let options_before = [used.clone(), AttributeOption::plain("new")];
        assert_eq!(option_for_spelling(&options_before, "БУ"), None);
        used.aliases.push("бу".into());
        let options = [used, AttributeOption::plain("new")];
        assert_eq!(option_for_spelling(&options, "БУ"), Some("used"));
        assert_eq!(option_for_spelling(&options, " бу "), Some("used"));
        // Aliases are the registry's, not the definition's: they never travel with it.
        let stored = serde_json::to_value(&options[0]).expect("serialize");
        assert!(stored.get("aliases").is_none(), "{stored}");
    }
}
