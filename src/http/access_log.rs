//! One access-log line per request: method, path, status, duration, account,
//! gateway key id and client address (the peer's IP: behind a reverse proxy,
//! the proxy's).
//! A stream's line is written when its reply head goes out; a request whose
//! client left before that is logged with status 499, one the shutdown cut
//! off with 503.
//! Query strings and headers are never logged.

use super::AppState;
use super::auth::RequestTag;
use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, Uri};
use actix_web::middleware::Next;
use actix_web::web;
use std::time::Instant;

/// The status logged and counted for a request whose client left before
/// its answer started (nginx's "client closed request").
const CLIENT_CLOSED: u16 = 499;

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Books the request even when its future is dropped half-way (the
    // client closed the connection): then with status 499. Everything it
    // needs is taken now: the request itself must stay unshared.
    let tag = RequestTag::default();
    req.extensions_mut().insert(tag.clone());
    let mut entry = Entry {
        method: req.method().clone(),
        uri: req.uri().clone(),
        state: req.app_data::<web::Data<AppState>>().cloned(),
        tag,
        client: req.peer_addr().map(|a| a.ip()),
        started: Instant::now(),
        status: CLIENT_CLOSED,
    };
    let res = next.call(req).await;
    entry.status = match &res {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    }
    .as_u16();
    res
}

struct Entry {
    method: Method,
    uri: Uri,
    state: Option<web::Data<AppState>>,
    tag: RequestTag,
    client: Option<std::net::IpAddr>,
    started: Instant,
    status: u16,
}

/// The status logged and counted for a request still running when the
/// shutdown's grace period ended: its connection was closed unanswered.
const CUT_BY_SHUTDOWN: u16 = 503;

impl Drop for Entry {
    fn drop(&mut self) {
        let tag = self.tag.get();
        let status = match self.status {
            CLIENT_CLOSED if crate::shutdown::cutting_off() => CUT_BY_SHUTDOWN,
            status => status,
        };
        if let Some(state) = &self.state {
            state
                .metrics
                .request(status, tag.model.as_ref(), tag.account.as_ref());
        }
        if log::log_enabled!(log::Level::Info) {
            log::info!(
                "{} {} {status} {:.1}ms account={} key={} client={}",
                self.method,
                self.uri.path(),
                self.started.elapsed().as_secs_f64() * 1000.0,
                tag.account.as_deref().unwrap_or("-"),
                tag.key.as_deref().unwrap_or("-"),
                self.client
                    .map_or_else(|| "-".to_string(), |ip| ip.to_string())
            );
        }
    }
}
