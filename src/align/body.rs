//! Bodies as the comparison sees them: JSON with its `k=v&…` forms opened
//! into objects (in wire order), addressed by places such as
//! `body.messages[0].content` or `body.gokey.trace_id`.

use super::fixture::{BodyFormat, ExpectedRequest};
use serde_json::{Map, Value};

/// The captured body decoded the way `expected` describes it: no body is
/// `null` (a GET). A form field that is not a string is left as it is (the
/// comparison then reports it).
pub fn decode(expected: &ExpectedRequest, raw: &[u8]) -> Result<Value, String> {
    let mut body = match expected.body_format {
        BodyFormat::Json if raw.is_empty() => Value::Null,
        BodyFormat::Json => serde_json::from_slice::<Value>(raw).map_err(|e| e.to_string())?,
        BodyFormat::Form => {
            let text = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
            return Ok(parse_form(text));
        }
    };
    for place in &expected.form_fields {
        if let Some(field) = lookup_mut(&mut body, place)
            && let Some(text) = field.as_str()
        {
            *field = parse_form(text);
        }
    }
    Ok(body)
}

/// `a=1&b=&c` as `{"a":"1","b":"","c":null}`, values still percent-encoded.
/// A repeated key gets a `#2`, `#3`… suffix so that it shows as extra.
pub fn parse_form(text: &str) -> Value {
    let mut fields = Map::new();
    if text.is_empty() {
        return Value::Object(fields);
    }
    for part in text.split('&') {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k, Value::String(v.to_string())),
            None => (part, Value::Null),
        };
        let mut name = key.to_string();
        let mut n = 1;
        while fields.contains_key(&name) {
            n += 1;
            name = format!("{key}#{n}");
        }
        fields.insert(name, value);
    }
    Value::Object(fields)
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `body.a.b[2].c` as steps after `body`; `None` when malformed.
fn steps(place: &str) -> Option<Vec<Step<'_>>> {
    let rest = place.strip_prefix("body")?;
    let mut out = Vec::new();
    for (i, segment) in rest.split('.').enumerate() {
        if i == 0 {
            // What precedes the first `.`: only indexes, as `body[0]`.
            indexes(segment, &mut out)?;
            continue;
        }
        let (key, tail) = segment.split_at(segment.find('[').unwrap_or(segment.len()));
        if key.is_empty() {
            return None;
        }
        out.push(Step::Key(key));
        indexes(tail, &mut out)?;
    }
    Some(out)
}

fn indexes<'a>(mut tail: &'a str, out: &mut Vec<Step<'a>>) -> Option<()> {
    while !tail.is_empty() {
        let inner = tail.strip_prefix('[')?;
        let (index, after) = inner.split_once(']')?;
        out.push(Step::Index(index.parse().ok()?));
        tail = after;
    }
    Some(())
}

/// The value at `place` in `body`.
pub fn lookup<'a>(body: &'a Value, place: &str) -> Option<&'a Value> {
    steps(place)?
        .into_iter()
        .try_fold(body, |value, step| match step {
            Step::Key(k) => value.get(k),
            Step::Index(i) => value.get(i),
        })
}

fn lookup_mut<'a>(body: &'a mut Value, place: &str) -> Option<&'a mut Value> {
    steps(place)?
        .into_iter()
        .try_fold(body, |value, step| match step {
            Step::Key(k) => value.get_mut(k),
            Step::Index(i) => value.get_mut(i),
        })
}

/// A value as a rule sees it: a string as itself, anything else as JSON.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every leaf of `value` with its place, in order: what `align diff` shows
/// side by side. Empty objects and arrays are leaves.
pub fn leaves(place: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(&format!("{place}.{k}"), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(&format!("{place}[{i}]"), v, out);
            }
        }
        other => out.push((place.to_string(), other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn places_address_keys_and_indexes() {
        let body = json!({ "messages": [{ "content": "hi" }], "gokey": { "spm-cnt": "x" } });
        assert_eq!(
            lookup(&body, "body.messages[0].content"),
            Some(&json!("hi"))
        );
        assert_eq!(lookup(&body, "body.gokey.spm-cnt"), Some(&json!("x")));
        assert_eq!(lookup(&body, "body"), Some(&body));
        assert_eq!(lookup(&body, "body.messages[1]"), None);
        assert_eq!(lookup(&body, "body.messages[x]"), None);
        assert_eq!(lookup(&body, "headers.x"), None);
    }

    #[test]
    fn forms_keep_order_bare_keys_and_repeats() {
        let form = parse_form("b=2&a=&aplus&b=3");
        assert_eq!(
            serde_json::to_string(&form).unwrap_or_default(),
            r#"{"b":"2","a":"","aplus":null,"b#2":"3"}"#
        );
    }

    #[test]
    fn form_fields_are_opened_in_json_bodies() {
        let expected: ExpectedRequest = serde_json::from_value(json!({
            "method": "POST", "path": "/", "headers": [],
            "body": { "gmkey": "AI", "gokey": {} }, "form_fields": ["body.gokey"]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let raw = br#"{"gmkey":"AI","gokey":"pid=iflow&tool="}"#;
        assert_eq!(
            decode(&expected, raw).ok(),
            Some(json!({ "gmkey": "AI", "gokey": { "pid": "iflow", "tool": "" } }))
        );
    }
}
