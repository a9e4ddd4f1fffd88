//! Row shapes shared by both backends, and their translation into domain objects.
//!
//! Both backends select decimals and dates as text (PostgreSQL casts, SQLite stores text),
//! so one set of rows and one translation serve both, and `numeric(20,5)` stays exact.

use std::borrow::Cow;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use domain::attribute::{UiSettings, normalize_code, normalize_code_in_place};
use domain::{
    Attribute, AttributeOption, AttributeType, CategoryBinding, EntityValues, Language,
    LocalizedText, Purpose, TypedValue, ValidationRules, Value, parse_legacy_options,
};
use rust_decimal::Decimal;
use serde_json::Value as Json;
use sqlx::types::Json as SqlJson;

use crate::error::{Result, StorageError};

/// The attributes and bindings that apply along a category chain, before resolution.
#[derive(Debug, Default)]
pub(crate) struct SchemaParts {
    pub chain: Vec<i64>,
    pub bindings: Vec<CategoryBinding>,
    pub attributes: Vec<Attribute>,
}

/// One row of the legacy schema query: a category of the chain, joined with one of its
/// bindings and that binding's definition (all `None` when the category binds nothing).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LegacySchemaRow {
    pub chain_id: i32,
    pub attribute_id: Option<i32>,
    pub b_is_enabled: Option<bool>,
    pub b_is_required: Option<bool>,
    pub b_sort_order: Option<i32>,
    pub b_custom_component: Option<String>,
    pub b_show_in_card: Option<bool>,
    pub b_show_in_list: Option<bool>,
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub attribute_type: Option<String>,
    pub options: Option<SqlJson<Json>>,
    pub validation_rules: Option<SqlJson<Json>>,
    pub is_searchable: Option<bool>,
    pub is_filterable: Option<bool>,
    pub is_required: Option<bool>,
    pub sort_order: Option<i32>,
    pub custom_component: Option<String>,
    pub show_in_card: Option<bool>,
    pub show_in_list: Option<bool>,
    pub icon: Option<String>,
    pub created_at: Option<String>,
    pub affects_stock: Option<bool>,
    pub is_variant_compatible: Option<bool>,
    /// A B2C variant axis has the same name: the unified attribute serves both purposes.
    pub has_variant_axis: Option<bool>,
    /// `{"en:display_name": "Year", "ru:option.automatic": "Автомат", …}`.
    pub translations: Option<SqlJson<Json>>,
    /// `{"дизель": "diesel", …}`: the aliases operators registered.
    pub aliases: Option<SqlJson<Json>>,
}

/// Gives each option the aliases registered for its value (`{"alias": "option value"}`).
fn with_aliases(mut options: Vec<AttributeOption>, aliases: Option<&Json>) -> Vec<AttributeOption> {
    if let Some(Json::Object(aliases)) = aliases {
        for (alias, value) in aliases {
            if let Some(option) = options
                .iter_mut()
                .find(|o| Some(o.value.as_str()) == value.as_str())
            {
                option.aliases.push(alias.clone());
            }
        }
        for option in &mut options {
            option.aliases.sort();
        }
    }
    options
}

/// Legacy translations are keyed `language:field`; `display_name` labels the attribute and
/// `option.{value}` labels one option.
fn legacy_labels(translations: Option<&Json>, field: &str, source: &str) -> LocalizedText {
    let mut labels = LocalizedText::serbian(source);
    if let Some(Json::Object(map)) = translations {
        for language in Language::ALL {
            if let Some(text) = map
                .get(&format!("{language}:{field}"))
                .and_then(Json::as_str)
            {
                labels.set(language, text);
            }
        }
    }
    labels
}

impl LegacySchemaRow {
    fn binding(&self) -> Option<CategoryBinding> {
        Some(CategoryBinding {
            category_id: self.chain_id.into(),
            attribute_id: self.attribute_id?.into(),
            is_enabled: self.b_is_enabled.unwrap_or(true),
            is_required: self.b_is_required,
            is_filterable: None,
            is_searchable: None,
            show_in_card: self.b_show_in_card,
            show_in_list: self.b_show_in_list,
            custom_component: self.b_custom_component.clone(),
            sort_order: self.b_sort_order.unwrap_or(0),
            category_specific_options: None,
        })
    }

