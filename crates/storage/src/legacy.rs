//! The legacy side's encodings that are not plain columns: the B2C JSON documents, and the
//! legacy form of the demo dataset with the defects of the real data.

use std::collections::HashMap;
use std::str::FromStr;

use domain::attribute::{normalize_code, normalize_code_in_place};
use domain::{
    Attribute, AttributeType, EffectiveSchema, EntityKind, EntityValues, Language, LocalizedText,
    Value,
};
use serde_json::{Map, Value as Json, json};
use sqlx::types::Json as SqlJson;

use crate::demo::{Dataset, Listing, Variant};
use crate::dialect::{Dialect, Sql};
use crate::error::{Result, StorageError};
use crate::rows::{BatchValueRow, ValueColumns, json_document_value, typed_from_document};
use crate::stats::record_queries;

/// The marketplace's schema: its legacy tables, and its own unified tables if it made them.
pub(crate) const MARKETPLACE_SCHEMA: &str = "public";

/// The legacy rows of these listings, one per value (a listing without values: one row of
/// NULLs). (A range bound on the ids, tried for the backfill's batches, made the generic plan
/// join the definitions by a filtered nested loop: twice as slow.)
pub(crate) const LISTING_ROWS: Sql = Sql {
    pg: crate::sql::legacy_listing_values_batch_sql!("= ANY($1)"),
    lite: crate::sql::legacy_listing_values_batch_sql!("IN (SELECT value FROM json_each($1))"),
};

/// The legacy value rows of listings `ids`, their codes normalized.
pub(crate) async fn listing_rows(conn: Dialect<'_>, ids: &[i64]) -> Result<Vec<BatchValueRow>> {
    record_queries(1);
    let rows: Vec<crate::rows::BatchValueRowInOrder> = match conn {
        Dialect::Pg(c) => {
            sqlx::query_as(LISTING_ROWS.pg)
                .bind(ids)
                .fetch_all(c)
                .await?
        }
        Dialect::Lite(c) => {
            sqlx::query_as(LISTING_ROWS.lite)
                .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
                .fetch_all(c)
                .await?
        }
    };
    let mut rows = crate::rows::batch_rows(rows);
    for row in &mut rows {
        if let Some(code) = row.value.code.as_mut() {
            normalize_code_in_place(code);
        }
    }
    Ok(rows)
}

/// The definitions B2C documents name, with their translated labels.
pub(crate) const VOCABULARY: Sql = Sql {
    pg: crate::sql::legacy_vocabulary_sql!(
        "jsonb_object_agg(t.language || ':' || t.field_name, t.translated_text)"
    ),
    lite: crate::sql::legacy_vocabulary_sql!(
        "json_group_object(t.language || ':' || t.field_name, t.translated_text)"
    ),
};

/// A definition a B2C document may refer to: a C2C attribute (`source = 'attribute'`) or a
/// variant axis (`source = 'product_variant_attribute'`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct VocabularyRow {
    pub id: i32,
    pub name: String,
    pub display_name: String,
    pub attribute_type: String,
    pub source: String,
    pub translations: Option<SqlJson<Json>>,
}

impl VocabularyRow {
    fn is_c2c(&self) -> bool {
        self.source == "attribute"
    }

    fn labels(&self) -> impl Iterator<Item = &str> {
        let translated = self
            .translations
            .as_ref()
            .and_then(|t| t.0.as_object())
            .into_iter()
            .flat_map(|map| map.iter())
            .filter(|(key, _)| key.ends_with(":display_name"))
            .filter_map(|(_, text)| text.as_str());
        std::iter::once(self.name.as_str())
            .chain(std::iter::once(self.display_name.as_str()))
            .chain(translated)
    }
}

/// B2C documents by entity id, and the definitions they may name.
pub(crate) type Documents = (Vec<(i64, Json)>, Vec<VocabularyRow>);

