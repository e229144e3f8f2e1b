//! The integration-test harness: a mock iFlow upstream, the real gateway
//! binary as a child process, a raw HTTP client and tiny proxies.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod anthropic;
pub mod client;
pub mod fixtures;
pub mod gateway;
pub mod iflow;
pub mod mock;
pub mod pool;
pub mod prometheus;
pub mod proxy;
pub mod scenarios;
pub mod scripted;
pub mod wire;

use client::Response;
use gateway::Gateway;
use mock::Mock;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// The account's upstream key; masked as `sk-te…cdef`.
pub const API_KEY: &str = "sk-test-0123456789abcdef";

/// A data dir with one account on a fresh mock, and a gateway serving it.
pub struct Setup {
    pub gw: Gateway,
    pub account: String,
    pub mock: Mock,
    pub dir: TempDir,
}

pub fn setup(env: &[(&str, &str)]) -> Setup {
    setup_kind("iflow", env)
}

pub fn setup_kind(kind: &str, env: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let mock = Mock::start();
    let account = gateway::import(dir.path(), API_KEY, &mock.base_url(), kind);
    let gw = Gateway::start(dir.path(), env);
    Setup {
        gw,
        account,
        mock,
        dir,
    }
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A one-message chat request.
pub fn user_body(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

/// The same, with `"stream": true`.
pub fn stream_body(model: &str, content: &str) -> Value {
    let mut b = user_body(model, content);
    b["stream"] = json!(true);
    b
}

/// Asserts the OpenAI error shape: exactly `{"error":{"message","type","code"}}`.
pub fn assert_error(resp: &Response, status: u16, kind: &str, code: &str) {
    assert_eq!(resp.status, status, "status; body: {}", resp.text());
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type {:?}",
        resp.header("content-type")
    );
    assert_error_body(&resp.json(), kind, code);
}

/// Asserts an error object (a body or an SSE event) has the OpenAI shape.
pub fn assert_error_body(body: &Value, kind: &str, code: &str) {
    let keys: Vec<&String> = body
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["error"], "{body}");
    let e = &body["error"];
    let mut fields: Vec<&String> = e
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    fields.sort();
    assert_eq!(fields, ["code", "message", "type"], "{body}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some(kind), Some(code)),
        "{body}"
    );
}

/// The SSE events of a body, each without its `data: ` prefix; comments kept as is.
pub fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or(e).to_string())
        .collect()
}

/// Every file under `dir` with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).expect("read file"));
            }
        }
    }
    out
}

/// The account file as JSON.
pub fn account_file(data_dir: &Path, uuid: &str) -> Value {
    let path = data_dir.join("accounts").join(format!("{uuid}.json"));
    serde_json::from_slice(&std::fs::read(path).expect("account file")).expect("account JSON")
}
