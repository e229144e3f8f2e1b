//! The mock iFlow upstream: a blocking HTTP/1.1 server on 127.0.0.1:0, one
//! thread per connection, so byte-level faults (a body cut mid-chunk, a reply
//! that never comes) are easy to produce. It records every request and the
//! number of requests in flight, and answers by scenario: the last user
//! message's content starts with `scenario:NAME[:ARG]`; without one, a
//! stream request gets the full stream script and any other a completion.

use super::fixtures::{self, biz_error};
use super::wire::{Conn, write_chunk};
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lowercased names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub raw_body: Vec<u8>,
    /// `Null` when the body is not JSON.
    pub body: Value,
    pub scenario: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    in_flight: usize,
    max_in_flight: usize,
    /// Connections the gateway closed while the mock was still answering.
    early_closes: usize,
    release_all: bool,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    cond: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.lock());
        self.cond.notify_all();
    }
}

pub struct Mock {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Mock {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock");
        let addr = listener.local_addr().expect("mock addr");
        let shared = Arc::new(Shared::default());
        let accept_shared = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accept_shared.clone();
                std::thread::spawn(move || serve_connection(stream, &shared));
            }
        });
        Self { addr, shared }
    }

    /// The base URL to import an account with.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    pub fn last_request(&self) -> Recorded {
        self.requests().pop().expect("the mock received no request")
    }

    pub fn max_in_flight(&self) -> usize {
        self.shared.lock().max_in_flight
    }

    pub fn in_flight(&self) -> usize {
        self.shared.lock().in_flight
    }

    pub fn early_closes(&self) -> usize {
        self.shared.lock().early_closes
    }

    /// Lets every held request (`hold`, `stream_hold`) finish, now and later.
    pub fn release_all(&self) {
        self.shared.update(|i| i.release_all = true);
    }

    fn wait(&self, timeout: Duration, pred: impl Fn(&Inner) -> bool) -> bool {
        let guard = self.shared.lock();
        let (_guard, res) = self
            .shared
            .cond
            .wait_timeout_while(guard, timeout, |i| !pred(i))
            .unwrap_or_else(|e| e.into_inner());
        !res.timed_out()
    }

    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |i| i.requests.len() >= n)
    }

    pub fn wait_in_flight(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |i| i.in_flight >= n)
    }

    pub fn wait_early_closes(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |i| i.early_closes >= n)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.release_all();
        let _ = TcpStream::connect(self.addr);
    }
}

/// Decrements the in-flight count however the answer ends.
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.update(|i| i.in_flight -= 1);
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut conn = Conn::new(stream);
    while let Ok(Some(head)) = conn.read_head() {
        let Ok(raw_body) = conn.read_body(&head, false) else {
            return;
        };
        let mut start = head.start.split_whitespace();
        let method = start.next().unwrap_or_default().to_string();
        let path = start.next().unwrap_or_default().to_string();
        let body: Value = serde_json::from_slice(&raw_body).unwrap_or(Value::Null);
        let scenario = scenario_of(&body);
        shared.update(|i| {
            i.requests.push(Recorded {
                method,
                path,
                headers: head.headers.clone(),
                raw_body,
                body: body.clone(),
                scenario: scenario.clone(),
            });
            i.in_flight += 1;
            i.max_in_flight = i.max_in_flight.max(i.in_flight);
        });
        let _guard = InFlight(shared);
        if !respond(&mut conn, shared, &scenario, &body) {
            return;
        }
    }
}

/// `scenario:NAME[:ARG]` at the start of the last user message, else the default.
fn scenario_of(body: &Value) -> String {
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"));
    let text = last_user.and_then(|m| match &m["content"] {
        Value::String(s) => Some(s.as_str()),
        Value::Array(parts) => parts.iter().find_map(|p| p["text"].as_str()),
        _ => None,
    });
    if let Some(rest) = text.and_then(|t| t.strip_prefix("scenario:")) {
        return rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
    }
    if body["stream"] == true {
        "stream"
    } else {
        "complete"
    }
    .to_string()
}