/// A B2C document read: the values it certainly holds, and the keys it could not read.
#[derive(Debug, Default)]
pub(crate) struct DecodedDocument {
    pub values: EntityValues,
    /// (key, raw value, why it was not read).
    pub refused: Vec<(String, String, String)>,
}

/// Reads a B2C document for serving: what [`decode_document`] certainly reads; the rest is
/// skipped (and logged), never guessed.
pub(crate) fn document_values(
    kind: EntityKind,
    document: &Json,
    vocabulary: &[VocabularyRow],
) -> EntityValues {
    let decoded = decode_document(kind, document, vocabulary);
    for (key, _, reason) in &decoded.refused {
        tracing::debug!(%kind, key, reason, "document key skipped");
    }
    decoded.values
}

/// How the keys of a B2C document resolve to codes, and each code's type.
struct DocumentKeys {
    kind: EntityKind,
    type_of: HashMap<String, AttributeType>,
    code_of_key: HashMap<String, String>,
}

impl DocumentKeys {
    /// Products are keyed by C2C attribute id (`"2004"`), variants by attribute name or label in
    /// any case or language (`Color`, `Veličina`, `Цвет`).
    fn new(kind: EntityKind, vocabulary: &[VocabularyRow]) -> Self {
        // A C2C definition decides the type of a code that is also a variant axis.
        let mut type_of: HashMap<String, AttributeType> = HashMap::new();
        for row in vocabulary
            .iter()
            .filter(|r| r.is_c2c())
            .chain(vocabulary.iter().filter(|r| !r.is_c2c()))
        {
            if let Ok(attribute_type) = AttributeType::from_str(&row.attribute_type) {
                type_of
                    .entry(normalize_code(&row.name))
                    .or_insert(attribute_type);
            }
        }
        let code_of_key: HashMap<String, String> = match kind {
            EntityKind::Product => vocabulary
                .iter()
                .filter(|r| r.is_c2c())
                .map(|r| (r.id.to_string(), normalize_code(&r.name)))
                .collect(),
            _ => {
                let mut index = HashMap::new();
                for row in vocabulary {
                    for label in row.labels() {
                        index
                            .entry(normalize_code(label))
                            .or_insert_with(|| normalize_code(&row.name));
                    }
                }
                index
            }
        };
        Self {
            kind,
            type_of,
            code_of_key,
        }
    }

    fn code(&self, key: &str) -> Option<&String> {
        if self.kind == EntityKind::Product {
            self.code_of_key.get(key)
        } else {
            self.code_of_key.get(&normalize_code(key))
        }
    }

    /// The code a key names and the value read from it, or why it cannot be read.
    fn read(
        &self,
        key: &str,
        raw: &Json,
    ) -> std::result::Result<(String, domain::TypedValue), String> {
        let code = self
            .code(key)
            .ok_or_else(|| "the key matches no definition".to_owned())?;
        let attribute_type = self
            .type_of
            .get(code)
            .ok_or_else(|| "the definition has an unknown type".to_owned())?;
        typed_from_document(*attribute_type, raw)
            .map(|typed| (code.clone(), typed))
            .ok_or_else(|| format!("no usable {attribute_type} value in the document"))
    }
}

/// Reads a B2C document (see [`DocumentKeys`] for how keys name attributes). A NULL document
/// holds nothing.
pub(crate) fn decode_document(
    kind: EntityKind,
    document: &Json,
    vocabulary: &[VocabularyRow],
) -> DecodedDocument {
    let mut decoded = DecodedDocument::default();
    if document.is_null() {
        return decoded;
    }
    let Some(document) = document.as_object() else {
        decoded.refused.push((
            "(document)".into(),
            document.to_string(),
            "the attribute document is not a JSON object".into(),
        ));
        return decoded;
    };
    let keys = DocumentKeys::new(kind, vocabulary);
    for (key, raw) in document {
        match keys.read(key, raw) {
            Ok((code, typed)) => {
                decoded.values.insert(code, typed);
            }
            Err(reason) => decoded.refused.push((key.clone(), raw.to_string(), reason)),
        }
    }
    decoded
}

