//! The attribute model of the marketplace, shared by every other crate.
//!
//! Pure: types, parsing and validation only. Nothing here knows about SQL, HTTP or the
//! legacy tables' layout; the storage crate translates rows into these types.

pub mod attribute;
pub mod draft;
pub mod entity;
pub mod i18n;
pub mod invalidation;
pub mod options;
pub mod rules;
pub mod schema;
pub mod validate;
pub mod value;

pub use attribute::{Attribute, AttributeType, Purpose, UnknownVariant};
pub use draft::{AttributeDraft, BindingDraft};
pub use entity::{EntityKind, EntityRef};
pub use i18n::{Language, LocalizedText};
pub use invalidation::Invalidation;
pub use options::{
    AttributeOption, ParsedOptions, canonical_spellings, option_for_spelling, parse_legacy_options,
};
pub use rules::{Pattern, ValidationRules};
pub use schema::{CategoryBinding, EffectiveAttribute, EffectiveSchema};
pub use validate::{
    FieldError, FieldErrorKind, nul_characters, validate_patch, validate_replacement,
};
pub use value::{EntityValues, JsonOf, TypedValue, Value};
