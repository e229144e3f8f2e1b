//! `GET /v1/models` and `GET /v1/models/{id}`: the iFlow catalogue in
//! OpenAI's list and model formats.

use super::{AppState, auth};
use crate::error::GatewayError;
use crate::profile::iflow::models::{CATALOGUE, ModelInfo};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

/// The catalogue has no dates; a fixed one keeps the answer stable.
const CREATED: i64 = 1_767_225_600;

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    auth::authenticate(&req, &state).await?;
    let data: Vec<_> = CATALOGUE.iter().map(model_object).collect();
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": data })))
}

/// One model, as OpenAI's `models.retrieve` asks for it; 404
/// `model_not_found` for an id the list does not have.
pub async fn retrieve(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    auth::authenticate(&req, &state).await?;
    let id = req.match_info().get("id").unwrap_or_default();
    let model = CATALOGUE
        .iter()
        .find(|m| m.id == id)
        .ok_or_else(|| GatewayError::ModelNotFound(id.to_string()))?;
    Ok(HttpResponse::Ok().json(model_object(model)))
}

fn model_object(m: &ModelInfo) -> serde_json::Value {
    json!({ "id": m.id, "object": "model", "created": CREATED, "owned_by": "iflow", "name": m.label })
}