/// A B2C document after a merge, and what the merge changed in it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MergedDocument {
    pub document: Json,
    pub inserted: usize,
    pub updated: usize,
    pub deleted: usize,
}

impl MergedDocument {
    pub(crate) fn changed(&self) -> bool {
        self.inserted + self.updated + self.deleted > 0
    }
}

/// Merges values into a legacy B2C document in the marketplace's own spelling and shape: a key
/// that already names a code of `set` keeps its spelling (`SIZE`, `Veličina`) and is left
/// byte-identical when it already reads as the value (after `canonical` maps its spelling of an
/// option), or gets the new value in its own JSON shape (a string stays a string); codes the
/// document lacks are added under the key legacy readers expect. The readable keys of `removed`
/// are dropped unless `keep` names their key or code (quarantined values), and every other key
/// stays as it is — keys that name nothing, values that cannot be read, attributes this write
/// does not touch.
#[allow(clippy::too_many_arguments)] // one merge, every input it reads
pub(crate) fn merge_document(
    kind: EntityKind,
    current: Option<&Json>,
    vocabulary: &[VocabularyRow],
    set: &EntityValues,
    removed: &[String],
    keep: &std::collections::HashSet<String>,
    legacy_id: impl Fn(&str) -> Option<i64>,
    canonical: impl Fn(&str, &mut Value),
) -> Result<MergedDocument> {
    let mut document = match current {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(map)) => map.clone(),
        Some(other) => {
            return Err(StorageError::Conflict(format!(
                "the legacy {kind} document is not a JSON object ({other}); it is left as it is: fix it by hand first"
            )));
        }
    };
    let keys = DocumentKeys::new(kind, vocabulary);
    let mut merged = MergedDocument::default();
    let mut present: std::collections::HashSet<String> = std::collections::HashSet::new();
    document.retain(|key, raw| {
        let read = keys.read(key, raw).ok();
        let code = read
            .as_ref()
            .map(|(code, _)| code.clone())
            .or_else(|| keys.code(key).cloned());
        let Some(code) = code else {
            return true;
        };
        if let Some(wanted) = set.get(&code) {
            present.insert(code.clone());
            let already = read.is_some_and(|(_, mut typed)| {
                canonical(&code, &mut typed.value);
                typed == *wanted
            });
            if !already {
                merged.updated += 1;
                *raw = in_shape_of(raw, wanted, keys.type_of.get(&code).copied());
            }
            return true;
        }
        if read.is_some()
            && removed.contains(&code)
            && !keep.contains(&code)
            && !keep.contains(key.as_str())
        {
            merged.deleted += 1;
            return false;
        }
        true
    });
    for (code, typed) in set.iter().filter(|(code, _)| !present.contains(*code)) {
        let key = match kind {
            EntityKind::Product => legacy_id(code).map(|id| id.to_string()).ok_or_else(|| {
                StorageError::CorruptData(format!("'{code}' is not in the legacy schema"))
            })?,
            _ => code.clone(),
        };
        merged.inserted += 1;
        document.insert(key, json_document_value(typed));
    }
    merged.document = Json::Object(document);
    Ok(merged)
}

/// `wanted` in the JSON shape `old` has: one colour written as a bare string stays a string,
/// a list written as `"S, M"` stays such a string, a number written as text stays text —
/// when that shape reads back as exactly `wanted`; else the shape the service writes.
fn in_shape_of(
    old: &Json,
    wanted: &domain::TypedValue,
    attribute_type: Option<AttributeType>,
) -> Json {
    let ours = json_document_value(wanted);
    let shaped = match (old, &ours) {
        (Json::String(_), Json::Array(items)) => {
            let texts: Option<Vec<&str>> = items.iter().map(Json::as_str).collect();
            texts.map(|texts| Json::String(texts.join(", ")))
        }
        (Json::String(_), Json::Number(number)) => Some(Json::String(number.to_string())),
        _ => None,
    };
    match (shaped, attribute_type) {
        (Some(shaped), Some(attribute_type))
            if typed_from_document(attribute_type, &shaped).as_ref() == Some(wanted) =>
        {
            shaped
        }
        _ => ours,
    }
}

