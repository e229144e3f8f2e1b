//! Which account may take which model: `token import --models` limits an
//! account to those models in the pool, `openai`-kind accounts join the pool
//! with the plain OpenAI wire format, and a model no account serves is 400.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{chat, get};
use common::fixtures::client_sse;
use common::gateway::Gateway;
use common::iflow::TRANSPORT_HEADERS;
use common::mock::Mock;
use common::pool::{cli_ok, create_key, import_models, pool, wait_until};
use common::{assert_error, secs, stream_body, user_body};
use serde_json::{Value, json};
use std::time::Duration;

const OPENAI_KEY: &str = "sk-openai-0123456789abcdef";

#[test]
fn accounts_with_models_receive_only_those_models() {
    let dir = tempfile::tempdir().unwrap();
    let (openai, iflow) = (Mock::start(), Mock::start());
    let o = import_models(
        dir.path(),
        OPENAI_KEY,
        &openai.base_url(),
        "openai",
        "m-one,m-two",
    );
    import_models(
        dir.path(),
        "sk-iflow-upstream-0123456789",
        &iflow.base_url(),
        "iflow",
        "glm-5",
    );
    let (_, key) = create_key(dir.path(), &[]);
    let gw = Gateway::start(dir.path(), &[]);

    for model in ["m-one", "glm-5", "m-two", "glm-5", "m-one"] {
        let resp = chat(gw.addr, &key, &user_body(model, &format!("for {model}")));
        assert_eq!(resp.status, 200, "{model}: {}", resp.text());
        assert_eq!(resp.json()["choices"][0]["message"]["content"], "Hello!");
    }
    let models = |m: &Mock| -> Vec<String> {
        let reqs = m.requests();
        reqs.iter()
            .map(|r| r.body["model"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(models(&openai), ["m-one", "m-two", "m-one"]);
    assert_eq!(models(&iflow), ["glm-5", "glm-5"]);

    let resp = chat(gw.addr, &key, &user_body("kimi-k2", "nobody"));
    assert_error(&resp, 400, "invalid_request_error", "model_not_available");
    assert_eq!(openai.requests().len() + iflow.requests().len(), 5);

    // The OpenAI wire format: the client's body as sent, a bearer key, nothing iFlow.
    let req = openai.last_request();
    assert_eq!(req.body, user_body("m-one", "for m-one"));
    assert_eq!(req.path, "/v1/chat/completions");
    let mut names: Vec<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    // awc's decompression adds accept-encoding on its own.
    let own = ["accept-encoding", "authorization", "content-type"];
    let mut want = [&own, TRANSPORT_HEADERS].concat();
    want.sort_unstable();
    assert_eq!(names, want);
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );

    let rows: Value =
        serde_json::from_str(&cli_ok(dir.path(), &["token", "list", "--json"])).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["uuid"] == o.as_str())
        .unwrap();
    assert_eq!(row["auth_type"], "openai");
}

#[test]
fn an_openai_account_imported_while_running_joins_the_pool() {
    let p = pool(1, &[("IFLOW_STORE_RESCAN_INTERVAL", "200ms")]);
    let openai = Mock::start();
    let stdout = cli_ok(
        p.dir.path(),
        &[
            "token",
            "import",
            "--api-key",
            OPENAI_KEY,
            "--base-url",
            &openai.base_url(),
            "--kind",
            "openai",
        ],
    );
    let uuid = stdout.split_whitespace().nth(2).unwrap().to_string();
    let joined = wait_until(secs(5), || {
        get(p.gw.addr, "/health", None).json()["accounts"] == 2
    });
    assert!(joined, "the new account never joined");

    for k in 0..2 {
        assert_eq!(p.chat(&format!("spread #{k}")).status, 200);
    }
    assert_eq!(
        (p.mocks[0].requests().len(), openai.requests().len()),
        (1, 1)
    );

    // A stream pinned to it: include_usage asked upstream, not passed on.
    let resp = chat(p.gw.addr, &uuid, &stream_body("glm-5", "stream"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), client_sse(false));
    let sent = openai.last_request().body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

/// Requests waiting for a busy account must not turn away a request that
/// another, idle account could serve at once.
#[test]
fn a_full_pool_queue_does_not_refuse_a_model_an_idle_account_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Mock::start(), Mock::start());
    import_models(
        dir.path(),
        "sk-upstream-a-0123456789",
        &a.base_url(),
        "iflow",
        "m-a",
    );
    import_models(
        dir.path(),
        "sk-upstream-b-0123456789",
        &b.base_url(),
        "iflow",
        "m-b",
    );
    let (_, key) = create_key(dir.path(), &[]);
    let env = [("IFLOW_CONCURRENCY", "1"), ("IFLOW_POOL_QUEUE_SIZE", "1")];
    let gw = Gateway::start(dir.path(), &env);
    let spawn = |model: &str, text: &str| {
        let (addr, key, body) = (gw.addr, key.clone(), user_body(model, text));
        std::thread::spawn(move || chat(addr, &key, &body))
    };
    let held = spawn("m-a", "scenario:hold");
    assert!(a.wait_in_flight(1, secs(10)));
    let queued = spawn("m-a", "waits for a");
    // Nothing shows the pool queue: give the waiter time to join it.
    std::thread::sleep(Duration::from_millis(300));

    let resp = chat(gw.addr, &key, &user_body("m-b", "b is idle"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(b.requests().len(), 1);
    a.release_all();
    assert_eq!(held.join().unwrap().status, 200);
    assert_eq!(queued.join().unwrap().status, 200);
}
