//! What moves to another account and what does not: bounded attempts, a
//! refused key (quarantine until re-import), request-level errors (never
//! moved), and streams (moved before their first byte, never after).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::chat;
use common::fixtures::{STREAM_EVENTS, client_sse};
use common::gateway::import;
use common::pool::{Pool, cli_ok, pool, upstream_key, wait_until};
use common::{assert_error, assert_error_body, secs, sse_events, stream_body};
use serde_json::Value;

/// Sends pool requests until account `i`'s mock gets one more; each must
/// succeed. Returns the text of the request that reached it.
fn until_tried(p: &Pool, i: usize, tag: &str) -> String {
    let before = p.mocks[i].requests().len();
    for k in 0..p.mocks.len() {
        let text = format!("{tag} #{k}");
        let resp = p.chat(&text);
        assert_eq!(resp.status, 200, "{text}: {}", resp.text());
        if p.mocks[i].requests().len() > before {
            return text;
        }
    }
    panic!("the pool never used account {i}: {:?}", p.counts());
}

#[test]
fn failover_stops_after_iflow_failover_attempts_upstream_calls() {
    let p = pool(3, &[("IFLOW_FAILOVER_ATTEMPTS", "2")]);
    for m in &p.mocks {
        m.force("status:500");
    }
    let resp = p.chat("doomed");
    assert_error(&resp, 502, "upstream_error", "upstream_server_error");
    assert_eq!(p.total(), 2, "exactly two upstream calls: {:?}", p.counts());
    assert_eq!(p.served("doomed").len(), 2, "two different accounts");
    let served = p.served("doomed");
    assert_ne!(served[0], served[1]);
}

#[test]
fn a_non_stream_reply_cut_off_midway_moves_to_another_account() {
    let p = pool(2, &[]);
    p.mocks[0].force("cut_body");
    for k in 0..4 {
        let resp = p.chat(&format!("cut #{k}"));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert_eq!(p.mocks[0].requests().len(), 1, "the broken account rests");
}

#[test]
fn no_failover_starts_after_iflow_failover_deadline() {
    let p = pool(2, &[("IFLOW_FAILOVER_DEADLINE", "1s")]);
    for m in &p.mocks {
        m.force("slow_status:1500:500");
    }
    let resp = p.chat("too late to move");
    assert_error(&resp, 502, "upstream_error", "upstream_server_error");
    assert_eq!(p.total(), 1, "a second account was tried: {:?}", p.counts());
}

#[test]
fn a_failover_waiting_for_a_busy_account_gives_up_at_the_deadline() {
    let p = pool(
        2,
        &[
            ("IFLOW_CONCURRENCY", "1"),
            ("IFLOW_FAILOVER_DEADLINE", "1s"),
            ("IFLOW_QUEUE_TIMEOUT", "20s"),
        ],
    );
    // One account is busy for the whole test; the other fails at once.
    let (addr, key) = (p.gw.addr, p.key.clone());
    let held =
        std::thread::spawn(move || chat(addr, &key, &common::user_body("glm-5", "scenario:hold")));
    assert!(wait_until(secs(10), || p
        .mocks
        .iter()
        .any(|m| m.in_flight() == 1)));
    let free = usize::from(p.mocks[0].in_flight() == 1);
    p.mocks[free].force("status:500");

    let started = std::time::Instant::now();
    let resp = p.chat("waits for the busy one");
    assert_error(&resp, 502, "upstream_error", "upstream_server_error");
    assert!(
        started.elapsed() < secs(6),
        "waited {:?} for another account",
        started.elapsed()
    );
    for m in &p.mocks {
        m.release_all();
    }
    assert_eq!(held.join().unwrap().status, 200);
}

#[test]
fn a_failure_within_iflow_failover_deadline_still_fails_over() {
    let p = pool(2, &[("IFLOW_FAILOVER_DEADLINE", "10s")]);
    for m in &p.mocks {
        m.force("slow_status:300:500");
    }
    let resp = p.chat("moved in time");
    assert_error(&resp, 502, "upstream_error", "upstream_server_error");
    assert_eq!(p.counts(), [1, 1]);
}

#[test]
fn when_every_account_refuses_the_client_gets_the_last_upstream_error() {
    let p = pool(3, &[]);
    for m in &p.mocks {
        m.force("status:429:30");
    }
    let resp = p.chat("all limited");
    assert_error(&resp, 429, "rate_limit_error", "upstream_rate_limited");
    assert_eq!(resp.header("retry-after"), Some("30"));
    assert_eq!(p.counts(), [1, 1, 1]);
    // All resting now: refused at once with the time left, nothing sent.
    let resp = p.chat("all resting");
    assert_error(&resp, 429, "rate_limit_error", "pool_cooling_down");
    let left: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((28..=30).contains(&left), "Retry-After {left}");
    assert_eq!(p.total(), 3);
}

#[test]
fn request_level_errors_are_answered_without_failover_or_cooldown() {
    let p = pool(2, &[]);
    let cases = [
        (
            "biz:435",
            400,
            "invalid_request_error",
            "model_not_supported",
        ),
        (
            "status:400",
            400,
            "invalid_request_error",
            "upstream_bad_request",
        ),
        (
            "biz:511",
            400,
            "invalid_request_error",
            "context_length_exceeded",
        ),
    ];
    for (n, (scenario, status, kind, code)) in cases.into_iter().enumerate() {
        for m in &p.mocks {
            m.force(scenario);
        }
        let resp = p.chat(&format!("bad request {n}"));
        assert_error(&resp, status, kind, code);
        assert_eq!(p.total(), n + 1, "{scenario} was sent to another account");
    }
    assert_eq!(p.usable(), 2, "a request-level error rested an account");
}

#[test]
fn an_invalid_key_quarantines_the_account_until_it_is_imported_again() {
    let p = pool(2, &[("IFLOW_STORE_RESCAN_INTERVAL", "200ms")]);
    p.mocks[0].force("biz:434");
    let text = until_tried(&p, 0, "probe");
    assert_eq!(p.served(&text), [0, 1]);
    let marked = wait_until(secs(5), || p.file(0)["state"] == "key-invalid");
    assert!(marked, "{}", p.file(0));
    assert!(p.file(0).get("cooldown_until").is_none());

    for k in 0..4 {
        assert_eq!(p.chat(&format!("after #{k}")).status, 200);
    }
    assert_eq!(
        p.mocks[0].requests().len(),
        1,
        "the pool used a refused key"
    );
    assert_eq!(p.usable(), 1);
    let rows: Value =
        serde_json::from_str(&cli_ok(p.dir.path(), &["token", "list", "--json"])).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["uuid"] == p.accounts[0].as_str());
    assert_eq!(row.unwrap()["state"], "key-invalid");

    // The same key imported again: same account, state cleared, back in the pool.
    p.mocks[0].unforce();
    let again = import(
        p.dir.path(),
        &upstream_key(0),
        &p.mocks[0].base_url(),
        "iflow",
    );
    assert_eq!(again, p.accounts[0]);
    assert!(p.file(0).get("state").is_none(), "{}", p.file(0));
    assert!(p.wait_usable(2), "the server did not take the re-import");
    let back = until_tried(&p, 0, "re-imported");
    assert_eq!(p.served(&back), [0]);
    let log = p.gw.log();
    assert!(
        log.contains(&format!("account {}: key refused", &p.accounts[0][..8])),
        "{log}"
    );
    for uuid in &p.accounts {
        assert!(!log.contains(uuid.as_str()), "full uuid in the log:\n{log}");
    }
}

