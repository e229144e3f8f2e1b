//! OpenAI chat completion → Anthropic message (non-stream).

use super::{Echo, new_id, stop};
use serde_json::{Value, json};

/// Builds the Anthropic reply from an upstream completion; `echo` holds the
/// model name the client asked for and its stop sequences.
pub fn message(reply: &Value, echo: &Echo) -> Value {
    let choice = reply
        .get("choices")
        .and_then(|c| c.get(0))
        .cloned()
        .unwrap_or(Value::Null);
    let msg = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut content = Vec::new();
    if let Some(thought) = msg
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        let signature = msg
            .get("signature")
            .and_then(Value::as_str)
            .unwrap_or_default();
        content.push(json!({ "type": "thinking", "thinking": thought, "signature": signature }));
    }
    if let Some(text) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({ "type": "text", "text": text }));
    }
    if let Some(Value::Array(calls)) = msg.get("tool_calls") {
        let mut ids: Vec<&str> = Vec::with_capacity(calls.len());
        for call in calls {
            let function = call.get("function").cloned().unwrap_or(Value::Null);
            let arguments = function
                .get("arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            // Clients answer a call by its id: a missing, empty or repeated
            // one gets a fresh id.
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty() && !ids.contains(id));
            ids.extend(id);
            content.push(json!({
                "type": "tool_use",
                "id": id.map_or_else(|| new_id("toolu_"), str::to_string),
                "name": function.get("name").and_then(Value::as_str).unwrap_or_default(),
                "input": tool_input(arguments),
            }));
        }
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let has_tools = content.iter().any(|b| b["type"] == "tool_use");
    let matched = echo.matched_stop(&choice);
    let (reason, sequence) = stop(finish, has_tools, matched.as_deref());
    json!({
        "id": message_id(reply),
        "type": "message",
        "role": "assistant",
        "model": echo.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(reply.get("usage")),
    })
}

/// The upstream id under Anthropic's prefix, or a fresh one.
pub fn message_id(reply: &Value) -> String {
    match reply.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("msg_{}", id.trim_start_matches("chatcmpl-")),
        _ => new_id("msg_"),
    }
}

/// Tool arguments as an object; text that is not a JSON object is kept
/// whole under `_raw_arguments` rather than lost.
pub fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => json!({}),
        _ => json!({ "_raw_arguments": arguments }),
    }
}

