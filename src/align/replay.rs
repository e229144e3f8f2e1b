//! Runs baseline inputs through the real gateway binary against the
//! capturing upstream, and compares what arrived with the baselines.

use super::capture::CaptureServer;
use super::compare::{Captured, Difference, compare};
use super::fixture::Fixture;
use crate::secret::Secret;
use crate::store::{Account, AccountStore, AuthType};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub name: String,
    /// The upstream request the gateway sent, if one arrived.
    pub captured: Option<Captured>,
    pub differences: Vec<Difference>,
    /// Why the case could not be compared.
    pub error: Option<String>,
}

/// What a replay produced: the cases, and every other request the capture
/// server saw (telemetry, in `official` mode).
pub struct Replay {
    pub cases: Vec<CaseResult>,
    pub others: Vec<Captured>,
}

/// A gateway child process, killed on drop.
struct Gateway {
    child: Child,
    port: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replays `fixtures` through `gateway_bin` in `mode` (`off` or `official`).
pub fn run(fixtures: &[Fixture], gateway_bin: &Path, mode: &str) -> Result<Replay, String> {
    let capture = CaptureServer::start().map_err(|e| format!("capture server: {e}"))?;
    let dir = TempDir(
        std::env::temp_dir().join(format!("iflow-align-{}", uuid::Uuid::new_v4().simple())),
    );
    let store = AccountStore::open(&dir.0).map_err(|e| e.to_string())?;
    let mut accounts: Vec<(String, String, String)> = Vec::new();
    for f in fixtures {
        let known = accounts
            .iter()
            .any(|(t, k, _)| *t == f.account.auth_type && *k == f.account.api_key);
        if known {
            continue;
        }
        let auth: AuthType = f.account.auth_type.parse()?;
        let account = Account::new(
            Secret::new(f.account.api_key.clone()),
            format!("{}/v1", capture.base_url()),
            auth,
            chrono::Utc::now(),
        );
        store.create(&account).map_err(|e| e.to_string())?;
        accounts.push((
            f.account.auth_type.clone(),
            f.account.api_key.clone(),
            account.uuid,
        ));
    }
    let gateway = start_gateway(gateway_bin, &dir.0, mode, &capture.base_url())?;

    let mut cases = Vec::new();
    for f in fixtures {
        let uuid = accounts
            .iter()
            .find(|(t, k, _)| *t == f.account.auth_type && *k == f.account.api_key)
            .map(|(_, _, u)| u.clone())
            .unwrap_or_default();
        let before = capture.requests().len();
        let sent = post_chat(gateway.port, &uuid, &f.request);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let chat = capture
            .requests()
            .into_iter()
            .skip(before)
            .find(|r| r.path.ends_with("/chat/completions"));
        let (differences, error) = match (&sent, &chat) {
            (Err(e), _) => (Vec::new(), Some(e.clone())),
            (Ok(_), None) => (Vec::new(), Some("no upstream request arrived".into())),
            (Ok(_), Some(captured)) => (compare(f, captured, now_ms), None),
        };
        cases.push(CaseResult {
            name: f.name.clone(),
            captured: chat,
            differences,
            error,
        });
    }
    drop(gateway);
    let others = capture
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/chat/completions"))
        .collect();
    Ok(Replay { cases, others })
}

fn start_gateway(bin: &Path, data: &Path, mode: &str, capture: &str) -> Result<Gateway, String> {
    let mut child = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("IFLOW_LOG_LEVEL", "info")
        .env("IFLOW_ALIGN_MODE", mode)
        // Nothing may leave the machine, telemetry included.
        .env("IFLOW_TELEMETRY_GM_URL", format!("{capture}/gm"))
        .env("IFLOW_TELEMETRY_PV_URL", format!("{capture}/v.gif"))
        .env("IFLOW_OAUTH_TOKEN_URL", format!("{capture}/oauth/token"))
        .env(
            "IFLOW_OAUTH_USERINFO_URL",
            format!("{capture}/oauth/userinfo"),
        )
        .env("IFLOW_OAUTH_AUTHORIZE_URL", format!("{capture}/oauth"))
        .current_dir(data)
        .args(["--data-dir"])
        .arg(data)
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--workers",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let port = rest
                    .split(' ')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok());
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(15))
        .ok()
        .flatten()
        .ok_or("the gateway did not start listening within 15 s")?;
    Ok(Gateway { child, port })
}

/// One blocking chat request; the reply is read to the end and dropped.
fn post_chat(port: u16, bearer: &str, body: &serde_json::Value) -> Result<u16, String> {
    let body = body.to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {bearer}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(|e| e.to_string())?;
    let status = String::from_utf8_lossy(&reply)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("no HTTP status in the reply")?;
    if status != 200 {
        return Err(format!(
            "the gateway answered {status}: {}",
            String::from_utf8_lossy(&reply)
        ));
    }
    Ok(status)
}
