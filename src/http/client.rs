//! The upstream HTTP client: one awc client (and so one connection pool) per
//! HTTP worker, built in the `HttpServer` factory, never per request.

use super::proxy_connector::ProxyConnector;
use crate::config::{Config, MaybeProxy};
use crate::error::GatewayError;
use crate::profile::UpstreamFault;
use awc::error::SendRequestError;
use std::time::Duration;

/// The gateway's client for upstream chat calls.
pub fn build(config: &Config, proxy: &MaybeProxy) -> awc::Client {
    build_with(
        config.upstream_connect_timeout,
        config.upstream_timeout,
        proxy,
    )
}

/// A client with no default headers and no redirects, through `proxy`
/// when one is set. Call once per thread and reuse it.
pub fn build_with(
    connect_timeout: Duration,
    head_timeout: Duration,
    proxy: &MaybeProxy,
) -> awc::Client {
    let connector = awc::Connector::new()
        .timeout(connect_timeout)
        .handshake_timeout(connect_timeout)
        .conn_keep_alive(Duration::from_secs(60))
        // awc's default of 100 connections would queue the 101st stream.
        .limit(0);
    let builder = awc::ClientBuilder::new()
        .no_default_headers()
        .disable_redirects()
        .timeout(head_timeout);
    match proxy {
        Some(proxy) => builder
            .connector(connector.connector(ProxyConnector::new(proxy.clone())))
            .finish(),
        None => builder.connector(connector).finish(),
    }
}

/// Maps a failure to send or to get the reply head.
pub fn send_error(account: &str, err: SendRequestError, timeout: Duration) -> GatewayError {
    let fault = match err {
        SendRequestError::Timeout => UpstreamFault::Timeout(timeout),
        SendRequestError::Connect(e) => UpstreamFault::Unreachable(e.to_string()),
        SendRequestError::Url(e) => UpstreamFault::Unreachable(format!("bad upstream URL: {e}")),
        other => UpstreamFault::Unreachable(other.to_string()),
    };
    GatewayError::upstream(account, fault)
}
