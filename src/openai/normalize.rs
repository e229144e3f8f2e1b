//! Response shaping for OpenAI clients (protocol section 6): what to do with
//! `reasoning_content` (`IFLOW_PRESERVE_REASONING_CONTENT`) and the zero usage
//! a non-stream reply gets when the upstream sent none. Every other upstream
//! field is left as it came.

use serde_json::{Value, json};

/// Shapes a non-stream chat completion in place.
pub fn completion(reply: &mut Value, preserve_reasoning: bool) {
    if !preserve_reasoning {
        for_each_choice(reply, "message", |m| {
            fold_reasoning(m);
        });
    }
    if let Value::Object(map) = reply
        && map.get("usage").is_none_or(Value::is_null)
    {
        map.insert(
            "usage".into(),
            json!({ "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0 }),
        );
    }
}

/// Shapes one stream chunk in place; returns whether anything changed.
pub fn chunk(chunk: &mut Value, preserve_reasoning: bool) -> bool {
    let mut changed = false;
    if !preserve_reasoning {
        for_each_choice(chunk, "delta", |m| changed |= fold_reasoning(m));
    }
    changed
}

/// Without preserved reasoning: reasoning-only text becomes the content; when
/// both exist the reasoning is dropped.
fn fold_reasoning(message: &mut serde_json::Map<String, Value>) -> bool {
    let Some(reasoning) = message.shift_remove("reasoning_content") else {
        return false;
    };
    let content_empty = match message.get("content") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    };
    if content_empty && reasoning.as_str().is_some_and(|r| !r.is_empty()) {
        message.insert("content".into(), reasoning);
    }
    true
}

fn for_each_choice<F>(value: &mut Value, field: &str, mut f: F)
where
    F: FnMut(&mut serde_json::Map<String, Value>),
{
    if let Some(Value::Array(choices)) = value.get_mut("choices") {
        for choice in choices {
            if let Some(Value::Object(m)) = choice.get_mut(field) {
                f(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preserve_keeps_reasoning_and_adds_zero_usage() {
        let mut r = json!({"choices":[{"message":{"content":"a","reasoning_content":"r"}}]});
        completion(&mut r, true);
        assert_eq!(r["choices"][0]["message"]["reasoning_content"], "r");
        assert_eq!(r["usage"]["total_tokens"], 0);
    }

    #[test]
    fn fold_moves_or_drops_reasoning() {
        let mut r = json!({"choices":[{"message":{"content":"","reasoning_content":"r"}}],
                           "usage":{"total_tokens":5}});
        completion(&mut r, false);
        assert_eq!(r["choices"][0]["message"], json!({"content":"r"}));
        assert_eq!(r["usage"]["total_tokens"], 5);

        let mut c = json!({"choices":[{"delta":{"content":"a","reasoning_content":"r"}}]});
        assert!(chunk(&mut c, false));
        assert_eq!(c["choices"][0]["delta"], json!({"content":"a"}));

        let mut c = json!({"choices":[{"delta":{"reasoning_content":"r"}}]});
        assert!(chunk(&mut c, false));
        assert_eq!(c["choices"][0]["delta"], json!({"content":"r"}));

        let mut c = json!({"choices":[{"delta":{"content":"a"}}]});
        assert!(!chunk(&mut c, false));
    }
}
