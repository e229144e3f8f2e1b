//! Errors in the Anthropic shape: `{"type":"error","error":{"type","message"}}`,
//! with the same status the OpenAI endpoints would use.

use crate::error::GatewayError;
use crate::profile::UpstreamFault;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};

/// A gateway error answered to an Anthropic client.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AnthropicError(#[from] pub GatewayError);

/// Anthropic's error type for a status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 408 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The error object (also used as the `error` stream event).
pub fn body(err: &GatewayError) -> Value {
    let message = match err.fault() {
        Some(UpstreamFault::ContextTooLong(detail)) => format!("prompt is too long: {detail}"),
        _ => err.to_string(),
    };
    json!({
        "type": "error",
        "error": { "type": error_type(err.status_code()), "message": message }
    })
}

impl ResponseError for AnthropicError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        self.0.respond(self.status_code(), &body(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_anthropic_types() {
        let e = GatewayError::Unauthorized("no".into());
        assert_eq!(body(&e)["error"]["type"], "authentication_error");
        assert_eq!(body(&e)["type"], "error");
        let e = GatewayError::PayloadTooLarge { limit: 1 };
        assert_eq!(body(&e)["error"]["type"], "request_too_large");
        let e = GatewayError::PoolBusy {
            retry_after: 3,
            queued: false,
        };
        let res = AnthropicError(e).error_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            res.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
    }
}
