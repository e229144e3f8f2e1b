//! The account record, one per JSON file, in the shape the Go `iflow-go` writes.
//!
//! Go serialises `time.Time` zero values as `0001-01-01T00:00:00Z` even with
//! `omitempty`, so "no time" is read from that, from `null` or from a missing
//! field, and written back as the Go zero value. Fields this version does not
//! know are kept in `extra` and written back untouched.

use crate::secret::Secret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

pub const DEFAULT_IFLOW_BASE_URL: &str = "https://apis.iflow.cn/v1";

/// How the account authenticates upstream; selects the upstream profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// iFlow account logged in with OAuth (tokens are refreshed).
    OAuthIflow,
    /// iFlow account with a plain API key.
    Iflow,
    /// Any OpenAI-compatible API: `Authorization: Bearer <key>`, no iFlow rules.
    OpenAi,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::OAuthIflow => "oauth-iflow",
            AuthType::Iflow => "iflow",
            AuthType::OpenAi => "openai",
        }
    }

    pub fn is_iflow(self) -> bool {
        matches!(self, AuthType::OAuthIflow | AuthType::Iflow)
    }
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "oauth-iflow" => Ok(AuthType::OAuthIflow),
            "iflow" => Ok(AuthType::Iflow),
            "openai" => Ok(AuthType::OpenAi),
            other => Err(format!(
                "unknown auth_type {other:?} (expected oauth-iflow, iflow or openai)"
            )),
        }
    }
}

impl Serialize for AuthType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuthType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// A problem that needs the user, remembered across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountState {
    /// The refresh token is dead: `token login` again.
    NeedsLogin,
    /// The upstream refused the API key and no refresh fixed it.
    KeyInvalid,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::NeedsLogin => "needs-login",
            AccountState::KeyInvalid => "key-invalid",
        }
    }
}

