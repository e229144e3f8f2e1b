//! The usage ledger: one row per (account, gateway key, model) with requests,
//! errors and the upstream's token counts, written in batches to
//! `usage/ledger.json`, shown by `iflow-actix usage --json` and by
//! `GET /v1/usage` (admin keys only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{chat, get};
use common::gateway::Gateway;
use common::mock::Mock;
use common::pool::{Pool, cli_ok, create_key, pool, wait_until};
use common::{assert_error, secs, stream_body, user_body};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// (account, key, model) → [requests, errors, prompt, completion].
type Rows = BTreeMap<(String, String, String), [u64; 4]>;

fn rows_of(v: &Value) -> Rows {
    let mut out = Rows::new();
    for r in v.as_array().expect("rows") {
        let s = |k: &str| r[k].as_str().expect("text field").to_string();
        let n = |k: &str| r[k].as_u64().expect("count field");
        let slot = (s("account"), s("key"), s("model"));
        let counts = [
            n("requests"),
            n("errors"),
            n("prompt_tokens"),
            n("completion_tokens"),
        ];
        assert!(out.insert(slot, counts).is_none(), "duplicate row {r}");
        assert!(r["last_used_at"].is_string(), "{r}");
    }
    out
}

fn ledger_rows(dir: &Path) -> Option<Rows> {
    let bytes = std::fs::read(dir.join("usage/ledger.json")).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    Some(rows_of(&v["rows"]))
}

/// What the ledger must say, from what each mock received: the key and
/// model follow from the message, the outcome from the mock's scenario
/// (a completion or a stream reports 11 prompt and 7 completion tokens).
fn expected(p: &Pool, model_and_key: impl Fn(&str) -> (&'static str, String)) -> Rows {
    let mut out = Rows::new();
    for (i, m) in p.mocks.iter().enumerate() {
        for r in m.requests() {
            let (model, key) = model_and_key(&common::pool::last_user_text(&r.body));
            let ok = matches!(r.scenario.as_str(), "complete" | "stream");
            let row = out
                .entry((p.accounts[i].clone(), key, model.to_string()))
                .or_default();
            let tokens = if ok { [0, 0, 11, 7] } else { [0, 1, 0, 0] };
            row[0] += 1;
            for k in 1..4 {
                row[k] += tokens[k];
            }
        }
    }
    out
}

#[test]
fn the_ledger_counts_requests_errors_and_tokens_per_account_key_and_model() {
    let p = pool(2, &[("IFLOW_USAGE_FLUSH_INTERVAL", "200ms")]);
    for k in 0..3 {
        assert_eq!(p.chat(&format!("hi #{k}")).status, 200);
    }
    assert_eq!(p.chat("scenario:status:400").status, 400);
    for k in 0..2 {
        let resp = chat(
            p.gw.addr,
            &p.key,
            &stream_body("kimi-k2", &format!("stream #{k}")),
        );
        assert_eq!(resp.status, 200);
    }
    let pinned = chat(p.gw.addr, &p.accounts[1], &user_body("qwen3-max", "pinned"));
    assert_eq!(pinned.status, 200);
    // A failover: an error on account 0, the answer from account 1.
    p.mocks[0].force("status:500");
    let mut tried = false;
    for k in 0..2 {
        assert_eq!(p.chat(&format!("probe #{k}")).status, 200);
        tried |= p.mocks[0]
            .requests()
            .last()
            .is_some_and(|r| r.scenario == "status:500");
        if tried {
            break;
        }
    }
    assert!(tried, "account 0 was never tried");

    let key_id = p.key_id.clone();
    let want = expected(&p, |text| {
        if text.starts_with("stream") {
            ("kimi-k2", key_id.clone())
        } else if text == "pinned" {
            ("qwen3-max", "-".to_string())
        } else {
            ("glm-5", key_id.clone())
        }
    });
    let errors: u64 = want.values().map(|r| r[1]).sum();
    assert_eq!(errors, 2, "the 400 and the failed-over 500: {want:?}");
    let flushed = wait_until(secs(5), || {
        ledger_rows(p.dir.path()).as_ref() == Some(&want)
    });
    assert!(
        flushed,
        "ledger {:?}\nwanted {want:?}",
        ledger_rows(p.dir.path())
    );
    for (i, m) in p.mocks.iter().enumerate() {
        assert_eq!(p.file(i)["request_count"], m.requests().len() as u64);
    }

    let cli: Value = serde_json::from_str(&cli_ok(p.dir.path(), &["usage", "--json"])).unwrap();
    assert_eq!(rows_of(&cli["rows"]), want);
    assert!(cli["since"].is_string(), "{cli}");
    // The table names a key by its id and the name it was created with.
    let table = cli_ok(p.dir.path(), &["usage"]);
    let key_row = format!("{} (pool) ", p.key_id);
    assert!(table.lines().any(|l| l.starts_with(&key_row)), "{table}");

    let (_, admin) = create_key(p.dir.path(), &["--admin"]);
    let resp = get(p.gw.addr, "/v1/usage", Some(&admin));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let api = resp.json();
    assert_eq!(api["object"], "usage");
    // The API names accounts by short id (a full uuid is a bearer token).
    let short: std::collections::BTreeMap<_, _> = want
        .iter()
        .map(|((a, k, m), r)| ((a[..8].to_string(), k.clone(), m.clone()), *r))
        .collect();
    assert_eq!(rows_of(&api["rows"]), short);
    assert!(!resp.text().contains(p.accounts[0].as_str()));
    let total = |f: &dyn Fn(&(String, String, String)) -> bool, n: usize| -> u64 {
        want.iter().filter(|(s, _)| f(s)).map(|(_, r)| r[n]).sum()
    };
    let by_key = &api["by_key"][&p.key_id];
    assert_eq!(by_key["requests"], total(&|s| s.1 == p.key_id, 0));
    assert_eq!(by_key["errors"], 2);
    assert_eq!(api["by_key"]["-"]["requests"], 1);
    assert_eq!(api["by_model"]["kimi-k2"]["prompt_tokens"], 22);
    let acc0 = &api["by_account"][&p.accounts[0][..8]];
    assert_eq!(acc0["requests"], total(&|s| s.0 == p.accounts[0], 0));
}

#[test]
fn v1_usage_needs_an_admin_gateway_key() {
    let p = pool(1, &[]);
    let resp = get(p.gw.addr, "/v1/usage", None);
    assert_error(&resp, 401, "authentication_error", "invalid_api_key");
    for token in [p.key.as_str(), p.accounts[0].as_str()] {
        let resp = get(p.gw.addr, "/v1/usage", Some(token));
        assert_error(&resp, 403, "permission_error", "forbidden");
    }
    let resp = get(p.gw.addr, "/v1/usage", Some("sk-iflow-unknown"));
    assert_error(&resp, 401, "authentication_error", "invalid_api_key");
}

#[test]
fn usage_is_written_at_shutdown_and_adds_up_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start();
    let uuid = common::gateway::import(dir.path(), common::API_KEY, &mock.base_url(), "iflow");
    let (id, key) = create_key(dir.path(), &[]);
    let env = [("IFLOW_USAGE_FLUSH_INTERVAL", "1h")];
    for (run, n) in [(1, 2), (2, 1)] {
        let mut gw = Gateway::start(dir.path(), &env);
        for _ in 0..n {
            assert_eq!(chat(gw.addr, &key, &user_body("glm-5", "hi")).status, 200);
        }
        assert!(
            gw.terminate(secs(10)).is_some_and(|(e, _)| e.success()),
            "run {run}"
        );
    }
    let want = Rows::from([((uuid, id, "glm-5".to_string()), [3, 0, 33, 21])]);
    assert_eq!(ledger_rows(dir.path()), Some(want));
}

