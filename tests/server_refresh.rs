//! The server's RefresherActor: which accounts it refreshes (IFLOW_REFRESH_LEAD),
//! backoff after transient failures, no retries after `invalid_grant`, and
//! that a refreshed key is what the next upstream call carries.
//!
//! "Did not happen" is proven against a clock account whose refresh is always
//! due: once it has been refreshed on several later scans, any refresh of the
//! account under test would have happened too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts_support;

use accounts_support::{OAuthMock, TestEnv, TokenReply, UpstreamMock, account_file, chat, uuid_of};
use chrono::Duration as Span;
use std::time::Duration;

const OLD_KEY: &str = "sk-old-00000000000000000001";
const NEW_KEY: &str = "sk-new-00000000000000000002";
const CLOCK_KEY: &str = "sk-clock-0000000000000000003";
const WAIT: Duration = Duration::from_secs(10);

fn env_for(oauth: &OAuthMock, vars: &[(&str, &str)]) -> TestEnv {
    let mut env = TestEnv::new();
    env.set_all(oauth.env());
    env.set("IFLOW_WORKERS", "1")
        .set("IFLOW_SHUTDOWN_TIMEOUT", "2s");
    for (k, v) in vars {
        env.set(k, v);
    }
    env
}

/// An account (tokens `at-clock`/`rt-clock`) refreshed on every scan: its
/// tokens last 1 s, too short to wait for a later scan.
fn add_clock(env: &TestEnv, oauth: &OAuthMock) {
    env.write_account(&account_file(
        CLOCK_KEY,
        "http://127.0.0.1:9/v1",
        Some(("clock", Span::minutes(5))),
    ));
    oauth.script(
        "rt-clock",
        vec![TokenReply::tokens("at-clock", "rt-clock", 1, CLOCK_KEY)],
    );
}

/// An account with key `OLD_KEY`, tokens `at-NAME`/`rt-NAME` that expire
/// in `left`, and an OAuth server that refreshes them into tokens of the
/// same names living `life_secs`.
fn add_oauth_account(env: &TestEnv, oauth: &OAuthMock, name: &str, left: Span, life_secs: i64) {
    env.write_account(&account_file(
        OLD_KEY,
        "http://127.0.0.1:9/v1",
        Some((name, left)),
    ));
    let (access, refresh) = (format!("at-{name}"), format!("rt-{name}"));
    oauth.script(
        &refresh,
        vec![TokenReply::tokens(&access, &refresh, life_secs, OLD_KEY)],
    );
}

#[test]
fn due_account_is_refreshed_and_the_next_upstream_call_uses_the_new_key() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    // Lead 24h (the default) and 1 h left: due.
    let env = env_for(&oauth, &[("IFLOW_REFRESH_INTERVAL", "200ms")]);
    let account = account_file(
        OLD_KEY,
        &upstream.base_url("v1"),
        Some(("a", Span::hours(1))),
    );
    env.write_account(&account);
    oauth.script(
        "rt-a",
        vec![TokenReply::tokens("at-new", "rt-new", 7 * 86_400, NEW_KEY)],
    );

    let mut server = env.serve();
    server.running.wait_stderr_line("tokens refreshed", WAIT);
    let stored = env.account(&uuid_of(&account));
    assert_eq!(stored["api_key"], NEW_KEY);
    assert_eq!(stored["oauth_refresh_token"], "rt-new");
    assert_eq!(oauth.token_requests("rt-a").len(), 1);

    let reply = chat(server.port, &uuid_of(&account));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(upstream.keys(), [NEW_KEY]);
    let calls = upstream.calls();
    assert_eq!(calls[0].path, "/v1/chat/completions");
    let log = server.terminate().stderr;
    assert!(!log.contains(OLD_KEY) && !log.contains(NEW_KEY), "{log}");
}