/// The B2C document that legacy readers expect for these values.
pub(crate) fn document_for(
    kind: EntityKind,
    values: &EntityValues,
    schema: &EffectiveSchema,
) -> Result<Json> {
    document_keyed_by(kind, values, |code| {
        schema.get(code).map(|a| a.attribute.id)
    })
}

/// The B2C document for these values, with products keyed by the legacy id `legacy_id` gives
/// a code (variants are keyed by code).
pub(crate) fn document_keyed_by(
    kind: EntityKind,
    values: &EntityValues,
    legacy_id: impl Fn(&str) -> Option<i64>,
) -> Result<Json> {
    let mut document = Map::new();
    for (code, typed) in values {
        let key = match kind {
            EntityKind::Product => legacy_id(code).map(|id| id.to_string()).ok_or_else(|| {
                StorageError::CorruptData(format!("'{code}' is not in the legacy schema"))
            })?,
            _ => code.clone(),
        };
        document.insert(key, json_document_value(typed));
    }
    Ok(Json::Object(document))
}

/// One `category_attributes` row as the legacy system wrote it.
#[derive(Debug)]
pub(crate) struct LegacyDefinitionRow {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    pub attribute_type: String,
    pub options: Json,
    pub validation_rules: Json,
    pub is_searchable: bool,
    pub is_filterable: bool,
    pub is_required: bool,
    pub sort_order: i32,
    pub custom_component: Option<String>,
    pub show_in_card: bool,
    pub show_in_list: bool,
    pub icon: Option<String>,
    pub affects_stock: bool,
    pub is_variant_compatible: bool,
}

/// Encodes a definition the way the legacy tables hold it. With `defects`, as the real data
/// came: rotating through the four shapes of `options` and, for some numbers, keeping min/max
/// among the options; without, in the clean `[{label, value}]` shape the service writes.
pub(crate) fn encode_definition(attribute: &Attribute, defects: bool) -> LegacyDefinitionRow {
    let labelled = !defects
        || attribute.options.iter().any(|o| {
            o.label.exact(Language::Sr) != Some(o.value.as_str())
                || o.color_hex.is_some()
                || o.image_url.is_some()
        });
    let values: Vec<&str> = attribute.options.iter().map(|o| o.value.as_str()).collect();
    let mut rules = serde_json::to_value(&attribute.rules).unwrap_or_else(|_| json!({}));
    let options = if labelled {
        Json::Array(
            attribute
                .options
                .iter()
                .map(|o| {
                    let mut item = json!({"label": o.label.exact(Language::Sr).unwrap_or(&o.value), "value": o.value});
                    if let Some(hex) = &o.color_hex {
                        item["color_hex"] = json!(hex);
                    }
                    if let Some(url) = &o.image_url {
                        item["image_url"] = json!(url);
                    }
                    item
                })
                .collect(),
        )
    } else if !values.is_empty() {
        if attribute.id % 2 == 0 {
            json!({"values": values})
        } else {
            json!(values)
        }
    } else if !defects {
        json!([])
    } else if attribute.attribute_type == AttributeType::Number && attribute.id % 3 == 0 {
        // Defect: min/max (and a placeholder) kept in `options`, not in the rules.
        let min = rules.as_object_mut().and_then(|r| r.remove("min"));
        let max = rules.as_object_mut().and_then(|r| r.remove("max"));
        json!({"min": min, "max": max, "placeholder": "Unesite broj"})
    } else if attribute.id % 2 == 0 {
        json!({})
    } else {
        json!([])
    };
    LegacyDefinitionRow {
        id: attribute.id,
        name: attribute.code.clone(),
        display_name: attribute
            .display_name
            .get(Language::Sr)
            .unwrap_or(&attribute.code)
            .to_owned(),
        attribute_type: attribute.attribute_type.as_str().to_owned(),
        options,
        validation_rules: rules,
        is_searchable: attribute.is_searchable,
        is_filterable: attribute.is_filterable,
        is_required: attribute.is_required,
        sort_order: attribute.sort_order,
        custom_component: attribute.ui.custom_component.clone(),
        show_in_card: attribute.show_in_card,
        show_in_list: attribute.ui.show_in_list,
        icon: attribute.ui.icon.clone(),
        affects_stock: attribute.affects_stock,
        is_variant_compatible: attribute.is_variant_compatible,
    }
}