    /// The domain definition of this row's attribute. Defects in legacy data are coped with
    /// (and logged); only an unknown type makes the definition unusable.
    fn attribute(&self) -> Option<Attribute> {
        let id = i64::from(self.attribute_id?);
        let name = self.name.as_deref()?;
        let attribute_type = match AttributeType::from_str(self.attribute_type.as_deref()?) {
            Ok(t) => t,
            Err(err) => {
                tracing::warn!(attribute_id = id, %err, "legacy attribute skipped");
                return None;
            }
        };
        let translations = self.translations.as_ref().map(|j| &j.0);
        let display = self.display_name.as_deref().unwrap_or(name);
        let labels = legacy_labels(translations, "display_name", display);
        let parsed = parse_legacy_options(self.options.as_ref().map_or(&Json::Null, |j| &j.0));
        let (mut rules, rule_warnings) = ValidationRules::from_legacy_json(
            self.validation_rules.as_ref().map_or(&Json::Null, |j| &j.0),
        );
        // A few rows kept min/max among the options; the rules column wins when both exist.
        rules.min = rules.min.or_else(|| {
            parsed
                .min
                .as_ref()
                .and_then(domain::rules::decimal_from_json)
        });
        rules.max = rules.max.or_else(|| {
            parsed
                .max
                .as_ref()
                .and_then(domain::rules::decimal_from_json)
        });
        for warning in parsed.warnings.iter().chain(&rule_warnings) {
            tracing::debug!(attribute_id = id, warning, "legacy attribute data defect");
        }
        let options = with_aliases(
            translated_options(parsed.options, translations),
            self.aliases.as_ref().map(|j| &j.0),
        );
        Some(Attribute {
            id,
            code: normalize_code(name),
            name: labels.clone(),
            display_name: labels,
            attribute_type,
            purpose: if self.has_variant_axis == Some(true) {
                Purpose::Both
            } else {
                Purpose::Regular
            },
            options,
            retired_options: Vec::new(),
            rules,
            ui: UiSettings {
                custom_component: self.custom_component.clone(),
                icon: self.icon.clone(),
                show_in_list: self.show_in_list.unwrap_or(false),
            },
            is_searchable: self.is_searchable.unwrap_or(false),
            is_filterable: self.is_filterable.unwrap_or(true),
            is_required: self.is_required.unwrap_or(false),
            is_variant_compatible: self.is_variant_compatible.unwrap_or(false),
            affects_stock: self.affects_stock.unwrap_or(false),
            affects_price: false,
            show_in_card: self.show_in_card.unwrap_or(true),
            sort_order: self.sort_order.unwrap_or(0),
            is_active: true,
            created_at: timestamp(self.created_at.as_deref()),
            updated_at: None,
        })
    }
}

/// A timestamp as either backend writes it in text: PostgreSQL's `2025-08-03 10:00:00[.f][+00]`
/// (a column without time zone is taken as UTC), SQLite's RFC 3339, and JSON's
/// `2025-08-03T10:00:00[.f]` without a zone.
pub(crate) fn timestamp(text: Option<&str>) -> Option<DateTime<Utc>> {
    let text = text?.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Ok(at) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(at.with_timezone(&Utc));
    }
    match NaiveDateTime::parse_from_str(&text.replacen('T', " ", 1), "%Y-%m-%d %H:%M:%S%.f") {
        Ok(at) => Some(at.and_utc()),
        Err(err) => {
            tracing::debug!(text, %err, "unreadable timestamp left out");
            None
        }
    }
}

/// A timestamp column read as text, handed on in RFC 3339 whichever backend stored it:
/// PostgreSQL's text form (`2026-12-05 14:03:08.12+00`) is not, SQLite's is.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct TimestampText(String);

impl From<TimestampText> for String {
    fn from(TimestampText(text): TimestampText) -> String {
        rfc3339(text)
    }
}

