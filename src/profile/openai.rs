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
        _ if names_overflow(&message) => UpstreamFault::ContextTooLong(message),
        _ => UpstreamFault::ServerError {
            status: 200,
            message,
        },
    })
}

/// Maps a non-2xx reply by its status, like the iFlow profile, except that
/// a request too long for the model is recognised by its body: OpenAI's
/// `context_length_exceeded` code, or the wording vLLM, llama.cpp and others
/// put in a plain 400. Clients act on that code (Claude Code compacts its
/// conversation on "prompt is too long").
pub fn classify_status(status: u16, retry_after: Option<String>, body: &[u8]) -> UpstreamFault {
    match super::iflow::errors::classify_status(status, retry_after, body) {
        UpstreamFault::BadRequest { status, message } => {
            // The body's own code (as a 2xx error body is read), else the
            // message the status mapping found, vLLM's top-level one included.
            let coded = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|b| classify_body(&b));
            if matches!(coded, Some(UpstreamFault::ContextTooLong(_))) || names_overflow(&message) {
                UpstreamFault::ContextTooLong(message)
            } else {
                UpstreamFault::BadRequest { status, message }
            }
        }
        other => other,
    }
}

/// Whether an error message says the input is longer than the model takes.
fn names_overflow(message: &str) -> bool {
    const PHRASES: [&str; 5] = [
        "maximum context length",
        "context length exceeded",
        "context_length_exceeded",
        "exceeds the available context size",
        "prompt is too long",
    ];
    let message = message.to_ascii_lowercase();
    PHRASES.iter().any(|p| message.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(code: u16, body: &Value) -> UpstreamFault {
        classify_status(code, None, body.to_string().as_bytes())
    }

    #[test]
    fn a_400_that_names_a_context_overflow_is_context_too_long() {
        let openai = json!({"error": {"message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error", "code": "context_length_exceeded"}});
        let vllm = json!({"object": "error", "type": "BadRequestError", "code": 400,
            "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens."});
        let llama_cpp = json!({"error": {"code": 400, "type": "exceed_context_size_error",
            "message": "the request exceeds the available context size, try increasing it"}});
        for body in [openai, vllm, llama_cpp] {
            assert!(
                matches!(status(400, &body), UpstreamFault::ContextTooLong(_)),
                "{body}"
            );
        }
        let coded_only =
            json!({"error": {"message": "too long", "code": "context_length_exceeded"}});
        assert!(
            matches!(status(400, &coded_only), UpstreamFault::ContextTooLong(m) if m == "too long")
        );
    }

    #[test]
    fn other_statuses_keep_the_generic_mapping() {
        let plain = json!({"error": {"message": "temperature must be at most 2", "code": null}});
        assert!(matches!(
            status(400, &plain),
            UpstreamFault::BadRequest { status: 400, .. }
        ));
        let limited = json!({"error": {"message": "slow down", "code": "rate_limit_exceeded"}});
        assert!(matches!(
            classify_status(429, Some("9".into()), limited.to_string().as_bytes()),
            UpstreamFault::RateLimited { retry_after: Some(r), .. } if r == "9"
        ));
        let broken = json!({"error": {"message": "maximum context length is a server bug"}});
        assert!(matches!(
            status(500, &broken),
            UpstreamFault::ServerError { status: 500, .. }
        ));
    }

    #[test]
    fn a_2xx_error_body_that_names_an_overflow_is_context_too_long() {
        let body = json!({"error": {"message": "Prompt is too long: 210000 tokens", "type": "invalid_request_error"}});
        assert!(matches!(
            classify_body(&body),
            Some(UpstreamFault::ContextTooLong(_))
        ));
    }
}