#[derive(Debug)]
pub(crate) struct TranslationRow {
    pub entity_type: &'static str,
    pub entity_id: i64,
    pub language: Language,
    pub field_name: String,
    pub text: String,
}

/// English and Russian labels of one definition and its options (Serbian lives in the row).
fn translations_of(
    entity_type: &'static str,
    entity_id: i64,
    attribute: &Attribute,
) -> Vec<TranslationRow> {
    let mut rows = Vec::new();
    let mut push = |field: String, labels: &LocalizedText| {
        for language in [Language::En, Language::Ru] {
            if let Some(text) = labels.exact(language) {
                rows.push(TranslationRow {
                    entity_type,
                    entity_id,
                    language,
                    field_name: field.clone(),
                    text: text.to_owned(),
                });
            }
        }
    };
    push("display_name".into(), &attribute.display_name);
    for option in &attribute.options {
        push(format!("option.{}", option.value), &option.label);
    }
    rows
}

pub(crate) fn attribute_translations(attribute: &Attribute) -> Vec<TranslationRow> {
    translations_of("attribute", attribute.id, attribute)
}

/// Translations of the dataset's definitions and variant axes.
pub(crate) fn encode_translations(dataset: &Dataset) -> Vec<TranslationRow> {
    let definitions = dataset.attributes.iter().flat_map(attribute_translations);
    let axes = dataset
        .variant_axes
        .iter()
        .filter(|axis| {
            !dataset
                .attributes
                .iter()
                .any(|a| a.code == axis.attribute.code)
        })
        .flat_map(|axis| {
            translations_of("product_variant_attribute", axis.legacy_id, &axis.attribute)
        });
    definitions.chain(axes).collect()
}

/// A listing's `listing_attribute_values` rows, with the defects of the real data: numbers
/// tagged 'text' in `text_value`, multiselect as one comma-separated string, and now and
/// then a row whose value columns are all empty.
pub(crate) fn encode_listing_values(
    schema: &EffectiveSchema,
    listing: &Listing,
    all_defects: bool,
) -> Vec<(i64, ValueColumns)> {
    let mut rows = Vec::new();
    for (code, typed) in &listing.values {
        let Some(effective) = schema.get(code) else {
            continue;
        };
        let mut columns = ValueColumns::legacy(typed);
        match &typed.value {
            Value::Number(_) if listing.id % 3 == 0 => {
                columns.text_value = columns.numeric_value.take();
                columns.legacy_value_type = "text";
            }
            Value::Multiselect(_) => columns.json_value = None,
            _ => {}
        }
        if all_defects {
            plant_spelling_defects(code, listing.id, &mut columns);
        }
        rows.push((effective.attribute.id, columns));
    }
    let unset = schema
        .attributes
        .iter()
        .find(|a| !listing.values.contains_key(&a.attribute.code));
    if let (0, Some(unset)) = (listing.id % 7, unset) {
        rows.push((
            unset.attribute.id,
            ValueColumns {
                legacy_value_type: "text",
                ..ValueColumns::default()
            },
        ));
    }
    rows
}