#[test]
fn a_stream_refused_before_its_first_byte_moves_to_another_account() {
    let p = pool(2, &[]);
    p.mocks[0].force("status:503");
    let mut moved = None;
    for k in 0..2 {
        let text = format!("stream #{k}");
        let resp = chat(p.gw.addr, &p.key, &stream_body("glm-5", &text));
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.text(), client_sse(false));
        if !p.mocks[0].requests().is_empty() {
            moved = Some(text);
            break;
        }
    }
    let moved = moved.expect("the pool never tried account 0");
    assert_eq!(p.served(&moved), [0, 1]);
}

#[test]
fn a_stream_that_is_empty_or_unreadable_moves_to_another_account_which_rests() {
    // Nothing reached the client in either case: the stream ended before
    // its first event, or its body had no framing awc can read.
    for scenario in ["stream_empty", "close_delimited"] {
        let p = pool(2, &[]);
        p.mocks[0].force(scenario);
        for k in 0..4 {
            let text = format!("{scenario} #{k}");
            let resp = chat(p.gw.addr, &p.key, &stream_body("glm-5", &text));
            assert_eq!(resp.status, 200, "{scenario}: {}", resp.text());
            assert_eq!(resp.text(), client_sse(false), "{scenario}");
        }
        assert_eq!(
            p.mocks[0].requests().len(),
            1,
            "{scenario}: the failing account was not rested: {:?}",
            p.counts()
        );
    }
}

#[test]
fn a_stream_broken_after_its_first_bytes_ends_with_an_error_and_is_not_moved() {
    let p = pool(3, &[]);
    let resp = chat(
        p.gw.addr,
        &p.key,
        &stream_body("glm-5", "scenario:stream_disconnect"),
    );
    assert_eq!(resp.status, 200);
    let text = resp.text();
    let events = sse_events(&text);
    assert_eq!(events.len(), 4, "{text}");
    assert_eq!(events[..2], [STREAM_EVENTS[2], STREAM_EVENTS[3]]);
    let error: Value = serde_json::from_str(&events[2]).unwrap();
    assert_error_body(&error, "upstream_error", "upstream_stream_interrupted");
    assert_eq!(events[3], "[DONE]");
    assert!(text.ends_with("}\n\ndata: [DONE]\n\n"), "{text}");
    assert_eq!(
        p.total(),
        1,
        "the broken stream was sent again: {:?}",
        p.counts()
    );
}
