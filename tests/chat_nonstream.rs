//! Non-stream chat: what reaches the upstream (signed headers, body rules,
//! every client field kept) and what the client gets back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::chat;
use common::{API_KEY, fixtures, iflow, setup, setup_kind, user_body};
use serde_json::{Value, json};

#[test]
fn signature_helper_matches_the_protocol_vector() {
    assert_eq!(
        iflow::signature("sk-test-key", "session-123", "1700000000000"),
        "58c53cca7a2e841bed7cd0e9d89d519b04ac2b16414480e86430ceddde6d4547"
    );
}

#[test]
fn request_reaches_upstream_signed_with_the_full_header_set() {
    let s = setup(&[]);
    let resp = chat(s.gw.addr, &s.account, &user_body("glm-5", "hi"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let req = s.mock.last_request();
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    iflow::assert_signed(&req, API_KEY);
}

#[test]
fn glm5_body_rules_are_applied_on_top_of_the_client_body() {
    let s = setup(&[]);
    let sent = json!({"model": "glm-5", "messages": [{"role": "user", "content": "hi"}],
                      "temperature": 0.2, "seed": 7});
    assert_eq!(chat(s.gw.addr, &s.account, &sent).status, 200);
    let body = s.mock.last_request().body;
    assert_eq!(body["model"], "glm-5");
    assert_eq!(body["temperature"], 1);
    assert_eq!(body["top_p"], 0.95);
    assert_eq!(
        body["chat_template_kwargs"],
        json!({"enable_thinking": true})
    );
    assert_eq!(body["enable_thinking"], true);
    assert_eq!(body["thinking"], json!({"type": "enabled"}));
    assert_eq!(body["max_new_tokens"], 32000);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["messages"], sent["messages"]);
    assert!(body.get("stream_options").is_none(), "{body}");
}

#[test]
fn glm46_is_renamed_for_iflow_accounts() {
    let s = setup(&[]);
    assert_eq!(
        chat(s.gw.addr, &s.account, &user_body("glm-4.6", "hi")).status,
        200
    );
    assert_eq!(s.mock.last_request().body["model"], "glm-4.6-exp");
}

#[test]
fn unmodelled_client_fields_are_forwarded_untouched() {
    let s = setup(&[]);
    let sent = json!({
        "model": "qwen3-coder-plus",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
            ]}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "seed": 42,
        "user": "user-1234",
        "logit_bias": {"50256": -100},
        "x_vendor_extension": {"nested": [1, 2, {"deep": null}]}
    });
    assert_eq!(chat(s.gw.addr, &s.account, &sent).status, 200);
    let body = s.mock.last_request().body;
    for field in [
        "messages",
        "tools",
        "tool_choice",
        "response_format",
        "seed",
        "user",
        "logit_bias",
        "x_vendor_extension",
    ] {
        assert_eq!(body[field], sent[field], "field {field}");
    }
}

#[test]
fn completion_is_passed_through_with_reasoning_and_usage() {
    let s = setup(&[]);
    let resp = chat(s.gw.addr, &s.account, &user_body("glm-5", "hi"));
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    assert_eq!(resp.json(), fixtures::completion("glm-5", true));
}

#[test]
fn a_3_mib_completion_is_relayed_whole() {
    let s = setup(&[]);
    let resp = chat(
        s.gw.addr,
        &s.account,
        &user_body("glm-5", "scenario:big_complete"),
    );
    assert_eq!(
        resp.status,
        200,
        "{}",
        &resp.text()[..resp.body.len().min(300)]
    );
    let content = resp.json()["choices"][0]["message"]["content"]
        .as_str()
        .map(str::len);
    assert_eq!(content, Some(3 << 20));
}

#[test]
fn missing_usage_becomes_a_zero_usage_object() {
    let s = setup(&[]);
    let resp = chat(
        s.gw.addr,
        &s.account,
        &user_body("glm-5", "scenario:complete_no_usage"),
    );
    assert_eq!(resp.status, 200);
    let mut expected = fixtures::completion("glm-5", false);
    expected["usage"] = json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0});
    assert_eq!(resp.json(), expected);
}

#[test]
fn without_preserved_reasoning_it_is_dropped_or_becomes_content() {
    let s = setup(&[("IFLOW_PRESERVE_REASONING_CONTENT", "false")]);
    let both = chat(s.gw.addr, &s.account, &user_body("glm-5", "hi")).json();
    let message = &both["choices"][0]["message"];
    assert_eq!(message, &json!({"role": "assistant", "content": "Hello!"}));

    let only = chat(
        s.gw.addr,
        &s.account,
        &user_body("glm-5", "scenario:reasoning_only"),
    )
    .json();
    let message = &only["choices"][0]["message"];
    assert_eq!(
        message,
        &json!({"role": "assistant", "content": "Only thoughts."})
    );
}

#[test]
fn gzip_br_and_deflate_replies_are_decoded() {
    let s = setup(&[]);
    for scenario in ["scenario:gzip", "scenario:br", "scenario:deflate"] {
        let resp = chat(s.gw.addr, &s.account, &user_body("glm-5", scenario));
        assert_eq!(resp.status, 200, "{scenario}: {}", resp.text());
        assert!(resp.header("content-encoding").is_none());
        assert_eq!(
            resp.json(),
            fixtures::completion("glm-5", true),
            "{scenario}"
        );
    }
}

fn header(req: &common::mock::Recorded, name: &str) -> String {
    req.header(name).unwrap_or_default().to_string()
}

#[test]
fn session_id_is_stable_and_conversation_id_follows_user_turns() {
    let s = setup(&[]);
    let user = user_body("glm-5", "hi");
    let tool = json!({"model": "glm-5", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]});
    for body in [&user, &tool, &user] {
        assert_eq!(chat(s.gw.addr, &s.account, body).status, 200);
    }
    let reqs = s.mock.requests();
    let sessions: Vec<String> = reqs.iter().map(|r| header(r, "session-id")).collect();
    let convs: Vec<String> = reqs.iter().map(|r| header(r, "conversation-id")).collect();
    assert!(sessions.iter().all(|x| x == &sessions[0]), "{sessions:?}");
    assert_eq!(convs[1], convs[0], "a tool result continues the turn");
    assert_ne!(
        convs[2], convs[1],
        "a new user message starts a new conversation"
    );
    for r in &reqs {
        iflow::assert_signed(r, API_KEY);
    }
}

#[test]
fn openai_kind_sends_only_a_bearer_key_and_the_body_as_sent() {
    let s = setup_kind("openai", &[]);
    let sent = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.3});
    let resp = chat(s.gw.addr, &s.account, &sent);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let req = s.mock.last_request();
    // awc adds its transport headers and, for its decoder, accept-encoding.
    let mut names: Vec<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.retain(|n| !iflow::TRANSPORT_HEADERS.contains(n) && *n != "accept-encoding");
    names.sort_unstable();
    assert_eq!(names, ["authorization", "content-type"]);
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.body, sent);
    assert_eq!(
        serde_json::from_slice::<Value>(&resp.body).unwrap(),
        fixtures::completion("gpt-4o", true)
    );
}
