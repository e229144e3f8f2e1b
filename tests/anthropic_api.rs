//! The Anthropic Messages endpoint, whole replies, at the byte level: the
//! reply shape, the request the upstream gets, authentication, the model
//! map, errors in Anthropic's shape and `count_tokens`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::anthropic::{MODEL, assert_error, messages, post_raw, stream_msg, user_msg};
use common::client::request;
use common::scripted::{
    STOPPED_TEXT, TOOL_ANSWER_USAGE, TOOL_ARGS, TOOL_CALL_ID, TOOL_CALL_USAGE, tool_answer,
};
use common::setup;
use serde_json::{Value, json};

fn weather_tool() -> Value {
    json!({"name": "get_weather", "description": "Current weather",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}})
}

#[test]
fn whole_reply_is_an_anthropic_message_named_after_the_clients_model() {
    let s = setup(&[]);
    let resp = messages(s.gw.addr, &s.account, &user_msg("hi"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(
        resp.json(),
        json!({"id": "msg_mock-1", "type": "message", "role": "assistant", "model": MODEL,
               "content": [{"type": "thinking", "thinking": "Let me think.", "signature": ""},
                           {"type": "text", "text": "Hello!"}],
               "stop_reason": "end_turn", "stop_sequence": null,
               "usage": {"input_tokens": 11, "output_tokens": 7}})
    );
    let sent = s.mock.last_request();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.body["model"], "glm-5",
        "default map: claude-sonnet-* → glm-5"
    );
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "hi"}])
    );
    assert_eq!(sent.body.get("stream"), None);
}