/// Answers one request; `false` when the connection must not be reused.
fn respond(conn: &mut Conn, shared: &Shared, scenario: &str, body: &Value) -> bool {
    let model = body["model"].as_str().unwrap_or("m").to_string();
    let (name, arg) = scenario.split_once(':').unwrap_or((scenario, ""));
    let complete = fixtures::completion(&model, true).to_string();
    let s = &mut conn.stream;
    let ok = match name {
        "complete" => reply(s, 200, "application/json", &[], complete.as_bytes()),
        "complete_no_usage" => {
            let b = fixtures::completion(&model, false).to_string();
            reply(s, 200, "application/json", &[], b.as_bytes())
        }
        "reasoning_only" => {
            let b = fixtures::reasoning_only_completion().to_string();
            reply(s, 200, "application/json", &[], b.as_bytes())
        }
        "big_complete" => {
            let mut b = fixtures::completion(&model, true);
            b["choices"][0]["message"]["content"] = json!("z".repeat(3 << 20));
            reply(s, 200, "application/json", &[], b.to_string().as_bytes())
        }
        "slow_complete" => {
            std::thread::sleep(Duration::from_millis(arg.parse().unwrap_or(150)));
            reply(s, 200, "application/json", &[], complete.as_bytes())
        }
        "gzip" => {
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            let _ = e.write_all(complete.as_bytes());
            let gz = e.finish().unwrap_or_default();
            reply(
                s,
                200,
                "application/json",
                &[("content-encoding", "gzip")],
                &gz,
            )
        }
        "deflate" => {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
            let _ = e.write_all(complete.as_bytes());
            let z = e.finish().unwrap_or_default();
            reply(
                s,
                200,
                "application/json",
                &[("content-encoding", "deflate")],
                &z,
            )
        }
        "status" => {
            let code: u16 = arg.parse().unwrap_or(500);
            let b =
                json!({"error": {"message": format!("mock status {code}"), "type": "mock_error"}});
            let extra: &[(&str, &str)] = if code == 429 {
                &[("retry-after", "17")]
            } else {
                &[]
            };
            reply(s, code, "application/json", extra, b.to_string().as_bytes())
        }
        "biz" | "biz_text" => {
            let payload = biz_error(arg).map_or("{}", |b| b.body);
            let ctype = if name == "biz" {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            reply(s, 200, ctype, &[], payload.as_bytes())
        }
        "not_json" => reply(s, 200, "application/json", &[], b"<html>oops</html>"),
        "no_choices" => {
            let b = json!({"id": "chatcmpl-empty", "object": "chat.completion", "choices": []});
            reply(s, 200, "application/json", &[], b.to_string().as_bytes())
        }
        "stream_json" => reply(s, 200, "application/json", &[], complete.as_bytes()),
        "stream" => stream_head(s, &[]) && stream_pieces(s, fixtures::upstream_sse().as_bytes()),
        "stream_gzip" => {
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            let _ = e.write_all(fixtures::upstream_sse().as_bytes());
            let gz = e.finish().unwrap_or_default();
            stream_head(s, &[("content-encoding", "gzip")]) && stream_pieces(s, &gz)
        }
        "stream_biz" => {
            let payload = biz_error(arg).map_or("{}", |b| b.body);
            let text = format!(
                "data: {}\n\ndata: {payload}\n\ndata: {}\n\ndata: [DONE]\n\n",
                fixtures::STREAM_EVENTS[2],
                fixtures::STREAM_EVENTS[3]
            );
            stream_head(s, &[]) && stream_pieces(s, text.as_bytes())
        }
        "stream_endless" => {
            let line = format!("data: {{\"content\":\"{}", "x".repeat(8192));
            stream_head(s, &[]) && stream_pieces(s, line.as_bytes())
        }
        "stream_slow" => {
            let silence = Duration::from_millis(arg.parse().unwrap_or(1500));
            let first = format!("data: {}\n\n", fixtures::STREAM_EVENTS[0]);
            let sse = fixtures::upstream_sse();
            let ok = stream_head(s, &[]) && write_chunk(s, first.as_bytes()).is_ok();
            std::thread::sleep(silence);
            ok && stream_pieces(s, &sse.as_bytes()[first.len()..])
        }
        "stream_disconnect" => {
            let text = format!(
                "data: {}\n\ndata: {}\n\n",
                fixtures::STREAM_EVENTS[2],
                fixtures::STREAM_EVENTS[3]
            );
            let _ = stream_head(s, &[]) && write_chunk(s, text.as_bytes()).is_ok();
            return false;
        }
        "hold" => match hold(conn, shared) {
            Held::Released => reply(
                &mut conn.stream,
                200,
                "application/json",
                &[],
                complete.as_bytes(),
            ),
            Held::Gone => false,
        },
        "stream_hold" => {
            let first = format!("data: {}\n\n", fixtures::STREAM_EVENTS[2]);
            if !(stream_head(s, &[]) && write_chunk(s, first.as_bytes()).is_ok()) {
                shared.update(|i| i.early_closes += 1);
                return false;
            }
            match hold(conn, shared) {
                Held::Released => stream_pieces(&mut conn.stream, b"data: [DONE]\n\n"),
                Held::Gone => return false,
            }
        }
        "never" => {
            let _ = hold(conn, shared);
            false
        }
        other => reply(
            s,
            500,
            "text/plain",
            &[],
            format!("unknown scenario {other}").as_bytes(),
        ),
    };
    if !ok && name.starts_with("stream") {
        shared.update(|i| i.early_closes += 1);
    }
    ok
}

fn reply(s: &mut TcpStream, status: u16, ctype: &str, extra: &[(&str, &str)], body: &[u8]) -> bool {
    let mut head = format!(
        "HTTP/1.1 {status} Mock\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .and_then(|()| s.flush())
        .is_ok()
}

fn stream_head(s: &mut TcpStream, extra: &[(&str, &str)]) -> bool {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n",
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).is_ok()
}

/// Sends `data` as many small chunks (splitting events and even UTF-8
/// characters between reads), then the terminating chunk.
fn stream_pieces(s: &mut TcpStream, data: &[u8]) -> bool {
    for piece in data.chunks(48) {
        if write_chunk(s, piece).is_err() {
            return false;
        }
    }
    s.write_all(b"0\r\n\r\n").and_then(|()| s.flush()).is_ok()
}

enum Held {
    Released,
    Gone,
}

/// Waits until the test releases held requests, or the gateway closes the
/// connection (counted as an early close), or 12 s pass.
fn hold(conn: &mut Conn, shared: &Shared) -> Held {
    let _ = conn
        .stream
        .set_read_timeout(Some(Duration::from_millis(25)));
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut buf = [0u8; 1024];
    let outcome = loop {
        if shared.lock().release_all {
            break Held::Released;
        }
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                shared.update(|i| i.early_closes += 1);
                break Held::Gone;
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                shared.update(|i| i.early_closes += 1);
                break Held::Gone;
            }
        }
        if Instant::now() > deadline {
            break Held::Gone;
        }
    };
    let _ = conn.stream.set_read_timeout(Some(Duration::from_secs(20)));
    outcome
}
