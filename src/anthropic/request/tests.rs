use super::*;

const CLAUDE_CODE: &str =
    include_str!("../../../tests/fixtures/anthropic/claude_code_tool_turn.json");

fn run(body: &str) -> Translated {
    translate(body.as_bytes(), &ModelMap::default()).expect("translates")
}

#[test]
fn claude_code_turn_translates_every_block() {
    let t = run(CLAUDE_CODE);
    assert_eq!(t.echo.model, "claude-sonnet-4-5-20250929");
    assert!(t.echo.stop_sequences.is_empty());
    assert_eq!(t.chat.model, "glm-5");
    assert!(t.chat.stream && t.chat.wants_stream_usage);
    assert!(t.chat.starts_turn, "the last message is the user's");
    assert_eq!(
        t.chat.thinking,
        Some(Thinking {
            enabled: true,
            level: ReasoningLevel::Medium
        })
    );
    let b = &t.chat.body;
    assert_eq!(b["model"], "glm-5");
    assert_eq!(b["max_tokens"], 32000);
    assert_eq!(b["temperature"], 1);
    assert_eq!(b["user"], "user_3f9c0d_account__session_7b21e5c2");
    assert_eq!(b["tool_choice"], "auto");
    assert_eq!(b["parallel_tool_calls"], false);
    assert!(b.get("anthropic_beta_unknown_field").is_none());
    assert!(
        b.get("thinking").is_none(),
        "thinking travels outside the body"
    );

    let tools = b["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 2, "the server tool has no OpenAI form");
    assert_eq!(tools[0]["function"]["name"], "Bash");
    assert_eq!(
        tools[0]["function"]["parameters"]["required"],
        json!(["command"])
    );

    let m = b["messages"].as_array().expect("messages");
    let roles: Vec<&str> = m.iter().filter_map(|x| x["role"].as_str()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "tool", "user"]
    );
    assert_eq!(
        m[0]["content"],
        "You are Claude Code, Anthropic's official CLI for Claude.\nWorking directory: /home/dev/project\nIs a git repository: true"
    );
    assert_eq!(
        m[1]["content"],
        "<system-reminder>Plan mode is off.</system-reminder>\nWhy does the build fail?"
    );
    assert_eq!(m[2]["content"], "Let me run the build.");
    assert_eq!(m[2]["reasoning_content"], "I should run the build first.");
    assert_eq!(m[2]["signature"], "EqQBCkYIBRABGAIiQ");
    assert_eq!(
        m[2]["tool_calls"],
        json!([
            { "id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
              "function": { "name": "Bash", "arguments": "{\"command\":\"cargo build\"}" } },
            { "id": "toolu_01B7kx", "type": "function",
              "function": { "name": "Read", "arguments": "{\"file_path\":\"Cargo.toml\"}" } }
        ])
    );
    assert_eq!(
        m[3],
        json!({ "role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9",
                "content": "Error: error[E0425]: cannot find value `x`" })
    );
    assert_eq!(m[4]["content"], "[package]\nname = \"demo\"");
    assert_eq!(
        m[5]["content"],
        json!([
            { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
            { "type": "text", "text": "Here is a screenshot too." }
        ])
    );
}

#[test]
fn simple_request_fields() {
    let t = run(
        r#"{"model":"claude-haiku-4-5","max_tokens":100,"system":"Be brief.",
        "stop_sequences":["END"],"top_p":0.9,"top_k":40,
        "messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(t.chat.model, "qwen3-coder-plus");
    assert!(!t.chat.stream);
    assert_eq!(t.chat.thinking, None);
    let b = &t.chat.body;
    assert_eq!(
        b["messages"][0],
        json!({ "role": "system", "content": "Be brief." })
    );
    assert_eq!(b["stop"], json!(["END"]));
    assert_eq!(t.echo.stop_sequences, ["END"]);
    assert_eq!(b["top_p"], 0.9);
    assert_eq!(b["top_k"], 40);
    assert!(b.get("stream").is_none());
}

#[test]
fn thinking_signatures_travel_next_to_the_reasoning() {
    let assistant = |content: &str| {
        let body = format!(
            r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":"q"}},
               {{"role":"assistant","content":{content}}},{{"role":"user","content":"go"}}]}}"#
        );
        run(&body).chat.body["messages"][1].clone()
    };
    // Several blocks: texts joined, the last non-empty signature kept.
    assert_eq!(
        assistant(
            r#"[{"type":"thinking","thinking":"one ","signature":"sig-1"},
                {"type":"text","text":"a"},
                {"type":"thinking","thinking":"two ","signature":"sig-2"},
                {"type":"thinking","thinking":"three","signature":""},
                {"type":"redacted_thinking","data":"opaque"}]"#
        ),
        json!({ "role": "assistant", "content": "a",
                "reasoning_content": "one two three", "signature": "sig-2" })
    );
    // No signature anywhere (or only empty ones): no `signature` key.
    assert_eq!(
        assistant(
            r#"[{"type":"thinking","thinking":"t","signature":""},{"type":"text","text":"b"}]"#
        ),
        json!({ "role": "assistant", "content": "b", "reasoning_content": "t" })
    );
    assert_eq!(
        assistant(r#"[{"type":"thinking","thinking":"t"}]"#),
        json!({ "role": "assistant", "content": "", "reasoning_content": "t" })
    );
    assert_eq!(
        assistant(r#""plain""#),
        json!({ "role": "assistant", "content": "plain" })
    );
}

#[test]
fn tool_choice_variants_and_thinking_off() {
    let with = |choice: &str| {
        let body = format!(
            r#"{{"model":"m","max_tokens":1,"thinking":{{"type":"disabled"}},
               "tools":[{{"name":"f","input_schema":{{"type":"object"}}}}],
               "tool_choice":{choice},"messages":[{{"role":"user","content":"x"}}]}}"#
        );
        run(&body)
    };
    assert_eq!(
        with(r#"{"type":"any"}"#).chat.body["tool_choice"],
        "required"
    );
    assert_eq!(with(r#"{"type":"none"}"#).chat.body["tool_choice"], "none");
    assert_eq!(
        with(r#"{"type":"tool","name":"f"}"#).chat.body["tool_choice"],
        json!({ "type": "function", "function": { "name": "f" } })
    );
    let t = with(r#"{"type":"auto"}"#);
    assert_eq!(t.chat.thinking.map(|th| th.enabled), Some(false));
}

#[test]
fn image_urls_and_high_budget() {
    let t = run(
        r#"{"model":"kimi-k2.5","max_tokens":1,"thinking":{"type":"enabled","budget_tokens":31999},
        "messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]},
                    {"role":"assistant","content":"ok"}]}"#,
    );
    assert_eq!(t.chat.model, "kimi-k2.5");
    assert!(!t.chat.starts_turn, "the last message is the assistant's");
    assert_eq!(
        t.chat.thinking.map(|th| th.level),
        Some(ReasoningLevel::High)
    );
    assert_eq!(
        t.chat.body["messages"][0]["content"][0]["image_url"]["url"],
        "https://x/y.png"
    );
}

#[test]
fn bad_requests_are_clear() {
    let err = |body: &str| {
        translate(body.as_bytes(), &ModelMap::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(err("{").contains("not valid JSON"));
    assert!(err(r#"{"messages":[]}"#).contains("`model`"));
    assert!(err(r#"{"model":"m"}"#).contains("`messages`"));
    assert!(
        err(r#"{"model":"m","messages":[{"role":"system","content":"x"}]}"#)
            .contains("user or assistant")
    );
    assert!(err(r#"{"model":"m","messages":[]}"#).contains("at least one"));
    assert!(
        err(r#"{"model":"m","stream":"yes","messages":[{"role":"user","content":"x"}]}"#)
            .contains("`stream`")
    );
}

#[test]
fn values_of_the_wrong_type_are_refused_not_dropped() {
    let err = |body: serde_json::Value| {
        translate(body.to_string().as_bytes(), &ModelMap::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let user = json!({"role": "user", "content": "hello"});
    let cases = [
        (
            json!({"model": "m", "messages": [{"role": "user", "content": 5}, user]}),
            "`messages[0].content` must be a string or an array",
        ),
        (
            json!({"model": "m", "messages": [user, {"role": "assistant", "content": {"a": 1}}]}),
            "`messages[1].content` must be a string or an array",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user"}]}),
            "`messages[0].content` must be",
        ),
        (
            json!({"model": "m", "messages": [user, "hi"]}),
            "`messages[1]` must be an object",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, "b"]}]}),
            "`messages[0].content[1]` must be a content block",
        ),
        (
            json!({"model": "m", "system": 5, "messages": [user]}),
            "`system` must be a string or an array of text blocks",
        ),
        (
            json!({"model": "m", "system": [{"type": "text", "text": "a"}, {"type": "image"}], "messages": [user]}),
            "`system[1]` must be a text block",
        ),
        (
            json!({"model": "m", "max_tokens": "10", "messages": [user]}),
            "`max_tokens` must be a number",
        ),
        (
            json!({"model": "m", "temperature": true, "messages": [user]}),
            "`temperature` must be a number",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
            "holds nothing the gateway can send",
        ),
        (
            json!({"model": "m", "max_tokens": -5, "messages": [user]}),
            "`max_tokens` must be a whole number of at least 1",
        ),
        (
            json!({"model": "m", "max_tokens": 1.5, "messages": [user]}),
            "`max_tokens` must be a whole number of at least 1",
        ),
        (
            json!({"model": "m", "stop_sequences": "END", "messages": [user]}),
            "`stop_sequences` must be an array of strings",
        ),
        (
            json!({"model": "m", "tools": {"a": 1}, "messages": [user]}),
            "`tools` must be an array",
        ),
        (
            json!({"model": "m", "tools": [{"name": "ls", "input_schema": "str"}], "messages": [user]}),
            "`tools[0].input_schema` must be an object",
        ),
        (
            json!({"model": "m", "tools": [{"input_schema": {}}], "messages": [user]}),
            "`tools[0].name` must be a string",
        ),
        (
            json!({"model": "m", "tool_choice": "auto", "messages": [user]}),
            "`tool_choice` must be an object whose `type` is auto, any, tool or none",
        ),
        (
            json!({"model": "m", "tool_choice": {"type": "bogus"}, "messages": [user]}),
            "`tool_choice` must be an object",
        ),
        (
            json!({"model": "m", "tool_choice": {"type": "tool"}, "messages": [user]}),
            "`tool_choice.name` must be a string",
        ),
        (
            json!({"model": "m", "metadata": {"user_id": 5}, "messages": [user]}),
            "`metadata.user_id` must be a string",
        ),
        (
            json!({"model": "m", "thinking": true, "messages": [user]}),
            "`thinking` must be an object with a string `type`",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
            "`messages[0].content[0].text` must be a string",
        ),
        (
            json!({"model": "m", "messages": [user, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "ls", "input": "x"}]}]}),
            "`messages[1].content[0].input` must be an object",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "content": "ok"}]}]}),
            "`messages[0].content[0].tool_use_id` must be a string",
        ),
    ];
    for (body, expected) in cases {
        let e = err(body.clone());
        assert!(e.contains(expected), "{body}: {e}");
    }
    // Well-typed values still pass: null settings, a system of strings and
    // text blocks, and unknown block types next to known ones.
    let t = translate(
        json!({"model": "m", "max_tokens": null, "system": ["a", {"type": "text", "text": "b"}],
               "stop_sequences": null, "tool_choice": null, "metadata": {"user_id": null},
               "tools": [{"type": "mcp_toolset", "mcp_server_name": "x"}, {"type": "web_search_20250305", "name": "web_search"}],
               "thinking": {"type": "adaptive"},
               "messages": [{"role": "user", "content": [{"type": "document"}, {"type": "text", "text": "hi"}]}]})
        .to_string()
        .as_bytes(),
        &ModelMap::default(),
    )
    .expect("translates");
    assert_eq!(
        t.chat.body["messages"],
        json!([{"role": "system", "content": "a\nb"}, {"role": "user", "content": "hi"}])
    );
}