/// OpenAI usage → Anthropic usage.
///
/// Prompt tokens served from the upstream's cache: OpenAI counts them in
/// `prompt_tokens` and again in `prompt_tokens_details.cached_tokens`;
/// Anthropic counts them apart, in `cache_read_input_tokens`, and
/// `input_tokens` holds the rest (clients add the two to know how full the
/// context is). An upstream that already names `cache_read_input_tokens`
/// or `cache_creation_input_tokens` is taken as it says: iFlow sends both,
/// with a `prompt_tokens` that leaves them out (the official client adds
/// them up itself; protocol section 6), which is Anthropic's own count.
pub fn usage(usage: Option<&Value>) -> Value {
    let field = |path: &[&str]| {
        path.iter()
            .try_fold(usage?, |v, k| v.get(k))
            .and_then(Value::as_u64)
    };
    let prompt = field(&["prompt_tokens"]).unwrap_or(0);
    let output = field(&["completion_tokens"]).unwrap_or(0);
    let (input, cached) = match (
        field(&["cache_read_input_tokens"]),
        field(&["prompt_tokens_details", "cached_tokens"]),
    ) {
        (Some(read), _) => (prompt, Some(read)),
        (None, Some(cached)) => (prompt.saturating_sub(cached), Some(cached)),
        (None, None) => (prompt, None),
    };
    let mut out = json!({ "input_tokens": input, "output_tokens": output });
    if let Some(cached) = cached {
        out["cache_read_input_tokens"] = json!(cached);
    }
    if let Some(written) = field(&["cache_creation_input_tokens"]) {
        out["cache_creation_input_tokens"] = json!(written);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_prompt_tokens_are_counted_apart_as_anthropic_does() {
        let openai = json!({ "prompt_tokens": 1000, "completion_tokens": 5,
            "prompt_tokens_details": { "cached_tokens": 800 } });
        assert_eq!(
            usage(Some(&openai)),
            json!({ "input_tokens": 200, "output_tokens": 5, "cache_read_input_tokens": 800 })
        );
        let named = json!({ "prompt_tokens": 1000, "completion_tokens": 5,
            "cache_read_input_tokens": 300 });
        assert_eq!(
            usage(Some(&named)),
            json!({ "input_tokens": 1000, "output_tokens": 5, "cache_read_input_tokens": 300 })
        );
        let plain = json!({ "prompt_tokens": 7, "completion_tokens": 1 });
        assert_eq!(
            usage(Some(&plain)),
            json!({ "input_tokens": 7, "output_tokens": 1 })
        );
        assert_eq!(
            usage(None),
            json!({ "input_tokens": 0, "output_tokens": 0 })
        );
    }

    #[test]
    fn anthropic_style_cache_counts_are_passed_on() {
        let u = json!({ "prompt_tokens": 10, "completion_tokens": 2,
            "cache_read_input_tokens": 300, "cache_creation_input_tokens": 40 });
        assert_eq!(
            usage(Some(&u)),
            json!({ "input_tokens": 10, "output_tokens": 2,
                "cache_read_input_tokens": 300, "cache_creation_input_tokens": 40 })
        );
    }

    #[test]
    fn full_reply_becomes_blocks() {
        let reply = json!({
            "id": "chatcmpl-abc",
            "choices": [{
                "message": {
                    "role": "assistant",
                    "reasoning_content": "let me think",
                    "content": "Here you go",
                    "tool_calls": [{
                        "id": "call_1",
                        "type": "function",
                        "function": { "name": "read_file", "arguments": "{\"path\":\"a.rs\"}" }
                    }]
                },
                "finish_reason": "tool_calls"
            }],
            "usage": { "prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19 }
        });
        let m = message(&reply, &Echo::model("claude-sonnet-4-5"));
        assert_eq!(m["id"], "msg_abc");
        assert_eq!(m["model"], "claude-sonnet-4-5");
        assert_eq!(m["content"][0]["type"], "thinking");
        assert_eq!(m["content"][0]["thinking"], "let me think");
        assert_eq!(
            m["content"][1],
            json!({ "type": "text", "text": "Here you go" })
        );
        assert_eq!(
            m["content"][2],
            json!({ "type": "tool_use", "id": "call_1", "name": "read_file", "input": { "path": "a.rs" } })
        );
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["usage"],
            json!({ "input_tokens": 12, "output_tokens": 7 })
        );
    }

    #[test]
    fn stop_reasons_and_bad_arguments() {
        let reply =
            json!({ "choices": [{ "message": { "content": "x" }, "finish_reason": "length" }] });
        let m = Echo::model("m");
        assert_eq!(message(&reply, &m)["stop_reason"], "max_tokens");
        assert!(
            message(&reply, &m)["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("msg_"))
        );
        assert_eq!(
            tool_input("not json"),
            json!({ "_raw_arguments": "not json" })
        );
        assert_eq!(tool_input(""), json!({}));
    }

    #[test]
    fn repeated_tool_call_ids_are_made_unique() {
        let call = |id: &str, path: &str| {
            json!({ "id": id, "type": "function",
            "function": { "name": "read", "arguments": format!("{{\"path\":\"{path}\"}}") } })
        };
        let reply = json!({ "choices": [{ "message": { "tool_calls": [
            call("call_0", "a"), call("call_0", "b"), call("call_1", "c")
        ] }, "finish_reason": "tool_calls" }] });
        let content = message(&reply, &Echo::model("m"))["content"].clone();
        let ids: Vec<&str> = (0..3)
            .map(|i| content[i]["id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(ids[0], "call_0");
        assert!(ids[1].starts_with("toolu_"), "{ids:?}");
        assert_eq!(ids[2], "call_1");
        assert_eq!(content[1]["input"], json!({"path": "b"}));
    }

    #[test]
    fn a_tool_call_without_a_usable_id_gets_one() {
        // Claude Code answers each tool_use by its id: an empty one would
        // leave the result with nothing to point at.
        for id in [json!(""), json!(null), json!(7)] {
            let reply = json!({ "choices": [{ "message": { "tool_calls": [
                { "id": id, "type": "function", "function": { "name": "ls", "arguments": "{}" } }
            ] }, "finish_reason": "tool_calls" }] });
            let block = &message(&reply, &Echo::model("m"))["content"][0];
            let given = block["id"].as_str().unwrap_or_default();
            assert!(
                given.starts_with("toolu_") && given.len() == "toolu_".len() + 24,
                "{id}: {block}"
            );
        }
    }

    #[test]
    fn named_stop_sequence_is_reported() {
        let echo = Echo {
            model: "claude-haiku-4-5".into(),
            stop_sequences: vec!["###".into(), "END".into()],
        };
        let reply = |extra: Value| {
            let mut choice = json!({ "message": { "content": "a b" }, "finish_reason": "stop" });
            if let (Some(c), Value::Object(e)) = (choice.as_object_mut(), extra) {
                c.extend(e);
            }
            message(&json!({ "choices": [choice] }), &echo)
        };
        let stop_of = |m: Value| (m["stop_reason"].clone(), m["stop_sequence"].clone());
        // vLLM's field, then SGLang's.
        assert_eq!(
            stop_of(reply(json!({ "stop_reason": "END" }))),
            (json!("stop_sequence"), json!("END"))
        );
        assert_eq!(
            stop_of(reply(json!({ "matched_stop": "###" }))),
            (json!("stop_sequence"), json!("###"))
        );
        // A stop token id or a string the request did not ask for.
        assert_eq!(
            stop_of(reply(json!({ "stop_reason": 2, "matched_stop": "</s>" }))),
            (json!("end_turn"), Value::Null)
        );
        // The same reply for a request without stop sequences.
        let plain = json!({ "choices": [{ "message": { "content": "a" },
                            "finish_reason": "stop", "stop_reason": "END" }] });
        let m = message(&plain, &Echo::model("m"));
        assert_eq!(stop_of(m), (json!("end_turn"), Value::Null));
    }
}
