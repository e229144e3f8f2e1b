//! `POST /v1/messages` and `POST /v1/messages/count_tokens` (Anthropic).

use super::dispatch::{self, ChatJob};
use super::{AppState, auth, body};
use crate::anthropic::errors::AnthropicError;
use crate::anthropic::request::{estimate_tokens, translate};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::time::Instant;

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    http: web::Data<awc::Client>,
) -> Result<HttpResponse, AnthropicError> {
    let received = Instant::now();
    let principal = auth::authenticate(&req, &state).await?;
    let cfg = &state.config;
    let bytes = body::read(&req, payload, cfg.max_body_bytes, cfg.client_body_timeout).await?;
    let translated = translate(&bytes, &cfg.anthropic_model_map)?;
    let affinity = dispatch::affinity(&req, &translated.chat);
    let job = ChatJob {
        principal,
        chat: translated.chat,
        anthropic: Some(translated.echo),
        affinity,
        received,
    };
    Ok(dispatch::run(&req, &state, &http, job).await?)
}

pub async fn count_tokens(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AnthropicError> {
    auth::authenticate(&req, &state).await?;
    let cfg = &state.config;
    let bytes = body::read(&req, payload, cfg.max_body_bytes, cfg.client_body_timeout).await?;
    let tokens = estimate_tokens(&bytes, &cfg.anthropic_model_map)?;
    Ok(HttpResponse::Ok().json(json!({ "input_tokens": tokens })))
}
