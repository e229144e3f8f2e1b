//! The text report of `align diff`: for each request, the baseline beside
//! what the gateway sent, header by header and body field by body field,
//! then the differences.

use crate::align::body::{self, leaves, lookup};
use crate::align::compare::{Captured, DiffKind, Difference, describe};
use crate::align::fixture::{ExpectedRequest, TRANSPORT_HEADERS};
use crate::align::replay::CaseResult;
use crate::align::telemetry::TelemetryResult;
use serde_json::Value;

const NAME: usize = 30;
const BASELINE: usize = 44;
const SENT: usize = 60;

pub fn case(result: &CaseResult) {
    say!(
        "== {}: {}",
        result.name,
        verdict(&result.error, &result.differences)
    );
    if !result.description.is_empty() {
        say!("   {}", result.description);
    }
    if let Some(captured) = &result.captured {
        request(
            &result.baseline,
            captured,
            &result.forwarded,
            &result.differences,
        );
    }
    differences(&result.differences);
    say!();
}

pub fn telemetry(result: &TelemetryResult) {
    let after = match &result.after {
        Some(case) => format!("after {case}"),
        None => "at start-up".into(),
    };
    say!(
        "== telemetry {} ({after}): {}",
        result.name,
        verdict(&None, &result.differences)
    );
    if !result.description.is_empty() {
        say!("   {}", result.description);
    }
    for event in &result.events {
        say!(
            "   -- {}: {} {}",
            event.event,
            event.baseline.method,
            event.baseline.path
        );
        match &event.captured {
            Some(captured) => {
                let prefix = format!("{}: ", event.event);
                let own: Vec<Difference> = result
                    .differences
                    .iter()
                    .filter_map(|d| {
                        d.place.strip_prefix(&prefix).map(|place| Difference {
                            place: place.to_string(),
                            ..d.clone()
                        })
                    })
                    .collect();
                request(&event.baseline, captured, &[], &own);
            }
            None => say!("   (not sent)"),
        }
    }
    for extra in &result.extra {
        say!("   -- not in the baseline: {} {}", extra.method, extra.path);
    }
    differences(&result.differences);
    say!();
}

fn verdict(error: &Option<String>, differences: &[Difference]) -> String {
    match (error, differences.len()) {
        (Some(e), _) => format!("NOT COMPARED: {e}"),
        (None, 0) => "same".into(),
        (None, n) => format!("{n} differences"),
    }
}

/// Whether a difference concerns `place` or a field inside it.
fn flagged(differences: &[Difference], place: &str) -> bool {
    differences.iter().any(|d| {
        d.place == place
            || place
                .strip_prefix(d.place.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

fn row(mark: bool, name: &str, baseline: &str, sent: &str) {
    let mark = if mark { "!" } else { " " };
    say!(
        " {mark} {:<NAME$} {:<BASELINE$} {}",
        clip(name, NAME),
        clip(baseline, BASELINE),
        clip(sent, SENT)
    );
}

fn request(
    baseline: &ExpectedRequest,
    captured: &Captured,
    forwarded: &[String],
    differences: &[Difference],
) {
    row(false, "", "BASELINE", "GATEWAY");
    row(
        flagged(differences, "method") || flagged(differences, "path"),
        "request",
        &format!("{} {}", baseline.method, baseline.path),
        &format!("{} {}", captured.method, captured.path),
    );
    for (name, rule) in &baseline.headers {
        let place = format!("header {name}");
        let sent = captured.header(name).unwrap_or("(missing)");
        row(flagged(differences, &place), &place, &describe(rule), sent);
    }
    for (name, value) in &captured.headers {
        if !baseline.headers.iter().any(|(n, _)| n == name) {
            let note = if TRANSPORT_HEADERS.contains(&name.as_str()) {
                "(transport, allowed)"
            } else {
                "(not in baseline)"
            };
            let place = format!("header {name}");
            row(flagged(differences, &place), &place, note, value);
        }
    }
    let sent = match body::decode(baseline, &captured.body) {
        Ok(value) => value,
        Err(_) => {
            let text = String::from_utf8_lossy(&captured.body);
            row(
                true,
                "body",
                "(see baseline)",
                &format!("not decodable: {text}"),
            );
            return;
        }
    };
    for (place, expected) in baseline_leaves(baseline) {
        let shown = match lookup(&sent, &place) {
            Some(v) => show(v),
            None => "(missing)".into(),
        };
        let expected = if forwarded.contains(&place) {
            format!("{expected} (client's own, forwarded)")
        } else {
            expected
        };
        row(flagged(differences, &place), &place, &expected, &shown);
    }
    let mut extra = Vec::new();
    leaves("body", &sent, &mut extra);
    for (place, value) in extra {
        let known = lookup(&baseline.body, &place).is_some()
            || baseline
                .dynamic_fields
                .keys()
                .any(|p| place == *p || place.starts_with(&format!("{p}.")));
        if !known {
            row(true, &place, "(not in baseline)", &show(&value));
        }
    }
}

/// The baseline body's leaves, with a rule's description in place of the
/// example value at each dynamic place.
fn baseline_leaves(baseline: &ExpectedRequest) -> Vec<(String, String)> {
    let mut all = Vec::new();
    leaves("body", &baseline.body, &mut all);
    let mut out: Vec<(String, String)> = Vec::new();
    for (place, value) in all {
        let rule = baseline
            .dynamic_fields
            .iter()
            .find(|(p, _)| place == **p || place.starts_with(&format!("{p}.")));
        match rule {
            Some((p, rule)) => {
                if !out.iter().any(|(q, _)| q == p) {
                    out.push((p.clone(), rule.describe()));
                }
            }
            None => out.push((place, show(&value))),
        }
    }
    out
}

/// A value as JSON; in a form, `null` stands for a bare key (`aplus`).
fn show(value: &Value) -> String {
    value.to_string()
}

fn differences(differences: &[Difference]) {
    for d in differences {
        let kind = match d.kind {
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Changed => "changed",
            DiffKind::BadFormat => "bad format",
            DiffKind::Order => "order",
        };
        say!(
            "   ! {kind:<10} {}: baseline {} / gateway {}",
            d.place,
            d.expected.as_deref().unwrap_or("-"),
            d.actual.as_deref().unwrap_or("-")
        );
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
