//! One access-log line per request: method, path, status, duration, account.
//! Query strings and headers are never logged.

use super::AppState;
use super::auth::RequestTag;
use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::time::Instant;

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_string();
    let res = next.call(req).await?;
    let tag = res
        .request()
        .extensions()
        .get::<RequestTag>()
        .cloned()
        .unwrap_or_default();
    let account = tag.account.as_deref().unwrap_or("-");
    let status = res.status().as_u16();
    if let Some(state) = res.request().app_data::<actix_web::web::Data<AppState>>() {
        state
            .metrics
            .request(status, tag.model.as_deref().unwrap_or_default(), account);
    }
    log::info!(
        "{method} {path} {status} {:.1}ms account={account}",
        started.elapsed().as_secs_f64() * 1000.0,
    );
    Ok(res)
}
