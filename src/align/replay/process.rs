//! The processes and sockets of a replay: the gateway child, its temporary
//! data folder, and the blocking chat request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A gateway child process, killed on drop.
pub(super) struct Gateway {
    child: Child,
    pub port: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop.
pub(super) struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn start_gateway(
    bin: &Path,
    data: &Path,
    mode: &str,
    capture: &str,
) -> Result<Gateway, String> {
    let mut child = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("IFLOW_LOG_LEVEL", "info")
        .env("IFLOW_ALIGN_MODE", mode)
        // Nothing may leave the machine, telemetry included.
        // GM events then arrive at their official path, `//aitrack.…`.
        .env("IFLOW_TELEMETRY_GM_URL", capture)
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
    let Some(port) = rx.recv_timeout(Duration::from_secs(15)).ok().flatten() else {
        // Not yet a `Gateway`, whose drop would stop it.
        let _ = child.kill();
        let _ = child.wait();
        return Err("the gateway did not start listening within 15 s".into());
    };
    Ok(Gateway { child, port })
}

/// One blocking chat request; returns the reply's status and whole text.
pub(super) fn post_chat(
    port: u16,
    bearer: &str,
    body: &serde_json::Value,
) -> Result<(u16, String), String> {
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
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("no HTTP status in the reply")?;
    Ok((status, reply))
}
