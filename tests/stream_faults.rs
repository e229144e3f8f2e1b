//! Failures after a stream has started: the client keeps what arrived, then
//! gets one `data: {"error":…}` event and `data: [DONE]`; a silent upstream
//! gets keep-alive comments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{chat, open_stream};
use common::fixtures::{self, BIZ_ERRORS, STREAM_EVENTS};
use common::{assert_error, assert_error_body, secs, setup, sse_events, stream_body};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Splits a stream body into (events before the error, the error, the rest).
fn error_event(text: &str) -> (Vec<String>, Value, Vec<String>) {
    let events = sse_events(text);
    let at = events
        .iter()
        .position(|e| e.starts_with("{\"error\""))
        .unwrap_or_else(|| panic!("no error event in {text:?}"));
    let error = serde_json::from_str(&events[at]).unwrap();
    (events[..at].to_vec(), error, events[at + 1..].to_vec())
}

#[test]
fn every_error_payload_mid_stream_becomes_an_error_event_then_done() {
    let s = setup(&[]);
    for case in BIZ_ERRORS {
        let body = stream_body("glm-5", &format!("scenario:stream_biz:{}", case.name));
        let resp = chat(s.gw.addr, &s.account, &body);
        assert_eq!(resp.status, 200, "{}", case.name);
        let text = resp.text();
        assert!(
            text.starts_with(&format!("data: {}\n\ndata: {{\"error\":", STREAM_EVENTS[2])),
            "{text}"
        );
        assert!(text.ends_with("}\n\ndata: [DONE]\n\n"), "{text}");
        let (before, error, after) = error_event(&text);
        assert_eq!(before, [STREAM_EVENTS[2]]);
        assert_error_body(&error, case.kind, case.code);
        assert_eq!(after, ["[DONE]"], "nothing may follow the error: {text}");
    }
}

/// An error sent as the stream's first event arrives before the client got
/// any byte, so it is answered with its proper status, as a non-stream
/// reply would be.
#[test]
fn an_error_payload_as_the_first_event_gets_its_http_status() {
    let s = setup(&[]);
    for case in BIZ_ERRORS {
        let body = stream_body("glm-5", &format!("scenario:stream_biz_first:{}", case.name));
        let resp = chat(s.gw.addr, &s.account, &body);
        assert_error(&resp, case.status, case.kind, case.code);
    }
}

#[test]
fn upstream_disconnect_mid_stream_becomes_an_error_event_then_done() {
    let s = setup(&[]);
    let resp = chat(
        s.gw.addr,
        &s.account,
        &stream_body("glm-5", "scenario:stream_disconnect"),
    );
    assert_eq!(resp.status, 200);
    let text = resp.text();
    let (before, error, after) = error_event(&text);
    assert_eq!(before, [STREAM_EVENTS[2], STREAM_EVENTS[3]]);
    assert_error_body(&error, "upstream_error", "upstream_stream_interrupted");
    assert_eq!(after, ["[DONE]"]);
    assert!(text.ends_with("}\n\ndata: [DONE]\n\n"), "{text}");
}

#[test]
fn silent_upstream_gets_keep_alive_comments_and_the_stream_completes() {
    let s = setup(&[("IFLOW_SSE_KEEPALIVE", "200ms")]);
    let mut stream = open_stream(
        s.gw.addr,
        &s.account,
        &stream_body("glm-5", "scenario:stream_slow:1500"),
    );
    assert_eq!(stream.status, 200);
    let first = format!("data: {}\n\n", STREAM_EVENTS[0]);
    assert!(
        stream.read_until(secs(5), |t| t.contains(": keep-alive\n\n")),
        "{}",
        stream.text()
    );
    let text = stream.read_to_end();
    assert!(
        text.starts_with(&format!("{first}: keep-alive\n\n")),
        "{text}"
    );
    assert_eq!(
        text.replace(": keep-alive\n\n", ""),
        fixtures::client_sse(false)
    );
}

#[test]
fn a_stream_outlasting_the_upstream_head_timeout_is_not_cut() {
    let s = setup(&[
        ("IFLOW_UPSTREAM_TIMEOUT", "1s"),
        ("IFLOW_SSE_KEEPALIVE", "200ms"),
    ]);
    let resp = chat(
        s.gw.addr,
        &s.account,
        &stream_body("glm-5", "scenario:stream_slow:1500"),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.text().replace(": keep-alive\n\n", ""),
        fixtures::client_sse(false)
    );
}

#[test]
fn upstream_silent_past_the_idle_timeout_ends_the_stream_with_an_error() {
    let s = setup(&[
        ("IFLOW_SSE_KEEPALIVE", "200ms"),
        ("IFLOW_STREAM_IDLE_TIMEOUT", "1s"),
    ]);
    let started = Instant::now();
    let resp = chat(
        s.gw.addr,
        &s.account,
        &stream_body("glm-5", "scenario:stream_hold"),
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let text = resp.text().replace(": keep-alive\n\n", "");
    let (before, error, after) = error_event(&text);
    assert_eq!(before, [STREAM_EVENTS[2]]);
    assert_error_body(&error, "upstream_error", "upstream_timeout");
    assert_eq!(after, ["[DONE]"]);
    assert!(
        s.mock.wait_early_closes(1, secs(5)),
        "upstream connection left open"
    );
}

/// The endless line comes before any event, so nothing has reached the
/// client yet: the refusal is a proper HTTP error, not a stream.
#[test]
fn endless_stream_line_past_the_response_limit_is_refused_before_the_stream() {
    let s = setup(&[("IFLOW_MAX_RESPONSE_BYTES", "1KiB")]);
    let resp = chat(
        s.gw.addr,
        &s.account,
        &stream_body("glm-5", "scenario:stream_endless"),
    );
    assert_error(&resp, 502, "upstream_error", "upstream_invalid_response");
}
