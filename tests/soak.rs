//! Soak and fault test (docs/benchmarks.md#soak-and-faults): mixed traffic
//! for `SOAK_SECONDS` (default 20) against one gateway with three accounts,
//! each on its own mock upstream: the pool key and pinned accounts, OpenAI
//! and Anthropic, stream and not, with upstream faults (429, 500, iFlow
//! error bodies, connection resets, stalls, mid-stream disconnects, slow
//! streams) and misbehaving clients (ones that leave mid-stream, ones that
//! stop reading). Every reply it reads must be well-formed.
//!
//! After a warm-up of the same mix and a settle, the gateway's open file
//! descriptors and RSS are the baseline; after the soak and a settle they
//! must be back near it, no account may have a call in flight, the log may
//! hold no panic, and a normal request must still be served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{self, Response, connect};
use common::pool::{Pool, pool, wait_until};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 3;
const CONCURRENCY: usize = 4;
const WORKERS: usize = 6;
const GATEWAY_WORKERS: usize = 2;
const WARMUP: Duration = Duration::from_secs(3);
/// How long a client that stopped reading keeps its connection open; more
/// than the client stall timeout, so the gateway is the one to give up.
const STALLED_CLIENT: Duration = Duration::from_millis(2500);
const ENV: &[(&str, &str)] = &[
    ("IFLOW_METRICS_PUBLIC", "true"),
    ("IFLOW_CONCURRENCY", "4"),
    ("IFLOW_QUEUE_TIMEOUT", "5s"),
    ("IFLOW_UPSTREAM_TIMEOUT", "2s"),
    ("IFLOW_STREAM_IDLE_TIMEOUT", "2s"),
    ("IFLOW_CLIENT_STALL_TIMEOUT", "2s"),
    ("IFLOW_SSE_KEEPALIVE", "500ms"),
    ("IFLOW_COOLDOWN_BASE", "100ms"),
    ("IFLOW_COOLDOWN_MAX", "300ms"),
    ("IFLOW_USAGE_FLUSH_INTERVAL", "200ms"),
];

/// Upstream faults, by the mock's scenario names (not `biz:434`: a refused
/// key takes its account out of the pool until the key changes).
const FAULTS: &[&str] = &[
    "status:429:1",
    "status:500",
    "status:503",
    "biz:449",
    "biz:8211",
    "stream_biz:514",
    "reset",
    "stream_reset",
    "stream_disconnect",
    "stall_body:500",
    "never",
    "stream_slow:400",
    "slow_complete:300",
    "not_json",
    "stream_endless",
    "stream_json",
    "no_choices",
];

fn soak_seconds() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Outcome counts, by kind of request and answer.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, what: String) {
        *self.0.lock().unwrap().entry(what).or_insert(0) += 1;
    }

    fn total(&self) -> u64 {
        self.0.lock().unwrap().values().sum()
    }
}

/// What a request is for: the pool key or a pinned account.
fn token(p: &Pool, rng: &mut fastrand::Rng) -> String {
    match rng.u8(..3) {
        0 => p.accounts[rng.usize(..p.accounts.len())].clone(),
        _ => p.key.clone(),
    }
}

/// A normal request or a fault, OpenAI or Anthropic, stream or not; checks
/// the reply is well-formed whatever its status. Most faults go to a pinned
/// account: through the pool key a fault is retried on every account and
/// cools them all, which would leave little but `pool_cooling_down`.
fn one_request(p: &Pool, rng: &mut fastrand::Rng, tally: &Tally) {
    let addr = p.gw.addr;
    let fault = rng.u8(..10) >= 8;
    let stream = rng.bool();
    // The scripted streams answer stream requests only; whole requests get
    // the completion, the tool call or a reasoning-only reply.
    let normal = if stream {
        ["hi", "scenario:stream_think", "scenario:stream_tools2"]
    } else {
        ["hi", "scenario:tools", "scenario:reasoning_only"]
    };
    let content = if fault {
        format!("scenario:{}", FAULTS[rng.usize(..FAULTS.len())])
    } else {
        normal[rng.usize(..3)].to_string()
    };
    let token = if fault && rng.u8(..4) > 0 {
        p.accounts[rng.usize(..p.accounts.len())].clone()
    } else {
        token(p, rng)
    };
    let token = token.as_str();
    let anthropic = rng.u8(..3) == 0;
    let resp = if anthropic {
        let mut body = common::anthropic::user_msg(&content);
        body["stream"] = json!(stream);
        common::anthropic::messages(addr, token, &body)
    } else {
        let mut body = common::user_body("glm-5", &content);
        body["stream"] = json!(stream);
        client::chat(addr, token, &body)
    };
    check_reply(&resp, anthropic, stream);
    let api = if anthropic { "anthropic" } else { "openai" };
    let mode = if stream { "stream" } else { "whole" };
    let why = match resp.status {
        200 => String::new(),
        _ if anthropic => format!(" {}", resp.json()["error"]["type"].as_str().unwrap_or("?")),
        _ => format!(" {}", resp.json()["error"]["code"].as_str().unwrap_or("?")),
    };
    tally.add(format!("{api} {mode} {}{why}", resp.status));
}

