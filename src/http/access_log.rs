//! One access-log line per request: method, path, status, duration, account.
//! Query strings and headers are never logged.

use super::auth::AccountTag;
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
    let account = res
        .request()
        .extensions()
        .get::<AccountTag>()
        .map(|t| t.0.clone());
    log::info!(
        "{method} {path} {} {:.1}ms account={}",
        res.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0,
        account.as_deref().unwrap_or("-")
    );
    Ok(res)
}
