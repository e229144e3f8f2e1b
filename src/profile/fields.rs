//! Field access on a request body by a linear scan of its keys.
//!
//! A chat request has about a dozen top-level fields, and the body rules
//! look up, set or drop about fifteen of them per request. `Map::get` hashes
//! the key with SipHash on any map of two fields or more; comparing a few
//! short keys costs less. Adding a field or removing a present one still
//! hashes once (the map's index must follow). Large objects (more than
//! [`LINEAR_UP_TO`] fields) take the hashed path throughout. Results are
//! the same either way: `set` on a present field keeps its place, like
//! `Map::insert`; `remove` keeps the order of the rest.

use serde_json::{Map, Value};

/// Above this many fields a lookup hashes.
const LINEAR_UP_TO: usize = 32;

pub(crate) fn get<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if body.len() > LINEAR_UP_TO {
        return body.get(key);
    }
    body.iter().find_map(|(k, v)| (k == key).then_some(v))
}

/// Sets `key` to `value`: in place when present, else appended.
pub(crate) fn set(body: &mut Map<String, Value>, key: &str, value: Value) {
    if body.len() <= LINEAR_UP_TO
        && let Some((_, slot)) = body.iter_mut().find(|(k, _)| *k == key)
    {
        *slot = value;
        return;
    }
    body.insert(key.to_string(), value);
}

/// Drops `key` if present, keeping the order of the other fields. The scan
/// spares the hash for an absent key, the common case; `shift_remove` keeps
/// the map's index in step (`retain` would rebuild it).
pub(crate) fn remove(body: &mut Map<String, Value>, key: &str) {
    if body.len() > LINEAR_UP_TO || get(body, key).is_some() {
        body.shift_remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// Small and large objects (linear and hashed paths) give what `Map`'s
    /// own methods give, field order included.
    #[test]
    fn same_results_as_the_map_itself() {
        // Sizes on both sides of the threshold: the larger ones check that
        // the hashed path is taken without changing the results.
        for size in [0, 1, 5, LINEAR_UP_TO, LINEAR_UP_TO + 1, 80] {
            let mut ours = Map::new();
            for i in 0..size {
                ours.insert(format!("f{i}"), json!(i));
            }
            let mut theirs = ours.clone();
            let present = format!("f{}", size / 2);
            let keys = [present.as_str(), "absent", "f0"];
            for key in keys {
                assert_eq!(get(&ours, key), ours.get(key), "{size} fields, get {key}");
            }
            for (key, value) in [(present.as_str(), json!("new")), ("added", json!(true))] {
                set(&mut ours, key, value.clone());
                theirs.insert(key.to_string(), value);
                assert_eq!(
                    ours.iter().collect::<Vec<_>>(),
                    theirs.iter().collect::<Vec<_>>(),
                    "{size} fields, set {key}"
                );
            }
            for key in ["f0", "absent", "added"] {
                remove(&mut ours, key);
                theirs.shift_remove(key);
                assert_eq!(
                    ours.iter().collect::<Vec<_>>(),
                    theirs.iter().collect::<Vec<_>>(),
                    "{size} fields, remove {key}"
                );
            }
        }
    }

    #[test]
    fn set_keeps_a_present_field_in_its_place() {
        let mut body = object(json!({"model": "a", "temperature": 0.2, "stream": false}));
        set(&mut body, "temperature", json!(1));
        let keys: Vec<&str> = body.keys().map(String::as_str).collect();
        assert_eq!(keys, ["model", "temperature", "stream"]);
        assert_eq!(body["temperature"], json!(1));
    }
}
