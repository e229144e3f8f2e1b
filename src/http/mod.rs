//! The HTTP layer: one route table, thin handlers, the upstream client, the
//! dispatcher (admission, failover) and the relay. Handlers talk to the
//! actors through messages and the registry's published directory.

mod access_log;
mod admin;
pub mod auth;
mod body;
mod chat;
pub mod client;
mod cors;
mod dispatch;
mod health;
mod messages;
mod meter;
mod models;
pub mod proxy_connector;
pub mod relay;
pub mod server;

use crate::actors::refresher::RefresherActor;
use crate::actors::registry::{AccountRegistry, CooldownPolicy, SharedDirectory, UsageLedger};
use crate::actors::scheduler::{PoolPicker, SchedulerActor};
use crate::anthropic::errors::AnthropicError;
use crate::config::Config;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::telemetry::Telemetry;
use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use std::sync::Arc;

/// Shared by every worker.
pub struct AppState {
    pub config: Arc<Config>,
    pub directory: SharedDirectory,
    pub registry: Addr<AccountRegistry>,
    pub refresher: Addr<RefresherActor>,
    pub scheduler: Addr<SchedulerActor>,
    /// The pool pick, made on the worker while no request waits.
    pub picker: Arc<PoolPicker>,
    pub metrics: Arc<Metrics>,
    pub ledger: Arc<UsageLedger>,
    pub cooldown: CooldownPolicy,
    /// The official client's telemetry; only in `IFLOW_ALIGN_MODE=official`.
    pub telemetry: Option<Arc<Telemetry>>,
}

fn get(
    path: &str,
    handler: impl actix_web::Handler<
        (HttpRequest, web::Data<AppState>),
        Output = Result<HttpResponse, GatewayError>,
    > + 'static,
) -> actix_web::Resource {
    // HEAD too: uptime probes and load balancers often check with it.
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(only_get))
}

/// The route table.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get("/health", health::summary))
        .service(get("/health/live", health::live))
        .service(get("/health/ready", health::ready))
        .service(get("/metrics", admin::metrics))
        .service(get("/v1/usage", admin::usage))
        .service(get("/v1/models", models::list))
        .service(
            web::resource("/v1/chat/completions")
                .route(web::post().to(chat::completions))
                .default_service(web::to(only_post)),
        )
        .service(
            web::resource("/v1/messages")
                .route(web::post().to(messages::create))
                .default_service(web::to(only_post_anthropic)),
        )
        .service(
            web::resource("/v1/messages/count_tokens")
                .route(web::post().to(messages::count_tokens))
                .default_service(web::to(only_post_anthropic)),
        )
        // Last: a pattern is matched by a regex, which the chat routes
        // above (plain strings, tried in order) then never pay for.
        .service(get("/v1/models/{id:.+}", models::retrieve))
        .default_service(web::to(not_found));
}

pub use access_log::access_log;

/// Unknown paths; under `/v1/messages` the error has the Anthropic shape.
async fn not_found(req: HttpRequest) -> HttpResponse {
    let err = GatewayError::NotFound {
        method: req.method().to_string(),
        path: req.path().to_string(),
        hint: meant(&req),
    };
    if req.path().starts_with("/v1/messages") {
        AnthropicError(err).error_response()
    } else {
        err.error_response()
    }
}

/// The route a path names once doubled and trailing slashes are dropped
/// (a base URL ending in `/` joined with `/chat/completions`, say), asked
/// of the route table itself. Only unknown paths get here, so the answer
/// stays a 404, with a hint.
fn meant(req: &HttpRequest) -> Option<String> {
    let path = req.path();
    let tidy: String = path
        .split('/')
        .filter(|part| !part.is_empty())
        .flat_map(|part| ["/", part])
        .collect();
    (tidy != path && req.resource_map().has_resource(&tidy)).then_some(tidy)
}

async fn only_post_anthropic(req: HttpRequest) -> Result<HttpResponse, AnthropicError> {
    Err(AnthropicError(method_not_allowed(&req, "POST")))
}

async fn only_get(req: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(method_not_allowed(&req, "GET, HEAD"))
}

async fn only_post(req: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(method_not_allowed(&req, "POST"))
}

fn method_not_allowed(req: &HttpRequest, allow: &'static str) -> GatewayError {
    GatewayError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_string(),
        allow,
    }
}
