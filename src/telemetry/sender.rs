//! Sends the telemetry events, each on its own local task with a short
//! timeout, through the worker's upstream client (and so its proxy).

use super::TelemetrySettings;
use super::events::{self, ClientFacts, RunContext};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// No event may take longer than this; nobody waits for it anyway.
const SEND_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a page view waits for the `cna` fetch still under way at start
/// (the fetch itself gives up after `SEND_TIMEOUT`).
const CNA_WAIT: Duration = Duration::from_secs(5);

/// Where the `cna` cookie stands.
#[derive(Clone, PartialEq)]
enum Cna {
    /// The fetch at start has not answered yet.
    Pending,
    Known(String),
    /// The collector gave none (or could not be reached).
    Missing,
}

/// The headers Node's fetch (undici) adds to every request of the official
/// client's telemetry (protocol sections 2.2 and 9.1).
fn node_fetch(request: awc::ClientRequest) -> awc::ClientRequest {
    request
        .insert_header(("accept", "*/*"))
        .insert_header(("accept-language", "*"))
        .insert_header(("sec-fetch-mode", "cors"))
        .insert_header(("user-agent", "node"))
        .insert_header(("accept-encoding", "br, gzip, deflate"))
        .timeout(SEND_TIMEOUT)
}

pub struct Telemetry {
    settings: TelemetrySettings,
    user_id: String,
    facts: ClientFacts,
    language: String,
    /// The `cna` cookie from `v.gif`; without it no page view is sent.
    cna: tokio::sync::watch::Sender<Cna>,
}

/// One model call's telemetry, from `run_started` on.
pub struct RunHandle {
    telemetry: Arc<Telemetry>,
    ctx: RunContext,
    started: Instant,
}

impl Telemetry {
    /// Reads, or creates, the installation id under `<data>/telemetry/`.
    pub fn new(settings: TelemetrySettings, data_dir: &Path) -> std::io::Result<Arc<Self>> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = data_dir.join("telemetry");
        // Private like the account store: the id ties events to this install.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let path = dir.join("installation_id");
        let user_id = match std::fs::read_to_string(&path) {
            Ok(id) if uuid::Uuid::parse_str(id.trim()).is_ok() => id.trim().to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().to_string();
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)?
                    .write_all(id.as_bytes())?;
                id
            }
        };
        let facts = events::local_facts(&settings.cli_version, &settings.node_version);
        let language = std::env::var("LANG").unwrap_or_else(|_| "en_US.UTF-8".into());
        Ok(Arc::new(Self {
            settings,
            user_id,
            facts,
            language,
            cna: tokio::sync::watch::Sender::new(Cna::Pending),
        }))
    }

    /// Asks `v.gif` for the `cna` cookie once, as the official client does at start.
    pub async fn fetch_cna(self: Arc<Self>, client: awc::Client) {
        let request = node_fetch(client.get(&self.settings.telemetry_pv_url)).send();
        let Ok(resp) = request.await else {
            log::debug!("telemetry: no cna cookie (collector unreachable)");
            self.cna.send_replace(Cna::Missing);
            return;
        };
        let cna = resp
            .headers()
            .get_all("set-cookie")
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                c.strip_prefix("cna=")
                    .map(|rest| rest.split(';').next().unwrap_or_default().to_string())
            })
            .filter(|c| !c.is_empty());
        self.cna.send_replace(cna.map_or(Cna::Missing, Cna::Known));
    }

    /// Sends the page view (once a `cna` is known: a request right after
    /// start waits for the fetch under way) and `run_started`.
    pub fn start(
        self: &Arc<Self>,
        client: &awc::Client,
        headers: &[(
            actix_web::http::header::HeaderName,
            actix_web::http::header::HeaderValue,
        )],
        model: &str,
        tool: &str,
    ) -> RunHandle {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .and_then(|(_, v)| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let traceparent = header("traceparent");
        let ctx = RunContext {
            trace_id: traceparent
                .split('-')
                .nth(1)
                .unwrap_or_default()
                .to_string(),
            session_id: header("session-id"),
            conversation_id: header("conversation-id"),
            model: model.to_string(),
            tool: tool.to_string(),
            user_id: self.user_id.clone(),
            observation_id: events::observation_id(),
        };
        let current = self.cna.borrow().clone();
        match current {
            Cna::Known(cna) => self.page_view(client, &cna),
            Cna::Missing => {}
            Cna::Pending => {
                let (telemetry, client) = (self.clone(), client.clone());
                let mut cna = self.cna.subscribe();
                actix_web::rt::spawn(async move {
                    let known = cna.wait_for(|c| *c != Cna::Pending);
                    if let Ok(Ok(state)) = tokio::time::timeout(CNA_WAIT, known).await
                        && let Cna::Known(cna) = &*state
                    {
                        telemetry.page_view(&client, cna);
                    }
                });
            }
        }
        self.gm(client, "run_started", events::run_started(&ctx));
        RunHandle {
            telemetry: self.clone(),
            ctx,
            started: Instant::now(),
        }
    }

    fn page_view(&self, client: &awc::Client, cna: &str) {
        let body = events::page_view(cna, &self.user_id, &self.facts, &self.language);
        send_text(client, &self.settings.telemetry_pv_url, body);
    }

    fn gm(&self, client: &awc::Client, event: &str, body: Value) {
        // The official client joins base and "/aitrack…" with one more "/".
        let url = format!(
            "{}//aitrack.lifecycle.{event}",
            self.settings.telemetry_gm_url.trim_end_matches('/')
        );
        let request =
            node_fetch(client.post(url)).insert_header(("content-type", "application/json"));
        actix_web::rt::spawn(async move {
            if let Err(e) = request.send_json(&body).await {
                log::debug!("telemetry event not delivered: {e}");
            }
        });
    }
}

fn send_text(client: &awc::Client, url: &str, body: String) {
    let request = node_fetch(client.post(url))
        .insert_header(("content-type", "text/plain;charset=UTF-8"))
        .insert_header(("cache-control", "no-cache"));
    actix_web::rt::spawn(async move {
        if let Err(e) = request.send_body(body).await {
            log::debug!("telemetry page view not delivered: {e}");
        }
    });
}

impl RunHandle {
    /// `run_finished`: a non-stream reply arrived.
    pub fn finished(self, client: &awc::Client) {
        let body = events::run_finished(&self.ctx, self.started.elapsed().as_millis());
        self.telemetry.gm(client, "run_finished", body);
    }

    /// `run_error`: the call failed.
    pub fn failed(self, client: &awc::Client, error: &str) {
        let body = events::run_error(&self.ctx, error, &self.telemetry.facts);
        self.telemetry.gm(client, "run_error", body);
    }
}