fn check_reply(resp: &Response, anthropic: bool, stream: bool) {
    let ctype = resp.header("content-type").unwrap_or_default();
    if resp.status == 200 && stream {
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        let text = resp.text();
        if anthropic {
            let events = common::anthropic::events(&text);
            let last = events.last().map(|(n, _)| n.as_str());
            assert!(
                matches!(last, Some("message_stop" | "error")),
                "stream ended with {last:?}: {text}"
            );
        } else {
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
            for e in common::sse_events(&text) {
                if e != "[DONE]" && !e.starts_with(':') {
                    let _: Value = serde_json::from_str(&e)
                        .unwrap_or_else(|err| panic!("event not JSON ({err}): {e}"));
                }
            }
        }
        return;
    }
    let body = resp.json();
    if resp.status == 200 {
        let field = if anthropic { "content" } else { "choices" };
        assert!(body.get(field).is_some(), "{body}");
    } else if anthropic {
        assert_eq!(body["type"], "error", "{body}");
    } else {
        assert!(body["error"]["code"].is_string(), "{body}");
    }
}

/// A stream the client leaves after its first event.
fn leave_mid_stream(addr: SocketAddr, token: &str, tally: &Tally) {
    let body = common::stream_body("glm-5", "scenario:stream_slow:400");
    let mut s = client::open_stream(addr, token, &body);
    let got = s.read_until(Duration::from_secs(5), |t| t.contains("\n\n"));
    s.abandon();
    tally.add(format!(
        "left mid-stream {}",
        if got { "ok" } else { "early" }
    ));
}

/// A stream the client stops reading: it sends the request, never reads,
/// and closes the connection only after the gateway's idle timeout.
fn stop_reading(addr: SocketAddr, token: &str, tally: &Tally) {
    let raw = common::client::chat_request(
        token,
        &common::stream_body("glm-5", "scenario:stream_flood"),
    );
    let mut s = connect(addr);
    s.write_all(&raw).unwrap();
    std::thread::sleep(STALLED_CLIENT);
    drop(s);
    tally.add("stopped reading".into());
}

/// Cheap requests that take no account slot.
fn side_request(addr: SocketAddr, token: &str, rng: &mut fastrand::Rng, tally: &Tally) {
    let resp = match rng.u8(..3) {
        0 => client::get(addr, "/health", None),
        1 => client::get(addr, "/v1/models", Some(token)),
        _ => common::anthropic::post_raw(
            addr,
            "/v1/messages/count_tokens",
            token,
            common::anthropic::user_msg("count me")
                .to_string()
                .as_bytes(),
        ),
    };
    assert_eq!(resp.status, 200, "{}", resp.text());
    tally.add("side 200".into());
}

