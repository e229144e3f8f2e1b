//! The baseline format: one JSON file per chat case under
//! `tests/fixtures/official/`, one per telemetry sequence under its
//! `telemetry/` folder, and the rules for the fields that are dynamic.

pub use super::dynamic::Dynamic;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
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
    /// Body places (`body.max_tokens`) that hold the client's own fields,
    /// forwarded as sent: the official client has no way to send them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded: Vec<String>,
    /// What the capturing upstream answers; a plausible success by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_reply: Option<UpstreamReply>,
    /// The status the gateway must answer the client with.
    #[serde(default = "ok_status")]
    pub reply_status: u16,
    /// The file's name without `.json`, when read from a folder.
    #[serde(skip)]
    pub file_stem: Option<String>,
}

fn ok_status() -> u16 {
    200
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixtureAccount {
    /// `oauth-iflow` or `iflow`.
    pub auth_type: String,
    pub api_key: String,
}

/// A scripted upstream answer to the case's chat call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamReply {
    pub status: u16,
    pub body: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpectedRequest {
    pub method: String,
    /// Path on the official host, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers in the official wire order (compared as a set, by name).
    pub headers: Vec<(String, HeaderRule)>,
    /// The body; forms are written as objects in their wire order.
    #[serde(default)]
    pub body: Value,
    #[serde(default, skip_serializing_if = "BodyFormat::is_json")]
    pub body_format: BodyFormat,
    /// Places of JSON string fields that hold a `k=v&…` form (`body.gokey`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub form_fields: Vec<String>,
    /// Body fields checked by rule instead of by value, by place
    /// (`body.gokey.trace_id`). The value in `body` is only an example.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dynamic_fields: BTreeMap<String, FieldRule>,
}

impl ExpectedRequest {
    /// Every place a form sits at: the whole body, or its form fields.
    pub fn form_places(&self) -> Vec<String> {
        match self.body_format {
            BodyFormat::Form => vec!["body".into()],
            BodyFormat::Json => self.form_fields.clone(),
        }
    }
}

/// How a body is encoded on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BodyFormat {
    #[default]
    Json,
    /// `k=v&k=v&bare` text, values compared as sent (still percent-encoded);
    /// a bare key is `null`.
    Form,
}

impl BodyFormat {
    fn is_json(&self) -> bool {
        *self == BodyFormat::Json
    }
}

/// A header's expected value: exact, or one of the dynamic formats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderRule {
    Exact(String),
    Dynamic { dynamic: Dynamic },
}

/// A dynamic body field: a format, optionally tied to another request's
/// field (`"same_as": "chat header session-id"`), or one of a fixed set of
/// machine-dependent values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldRule {
    Dynamic {
        dynamic: Dynamic,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        same_as: Option<String>,
    },
    OneOf {
        one_of: Vec<String>,
    },
}

impl FieldRule {
    /// How the rule reads, for humans.
    pub fn describe(&self) -> String {
        match self {
            FieldRule::Dynamic { dynamic, same_as } => match same_as {
                Some(other) => format!("<{}, same as {other}>", dynamic.pattern()),
                None => format!("<{}>", dynamic.pattern()),
            },
            FieldRule::OneOf { one_of } => format!("<one of {}>", one_of.join("|")),
        }
    }
}

/// What the official client sends around one chat request (or at start-up):
/// the page view and the GM lifecycle events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetryFixture {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The chat case these requests go with; none for the start-up ones.
    #[serde(default)]
    pub after: Option<String>,
    pub requests: Vec<ExpectedEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpectedEvent {
    /// `page-view`, `run_started`…: names the request in differences and
    /// in `same_as` references.
    pub event: String,
    #[serde(flatten)]
    pub expected: ExpectedRequest,
}

/// Headers the HTTP stack adds on its own; their values are checked for
/// sanity but their presence is not a difference. `date` is one that Node's
/// fetch does not send but actix-http always writes.
pub const TRANSPORT_HEADERS: &[&str] = &["host", "content-length", "connection", "date"];

/// Reads every `*.json` chat case of a directory, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Fixture>, String> {
    let mut fixtures = Vec::new();
    for (path, stem) in json_files(dir)? {
        let mut fixture: Fixture = read(&path)?;
        fixture.file_stem = Some(stem);
        let places = fixture.expected.dynamic_fields.keys().map(String::as_str);
        let places = places.chain(fixture.forwarded.iter().map(String::as_str));
        check_places(&path, &fixture.expected, places)?;
        fixtures.push(fixture);
    }
    if fixtures.is_empty() {
        return Err(format!("no fixtures in {}", dir.display()));
    }
    Ok(fixtures)
}

/// Reads the telemetry sequences of `dir` (the `telemetry/` folder beside
/// the chat cases); none when the folder does not exist.
pub fn load_telemetry(dir: &Path) -> Result<Vec<TelemetryFixture>, String> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut fixtures = Vec::new();
    for (path, _) in json_files(dir)? {
        let fixture: TelemetryFixture = read(&path)?;
        for event in &fixture.requests {
            let places = event.expected.dynamic_fields.keys().map(String::as_str);
            check_places(&path, &event.expected, places)?;
        }
        fixtures.push(fixture);
    }
    Ok(fixtures)
}

/// Every telemetry sequence must follow a chat case that exists: a typo in
/// `after` would otherwise leave the sequence silently unchecked.
pub fn check_links(cases: &[Fixture], telemetry: &[TelemetryFixture]) -> Result<(), String> {
    for t in telemetry {
        if let Some(after) = &t.after
            && !cases
                .iter()
                .any(|c| &c.name == after || c.file_stem.as_deref() == Some(after.as_str()))
        {
            return Err(format!(
                "telemetry sequence {:?} follows {after:?}, which is not a chat case",
                t.name
            ));
        }
    }
    Ok(())
}

fn json_files(dir: &Path) -> Result<Vec<(std::path::PathBuf, String)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            Some((p, stem))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{} is not a fixture: {e}", path.display()))
}

/// Every place a rule names must exist in the expected body, so a typo
/// cannot silently whitelist nothing.
fn check_places<'a>(
    path: &Path,
    expected: &ExpectedRequest,
    places: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    for place in places {
        if super::body::lookup(&expected.body, place).is_none() {
            return Err(format!(
                "{}: {place} is not a place in the expected body",
                path.display()
            ));
        }
    }
    Ok(())
}
