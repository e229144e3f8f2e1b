//! Helpers for the Anthropic Messages endpoint: requests as Claude Code
//! sends them (`x-api-key`, `anthropic-version`), a strict parser of its
//! `event:` + `data:` stream, and its error shape.

use super::client::{Response, request};
use serde_json::{Value, json};
use std::net::SocketAddr;

pub const MODEL: &str = "claude-sonnet-4-5-20250929";

/// `POST path` with `x-api-key: key` and a raw body.
pub fn post_raw(addr: SocketAddr, path: &str, key: &str, body: &[u8]) -> Response {
    let headers = [
        ("x-api-key", key),
        ("anthropic-version", "2023-06-01"),
        ("Content-Type", "application/json"),
    ];
    request(addr, "POST", path, &headers, Some(body))
}

/// `POST /v1/messages` with `x-api-key: key`.
pub fn messages(addr: SocketAddr, key: &str, body: &Value) -> Response {
    post_raw(addr, "/v1/messages", key, body.to_string().as_bytes())
}

/// A one-message request for `MODEL`.
pub fn user_msg(content: &str) -> Value {
    json!({"model": MODEL, "max_tokens": 1024,
           "messages": [{"role": "user", "content": content}]})
}

pub fn stream_msg(content: &str) -> Value {
    let mut b = user_msg(content);
    b["stream"] = json!(true);
    b
}

/// The events of a stream body as `(name, data)`. Every event must be
/// exactly `event: NAME\ndata: JSON\n\n` and its data's `type` its name.
pub fn events(text: &str) -> Vec<(String, Value)> {
    assert!(
        text.ends_with("\n\n"),
        "stream does not end an event: {text:?}"
    );
    text.split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("malformed event {e:?} in {text}"));
            let data: Value = serde_json::from_str(data)
                .unwrap_or_else(|err| panic!("event data is not JSON ({err}): {e:?}"));
            assert_eq!(data["type"], name, "{e}");
            (name.to_string(), data)
        })
        .collect()
}

/// The events without `ping`s, with the `message_start` id checked
/// (`msg_` and 24 alphanumerics) and replaced by `msg_ID`.
pub fn events_without_id(text: &str) -> Vec<(String, Value)> {
    let mut evs: Vec<(String, Value)> = events(text)
        .into_iter()
        .filter(|(n, _)| n != "ping")
        .collect();
    if let Some((_, start)) = evs.iter_mut().find(|(n, _)| n == "message_start") {
        let id = start["message"]["id"].as_str().unwrap_or_default();
        let tail = id.strip_prefix("msg_").unwrap_or_default();
        assert!(
            tail.len() == 24 && tail.chars().all(|c| c.is_ascii_alphanumeric()),
            "message id {id:?}"
        );
        start["message"]["id"] = json!("msg_ID");
    }
    evs
}

/// `message_start` for `model`, as the gateway sends it.
pub fn message_start(model: &str) -> (String, Value) {
    ev(json!({"type": "message_start", "message": {
        "id": "msg_ID", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 0, "output_tokens": 0}}}))
}

pub fn block_start(index: usize, block: Value) -> (String, Value) {
    ev(json!({"type": "content_block_start", "index": index, "content_block": block}))
}

pub fn block_delta(index: usize, delta: Value) -> (String, Value) {
    ev(json!({"type": "content_block_delta", "index": index, "delta": delta}))
}

pub fn block_stop(index: usize) -> (String, Value) {
    ev(json!({"type": "content_block_stop", "index": index}))
}

/// `message_delta` and `message_stop`.
pub fn message_end(stop_reason: &str, (input, output): (u64, u64)) -> [(String, Value); 2] {
    [
        ev(json!({"type": "message_delta",
                  "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                  "usage": {"input_tokens": input, "output_tokens": output}})),
        ev(json!({"type": "message_stop"})),
    ]
}

fn ev(data: Value) -> (String, Value) {
    (data["type"].as_str().unwrap_or_default().to_string(), data)
}

/// Asserts an Anthropic error object: exactly
/// `{"type":"error","error":{"type","message"}}`, this type, a message.
pub fn assert_error_body(body: &Value, kind: &str) {
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    assert_eq!(keys(body), ["error", "type"], "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(keys(&body["error"]), ["message", "type"], "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Asserts an error response: status, JSON content type, Anthropic shape.
pub fn assert_error(resp: &Response, status: u16, kind: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type {:?}",
        resp.header("content-type")
    );
    assert_error_body(&resp.json(), kind);
}
