//! The mock iFlow upstream: a blocking HTTP/1.1 server on 127.0.0.1:0, one
//! thread per connection, so byte-level faults (a body cut mid-chunk, a reply
//! that never comes) are easy to produce. It records every request and the
//! number of requests in flight, and answers by scenario (see `scenarios`).

use super::scenarios::{reject, respond, scenario_of};
use super::wire::Conn;
use serde_json::Value;
use std::io::{ErrorKind, Read};
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
    /// Answers every request with this scenario, whatever the message says.
    forced: Option<String>,
    /// TCP connections accepted from the gateway.
    connections: usize,
}

#[derive(Default)]
pub(super) struct Shared {
    inner: Mutex<Inner>,
    cond: Condvar,
    stop: AtomicBool,
}

impl Shared {
    pub(super) fn count_early_close(&self) {
        self.update(|i| i.early_closes += 1);
    }

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

    /// TCP connections the gateway opened to the mock so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    pub fn early_closes(&self) -> usize {
        self.shared.lock().early_closes
    }

    /// From now on answers every request with `scenario` (`status:429:30`,
    /// `biz:434`…), whatever its messages say: one account's upstream failing
    /// while the others work.
    pub fn force(&self, scenario: &str) {
        self.shared
            .update(|i| i.forced = Some(scenario.to_string()));
    }

    /// Back to choosing the scenario from the request.
    pub fn unforce(&self) {
        self.shared.update(|i| i.forced = None);
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

/// Decrements the in-flight count once: when the scenario says its work is
/// done (before the reply's last byte, so a gateway that sends its next
/// request the moment it has the reply is never counted twice), or however
/// the answer ends.
pub(super) struct InFlight<'a> {
    shared: &'a Shared,
    done: std::cell::Cell<bool>,
}

impl InFlight<'_> {
    pub(super) fn finish(&self) {
        if !self.done.replace(true) {
            self.shared.update(|i| i.in_flight -= 1);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    shared.update(|i| i.connections += 1);
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
        let forced = shared.lock().forced.clone();
        let scenario = forced.unwrap_or_else(|| scenario_of(&body));
        let recorded = Recorded {
            method,
            path,
            headers: head.headers.clone(),
            raw_body,
            body: body.clone(),
            scenario: scenario.clone(),
        };
        // Like the real upstream, refuse a request whose iFlow headers or
        // signature are wrong, so every test through this mock checks them.
        let problems = signing_problems(&recorded);
        shared.update(|i| {
            i.requests.push(recorded);
            i.in_flight += 1;
            i.max_in_flight = i.max_in_flight.max(i.in_flight);
        });
        if !problems.is_empty() {
            let _flight = InFlight {
                shared,
                done: std::cell::Cell::new(false),
            };
            reject(
                &mut conn.stream,
                &format!("bad iFlow headers: {problems:?}"),
            );
            return;
        }
        let flight = InFlight {
            shared,
            done: std::cell::Cell::new(false),
        };
        if !respond(&mut conn, shared, &flight, &scenario, &body) {
            return;
        }
    }
}

/// Headers only the iFlow profile sends: a request with any of them is
/// checked as an iFlow request (an `openai` account's request has none).
const IFLOW_ONLY: &[&str] = &[
    "session-id",
    "conversation-id",
    "x-iflow-signature",
    "x-iflow-timestamp",
    "traceparent",
];

fn signing_problems(req: &Recorded) -> Vec<String> {
    let iflow = req
        .headers
        .iter()
        .any(|(n, _)| IFLOW_ONLY.contains(&n.as_str()))
        || req.header("user-agent") == Some("iFlow-Cli");
    if !iflow {
        return Vec::new();
    }
    let key = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default();
    super::iflow::header_problems(req, key)
}

pub(super) enum Held {
    Released,
    Gone,
}

/// Waits until the test releases held requests, or the gateway closes the
/// connection (counted as an early close), or 12 s pass.
pub(super) fn hold(conn: &mut Conn, shared: &Shared) -> Held {
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
                shared.count_early_close();
                break Held::Gone;
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                shared.count_early_close();
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
