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
    let res = next.call(req).await?;
    let tag = res
        .request()
        .extensions()
        .get::<RequestTag>()
        .cloned()
        .unwrap_or_default();
    let status = res.status().as_u16();
    if let Some(state) = res.request().app_data::<actix_web::web::Data<AppState>>() {
        state
            .metrics
            .request(status, tag.model.as_ref(), tag.account.as_ref());
    }
    if log::log_enabled!(log::Level::Info) {
        let req = res.request();
        log::info!(
            "{} {} {status} {:.1}ms account={}",
            req.method(),
            req.path(),
            started.elapsed().as_secs_f64() * 1000.0,
            tag.account.as_deref().unwrap_or("-")
        );
    }
    Ok(res)
}