#[test]
fn a_call_the_client_abandoned_is_booked_as_a_failed_attempt_and_logged_499() {
    let p = pool(1, &[("IFLOW_METRICS_PUBLIC", "true")]);
    let (_, admin) = create_key(p.dir.path(), &["--admin"]);
    // Before the answer starts: a held non-stream call, and a held stream
    // whose reply head never came.
    for (k, body) in [
        user_body("glm-5", "scenario:hold"),
        stream_body("glm-5", "scenario:hold"),
    ]
    .iter()
    .enumerate()
    {
        let raw = common::client::chat_request(&p.key, body);
        let mut gone = common::client::connect(p.gw.addr);
        std::io::Write::write_all(&mut gone, &raw).unwrap();
        assert!(
            p.mocks[0].wait_in_flight(1, secs(10)),
            "call {k}: {}",
            p.gw.log()
        );
        let _ = gone.shutdown(std::net::Shutdown::Both);
        drop(gone);
        assert!(
            wait_until(secs(5), || p.mocks[0].in_flight() == 0),
            "call {k} was not cancelled"
        );
    }
    let booked = wait_until(secs(5), || {
        let api = get(p.gw.addr, "/v1/usage", Some(&admin)).json();
        let by_key = &api["by_key"][&p.key_id];
        by_key["requests"] == 2 && by_key["errors"] == 2
    });
    assert!(
        booked,
        "{}",
        get(p.gw.addr, "/v1/usage", Some(&admin)).text()
    );
    let metrics = get(p.gw.addr, "/metrics", None).text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("iflow_requests_total{")
                && l.contains("status=\"499\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );
    let log = p.gw.log();
    assert_eq!(
        log.matches("POST /v1/chat/completions 499 ").count(),
        2,
        "{log}"
    );
}
