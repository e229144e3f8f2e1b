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

/// A 2xx reply (or stream event) that is an error: one with an `error`,
/// or, as for iFlow accounts, one with iFlow's `status` or `error_code`
/// (some OpenAI-compatible front ends of iFlow's models send those).
pub fn classify_body(body: &Value) -> Option<UpstreamFault> {
    let Some((message, coded)) = read_error(body) else {
        return super::iflow::errors::classify_body(body);
    };
    Some(match coded {
        Some(fault) => fault,
        None if names_overflow(&message) => UpstreamFault::ContextTooLong(message),
        None => UpstreamFault::ServerError {
            status: 200,
            message,
        },
    })
}

/// The `error` object's message, and what its code (or type) means when it
/// is one OpenAI-compatible servers use for a dead key, a rate limit or a
/// context overflow.
fn read_error(body: &Value) -> Option<(String, Option<UpstreamFault>)> {
    let error = body.get("error").filter(|e| !e.is_null())?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .unwrap_or("unknown error")
        .to_string();
    let field = |name: &str| error.get(name).and_then(Value::as_str).unwrap_or_default();
    let fault = |code: &str| match code {
        "rate_limit_exceeded" | "rate_limit_error" => Some(UpstreamFault::RateLimited {
            message: message.clone(),
            retry_after: None,
        }),
        "invalid_api_key" | "authentication_error" => {
            Some(UpstreamFault::KeyInvalid(message.clone()))
        }
        "context_length_exceeded" => Some(UpstreamFault::ContextTooLong(message.clone())),
        _ => None,
    };
    // OpenAI puts the precise word in `code` and the class in `type`
    // (`invalid_request_error` for most): either may carry it.
    let coded = fault(field("code")).or_else(|| fault(field("type")));
    Some((message, coded))
}

/// Maps a non-2xx reply. A code in the body that says what happened (a dead
/// key, a rate limit, a context overflow) wins over the status, as for iFlow
/// accounts; otherwise the status decides, like the iFlow profile, except
/// that a 4xx whose message says the request is too long for the model (the
/// wording vLLM, llama.cpp and others put in a plain 400) is a context
/// overflow. Clients act on that (Claude Code compacts its conversation on
/// "prompt is too long").
pub fn classify_status(status: u16, retry_after: Option<String>, body: &[u8]) -> UpstreamFault {
    let coded = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| read_error(&b))
        .and_then(|(_, coded)| coded);
    match coded {
        Some(UpstreamFault::RateLimited { message, .. }) => {
            return UpstreamFault::RateLimited {
                message,
                retry_after,
            };
        }
        Some(fault) => return fault,
        None => {}
    }
    match super::iflow::errors::classify_status(status, retry_after, body) {
        UpstreamFault::BadRequest { message, .. } if names_overflow(&message) => {
            UpstreamFault::ContextTooLong(message)
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
    fn a_code_in_the_body_wins_over_the_status() {
        let dead = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}});
        let anthropic_style =
            json!({"error": {"message": "invalid x-api-key", "type": "authentication_error"}});
        for (code, body) in [
            (400, &dead),
            (401, &dead),
            (401, &anthropic_style),
            (403, &anthropic_style),
        ] {
            assert!(
                matches!(status(code, body), UpstreamFault::KeyInvalid(_)),
                "{code} {body}"
            );
        }
        let limited = json!({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}});
        for code in [400, 500, 503] {
            assert!(
                matches!(
                    classify_status(code, Some("4".into()), limited.to_string().as_bytes()),
                    UpstreamFault::RateLimited { retry_after: Some(r), .. } if r == "4"
                ),
                "{code}"
            );
        }
        // iFlow's own codes still count for an openai account.
        assert!(matches!(
            status(400, &json!({"status": "434", "msg": "invalid apiKey"})),
            UpstreamFault::KeyInvalid(_)
        ));
        // No code: the status decides.
        let plain_401 = json!({"error": {"message": "no", "type": "invalid_request_error"}});
        assert!(matches!(
            status(401, &plain_401),
            UpstreamFault::AuthRejected { status: 401, .. }
        ));
    }

    #[test]
    fn iflow_codes_in_a_2xx_body_or_stream_event_count_too() {
        let busy = json!({"status": "449", "msg": "too many requests at once"});
        assert!(matches!(
            classify_body(&busy),
            Some(UpstreamFault::ConcurrencyLimit(_))
        ));
        assert_eq!(classify_body(&json!({"id": "x", "choices": []})), None);
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
