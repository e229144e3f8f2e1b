//! CORS, so that a web page on an allowed origin can call the API from the
//! browser (`IFLOW_CORS_ORIGINS`; off by default, and then this middleware
//! is not in the chain at all).
//!
//! - A preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) from an allowed origin is answered here
//!   with 204: GET, HEAD and POST, whatever request headers the page asked
//!   for (SDKs add their own `x-stainless-*` and `anthropic-*` headers),
//!   cached for an hour. From another origin it gets 403 as a JSON error.
//! - Any other request runs as usual; an allowed origin's answer, errors
//!   included, carries `Access-Control-Allow-Origin` and exposes
//!   `Retry-After`. Answers to other origins carry no CORS header, so the
//!   browser keeps them from the page. Every answer says `Vary: Origin`.
//!
//! No cookies are involved (keys travel in headers), so credentials are
//! never allowed.

use super::AppState;
use crate::anthropic::errors::AnthropicError;
use crate::config::CorsOrigins;
use crate::error::GatewayError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};

/// How long a browser may reuse a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "3600";

/// What a preflight's answer depends on, allowed or not.
const PREFLIGHT_VARY: &str = "Origin, Access-Control-Request-Headers";

pub async fn cors<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = match (&origin, req.app_data::<web::Data<AppState>>()) {
        (Some(origin), Some(state)) => allows(&state.config.cors_origins, origin),
        _ => false,
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if let (true, Some(origin)) = (preflight, &origin) {
        let response = match allowed {
            true => {
                let mut answer = HttpResponse::NoContent();
                answer
                    .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
                    .insert_header((header::VARY, PREFLIGHT_VARY))
                    .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, POST"))
                    .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE));
                if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                    answer.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone()));
                }
                answer.finish()
            }
            false => {
                let mut answer = refused(&req, origin);
                answer
                    .headers_mut()
                    .insert(header::VARY, HeaderValue::from_static(PREFLIGHT_VARY));
                answer
            }
        };
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    // On every answer, not only allowed origins': a cache in front must not
    // hand one origin's answer (or a no-origin one) to another.
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let (true, Some(origin)) = (allowed, origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after"),
        );
    }
    Ok(res.map_into_left_body())
}

fn allows(origins: &CorsOrigins, origin: &HeaderValue) -> bool {
    match origins {
        CorsOrigins::Off => false,
        CorsOrigins::Any => true,
        CorsOrigins::List(list) => list
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes())),
    }
}

/// The 403 for a preflight from an origin that is not allowed, in the shape
/// of the path's API.
fn refused(req: &ServiceRequest, origin: &HeaderValue) -> HttpResponse {
    let err = GatewayError::Forbidden(format!(
        "origin {} may not call this API from a browser: add it to IFLOW_CORS_ORIGINS",
        String::from_utf8_lossy(origin.as_bytes())
    ));
    if req.path().starts_with("/v1/messages") {
        AnthropicError(err).error_response()
    } else {
        err.error_response()
    }
}
