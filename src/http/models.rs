//! `GET /v1/models`: the iFlow catalogue in OpenAI list format.

use super::{AppState, auth};
use crate::error::GatewayError;
use crate::profile::iflow::models::CATALOGUE;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

/// The catalogue has no dates; a fixed one keeps the answer stable.
const CREATED: i64 = 1_767_225_600;

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    auth::authenticate(&req, &state).await?;
    let data: Vec<_> = CATALOGUE
        .iter()
        .map(|m| {
            json!({ "id": m.id, "object": "model", "created": CREATED, "owned_by": "iflow", "name": m.label })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": data })))
}
