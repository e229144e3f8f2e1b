//! SIGTERM: requests in flight finish, the process exits 0 within the
//! shutdown timeout, and usage counters reach the account file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Utc};
use common::client::{Response, chat, open_stream};
use common::gateway::Gateway;
use common::mock::Mock;
use common::pool::pool;
use common::{Setup, account_file, assert_error, secs, setup, stream_body, user_body};
use std::time::Duration;

const ENV: &[(&str, &str)] = &[
    // Long enough that only the shutdown flush can write usage.
    ("IFLOW_USAGE_FLUSH_INTERVAL", "1h"),
    ("IFLOW_SHUTDOWN_TIMEOUT", "5s"),
];

fn last_used(file: &serde_json::Value) -> DateTime<Utc> {
    let text = file["last_used_at"].as_str().expect("last_used_at");
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

#[test]
fn sigterm_exits_zero_and_flushes_usage_to_the_account_file() {
    let mut s = setup(ENV);
    let started = Utc::now();
    assert_eq!(
        chat(s.gw.addr, &s.account, &user_body("glm-5", "hi")).status,
        200
    );
    assert_eq!(
        chat(s.gw.addr, &s.account, &stream_body("glm-5", "hi")).status,
        200
    );
    assert_eq!(
        chat(s.gw.addr, &s.account, &user_body("glm-5", "hi")).status,
        200
    );
    let finished = Utc::now();
    assert_eq!(
        account_file(s.dir.path(), &s.account)["request_count"],
        0,
        "flushed before shutdown"
    );

    let (exit, took) =
        s.gw.terminate(secs(8))
            .expect("no exit within the shutdown timeout");
    assert!(exit.success(), "{exit:?}\n{}", s.gw.log());
    assert!(took < secs(6), "{took:?}");
    let file = account_file(s.dir.path(), &s.account);
    assert_eq!(file["request_count"], 3, "{file}");
    let used = last_used(&file);
    assert!(
        used >= started - chrono::Duration::seconds(1) && used <= finished,
        "{used}"
    );
    assert!(
        s.gw.log()
            .contains("usage written: account counters 1, ledger rows 1"),
        "{}",
        s.gw.log()
    );
}

/// Starts a request the mock holds, sends SIGTERM once it is in flight, and
/// waits for the gateway to say it drains.
fn hold_one_then_sigterm(s: &mut Setup) -> std::thread::JoinHandle<Response> {
    let (addr, account) = (s.gw.addr, s.account.clone());
    let held =
        std::thread::spawn(move || chat(addr, &account, &user_body("glm-5", "scenario:hold")));
    assert!(s.mock.wait_in_flight(1, secs(10)));
    s.gw.send_sigterm();
    assert!(
        s.gw.wait_log(secs(5), |l| l.to_lowercase().contains("graceful")),
        "{}",
        s.gw.log()
    );
    held
}

#[test]
fn a_request_in_flight_at_sigterm_completes_and_is_counted() {
    let mut s = setup(ENV);
    let held = hold_one_then_sigterm(&mut s);
    s.mock.release_all();
    let resp = held.join().unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let exit = s.gw.wait_exit(secs(8)).expect("no exit after the drain");
    assert!(exit.success());
    assert_eq!(account_file(s.dir.path(), &s.account)["request_count"], 1);
}

/// A second signal during the drain stops at once: exit 1 long before the
/// shutdown timeout, with what was already counted written.
#[test]
fn a_second_sigterm_stops_at_once_and_still_writes_the_counted_usage() {
    let mut s = setup(&[
        ("IFLOW_USAGE_FLUSH_INTERVAL", "1h"),
        ("IFLOW_SHUTDOWN_TIMEOUT", "60s"),
    ]);
    assert_eq!(
        chat(s.gw.addr, &s.account, &user_body("glm-5", "hi")).status,
        200
    );
    let held = hold_one_then_sigterm(&mut s);
    let (exit, took) =
        s.gw.terminate(secs(10))
            .expect("no exit after a second SIGTERM");
    assert_eq!(exit.code(), Some(1), "{}", s.gw.log());
    assert!(took < secs(5), "{took:?}");
    assert!(s.gw.log().contains("received again"), "{}", s.gw.log());
    // Both attempts were counted only in memory (flushes are an hour
    // apart): the finished one and the dropped one (REQUESTS counts
    // upstream attempts).
    assert_eq!(account_file(s.dir.path(), &s.account)["request_count"], 2);
    s.mock.release_all();
    // The held request's connection was dropped without an answer.
    assert!(held.join().is_err());
}

#[test]
fn streams_still_open_at_sigterm_are_cut_after_the_shutdown_timeout_and_booked_as_errors() {
    let mut s = setup(&[
        ("IFLOW_USAGE_FLUSH_INTERVAL", "1h"),
        ("IFLOW_SHUTDOWN_TIMEOUT", "2s"),
        ("IFLOW_SSE_KEEPALIVE", "200ms"),
        ("IFLOW_CONCURRENCY", "8"),
    ]);
    // Several, so both workers hold some: each worker drops its own after
    // the server has returned, and every one must still be booked.
    const STREAMS: usize = 6;
    let mut streams: Vec<_> = (0..STREAMS)
        .map(|_| {
            open_stream(
                s.gw.addr,
                &s.account,
                &stream_body("glm-5", "scenario:stream_hold"),
            )
        })
        .collect();
    for stream in &mut streams {
        assert!(stream.read_until(secs(5), |t| t.contains("data: ")));
    }
    // And a non-stream call the upstream never answers.
    let (addr, account) = (s.gw.addr, s.account.clone());
    let held = std::thread::spawn(move || {
        let raw = common::client::chat_request(&account, &user_body("glm-5", "scenario:hold"));
        let mut conn = common::client::connect(addr);
        std::io::Write::write_all(&mut conn, &raw).unwrap();
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn, &mut answer);
        answer
    });
    assert!(s.mock.wait_in_flight(STREAMS + 1, secs(10)));

    let (exit, took) =
        s.gw.terminate(secs(15))
            .expect("no exit after the shutdown timeout");
    assert!(
        held.join().unwrap().is_empty(),
        "the cut call got an answer"
    );
    let log = s.gw.log();
    assert_eq!(
        log.matches("POST /v1/chat/completions 503 ").count(),
        1,
        "the cut call is logged as 503: {log}"
    );
    assert!(!log.contains(" 499 "), "{log}");
    assert!(exit.success(), "{exit:?}\n{}", s.gw.log());
    assert!(
        took >= Duration::from_millis(1500) && took < secs(10),
        "{took:?}"
    );
    assert_eq!(
        account_file(s.dir.path(), &s.account)["request_count"],
        STREAMS + 1
    );
    let ledger: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.dir.path().join("usage/ledger.json")).expect("ledger written"),
    )
    .unwrap();
    let sum = |field: &str| -> u64 {
        ledger["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        sum("requests"),
        STREAMS as u64 + 1,
        "{ledger}\n{}",
        s.gw.log()
    );
    assert_eq!(
        sum("errors"),
        STREAMS as u64 + 1,
        "cut calls ended badly: {ledger}"
    );
    assert!(
        s.mock.wait_early_closes(STREAMS + 1, secs(5)),
        "upstream stream left open"
    );
    for stream in streams {
        stream.abandon();
    }
}

