//! The baseline format: one JSON file per case under
//! `tests/fixtures/official/`, plus the description of the dynamic fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// One case: an input to the gateway and what the official client would
/// send upstream for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fixture {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub account: FixtureAccount,
    /// The OpenAI chat request as a client sends it to the gateway.
    pub request: Value,
    pub expected: ExpectedRequest,
    /// The file's name without `.json`, when read from a folder.
    #[serde(skip)]
    pub file_stem: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixtureAccount {
    /// `oauth-iflow` or `iflow`.
    pub auth_type: String,
    pub api_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpectedRequest {
    pub method: String,
    /// Path under the account's base URL's host, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers in the official wire order (compared as a set, by name).
    pub headers: Vec<(String, HeaderRule)>,
    pub body: Value,
}

/// A header's expected value: exact, or one of the dynamic formats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderRule {
    Exact(String),
    Dynamic { dynamic: Dynamic },
}

/// Fields that differ on every request by nature; checked by format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dynamic {
    /// `session-<uuid v4>`.
    SessionId,
    /// A lowercase UUID v4.
    UuidV4,
    /// Epoch milliseconds within a minute of now.
    EpochMs,
    /// `x-iflow-signature`: recomputed from the key, session id and timestamp.
    Signature,
    /// `00-<32 hex>-<16 hex>-01`.
    Traceparent,
}

impl Dynamic {
    /// How the format reads, for humans (docs and diff output).
    pub fn pattern(self) -> &'static str {
        match self {
            Dynamic::SessionId => {
                "session-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
            }
            Dynamic::UuidV4 => {
                "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
            }
            Dynamic::EpochMs => "[0-9]{13}, within 60 s of now",
            Dynamic::Signature => {
                "[0-9a-f]{64} = HMAC-SHA256(api key, \"iFlow-Cli:\" + session-id + \":\" + x-iflow-timestamp)"
            }
            Dynamic::Traceparent => "00-[0-9a-f]{32}-[0-9a-f]{16}-01",
        }
    }
}

/// Headers the HTTP stack adds on its own; their values are checked for
/// sanity but their presence is not a difference. `date` is one that Node's
/// fetch does not send but actix-http always writes.
pub const TRANSPORT_HEADERS: &[&str] = &["host", "content-length", "connection", "date"];

/// Reads every `*.json` case of a directory, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Fixture>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut fixtures = Vec::new();
    for path in paths {
        let text =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut fixture: Fixture = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not a fixture: {e}", path.display()))?;
        fixture.file_stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        fixtures.push(fixture);
    }
    if fixtures.is_empty() {
        return Err(format!("no fixtures in {}", dir.display()));
    }
    Ok(fixtures)
}
