//! An account whose upstream fails (429, 5xx, refused connection) before
//! any byte reached the client: the request moves to another account, and
//! the failing one rests (Retry-After, else exponential from
//! IFLOW_COOLDOWN_BASE, never above IFLOW_COOLDOWN_MAX), on disk too, until
//! the cooldown ends or `token reset`. Pinned requests still reach it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Utc};
use common::client::chat;
use common::gateway::{Gateway, import};
use common::mock::Mock;
use common::pool::{Pool, cli_ok, create_key, pool, upstream_key, wait_until};
use common::{account_file, assert_error, secs, user_body};
use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;

/// Sends pool requests until account `i`'s mock gets one more (the round
/// robin reaches it within one request per account); each must succeed.
/// Returns the text of the request that reached it.
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

/// Waits for the account file's `cooldown_until` to be at least `min`.
fn cooldown_on_disk(dir: &Path, uuid: &str, min: DateTime<Utc>) -> DateTime<Utc> {
    let read = || {
        account_file(dir, uuid)["cooldown_until"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let found = wait_until(secs(5), || read().is_some_and(|t| t >= min));
    assert!(
        found,
        "cooldown_until {:?}: {}",
        read(),
        account_file(dir, uuid)
    );
    read().unwrap()
}

/// `until` lies in [from + d - 1 s, to + d + 1 s].
fn assert_about(until: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>, d: i64) {
    let d = chrono::Duration::seconds(d);
    let slack = chrono::Duration::seconds(1);
    assert!(
        until >= from + d - slack && until <= to + d + slack,
        "cooldown_until {until} is not {d} after [{from}, {to}]"
    );
}

fn token_state(dir: &Path, uuid: &str) -> Value {
    let rows: Value = serde_json::from_str(&cli_ok(dir, &["token", "list", "--json"])).unwrap();
    let row = rows.as_array().unwrap().iter().find(|r| r["uuid"] == uuid);
    row.unwrap_or_else(|| panic!("{uuid} not listed: {rows}"))["state"].clone()
}

fn assert_no_uuid_in_log(gw: &Gateway, accounts: &[String]) {
    let log = gw.log();
    for uuid in accounts {
        assert!(
            !log.contains(uuid.as_str()),
            "full uuid {uuid} in the log:\n{log}"
        );
    }
}

#[test]
fn a_429_moves_the_request_and_rests_the_account_for_retry_after_until_reset() {
    let p = pool(2, &[("IFLOW_STORE_RESCAN_INTERVAL", "200ms")]);
    p.mocks[0].force("status:429:30");
    let from = Utc::now();
    let text = until_tried(&p, 0, "probe");
    let to = Utc::now();
    assert_eq!(p.served(&text), [0, 1], "tried on 0, answered by 1");
    let until = cooldown_on_disk(p.dir.path(), &p.accounts[0], from);
    assert_about(until, from, to, 30);

    for k in 0..4 {
        assert_eq!(p.chat(&format!("resting #{k}")).status, 200);
    }
    assert_eq!(
        p.mocks[0].requests().len(),
        1,
        "the pool used a cooling account"
    );
    assert_eq!(p.usable(), 1);
    assert_eq!(token_state(p.dir.path(), &p.accounts[0]), "cooldown");
    assert_eq!(token_state(p.dir.path(), &p.accounts[1]), "active");
    let table = cli_ok(p.dir.path(), &["token", "list"]);
    let row = table
        .lines()
        .find(|l| l.starts_with(p.accounts[0].as_str()));
    assert!(row.is_some_and(|r| r.contains(" cooldown ")), "{table}");

    let out = cli_ok(p.dir.path(), &["token", "reset", &p.accounts[0][..8]]);
    assert_eq!(
        out,
        format!("account {}: cooldown and state cleared\n", p.accounts[0])
    );
    assert!(p.file(0).get("cooldown_until").is_none(), "{}", p.file(0));
    p.mocks[0].unforce();
    assert!(p.wait_usable(2), "the server did not pick up the reset");
    let back = until_tried(&p, 0, "after reset");
    assert_eq!(p.served(&back), [0]);
    assert_no_uuid_in_log(&p.gw, &p.accounts);
}

#[test]
fn retry_after_is_capped_by_cooldown_max_and_pinned_requests_still_get_through() {
    let p = pool(2, &[("IFLOW_COOLDOWN_MAX", "10s")]);
    p.mocks[0].force("status:429:30");
    let from = Utc::now();
    until_tried(&p, 0, "probe");
    let to = Utc::now();
    assert_about(
        cooldown_on_disk(p.dir.path(), &p.accounts[0], from),
        from,
        to,
        10,
    );

    // Pinned: the upstream's answer, as it is, even while the account rests.
    let pinned = |text: &str| chat(p.gw.addr, &p.accounts[0], &user_body("glm-5", text));
    let resp = pinned("pinned refused");
    assert_error(&resp, 429, "rate_limit_error", "upstream_rate_limited");
    assert_eq!(resp.header("retry-after"), Some("30"));
    p.mocks[0].unforce();
    let resp = pinned("pinned ok");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(p.served("pinned ok"), [0]);
    assert_eq!(p.chat("pooled").status, 200);
    assert_eq!(
        p.served("pooled"),
        [1],
        "the pool must still avoid account 0"
    );
}

#[test]
fn server_errors_rest_the_account_exponentially_from_the_base() {
    let p = pool(2, &[("IFLOW_COOLDOWN_BASE", "20s")]);
    p.mocks[0].force("status:500");
    let from = Utc::now();
    let text = until_tried(&p, 0, "probe");
    let to = Utc::now();
    assert_eq!(p.served(&text), [0, 1]);
    assert_about(
        cooldown_on_disk(p.dir.path(), &p.accounts[0], from),
        from,
        to,
        20,
    );

    // Further failures (pinned requests still reach it) double the rest.
    for (n, secs_) in [(1, 40), (2, 80)] {
        let from = Utc::now();
        let resp = chat(
            p.gw.addr,
            &p.accounts[0],
            &user_body("glm-5", &format!("pin {n}")),
        );
        let to = Utc::now();
        assert_error(&resp, 502, "upstream_error", "upstream_server_error");
        let min = from + chrono::Duration::seconds(secs_ - 1);
        assert_about(
            cooldown_on_disk(p.dir.path(), &p.accounts[0], min),
            from,
            to,
            secs_,
        );
    }
    assert_eq!(p.mocks[0].requests().len(), 3);
}

#[test]
fn a_refused_connection_moves_the_request_and_rests_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = import(
        dir.path(),
        &upstream_key(0),
        &format!("http://{closed}/v1"),
        "iflow",
    );
    let live = Mock::start();
    let alive = import(dir.path(), &upstream_key(1), &live.base_url(), "iflow");
    let (_, key) = create_key(dir.path(), &[]);
    let gw = Gateway::start(dir.path(), &[("IFLOW_COOLDOWN_BASE", "30s")]);

    let from = Utc::now();
    for k in 0..2 {
        let resp = chat(gw.addr, &key, &user_body("glm-5", &format!("req {k}")));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let to = Utc::now();
    assert_eq!(live.requests().len(), 2);
    assert_about(cooldown_on_disk(dir.path(), &dead, from), from, to, 30);
    assert!(
        account_file(dir.path(), &alive)
            .get("cooldown_until")
            .is_none()
    );
    assert_no_uuid_in_log(&gw, &[dead, alive]);
}

#[test]
fn a_cooldown_on_disk_outlives_a_restart() {
    let mut p = pool(2, &[]);
    p.mocks[0].force("status:429:30");
    until_tried(&p, 0, "probe");
    cooldown_on_disk(p.dir.path(), &p.accounts[0], Utc::now());
    assert!(p.gw.terminate(secs(10)).is_some_and(|(e, _)| e.success()));

    p.mocks[0].unforce();
    p.gw = Gateway::start(p.dir.path(), &[]);
    assert_eq!(p.usable(), 1);
    for k in 0..3 {
        assert_eq!(p.chat(&format!("after restart #{k}")).status, 200);
    }
    assert_eq!(
        p.mocks[0].requests().len(),
        1,
        "a restart forgot the cooldown"
    );
}