/// Holds the only slot with a stream on `token`, queues a request behind it
/// with the same token, sends SIGTERM: the queued request must get 503 at
/// once, not wait out the 10 s grace and then lose its connection.
fn queued_request_is_refused_at_sigterm(gw: &mut Gateway, mock: &Mock, token: &str) {
    let mut holder = open_stream(
        gw.addr,
        token,
        &stream_body("glm-5", "scenario:stream_hold"),
    );
    assert!(holder.read_until(secs(5), |t| t.contains("data: ")));
    let (addr, token) = (gw.addr, token.to_string());
    let waiting = std::thread::spawn(move || {
        let asked = std::time::Instant::now();
        let resp = chat(addr, &token, &user_body("glm-5", "queued"));
        (resp, asked.elapsed())
    });
    // Queued for sure (not still in the listen backlog) before the signal.
    let queued = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        common::client::get(gw.addr, "/health", None).json()["waiting"] == 1
    });
    assert!(queued, "the second request never queued");
    gw.send_sigterm();
    let (resp, took) = waiting.join().unwrap();
    assert_error(&resp, 503, "server_error", "unavailable");
    assert!(resp.text().contains("shutting down"), "{}", resp.text());
    assert!(took < secs(5), "answered only after {took:?}");
    assert_eq!(
        mock.requests().len(),
        1,
        "the queued request reached the upstream"
    );
    holder.abandon();
    assert!(gw.wait_exit(secs(15)).is_some_and(|e| e.success()));
}

const WAIT_ENV: &[(&str, &str)] = &[
    ("IFLOW_SHUTDOWN_TIMEOUT", "10s"),
    ("IFLOW_SSE_KEEPALIVE", "200ms"),
    ("IFLOW_QUEUE_TIMEOUT", "30s"),
];

#[test]
fn a_request_waiting_in_an_accounts_queue_at_sigterm_gets_503_at_once() {
    let mut s = setup(WAIT_ENV);
    queued_request_is_refused_at_sigterm(&mut s.gw, &s.mock, &s.account);
}

#[test]
fn a_request_waiting_in_the_pool_queue_at_sigterm_gets_503_at_once() {
    let mut p = pool(1, WAIT_ENV);
    queued_request_is_refused_at_sigterm(&mut p.gw, &p.mocks[0], &p.key);
}
