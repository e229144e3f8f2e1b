//! The gateway's one error type and its one mapping to HTTP: every error a
//! client sees is `{"error":{"message","type","code"}}` with a fitting status.

use crate::profile::UpstreamFault;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{message}")]
    InvalidRequest { message: String, code: &'static str },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no route for {method} {path}{}", hint.as_deref().map(|h| format!(" (did you mean {h}? check the client's base URL)")).unwrap_or_default())]
    NotFound {
        method: String,
        path: String,
        /// The route the path was probably meant for.
        hint: Option<String>,
    },
    #[error("the model {0:?} is not in the catalogue (GET /v1/models lists it)")]
    ModelNotFound(String),
    #[error("method {method} is not allowed on {path} (use {allow})")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("account {account} is busy: its wait queue is full")]
    QueueFull { account: String, retry_after: u64 },
    #[error("account {account} is busy: no slot became free in time")]
    QueueTimeout { account: String, retry_after: u64 },
    #[error("the client sent the request body too slowly")]
    BodyTimeout,
    #[error("every account in the pool is busy{}", if *queued { "; no slot became free in time" } else { " and the wait queue is full" })]
    PoolBusy { retry_after: u64, queued: bool },
    #[error("every account that serves this model is cooling down after upstream errors")]
    PoolCooling { retry_after: u64 },
    #[error("this key allows {limit} requests at once")]
    KeyBusy { limit: usize },
    #[error("upstream error for account {account}: {fault}")]
    Upstream {
        account: String,
        fault: UpstreamFault,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            code: "invalid_request",
        }
    }

    /// The upstream fault behind this error, if it is one.
    pub fn fault(&self) -> Option<&UpstreamFault> {
        match self {
            GatewayError::Upstream { fault, .. } => Some(fault),
            _ => None,
        }
    }

    pub fn upstream(account: &str, fault: UpstreamFault) -> Self {
        GatewayError::Upstream {
            account: account.to_string(),
            fault,
        }
    }

    /// OpenAI's error `type` and our machine-readable `code`.
    pub fn kind_and_code(&self) -> (&'static str, &'static str) {
        use GatewayError as E;
        use UpstreamFault as F;
        match self {
            E::InvalidRequest { code, .. } => ("invalid_request_error", code),
            E::PayloadTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            E::Unauthorized(_) => ("authentication_error", "invalid_api_key"),
            E::Forbidden(_) => ("permission_error", "forbidden"),
            E::NotFound { .. } => ("invalid_request_error", "not_found"),
            E::ModelNotFound(_) => ("invalid_request_error", "model_not_found"),
            E::MethodNotAllowed { .. } => ("invalid_request_error", "method_not_allowed"),
            E::QueueFull { .. } => ("rate_limit_error", "account_queue_full"),
            E::QueueTimeout { .. } => ("rate_limit_error", "account_queue_timeout"),
            E::BodyTimeout => ("invalid_request_error", "request_timeout"),
            E::PoolBusy { queued: false, .. } => ("rate_limit_error", "pool_queue_full"),
            E::PoolBusy { queued: true, .. } => ("rate_limit_error", "pool_queue_timeout"),
            E::PoolCooling { .. } => ("rate_limit_error", "pool_cooling_down"),
            E::KeyBusy { .. } => ("rate_limit_error", "key_concurrency_limit"),
            E::Unavailable(_) => ("server_error", "unavailable"),
            E::Internal(_) => ("server_error", "internal_error"),
            E::Upstream { fault, .. } => match fault {
                F::Unreachable(_) => ("upstream_error", "upstream_unreachable"),
                F::Timeout(_) => ("upstream_error", "upstream_timeout"),
                F::AuthRejected { .. } => ("authentication_error", "upstream_auth_rejected"),
                F::KeyExpired(_) => ("authentication_error", "upstream_key_expired"),
                F::KeyInvalid(_) => ("authentication_error", "upstream_key_invalid"),
                F::RateLimited { .. } => ("rate_limit_error", "upstream_rate_limited"),
                F::ConcurrencyLimit(_) => ("rate_limit_error", "upstream_concurrency_limit"),
                F::ContextTooLong(_) => ("invalid_request_error", "context_length_exceeded"),
                F::ModelNotSupported(_) => ("invalid_request_error", "model_not_supported"),
                F::ModelError(_) => ("upstream_error", "upstream_model_error"),
                F::BadRequest { .. } => ("invalid_request_error", "upstream_bad_request"),
                F::ServerError { .. } => ("upstream_error", "upstream_server_error"),
                F::InvalidResponse(_) => ("upstream_error", "upstream_invalid_response"),
                F::StreamInterrupted(_) => ("upstream_error", "upstream_stream_interrupted"),
            },
        }
    }

    /// `Retry-After` seconds (or the upstream's own value) when the client
    /// should come back later.
    pub fn retry_after(&self) -> Option<String> {
        match self {
            GatewayError::QueueFull { retry_after, .. }
            | GatewayError::QueueTimeout { retry_after, .. }
            | GatewayError::PoolBusy { retry_after, .. }
            | GatewayError::PoolCooling { retry_after } => Some(retry_after.to_string()),
            GatewayError::KeyBusy { .. } => Some("1".into()),
            // The upstream's value as whole seconds, 1 s to a day: a date,
            // `0`, or a value that is not one pass on as a sane number.
            GatewayError::Upstream {
                fault: UpstreamFault::RateLimited { retry_after, .. },
                ..
            } => {
                let secs = match retry_after.as_deref().map(str::trim) {
                    // Whole seconds too many for a u64 are still "a long time".
                    Some(v)
                        if v.trim_start_matches('0').len() > 5
                            && v.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        86_400
                    }
                    v => v
                        .and_then(|v| {
                            crate::profile::fault::parse_retry_after(v, chrono::Utc::now())
                        })
                        .map_or(1, |d| d.as_secs().clamp(1, 86_400)),
                };
                Some(secs.to_string())
            }
            GatewayError::Upstream {
                fault: UpstreamFault::ConcurrencyLimit(_),
                ..
            } => Some("1".into()),
            _ => None,
        }
    }

    /// The JSON error object sent to clients (also used as an SSE event).
    pub fn body(&self) -> serde_json::Value {
        let (kind, code) = self.kind_and_code();
        json!({ "error": { "message": self.to_string(), "type": kind, "code": code } })
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        use GatewayError as E;
        use UpstreamFault as F;
        match self {
            E::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            E::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::NotFound { .. } | E::ModelNotFound(_) => StatusCode::NOT_FOUND,
            E::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            E::QueueFull { .. } | E::QueueTimeout { .. } => StatusCode::TOO_MANY_REQUESTS,
            E::PoolBusy { .. } | E::PoolCooling { .. } => StatusCode::TOO_MANY_REQUESTS,
            E::KeyBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            E::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            E::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            E::Upstream { fault, .. } => match fault {
                F::Unreachable(_) | F::ModelError(_) | F::ServerError { .. } => {
                    StatusCode::BAD_GATEWAY
                }
                F::InvalidResponse(_) | F::StreamInterrupted(_) => StatusCode::BAD_GATEWAY,
                F::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                F::AuthRejected { .. } | F::KeyExpired(_) | F::KeyInvalid(_) => {
                    StatusCode::UNAUTHORIZED
                }
                F::RateLimited { .. } | F::ConcurrencyLimit(_) => StatusCode::TOO_MANY_REQUESTS,
                // OpenAI's own status for it: agents (Cline, Roo Code) shorten
                // the conversation on a 400 that names the context length.
                F::ContextTooLong(_) => StatusCode::BAD_REQUEST,
                F::ModelNotSupported(_) => StatusCode::BAD_REQUEST,
                F::BadRequest { status, .. } => {
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
                }
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.respond(self.status_code(), &self.body())
    }
}

impl GatewayError {
    /// The error reply with `status` and `body` (OpenAI or Anthropic shape),
    /// and the headers this error calls for (`Retry-After`, `Allow`).
    pub fn respond(&self, status: StatusCode, body: &serde_json::Value) -> HttpResponse {
        let mut res = HttpResponse::build(status);
        if let Some(v) = self
            .retry_after()
            .and_then(|secs| HeaderValue::from_str(&secs).ok())
        {
            res.insert_header((header::RETRY_AFTER, v));
        }
        if let GatewayError::MethodNotAllowed { allow, .. } = self {
            res.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        // The rest of the body was never read: the connection cannot carry
        // another request (actix closes it by itself only when the body had
        // a declared length, not for a chunked one).
        if matches!(
            self,
            GatewayError::BodyTimeout | GatewayError::PayloadTooLarge { .. }
        ) {
            res.force_close();
        }
        res.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_openai_shaped() {
        let e = GatewayError::upstream(
            "acc-1",
            UpstreamFault::RateLimited {
                message: "slow".into(),
                retry_after: Some("12".into()),
            },
        );
        assert_eq!(e.status_code(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after().as_deref(), Some("12"));
        // What reaches the client is always whole seconds, 1 s to a day.
        let limited = |v: Option<&str>| {
            GatewayError::upstream(
                "acc-1",
                UpstreamFault::RateLimited {
                    message: String::new(),
                    retry_after: v.map(str::to_string),
                },
            )
            .retry_after()
        };
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let secs: u64 = limited(Some(&soon))
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        assert!((88..=90).contains(&secs), "{secs}");
        for (given, sent) in [
            (None, "1"),
            (Some("abc"), "1"),
            (Some("-5"), "1"),
            (Some("0"), "1"),
            (Some("999999999"), "86400"),
            (Some("99999999999999999999999"), "86400"),
            (Some("86399"), "86399"),
            (Some("0000007"), "7"),
        ] {
            assert_eq!(limited(given).as_deref(), Some(sent), "{given:?}");
        }
        let body = e.body();
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], "upstream_rate_limited");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("acc-1"))
        );
    }

    #[test]
    fn upstream_key_problems_are_401_and_never_name_the_key() {
        let e =
            GatewayError::upstream("acc", UpstreamFault::KeyExpired("API token expired".into()));
        assert_eq!(e.status_code(), StatusCode::UNAUTHORIZED);
        assert_eq!(e.kind_and_code().1, "upstream_key_expired");
    }
}