/// `text` in RFC 3339 (UTC, `Z`, always six fractional digits so that the text sorts as the
/// time does), or as it is when it is no timestamp either backend writes.
pub(crate) fn rfc3339(text: String) -> String {
    match timestamp(Some(&text)) {
        Some(at) => at.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => text,
    }
}

/// Legacy options with their English and Russian labels from the translations
/// (`option.{value}` fields); the Serbian label is the one the options column held.
fn translated_options(
    options: Vec<AttributeOption>,
    translations: Option<&Json>,
) -> Vec<AttributeOption> {
    options
        .into_iter()
        .map(|option| {
            let serbian = option
                .label
                .get(Language::Sr)
                .unwrap_or(&option.value)
                .to_owned();
            AttributeOption {
                label: legacy_labels(translations, &format!("option.{}", option.value), &serbian),
                ..option
            }
        })
        .collect()
}

/// Collects the chain (in query order: the category first), bindings and definitions.
pub(crate) fn legacy_schema_parts(rows: &[LegacySchemaRow]) -> SchemaParts {
    let mut parts = SchemaParts::default();
    for row in rows {
        let category = i64::from(row.chain_id);
        if parts.chain.last() != Some(&category) {
            parts.chain.push(category);
        }
        if let (Some(binding), Some(attribute)) = (row.binding(), row.attribute()) {
            parts.bindings.push(binding);
            if !parts.attributes.iter().any(|a| a.id == attribute.id) {
                parts.attributes.push(attribute);
            }
        }
    }
    parts
}

/// One row of the unified schema query, shaped like [`LegacySchemaRow`].
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UnifiedSchemaRow {
    pub chain_id: i32,
    pub attribute_id: Option<i32>,
    pub b_is_enabled: Option<bool>,
    pub b_is_required: Option<bool>,
    pub b_is_filterable: Option<bool>,
    pub b_is_searchable: Option<bool>,
    pub b_show_in_card: Option<bool>,
    pub b_show_in_list: Option<bool>,
    pub b_custom_component: Option<String>,
    pub b_sort_order: Option<i32>,
    pub b_category_specific_options: Option<SqlJson<Vec<AttributeOption>>>,
    pub code: Option<String>,
    pub name: Option<SqlJson<LocalizedText>>,
    pub display_name: Option<SqlJson<LocalizedText>>,
    pub attribute_type: Option<String>,
    pub purpose: Option<String>,
    pub options: Option<SqlJson<Vec<AttributeOption>>>,
    pub validation_rules: Option<SqlJson<ValidationRules>>,
    pub ui_settings: Option<SqlJson<UiSettings>>,
    pub is_searchable: Option<bool>,
    pub is_filterable: Option<bool>,
    pub is_required: Option<bool>,
    pub is_variant_compatible: Option<bool>,
    pub affects_stock: Option<bool>,
    pub affects_price: Option<bool>,
    pub show_in_card: Option<bool>,
    pub sort_order: Option<i32>,
    pub is_active: Option<bool>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub aliases: Option<SqlJson<Json>>,
}

impl UnifiedSchemaRow {
    fn binding(&self) -> Option<CategoryBinding> {
        Some(CategoryBinding {
            category_id: self.chain_id.into(),
            attribute_id: self.attribute_id?.into(),
            is_enabled: self.b_is_enabled.unwrap_or(true),
            is_required: self.b_is_required,
            is_filterable: self.b_is_filterable,
            is_searchable: self.b_is_searchable,
            show_in_card: self.b_show_in_card,
            show_in_list: self.b_show_in_list,
            custom_component: self.b_custom_component.clone(),
            sort_order: self.b_sort_order.unwrap_or(0),
            category_specific_options: self
                .b_category_specific_options
                .clone()
                .map(|j| with_aliases(j.0, self.aliases.as_ref().map(|j| &j.0))),
        })
    }

