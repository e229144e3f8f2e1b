//! Health endpoints (no auth): `/health/live` answers while the process
//! runs; `/health/ready` and `/health` follow whether any account is usable
//! (none configured, all quarantined, all cooling down), as the pool does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::get;
use common::gateway::Gateway;
use common::pool::{cli_ok, create_key, pool, wait_until};
use common::prometheus::parse;
use common::{assert_error, secs};
use serde_json::json;

#[test]
fn without_accounts_the_gateway_is_live_but_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = create_key(dir.path(), &[]);
    let gw = Gateway::start(dir.path(), &[]);
    let live = get(gw.addr, "/health/live", None);
    assert_eq!((live.status, live.json()), (200, json!({"status": "ok"})));
    assert_error(
        &get(gw.addr, "/health/ready", None),
        503,
        "server_error",
        "unavailable",
    );
    let summary = get(gw.addr, "/health", None);
    assert_eq!(summary.status, 200);
    assert_eq!(
        summary.json(),
        json!({"status": "ok", "ready": false, "accounts": 0, "usable_accounts": 0, "in_flight": 0, "waiting": 0})
    );
    let resp = common::client::chat(gw.addr, &key, &common::user_body("glm-5", "hi"));
    assert_error(&resp, 503, "server_error", "unavailable");
}

#[test]
fn ready_follows_quarantine_and_reset() {
    let p = pool(
        2,
        &[
            ("IFLOW_STORE_RESCAN_INTERVAL", "200ms"),
            ("IFLOW_METRICS_PUBLIC", "true"),
        ],
    );
    let ready = get(p.gw.addr, "/health/ready", None);
    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.json(),
        json!({"status": "ready", "usable_accounts": 2})
    );

    for m in &p.mocks {
        m.force("biz:434");
    }
    let resp = p.chat("both refused");
    assert_error(&resp, 401, "authentication_error", "upstream_key_invalid");
    assert_eq!(p.counts(), [1, 1]);
    assert_error(
        &get(p.gw.addr, "/health/ready", None),
        503,
        "server_error",
        "unavailable",
    );
    let summary = get(p.gw.addr, "/health", None).json();
    assert_eq!(summary["ready"], false, "{summary}");
    assert_eq!(
        (
            summary["accounts"].as_u64(),
            summary["usable_accounts"].as_u64()
        ),
        (Some(2), Some(0))
    );
    let metrics = parse(&get(p.gw.addr, "/metrics", None).text()).unwrap();
    for uuid in &p.accounts {
        let labels = [("account", &uuid[..8]), ("state", "key-invalid")];
        assert_eq!(metrics.value("iflow_account_state", &labels), Some(1.0));
    }
    // Nobody left to ask: refused at once, nothing sent.
    let resp = p.chat("nobody left");
    assert_error(&resp, 503, "server_error", "unavailable");
    assert_eq!(p.total(), 2);

    assert!(wait_until(secs(5), || p.file(1)["state"] == "key-invalid"));
    p.mocks[1].unforce();
    cli_ok(p.dir.path(), &["token", "reset", &p.accounts[1][..8]]);
    assert!(p.wait_usable(1), "the server did not pick up the reset");
    let ready = get(p.gw.addr, "/health/ready", None);
    assert_eq!(
        ready.json(),
        json!({"status": "ready", "usable_accounts": 1})
    );
    assert_eq!(p.chat("after reset").status, 200);
    assert_eq!(p.served("after reset"), [1]);
}

#[test]
fn an_account_cooling_down_is_not_ready() {
    let p = pool(1, &[]);
    p.mocks[0].force("status:429:30");
    let resp = p.chat("limited");
    assert_error(&resp, 429, "rate_limit_error", "upstream_rate_limited");
    assert_error(
        &get(p.gw.addr, "/health/ready", None),
        503,
        "server_error",
        "unavailable",
    );
    assert_eq!(get(p.gw.addr, "/health", None).json()["usable_accounts"], 0);
    assert_eq!(get(p.gw.addr, "/health/live", None).status, 200);
}
