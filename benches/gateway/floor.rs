//! The actix floor: the least an actix-web server relaying through awc can
//! cost, as a reference beside nginx. It runs in a child process of the
//! benchmark binary (the binary started again with `BENCH_FLOOR_UPSTREAM`
//! set), so its CPU time is counted apart from the client's and the mock's.
//!
//! It does what any relay must and nothing the gateway adds: no auth, no
//! JSON parsing or rewriting, no actor, no signing, no usage probe, no
//! access log. The request body goes to the mock as received; a stream
//! comes back chunk by chunk, any other reply read whole and sent with its
//! length, as the gateway does. Same HTTP worker count
//! (`IFLOW_WORKERS`, default the cores) and the same awc connector settings
//! as the gateway's upstream client (`src/http/client.rs`), so the
//! difference between the two is the gateway's own work.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

const UPSTREAM_ENV: &str = "BENCH_FLOOR_UPSTREAM";

/// In the child process: serves until killed, and never returns. In the
/// benchmark itself: returns at once.
pub fn serve_if_child() {
    let Ok(upstream) = std::env::var(UPSTREAM_ENV) else {
        return;
    };
    let upstream: SocketAddr = upstream.parse().expect("floor upstream address");
    // As the gateway reads it: 0 or nothing means one per core.
    let workers = std::env::var("IFLOW_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .filter(|w: &usize| *w > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let result = actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let connector = awc::Connector::new()
                .timeout(Duration::from_secs(10))
                .conn_keep_alive(Duration::from_secs(60))
                .limit(0);
            let client = awc::ClientBuilder::new()
                .no_default_headers()
                .disable_redirects()
                .timeout(Duration::from_secs(60))
                .connector(connector)
                .finish();
            App::new()
                .app_data(web::Data::new(client))
                .app_data(web::Data::new(format!("http://{upstream}")))
                .default_service(web::to(relay))
        })
        .workers(workers)
        // As the gateway: small stream writes leave at once (no Nagle).
        .tcp_nodelay(true)
        .bind(("127.0.0.1", 0))?;
        let addr = server.addrs()[0];
        let mut out = std::io::stdout();
        writeln!(out, "{addr}")?;
        out.flush()?;
        server.run().await
    });
    result.expect("floor proxy");
    std::process::exit(0);
}

async fn relay(
    req: HttpRequest,
    body: web::Bytes,
    client: web::Data<awc::Client>,
    base: web::Data<String>,
) -> HttpResponse {
    let mut upstream = client.post(format!("{}{}", base.get_ref(), req.path()));
    if let Some(v) = req.headers().get("content-type") {
        upstream = upstream.insert_header(("content-type", v.clone()));
    }
    let mut reply = match upstream.send_body(body).await {
        Ok(reply) => reply,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let mut out = HttpResponse::build(reply.status());
    let content_type = reply.headers().get("content-type").cloned();
    let stream = content_type
        .as_ref()
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if let Some(v) = content_type {
        out.insert_header(("content-type", v));
    }
    // As the gateway: a stream is relayed chunk by chunk as it arrives; any
    // other reply is read whole and sent with its length.
    if stream {
        return out.streaming(reply);
    }
    match reply.body().limit(16 << 20).await {
        Ok(bytes) => out.body(bytes),
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}

/// The floor proxy's process, in front of the mock (killed when dropped).
pub struct Floor {
    child: crate::Proc,
    pub addr: SocketAddr,
}

impl Floor {
    pub fn start(mock: SocketAddr) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("benchmark binary"))
            .env(UPSTREAM_ENV, mock.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the floor proxy");
        let stdout = child.stdout.take().expect("floor stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("floor proxy address");
        let addr = line.trim().parse().expect("floor proxy address");
        Self {
            child: crate::Proc(child),
            addr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }
}