    fn attribute(&self) -> Result<Option<Attribute>> {
        let (Some(id), Some(code), Some(attribute_type)) = (
            self.attribute_id,
            self.code.as_ref(),
            self.attribute_type.as_deref(),
        ) else {
            return Ok(None);
        };
        let corrupt = |e: domain::UnknownVariant| {
            StorageError::CorruptData(format!("unified attribute {id}: {e}"))
        };
        Ok(Some(
            Attribute {
                id: id.into(),
                code: code.clone(),
                name: self.name.clone().map(|j| j.0).unwrap_or_default(),
                display_name: self.display_name.clone().map(|j| j.0).unwrap_or_default(),
                attribute_type: attribute_type.parse().map_err(corrupt)?,
                purpose: self
                    .purpose
                    .as_deref()
                    .unwrap_or("regular")
                    .parse()
                    .map_err(corrupt)?,
                options: with_aliases(
                    self.options.clone().map(|j| j.0).unwrap_or_default(),
                    self.aliases.as_ref().map(|j| &j.0),
                ),
                retired_options: Vec::new(),
                rules: self
                    .validation_rules
                    .clone()
                    .map(|j| j.0)
                    .unwrap_or_default(),
                ui: self.ui_settings.clone().map(|j| j.0).unwrap_or_default(),
                is_searchable: self.is_searchable.unwrap_or(false),
                is_filterable: self.is_filterable.unwrap_or(true),
                is_required: self.is_required.unwrap_or(false),
                is_variant_compatible: self.is_variant_compatible.unwrap_or(false),
                affects_stock: self.affects_stock.unwrap_or(false),
                affects_price: self.affects_price.unwrap_or(false),
                show_in_card: self.show_in_card.unwrap_or(true),
                sort_order: self.sort_order.unwrap_or(0),
                is_active: self.is_active.unwrap_or(true),
                created_at: timestamp(self.created_at.as_deref()),
                updated_at: timestamp(self.updated_at.as_deref()),
            }
            .retire_inactive_options(),
        ))
    }
}

pub(crate) fn unified_schema_parts(rows: &[UnifiedSchemaRow]) -> Result<SchemaParts> {
    let mut parts = SchemaParts::default();
    for row in rows {
        let category = i64::from(row.chain_id);
        if parts.chain.last() != Some(&category) {
            parts.chain.push(category);
        }
        if let (Some(binding), Some(attribute)) = (row.binding(), row.attribute()?) {
            parts.bindings.push(binding);
            if !parts.attributes.iter().any(|a| a.id == attribute.id) {
                parts.attributes.push(attribute);
            }
        }
    }
    Ok(parts)
}

/// One value row, from either store; `code` is `None` on the row that only proves the
/// entity exists (the entity has no values, or none that join to a definition).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ValueRow {
    pub code: Option<String>,
    pub attribute_type: Option<String>,
    pub text_value: Option<String>,
    pub numeric_value: Option<String>,
    pub boolean_value: Option<bool>,
    pub date_value: Option<String>,
    pub json_value: Option<SqlJson<Json>>,
    pub unit: Option<String>,
}

/// The columns one value is stored in, in both stores' value tables.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ValueColumns {
    pub text_value: Option<String>,
    pub numeric_value: Option<String>,
    pub boolean_value: Option<bool>,
    pub date_value: Option<String>,
    pub json_value: Option<Json>,
    pub unit: Option<String>,
    /// Legacy's `value_type`: 'numeric' for numbers, else 'text'.
    pub legacy_value_type: &'static str,
}

impl ValueColumns {
    /// Unified columns: each type in its own column, multiselect as a JSON array.
    pub fn unified(typed: &TypedValue) -> Self {
        let mut columns = Self {
            unit: typed.unit.clone(),
            legacy_value_type: "text",
            ..Self::default()
        };
        match &typed.value {
            Value::Text(s) | Value::Select(s) | Value::Color(s) | Value::Size(s) => {
                columns.text_value = Some(s.clone())
            }
            Value::Number(d) => {
                columns.numeric_value = Some(d.normalize().to_string());
                columns.legacy_value_type = "numeric";
            }
            Value::Boolean(b) => columns.boolean_value = Some(*b),
            Value::Date(d) => columns.date_value = Some(d.format("%Y-%m-%d").to_string()),
            Value::Multiselect(_) => columns.json_value = Some(typed.value.to_json()),
        }
        columns
    }

