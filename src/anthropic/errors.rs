//! Errors in the Anthropic shape: `{"type":"error","error":{"type","message"}}`,
//! with the same status the OpenAI endpoints would use.

use crate::error::GatewayError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
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
    json!({
        "type": "error",
        "error": { "type": error_type(err.status_code()), "message": err.to_string() }
    })
}

impl ResponseError for AnthropicError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(v) = self
            .0
            .retry_after()
            .and_then(|s| HeaderValue::from_str(&s).ok())
        {
            res.insert_header((header::RETRY_AFTER, v));
        }
        if let GatewayError::MethodNotAllowed { allow, .. } = &self.0 {
            res.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        res.json(body(&self.0))
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