#[test]
fn tool_use_round_trip_maps_tool_use_to_tool_calls_and_tool_result_to_a_tool_message() {
    let s = setup(&[]);
    let ask = json!({"role": "user", "content": "scenario:tools weather in Paris?"});
    let mut body = json!({"model": MODEL, "max_tokens": 512, "tools": [weather_tool()],
                          "messages": [ask]});
    let first = messages(s.gw.addr, &s.account, &body);
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    let call = json!({"type": "tool_use", "id": TOOL_CALL_ID, "name": "get_weather",
                      "input": {"city": "Paris"}});
    assert_eq!(first["content"], json!([call]));
    assert_eq!(first["stop_reason"], "tool_use");
    let (input, output) = TOOL_CALL_USAGE;
    assert_eq!(
        first["usage"],
        json!({"input_tokens": input, "output_tokens": output})
    );
    assert_eq!(
        s.mock.last_request().body["tools"],
        json!([{"type": "function", "function": {"name": "get_weather",
                "parameters": weather_tool()["input_schema"], "description": "Current weather"}}])
    );

    body["messages"] = json!([ask, {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": TOOL_CALL_ID,
                                      "content": [{"type": "text", "text": "18C, sunny"}]}]}]);
    let second = messages(s.gw.addr, &s.account, &body);
    assert_eq!(second.status, 200, "{}", second.text());
    let second = second.json();
    assert_eq!(
        second["content"],
        json!([{"type": "text", "text": tool_answer("18C, sunny")}])
    );
    assert_eq!(second["stop_reason"], "end_turn");
    let (input, output) = TOOL_ANSWER_USAGE;
    assert_eq!(
        second["usage"],
        json!({"input_tokens": input, "output_tokens": output})
    );
    assert_eq!(
        s.mock.last_request().body["messages"],
        json!([{"role": "user", "content": "scenario:tools weather in Paris?"},
               {"role": "assistant", "content": "", "tool_calls": [{"id": TOOL_CALL_ID,
                 "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGS}}]},
               {"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": "18C, sunny"}])
    );
}

#[test]
fn system_stop_sequences_tool_choice_user_id_and_thinking_reach_the_upstream() {
    let s = setup(&[]);
    let body = json!({"model": MODEL, "max_tokens": 300,
        "system": [{"type": "text", "text": "Be terse."}, {"type": "text", "text": "Use tools."}],
        "stop_sequences": ["END"], "tools": [weather_tool()], "tool_choice": {"type": "any"},
        "metadata": {"user_id": "user-42"}, "thinking": {"type": "disabled"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
    assert_eq!(messages(s.gw.addr, &s.account, &body).status, 200);
    let sent = s.mock.last_request().body;
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be terse.\nUse tools."},
               {"role": "user", "content": "hi"}])
    );
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["user"], "user-42");
    assert_eq!(sent["max_new_tokens"], 300);
    assert_eq!(sent["enable_thinking"], false);
    assert_eq!(sent["thinking"], json!({"type": "disabled"}));
}

/// OpenAI has no field for the stop that matched; vLLM names it in the
/// choice's `stop_reason`, SGLang in `matched_stop`.
#[test]
fn a_stop_sequence_the_upstream_names_is_the_replys_stop_sequence() {
    let s = setup(&[]);
    for field in ["stop_reason", "matched_stop"] {
        let body = json!({"model": MODEL, "max_tokens": 50, "stop_sequences": ["###", "4,"],
            "messages": [{"role": "user", "content": format!("scenario:stop_matched:{field} count")}]});
        let resp = messages(s.gw.addr, &s.account, &body);
        assert_eq!(resp.status, 200, "{}", resp.text());
        let reply = resp.json();
        assert_eq!(
            reply["content"],
            json!([{"type": "text", "text": STOPPED_TEXT}])
        );
        assert_eq!(
            (&reply["stop_reason"], &reply["stop_sequence"]),
            (&json!("stop_sequence"), &json!("4,")),
            "{field}"
        );
        assert_eq!(s.mock.last_request().body["stop"], json!(["###", "4,"]));
    }
    // The same upstream reply to a request without stop sequences: the
    // named string is not one of the client's, so a plain end of turn.
    let resp = messages(
        s.gw.addr,
        &s.account,
        &user_msg("scenario:stop_matched:stop_reason count"),
    );
    assert_eq!(
        (&resp.json()["stop_reason"], &resp.json()["stop_sequence"]),
        (&json!("end_turn"), &Value::Null)
    );
}

#[test]
fn wrong_or_missing_key_is_401_authentication_error_without_calling_upstream() {
    let s = setup(&[]);
    let resp = messages(s.gw.addr, "not-a-key", &user_msg("hi"));
    assert_error(&resp, 401, "authentication_error");
    let body = user_msg("hi").to_string();
    let headers = [
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
    ];
    let resp = request(
        s.gw.addr,
        "POST",
        "/v1/messages",
        &headers,
        Some(body.as_bytes()),
    );
    assert_error(&resp, 401, "authentication_error");
    // Anthropic clients send `x-api-key`, so the hint names both headers.
    let message = resp.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("`Authorization: Bearer") && message.contains("`x-api-key:"),
        "{message}"
    );
    let resp = post_raw(
        s.gw.addr,
        "/v1/messages/count_tokens",
        "wrong",
        body.as_bytes(),
    );
    assert_error(&resp, 401, "authentication_error");
    assert!(s.mock.requests().is_empty());
}

