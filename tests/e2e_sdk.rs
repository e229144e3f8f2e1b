//! End to end with the real third-party SDK clients users point at the
//! gateway: the `openai` Python SDK and npm package, and the `anthropic`
//! Python SDK. Each test starts the mock upstream and the gateway binary,
//! runs a script under `tests/e2e/` and asserts on what the SDK saw (the
//! script prints it as JSON) and on what the upstream received.
//!
//! The SDKs come from `./scripts/test` (`.venv`, `tests/e2e/node_modules`);
//! without them these tests fail, never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::anthropic::MODEL;
use common::scripted::{TEXT_DELTAS, TOOL_CALL_ID, tool_answer};
use common::{Setup, setup};
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test, which installs the SDKs of tests/e2e/requirements.txt",
        python.display()
    );
    python
}

fn node() -> PathBuf {
    let module = e2e_dir().join("node_modules/openai");
    assert!(
        module.exists(),
        "{} is missing: run ./scripts/test, which runs npm ci in tests/e2e",
        module.display()
    );
    PathBuf::from("node")
}

/// Runs `program script case` against the gateway (killed after
/// [`SCRIPT_TIMEOUT`]); asserts it exits 0 and returns its JSON output.
fn run(s: &Setup, program: &Path, script: &str, case: &str) -> Value {
    let home = tempfile::tempdir().expect("temp home");
    let mut child = Command::new(program)
        .arg(e2e_dir().join(script))
        .arg(case)
        .current_dir(e2e_dir())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("GATEWAY_URL", format!("http://{}", s.gw.addr))
        .env("GATEWAY_KEY", &s.account)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} {case} did not finish in {SCRIPT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    assert!(
        status.success(),
        "{script} {case} failed ({status}):\n{out}\n{err}\ngateway log:\n{}",
        s.gw.log()
    );
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("{script} {case} printed no JSON ({e}): {out}\n{err}"))
}

#[test]
fn openai_python_chat_completion_gets_text_reasoning_and_usage() {
    let s = setup(&[]);
    let got = run(&s, &python(), "openai_sdk.py", "complete");
    assert_eq!(
        got,
        json!({"id": "chatcmpl-mock-1", "role": "assistant", "content": "Hello!",
               "reasoning": "Let me think.", "finish": "stop", "usage": [11, 7, 18]})
    );
    let sent = s.mock.last_request().body;
    assert_eq!(sent["model"], "glm-5");
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "Say hello"}])
    );
}

#[test]
fn openai_python_stream_assembles_text_tool_call_and_final_usage() {
    let s = setup(&[]);
    let got = run(&s, &python(), "openai_sdk.py", "stream");
    assert_eq!(
        got,
        json!({"deltas": ["Hello", " world, é ✓"], "text": "Hello world, é ✓",
               "reasoning": "Let me think.",
               "tool_calls": [["call_1", "get_weather", {"city": "Paris"}]],
               "finish": "tool_calls", "usage": [11, 7, 18]})
    );
}

#[test]
fn openai_python_tool_round_trip_sends_the_result_back_and_gets_an_answer_quoting_it() {
    let s = setup(&[]);
    let got = run(&s, &python(), "openai_sdk.py", "tools");
    let result = "18C and sunny in Paris";
    assert_eq!(
        got,
        json!({"finish": ["tool_calls", "stop"],
               "call": [TOOL_CALL_ID, "function", "get_weather", {"city": "Paris"}],
               "answer": tool_answer(result), "usage": [[21, 9, 30], [40, 12, 52]]})
    );
    let sent = s.mock.last_request().body;
    let messages = sent["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3, "{sent}");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["tool_calls"],
        json!([{"id": TOOL_CALL_ID, "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": result})
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
}

#[test]
fn openai_python_lists_models_and_raises_typed_errors() {
    let s = setup(&[]);
    let got = run(&s, &python(), "openai_sdk.py", "errors");
    let models = got["models"].as_array().expect("models");
    for id in ["glm-5", "qwen3-coder-plus"] {
        assert!(models.contains(&json!(id)), "{id} not in {models:?}");
    }
    assert_eq!(got["retrieved"], json!(["glm-5", "model", "iflow"]));
    assert_eq!(
        got["missing"],
        json!(["NotFoundError", 404, "model_not_found"])
    );
    assert_eq!(
        got["auth"],
        json!(["AuthenticationError", 401, "invalid_api_key"])
    );
    assert_eq!(
        got["rate"],
        json!(["RateLimitError", 429, "upstream_rate_limited", "17"])
    );
    let mid = got["mid_stream"].as_array().expect("mid_stream");
    assert_eq!(mid[..2], [json!("APIError"), json!("upstream_key_invalid")]);
    assert!(
        mid[2]
            .as_str()
            .is_some_and(|m| m.contains("Invalid apiKey")),
        "{got}"
    );
}

#[test]
fn openai_node_stream_assembles_the_text_from_deltas() {
    let s = setup(&[]);
    let got = run(&s, &node(), "openai_stream.mjs", "");
    assert_eq!(
        got,
        json!({"deltas": TEXT_DELTAS, "text": TEXT_DELTAS.concat(), "finish": "stop",
               "usage": [13, 5]})
    );
}

#[test]
fn anthropic_python_create_gets_thinking_and_text_blocks_and_usage() {
    let s = setup(&[]);
    let got = run(&s, &python(), "anthropic_sdk.py", "create");
    assert_eq!(
        got,
        json!({"id": "msg_mock-1", "type": "message", "role": "assistant", "model": MODEL,
               "blocks": [["thinking", "Let me think."], ["text", "Hello!"]],
               "stop_reason": "end_turn", "usage": [11, 7]})
    );
    let sent = s.mock.last_request().body;
    assert_eq!(
        sent["model"], "glm-5",
        "claude-sonnet-* → glm-5 by the default map"
    );
    assert_eq!(sent["enable_thinking"], true);
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "Say hello"}])
    );
}

