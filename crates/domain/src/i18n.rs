//! Labels in the marketplace's three languages, with one fallback order for all lookups.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A language the marketplace shows labels in. Serbian (Latin) is the source language of
/// the legacy data, so it comes first in every fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Sr,
    En,
    Ru,
}

impl Language {
    pub const ALL: [Language; 3] = [Language::Sr, Language::En, Language::Ru];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Sr => "sr",
            Language::En => "en",
            Language::Ru => "ru",
        }
    }

    /// Picks the first supported language of an `Accept-Language`-style list
    /// (`ru-RU,ru;q=0.9,en;q=0.8`), ignoring weights' order as browsers send them sorted.
    pub fn from_accept_language(header: &str) -> Option<Language> {
        header
            .split(',')
            .filter_map(|part| part.split(';').next())
            .filter_map(|tag| tag.trim().split('-').next())
            .find_map(|primary| primary.parse().ok())
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Language {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sr" => Ok(Language::Sr),
            "en" => Ok(Language::En),
            "ru" => Ok(Language::Ru),
            _ => Err(()),
        }
    }
}

/// One text in several languages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LocalizedText(BTreeMap<Language, String>);

impl LocalizedText {
    pub fn new() -> Self {
        Self::default()
    }

    /// A text known only in the source language.
    pub fn serbian(text: impl Into<String>) -> Self {
        let mut labels = Self::new();
        labels.set(Language::Sr, text);
        labels
    }

    pub fn with(mut self, language: Language, text: impl Into<String>) -> Self {
        self.set(language, text);
        self
    }

    /// Sets a translation; blank texts are ignored so that a missing translation falls back.
    pub fn set(&mut self, language: Language, text: impl Into<String>) {
        let text = text.into();
        if !text.trim().is_empty() {
            self.0.insert(language, text);
        }
    }

    pub fn exact(&self, language: Language) -> Option<&str> {
        self.0.get(&language).map(String::as_str)
    }

    /// The text in `language`, else in Serbian, English, Russian — in that order.
    pub fn get(&self, language: Language) -> Option<&str> {
        self.exact(language)
            .or_else(|| Language::ALL.iter().find_map(|l| self.exact(*l)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Language, &str)> {
        self.0.iter().map(|(l, t)| (*l, t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_translation_falls_back_to_serbian_first() {
        let labels = LocalizedText::serbian("Godište").with(Language::Ru, "Год");
        assert_eq!(labels.get(Language::En), Some("Godište"));
        assert_eq!(labels.get(Language::Ru), Some("Год"));
    }

    #[test]
    fn english_is_used_when_serbian_is_missing_too() {
        let labels = LocalizedText::new().with(Language::En, "Year");
        assert_eq!(labels.get(Language::Ru), Some("Year"));
    }

    #[test]
    fn blank_translations_do_not_hide_the_fallback() {
        let labels = LocalizedText::serbian("Boja").with(Language::En, "  ");
        assert_eq!(labels.exact(Language::En), None);
        assert_eq!(labels.get(Language::En), Some("Boja"));
    }

    #[test]
    fn accept_language_picks_the_first_supported_tag() {
        assert_eq!(
            Language::from_accept_language("de-DE,ru;q=0.9,en;q=0.8"),
            Some(Language::Ru)
        );
        assert_eq!(Language::from_accept_language("de, fr"), None);
    }
}
