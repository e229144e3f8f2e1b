//! One refresh per account across processes. iFlow rotates refresh tokens
//! (the mock here rejects a reused one), so two processes refreshing the same
//! account at once must spend the token once: the second waits for the
//! first's lock and takes the tokens it stored. `token list` shows
//! `refreshing` while some process holds that lock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts_support;

use accounts_support::{OAuthMock, TestEnv, TokenReply, account_file, uuid_of};
use chrono::Duration as Span;
use serde_json::Value;
use std::time::{Duration, Instant};

const OLD_KEY: &str = "sk-old-00000000000000000001";
const NEW_KEY: &str = "sk-new-00000000000000000002";
const WAIT: Duration = Duration::from_secs(15);

/// An OAuth account (`rt-r`, one hour left) whose refresh token works once:
/// the first use rotates it to `rt-new`, a second use is `invalid_grant`.
fn setup(delay: Duration) -> (TestEnv, OAuthMock, String) {
    let oauth = OAuthMock::start();
    let mut env = TestEnv::new();
    env.set_all(oauth.env())
        .set("IFLOW_WORKERS", "1")
        .set("IFLOW_SHUTDOWN_TIMEOUT", "2s");
    let account = account_file(
        OLD_KEY,
        "http://127.0.0.1:9/v1",
        Some(("r", Span::hours(1))),
    );
    env.write_account(&account);
    oauth.script(
        "rt-r",
        vec![
            TokenReply::tokens("at-new", "rt-new", 3 * 86_400, NEW_KEY),
            TokenReply::InvalidGrant,
        ],
    );
    oauth.set_token_delay(delay);
    (env, oauth, uuid_of(&account))
}

/// The account ended with the rotated tokens and no state.
fn assert_refreshed_once(env: &TestEnv, oauth: &OAuthMock, uuid: &str) {
    assert_eq!(
        oauth.token_requests("rt-r").len(),
        1,
        "{:#?}",
        oauth.requests()
    );
    assert!(oauth.token_requests("rt-new").is_empty());
    let stored = env.account(uuid);
    assert_eq!(stored["oauth_access_token"], "at-new");
    assert_eq!(stored["oauth_refresh_token"], "rt-new");
    assert_eq!(stored["api_key"], NEW_KEY);
    assert!(stored.get("state").is_none(), "{stored:#}");
    assert_eq!(list_state(env, uuid), "active");
    assert_eq!(lock_files(env), Vec::<String>::new());
}

fn list_state(env: &TestEnv, uuid: &str) -> String {
    let ran = env.run(&["token", "list", "--json"]);
    ran.assert_ok();
    let rows: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    let row = rows.iter().find(|r| r["uuid"] == uuid).unwrap();
    row["state"].as_str().unwrap().to_string()
}

/// Files in `accounts/` other than account files and the store's `.lock`.
fn lock_files(env: &TestEnv) -> Vec<String> {
    std::fs::read_dir(env.accounts_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock" && !n.ends_with(".json"))
        .collect()
}

#[test]
fn two_cli_refreshes_at_once_spend_the_refresh_token_once() {
    let (env, oauth, uuid) = setup(Duration::from_millis(1500));
    let first = env.spawn(&["token", "refresh", &uuid]);
    let second = env.spawn(&["token", "refresh", &uuid]);
    let (first, second) = (first.wait(WAIT), second.wait(WAIT));
    first.assert_ok();
    second.assert_ok();
    let outputs = [first.stdout.as_str(), second.stdout.as_str()];
    let refreshed = outputs
        .iter()
        .filter(|o| o.starts_with(&format!("account {uuid}: refreshed, valid until ")))
        .count();
    let adopted = outputs
        .iter()
        .filter(|o| o.contains("already refreshed by another process"))
        .count();
    assert_eq!((refreshed, adopted), (1, 1), "{first:#?}\n{second:#?}");
    assert_refreshed_once(&env, &oauth, &uuid);
}

#[test]
fn a_cli_refresh_during_the_servers_waits_and_takes_its_tokens() {
    let (mut env, oauth, uuid) = setup(Duration::from_secs(2));
    env.set("IFLOW_REFRESH_INTERVAL", "200ms");
    let mut server = env.serve();
    // The server's refresh is now held by the mock, with the lock taken.
    oauth.wait_token_requests("rt-r", 1, WAIT);
    let cli = env.run(&["token", "refresh", &uuid]);
    cli.assert_ok();
    assert!(
        cli.stdout.contains("already refreshed by another process"),
        "{cli:#?}"
    );
    assert!(cli.stdout.contains("the API key was rotated"), "{cli:#?}");
    server.running.wait_stderr_line("tokens refreshed", WAIT);
    let log = server.terminate().stderr;
    assert!(
        !log.contains("needs `token login`") && !log.contains("no longer valid"),
        "{log}"
    );
    assert_refreshed_once(&env, &oauth, &uuid);
}

#[test]
fn a_server_refresh_during_a_cli_refresh_waits_and_takes_its_tokens() {
    let (mut env, oauth, uuid) = setup(Duration::from_secs(2));
    env.set("IFLOW_REFRESH_INTERVAL", "200ms");
    let cli = env.spawn(&["token", "refresh", &uuid]);
    oauth.wait_token_requests("rt-r", 1, WAIT);
    // The server loads the old tokens and finds them due at once.
    let mut server = env.serve();
    server
        .running
        .wait_stderr_line("tokens were renewed by another process", WAIT);
    let cli = cli.wait(WAIT);
    cli.assert_ok();
    assert!(cli.stdout.contains(": refreshed, valid until"), "{cli:#?}");
    // Several more scans: the adopted tokens are not due, nothing is spent.
    std::thread::sleep(Duration::from_millis(800));
    let log = server.terminate().stderr;
    assert!(!log.contains("refresh failed"), "{log}");
    assert_refreshed_once(&env, &oauth, &uuid);
}

#[test]
fn token_list_shows_refreshing_while_a_refresh_holds_the_lock() {
    let (env, oauth, uuid) = setup(Duration::from_secs(3));
    let before = list_state(&env, &uuid);
    assert_eq!(before, "expiring");
    let refresh = env.spawn(&["token", "refresh", &uuid]);
    oauth.wait_token_requests("rt-r", 1, WAIT);
    assert_eq!(list_state(&env, &uuid), "refreshing");
    let table = env.run(&["token", "list"]);
    table.assert_ok();
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(uuid.as_str()))
        .unwrap();
    assert!(
        row.split_whitespace().any(|c| c == "refreshing"),
        "{table:#?}"
    );
    // Listing only tries the lock: the refresh was not held up by it.
    let started = Instant::now();
    refresh.wait(WAIT).assert_ok();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_refreshed_once(&env, &oauth, &uuid);
}

#[test]
fn a_server_waiting_for_another_processs_refresh_still_stops_promptly() {
    // The CLI's refresh holds the lock for 30 s; the server's refresher
    // waits for it on a blocking thread, which must not delay its exit.
    let (mut env, oauth, uuid) = setup(Duration::from_secs(30));
    env.set("IFLOW_REFRESH_INTERVAL", "200ms");
    let cli = env.spawn(&["token", "refresh", &uuid]);
    oauth.wait_token_requests("rt-r", 1, WAIT);
    let server = env.serve();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let ran = server.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the server took {:?} to stop",
        started.elapsed()
    );
    assert!(ran.stderr.contains("graceful shutdown"), "{}", ran.stderr);
    drop(cli);
}