/// The defects `Dataset::with_all_defects` adds to a listing's row.
fn plant_spelling_defects(code: &str, listing_id: i64, columns: &mut ValueColumns) {
    match (code, columns.text_value.as_deref()) {
        ("transmission", Some("automatic")) => {
            let spelling = match listing_id % 5 {
                1 => "Automatic",
                2 => "автомат",
                3 if listing_id % 2 == 1 => "poluautomatik",
                _ => "automatic",
            };
            columns.text_value = Some(spelling.to_owned());
        }
        ("year", _) if listing_id % 11 == 0 => {
            columns.numeric_value = Some("1".to_owned());
            columns.text_value = None;
        }
        _ => {}
    }
}

/// A variant's document keyed the way the B2C system wrote them: by label or name, in mixed
/// case and language; a single colour as a bare string.
pub(crate) fn variant_document_with_mixed_keys(dataset: &Dataset, variant: &Variant) -> Json {
    let mut document = Map::new();
    for (code, typed) in &variant.values {
        let axis = dataset
            .variant_axes
            .iter()
            .find(|a| &a.attribute.code == code);
        let labels = axis.map(|a| &a.attribute.display_name);
        let key = match (variant.id % 4, labels) {
            (0, Some(l)) => l.exact(Language::Sr).unwrap_or(code).to_owned(),
            (1, Some(l)) => l.exact(Language::Ru).unwrap_or(code).to_owned(),
            (2, _) => code.to_uppercase(),
            _ => {
                let mut chars = code.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default()
            }
        };
        let value = match &typed.value {
            Value::Multiselect(items) if items.len() == 1 => json!(items[0]),
            _ => json_document_value(typed),
        };
        document.insert(key, value);
    }
    Json::Object(document)
}

/// The legacy columns the service reads, by table: without any of them it cannot work, so
/// `migrate` refuses, naming them. Columns the monolith added later are not here: they read
/// as absent (see `LATER_DEFINITION_COLUMNS`).
pub(crate) const INDISPENSABLE_COLUMNS: &[(&str, &[&str])] = &[
    ("marketplace_categories", &["id", "parent_id"]),
    ("marketplace_listings", &["id", "category_id"]),
    ("storefront_products", &["id", "category_id", "attributes"]),
    (
        "storefront_product_variants",
        &["id", "product_id", "variant_attributes"],
    ),
    (
        "category_attributes",
        &[
            "id",
            "name",
            "display_name",
            "attribute_type",
            "options",
            "validation_rules",
            "is_searchable",
            "is_filterable",
            "is_required",
            "sort_order",
            "custom_component",
            "show_in_card",
            "show_in_list",
            "icon",
        ],
    ),
    (
        "category_attribute_mapping",
        &[
            "category_id",
            "attribute_id",
            "is_enabled",
            "is_required",
            "sort_order",
            "custom_component",
            "show_in_card",
            "show_in_list",
        ],
    ),
    (
        "listing_attribute_values",
        &[
            "listing_id",
            "attribute_id",
            "text_value",
            "numeric_value",
            "boolean_value",
            "json_value",
            "unit",
            "value_type",
        ],
    ),
    (
        "product_variant_attributes",
        &[
            "id",
            "name",
            "display_name",
            "type",
            "is_required",
            "sort_order",
        ],
    ),
    (
        "product_variant_attribute_values",
        &[
            "attribute_id",
            "value",
            "display_name",
            "color_hex",
            "image_url",
            "sort_order",
            "is_active",
        ],
    ),
    (
        "translations",
        &[
            "entity_type",
            "entity_id",
            "language",
            "field_name",
            "translated_text",
        ],
    ),
    (
        "attribute_option_translations",
        &[
            "attribute_name",
            "option_value",
            "ru_translation",
            "sr_translation",
        ],
    ),
];

/// `table.column` of every indispensable column missing from `present` (table, column).
pub(crate) fn missing_columns(present: &[(String, String)]) -> Vec<String> {
    INDISPENSABLE_COLUMNS
        .iter()
        .flat_map(|(table, columns)| columns.iter().map(move |column| (*table, *column)))
        .filter(|(table, column)| !present.iter().any(|(t, c)| t == table && c == column))
        .map(|(table, column)| format!("{table}.{column}"))
        .collect()
}