#[test]
fn anthropic_python_stream_yields_text_and_a_final_message() {
    let s = setup(&[]);
    let got = run(&s, &python(), "anthropic_sdk.py", "stream");
    let id = got["id"].as_str().unwrap_or_default();
    assert!(id.starts_with("msg_"), "{got}");
    assert_eq!(
        got,
        json!({"pieces": TEXT_DELTAS, "id": id, "model": MODEL,
               "blocks": [["thinking", "Let me think."], ["text", TEXT_DELTAS.concat()]],
               "stop_reason": "end_turn", "usage": [13, 5]})
    );
    assert_eq!(s.mock.last_request().body["stream"], true);
}

#[test]
fn anthropic_python_tool_use_round_trip_becomes_tool_calls_and_a_tool_message() {
    let s = setup(&[]);
    let got = run(&s, &python(), "anthropic_sdk.py", "tools");
    let result = "18C and sunny in Paris";
    assert_eq!(
        got,
        json!({"first": [["tool_use", TOOL_CALL_ID, "get_weather", {"city": "Paris"}]],
               "stop_reasons": ["tool_use", "end_turn"],
               "second": [["text", tool_answer(result)]], "usage": [[21, 9], [40, 12]]})
    );
    let sent = s.mock.requests();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|r| r.body["model"] == "glm-5"));
    assert_eq!(
        sent[1].body["messages"],
        json!([{"role": "user", "content": "scenario:tools What is the weather in Paris?"},
               {"role": "assistant", "content": "", "tool_calls": [{"id": TOOL_CALL_ID,
                 "type": "function", "function": {"name": "get_weather",
                 "arguments": "{\"city\":\"Paris\"}"}}]},
               {"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": result}])
    );
}

#[test]
fn anthropic_python_streamed_tool_loop_parses_the_input_and_finishes_with_text() {
    let s = setup(&[]);
    let got = run(&s, &python(), "anthropic_sdk.py", "stream_tools");
    let call = json!(["tool_use", TOOL_CALL_ID, "get_weather", {"city": "Paris"}]);
    let answer = tool_answer("18C and sunny in Paris");
    assert_eq!(
        got["turns"],
        json!([{"text": "", "blocks": [call], "stop_reason": "tool_use"},
               {"text": answer, "blocks": [["text", answer]], "stop_reason": "end_turn"}])
    );
    let sent = s.mock.last_request().body;
    assert_eq!(sent["stream"], true);
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": "18C and sunny in Paris"})
    );
}

#[test]
fn anthropic_python_count_tokens_is_positive_and_grows_with_the_input() {
    let s = setup(&[]);
    let got = run(&s, &python(), "anthropic_sdk.py", "count_tokens");
    let counts: Vec<u64> = serde_json::from_value(got["counts"].clone()).expect("counts");
    assert!(counts[0] > 0 && counts[1] > counts[0] * 10, "{counts:?}");
    assert!(s.mock.requests().is_empty());
}

#[test]
fn anthropic_python_errors_raise_the_sdks_typed_exceptions() {
    let s = setup(&[]);
    let got = run(&s, &python(), "anthropic_sdk.py", "errors");
    assert_eq!(
        got["auth"],
        json!(["AuthenticationError", 401, "error", "authentication_error"])
    );
    assert_eq!(got["rate"], json!(["RateLimitError", 429, "17"]));
    // An `event: error` after a 200 head: the SDK's generic status error.
    let mid = got["mid_stream"].as_array().expect("mid_stream");
    assert_eq!(
        mid[..2],
        [json!("APIStatusError"), json!("authentication_error")]
    );
    let message = mid[2].as_str().unwrap_or_default();
    assert!(message.contains("Invalid apiKey"), "{got}");
    assert!(!message.contains(&s.account), "no account uuid: {message}");
}
