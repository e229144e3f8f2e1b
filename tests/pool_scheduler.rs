//! The pool scheduler: requests with a gateway key spread over the accounts
//! without exceeding any account's cap, wait in one bounded FIFO queue
//! (429 when it is full or too slow), and a conversation stays on its
//! account while that account has room.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{Response, chat, request};
use common::pool::{Pool, pool};
use common::{assert_error, secs, user_body};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn spawn_chat(addr: SocketAddr, key: &str, body: Value) -> JoinHandle<Response> {
    let key = key.to_string();
    std::thread::spawn(move || chat(addr, &key, &body))
}

/// A pool chat carrying `x-session-id: session`.
fn session_chat(p: &Pool, session: &str, content: &str) -> Response {
    let auth = format!("Bearer {}", p.key);
    let body = user_body("glm-5", content).to_string();
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("x-session-id", session),
    ];
    request(
        p.gw.addr,
        "POST",
        "/v1/chat/completions",
        &headers,
        Some(body.as_bytes()),
    )
}

fn retry_after_secs(resp: &Response) -> u64 {
    let v = resp.header("retry-after").expect("Retry-After header");
    v.parse()
        .unwrap_or_else(|_| panic!("Retry-After {v:?} is not whole seconds"))
}

/// The one account that received every message in `texts`.
fn one_account(p: &Pool, texts: &[String]) -> usize {
    let accounts: BTreeSet<usize> = texts.iter().flat_map(|t| p.served(t)).collect();
    assert_eq!(accounts.len(), 1, "{texts:?} went to {accounts:?}");
    accounts.into_iter().next().unwrap()
}

#[test]
fn thirty_concurrent_requests_use_all_three_accounts_one_call_at_a_time() {
    let p = pool(3, &[("IFLOW_CONCURRENCY", "1")]);
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let body = user_body("glm-5", &format!("scenario:slow_complete:60 #{i}"));
            spawn_chat(p.gw.addr, &p.key, body)
        })
        .collect();
    for call in calls {
        let resp = call.join().unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    for i in 0..30 {
        let text = format!("scenario:slow_complete:60 #{i}");
        assert_eq!(p.served(&text).len(), 1, "{text} sent more than once");
    }
    let counts = p.counts();
    assert_eq!(counts.iter().sum::<usize>(), 30);
    assert!(
        counts.iter().all(|n| *n > 0),
        "an account was never used: {counts:?}"
    );
    for (i, m) in p.mocks.iter().enumerate() {
        assert_eq!(m.max_in_flight(), 1, "account {i} exceeded its cap of 1");
    }
    let health = common::client::get(p.gw.addr, "/health", None).json();
    assert_eq!(health["in_flight"], 0, "{health}");
}

#[test]
fn a_request_beyond_the_full_pool_queue_gets_429_with_retry_after() {
    let p = pool(
        1,
        &[("IFLOW_CONCURRENCY", "1"), ("IFLOW_POOL_QUEUE_SIZE", "1")],
    );
    let held = spawn_chat(p.gw.addr, &p.key, user_body("glm-5", "scenario:hold"));
    assert!(p.mocks[0].wait_in_flight(1, secs(10)));

    let (tx, rx) = mpsc::channel();
    for i in 0..2 {
        let (tx, addr, key) = (tx.clone(), p.gw.addr, p.key.clone());
        std::thread::spawn(move || {
            let _ = tx.send(chat(
                addr,
                &key,
                &user_body("glm-5", &format!("waiting {i}")),
            ));
        });
    }
    let refused = rx
        .recv_timeout(secs(10))
        .expect("one must be refused at once");
    assert_error(&refused, 429, "rate_limit_error", "pool_queue_full");
    assert!(retry_after_secs(&refused) >= 1);

    p.mocks[0].release_all();
    assert_eq!(held.join().unwrap().status, 200);
    let queued = rx.recv_timeout(secs(10)).expect("the queued one is served");
    assert_eq!(queued.status, 200, "{}", queued.text());
    assert_eq!(p.total(), 2);
}

#[test]
fn waiting_requests_are_served_first_come_first_served() {
    let p = pool(1, &[("IFLOW_CONCURRENCY", "1")]);
    let held = spawn_chat(p.gw.addr, &p.key, user_body("glm-5", "scenario:hold"));
    assert!(p.mocks[0].wait_in_flight(1, secs(10)));
    // Nothing shows the pool queue's length: space the arrivals out instead.
    let waiting: Vec<_> = (0..3)
        .map(|i| {
            let call = spawn_chat(
                p.gw.addr,
                &p.key,
                user_body("glm-5", &format!("queued {i}")),
            );
            std::thread::sleep(Duration::from_millis(300));
            call
        })
        .collect();
    assert_eq!(p.total(), 1, "nobody may pass the held request");
    p.mocks[0].release_all();
    assert_eq!(held.join().unwrap().status, 200);
    for call in waiting {
        assert_eq!(call.join().unwrap().status, 200);
    }
    let order: Vec<String> = p.mocks[0]
        .requests()
        .iter()
        .map(|r| common::pool::last_user_text(&r.body))
        .collect();
    assert_eq!(order, ["scenario:hold", "queued 0", "queued 1", "queued 2"]);
}

