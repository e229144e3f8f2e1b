//! Who is calling: a gateway key (`sk-iflow-…`, served by the pool) or, unless
//! `IFLOW_REQUIRE_KEY` is set, an account uuid (pinned to that account).
//! The token comes from `Authorization: Bearer` or `x-api-key`.

use super::AppState;
use crate::actors::registry::{Lookup, Principal, Resolve};
use crate::error::GatewayError;
use crate::store::keys::KEY_PREFIX;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for the registry's disk check of an unknown token.
const RESOLVE_WAIT: Duration = Duration::from_secs(5);

/// What the access log and metrics know about a request. The access log
/// puts one in the request's extensions and keeps a handle, so it can still
/// read it when the request was dropped half-way.
#[derive(Clone, Default)]
pub struct RequestTag(Rc<RefCell<Tagged>>);

#[derive(Clone, Default)]
pub struct Tagged {
    pub account: Option<Arc<str>>,
    pub model: Option<Arc<str>>,
    /// The id of the gateway key that authenticated the request.
    pub key: Option<Arc<str>>,
}

impl RequestTag {
    pub fn get(&self) -> Tagged {
        self.0.borrow().clone()
    }
}

pub fn tag(req: &HttpRequest, account: Option<Arc<str>>, model: Option<&Arc<str>>) {
    with_tag(req, |t| {
        if account.is_some() {
            t.account = account;
        }
        if let Some(m) = model {
            t.model = Some(m.clone());
        }
    });
}

/// Changes the request's tag, made here if the access log made none.
fn with_tag(req: &HttpRequest, change: impl FnOnce(&mut Tagged)) {
    let mut ext = req.extensions_mut();
    let tag = match ext.get::<RequestTag>() {
        Some(tag) => tag.clone(),
        None => {
            let tag = RequestTag::default();
            ext.insert(tag.clone());
            tag
        }
    };
    change(&mut tag.0.borrow_mut());
}

pub async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Principal, GatewayError> {
    let token = token(req).ok_or_else(|| {
        GatewayError::Unauthorized(
            "missing API key: send `Authorization: Bearer <gateway key or account uuid>` \
             or `x-api-key: <gateway key or account uuid>`"
                .into(),
        )
    })?;
    let accounts = !state.config.require_key;
    let known = match state.directory.load().lookup(token) {
        Lookup::DeadKey => {
            return Err(GatewayError::Unauthorized(
                "this API key was revoked or has expired".into(),
            ));
        }
        Lookup::Key(key) => Some(Principal::Key(key)),
        Lookup::Account(handle) if accounts => Some(Principal::Account(handle)),
        _ => None,
    };
    let found = match known {
        Some(p) => Some(p),
        // Only a token that could be a key or a uuid is worth a disk check.
        None if token.starts_with(KEY_PREFIX)
            || (accounts && uuid::Uuid::parse_str(token).is_ok()) =>
        {
            let ask = state.registry.send(Resolve {
                token: token.to_string(),
                accounts,
            });
            // The check reads the disk; a stuck file system must not hang
            // the request.
            tokio::time::timeout(RESOLVE_WAIT, ask)
                .await
                .map_err(|_| {
                    GatewayError::Unavailable("the account store is not answering".into())
                })?
                .map_err(|e| GatewayError::Unavailable(e.to_string()))?
        }
        None => None,
    };
    let principal = found.ok_or_else(|| {
        // Said for anything shaped like a uuid, known or not, so the answer
        // tells nobody which uuids are accounts.
        GatewayError::Unauthorized(
            if !accounts && uuid::Uuid::parse_str(token).is_ok() {
                "invalid API key: this server takes gateway keys only (IFLOW_REQUIRE_KEY=true), \
                 not account uuids"
            } else {
                "invalid API key"
            }
            .into(),
        )
    })?;
    match &principal {
        Principal::Account(handle) => tag(req, Some(handle.label.clone()), None),
        Principal::Key(key) => with_tag(req, |t| t.key = Some(key.id.clone())),
    }
    Ok(principal)
}

/// Admin endpoints need a gateway key created with `--admin`.
pub async fn require_admin(req: &HttpRequest, state: &AppState) -> Result<(), GatewayError> {
    match authenticate(req, state).await? {
        Principal::Key(k) if k.key.admin => Ok(()),
        _ => Err(GatewayError::Forbidden(
            "this endpoint needs an admin gateway key (`iflow-actix key create --admin`)".into(),
        )),
    }
}

fn token(req: &HttpRequest) -> Option<&str> {
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    if bearer.is_some() {
        return bearer;
    }
    // Another scheme (a proxy's Basic, say) does not hide `x-api-key`.
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
