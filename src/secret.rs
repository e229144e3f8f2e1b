//! A string that must never be printed: API keys, OAuth tokens, gateway keys.
//!
//! `Debug` and `Display` show a mask; the only way to the plain text is
//! [`Secret::expose`], so every place that really needs it is easy to audit.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain value. Call only where the value leaves the process on purpose
    /// (a signed upstream request, an account file).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A short form safe for tables and logs: `sk-12…ab9f`.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// The first 8 characters of an account uuid. With uuid-as-bearer enabled a
/// uuid is a credential, so logs, errors and metrics name accounts by this.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Keeps a prefix of at most 5 and a suffix of 4 characters, and only when the
/// value is long enough that they reveal little of it.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    match chars.len() {
        0 => String::new(),
        n if n < 12 => "…***".to_string(),
        n => {
            let head: String = chars[..5].iter().collect();
            let tail: String = chars[n - 4..].iter().collect();
            format!("{head}…{tail}")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("sk-1234567890abcdef9f");
        assert_eq!(format!("{s:?}"), "Secret(sk-12…ef9f)");
        assert_eq!(s.to_string(), "sk-12…ef9f");
        assert!(!format!("{s:?}").contains("34567890abcd"));
    }

    #[test]
    fn short_values_are_fully_hidden() {
        assert_eq!(mask("sk-abc"), "…***");
        assert_eq!(mask(""), "");
    }
}