    /// Legacy columns, as the legacy readers expect: dates and choices in `text_value`,
    /// multiselect also joined into `text_value` (the legacy frontend reads only that).
    pub fn legacy(typed: &TypedValue) -> Self {
        let mut columns = Self::unified(typed);
        if let Some(date) = columns.date_value.take() {
            columns.text_value = Some(date);
        }
        if let Value::Multiselect(items) = &typed.value {
            columns.text_value = Some(items.join(","));
        }
        columns
    }
}

impl ValueRow {
    /// The row's stored columns in words, for a quarantine entry.
    pub(crate) fn raw_text(&self) -> String {
        let mut parts = Vec::new();
        let mut push = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                parts.push(format!("{name}={value}"));
            }
        };
        push("text", self.text_value.clone());
        push("numeric", self.numeric_value.clone());
        push("boolean", self.boolean_value.map(|b| b.to_string()));
        push("date", self.date_value.clone());
        push("json", self.json_value.as_ref().map(|j| j.0.to_string()));
        push("unit", self.unit.clone());
        if parts.is_empty() {
            "(all value columns empty)".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// The row's value as legacy reads showed it to users (`Volkswagen`, `456`, `150000 km`);
    /// `None` for a row that shows nothing.
    pub(crate) fn shown_text(&self) -> Option<String> {
        let number = self.numeric_value.as_deref().map(|n| {
            let n = n.trim();
            let n = if n.contains('.') {
                n.trim_end_matches('0').trim_end_matches('.')
            } else {
                n
            };
            match self.unit.as_deref().map(str::trim) {
                Some(unit) if !unit.is_empty() => format!("{n} {unit}"),
                _ => n.to_owned(),
            }
        });
        let json = self.json_value.as_ref().and_then(|j| shown_json(&j.0));
        [
            self.text_value.as_deref().map(str::trim).map(str::to_owned),
            number,
            self.boolean_value.map(|b| b.to_string()),
            self.date_value.clone(),
            json,
        ]
        .into_iter()
        .flatten()
        .find(|text| !text.is_empty())
    }

    /// The typed value of a row, read as the attribute's type says. Legacy defects are
    /// coped with: numbers tagged 'text', multiselect kept as one comma-separated string,
    /// booleans as text. A row that holds no usable value gives `None`.
    pub fn typed_value(&self) -> Option<(String, TypedValue)> {
        self.borrowed().typed_value()
    }

    /// The same, taking the row: its code and unit move instead of being copied (the reads').
    pub fn into_typed_value(self) -> Option<(String, TypedValue)> {
        let value = self.value()?;
        Some((
            self.code?,
            TypedValue {
                value,
                unit: self.unit,
            },
        ))
    }

    fn value(&self) -> Option<Value> {
        self.borrowed().value()
    }

    fn borrowed(&self) -> ValueRowRef<'_> {
        ValueRowRef {
            code: self.code.as_deref(),
            attribute_type: self.attribute_type.as_deref(),
            text_value: self.text_value.as_deref(),
            numeric_value: self.numeric_value.as_deref(),
            boolean_value: self.boolean_value,
            date_value: self.date_value.as_deref(),
            json_value: self.json_value.as_ref().map(|j| Cow::Borrowed(&j.0)),
            unit: self.unit.as_deref(),
        }
    }
}

/// A value row's columns as the driver's row holds them, in [`ValueRow`]'s order: a
/// single entity's read builds each value from these and copies only what the value keeps
/// (its code, text and unit), where decoding into a [`ValueRow`] copied every column first —
/// the type and the number only to be parsed and dropped.
pub(crate) struct ValueRowRef<'r> {
    code: Option<&'r str>,
    attribute_type: Option<&'r str>,
    text_value: Option<&'r str>,
    numeric_value: Option<&'r str>,
    boolean_value: Option<bool>,
    date_value: Option<&'r str>,
    json_value: Option<Cow<'r, Json>>,
    unit: Option<&'r str>,
}

