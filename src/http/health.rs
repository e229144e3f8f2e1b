//! `GET /health`: no auth; says whether the gateway can serve anything.

use super::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let directory = state.directory.load();
    let accounts = directory.len();
    let in_flight: usize = directory.handles().map(|h| h.slots.in_flight()).sum();
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "accounts": accounts,
        "usable_accounts": accounts,
        "in_flight": in_flight,
    }))
}