#[test]
fn account_outside_the_lead_is_left_alone() {
    let oauth = OAuthMock::start();
    let env = env_for(
        &oauth,
        &[
            ("IFLOW_REFRESH_INTERVAL", "200ms"),
            ("IFLOW_REFRESH_LEAD", "10m"),
        ],
    );
    add_clock(&env, &oauth);
    add_oauth_account(&env, &oauth, "far", Span::hours(1), 86_400);

    let _server = env.serve();
    oauth.wait_token_requests("rt-clock", 4, WAIT);
    assert!(oauth.token_requests("rt-far").is_empty());
}

#[test]
fn busy_refresh_is_retried_with_growing_backoff_then_succeeds() {
    let oauth = OAuthMock::start();
    let env = env_for(
        &oauth,
        &[
            ("IFLOW_REFRESH_INTERVAL", "200ms"),
            ("IFLOW_REFRESH_RETRY_MIN", "300ms"),
            ("IFLOW_REFRESH_RETRY_MAX", "5s"),
        ],
    );
    let account = account_file(
        OLD_KEY,
        "http://127.0.0.1:9/v1",
        Some(("a", Span::hours(1))),
    );
    env.write_account(&account);
    let done = TokenReply::tokens("at-new", "rt-new", 7 * 86_400, NEW_KEY);
    oauth.script("rt-a", vec![TokenReply::Busy, TokenReply::Busy, done]);

    let mut server = env.serve();
    let tries = oauth.wait_token_requests("rt-a", 3, WAIT);
    server.running.wait_stderr_line("tokens refreshed", WAIT);
    let first_gap = tries[1].at - tries[0].at;
    let second_gap = tries[2].at - tries[1].at;
    // 300 ms then 600 ms, each ±20 %; the scan every 200 ms must not cut in.
    assert!(first_gap >= Duration::from_millis(240), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(480), "{second_gap:?}");
    assert!(second_gap > first_gap, "{first_gap:?} then {second_gap:?}");
    let stored = env.account(&uuid_of(&account));
    assert_eq!(stored["api_key"], NEW_KEY);
    assert!(stored.get("state").is_none(), "{stored:#}");
    assert_eq!(oauth.token_requests("rt-a").len(), 3);
}

#[test]
fn invalid_grant_marks_needs_login_and_stops_refreshing() {
    let oauth = OAuthMock::start();
    let env = env_for(
        &oauth,
        &[
            ("IFLOW_REFRESH_INTERVAL", "200ms"),
            ("IFLOW_REFRESH_LEAD", "10m"),
            ("IFLOW_REFRESH_RETRY_MIN", "200ms"),
        ],
    );
    add_clock(&env, &oauth);
    let dead = account_file(
        OLD_KEY,
        "http://127.0.0.1:9/v1",
        Some(("dead", Span::minutes(5))),
    );
    env.write_account(&dead);
    oauth.script("rt-dead", vec![TokenReply::InvalidGrant]);

    let mut server = env.serve();
    server
        .running
        .wait_stderr_line("refresh failed: the login is no longer valid", WAIT);
    let stored = env.account(&uuid_of(&dead));
    assert_eq!(stored["state"], "needs-login");
    assert_eq!(stored["api_key"], OLD_KEY);
    assert_eq!(stored["oauth_refresh_token"], "rt-dead");

    let ticks = oauth.token_requests("rt-clock").len();
    oauth.wait_token_requests("rt-clock", ticks + 4, WAIT);
    assert_eq!(oauth.token_requests("rt-dead").len(), 1);
}

