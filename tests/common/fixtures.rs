//! What the mock upstream answers: the completion, the stream script and
//! iFlow's "HTTP 200 with an error body" payloads. Tests build their expected
//! client bytes from the same constants.

use serde_json::{Value, json};

/// The non-stream completion, with reasoning, an unmodelled field and usage.
pub fn completion(model: &str, with_usage: bool) -> Value {
    let mut v = json!({
        "id": "chatcmpl-mock-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "reasoning_content": "Let me think.",
                "content": "Hello!"
            },
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    });
    if !with_usage && let Some(map) = v.as_object_mut() {
        map.remove("usage");
    }
    v
}

/// A completion whose message has reasoning but empty content.
pub fn reasoning_only_completion() -> Value {
    json!({
        "id": "chatcmpl-mock-2",
        "object": "chat.completion",
        "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "", "reasoning_content": "Only thoughts."},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    })
}

/// The stream script, event payloads in order: reasoning deltas, content
/// deltas, then a tool call whose id and name come on the first delta and
/// whose arguments are split across chunks. Some carry `"usage":null`, as
/// OpenAI-style streams with `include_usage` do.
pub const STREAM_EVENTS: &[&str] = &[
    r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"glm-5","choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"Let me "},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"glm-5","choices":[{"index":0,"delta":{"reasoning_content":"think."},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"glm-5","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"glm-5","choices":[{"index":0,"delta":{"content":" world, é ✓"},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"glm-5","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"glm-5","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"glm-5","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"glm-5","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
];

/// The usage-only final chunk (`include_usage`).
pub const USAGE_EVENT: &str = r#"{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"glm-5","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;

/// The upstream's SSE text for the full script.
pub fn upstream_sse() -> String {
    let mut s = String::new();
    for e in STREAM_EVENTS {
        s.push_str(&format!("data: {e}\n\n"));
    }
    s.push_str(&format!("data: {USAGE_EVENT}\n\n"));
    s.push_str("data: [DONE]\n\n");
    s
}

/// What the client must receive for the full script.
pub fn client_sse(with_usage: bool) -> String {
    let mut s = String::new();
    for e in STREAM_EVENTS {
        s.push_str(&format!("data: {e}\n\n"));
    }
    if with_usage {
        s.push_str(&format!("data: {USAGE_EVENT}\n\n"));
    }
    s.push_str("data: [DONE]\n\n");
    s
}

/// One iFlow "HTTP 200 with an error body" case: the payload and what the
/// gateway must answer (status, type, code).
pub struct BizError {
    pub name: &'static str,
    pub body: &'static str,
    pub status: u16,
    pub kind: &'static str,
    pub code: &'static str,
}

pub const BIZ_ERRORS: &[BizError] = &[
    BizError {
        name: "434",
        body: r#"{"status":"434","msg":"Invalid apiKey","body":null}"#,
        status: 401,
        kind: "authentication_error",
        code: "upstream_key_invalid",
    },
    BizError {
        name: "435",
        body: r#"{"status":"435","msg":"Model not support","body":null}"#,
        status: 400,
        kind: "invalid_request_error",
        code: "model_not_supported",
    },
    BizError {
        name: "439",
        body: r#"{"status":"439","msg":"Your API Token has expired","body":null}"#,
        status: 401,
        kind: "authentication_error",
        code: "upstream_key_expired",
    },
    BizError {
        name: "449",
        body: r#"{"status":"449","msg":"one request at a time","body":null}"#,
        status: 429,
        kind: "rate_limit_error",
        code: "upstream_concurrency_limit",
    },
    BizError {
        name: "8211",
        body: r#"{"error_code":8211,"msg":"reached the platform rate limit"}"#,
        status: 429,
        kind: "rate_limit_error",
        code: "upstream_rate_limited",
    },
    BizError {
        name: "511",
        body: r#"{"error_code":511,"msg":"Your input has exceeded the context limit"}"#,
        status: 400,
        kind: "invalid_request_error",
        code: "context_length_exceeded",
    },
    BizError {
        name: "514",
        body: r#"{"error_code":514,"msg":"generate data error"}"#,
        status: 502,
        kind: "upstream_error",
        code: "upstream_model_error",
    },
];

pub fn biz_error(name: &str) -> Option<&'static BizError> {
    BIZ_ERRORS.iter().find(|b| b.name == name)
}
