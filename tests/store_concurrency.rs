//! The server and the CLI writing one data dir at once: usage flushes and
//! `token import`/`token delete` must not lose each other's changes, and the
//! running server must see what the CLI did.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts_support;

use accounts_support::{
    OAuthMock, TestEnv, TokenReply, UpstreamMock, UpstreamReply, account_file, chat, uuid_of,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SHARED_KEY: &str = "sk-shared-0000000000000000001";
const ROUNDS: usize = 10;
const WAIT: Duration = Duration::from_secs(10);

/// A server whose usage flushes and directory rescans run every `flush` and
/// `rescan`.
fn env_for(rescan: &str, flush: &str) -> TestEnv {
    let mut env = TestEnv::new();
    env.set("IFLOW_WORKERS", "2")
        .set("IFLOW_CONCURRENCY", "4")
        .set("IFLOW_SHUTDOWN_TIMEOUT", "5s")
        .set("IFLOW_USAGE_FLUSH_INTERVAL", flush)
        .set("IFLOW_STORE_RESCAN_INTERVAL", rescan);
    env
}

fn new_key(i: usize) -> String {
    format!("sk-cli-{i:02}-000000000000000000")
}

#[test]
fn usage_flushes_and_cli_imports_lose_nothing() {
    let upstream = UpstreamMock::start();
    let env = env_for("300ms", "200ms");
    let shared = account_file(SHARED_KEY, &upstream.base_url("v1"), None);
    env.write_account(&shared);
    let uuid = uuid_of(&shared);
    let server = env.serve();

    // Chat requests run for as long as the CLI keeps writing.
    let stop = Arc::new(AtomicBool::new(false));
    let (port, chat_uuid, chat_stop) = (server.port, uuid.clone(), stop.clone());
    let chatter = std::thread::spawn(move || {
        let mut sent = 0usize;
        while (!chat_stop.load(Ordering::Relaxed) || sent < 20) && sent < 400 {
            let reply = chat(port, &chat_uuid);
            assert_eq!(reply.status, 200, "request {sent}: {}", reply.text());
            sent += 1;
        }
        sent
    });
    for i in 0..ROUNDS {
        let base = upstream.base_url(&format!("b{i}"));
        let same = env.run(&[
            "token",
            "import",
            "--api-key",
            SHARED_KEY,
            "--base-url",
            &base,
        ]);
        same.assert_ok();
        assert_eq!(same.account_uuid(), uuid);
        let other = env.run(&[
            "token",
            "import",
            "--api-key",
            &new_key(i),
            "--base-url",
            &base,
        ]);
        other.assert_ok();
    }
    stop.store(true, Ordering::Relaxed);
    let sent = chatter.join().unwrap();
    let ran = server.terminate();
    assert!(ran.status.success(), "{ran:#?}");

    // Every file parses (accounts() panics otherwise) and no temp file is left.
    let accounts = env.accounts();
    let leftovers: Vec<_> = std::fs::read_dir(env.accounts_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(accounts.len(), 1 + ROUNDS, "{accounts:#?}");
    let a = &accounts[&uuid];
    assert_eq!(
        a["request_count"], sent,
        "every served request is counted once"
    );
    assert_eq!(upstream.calls().len(), sent);
    assert_ne!(a["last_used_at"], "0001-01-01T00:00:00Z");
    assert_eq!(
        a["base_url"],
        upstream.base_url(&format!("b{}", ROUNDS - 1))
    );
    for i in 0..ROUNDS {
        let found: Vec<_> = accounts
            .values()
            .filter(|a| a["api_key"] == new_key(i))
            .collect();
        assert_eq!(found.len(), 1, "key {i}: {accounts:#?}");
        assert_eq!(found[0]["base_url"], upstream.base_url(&format!("b{i}")));
        assert_eq!(found[0]["request_count"], 0);
    }
}

#[test]
fn account_added_by_the_cli_is_usable_at_once() {
    let upstream = UpstreamMock::start();
    // No rescan during the test: only the on-demand disk check can find it.
    let env = env_for("1h", "200ms");
    let server = env.serve();
    let ran = env.run(&[
        "token",
        "import",
        "--api-key",
        SHARED_KEY,
        "--base-url",
        &upstream.base_url("v1"),
    ]);
    ran.assert_ok();
    let reply = chat(server.port, &ran.account_uuid());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(upstream.keys(), [SHARED_KEY]);
}

/// Sends chat requests until one gets `status`; returns how long that took.
fn until_status(port: u16, uuid: &str, status: u16) -> Duration {
    let start = Instant::now();
    loop {
        let reply = chat(port, uuid);
        if reply.status == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < WAIT,
            "still {} after {WAIT:?}: {}",
            reply.status,
            reply.text()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn account_deleted_by_the_cli_is_refused_within_the_rescan_interval() {
    let upstream = UpstreamMock::start();
    let env = env_for("300ms", "200ms");
    let a = account_file(SHARED_KEY, &upstream.base_url("v1"), None);
    env.write_account(&a);
    let server = env.serve();
    assert_eq!(chat(server.port, &uuid_of(&a)).status, 200);

    env.run(&["token", "delete", "--yes", &uuid_of(&a)])
        .assert_ok();
    let took = until_status(server.port, &uuid_of(&a), 401);
    assert!(took < Duration::from_secs(2), "refused only after {took:?}");
    let reply = chat(server.port, &uuid_of(&a));
    assert_eq!(reply.json()["error"]["code"], "invalid_api_key");

    // The final usage flush must not bring the deleted account back.
    assert!(server.terminate().status.success());
    assert!(env.accounts().is_empty(), "{:#?}", env.accounts());
}

/// Usage flushes run meanwhile: a flush rereads the file the CLI changed, and
/// the change must still reach the upstream actor (it once did not, ever).
#[test]
fn new_base_url_from_the_cli_reaches_the_running_server() {
    let upstream = UpstreamMock::start();
    let env = env_for("300ms", "100ms");
    let a = account_file(SHARED_KEY, &upstream.base_url("v1"), None);
    env.write_account(&a);
    let server = env.serve();
    assert_eq!(chat(server.port, &uuid_of(&a)).status, 200);

    let moved = upstream.base_url("v2");
    env.run(&[
        "token",
        "import",
        "--api-key",
        SHARED_KEY,
        "--base-url",
        &moved,
    ])
    .assert_ok();
    let start = Instant::now();
    while upstream.calls().last().unwrap().path != "/v2/chat/completions" {
        assert!(start.elapsed() < WAIT, "{:#?}", upstream.calls());
        assert_eq!(chat(server.port, &uuid_of(&a)).status, 200);
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Sends chat requests until the upstream sees `key`.
fn until_key(port: u16, uuid: &str, upstream: &UpstreamMock, key: &str) {
    let start = Instant::now();
    while upstream.keys().last().map(String::as_str) != Some(key) {
        assert!(start.elapsed() < WAIT, "{:#?}", upstream.calls());
        assert_eq!(chat(port, uuid).status, 200);
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `token refresh` while the server runs, with usage flushes meanwhile.
#[test]
fn key_refreshed_by_the_cli_reaches_the_running_server() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    let mut env = env_for("300ms", "100ms");
    env.set_all(oauth.env()).set("IFLOW_REFRESH_LEAD", "1m");
    let a = account_file(
        SHARED_KEY,
        &upstream.base_url("v1"),
        Some(("cli", chrono::Duration::days(7))),
    );
    env.write_account(&a);
    let rotated = "sk-rotated-000000000000000001";
    oauth.script(
        "rt-cli",
        vec![TokenReply::tokens(
            "at-cli2",
            "rt-cli2",
            7 * 86_400,
            rotated,
        )],
    );
    let server = env.serve();
    assert_eq!(chat(server.port, &uuid_of(&a)).status, 200);

    env.run(&["token", "refresh", &uuid_of(&a)]).assert_ok();
    until_key(server.port, &uuid_of(&a), &upstream, rotated);
    assert!(server.terminate().status.success());
    let stored = env.account(&uuid_of(&a));
    assert_eq!(stored["api_key"], rotated);
    assert_eq!(stored["oauth_refresh_token"], "rt-cli2");
}

/// iFlow rotates refresh tokens: once `token refresh` used one, it is dead.
/// A server that has not rescanned yet must still not refresh with it.
#[test]
fn server_refresh_after_a_cli_refresh_uses_the_stored_refresh_token() {
    let (oauth, upstream) = (OAuthMock::start(), UpstreamMock::start());
    // No rescan and no flush during the test: the server's copy stays old.
    let mut env = env_for("1h", "1h");
    env.set_all(oauth.env()).set("IFLOW_REFRESH_LEAD", "1m");
    let a = account_file(
        SHARED_KEY,
        &upstream.base_url("v1"),
        Some(("one", chrono::Duration::days(7))),
    );
    env.write_account(&a);
    let second = "sk-second-0000000000000000002";
    let third = "sk-third-00000000000000000003";
    let first_use = TokenReply::tokens("at-two", "rt-two", 7 * 86_400, second);
    oauth.script("rt-one", vec![first_use, TokenReply::InvalidGrant]);
    oauth.script(
        "rt-two",
        vec![TokenReply::tokens(
            "at-three",
            "rt-three",
            7 * 86_400,
            third,
        )],
    );
    upstream.script(SHARED_KEY, vec![UpstreamReply::Expired439]);
    let server = env.serve();

    env.run(&["token", "refresh", &uuid_of(&a)]).assert_ok();
    let reply = chat(server.port, &uuid_of(&a));
    let ran = server.terminate();
    let stored = env.account(&uuid_of(&a));
    assert!(
        stored.get("state").is_none(),
        "marked after a good CLI refresh: {stored:#}\n{}",
        ran.stderr
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        oauth.token_requests("rt-one").len(),
        1,
        "the used refresh token was sent again"
    );
}
