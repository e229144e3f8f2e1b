//! `POST /v1/chat/completions`.

use super::{AppState, auth, body, client, relay};
use crate::actors::registry::AccountHandle;
use crate::actors::upstream::{Acquire, Admission, Lease, Sign};
use crate::error::GatewayError;
use crate::openai::ChatRequest;
use actix_web::{HttpRequest, HttpResponse, web};

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
    let lease = admit(&account, chat.starts_turn).await?;

    let mut upstream_body = chat.body;
    lease
        .profile
        .rewrite_body(&mut upstream_body, lease.credentials_auth, chat.stream);
    let upstream_body =
        serde_json::to_vec(&upstream_body).map_err(|e| GatewayError::Internal(e.to_string()))?;

    account.usage.record();
    let mut request = http.post(&*lease.url);
    for (name, value) in &lease.headers {
        request = request.insert_header((*name, value.as_str()));
    }
    let response = request
        .send_body(upstream_body)
        .await
        .map_err(|e| client::send_error(&lease.account_id, e, cfg.upstream_timeout))?;

    let opts = relay::RelayOptions {
        preserve_reasoning: cfg.preserve_reasoning_content,
        max_response_bytes: cfg.max_response_bytes,
        idle_timeout: cfg.stream_idle_timeout,
        keepalive: cfg.sse_keepalive,
        body_timeout: cfg.upstream_timeout,
    };
    if chat.stream {
        relay::stream(response, lease, chat.wants_stream_usage, opts).await
    } else {
        relay::complete(response, lease, &opts).await
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
