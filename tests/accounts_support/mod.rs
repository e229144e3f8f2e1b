//! Shared helpers of the account-management integration tests: mock OAuth and
//! upstream servers (actix-web on 127.0.0.1:0, each in its own thread and
//! actix system), a raw HTTP/1.1 client, and helpers that run the real binary
//! against temporary data, home and working directories.
//!
//! Every test file uses a different subset, hence the `dead_code` and
//! `unused_imports` allowances.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod http;
pub mod oauth_mock;
pub mod process;
pub mod upstream_mock;

pub use http::{HttpReply, chat, chat_stream, http_get};
pub use oauth_mock::{OAuthMock, TokenReply};
pub use process::{Ran, Running, Server, TestEnv};
pub use upstream_mock::{UpstreamMock, UpstreamReply};

use std::fmt::Debug;
use std::net::TcpListener;
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Requests a mock received, with a condition variable so a test can wait
/// for an event instead of sleeping.
pub struct Journal<T> {
    items: Mutex<Vec<T>>,
    changed: Condvar,
}

impl<T: Clone + Debug> Default for Journal<T> {
    fn default() -> Self {
        Self {
            items: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        }
    }
}

impl<T: Clone + Debug> Journal<T> {
    pub fn push(&self, item: T) {
        self.items.lock().unwrap().push(item);
        self.changed.notify_all();
    }

    pub fn all(&self) -> Vec<T> {
        self.items.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the items; panics naming `what` after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&[T]) -> bool) -> Vec<T> {
        let deadline = Instant::now() + timeout;
        let mut items = self.items.lock().unwrap();
        loop {
            if done(&items) {
                return items.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; got {items:#?}"
            );
            items = self.changed.wait_timeout(items, left).unwrap().0;
        }
    }
}

/// An actix-web server on 127.0.0.1:0 in its own thread; stopped on drop.
pub struct MockServer {
    pub port: u16,
    handle: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl MockServer {
    pub fn start<F>(configure: F) -> Self
    where
        F: Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = actix_web::HttpServer::new(move || {
                    actix_web::App::new().configure(configure.clone())
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(listener)
                .unwrap()
                .run();
                tx.send(server.handle()).unwrap();
                server.await.unwrap();
            });
        });
        let handle = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self {
            port,
            handle,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every file and folder under `root` (relative path → content; folders map
/// to `None`), to prove that a failed command wrote nothing.
pub fn snapshot(root: &std::path::Path) -> std::collections::BTreeMap<String, Option<Vec<u8>>> {
    let mut found = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                found.insert(name, None);
                stack.push(path);
            } else {
                found.insert(name, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

/// Fails when any of `secrets` shows up in the output of a command.
pub fn assert_no_secret(ran: &Ran, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !ran.stdout.contains(secret) && !ran.stderr.contains(secret),
            "secret {secret:?} leaked in {ran:#?}"
        );
    }
}

/// An account file as the gateway writes it. `expires_in` (from now) makes it
/// an `oauth-iflow` account with tokens `at-<tag>` / `rt-<tag>`.
pub fn account_file(
    key: &str,
    base_url: &str,
    oauth: Option<(&str, chrono::Duration)>,
) -> serde_json::Value {
    let now = chrono::Utc::now();
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let mut a = serde_json::json!({
        "uuid": uuid::Uuid::new_v4().to_string(),
        "api_key": key,
        "base_url": base_url,
        "auth_type": "iflow",
        "oauth_expires_at": "0001-01-01T00:00:00Z",
        "created_at": rfc(now),
        "updated_at": rfc(now),
        "last_used_at": "0001-01-01T00:00:00Z",
        "request_count": 0,
    });
    if let Some((tag, expires_in)) = oauth {
        a["auth_type"] = "oauth-iflow".into();
        a["oauth_access_token"] = format!("at-{tag}").into();
        a["oauth_refresh_token"] = format!("rt-{tag}").into();
        a["oauth_expires_at"] = rfc(now + expires_in).into();
    }
    a
}

pub fn uuid_of(account: &serde_json::Value) -> String {
    account["uuid"].as_str().unwrap().to_string()
}
