//! The walk over a body: exact values, except at places with a rule, and
//! the field order of forms.

use super::{Context, DiffKind, Difference, diff};
use crate::align::body::{as_text, lookup};
use crate::align::dynamic::{self, Facts};
use crate::align::fixture::{ExpectedRequest, FieldRule};
use serde_json::Value;

fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// One body's comparison with its baseline.
pub(super) struct Walk<'a> {
    pub rules: &'a ExpectedRequest,
    pub ctx: &'a Context<'a>,
    pub facts: &'a Facts<'a>,
}

impl Walk<'_> {
    fn expected_text(&self, place: &str, value: &Value) -> String {
        match self.rules.dynamic_fields.get(place) {
            Some(rule) => rule.describe(),
            None => value.to_string(),
        }
    }

    /// Keys added, removed or changed, at their place.
    pub fn diff(&self, place: &str, expected: &Value, actual: &Value, out: &mut Vec<Difference>) {
        if let Some(rule) = self.rules.dynamic_fields.get(place) {
            self.check_rule(place, rule, actual, out);
            return;
        }
        match (expected, actual) {
            (Value::Object(e), Value::Object(a)) => {
                for (k, ev) in e {
                    let here = format!("{place}.{k}");
                    match a.get(k) {
                        Some(av) => self.diff(&here, ev, av, out),
                        None => {
                            let want = self.expected_text(&here, ev);
                            out.push(diff(here, DiffKind::Missing, Some(want), None))
                        }
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
                        (Some(ev), Some(av)) => self.diff(&here, ev, av, out),
                        (Some(ev), None) => {
                            let want = self.expected_text(&here, ev);
                            out.push(diff(here, DiffKind::Missing, Some(want), None))
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

    fn check_rule(&self, place: &str, rule: &FieldRule, actual: &Value, out: &mut Vec<Difference>) {
        let text = as_text(actual);
        let (ok, want) = match rule {
            FieldRule::Dynamic { dynamic, same_as } => {
                let format_ok = actual.is_string() && dynamic::check(*dynamic, &text, self.facts);
                match same_as {
                    None => (format_ok, rule.describe()),
                    Some(reference) => {
                        let other = self.ctx.resolve(reference);
                        let want = match &other {
                            Some(v) => format!("{} = {v}", rule.describe()),
                            None => format!("{} (not found)", rule.describe()),
                        };
                        (format_ok && other.as_deref() == Some(text.as_str()), want)
                    }
                }
            }
            FieldRule::OneOf { one_of } => (
                actual.is_string() && one_of.contains(&text),
                rule.describe(),
            ),
        };
        if !ok {
            out.push(diff(
                place.to_string(),
                DiffKind::BadFormat,
                Some(want),
                Some(text),
            ));
        }
    }
}

/// Forms are compared in order too: the official client builds them field
/// by field. Only fields on both sides count (the rest are missing/extra).
pub(super) fn compare_form_order(
    expected: &ExpectedRequest,
    actual: &Value,
    out: &mut Vec<Difference>,
) {
    for place in expected.form_places() {
        let (Some(Value::Object(e)), Some(Value::Object(a))) =
            (lookup(&expected.body, &place), lookup(actual, &place))
        else {
            continue;
        };
        let want: Vec<&str> = e
            .keys()
            .filter(|k| a.contains_key(*k))
            .map(String::as_str)
            .collect();
        let got: Vec<&str> = a
            .keys()
            .filter(|k| e.contains_key(*k))
            .map(String::as_str)
            .collect();
        if want != got {
            out.push(diff(
                place,
                DiffKind::Order,
                Some(want.join(",")),
                Some(got.join(",")),
            ));
        }
    }
}
