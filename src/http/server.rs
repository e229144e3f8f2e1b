//! Starts the gateway: the actors, then the HTTP server with one upstream
//! client per worker; on SIGINT/SIGTERM it drains requests and writes usage.

use super::{AppState, access_log, client, cors::cors, routes};
use crate::actors::homes::Homes;
use crate::actors::refresher::RefresherActor;
use crate::actors::registry::{
    AccountRegistry, CooldownPolicy, FlushUsage, PlaceActors, RegistrySettings,
};
use crate::actors::scheduler::{SchedulerActor, SchedulerSettings};
use crate::actors::store_worker::Stores;
use crate::actors::upstream::PoolSignal;
use crate::cli::Cli;
use crate::config::{Config, CorsOrigins};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::telemetry::{AlignMode, Telemetry};
use actix::Actor;
use actix_web::middleware::Condition;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("data directory: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Run(std::io::Error),
}

/// Waits for SIGINT or SIGTERM and names it.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// rustls needs a process-wide crypto provider; ring is the one we build.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How long shutdown waits for the requests the workers cut off to be
/// booked before the usage is written.
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// How long a forced stop (a second signal) waits for the usage counters.
const FORCED_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Connections waiting to be accepted, per listening socket.
const BACKLOG: i32 = 2048;

/// Listening sockets on every address `host` resolves to, as actix's own
/// `bind` makes them (address reuse, [`BACKLOG`]): one is enough; with none
/// the last error says why.
fn listen(host: &str, port: u16) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs;
    let mut listeners = Vec::new();
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        let bound = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .and_then(|socket| {
                socket.set_reuse_address(true)?;
                socket.bind(&addr.into())?;
                socket.listen(BACKLOG)?;
                Ok(std::net::TcpListener::from(socket))
            });
        match bound {
            Ok(listener) => listeners.push(listener),
            Err(e) => last = Some(e),
        }
    }
    match (listeners.is_empty(), last) {
        (false, _) => Ok(listeners),
        (true, Some(e)) => Err(e),
        (true, None) => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the host name resolves to no address",
        )),
    }
}

