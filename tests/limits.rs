//! Per-account admission: the concurrency cap at the upstream, the bounded
//! wait queue (429 + Retry-After when full or too slow), and slots freed by
//! clients that leave a stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{Response, chat, connect, get, open_stream};
use common::fixtures::STREAM_EVENTS;
use common::gateway::import;
use common::{API_KEY, Setup, assert_error, iflow, secs, setup, stream_body, user_body};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn spawn_chat(addr: SocketAddr, account: &str, content: &str) -> JoinHandle<Response> {
    let (account, body) = (account.to_string(), user_body("glm-5", content));
    std::thread::spawn(move || chat(addr, &account, &body))
}

/// The only slot is free again within `within` (the next request is served
/// at once), and the upstream call that held it was closed.
fn assert_slot_freed_and_upstream_closed(s: &Setup, within: Duration, still_open: &str) {
    let started = Instant::now();
    let next = chat(s.gw.addr, &s.account, &user_body("glm-5", "hi"));
    assert_eq!(next.status, 200, "{}", next.text());
    assert!(
        started.elapsed() < within,
        "slot freed only after {:?}",
        started.elapsed()
    );
    assert!(s.mock.wait_early_closes(1, secs(5)), "{still_open}");
}

fn retry_after_secs(resp: &Response) -> u64 {
    let v = resp.header("retry-after").expect("Retry-After header");
    v.parse()
        .unwrap_or_else(|_| panic!("Retry-After {v:?} is not whole seconds"))
}

