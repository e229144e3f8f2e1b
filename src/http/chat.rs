//! `POST /v1/chat/completions`.

use super::{AppState, auth, body, client, relay};
use crate::actors::refresher::RefreshAccount;
use crate::actors::registry::{AccountHandle, SetState};
use crate::actors::upstream::{Acquire, Admission, Lease, Sign};
use crate::error::GatewayError;
use crate::openai::ChatRequest;
use crate::store::{AccountState, AuthType};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Longest a request waits for the refresh its key error triggered.
const REFRESH_WAIT: Duration = Duration::from_secs(60);

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    http: web::Data<awc::Client>,
) -> Result<HttpResponse, GatewayError> {
    let account = auth::authenticate(&req, &state).await?;
    let cfg = &state.config;
    let bytes = body::read(&req, payload, cfg.max_body_bytes, cfg.client_body_timeout).await?;
    let chat = ChatRequest::parse(&bytes)?;

    let mut lease = admit(&account, chat.starts_turn).await?;
    let stream = chat.stream.then_some(chat.wants_stream_usage);
    let mut upstream_body = chat.body;
    lease
        .profile
        .rewrite_body(&mut upstream_body, lease.credentials_auth, chat.stream);
    let upstream_body = Bytes::from(
        serde_json::to_vec(&upstream_body).map_err(|e| GatewayError::Internal(e.to_string()))?,
    );

    let mut refreshed = false;
    loop {
        let oauth = lease.credentials_auth == AuthType::OAuthIflow;
        account.usage.record();
        let result = forward(&state, &http, lease, stream, upstream_body.clone()).await;
        let key_problem =
            matches!(&result, Err(GatewayError::Upstream { fault, .. }) if fault.is_key_problem());
        if !key_problem {
            if result.is_ok() && account.key_invalid.load(Ordering::Relaxed) {
                state.registry.do_send(SetState {
                    uuid: account.id.to_string(),
                    state: None,
                });
            }
            return result;
        }
        // The key was refused: an OAuth account gets one refresh and one retry.
        if oauth && !refreshed && refresh(&state, &account).await {
            refreshed = true;
            lease = admit(&account, false).await?;
            continue;
        }
        state.registry.do_send(SetState {
            uuid: account.id.to_string(),
            state: Some(AccountState::KeyInvalid),
        });
        return result;
    }
}

/// Sends one upstream call and relays its reply; `stream` is `Some(client
/// wants the usage chunk)` for a stream request.
async fn forward(
    state: &AppState,
    http: &awc::Client,
    lease: Lease,
    stream: Option<bool>,
    body: Bytes,
) -> Result<HttpResponse, GatewayError> {
    let cfg = &state.config;
    let mut request = http.post(&*lease.url);
    for (name, value) in &lease.headers {
        request = request.insert_header((*name, value.as_str()));
    }
    let response = request
        .send_body(body)
        .await
        .map_err(|e| client::send_error(&lease.account_id, e, cfg.upstream_timeout))?;
    let opts = relay::RelayOptions {
        preserve_reasoning: cfg.preserve_reasoning_content,
        max_response_bytes: cfg.max_response_bytes,
        idle_timeout: cfg.stream_idle_timeout,
        keepalive: cfg.sse_keepalive,
        body_timeout: cfg.upstream_timeout,
    };
    match stream {
        Some(wants_usage) => relay::stream(response, lease, wants_usage, opts).await,
        None => relay::complete(response, lease, &opts).await,
    }
}

/// Asks the refresher for new credentials; true when they arrived.
async fn refresh(state: &AppState, account: &AccountHandle) -> bool {
    let ask = state.refresher.send(RefreshAccount(account.id.to_string()));
    match tokio::time::timeout(REFRESH_WAIT, ask).await {
        Ok(Ok(Ok(_))) => true,
        Ok(Ok(Err(e))) => {
            log::warn!(
                "account {}: key refused and refresh failed: {e}",
                account.id
            );
            false
        }
        _ => false,
    }
}

/// Gets a slot on the account, waiting in its queue if it is busy.
async fn admit(account: &AccountHandle, starts_turn: bool) -> Result<Lease, GatewayError> {
    let gone = |e: actix::MailboxError| GatewayError::Unavailable(e.to_string());
    match account
        .upstream
        .send(Acquire { starts_turn })
        .await
        .map_err(gone)??
    {
        Admission::Ready(lease) => Ok(lease),
        Admission::Queued(ticket) => {
            let permit = ticket.wait(&account.id).await?;
            account
                .upstream
                .send(Sign {
                    permit,
                    starts_turn,
                })
                .await
                .map_err(gone)
        }
    }
}
