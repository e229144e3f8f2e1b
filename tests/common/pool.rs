//! The account pool: several accounts, each on its own mock upstream (so
//! each can fail on its own), gateway keys made with the real CLI, and a
//! bounded wait for state the server only shows when asked (after a rescan).

use super::client::{self, Response};
use super::gateway::{Gateway, command, import, run};
use super::mock::Mock;
use super::user_body;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The upstream API key of pool account `i`.
pub fn upstream_key(i: usize) -> String {
    format!("sk-pool-{i}-0123456789abcdef")
}

/// Runs `iflow-actix ARGS` on a data dir.
pub fn cli(data_dir: &Path, args: &[&str]) -> Output {
    let mut cmd = command(data_dir, data_dir);
    cmd.args(args);
    run(cmd)
}

/// Runs a CLI command that must succeed; returns its stdout.
pub fn cli_ok(data_dir: &Path, args: &[&str]) -> String {
    let out = cli(data_dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `key create ARGS`; returns (key id, plain key).
pub fn create_key(data_dir: &Path, args: &[&str]) -> (String, String) {
    let stdout = cli_ok(data_dir, &[&["key", "create"], args].concat());
    let id = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("created "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no key id in {stdout:?}"))
        .to_string();
    let plain = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("sk-iflow-"))
        .unwrap_or_else(|| panic!("no key in {stdout:?}"))
        .to_string();
    (id, plain)
}

/// `token import --api-key … --models …`; returns the account uuid.
pub fn import_models(
    data_dir: &Path,
    key: &str,
    base_url: &str,
    kind: &str,
    models: &str,
) -> String {
    let stdout = cli_ok(
        data_dir,
        &[
            "token",
            "import",
            "--api-key",
            key,
            "--base-url",
            base_url,
            "--kind",
            kind,
            "--models",
            models,
        ],
    );
    stdout
        .split_whitespace()
        .nth(2)
        .map(str::to_string)
        .unwrap_or_else(|| panic!("unexpected import output {stdout:?}"))
}

/// Polls `done` every 20 ms until it holds (`true`) or `timeout` passes. For
/// state that no event announces (a rescan of the data directory).
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The text of a recorded request's last user message.
pub fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// `n` accounts (account `i` on `mocks[i]`), one plain gateway key, a gateway.
pub struct Pool {
    pub gw: Gateway,
    pub mocks: Vec<Mock>,
    pub accounts: Vec<String>,
    pub key: String,
    pub key_id: String,
    pub dir: TempDir,
}

pub fn pool(n: usize, env: &[(&str, &str)]) -> Pool {
    let dir = tempfile::tempdir().expect("temp dir");
    let mocks: Vec<Mock> = (0..n).map(|_| Mock::start()).collect();
    let accounts = mocks
        .iter()
        .enumerate()
        .map(|(i, m)| import(dir.path(), &upstream_key(i), &m.base_url(), "iflow"))
        .collect();
    let (key_id, key) = create_key(dir.path(), &["--name", "pool"]);
    let gw = Gateway::start(dir.path(), env);
    Pool {
        gw,
        mocks,
        accounts,
        key,
        key_id,
        dir,
    }
}

impl Pool {
    /// A `glm-5` chat with the pool key.
    pub fn chat(&self, content: &str) -> Response {
        client::chat(self.gw.addr, &self.key, &user_body("glm-5", content))
    }

    /// Requests each mock received so far.
    pub fn counts(&self) -> Vec<usize> {
        self.mocks.iter().map(|m| m.requests().len()).collect()
    }

    pub fn total(&self) -> usize {
        self.counts().iter().sum()
    }

    /// The accounts (by index) whose mock received a message `text`.
    pub fn served(&self, text: &str) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, m) in self.mocks.iter().enumerate() {
            for r in m.requests() {
                if last_user_text(&r.body) == text {
                    out.push(i);
                }
            }
        }
        out
    }

    /// `usable_accounts` of `/health`.
    pub fn usable(&self) -> u64 {
        client::get(self.gw.addr, "/health", None).json()["usable_accounts"]
            .as_u64()
            .expect("usable_accounts")
    }

    /// Waits (at most 5 s) until `/health` counts `n` usable accounts.
    pub fn wait_usable(&self, n: u64) -> bool {
        wait_until(Duration::from_secs(5), || self.usable() == n)
    }

    /// The account file as JSON.
    pub fn file(&self, i: usize) -> Value {
        super::account_file(self.dir.path(), &self.accounts[i])
    }
}
