//! A plain OpenAI-compatible upstream: `Authorization: Bearer <key>` and the
//! client's body as sent, with only what streaming needs added.

use super::UpstreamFault;
use serde_json::{Map, Value};

pub fn headers(api_key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        ("authorization", format!("Bearer {api_key}")),
    ]
}

pub fn rewrite_body(body: &mut Map<String, Value>, stream: bool) {
    if stream {
        super::ask_for_stream_usage(body);
    }
}

pub fn classify_body(body: &Value) -> Option<UpstreamFault> {
    let error = body.get("error").filter(|e| !e.is_null())?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .unwrap_or("unknown error")
        .to_string();
    let code = error
        .get("code")
        .or_else(|| error.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(match code {
        "rate_limit_exceeded" | "rate_limit_error" => UpstreamFault::RateLimited {
            message,
            retry_after: None,
        },
        "invalid_api_key" | "authentication_error" => UpstreamFault::KeyInvalid(message),
        "context_length_exceeded" => UpstreamFault::ContextTooLong(message),
        _ => UpstreamFault::ServerError {
            status: 200,
            message,
        },
    })
}