#[test]
fn ten_concurrent_requests_never_exceed_the_cap_of_two_and_all_succeed() {
    let s = setup(&[("IFLOW_CONCURRENCY", "2")]);
    let calls: Vec<_> = (0..10)
        .map(|_| spawn_chat(s.gw.addr, &s.account, "scenario:slow_complete:150"))
        .collect();
    for call in calls {
        let resp = call.join().unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert_eq!(s.mock.requests().len(), 10);
    assert_eq!(
        s.mock.max_in_flight(),
        2,
        "the cap must be reached and never exceeded"
    );
}

#[test]
fn request_beyond_the_full_queue_gets_429_with_retry_after() {
    let s = setup(&[("IFLOW_CONCURRENCY", "1"), ("IFLOW_QUEUE_SIZE", "1")]);
    let held = spawn_chat(s.gw.addr, &s.account, "scenario:hold");
    assert!(
        s.mock.wait_in_flight(1, secs(10)),
        "held request never reached the mock"
    );
    assert_eq!(get(s.gw.addr, "/health", None).json()["in_flight"], 1);

    // Two more: one takes the only queue place, the other must be refused.
    let (tx, rx) = mpsc::channel();
    for _ in 0..2 {
        let (tx, addr, account) = (tx.clone(), s.gw.addr, s.account.clone());
        std::thread::spawn(move || {
            let _ = tx.send(chat(addr, &account, &user_body("glm-5", "hi")));
        });
    }
    let refused = rx
        .recv_timeout(secs(10))
        .expect("one request must be refused at once");
    assert_error(&refused, 429, "rate_limit_error", "account_queue_full");
    assert!(retry_after_secs(&refused) >= 1);

    let released_at = chrono::Utc::now().timestamp_millis();
    s.mock.release_all();
    assert_eq!(held.join().unwrap().status, 200);
    let queued = rx
        .recv_timeout(secs(10))
        .expect("queued request must be served");
    assert_eq!(queued.status, 200, "{}", queued.text());
    let reqs = s.mock.requests();
    assert_eq!(reqs.len(), 2);
    // Signed after its wait, not when it joined the queue.
    iflow::assert_signed(&reqs[1], API_KEY);
    let ts: i64 = reqs[1]
        .header("x-iflow-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ts >= released_at,
        "timestamp {ts} predates the slot ({released_at})"
    );
}

#[test]
fn waiting_longer_than_the_queue_timeout_gets_429_with_retry_after() {
    let s = setup(&[("IFLOW_CONCURRENCY", "1"), ("IFLOW_QUEUE_TIMEOUT", "500ms")]);
    let held = spawn_chat(s.gw.addr, &s.account, "scenario:hold");
    assert!(s.mock.wait_in_flight(1, secs(10)));

    let started = Instant::now();
    let resp = chat(s.gw.addr, &s.account, &user_body("glm-5", "hi"));
    let waited = started.elapsed();
    assert_error(&resp, 429, "rate_limit_error", "account_queue_timeout");
    assert!(retry_after_secs(&resp) >= 1);
    assert!(
        waited >= Duration::from_millis(450) && waited < secs(5),
        "{waited:?}"
    );

    s.mock.release_all();
    assert_eq!(held.join().unwrap().status, 200);
    assert_eq!(
        s.mock.requests().len(),
        1,
        "the timed-out request must not reach upstream"
    );
}

#[test]
fn client_leaving_a_stream_frees_the_slot_and_closes_the_upstream_connection() {
    let s = setup(&[
        ("IFLOW_CONCURRENCY", "1"),
        // Far longer than the test: leaving must be noticed without a write.
        ("IFLOW_SSE_KEEPALIVE", "60s"),
        ("IFLOW_QUEUE_TIMEOUT", "8s"),
    ]);
    let mut stream = open_stream(
        s.gw.addr,
        &s.account,
        &stream_body("glm-5", "scenario:stream_hold"),
    );
    assert_eq!(stream.status, 200);
    assert!(stream.read_until(secs(5), |t| t.contains(STREAM_EVENTS[2])));
    stream.abandon();

    assert_slot_freed_and_upstream_closed(
        &s,
        secs(4),
        "the abandoned stream's upstream connection is still open",
    );
}

#[test]
fn client_leaving_before_a_non_stream_answer_frees_the_slot_and_cancels_upstream() {
    let s = setup(&[("IFLOW_CONCURRENCY", "1"), ("IFLOW_QUEUE_TIMEOUT", "8s")]);
    let raw = common::client::chat_request(&s.account, &user_body("glm-5", "scenario:hold"));
    let mut gone = connect(s.gw.addr);
    gone.write_all(&raw).unwrap();
    assert!(s.mock.wait_in_flight(1, secs(10)));
    let _ = gone.shutdown(std::net::Shutdown::Both);
    drop(gone);

    // The held upstream call would keep the only slot for 12 s.
    assert_slot_freed_and_upstream_closed(
        &s,
        secs(4),
        "the abandoned request's upstream connection is still open",
    );
}

#[test]
fn a_busy_account_does_not_hold_up_another_account() {
    let s = setup(&[("IFLOW_CONCURRENCY", "1"), ("IFLOW_QUEUE_SIZE", "0")]);
    let other = import(
        s.dir.path(),
        "sk-other-9876543210fedcba",
        &s.mock.base_url(),
        "iflow",
    );
    let held = spawn_chat(s.gw.addr, &s.account, "scenario:hold");
    assert!(s.mock.wait_in_flight(1, secs(10)));

    let busy = chat(s.gw.addr, &s.account, &user_body("glm-5", "hi"));
    assert_error(&busy, 429, "rate_limit_error", "account_queue_full");
    let free = chat(s.gw.addr, &other, &user_body("glm-5", "hi"));
    assert_eq!(free.status, 200, "{}", free.text());
    let req = s.mock.last_request();
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-other-9876543210fedcba")
    );

    s.mock.release_all();
    assert_eq!(held.join().unwrap().status, 200);
}

#[test]
fn a_client_that_stops_reading_loses_its_slot_after_the_stall_timeout() {
    let s = setup(&[
        ("IFLOW_CONCURRENCY", "1"),
        ("IFLOW_CLIENT_STALL_TIMEOUT", "1s"),
        ("IFLOW_QUEUE_TIMEOUT", "10s"),
    ]);
    // Reads the head, then nothing: the socket fills, the relay stops, and
    // the connection (with the stream and its slot) is dropped once the
    // client's window has stayed shut for the stall timeout.
    let stalled = open_stream(
        s.gw.addr,
        &s.account,
        &stream_body("glm-5", "scenario:stream_flood"),
    );
    assert_eq!(stalled.status, 200);

    assert_slot_freed_and_upstream_closed(&s, secs(6), "flooding upstream left open");
    stalled.abandon();
}
