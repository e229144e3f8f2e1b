//! Scripted upstream replies for the SDK and Anthropic tests, each with its
//! own usage numbers:
//! - `tools`: a tool round trip. While the last message is not a `tool`
//!   message the upstream calls the client's first tool with [`TOOL_ARGS`];
//!   once it is, it answers [`tool_answer`] of the tool's result. Stream or
//!   not, as the request asks (the stream splits the arguments in fragments).
//! - `stream_text`: text only; `stream_think`: reasoning, then text;
//!   `stream_tools2`: text, then two tool calls with argument fragments;
//!   `stream_tools2_noindex`: the same calls without `index`, each whole in
//!   one chunk, as some OpenAI-compatible providers send them;
//!   `stream_tools2_interleaved`: the same calls, both headers first, then
//!   their fragments alternating.
//! - `stop_matched:FIELD`: [`STOPPED_TEXT`], ended by the request's last
//!   `stop` sequence, which the choice names in FIELD the way vLLM
//!   (`stop_reason`) or SGLang (`matched_stop`) do; stream or not.

use serde_json::{Value, json};

pub const TOOL_CALL_ID: &str = "call_w1";
pub const TOOL_ARGS: &str = r#"{"city":"Paris"}"#;
/// The text deltas of `stream_text` (and the text of `stream_think`).
pub const TEXT_DELTAS: &[&str] = &["Hello", " world, é ✓"];
pub const THINK_DELTAS: &[&str] = &["Let me ", "think."];
/// `(prompt_tokens, completion_tokens)` of each script.
pub const TOOL_CALL_USAGE: (u64, u64) = (21, 9);
pub const TOOL_ANSWER_USAGE: (u64, u64) = (40, 12);
pub const STREAM_USAGE: (u64, u64) = (13, 5);
/// The two calls of `stream_tools2`: id, name, argument fragments.
pub const TWO_CALLS: &[(&str, &str, &[&str])] = &[
    ("call_a", "get_weather", &[r#"{"city":"#, r#""Paris"}"#]),
    ("call_b", "get_time", &[r#"{"tz":"#, r#""CET"}"#]),
];

pub fn tool_answer(result: &str) -> String {
    format!("The weather tool says: {result}")
}

pub fn handles(name: &str) -> bool {
    matches!(
        name,
        "tools"
            | "stream_text"
            | "stream_think"
            | "stream_tools2"
            | "stream_tools2_noindex"
            | "stream_tools2_interleaved"
    )
}

fn usage((prompt, completion): (u64, u64)) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion})
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1_700_000_000,
           "model": "glm-5", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn usage_chunk(u: (u64, u64)) -> Value {
    json!({"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1_700_000_000,
           "model": "glm-5", "choices": [], "usage": usage(u)})
}

fn call_delta(index: usize, id: &str, name: &str, args: &str) -> Value {
    json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                           "function": {"name": name, "arguments": args}}]})
}

fn args_delta(index: usize, args: &str) -> Value {
    json!({"tool_calls": [{"index": index, "function": {"arguments": args}}]})
}

/// The content of the last message when it is a `tool` message.
fn tool_result(body: &Value) -> Option<String> {
    let last = body["messages"].as_array()?.last()?;
    (last["role"] == "tool").then(|| last["content"].as_str().unwrap_or_default().to_string())
}

fn first_tool_name(body: &Value) -> String {
    body["tools"][0]["function"]["name"]
        .as_str()
        .unwrap_or("get_weather")
        .to_string()
}

/// The whole completion of `tools`.
pub fn completion(body: &Value) -> Value {
    let (message, finish, used) = match tool_result(body) {
        Some(result) => (
            json!({"role": "assistant", "content": tool_answer(&result)}),
            "stop",
            TOOL_ANSWER_USAGE,
        ),
        None => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": TOOL_CALL_ID, "type": "function",
                "function": {"name": first_tool_name(body), "arguments": TOOL_ARGS}}]}),
            "tool_calls",
            TOOL_CALL_USAGE,
        ),
    };
    json!({"id": "chatcmpl-tools", "object": "chat.completion", "created": 1_700_000_000,
           "model": body["model"], "choices": [{"index": 0, "message": message, "finish_reason": finish}],
           "usage": usage(used)})
}

