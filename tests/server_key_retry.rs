//! A chat request whose upstream reply says the key is bad (HTTP 200 with
//! status 439, 434 or "Invalid apiKey"): an `oauth-iflow` account gets one
//! refresh and one retry with the new key; other accounts, or a failed
//! refresh, end with the error and a state on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts_support;

use accounts_support::{
    OAuthMock, TestEnv, TokenReply, UpstreamMock, UpstreamReply, account_file, chat, chat_stream,
    uuid_of,
};
use chrono::Duration as Span;
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// Far from expiry and a short lead: only key errors cause refreshes.
fn env_for(oauth: &OAuthMock) -> TestEnv {
    let mut env = TestEnv::new();
    env.set_all(oauth.env());
    env.set("IFLOW_WORKERS", "1")
        .set("IFLOW_SHUTDOWN_TIMEOUT", "2s")
        .set("IFLOW_REFRESH_LEAD", "1m");
    env
}

/// Polls the account file until `done` holds (the write is asynchronous).
fn wait_for_file(env: &TestEnv, uuid: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let a = env.account(uuid);
        if done(&a) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "account file never matched: {a:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn key_errors_on_oauth_accounts_refresh_once_and_retry_with_the_new_key() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    let env = env_for(&oauth);
    let faults = [
        ("439", UpstreamReply::Expired439),
        ("434", UpstreamReply::Invalid434),
        ("msg", UpstreamReply::InvalidApiKey),
    ];
    let mut accounts = Vec::new();
    for (tag, fault) in faults {
        let (old, new) = (
            format!("sk-old-{tag}-000000000000000"),
            format!("sk-new-{tag}-000000000000000"),
        );
        let a = account_file(&old, &upstream.base_url("v1"), Some((tag, Span::days(7))));
        env.write_account(&a);
        upstream.script(&old, vec![fault]);
        oauth.script(
            &format!("rt-{tag}"),
            vec![TokenReply::tokens(
                &format!("at-{tag}"),
                "rt-next",
                7 * 86_400,
                &new,
            )],
        );
        accounts.push((tag, uuid_of(&a), old, new));
    }
    let server = env.serve();
    for (tag, uuid, old, new) in &accounts {
        let before = upstream.calls().len();
        let reply = chat(server.port, uuid);
        assert_eq!(reply.status, 200, "{tag}: {}", reply.text());
        assert_eq!(reply.json()["choices"][0]["message"]["content"], "ok");
        assert_eq!(
            upstream.keys()[before..],
            [old.clone(), new.clone()],
            "{tag}"
        );
        assert_eq!(oauth.token_requests(&format!("rt-{tag}")).len(), 1, "{tag}");
        let stored = env.account(uuid);
        assert_eq!(stored["api_key"], *new, "{tag}");
        assert!(stored.get("state").is_none(), "{tag}: {stored:#}");

        // The new key stays in use: no second refresh.
        assert_eq!(chat(server.port, uuid).status, 200);
        assert_eq!(upstream.keys().last(), Some(new));
        assert_eq!(oauth.token_requests(&format!("rt-{tag}")).len(), 1, "{tag}");
    }
}

#[test]
fn key_error_on_a_plain_key_account_is_returned_and_marks_key_invalid() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    let env = env_for(&oauth);
    let key = "sk-plain-00000000000000000001";
    let a = account_file(key, &upstream.base_url("v1"), None);
    env.write_account(&a);
    upstream.script(
        key,
        vec![UpstreamReply::Expired439, UpstreamReply::Completion],
    );

    let server = env.serve();
    let reply = chat(server.port, &uuid_of(&a));
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "upstream_key_expired");
    assert_eq!(upstream.keys(), [key]);
    assert!(oauth.requests().is_empty());
    wait_for_file(&env, &uuid_of(&a), |a| a["state"] == "key-invalid");

    // The next success clears the state again.
    assert_eq!(chat(server.port, &uuid_of(&a)).status, 200);
    wait_for_file(&env, &uuid_of(&a), |a| a.get("state").is_none());
}

#[test]
fn key_error_with_a_dead_refresh_token_leaves_the_account_needing_login() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    let env = env_for(&oauth);
    let key = "sk-old-00000000000000000001";
    let a = account_file(key, &upstream.base_url("v1"), Some(("dead", Span::days(7))));
    env.write_account(&a);
    upstream.script(key, vec![UpstreamReply::Expired439]);
    oauth.script("rt-dead", vec![TokenReply::InvalidGrant]);

    let server = env.serve();
    let reply = chat(server.port, &uuid_of(&a));
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(upstream.keys(), [key], "no retry without new credentials");
    assert_eq!(oauth.token_requests("rt-dead").len(), 1);
    // The state write was queued before the reply and the store worker runs
    // jobs in order, so it is on disk once the shutdown flush is done.
    let ran = server.terminate();
    assert!(ran.status.success(), "{ran:#?}");
    assert_eq!(
        env.account(&uuid_of(&a))["state"],
        "needs-login",
        "a dead refresh token must stay visible as needs-login"
    );
}

