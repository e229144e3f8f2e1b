//! Field-level comparison of a captured request with its baseline.

use super::body::{self, as_text, lookup};
use super::dynamic::{self, Facts};
use super::fixture::{ExpectedRequest, Fixture, HeaderRule, TRANSPORT_HEADERS};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// A request as it reached the capturing server.
#[derive(Debug, Clone, Serialize)]
pub struct Captured {
    pub method: String,
    pub path: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Serialised as the JSON value it holds, or else as text.
    #[serde(serialize_with = "body_as_value")]
    pub body: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as a JSON value, or as a string when it is not JSON.
    pub fn body_value(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }
}

fn body_as_value<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => value.serialize(s),
        Err(_) => s.serialize_str(&String::from_utf8_lossy(body)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffKind {
    /// In the baseline, not sent.
    Missing,
    /// Sent, not in the baseline.
    Extra,
    /// Sent with another value.
    Changed,
    /// A dynamic field that does not have its format.
    BadFormat,
    /// A form's fields in another order than the baseline's.
    Order,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// `header x-iflow-signature`, `body.messages[0].content`, `method`…
    pub place: String,
    pub kind: DiffKind,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

fn diff(
    place: String,
    kind: DiffKind,
    expected: Option<String>,
    actual: Option<String>,
) -> Difference {
    Difference {
        place,
        kind,
        expected,
        actual,
    }
}

/// Another request of the same exchange, for `same_as` references
/// (`"chat header session-id"`, `"run_started body.gokey.observation_id"`).
pub struct Peer<'a> {
    pub label: &'a str,
    pub captured: &'a Captured,
    /// The body decoded as its baseline describes it.
    pub body: Option<Value>,
}

/// What a comparison may look at besides the request itself.
#[derive(Default)]
pub struct Context<'a> {
    pub facts: Facts<'a>,
    pub peers: Vec<Peer<'a>>,
}

impl Context<'_> {
    /// The value a `same_as` reference points at.
    fn resolve(&self, reference: &str) -> Option<String> {
        let (label, place) = reference.split_once(' ')?;
        let peer = self.peers.iter().find(|p| p.label == label)?;
        match place.strip_prefix("header ") {
            Some(name) => peer.captured.header(name).map(str::to_string),
            None => lookup(peer.body.as_ref()?, place).map(as_text),
        }
    }
}

/// Every difference between a captured chat call and the fixture's
/// baseline, up to the dynamic fields, which are checked by format.
/// `now_ms` anchors the timestamp check.
pub fn compare(fixture: &Fixture, captured: &Captured, now_ms: i64) -> Vec<Difference> {
    let ctx = Context {
        facts: Facts {
            api_key: &fixture.account.api_key,
            now_ms,
            chat: Some(captured),
            ..Facts::default()
        },
        peers: Vec::new(),
    };
    compare_request(&fixture.expected, captured, &ctx)
}

/// Every difference between `captured` and `expected`.
pub fn compare_request(
    expected: &ExpectedRequest,
    captured: &Captured,
    ctx: &Context<'_>,
) -> Vec<Difference> {
    let facts = Facts {
        request: Some(captured),
        ..ctx.facts
    };
    let mut out = Vec::new();
    if !captured.method.eq_ignore_ascii_case(&expected.method) {
        out.push(diff(
            "method".into(),
            DiffKind::Changed,
            Some(expected.method.clone()),
            Some(captured.method.clone()),
        ));
    }
    if captured.path != expected.path {
        out.push(diff(
            "path".into(),
            DiffKind::Changed,
            Some(expected.path.clone()),
            Some(captured.path.clone()),
        ));
    }
    compare_headers(expected, captured, &facts, &mut out);
    match body::decode(expected, &captured.body) {
        Ok(body) => {
            let walk = walk::Walk {
                rules: expected,
                ctx,
                facts: &facts,
            };
            walk.diff("body", &expected.body, &body, &mut out);
            walk::compare_form_order(expected, &body, &mut out);
        }
        Err(e) => out.push(diff(
            "body".into(),
            DiffKind::BadFormat,
            Some(format!("{:?}", expected.body_format).to_lowercase()),
            Some(e),
        )),
    }
    out
}

fn compare_headers(
    expected: &ExpectedRequest,
    captured: &Captured,
    facts: &Facts<'_>,
    out: &mut Vec<Difference>,
) {
    for (name, rule) in &expected.headers {
        let place = format!("header {name}");
        let Some(actual) = captured.header(name) else {
            out.push(diff(place, DiffKind::Missing, Some(describe(rule)), None));
            continue;
        };
        let problem = match rule {
            HeaderRule::Exact(value) => (value != actual).then_some(DiffKind::Changed),
            HeaderRule::Dynamic { dynamic } => {
                (!dynamic::check(*dynamic, actual, facts)).then_some(DiffKind::BadFormat)
            }
        };
        if let Some(kind) = problem {
            out.push(diff(
                place,
                kind,
                Some(describe(rule)),
                Some(actual.to_string()),
            ));
        }
    }
    for (name, value) in &captured.headers {
        let known = expected
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name));
        if !known && !TRANSPORT_HEADERS.contains(&name.as_str()) {
            out.push(diff(
                format!("header {name}"),
                DiffKind::Extra,
                None,
                Some(value.clone()),
            ));
        }
    }
    if let Some(len) = captured.header("content-length")
        && len != captured.body.len().to_string()
    {
        out.push(diff(
            "header content-length".into(),
            DiffKind::BadFormat,
            Some(captured.body.len().to_string()),
            Some(len.to_string()),
        ));
    }
}

/// How a header rule reads, for humans.
pub fn describe(rule: &HeaderRule) -> String {
    match rule {
        HeaderRule::Exact(v) => v.clone(),
        HeaderRule::Dynamic { dynamic } => format!("<{}>", dynamic.pattern()),
    }
}

mod walk;

#[cfg(test)]
mod tests;
