//! Field-level comparison of a captured upstream request with a baseline.

use super::fixture::{Dynamic, Fixture, HeaderRule, TRANSPORT_HEADERS};
use crate::profile::iflow::headers::USER_AGENT;
use crate::profile::iflow::signature::sign;
use serde::Serialize;
use serde_json::Value;

/// A request as it reached the capturing upstream.
#[derive(Debug, Clone, Serialize)]
pub struct Captured {
    pub method: String,
    pub path: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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

/// Every difference between `captured` and the fixture's baseline, up to
/// the dynamic fields, which are checked by format. `now_ms` anchors the
/// timestamp check.
pub fn compare(fixture: &Fixture, captured: &Captured, now_ms: i64) -> Vec<Difference> {
    let expected = &fixture.expected;
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
    for (name, rule) in &expected.headers {
        let place = format!("header {name}");
        let Some(actual) = captured.header(name) else {
            out.push(diff(place, DiffKind::Missing, Some(describe(rule)), None));
            continue;
        };
        let problem = match rule {
            HeaderRule::Exact(value) => (value != actual).then_some(DiffKind::Changed),
            HeaderRule::Dynamic { dynamic } => {
                (!dynamic_ok(*dynamic, actual, captured, &fixture.account.api_key, now_ms))
                    .then_some(DiffKind::BadFormat)
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
    match serde_json::from_slice::<Value>(&captured.body) {
        Ok(body) => diff_json("body", &expected.body, &body, &mut out),
        Err(e) => out.push(diff(
            "body".into(),
            DiffKind::BadFormat,
            Some("JSON".into()),
            Some(e.to_string()),
        )),
    }
    out
}

fn describe(rule: &HeaderRule) -> String {
    match rule {
        HeaderRule::Exact(v) => v.clone(),
        HeaderRule::Dynamic { dynamic } => format!("<{}>", dynamic.pattern()),
    }
}

fn is_uuid_v4(s: &str) -> bool {
    s.len() == 36
        && s == s.to_ascii_lowercase()
        && uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn dynamic_ok(kind: Dynamic, value: &str, captured: &Captured, api_key: &str, now_ms: i64) -> bool {
    match kind {
        Dynamic::SessionId => value.strip_prefix("session-").is_some_and(is_uuid_v4),
        Dynamic::UuidV4 => is_uuid_v4(value),
        Dynamic::EpochMs => {
            value.len() == 13
                && value
                    .parse::<i64>()
                    .is_ok_and(|t| (t - now_ms).abs() <= 60_000)
        }
        Dynamic::Signature => {
            let session = captured.header("session-id").unwrap_or_default();
            let timestamp = captured
                .header("x-iflow-timestamp")
                .and_then(|t| t.parse::<i64>().ok());
            timestamp
                .and_then(|t| sign(api_key, USER_AGENT, session, t))
                .as_deref()
                == Some(value)
        }
        Dynamic::Traceparent => {
            let parts: Vec<&str> = value.split('-').collect();
            parts.len() == 4
                && parts[0] == "00"
                && is_hex(parts[1], 32)
                && is_hex(parts[2], 16)
                && parts[3] == "01"
        }
    }
}

fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Keys added, removed or changed, at their JSON path.
fn diff_json(place: &str, expected: &Value, actual: &Value, out: &mut Vec<Difference>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let here = format!("{place}.{k}");
                match a.get(k) {
                    Some(av) => diff_json(&here, ev, av, out),
                    None => out.push(diff(here, DiffKind::Missing, Some(ev.to_string()), None)),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    out.push(diff(
                        format!("{place}.{k}"),
                        DiffKind::Extra,
                        None,
                        Some(av.to_string()),
                    ));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for i in 0..e.len().max(a.len()) {
                let here = format!("{place}[{i}]");
                match (e.get(i), a.get(i)) {
                    (Some(ev), Some(av)) => diff_json(&here, ev, av, out),
                    (Some(ev), None) => {
                        out.push(diff(here, DiffKind::Missing, Some(ev.to_string()), None))
                    }
                    (None, Some(av)) => {
                        out.push(diff(here, DiffKind::Extra, None, Some(av.to_string())))
                    }
                    (None, None) => {}
                }
            }
        }
        _ if same_scalar(expected, actual) => {}
        _ => out.push(diff(
            place.to_string(),
            DiffKind::Changed,
            Some(expected.to_string()),
            Some(actual.to_string()),
        )),
    }
}

#[cfg(test)]
mod tests;
