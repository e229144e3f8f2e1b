//! The HTTP layer: one route table, thin handlers, the upstream client and
//! the relay. Handlers talk to the actors through messages and the
//! registry's published directory.

mod access_log;
pub mod auth;
mod body;
mod chat;
pub mod client;
mod health;
mod models;
pub mod proxy_connector;
pub mod relay;
pub mod server;

use crate::actors::refresher::RefresherActor;
use crate::actors::registry::{AccountRegistry, SharedDirectory};
use crate::config::Config;
use crate::error::GatewayError;
use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};
use std::sync::Arc;

/// Shared by every worker.
pub struct AppState {
    pub config: Arc<Config>,
    pub directory: SharedDirectory,
    pub registry: Addr<AccountRegistry>,
    pub refresher: Addr<RefresherActor>,
}

/// The route table.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/models")
            .route(web::get().to(models::list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/chat/completions")
            .route(web::post().to(chat::completions))
            .default_service(web::to(method_not_allowed)),
    )
    .default_service(web::to(not_found));
}

pub use access_log::access_log;

async fn not_found(req: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::NotFound {
        method: req.method().to_string(),
        path: req.path().to_string(),
    })
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_string(),
    })
}
