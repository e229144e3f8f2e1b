//! The default bodies of protocol table 5.5, plus client overrides.

use super::*;
use crate::profile::iflow::models::ReasoningLevel;
use serde_json::json;

fn run(input: Value, stream: bool) -> Value {
    let Value::Object(mut map) = input else {
        panic!("object expected")
    };
    apply(&mut map, true, stream, None);
    Value::Object(map)
}

fn base(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "hi" }] })
}

#[test]
fn glm5_default_body() {
    let b = run(base("glm-5"), false);
    assert_eq!(
        b,
        json!({
            "model": "glm-5",
            "messages": [{ "role": "user", "content": "hi" }],
            "temperature": 1,
            "chat_template_kwargs": { "enable_thinking": true },
            "enable_thinking": true,
            "thinking": { "type": "enabled" },
            "top_p": 0.95,
            "max_new_tokens": 32000
        })
    );
}

#[test]
fn glm47_and_glm46_rename() {
    let b = run(base("glm-4.7"), false);
    assert_eq!(b["temperature"], json!(1));
    assert_eq!(b["top_p"], json!(0.95));
    assert_eq!(
        b["chat_template_kwargs"],
        json!({ "enable_thinking": true })
    );
    assert_eq!(b["max_new_tokens"], json!(32000));

    let b = run(base("glm-4.6"), false);
    assert_eq!(b["model"], "glm-4.6-exp");
    assert_eq!(b["temperature"], json!(0.6));
    assert!(b.get("top_p").is_none());
    assert_eq!(
        b["chat_template_kwargs"],
        json!({ "enable_thinking": true })
    );
}

#[test]
fn glm46_is_not_renamed_for_other_auth_types() {
    let Value::Object(mut map) = base("glm-4.6") else {
        unreachable!()
    };
    apply(&mut map, false, false, None);
    assert_eq!(map["model"], "glm-4.6");
}

#[test]
fn deepseek_renames_to_reasoner_with_thinking_on() {
    let b = run(base("deepseek-v3.2-chat"), false);
    assert_eq!(b["model"], "deepseek-v3.2-reasoner");
    assert_eq!(b["thinking_mode"], json!(true));
    assert!(b.get("reasoning").is_none());
    assert_eq!(b["max_new_tokens"], json!(64000));
    assert!(b.get("max_tokens").is_none());
}

#[test]
fn deepseek_thinking_off_keeps_chat_and_sends_max_tokens() {
    let mut input = base("deepseek-v3.2-chat");
    input["reasoning_effort"] = json!("none");
    let b = run(input, false);
    assert_eq!(b["model"], "deepseek-v3.2-chat");
    assert!(b.get("thinking_mode").is_none());
    assert_eq!(b["max_new_tokens"], json!(8192));
    assert_eq!(b["max_tokens"], json!(8192));
}

#[test]
fn deepseek_high_effort_adds_reasoning() {
    let mut input = base("deepseek-r1");
    input["reasoning_effort"] = json!("high");
    let b = run(input, false);
    assert_eq!(b["reasoning"], json!(true));
    assert_eq!(b["max_tokens"], json!(32000));
}

#[test]
fn kimi_k25_forced_fields() {
    let mut input = base("kimi-k2.5");
    input["temperature"] = json!(0.2);
    input["tools"] = json!([{ "type": "function", "function": { "name": "f", "parameters": {} } }]);
    let b = run(input, false);
    assert!(b.get("temperature").is_none());
    assert_eq!(b["top_p"], json!(0.95));
    assert_eq!(b["n"], json!(1));
    assert_eq!(b["presence_penalty"], json!(0));
    assert_eq!(b["frequency_penalty"], json!(0));
    assert_eq!(b["thinking"], json!({ "type": "enabled" }));
    assert_eq!(b["max_new_tokens"], json!(32768));
    assert_eq!(b["max_tokens"], json!(32768));
    assert_eq!(b["tool_choice"], json!("auto"));
}

