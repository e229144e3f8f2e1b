//! Reads a request body with a size cap and a deadline, so a huge or slow
//! upload cannot hold memory or a worker for long.

use crate::error::GatewayError;
use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use futures::StreamExt;
use std::time::Duration;

pub async fn read(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, GatewayError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let collect = async {
        // Grow with what arrives: a declared length reserves nothing up front,
        // so slow clients cannot pin memory they never send.
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit).min(64 * 1024));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                GatewayError::invalid(format!("could not read the request body: {e}"))
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(GatewayError::PayloadTooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(deadline, collect)
        .await
        .map_err(|_| GatewayError::BodyTimeout)?
}