#[test]
fn x_api_key_and_bearer_token_both_authenticate_with_or_without_the_beta_query() {
    let s = setup(&[]);
    assert_eq!(messages(s.gw.addr, &s.account, &user_msg("hi")).status, 200);
    let auth = format!("Bearer {}", s.account);
    let headers = [
        ("Authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let body = user_msg("hi").to_string();
    // Claude Code posts to `/v1/messages?beta=true`.
    for path in ["/v1/messages", "/v1/messages?beta=true"] {
        let resp = request(s.gw.addr, "POST", path, &headers, Some(body.as_bytes()));
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    }
    let path = "/v1/messages/count_tokens?beta=true";
    assert_eq!(
        post_raw(s.gw.addr, path, &s.account, body.as_bytes()).status,
        200
    );
    assert_eq!(s.mock.requests().len(), 3);
}

#[test]
fn model_map_from_the_environment_replaces_the_default() {
    let map = "claude-opus-*=kimi-k2.5, claude-*=qwen3-coder-plus";
    let s = setup(&[("IFLOW_ANTHROPIC_MODEL_MAP", map)]);
    for (asked, upstream) in [
        ("claude-opus-4-1", "kimi-k2.5"),
        ("claude-sonnet-4-5-20250929", "qwen3-coder-plus"),
        ("glm-4.7", "glm-4.7"),
    ] {
        let mut body = user_msg("hi");
        body["model"] = json!(asked);
        let resp = messages(s.gw.addr, &s.account, &body);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(
            resp.json()["model"],
            asked,
            "the reply names the client's model"
        );
        assert_eq!(s.mock.last_request().body["model"], upstream, "{asked}");
    }
}

#[test]
fn default_model_map_sends_haiku_to_qwen3_coder_plus() {
    let s = setup(&[]);
    let mut body = user_msg("hi");
    body["model"] = json!("claude-haiku-4-5");
    assert_eq!(messages(s.gw.addr, &s.account, &body).status, 200);
    assert_eq!(s.mock.last_request().body["model"], "qwen3-coder-plus");
}

#[test]
fn bad_bodies_are_400_invalid_request_error_in_anthropic_shape() {
    let s = setup(&[]);
    for body in [
        "{",
        "not json",
        "[]",
        r#"{"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"claude-sonnet-4-5","messages":"x"}"#,
        r#"{"model":"claude-sonnet-4-5","messages":[]}"#,
        r#"{"model":"claude-sonnet-4-5","messages":[{"role":"system","content":"x"}]}"#,
        r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
    ] {
        let resp = post_raw(s.gw.addr, "/v1/messages", &s.account, body.as_bytes());
        assert_error(&resp, 400, "invalid_request_error");
        let resp = post_raw(
            s.gw.addr,
            "/v1/messages/count_tokens",
            &s.account,
            body.as_bytes(),
        );
        assert_error(&resp, 400, "invalid_request_error");
    }
    assert!(s.mock.requests().is_empty());
}

#[test]
fn upstream_failures_before_the_reply_keep_their_status_in_anthropic_shape() {
    let s = setup(&[]);
    for body in [
        user_msg("scenario:status:429"),
        stream_msg("scenario:status:429"),
    ] {
        let resp = messages(s.gw.addr, &s.account, &body);
        assert_error(&resp, 429, "rate_limit_error");
        assert_eq!(resp.header("retry-after"), Some("17"));
    }
    for body in [
        user_msg("scenario:status:500"),
        stream_msg("scenario:status:500"),
    ] {
        let resp = messages(s.gw.addr, &s.account, &body);
        assert_error(&resp, 502, "api_error");
        assert!(
            resp.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("HTTP 500")
        );
    }
    for body in [user_msg("scenario:biz:434"), stream_msg("scenario:biz:434")] {
        let resp = messages(s.gw.addr, &s.account, &body);
        assert_error(&resp, 401, "authentication_error");
        assert!(
            resp.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Invalid apiKey")
        );
    }
}

#[test]
fn count_tokens_is_positive_grows_with_the_input_and_never_calls_upstream() {
    let s = setup(&[]);
    let count = |text: &str| {
        let resp = post_raw(
            s.gw.addr,
            "/v1/messages/count_tokens",
            &s.account,
            user_msg(text).to_string().as_bytes(),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        let body = resp.json();
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
        body["input_tokens"].as_u64().expect("input_tokens")
    };
    let short = count("Hello there");
    let long = count(&"Hello there, how are you today? ".repeat(50));
    assert!(short > 0, "{short}");
    assert!(long > short * 20, "{short} → {long}");
    assert!(s.mock.requests().is_empty());
}

#[test]
fn thinking_signature_is_replayed_to_iflow_but_not_to_an_openai_compatible_upstream() {
    let turn = json!({"model": MODEL, "max_tokens": 1024, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig-1"},
            {"type": "text", "text": "Hello!"}]},
        {"role": "user", "content": "and now?"}]});
    let replayed = json!({"role": "assistant", "content": "Hello!",
                          "reasoning_content": "Let me think.", "signature": "sig-1"});
    let plain = json!({"role": "assistant", "content": "Hello!",
                       "reasoning_content": "Let me think."});
    for (kind, expected) in [("iflow", replayed), ("openai", plain)] {
        let s = common::setup_kind(kind, &[]);
        let resp = messages(s.gw.addr, &s.account, &turn);
        assert_eq!(resp.status, 200, "{kind}: {}", resp.text());
        assert_eq!(
            s.mock.last_request().body["messages"][1],
            expected,
            "{kind} account"
        );
    }
}