#[test]
fn token_estimate_grows_with_text() {
    let short = estimate_tokens(
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        &ModelMap::default(),
    )
    .expect("estimate");
    let long = estimate_tokens(CLAUDE_CODE.as_bytes(), &ModelMap::default()).expect("estimate");
    assert!(short > 0 && long > short * 10, "{short} {long}");
}

#[test]
fn an_image_counts_as_a_fixed_estimate_not_as_its_bytes() {
    let with_image = |data: &str| {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
        ]}]});
        estimate_tokens(body.to_string().as_bytes(), &ModelMap::default()).expect("estimate")
    };
    let small = with_image("iVBORw0KGgo=");
    let large = with_image(&"A".repeat(100_000));
    assert_eq!(small, large, "the image's size in bytes does not count");
    let text_only = estimate_tokens(
        br#"{"model":"m","messages":[{"role":"user","content":"what is this?"}]}"#,
        &ModelMap::default(),
    )
    .expect("estimate");
    assert!(
        small >= text_only + IMAGE_TOKENS && small < text_only + IMAGE_TOKENS + 40,
        "{small} {text_only}"
    );
}

#[test]
fn empty_text_blocks_add_no_blank_lines() {
    let t = run(
        r#"{"model": "glm-5", "max_tokens": 10, "system": [{"type": "text", "text": ""}, {"type": "text", "text": "rules"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": ""}, {"type": "text", "text": "b"}]}]}"#,
    );
    let m = t.chat.body["messages"].as_array().expect("messages");
    assert_eq!(m[0]["content"], "rules");
    assert_eq!(m[1]["content"], "a\nb");
}

