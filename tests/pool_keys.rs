//! Gateway keys: made by the CLI (the plain key shown once, only its hash on
//! disk), checked by a running server (allow-list, per-key concurrency,
//! expiry, revocation), and account uuids as pinning tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{Response, chat, request};
use common::pool::{cli_ok, create_key, pool, wait_until};
use common::{assert_error, secs, setup, snapshot, user_body};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn spawn_chat(addr: SocketAddr, key: &str, content: &str) -> std::thread::JoinHandle<Response> {
    let (key, body) = (key.to_string(), user_body("glm-5", content));
    std::thread::spawn(move || chat(addr, &key, &body))
}

#[test]
fn key_create_prints_the_key_once_and_stores_only_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--name",
        "ci",
        "--models",
        "a,glm-*",
        "--max-concurrency",
        "2",
        "--expires-in",
        "1h",
        "--admin",
    ];
    let before = chrono::Utc::now();
    let (id, plain) = create_key(dir.path(), &args);
    let random = plain.strip_prefix("sk-iflow-").unwrap();
    assert_eq!(random.len(), 43, "{plain}");
    assert!(
        random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("keys/{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(file["id"], id.as_str());
    assert_eq!(file["hash"], hex_sha256(&plain).as_str());
    assert_eq!(file["prefix"], &plain[..13]);
    assert_eq!(file["name"], "ci");
    assert_eq!(file["admin"], true);
    assert_eq!(file["allowed_models"], serde_json::json!(["a", "glm-*"]));
    assert_eq!(file["max_concurrency"], 2);
    let expires = chrono::DateTime::parse_from_rfc3339(file["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let hour = chrono::Duration::hours(1);
    assert!(expires >= before + hour && expires <= chrono::Utc::now() + hour);

    let listed = cli_ok(dir.path(), &["key", "list"]);
    let json = cli_ok(dir.path(), &["key", "list", "--json"]);
    for out in [&listed, &json] {
        assert!(!out.contains(random), "the key is shown again: {out}");
    }
    assert!(
        listed.contains(&id) && listed.contains("active"),
        "{listed}"
    );
    let rows: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["state"], "active");
    assert_eq!(rows[0]["admin"], true);
    assert!(rows[0].get("hash").is_none(), "{json}");

    // Nowhere on disk, not even the random part.
    for (path, bytes) in snapshot(dir.path()) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(random), "{} holds the key", path.display());
    }
}

