//! Health endpoints, no auth: `/health` (summary), `/health/live` (the
//! process answers) and `/health/ready` (at least one usable account).

use super::AppState;
use crate::error::GatewayError;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde_json::json;

pub async fn summary(
    _req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let directory = state.directory.load();
    let now = Utc::now();
    let (in_flight, queued) = directory
        .handles()
        .iter()
        .fold((0, 0), |(calls, queued), h| {
            (calls + h.stats.in_flight(), queued + h.stats.waiting())
        });
    let usable = directory.usable_count(now);
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "ready": usable > 0,
        "accounts": directory.len(),
        "usable_accounts": usable,
        "in_flight": in_flight,
        "waiting": queued + state.picker.waiting(),
    })))
}

pub async fn live(
    _req: HttpRequest,
    _state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    Ok(HttpResponse::Ok().json(json!({ "status": "ok" })))
}

pub async fn ready(
    _req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let usable = state.directory.load().usable_count(Utc::now());
    if usable == 0 {
        return Err(GatewayError::Unavailable(
            "not ready: no usable account (add one, or wait for cooldowns to end)".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "usable_accounts": usable })))
}
