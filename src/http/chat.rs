//! `POST /v1/chat/completions`.

use super::dispatch::{self, ChatJob};
use super::{AppState, auth, body};
use crate::error::GatewayError;
use crate::openai::ChatRequest;
use actix_web::{HttpRequest, HttpResponse, web};
use std::time::Instant;

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    http: web::Data<awc::Client>,
) -> Result<HttpResponse, GatewayError> {
    let received = Instant::now();
    let principal = auth::authenticate(&req, &state).await?;
    let cfg = &state.config;
    let bytes = body::read(&req, payload, cfg.max_body_bytes, cfg.client_body_timeout).await?;
    let chat = ChatRequest::parse(&bytes)?;
    let affinity = dispatch::affinity(&req, &chat);
    let job = ChatJob {
        principal,
        chat,
        anthropic: None,
        affinity,
        received,
    };
    dispatch::run(&req, &state, &http, job).await
}