impl<'r> ValueRowRef<'r> {
    /// The row's columns by position, decoded without sqlx's per-value type check: the
    /// statements that read these rows (`entity_values`) cast their columns to the types read
    /// here, and the check — a search of the column's type among those a `&str` accepts, for
    /// each of 8 columns of each row — took 6 % of an uncached read's instructions. The tests
    /// that read every attribute type from both stores, on both backends, hold the statements
    /// to these types.
    pub(crate) fn decode<R>(row: &'r R) -> std::result::Result<Self, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        &'r str: sqlx::Decode<'r, R::Database>,
        bool: sqlx::Decode<'r, R::Database>,
        SqlJson<Json>: sqlx::Decode<'r, R::Database>,
    {
        Ok(Self {
            code: row.try_get_unchecked(0)?,
            attribute_type: row.try_get_unchecked(1)?,
            text_value: row.try_get_unchecked(2)?,
            numeric_value: row.try_get_unchecked(3)?,
            boolean_value: row.try_get_unchecked(4)?,
            date_value: row.try_get_unchecked(5)?,
            json_value: row
                .try_get_unchecked::<Option<SqlJson<Json>>, _>(6)?
                .map(|j| Cow::Owned(j.0)),
            unit: row.try_get_unchecked(7)?,
        })
    }

    /// The row's code and typed value (see [`ValueRow::typed_value`]).
    pub(crate) fn typed_value(&self) -> Option<(String, TypedValue)> {
        let value = self.value()?;
        Some((
            self.code?.to_owned(),
            TypedValue {
                value,
                unit: self.unit.map(str::to_owned),
            },
        ))
    }

    fn value(&self) -> Option<Value> {
        let code = self.code?;
        let attribute_type = AttributeType::from_str(self.attribute_type?).ok()?;
        let text = self.text_value.map(str::trim).filter(|t| !t.is_empty());
        let json = self.json_value.as_deref().filter(|j| !j.is_null());
        let value = match attribute_type {
            AttributeType::Text | AttributeType::Textarea => {
                text.map(|t| Value::Text(t.to_owned()))
            }
            AttributeType::Number => self
                .numeric_value
                .or(text)
                .and_then(|n| Decimal::from_str(n.trim()).ok())
                .map(Value::Number),
            AttributeType::Boolean => self
                .boolean_value
                .or_else(|| text.and_then(parse_bool))
                .map(Value::Boolean),
            AttributeType::Date => self
                .date_value
                .or(text)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                .map(Value::Date),
            AttributeType::Select => text.map(|t| Value::Select(t.to_owned())),
            AttributeType::Color => text.map(|t| Value::Color(t.to_owned())),
            AttributeType::Size => text.map(|t| Value::Size(t.to_owned())),
            AttributeType::Multiselect => match json {
                Some(Json::Array(items)) => Some(Value::Multiselect(
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_owned))
                        .collect(),
                )),
                _ => text.map(|t| Value::Multiselect(split_list(t))),
            },
        };
        if value.is_none() {
            tracing::debug!(code, "value row without a usable value skipped");
        }
        value
    }
}

/// The values of one entity's rows, each decoded in place (`ValueRowRef::decode`); `None` when
/// there is no row, so no such entity. `normalize_codes`: the codes are legacy names.
pub(crate) fn entity_values_of_rows<'r>(
    rows: impl ExactSizeIterator<Item = std::result::Result<ValueRowRef<'r>, sqlx::Error>>,
    normalize_codes: bool,
) -> Result<Option<EntityValues>> {
    if rows.len() == 0 {
        return Ok(None);
    }
    let mut values = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some((mut code, typed)) = row?.typed_value() {
            if normalize_codes {
                normalize_code_in_place(&mut code);
            }
            values.push((code, typed));
        }
    }
    // Built at once from the rows, sorted, instead of one insert (a search, a shift) a row; of
    // rows with the same code the last wins, as with inserts (`collect` sorts stably and keeps
    // the last of equal keys).
    Ok(Some(values.into_iter().collect()))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "da" => Some(true),
        "false" | "0" | "no" | "ne" => Some(false),
        _ => None,
    }
}

