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

/// Keeps a prefix and a suffix that together show at most about a third of
/// the value: 5 and 4 characters of a value of 24 or more (an iFlow key has
/// 35), 3 and 2 of one of 16 to 23, nothing of a shorter one.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let (head, tail) = match chars.len() {
        0 => return String::new(),
        n if n < 16 => return "…***".to_string(),
        n if n < 24 => (3, 2),
        _ => (5, 4),
    };
    let n = chars.len();
    let head: String = chars[..head].iter().collect();
    let tail: String = chars[n - tail..].iter().collect();
    format!("{head}…{tail}")
}

/// Masks anything in `text` that looks like an API key (`sk-` and at least
/// 16 more key characters), for upstream error text that is passed on to
/// clients and logs: an upstream that echoes the key must not leak it.
pub fn redact_keys(text: &str) -> String {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("sk-") {
        let starts_word = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !is_key_char(c));
        let len = rest[at..]
            .find(|c: char| !is_key_char(c))
            .unwrap_or(rest.len() - at);
        let token = &rest[at..at + len];
        out.push_str(&rest[..at]);
        if starts_word && token.len() >= 19 {
            out.push_str(&mask(token));
        } else {
            out.push_str(token);
        }
        rest = &rest[at + len.max(3)..];
    }
    out.push_str(rest);
    out
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
    fn keys_in_upstream_text_are_masked_and_nothing_else_changes() {
        let key = "sk-0123456789abcdef0123456789abcdef";
        let text = format!("invalid apiKey {key}, 请重试 (risk-sk-1 task-sk-abc)");
        let out = redact_keys(&text);
        assert!(!out.contains(key), "{out}");
        assert!(out.contains(&mask(key)), "{out}");
        assert!(out.ends_with(", 请重试 (risk-sk-1 task-sk-abc)"), "{out}");
        assert_eq!(
            redact_keys("no keys here: sk-short"),
            "no keys here: sk-short"
        );
        assert_eq!(redact_keys("sk-"), "sk-");
        assert_eq!(redact_keys(""), "");
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("sk-1234567890abcdef0123ef9f");
        assert_eq!(format!("{s:?}"), "Secret(sk-12…ef9f)");
        assert_eq!(s.to_string(), "sk-12…ef9f");
        assert!(!format!("{s:?}").contains("34567890abcd"));
    }

    #[test]
    fn short_values_are_fully_hidden() {
        assert_eq!(mask("sk-abc"), "…***");
        assert_eq!(mask("sk-abcdefghijkl"), "…***");
        assert_eq!(mask(""), "");
    }

    #[test]
    fn at_most_about_a_third_of_a_value_is_shown() {
        // 5 of 16 and 9 of 24 characters at the thresholds.
        assert_eq!(mask("sk-abcdefghijklm"), "sk-…lm");
        assert_eq!(mask("sk-abcdefghijklmnopqrstu"), "sk-ab…rstu");
        for n in 1..64 {
            let value = "k".repeat(n);
            let shown = mask(&value).chars().filter(|c| *c == 'k').count();
            assert!(shown * 100 <= n * 38, "{n}: {shown} shown");
        }
    }
}