#[test]
fn rome_and_plain_models() {
    let b = run(base("iFlow-ROME-30BA3B"), false);
    assert_eq!(b["temperature"], json!(0.7));
    assert_eq!(b["top_p"], json!(0.8));
    assert_eq!(b["top_k"], json!(20));
    assert_eq!(b["max_new_tokens"], json!(64000));

    for (model, limit) in [
        ("qwen3-coder-plus", 64000),
        ("minimax-m2.5", 64000),
        ("kimi-k2-0905", 32000),
    ] {
        let b = run(base(model), false);
        assert_eq!(b["temperature"], json!(0.6), "{model}");
        assert_eq!(b["max_new_tokens"], json!(limit), "{model}");
        assert!(b.get("top_p").is_none(), "{model}");
        assert!(b.get("thinking").is_none(), "{model}");
    }
    let b = run(base("kimi-k2-thinking"), false);
    assert_eq!(b["thinking_mode"], json!(true));
}

#[test]
fn stream_adds_include_usage_and_keeps_client_options() {
    let mut input = base("qwen3-coder-plus");
    input["stream_options"] = json!({ "other": 1 });
    let b = run(input, true);
    assert_eq!(b["stream"], json!(true));
    assert_eq!(
        b["stream_options"],
        json!({ "other": 1, "include_usage": true })
    );
    let b = run(base("qwen3-coder-plus"), false);
    assert!(b.get("stream").is_none());
    assert!(b.get("stream_options").is_none());
}

#[test]
fn client_values_win_where_the_official_client_takes_settings() {
    let mut input = base("qwen3-coder-plus");
    input["temperature"] = json!(0.1);
    input["max_tokens"] = json!(1234);
    input["seed"] = json!(7);
    input["response_format"] = json!({ "type": "json_object" });
    let b = run(input, false);
    assert_eq!(b["temperature"], json!(0.1));
    assert_eq!(b["max_new_tokens"], json!(1234));
    assert_eq!(b["max_tokens"], json!(1234));
    assert_eq!(b["seed"], json!(7));
    assert_eq!(b["response_format"], json!({ "type": "json_object" }));
}

#[test]
fn thinking_off_for_glm5_sets_all_three_switches() {
    let mut input = base("glm-5");
    input["thinking"] = json!({ "type": "disabled" });
    let b = run(input, false);
    assert_eq!(
        b["chat_template_kwargs"],
        json!({ "enable_thinking": false })
    );
    assert_eq!(b["enable_thinking"], json!(false));
    assert_eq!(b["thinking"], json!({ "type": "disabled" }));
}

#[test]
fn empty_tools_and_stop_are_dropped() {
    let mut input = base("qwen3-coder-plus");
    input["tools"] = json!([]);
    input["tool_choice"] = json!("auto");
    input["stop"] = json!([]);
    let b = run(input, false);
    assert!(b.get("tools").is_none());
    assert!(b.get("tool_choice").is_none());
    assert!(b.get("stop").is_none());
    let mut input = base("qwen3-coder-plus");
    input["stop"] = json!(["END"]);
    assert_eq!(run(input, false)["stop"], json!(["END"]));
}

/// The official client deletes fields from its request object, which keeps
/// the order of the rest: a dropped field must not pull the last one forward.
#[test]
fn dropped_fields_keep_the_order_of_the_rest() {
    let input = json!({
        "model": "qwen3-coder-plus",
        "stop": [],
        "messages": [{ "role": "user", "content": "hi" }],
        "stream_options": { "include_usage": true },
        "tools": [],
        "user": "u1"
    });
    let b = run(input, false);
    let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["model", "messages", "user", "temperature", "max_new_tokens"]
    );
}

#[test]
fn a_thinking_override_wins_over_the_body() {
    let Value::Object(mut map) = base("glm-4.7") else {
        unreachable!()
    };
    apply(
        &mut map,
        true,
        false,
        Some(Thinking {
            enabled: false,
            level: ReasoningLevel::Low,
        }),
    );
    assert_eq!(
        map["chat_template_kwargs"],
        json!({ "enable_thinking": false })
    );
}