/// Splits a legacy multiselect string (`"red,blue"`, `"red, blue"`) into options.
pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A value as the B2C JSON columns hold it: bare JSON, or `{"value", "unit"}` with a unit.
pub(crate) fn json_document_value(typed: &TypedValue) -> Json {
    match &typed.unit {
        None => typed.value.to_json(),
        Some(unit) => serde_json::json!({"value": typed.value.to_json(), "unit": unit}),
    }
}

/// Reads a value from a B2C JSON document for an attribute of the given type.
pub(crate) fn typed_from_document(attribute_type: AttributeType, raw: &Json) -> Option<TypedValue> {
    let (raw, unit) = match raw {
        Json::Object(obj) if obj.contains_key("value") => (
            &obj["value"],
            obj.get("unit").and_then(Json::as_str).map(str::to_owned),
        ),
        other => (other, None),
    };
    // Variant documents hold one colour as a string where the unified type is a list.
    let value = match (attribute_type, raw) {
        (AttributeType::Multiselect, Json::String(s)) => Value::Multiselect(split_list(s)),
        _ => Value::from_json(attribute_type, raw).ok()?,
    };
    Some(TypedValue { value, unit })
}

/// Every legacy C2C definition (schema rows without bindings).
pub(crate) fn legacy_catalog(rows: &[LegacySchemaRow]) -> Vec<Attribute> {
    rows.iter().filter_map(LegacySchemaRow::attribute).collect()
}

pub(crate) fn unified_catalog(rows: &[UnifiedSchemaRow]) -> Result<Vec<Attribute>> {
    rows.iter()
        .filter_map(|row| row.attribute().transpose())
        .collect()
}

/// A B2C variant axis of its own (no C2C definition shares its name).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct VariantAxisRow {
    pub id: i32,
    pub name: String,
    pub display_name: String,
    pub attribute_type: String,
    pub is_required: bool,
    pub sort_order: i32,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub affects_stock: bool,
    pub translations: Option<SqlJson<Json>>,
    pub options: Option<SqlJson<Json>>,
    pub aliases: Option<SqlJson<Json>>,
}

/// Unified ids of variant-only axes: clear of C2C ids, the same in both stores.
pub const VARIANT_AXIS_ID_OFFSET: i64 = 1_000_000;

impl VariantAxisRow {
    pub(crate) fn attribute(&self) -> Option<Attribute> {
        let attribute_type = AttributeType::from_str(&self.attribute_type).ok()?;
        let translations = self.translations.as_ref().map(|j| &j.0);
        let labels = legacy_labels(translations, "display_name", &self.display_name);
        let parsed = parse_legacy_options(self.options.as_ref().map_or(&Json::Null, |j| &j.0));
        let options = with_aliases(
            translated_options(parsed.options, translations),
            self.aliases.as_ref().map(|j| &j.0),
        );
        Some(
            Attribute {
                name: labels.clone(),
                display_name: labels,
                purpose: Purpose::Variant,
                options,
                is_required: self.is_required,
                sort_order: self.sort_order,
                affects_stock: self.affects_stock,
                created_at: timestamp(self.created_at.as_deref()),
                updated_at: timestamp(self.updated_at.as_deref()),
                ..Attribute::new(
                    VARIANT_AXIS_ID_OFFSET + i64::from(self.id),
                    normalize_code(&self.name),
                    attribute_type,
                )
            }
            .retire_inactive_options(),
        )
    }
}

/// Spread of one number attribute over a category subtree's listings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttributeRange {
    pub code: String,
    pub min: Decimal,
    pub max: Decimal,
    pub count: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RangeRow {
    pub code: String,
    pub min: Option<String>,
    pub max: Option<String>,
    pub count: i64,
}

