//! Finds the account a request is for, from `Authorization: Bearer <uuid>`.

use super::AppState;
use crate::actors::registry::{AccountHandle, Resolve};
use crate::error::GatewayError;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};
use std::sync::Arc;

/// The account id of a request, for the access log.
#[derive(Clone)]
pub struct AccountTag(pub Arc<str>);

pub async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Arc<AccountHandle>, GatewayError> {
    let token = bearer(req).ok_or_else(|| {
        GatewayError::Unauthorized(
            "missing API key: send `Authorization: Bearer <account uuid>`".into(),
        )
    })?;
    let found = match state.directory.load().find(token) {
        Some(handle) => Some(handle),
        None => state
            .registry
            .send(Resolve(token.to_string()))
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?,
    };
    let handle = found.ok_or_else(|| GatewayError::Unauthorized("invalid API key".into()))?;
    req.extensions_mut().insert(AccountTag(handle.id.clone()));
    Ok(handle)
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