#[test]
fn scan_and_key_error_share_one_refresh() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    let env = env_for(&oauth, &[("IFLOW_REFRESH_INTERVAL", "100ms")]);
    let account = account_file(
        OLD_KEY,
        &upstream.base_url("v1"),
        Some(("a", Span::hours(1))),
    );
    env.write_account(&account);
    oauth.script(
        "rt-a",
        vec![TokenReply::tokens("at-new", "rt-new", 7 * 86_400, NEW_KEY)],
    );
    oauth.set_token_delay(Duration::from_secs(2));
    upstream.script(OLD_KEY, vec![accounts_support::UpstreamReply::Expired439]);

    let server = env.serve();
    // The scan's refresh is now held by the mock; the 439 must join it.
    oauth.wait_token_requests("rt-a", 1, WAIT);
    let reply = chat(server.port, &uuid_of(&account));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(upstream.keys(), [OLD_KEY, NEW_KEY]);
    assert_eq!(oauth.token_requests("rt-a").len(), 1);
    assert_eq!(oauth.max_in_flight(), 1);
}

/// Tokens that live no longer than the lead would be due again the moment
/// they are refreshed, and were refreshed on every scan. They are refreshed
/// at half their life instead, with a warning naming the setting.
#[test]
fn tokens_shorter_than_the_lead_are_refreshed_at_half_their_life_not_on_every_scan() {
    let oauth = OAuthMock::start();
    // Lead 24h (the default), tokens of 60 s and of 20 s, a scan every
    // 100 ms. (20 s is less than the 30 s of scan jitter once counted as
    // the safety margin: such tokens were refreshed on every scan.)
    let env = env_for(&oauth, &[("IFLOW_REFRESH_INTERVAL", "100ms")]);
    add_clock(&env, &oauth);
    add_oauth_account(&env, &oauth, "short", Span::minutes(1), 60);
    add_oauth_account(&env, &oauth, "tiny", Span::seconds(20), 20);

    let mut server = env.serve();
    server
        .running
        .wait_stderr_line("no longer than IFLOW_REFRESH_LEAD", WAIT);
    // Many scans later (the clock is refreshed on each)...
    oauth.wait_token_requests("rt-clock", 6, WAIT);
    // ...the 60 s and the 20 s tokens were refreshed once.
    assert_eq!(oauth.token_requests("rt-short").len(), 1);
    assert_eq!(oauth.token_requests("rt-tiny").len(), 1);
    let log = server.terminate().stderr;
    assert!(!log.contains(OLD_KEY), "{log}");
}

/// A refresh the server put off (here its retry after a failed attempt) is
/// not started when another process renewed the tokens meanwhile: the key
/// would rotate twice, and a refresh token be spent for nothing.
#[test]
fn a_put_off_refresh_is_dropped_when_another_process_renewed_the_tokens() {
    let oauth = OAuthMock::start();
    let env = env_for(
        &oauth,
        &[
            ("IFLOW_REFRESH_INTERVAL", "200ms"),
            ("IFLOW_REFRESH_LEAD", "1m"),
            ("IFLOW_REFRESH_RETRY_MIN", "3s"),
            ("IFLOW_STORE_RESCAN_INTERVAL", "100ms"),
        ],
    );
    let account = account_file(
        OLD_KEY,
        "http://127.0.0.1:9/v1",
        Some(("a", Span::seconds(30))),
    );
    env.write_account(&account);
    let uuid = uuid_of(&account);
    oauth.script(
        "rt-a",
        vec![
            TokenReply::ServerError,
            TokenReply::tokens("at-b", "rt-b", 7 * 86_400, NEW_KEY),
        ],
    );
    let server = env.serve();
    // The server's own attempt fails; it retries in about 3 s.
    oauth.wait_token_requests("rt-a", 1, WAIT);
    // Meanwhile the CLI refreshes the account.
    env.run(&["token", "refresh", &uuid]).assert_ok();
    assert_eq!(env.account(&uuid)["oauth_refresh_token"], "rt-b");
    // Past the retry's time: the server saw the new tokens and let them be.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(oauth.token_requests("rt-a").len(), 2);
    assert!(oauth.token_requests("rt-b").is_empty());
    let log = server.terminate().stderr;
    assert!(log.contains("renewed meanwhile"), "{log}");
}