#[test]
fn a_tool_results_images_follow_in_a_user_message_without_starting_a_turn() {
    let png = r#"{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}"#;
    let body = format!(
        r#"{{"model": "glm-5", "max_tokens": 10, "messages": [
        {{"role": "user", "content": "take a screenshot"}},
        {{"role": "assistant", "content": [{{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {{}}}}]}},
        {{"role": "user", "content": [{{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{{"type": "text", "text": "done"}}, {png}]}}]}}]}}"#
    );
    let t = run(&body);
    let m = t.chat.body["messages"].as_array().expect("messages");
    let roles: Vec<&str> = m.iter().filter_map(|x| x["role"].as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "user"]);
    assert_eq!(
        m[2]["content"],
        "done\n(the image this tool returned follows in the next message)"
    );
    assert_eq!(
        m[3]["content"],
        json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}])
    );
    assert!(
        !t.chat.starts_turn,
        "a tool's answer is not a new user turn"
    );

    // The user's own words after the result: images first, then the words,
    // and a new turn.
    let with_words = body.replace(
        r#""content": [{"type": "tool_result""#,
        r#""content": [{"type": "text", "text": "and now?"}, {"type": "tool_result""#,
    );
    let t = run(&with_words);
    let m = t.chat.body["messages"].as_array().expect("messages");
    assert_eq!(m[3]["content"][0]["type"], "image_url");
    assert_eq!(
        m[3]["content"][1],
        json!({"type": "text", "text": "and now?"})
    );
    assert!(t.chat.starts_turn);
}