pub(crate) fn ranges(rows: Vec<RangeRow>) -> Vec<AttributeRange> {
    rows.into_iter()
        .filter_map(|row| {
            let parse = |text: Option<&str>| {
                text.and_then(|t| Decimal::from_str(t.trim()).ok())
                    .map(|d| d.normalize())
            };
            Some(AttributeRange {
                code: normalize_code(&row.code),
                min: parse(row.min.as_deref())?,
                max: parse(row.max.as_deref())?,
                count: row.count,
            })
        })
        .collect()
}

/// A value row of a batch read, tagged with its entity.
#[derive(Debug)]
pub(crate) struct BatchValueRow {
    pub entity_id: i64,
    pub value: ValueRow,
}

/// A [`BatchValueRow`]'s columns by position: `entity_id`, then [`ValueRow`]'s in its order.
/// Every batch statement selects them so and is decoded so, without looking each column up by
/// name in every row (thousands of rows a batch).
pub(crate) type BatchValueRowInOrder = (
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<String>,
    Option<SqlJson<Json>>,
    Option<String>,
);

impl From<BatchValueRowInOrder> for BatchValueRow {
    fn from(
        (
            entity_id,
            code,
            attribute_type,
            text_value,
            numeric_value,
            boolean_value,
            date_value,
            json_value,
            unit,
        ): BatchValueRowInOrder,
    ) -> Self {
        BatchValueRow {
            entity_id,
            value: ValueRow {
                code,
                attribute_type,
                text_value,
                numeric_value,
                boolean_value,
                date_value,
                json_value,
                unit,
            },
        }
    }
}

/// Batch rows as decoded, each as a [`BatchValueRow`].
pub(crate) fn batch_rows(rows: Vec<BatchValueRowInOrder>) -> Vec<BatchValueRow> {
    rows.into_iter().map(BatchValueRow::from).collect()
}

/// Groups batch rows per entity; entities that exist but hold no value map to an empty set.
pub(crate) fn batch_values(
    rows: Vec<BatchValueRow>,
    normalize_codes: bool,
) -> std::collections::HashMap<i64, EntityValues> {
    let mut grouped: std::collections::HashMap<i64, EntityValues> =
        std::collections::HashMap::new();
    for mut row in rows {
        let values = grouped.entry(row.entity_id).or_default();
        if normalize_codes && let Some(code) = &mut row.value.code {
            normalize_code_in_place(code);
        }
        if let Some((code, typed)) = row.value.into_typed_value() {
            values.insert(code, typed);
        }
    }
    grouped
}

/// A JSON value as a person reads it: a string as itself, a list as its items joined.
pub(crate) fn shown_json(value: &serde_json::Value) -> Option<String> {
    let text = match value {
        serde_json::Value::Null => return None,
        serde_json::Value::String(text) => text.trim().to_owned(),
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(shown_json)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_either_backend_writes_them() {
        let expected = DateTime::parse_from_rfc3339("2025-08-03T10:00:00Z")
            .map(|t| t.to_utc())
            .ok();
        for text in [
            "2025-08-03T10:00:00Z",
            "2025-08-03T10:00:00.000Z",
            "2025-08-03 10:00:00+00",
            "2025-08-03 12:00:00+02:00",
            "2025-08-03 10:00:00",
            "2025-08-03 10:00:00.000000",
        ] {
            assert_eq!(timestamp(Some(text)), expected, "{text}");
        }
        assert_eq!(timestamp(Some("yesterday")), None);
    }

    #[test]
    fn timestamps_are_handed_on_in_rfc3339_with_a_fixed_fraction() {
        for (stored, shown) in [
            (
                "2026-12-05 14:03:08.123456+00",
                "2026-12-05T14:03:08.123456Z",
            ),
            ("2026-12-05 16:03:08+02", "2026-12-05T14:03:08.000000Z"),
            ("2026-12-05T14:03:08.120Z", "2026-12-05T14:03:08.120000Z"),
        ] {
            assert_eq!(rfc3339(stored.to_owned()), shown, "{stored}");
        }
        assert_eq!(rfc3339("yesterday".to_owned()), "yesterday");
    }
}