/// The chunks of a stream script, the usage chunk last (`[DONE]` not included).
pub fn chunks(name: &str, body: &Value) -> Vec<Value> {
    let text = || {
        TEXT_DELTAS
            .iter()
            .map(|t| chunk(json!({"content": t}), None))
    };
    let mut out: Vec<Value> = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    let (finish, used) = match name {
        "stream_text" => {
            out.extend(text());
            ("stop", STREAM_USAGE)
        }
        "stream_think" => {
            out.extend(
                THINK_DELTAS
                    .iter()
                    .map(|t| chunk(json!({"reasoning_content": t}), None)),
            );
            out.extend(text());
            ("stop", STREAM_USAGE)
        }
        "stream_tools2" => {
            out.push(chunk(json!({"content": "Checking."}), None));
            for (i, (id, name, fragments)) in TWO_CALLS.iter().enumerate() {
                out.push(chunk(call_delta(i, id, name, ""), None));
                out.extend(fragments.iter().map(|f| chunk(args_delta(i, f), None)));
            }
            ("tool_calls", STREAM_USAGE)
        }
        "stream_tools2_interleaved" => {
            for (i, (id, name, _)) in TWO_CALLS.iter().enumerate() {
                out.push(chunk(call_delta(i, id, name, ""), None));
            }
            let longest = TWO_CALLS.iter().map(|c| c.2.len()).max().unwrap_or(0);
            for k in 0..longest {
                for (i, (_, _, fragments)) in TWO_CALLS.iter().enumerate() {
                    if let Some(f) = fragments.get(k) {
                        out.push(chunk(args_delta(i, f), None));
                    }
                }
            }
            ("tool_calls", STREAM_USAGE)
        }
        "stream_tools2_noindex" => {
            for (id, name, fragments) in TWO_CALLS {
                let mut delta = call_delta(0, id, name, &fragments.concat());
                delta["tool_calls"][0]
                    .as_object_mut()
                    .map(|c| c.remove("index"));
                out.push(chunk(delta, None));
            }
            ("tool_calls", STREAM_USAGE)
        }
        _ => match tool_result(body) {
            Some(result) => {
                let answer = tool_answer(&result);
                let half = answer.char_indices().nth(answer.chars().count() / 2);
                let (a, b) = answer.split_at(half.map_or(0, |(i, _)| i));
                out.push(chunk(json!({"content": a}), None));
                out.push(chunk(json!({"content": b}), None));
                ("stop", TOOL_ANSWER_USAGE)
            }
            None => {
                let (a, b) = TOOL_ARGS.split_at(8);
                let name = first_tool_name(body);
                out.push(chunk(call_delta(0, TOOL_CALL_ID, &name, ""), None));
                out.push(chunk(args_delta(0, a), None));
                out.push(chunk(args_delta(0, b), None));
                ("tool_calls", TOOL_CALL_USAGE)
            }
        },
    };
    out.push(chunk(json!({}), Some(finish)));
    out.push(usage_chunk(used));
    out
}

/// The text of `stop_matched`.
pub const STOPPED_TEXT: &str = "1, 2, 3";

/// `stop_matched:FIELD`: a completion, or its SSE text for a stream.
pub fn stop_matched(body: &Value, field: &str) -> String {
    let stop = body["stop"]
        .as_array()
        .and_then(|s| s.last())
        .cloned()
        .unwrap_or(Value::Null);
    if body["stream"] != true {
        let mut choice = json!({"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": STOPPED_TEXT}});
        choice[field] = stop;
        let reply = json!({"id": "chatcmpl-stop", "object": "chat.completion",
                           "created": 1_700_000_000, "model": body["model"],
                           "choices": [choice], "usage": usage(STREAM_USAGE)});
        return reply.to_string();
    }
    let mut last = chunk(json!({}), Some("stop"));
    last["choices"][0][field] = stop;
    let chunks = [
        chunk(json!({"role": "assistant", "content": STOPPED_TEXT}), None),
        last,
        usage_chunk(STREAM_USAGE),
    ];
    let mut s: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    s.push_str("data: [DONE]\n\n");
    s
}

/// The upstream's SSE text for a stream script.
pub fn sse(name: &str, body: &Value) -> String {
    let mut s: String = chunks(name, body)
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .collect();
    s.push_str("data: [DONE]\n\n");
    s
}