/// Runs the mix on `WORKERS` threads until `until`.
fn traffic(p: &Arc<Pool>, until: Instant, seed: u64, tally: &Arc<Tally>) {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (p, tally, stop) = (p.clone(), tally.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed + w as u64);
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    let token = token(&p, &mut rng);
                    match rng.u8(..20) {
                        0..=14 => one_request(&p, &mut rng, &tally),
                        15 | 16 => leave_mid_stream(p.gw.addr, &token, &tally),
                        17 if w == 0 => stop_reading(p.gw.addr, &token, &tally),
                        _ => side_request(p.gw.addr, &token, &mut rng, &tally),
                    }
                }
            })
        })
        .collect();
    let mut failure = None;
    for w in workers {
        if let Err(e) = w.join() {
            stop.store(true, Ordering::Relaxed);
            failure.get_or_insert(e);
        }
    }
    if let Some(e) = failure {
        std::panic::resume_unwind(e);
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// `iflow_account_in_flight` of every account, and `/health`'s total.
fn in_flight(addr: SocketAddr) -> (Vec<f64>, u64) {
    let text = client::get(addr, "/metrics", None).text();
    let metrics = common::prometheus::parse(&text).unwrap();
    let per_account = metrics
        .series("iflow_account_in_flight")
        .iter()
        .map(|s| s.value)
        .collect();
    let health = client::get(addr, "/health", None).json()["in_flight"]
        .as_u64()
        .unwrap();
    (per_account, health)
}

fn idle(addr: SocketAddr) -> bool {
    let (per_account, health) = in_flight(addr);
    per_account.len() == ACCOUNTS && per_account.iter().all(|v| *v == 0.0) && health == 0
}

/// Waits for every call to end, then a little more for sockets to close.
fn settle(p: &Pool) -> Duration {
    let start = Instant::now();
    let quiet = wait_until(Duration::from_secs(20), || {
        idle(p.gw.addr) && p.mocks.iter().all(|m| m.in_flight() == 0)
    });
    assert!(quiet, "calls still in flight: {:?}", in_flight(p.gw.addr));
    std::thread::sleep(Duration::from_secs(1));
    start.elapsed()
}

#[test]
fn mixed_traffic_with_faults_leaves_no_leak() {
    let p = Arc::new(pool(ACCOUNTS, ENV));
    let pid = p.gw.pid();
    let seed = 0x50ac;
    let tally = Arc::new(Tally::default());

    traffic(&p, Instant::now() + WARMUP, seed, &tally);
    settle(&p);
    let (fds0, rss0) = (open_fds(pid), rss_kib(pid));
    let warmup_requests = tally.total();

    let soak = Duration::from_secs(soak_seconds());
    let started = Instant::now();
    traffic(&p, started + soak, seed + 1000, &tally);
    let ran = started.elapsed();
    let (fds_peak, rss_peak) = (open_fds(pid), rss_kib(pid));
    let settled = settle(&p);
    let (fds1, rss1) = (open_fds(pid), rss_kib(pid));

    let log = p.gw.log();
    assert!(!log.contains("panicked"), "{log}");
    let (per_account, health) = in_flight(p.gw.addr);
    assert!(per_account.iter().all(|v| *v == 0.0), "{per_account:?}");
    assert_eq!(health, 0);

    // Still serves: OpenAI through the pool, Anthropic streamed on an account.
    let ok = wait_until(Duration::from_secs(5), || p.chat("hi").status == 200);
    assert!(ok, "{}", p.chat("hi").text());
    let streamed = common::anthropic::messages(
        p.gw.addr,
        &p.accounts[0],
        &common::anthropic::stream_msg("hi"),
    );
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    check_reply(&streamed, true, true);

    let counts = tally.0.lock().unwrap().clone();
    let upstream: usize = p.total();
    eprintln!(
        "soak: {:.1?} of traffic (+{WARMUP:?} warm-up, {warmup_requests} requests), {} \
         requests, {upstream} upstream calls, settle {settled:.1?}\n\
         soak: fds {fds0} baseline, {fds_peak} at the end of traffic, {fds1} settled\n\
         soak: RSS {rss0} KiB baseline, {rss_peak} KiB at the end of traffic, {rss1} KiB settled\n\
         soak: outcomes {counts:#?}",
        ran,
        tally.total() - warmup_requests,
    );

    // Idle keep-alive connections to the upstreams may differ between the
    // two moments: each gateway worker keeps its own pool, up to the
    // per-account concurrency per upstream.
    let fd_slack = ACCOUNTS * CONCURRENCY * GATEWAY_WORKERS;
    assert!(
        fds1 <= fds0 + fd_slack,
        "open fds grew from {fds0} to {fds1} (slack {fd_slack})"
    );
    // The allocator keeps some freed memory (measured: +1.5 to +1.7 MiB after
    // 20 s and after 120 s alike). A leak of 4 KiB per request exceeds this
    // in the 20 s run (about 2,000 requests), of 1 KiB in the 120 s run.
    let rss_slack = (rss0 / 4).max(8 * 1024);
    assert!(
        rss1 <= rss0 + rss_slack,
        "RSS grew from {rss0} KiB to {rss1} KiB (slack {rss_slack} KiB)"
    );
}