#[test]
fn a_key_created_while_the_server_runs_works_at_once() {
    let s = setup(&[("IFLOW_STORE_RESCAN_INTERVAL", "1h")]);
    let (_, key) = create_key(s.dir.path(), &[]);
    let resp = chat(s.gw.addr, &key, &user_body("glm-5", "fresh key"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(s.mock.requests().len(), 1);

    let unknown = format!("sk-iflow-{}", "x".repeat(43));
    let resp = chat(s.gw.addr, &unknown, &user_body("glm-5", "hi"));
    assert_error(&resp, 401, "authentication_error", "invalid_api_key");
    assert_eq!(s.mock.requests().len(), 1);
}

#[test]
fn a_revoked_key_is_refused_from_the_next_rescan_on() {
    let s = setup(&[("IFLOW_STORE_RESCAN_INTERVAL", "200ms")]);
    let (id, key) = create_key(s.dir.path(), &[]);
    let (_, other) = create_key(s.dir.path(), &[]);
    assert_eq!(chat(s.gw.addr, &key, &user_body("glm-5", "hi")).status, 200);

    let out = cli_ok(s.dir.path(), &["key", "revoke", &id]);
    assert!(out.starts_with(&format!("revoked {id} ")), "{out}");
    let again = cli_ok(s.dir.path(), &["key", "revoke", &id]);
    assert!(
        again.starts_with(&format!("{id} (")) && again.contains("was already revoked on "),
        "{again}"
    );
    let mut last = None;
    let refused = wait_until(secs(5), || {
        let resp = chat(s.gw.addr, &key, &user_body("glm-5", "after revoke"));
        let done = resp.status == 401;
        last = Some(resp);
        done
    });
    assert!(refused, "still accepted: {:?}", last.map(|r| r.text()));
    assert_error(
        &last.unwrap(),
        401,
        "authentication_error",
        "invalid_api_key",
    );
    assert_eq!(
        chat(s.gw.addr, &other, &user_body("glm-5", "hi")).status,
        200
    );
    let rows: Value =
        serde_json::from_str(&cli_ok(s.dir.path(), &["key", "list", "--json"])).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str());
    assert_eq!(row.unwrap()["state"], "revoked");
}

#[test]
fn a_model_outside_the_allow_list_is_403_and_never_sent() {
    let s = setup(&[]);
    let (_, key) = create_key(s.dir.path(), &["--models", "a,glm-*"]);
    for model in ["glm-5", "glm-4.6", "a"] {
        let resp = chat(s.gw.addr, &key, &user_body(model, "hi"));
        assert_eq!(resp.status, 200, "{model}: {}", resp.text());
    }
    for model in ["kimi-k2", "ab", "GLM-5"] {
        let resp = chat(s.gw.addr, &key, &user_body(model, "hi"));
        assert_error(&resp, 403, "permission_error", "forbidden");
    }
    assert_eq!(s.mock.requests().len(), 3);
}

#[test]
fn a_key_over_its_concurrency_limit_gets_429() {
    let s = setup(&[("IFLOW_CONCURRENCY", "4")]);
    let (_, key) = create_key(s.dir.path(), &["--max-concurrency", "1"]);
    let held = spawn_chat(s.gw.addr, &key, "scenario:hold");
    assert!(s.mock.wait_in_flight(1, secs(10)));

    let resp = chat(s.gw.addr, &key, &user_body("glm-5", "second"));
    assert_error(&resp, 429, "rate_limit_error", "key_concurrency_limit");
    assert_eq!(resp.header("retry-after"), Some("1"));
    // The account has room: another key is not held up.
    let (_, other) = create_key(s.dir.path(), &[]);
    assert_eq!(
        chat(s.gw.addr, &other, &user_body("glm-5", "x")).status,
        200
    );

    s.mock.release_all();
    assert_eq!(held.join().unwrap().status, 200);
    let resp = chat(s.gw.addr, &key, &user_body("glm-5", "third"));
    assert_eq!(
        resp.status,
        200,
        "the slot was not given back: {}",
        resp.text()
    );
    assert_eq!(s.mock.requests().len(), 3);
}

/// A key that expires while the server runs must stop working then, not at
/// the next rescan of the data directory.
#[test]
fn a_key_is_refused_once_it_expires() {
    let s = setup(&[("IFLOW_STORE_RESCAN_INTERVAL", "1h")]);
    let (id, key) = create_key(s.dir.path(), &["--expires-in", "3s"]);
    let file: Value = serde_json::from_slice(
        &std::fs::read(s.dir.path().join(format!("keys/{id}.json"))).unwrap(),
    )
    .unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(file["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(chat(s.gw.addr, &key, &user_body("glm-5", "hi")).status, 200);

    // Wall-clock expiry: nothing to wait on but the clock.
    assert!(wait_until(secs(6), || chrono::Utc::now() > expires));
    let resp = chat(s.gw.addr, &key, &user_body("glm-5", "expired"));
    assert_error(&resp, 401, "authentication_error", "invalid_api_key");
    assert_eq!(s.mock.requests().len(), 1);
    let rows: Value =
        serde_json::from_str(&cli_ok(s.dir.path(), &["key", "list", "--json"])).unwrap();
    assert_eq!(rows[0]["state"], "expired");
}

#[test]
fn an_account_uuid_pins_its_account_unless_keys_are_required() {
    let p = pool(2, &[]);
    for _ in 0..3 {
        let resp = chat(p.gw.addr, &p.accounts[1], &user_body("glm-5", "pinned"));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert_eq!(p.counts(), [0, 3]);
    // x-api-key works like a bearer token.
    let body = user_body("glm-5", "by x-api-key").to_string();
    let headers = [
        ("x-api-key", p.key.as_str()),
        ("content-type", "application/json"),
    ];
    let resp = request(
        p.gw.addr,
        "POST",
        "/v1/chat/completions",
        &headers,
        Some(body.as_bytes()),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());

    let strict = common::gateway::Gateway::start(p.dir.path(), &[("IFLOW_REQUIRE_KEY", "true")]);
    // A known account and an unknown uuid get the same answer, which says
    // why without telling which uuids are accounts.
    let unknown = uuid::Uuid::new_v4().to_string();
    let mut answers = Vec::new();
    for token in [&p.accounts[1], &unknown] {
        let resp = chat(strict.addr, token, &user_body("glm-5", "pinned"));
        assert_error(&resp, 401, "authentication_error", "invalid_api_key");
        answers.push(resp.text());
    }
    assert_eq!(answers[0], answers[1]);
    assert!(answers[0].contains("gateway keys only"), "{}", answers[0]);
    let resp = chat(strict.addr, &p.key, &user_body("glm-5", "pooled"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(p.total(), 5);
}

/// A key file that cannot be read is listed as such (it is not a key the
/// server accepts), so nobody takes the list for complete.
#[test]
fn key_list_shows_an_unreadable_key_file_as_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let (id, _) = create_key(dir.path(), &["--name", "fine"]);
    std::fs::write(dir.path().join("keys/key-broken0001.json"), b"{ half").unwrap();

    let listed = cli_ok(dir.path(), &["key", "list"]);
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert!(rows[0].starts_with(&id), "{listed}");
    assert!(
        rows[1].starts_with("key-broken0001") && rows[1].contains("unreadable"),
        "{listed}"
    );

    let json: Value =
        serde_json::from_str(&cli_ok(dir.path(), &["key", "list", "--json"])).unwrap();
    assert_eq!(json[1]["file"], "key-broken0001.json", "{json}");
    assert_eq!(json[1]["state"], "unreadable", "{json}");
}