/// An OAuth account whose key `old` gets `fault`; refreshing yields `new`.
fn expiring_key(
    env: &TestEnv,
    oauth: &OAuthMock,
    upstream: &UpstreamMock,
) -> (String, &'static str, &'static str) {
    let (old, new) = ("sk-old-00000000000000000001", "sk-new-00000000000000000002");
    let a = account_file(old, &upstream.base_url("v1"), Some(("s", Span::days(7))));
    env.write_account(&a);
    upstream.script(old, vec![UpstreamReply::Expired439]);
    oauth.script(
        "rt-s",
        vec![TokenReply::tokens("at-s2", "rt-s2", 7 * 86_400, new)],
    );
    (uuid_of(&a), old, new)
}

#[test]
fn key_error_on_a_stream_request_is_retried_with_the_new_key() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    let env = env_for(&oauth);
    let (uuid, old, new) = expiring_key(&env, &oauth, &upstream);
    let server = env.serve();
    let reply = chat_stream(server.port, &uuid);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let text = reply.text();
    assert!(text.contains(r#""content":"ok""#), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(upstream.keys(), [old, new]);
    assert_eq!(oauth.token_requests("rt-s").len(), 1);
}

#[test]
fn retry_refused_again_is_returned_after_exactly_one_refresh() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    let env = env_for(&oauth);
    let (uuid, old, new) = expiring_key(&env, &oauth, &upstream);
    upstream.script(new, vec![UpstreamReply::Invalid434]);
    let server = env.serve();
    let reply = chat(server.port, &uuid);
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "upstream_key_invalid");
    assert_eq!(upstream.keys(), [old, new]);
    assert_eq!(oauth.token_requests("rt-s").len(), 1);
    let stored = wait_for_file(&env, &uuid, |a| a["state"] == "key-invalid");
    assert_eq!(stored["api_key"], new);
}

#[test]
fn a_key_refused_again_and_again_is_refreshed_once_a_minute_at_most() {
    // A client retrying a pinned request whose key the upstream keeps
    // refusing: one refresh, then 401s without calling the token endpoint.
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    let env = env_for(&oauth);
    let (uuid, old, new) = expiring_key(&env, &oauth, &upstream);
    upstream.script(
        new,
        vec![
            UpstreamReply::Invalid434,
            UpstreamReply::Invalid434,
            UpstreamReply::Invalid434,
        ],
    );
    oauth.script(
        "rt-s2",
        vec![TokenReply::tokens("at-s3", "rt-s3", 7 * 86_400, "sk-new-3")],
    );
    let server = env.serve();
    for _ in 0..3 {
        let reply = chat(server.port, &uuid);
        assert_eq!(reply.status, 401, "{}", reply.text());
        assert_eq!(reply.json()["error"]["code"], "upstream_key_invalid");
    }
    assert_eq!(upstream.keys(), [old, new, new, new]);
    assert_eq!(oauth.token_requests("rt-s").len(), 1);
    assert!(oauth.token_requests("rt-s2").is_empty());
}

/// An account file that broke while the server runs: its last good state
/// keeps serving, but a key error must not spend the refresh token, since
/// the new tokens could not be saved.
#[test]
fn a_key_error_on_an_account_whose_file_broke_does_not_spend_the_refresh_token() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    let mut env = env_for(&oauth);
    env.set("IFLOW_STORE_RESCAN_INTERVAL", "100ms");
    let old = "sk-old-broken-000000000000000";
    let a = account_file(old, &upstream.base_url("v1"), Some(("b", Span::days(7))));
    env.write_account(&a);
    upstream.script(old, vec![UpstreamReply::Expired439]);
    oauth.script(
        "rt-b",
        vec![TokenReply::tokens(
            "at-b2",
            "rt-b2",
            7 * 86_400,
            "sk-new-broken-0000000000000",
        )],
    );
    let mut server = env.serve();
    let uuid = uuid_of(&a);
    let path = env.accounts_dir().join(format!("{uuid}.json"));
    std::fs::write(&path, "{ \"uuid\": ").unwrap();
    server
        .running
        .wait_stderr_line("skipping account file", WAIT);

    let reply = chat(server.port, &uuid);
    assert_ne!(reply.status, 200, "{}", reply.text());
    server
        .running
        .wait_stderr_line("its file cannot be read", WAIT);
    assert!(oauth.requests().is_empty(), "{:#?}", oauth.requests());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ \"uuid\": ");
    let log = server.terminate().stderr;
    assert!(!log.contains(&uuid), "full uuid logged: {log}");
}
