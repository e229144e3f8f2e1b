//! Admin endpoints (admin gateway key): `GET /v1/usage` and `GET /metrics`
//! (the latter open when `IFLOW_METRICS_PUBLIC` is set).

use super::{AppState, auth};
use crate::actors::registry::UsageReport;
use crate::error::GatewayError;
use crate::store::UsageRow;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    short_account_labels(&mut report.rows);
    Ok(HttpResponse::Ok().json(json!({
        "object": "usage",
        "since": report.since,
        "rows": report.rows,
        "by_account": totals(&report.rows, |r| &r.account),
        "by_key": totals(&report.rows, |r| &r.key),
        "by_model": totals(&report.rows, |r| &r.model),
    })))
}

/// Replaces each row's account uuid by its short id; two accounts whose
/// short ids collide get 13-character prefixes instead, so `by_account`
/// never merges them.
fn short_account_labels(rows: &mut [UsageRow]) {
    let mut ids: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for row in rows.iter() {
        ids.entry(crate::secret::short_id(&row.account))
            .or_default()
            .insert(&row.account);
    }
    let labels: HashMap<String, String> = ids
        .into_values()
        .flat_map(|full| {
            let collide = full.len() > 1;
            full.into_iter().map(move |id| {
                let label = if collide {
                    id.get(..13).unwrap_or(id)
                } else {
                    crate::secret::short_id(id)
                };
                (id.to_string(), label.to_string())
            })
        })
        .collect();
    for row in rows {
        if let Some(label) = labels.get(&row.account) {
            row.account = label.clone();
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account: &str) -> UsageRow {
        UsageRow {
            account: account.to_string(),
            ..UsageRow::default()
        }
    }

    #[test]
    fn accounts_are_named_by_short_id_unless_two_collide() {
        let mut rows = [
            row("0a1b2c3d-1111-4000-8000-000000000001"),
            row("0a1b2c3d-2222-4000-8000-000000000002"),
            row("ffffeeee-3333-4000-8000-000000000003"),
            row("0a1b2c3d-1111-4000-8000-000000000001"),
        ];
        short_account_labels(&mut rows);
        let labels: Vec<&str> = rows.iter().map(|r| r.account.as_str()).collect();
        assert_eq!(
            labels,
            [
                "0a1b2c3d-1111",
                "0a1b2c3d-2222",
                "ffffeeee",
                "0a1b2c3d-1111"
            ]
        );
    }
}
