//! iFlow's error replies (protocol section 7): the HTTP status codes with a
//! meaning of their own, and the "HTTP 200 with an error body" payloads.

use crate::profile::UpstreamFault;
use serde_json::Value;

/// Recognises an error payload; `None` when the body is not one.
pub fn classify_body(body: &Value) -> Option<UpstreamFault> {
    let code = |key: &str| body.get(key).and_then(as_code);
    let status = code("status");
    let error_code = code("error_code");
    let either = |c: i64| status == Some(c) || error_code == Some(c);
    let message = message_of(body);
    let lower = message.to_ascii_lowercase();

    if matches!(error_code, Some(511 | 413)) {
        return Some(UpstreamFault::ContextTooLong(message));
    }
    if error_code == Some(514) {
        return Some(UpstreamFault::ModelError(message));
    }
    if either(439) {
        return Some(UpstreamFault::KeyExpired(message));
    }
    if lower.contains("invalid apikey")
        || either(434)
        || lower.contains("blocked due to unauthorized requests")
        || lower.contains("current ak has been blocked")
    {
        return Some(UpstreamFault::KeyInvalid(message));
    }
    if either(435) {
        return Some(UpstreamFault::ModelNotSupported(message));
    }
    if either(429) || either(8211) {
        return Some(UpstreamFault::RateLimited {
            message,
            retry_after: None,
        });
    }
    if either(449) {
        return Some(UpstreamFault::ConcurrencyLimit(message));
    }
    if let Some(s) = status.filter(|s| *s != 0 && *s != 200) {
        return Some(UpstreamFault::ServerError {
            status: u16::try_from(s).unwrap_or(502),
            message,
        });
    }
    if body.get("error").is_some_and(|e| !e.is_null()) {
        return Some(UpstreamFault::ServerError {
            status: 200,
            message,
        });
    }
    None
}

/// Maps a non-2xx reply; `body` is the (possibly truncated) reply text.
pub fn classify_status(status: u16, retry_after: Option<String>, body: &[u8]) -> UpstreamFault {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(fault) = parsed.as_ref().and_then(classify_body) {
        // A coded body is more precise than the status, except for a plain
        // 429 whose Retry-After must survive.
        if !matches!(fault, UpstreamFault::ServerError { .. }) {
            return match fault {
                UpstreamFault::RateLimited { message, .. } => UpstreamFault::RateLimited {
                    message,
                    retry_after,
                },
                other => other,
            };
        }
    }
    let message = parsed
        .as_ref()
        .map(message_of)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| snippet(body));
    match status {
        401 | 403 => UpstreamFault::AuthRejected { status, message },
        429 => UpstreamFault::RateLimited {
            message,
            retry_after,
        },
        511 | 413 => UpstreamFault::ContextTooLong(message),
        514 => UpstreamFault::ModelError(message),
        // iFlow's own codes, should they come as the HTTP status rather
        // than in a 200 body: they mean the same either way.
        434 => UpstreamFault::KeyInvalid(message),
        435 => UpstreamFault::ModelNotSupported(message),
        439 => UpstreamFault::KeyExpired(message),
        449 => UpstreamFault::ConcurrencyLimit(message),
        400..=499 => UpstreamFault::BadRequest { status, message },
        _ => UpstreamFault::ServerError { status, message },
    }
}

/// The human text of an error body: `msg`, `message`, `error.message` or `error`.
pub fn message_of(body: &Value) -> String {
    let pick = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    pick(body.get("msg"))
        .or_else(|| pick(body.get("message")))
        .or_else(|| pick(body.get("error").and_then(|e| e.get("message"))))
        .or_else(|| pick(body.get("error")))
        .unwrap_or_default()
}

fn as_code(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// At most 300 characters of a non-JSON reply, for the error message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn business_codes_map_to_faults() {
        let cases = [
            (
                json!({"error_code": 511, "msg": "too long"}),
                "ContextTooLong",
            ),
            (json!({"error_code": 413}), "ContextTooLong"),
            (json!({"error_code": 514, "msg": "boom"}), "ModelError"),
            (json!({"status": "439", "msg": "expired"}), "KeyExpired"),
            (json!({"error_code": 439}), "KeyExpired"),
            (
                json!({"status": 200, "msg": "Invalid apiKey"}),
                "KeyInvalid",
            ),
            (json!({"status": "434", "msg": "bad key"}), "KeyInvalid"),
            (
                json!({"status": "435", "msg": "Model not support"}),
                "ModelNotSupported",
            ),
            (json!({"status": "429", "msg": "slow down"}), "RateLimited"),
            (json!({"error_code": 8211}), "RateLimited"),
            (
                json!({"status": 449, "msg": "one at a time"}),
                "ConcurrencyLimit",
            ),
            (json!({"status": "500", "msg": "oops"}), "ServerError"),
            (
                json!({"msg": "Access to the current AK has been blocked"}),
                "KeyInvalid",
            ),
        ];
        for (body, kind) in cases {
            let fault = classify_body(&body).unwrap_or_else(|| panic!("{body} not recognised"));
            assert!(
                format!("{fault:?}").starts_with(kind),
                "{body} -> {fault:?}"
            );
        }
    }

    #[test]
    fn normal_replies_are_not_errors() {
        assert_eq!(classify_body(&json!({"choices": [], "status": 0})), None);
        assert_eq!(
            classify_body(&json!({"id": "x", "choices": [{"index": 0}]})),
            None
        );
    }

    #[test]
    fn status_codes_map_to_faults_and_keep_retry_after() {
        assert_eq!(
            classify_status(429, Some("7".into()), b"busy"),
            UpstreamFault::RateLimited {
                message: "busy".into(),
                retry_after: Some("7".into())
            }
        );
        assert!(matches!(
            classify_status(401, None, b"{\"msg\":\"no\"}"),
            UpstreamFault::AuthRejected { status: 401, .. }
        ));
        assert!(matches!(
            classify_status(503, None, b"<html>"),
            UpstreamFault::ServerError { status: 503, .. }
        ));
        assert!(matches!(
            classify_status(
                400,
                None,
                b"{\"status\":\"435\",\"msg\":\"Model not support\"}"
            ),
            UpstreamFault::ModelNotSupported(_)
        ));
    }

    #[test]
    fn iflow_codes_sent_as_http_status_mean_what_they_mean_in_a_body() {
        assert!(matches!(
            classify_status(434, None, b""),
            UpstreamFault::KeyInvalid(_)
        ));
        assert!(matches!(
            classify_status(439, None, b"expired"),
            UpstreamFault::KeyExpired(_)
        ));
        assert!(matches!(
            classify_status(449, None, b"<html>busy</html>"),
            UpstreamFault::ConcurrencyLimit(_)
        ));
        assert!(matches!(
            classify_status(435, None, b""),
            UpstreamFault::ModelNotSupported(_)
        ));
        assert!(matches!(
            classify_status(418, None, b""),
            UpstreamFault::BadRequest { status: 418, .. }
        ));
    }
}