#[test]
fn waiting_longer_than_the_queue_timeout_gets_429_pool_queue_timeout() {
    let p = pool(
        2,
        &[("IFLOW_CONCURRENCY", "1"), ("IFLOW_QUEUE_TIMEOUT", "500ms")],
    );
    let held: Vec<_> = (0..2)
        .map(|_| spawn_chat(p.gw.addr, &p.key, user_body("glm-5", "scenario:hold")))
        .collect();
    for m in &p.mocks {
        assert!(m.wait_in_flight(1, secs(10)), "both accounts must be busy");
    }

    let started = Instant::now();
    let resp = p.chat("too late");
    let waited = started.elapsed();
    assert_error(&resp, 429, "rate_limit_error", "pool_queue_timeout");
    assert!(retry_after_secs(&resp) >= 1);
    assert!(
        waited >= Duration::from_millis(450) && waited < secs(5),
        "{waited:?}"
    );
    for m in &p.mocks {
        m.release_all();
    }
    for h in held {
        assert_eq!(h.join().unwrap().status, 200);
    }
    assert!(p.served("too late").is_empty());
}

#[test]
fn a_conversation_stays_on_its_account_by_session_header_or_user_field() {
    let p = pool(3, &[]);
    let (mut one, mut two, mut plain, mut alice) = (vec![], vec![], vec![], vec![]);
    for k in 0..3 {
        for (session, list) in [("conv-1", &mut one), ("conv-2", &mut two)] {
            let text = format!("{session} #{k}");
            assert_eq!(session_chat(&p, session, &text).status, 200);
            list.push(text);
        }
        let text = format!("plain #{k}");
        assert_eq!(p.chat(&text).status, 200);
        plain.push(text);
        let text = format!("alice #{k}");
        let body = json!({"model": "glm-5", "user": "alice",
            "messages": [{"role": "user", "content": text}]});
        assert_eq!(chat(p.gw.addr, &p.key, &body).status, 200);
        alice.push(text);
    }
    one_account(&p, &one);
    one_account(&p, &two);
    one_account(&p, &alice);
    // Meanwhile the round robin moved on for requests without a conversation.
    let spread: BTreeSet<usize> = plain.iter().flat_map(|t| p.served(t)).collect();
    assert!(spread.len() >= 2, "plain requests all on {spread:?}");
}

#[test]
fn a_conversation_whose_account_is_busy_goes_to_another_at_once() {
    let p = pool(
        2,
        &[("IFLOW_CONCURRENCY", "1"), ("IFLOW_QUEUE_TIMEOUT", "10s")],
    );
    assert_eq!(session_chat(&p, "conv", "first").status, 200);
    let home = one_account(&p, &["first".to_string()]);

    let (addr, key) = (p.gw.addr, format!("Bearer {}", p.key));
    let held = std::thread::spawn(move || {
        let body = user_body("glm-5", "scenario:hold").to_string();
        let headers = [
            ("Authorization", key.as_str()),
            ("Content-Type", "application/json"),
            ("x-session-id", "conv"),
        ];
        request(
            addr,
            "POST",
            "/v1/chat/completions",
            &headers,
            Some(body.as_bytes()),
        )
    });
    assert!(p.mocks[home].wait_in_flight(1, secs(10)));
    let started = Instant::now();
    assert_eq!(session_chat(&p, "conv", "while busy").status, 200);
    assert!(
        started.elapsed() < secs(5),
        "it waited for its busy account"
    );
    assert_eq!(p.served("while busy"), [1 - home]);

    p.mocks[home].release_all();
    assert_eq!(held.join().unwrap().status, 200);
    // The overflow did not move the conversation: it is back home.
    assert_eq!(session_chat(&p, "conv", "after").status, 200);
    assert_eq!(p.served("after"), [home]);
}

#[test]
fn without_sticky_sessions_a_conversation_is_spread_like_any_request() {
    let p = pool(3, &[("IFLOW_STICKY_SESSIONS", "false")]);
    let texts: Vec<String> = (0..3).map(|k| format!("conv #{k}")).collect();
    for t in &texts {
        assert_eq!(session_chat(&p, "conv", t).status, 200);
    }
    let accounts: BTreeSet<usize> = texts.iter().flat_map(|t| p.served(t)).collect();
    assert_eq!(accounts.len(), 3, "round robin expected, got {accounts:?}");
}
