//! Admin endpoints (admin gateway key): `GET /v1/usage` and `GET /metrics`
//! (the latter open when `IFLOW_METRICS_PUBLIC` is set).

use super::{AppState, auth};
use crate::actors::registry::UsageReport;
use crate::error::GatewayError;
use crate::store::UsageRow;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::collections::BTreeMap;

pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    if !state.config.metrics_public {
        auth::require_admin(&req, &state).await?;
    }
    let text = state.metrics.render(&state.directory.load());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

pub async fn usage(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    auth::require_admin(&req, &state).await?;
    let mut report = state
        .registry
        .send(UsageReport)
        .await
        .map_err(|e| GatewayError::Unavailable(e.to_string()))?
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    // A full uuid is a credential while uuid-as-bearer is on: name accounts
    // by their short id, as logs and metrics do.
    for row in &mut report.rows {
        row.account = crate::secret::short_id(&row.account).to_string();
    }
    Ok(HttpResponse::Ok().json(json!({
        "object": "usage",
        "since": report.since,
        "rows": report.rows,
        "by_account": totals(&report.rows, |r| &r.account),
        "by_key": totals(&report.rows, |r| &r.key),
        "by_model": totals(&report.rows, |r| &r.model),
    })))
}

/// Sums rows by one of their labels.
fn totals<'a>(rows: &'a [UsageRow], by: impl Fn(&'a UsageRow) -> &'a String) -> serde_json::Value {
    let mut sums: BTreeMap<&str, UsageRow> = BTreeMap::new();
    for row in rows {
        sums.entry(by(row).as_str()).or_default().absorb(row);
    }
    sums.into_iter()
        .map(|(name, t)| {
            let body = json!({
                "requests": t.requests,
                "errors": t.errors,
                "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens,
                "last_used_at": t.last_used_at,
            });
            (name.to_string(), body)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