/// One stored account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Account {
    pub uuid: String,
    pub api_key: Secret,
    pub base_url: String,
    pub auth_type: AuthType,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub oauth_access_token: Secret,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub oauth_refresh_token: Secret,
    #[serde(default, with = "go_time")]
    pub oauth_expires_at: Option<DateTime<Utc>>,
    #[serde(default, with = "go_time")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, with = "go_time")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, with = "go_time")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub request_count: u64,
    /// Set when the account needs attention; absent when it is fine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AccountState>,
    /// The pool does not use the account before this time (rate limits,
    /// upstream failures); `token reset` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<DateTime<Utc>>,
    /// When `token reset` last ran: tells a running server to forget what it
    /// holds against the account (a refused key, a cooldown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<DateTime<Utc>>,
    /// Models the account serves in the pool; empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Fields written by other versions or tools, preserved on rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Account {
    /// A new account with a fresh uuid and the given credentials.
    pub fn new(api_key: Secret, base_url: String, auth_type: AuthType, now: DateTime<Utc>) -> Self {
        Self {
            uuid: uuid::Uuid::new_v4().to_string(),
            api_key,
            base_url,
            auth_type,
            oauth_access_token: Secret::default(),
            oauth_refresh_token: Secret::default(),
            oauth_expires_at: None,
            created_at: Some(now),
            updated_at: Some(now),
            last_used_at: None,
            request_count: 0,
            state: None,
            cooldown_until: None,
            reset_at: None,
            models: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Reads and checks one account file's content.
    ///
    /// The error says where and what kind of thing is wrong, with quoted
    /// file content cut out: a broken file may hold a key in the wrong place,
    /// and the reason is logged and shown by `token list`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let account: Account =
            serde_json::from_slice(bytes).map_err(|e| without_quoted_values(&e.to_string()))?;
        if uuid::Uuid::parse_str(&account.uuid).is_err() {
            return Err("the uuid field is not a valid UUID".into());
        }
        Ok(account)
    }

    /// Whether the OAuth tokens are due for a refresh: less than `lead` left,
    /// or, when the expiry is unknown (a token reply without `expires_in`),
    /// no change to the account for `lead`, so such a login is refreshed
    /// once per lead period instead of never.
    pub fn refresh_due(&self, lead: chrono::Duration, now: DateTime<Utc>) -> bool {
        if self.auth_type != AuthType::OAuthIflow {
            return false;
        }
        match self.oauth_expires_at {
            Some(expires) => expires - now < lead,
            None => self.updated_at.is_none_or(|changed| now - changed >= lead),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data to a Vec cannot fail; fall back to an empty
        // object rather than panic if it ever did.
        serde_json::to_vec_pretty(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// Replaces every quoted span ("…" or `…`) of a parser message with `…`,
/// except short lowercase words (field names, enum values), which are what
/// makes the message useful and cannot be a key or token.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        let inner_start = start + quote.len_utf8();
        let Some(len) = rest[inner_start..].find(quote) else {
            break;
        };
        let inner = &rest[inner_start..inner_start + len];
        let word = !inner.is_empty()
            && inner.len() <= 24
            && inner
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-');
        out.push_str(&rest[..inner_start]);
        out.push_str(if word { inner } else { "…" });
        out.push(quote);
        rest = &rest[inner_start + len + quote.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// `Option<DateTime<Utc>>` in Go's `time.Time` JSON form.
mod go_time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub const ZERO: &str = "0001-01-01T00:00:00Z";

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            None => s.serialize_str(ZERO),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let raw: Option<String> = Option::deserialize(d)?;
        match raw.as_deref() {
            None | Some("") | Some(ZERO) => Ok(None),
            Some(text) => {
                let t = DateTime::parse_from_rfc3339(text)
                    .map_err(|e| serde::de::Error::custom(format!("bad time {text:?}: {e}")))?
                    .with_timezone(&Utc);
                // The zero instant in another spelling (`+00:00`, `.000Z`) is
                // still Go's "no time"; kept as a time it would be written back
                // as ZERO and read as `None`, so a rewrite would change it.
                let zero = t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true) == ZERO;
                Ok((!zero).then_some(t))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO_FILE: &str = r#"{
  "uuid": "6f1c2a52-6c1d-4a8e-9a59-3f2b8f0f7a11",
  "api_key": "sk-0123456789abcdef",
  "base_url": "https://apis.iflow.cn/v1",
  "auth_type": "oauth-iflow",
  "oauth_expires_at": "0001-01-01T00:00:00Z",
  "created_at": "2026-02-27T10:11:12.123456789Z",
  "updated_at": "2026-02-27T10:11:12.123456789Z",
  "last_used_at": "0001-01-01T00:00:00Z",
  "request_count": 7
}"#;

    #[test]
    fn reads_a_file_written_by_iflow_go() {
        let a = Account::from_json(GO_FILE.as_bytes()).expect("parses");
        assert_eq!(a.auth_type, AuthType::OAuthIflow);
        assert_eq!(a.api_key.expose(), "sk-0123456789abcdef");
        assert_eq!(a.oauth_expires_at, None);
        assert_eq!(a.request_count, 7);
        assert_eq!(
            a.created_at.map(|t| t.timestamp_subsec_nanos()),
            Some(123_456_789)
        );
    }

    #[test]
    fn round_trip_keeps_go_shape_and_unknown_fields() {
        let mut v: Value = serde_json::from_str(GO_FILE).expect("json");
        v["custom_note"] = Value::from("kept");
        let a = Account::from_json(v.to_string().as_bytes()).expect("parses");
        let back: Value = serde_json::from_slice(&a.to_json()).expect("json");
        assert_eq!(back["custom_note"], "kept");
        assert_eq!(back["oauth_expires_at"], "0001-01-01T00:00:00Z");
        assert_eq!(back["created_at"], "2026-02-27T10:11:12.123456789Z");
        assert!(back.get("oauth_access_token").is_none());
    }

    /// Found by the `account_file` fuzz target: the zero time spelled
    /// differently read as a time, and a rewrite turned it into `None`.
    #[test]
    fn the_go_zero_time_in_any_spelling_is_no_time() {
        for zero in ["0001-01-01T00:00:00+00:00", "0001-01-01T00:00:00.000Z"] {
            let file = GO_FILE.replace(
                r#""updated_at": "2026-02-27T10:11:12.123456789Z""#,
                &format!(r#""updated_at": "{zero}""#),
            );
            let a = Account::from_json(file.as_bytes()).expect("parses");
            assert_eq!(a.updated_at, None, "{zero}");
            assert_eq!(Account::from_json(&a.to_json()).expect("reads back"), a);
        }
    }

    #[test]
    fn parse_errors_never_repeat_file_values() {
        let key = "sk-secret-0123456789abcdef";
        let misplaced = GO_FILE.replace(
            r#""request_count": 7"#,
            &format!(r#""request_count": "{key}""#),
        );
        let err = Account::from_json(misplaced.as_bytes()).expect_err("must fail");
        assert!(!err.contains(key), "{err}");
        assert!(err.contains("invalid type: string \"…\""), "{err}");
        assert!(err.contains("line 10"), "{err}");
        let state = GO_FILE.replace(
            r#""request_count": 7"#,
            &format!(r#""request_count": 7, "state": "{key}""#),
        );
        let err = Account::from_json(state.as_bytes()).expect_err("must fail");
        assert!(
            !err.contains(key) && err.contains("unknown variant `…`"),
            "{err}"
        );
        assert!(err.contains("`needs-login`"), "{err}");
        let missing = GO_FILE.replace(r#""api_key": "sk-0123456789abcdef","#, "");
        let err = Account::from_json(missing.as_bytes()).expect_err("must fail");
        assert!(err.contains("missing field `api_key`"), "{err}");
        let uuid = "6f1c2a52-6c1d-4a8e-9a59-3f2b8f0f7a1";
        let bad_uuid = GO_FILE.replace("6f1c2a52-6c1d-4a8e-9a59-3f2b8f0f7a11", uuid);
        let err = Account::from_json(bad_uuid.as_bytes()).expect_err("must fail");
        assert!(!err.contains(uuid), "{err}");
    }

    #[test]
    fn refresh_is_due_inside_the_lead_or_once_per_lead_without_an_expiry() {
        let now = Utc::now();
        let lead = chrono::Duration::hours(24);
        let mut a = Account::from_json(GO_FILE.as_bytes()).expect("parses");
        a.oauth_expires_at = Some(now + chrono::Duration::hours(30));
        assert!(!a.refresh_due(lead, now));
        a.oauth_expires_at = Some(now + chrono::Duration::hours(2));
        assert!(a.refresh_due(lead, now));
        // No `expires_in` in the last token reply: due a lead after the
        // last change (a refresh writes `updated_at`), never stuck.
        a.oauth_expires_at = None;
        a.updated_at = Some(now - chrono::Duration::hours(1));
        assert!(!a.refresh_due(lead, now));
        a.updated_at = Some(now - chrono::Duration::hours(25));
        assert!(a.refresh_due(lead, now));
        a.updated_at = None;
        assert!(a.refresh_due(lead, now));
        a.auth_type = AuthType::Iflow;
        assert!(!a.refresh_due(lead, now));
    }

    #[test]
    fn rejects_unknown_auth_type_and_bad_uuid() {
        let bad_type = GO_FILE.replace("oauth-iflow", "cookie");
        let err = Account::from_json(bad_type.as_bytes()).expect_err("must fail");
        assert!(err.contains("unknown auth_type"), "{err}");
        let bad_uuid = GO_FILE.replace("6f1c2a52-6c1d-4a8e-9a59-3f2b8f0f7a11", "x");
        assert!(Account::from_json(bad_uuid.as_bytes()).is_err());
    }
}