pub async fn serve(config: Config, cli: &Cli) -> Result<(), ServeError> {
    install_crypto_provider();
    // Take the port before any actor starts: a busy port or an unknown host
    // then ends the command with its one-line error, with nothing to stop.
    let addr = format!("{}:{}", config.host, config.port);
    let listeners = listen(&config.host, config.port).map_err(|source| ServeError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let data_dir = cli.data_dir.as_path();
    let metrics = Arc::new(Metrics::default());
    let signal = Arc::new(PoolSignal::default());
    let stores = Stores::open(data_dir)?;
    // Before the actors start, like the port: a failure here has nothing to stop.
    let telemetry = match config.telemetry.align_mode {
        AlignMode::Off => None,
        AlignMode::Official => {
            let telemetry =
                Telemetry::new(config.telemetry.clone(), data_dir).map_err(|source| {
                    ServeError::Store(StoreError::Io {
                        action: "prepare telemetry in",
                        path: data_dir.to_path_buf(),
                        source,
                    })
                })?;
            log::warn!("IFLOW_ALIGN_MODE=official: sending the official client's telemetry");
            let client = client::build(&config, &cli.upstream_proxy);
            actix_web::rt::spawn(telemetry.clone().fetch_cna(client));
            Some(telemetry)
        }
    };
    let account_store = stores.accounts.clone();
    // Account actors live on the HTTP workers' threads (see actors::homes).
    let homes = Homes::default();
    let registry = AccountRegistry::new(
        stores,
        RegistrySettings {
            concurrency: config.concurrency,
            queue_size: config.queue_size,
            queue_timeout: config.queue_timeout,
            flush_interval: Some(config.usage_flush_interval),
            rescan_interval: Some(config.store_rescan_interval),
            pool: Some(signal.clone()),
            homes: Some(homes.clone()),
        },
    )?;
    let directory = registry.directory();
    let ledger = registry.ledger();
    let shutdown_ledger = ledger.clone();
    let accounts = directory.load().len();
    let registry = registry.start();
    let refresher = RefresherActor::new(
        registry.clone(),
        account_store,
        cli.oauth.clone(),
        &cli.upstream_proxy,
        cli.refresh.clone(),
        true,
    )
    .with_metrics(metrics.clone())
    .start();
    let scheduler = SchedulerActor::new(
        directory.clone(),
        signal,
        SchedulerSettings {
            queue_size: config.pool_queue_size,
            queue_timeout: config.queue_timeout,
            sticky: config.sticky_sessions,
        },
    );
    let picker = scheduler.picker();
    let scheduler = scheduler.start();

    let config = Arc::new(config);
    let state = web::Data::new(AppState {
        config: config.clone(),
        directory,
        registry: registry.clone(),
        refresher,
        scheduler,
        picker,
        metrics,
        ledger,
        cooldown: CooldownPolicy {
            base: config.cooldown_base,
            max: config.cooldown_max,
        },
        telemetry,
    });
    let factory_config = config.clone();
    let proxy = cli.upstream_proxy.clone();
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let stall = config.client_stall_timeout;
    let workers_registry = registry.clone();
    let mut server = HttpServer::new(move || {
        // Runs on each worker's thread as it starts (again after a restart).
        if homes.register_current() {
            workers_registry.do_send(PlaceActors::default());
        }
        App::new()
            .app_data(state.clone())
            .app_data(web::Data::new(client::build(&factory_config, &proxy)))
            .wrap(Condition::new(
                factory_config.cors_origins != CorsOrigins::Off,
                from_fn(cors),
            ))
            .wrap(from_fn(access_log))
            .configure(routes)
    })
    .workers(workers)
    // A client that stops reading keeps its receive window at zero; the
    // kernel then keeps the connection, and actix the unsent rest of the
    // answer, for ever. With TCP_USER_TIMEOUT the kernel drops it instead.
    .on_connect(move |conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>()
            && let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(stall))
        {
            // Without it a client that stops reading holds its stream (and
            // the account's slot) until it goes away: say so, once.
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                log::warn!(
                    "cannot set TCP_USER_TIMEOUT ({e}): IFLOW_CLIENT_STALL_TIMEOUT has no effect"
                );
            }
        }
    })
    .client_request_timeout(config.client_header_timeout)
    .client_disconnect_timeout(Duration::from_secs(5))
    .keep_alive(config.client_keepalive)
    // A client that closes its side has left: drop its request at once
    // (that cancels the upstream call and frees the account's slot) rather
    // than only when a later write to it fails, which for a silent upstream
    // or a non-stream answer can be minutes away.
    .h1_allow_half_closed(false)
    // Whole seconds only; round up so "500ms" still leaves some grace.
    .shutdown_timeout(config.shutdown_timeout.as_secs_f64().ceil() as u64)
    // Stream events are small writes: without this, Nagle's algorithm holds
    // each one until the client's delayed ACK (tens of milliseconds).
    .tcp_nodelay(true)
    .disable_signals();
    for listener in listeners {
        server = server.listen(listener).map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    }
    for bound in server.addrs() {
        log::info!(
            "iflow-actix {} listening on http://{bound} ({accounts} accounts, {workers} workers, data in {})",
            env!("CARGO_PKG_VERSION"),
            data_dir.display()
        );
    }
    let server = server.run();
    let handle = server.handle();
    let grace = config.shutdown_timeout;
    let forced_flush = registry.clone();
    actix_web::rt::spawn(async move {
        let signal = shutdown_signal().await;
        log::info!(
            "{signal} received: graceful shutdown, finishing requests in flight (up to {grace:?}; \
             send it again to stop at once)"
        );
        // actix counts the grace period in whole seconds, rounded up.
        crate::shutdown::begin(Duration::from_secs(grace.as_secs_f64().ceil() as u64));
        crate::store::stop_lock_waits();
        actix_web::rt::spawn(async move {
            // An operator who signals twice wants out now: write what is
            // counted already, drop what is in flight.
            let again = shutdown_signal().await;
            log::warn!("{again} received again: stopping at once, requests in flight are dropped");
            match tokio::time::timeout(FORCED_FLUSH_WAIT, forced_flush.send(FlushUsage)).await {
                Ok(Ok(Ok(_))) => {}
                _ => log::error!("usage counted since the last flush could not be written"),
            }
            std::process::exit(1);
        });
        handle.stop(true).await;
    });
    server.await.map_err(ServeError::Run)?;

    let open = shutdown_ledger.settle(SETTLE_WAIT).await;
    if open > 0 {
        log::warn!("{open} upstream calls were still open at shutdown; their usage is not counted");
    }
    log::info!("requests finished or cut off; writing usage counters");
    match tokio::time::timeout(Duration::from_secs(10), registry.send(FlushUsage)).await {
        Ok(Ok(Ok(done))) => {
            log::info!(
                "usage written: account counters {}, ledger rows {}",
                done.accounts,
                done.ledger_rows
            );
            if done.failed_accounts > 0 {
                log::error!(
                    "the request counters of {} accounts could not be written and are lost",
                    done.failed_accounts
                );
            }
        }
        Ok(Ok(Err(e))) => log::error!("usage counters could not be written: {e}"),
        Ok(Err(e)) => log::error!("registry unavailable at shutdown: {e}"),
        Err(_) => {
            log::error!("usage counters not written: the data directory did not answer in 10 s")
        }
    }
    Ok(())
}
