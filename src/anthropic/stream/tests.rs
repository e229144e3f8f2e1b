//! Exact event order and block indices for the streaming translation.

use super::tools::arguments_complete;
use super::*;
use crate::profile::UpstreamFault;
use bytes::Bytes;

fn data(v: Value) -> SseItem {
    SseItem::Data(Bytes::from(v.to_string()))
}

fn delta(d: Value) -> SseItem {
    data(json!({ "id": "c1", "choices": [{ "index": 0, "delta": d }] }))
}

fn finish(reason: &str) -> SseItem {
    data(json!({ "id": "c1", "choices": [{ "index": 0, "delta": {}, "finish_reason": reason }] }))
}

fn usage(prompt: u64, completion: u64) -> SseItem {
    data(
        json!({ "choices": [], "usage": { "prompt_tokens": prompt, "completion_tokens": completion } }),
    )
}

/// Runs items through a fresh stream; returns (event name, data) pairs.
fn events(items: Vec<SseItem>) -> Vec<(String, Value)> {
    events_for(Echo::model("claude-sonnet-4-5"), items)
}

/// `events` for a request with what `echo` holds (its stop sequences).
fn events_for(echo: Echo, items: Vec<SseItem>) -> Vec<(String, Value)> {
    let mut s = MessageStream::new(Profile::Iflow, echo);
    let mut out = BytesMut::new();
    for item in items {
        s.on_item(item, &mut out, "acc");
    }
    s.on_eof(&mut out);
    parse(&out)
}

fn parse(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).expect("utf8");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines
                .next()
                .and_then(|l| l.strip_prefix("event: "))
                .expect("event line");
            let data = lines
                .next()
                .and_then(|l| l.strip_prefix("data: "))
                .expect("data line");
            (name.to_string(), serde_json::from_str(data).expect("json"))
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn text_only() {
    let e = events(vec![
        delta(json!({ "role": "assistant", "content": "Hel" })),
        delta(json!({ "content": "lo" })),
        finish("stop"),
        usage(11, 2),
        SseItem::Done,
    ]);
    assert_eq!(
        names(&e),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &e[0].1["message"];
    assert_eq!(start["model"], "claude-sonnet-4-5");
    assert!(
        start["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );
    assert_eq!(start["content"], json!([]));
    assert_eq!(
        e[1].1,
        json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } })
    );
    assert_eq!(
        e[2].1["delta"],
        json!({ "type": "text_delta", "text": "Hel" })
    );
    assert_eq!(e[4].1, json!({ "type": "content_block_stop", "index": 0 }));
    assert_eq!(
        e[5].1["delta"],
        json!({ "stop_reason": "end_turn", "stop_sequence": null })
    );
    assert_eq!(
        e[5].1["usage"],
        json!({ "input_tokens": 11, "output_tokens": 2 })
    );
    assert_eq!(e[6].1, json!({ "type": "message_stop" }));
}

#[test]
fn reasoning_then_text() {
    let e = events(vec![
        delta(json!({ "reasoning_content": "Think" })),
        delta(json!({ "reasoning_content": "ing." })),
        delta(json!({ "content": "Answer" })),
        finish("stop"),
        SseItem::Done,
    ]);
    assert_eq!(
        names(&e),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        e[1].1["content_block"],
        json!({ "type": "thinking", "thinking": "", "signature": "" })
    );
    assert_eq!(
        e[2].1["delta"],
        json!({ "type": "thinking_delta", "thinking": "Think" })
    );
    assert_eq!(
        (e[1].1["index"].clone(), e[4].1["index"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(
        e[5].1["content_block"],
        json!({ "type": "text", "text": "" })
    );
    assert_eq!(
        (e[5].1["index"].clone(), e[7].1["index"].clone()),
        (json!(1), json!(1))
    );
}

/// What each item adds to the output, item by item (the end of the
/// upstream stream included as a last step).
fn steps(items: Vec<SseItem>) -> Vec<Vec<(String, Value)>> {
    let mut s = MessageStream::new(Profile::Iflow, Echo::model("claude-sonnet-4-5"));
    let mut out = BytesMut::new();
    let mut steps: Vec<Vec<(String, Value)>> = items
        .into_iter()
        .map(|item| {
            s.on_item(item, &mut out, "acc");
            parse(&out.split())
        })
        .collect();
    s.on_eof(&mut out);
    steps.push(parse(&out.split()));
    steps
}

fn ev(data: Value) -> (String, Value) {
    (data["type"].as_str().unwrap_or_default().to_string(), data)
}

fn start_ev(index: usize, block: Value) -> (String, Value) {
    ev(json!({ "type": "content_block_start", "index": index, "content_block": block }))
}

fn delta_ev(index: usize, delta: Value) -> (String, Value) {
    ev(json!({ "type": "content_block_delta", "index": index, "delta": delta }))
}

fn json_ev(index: usize, partial: &str) -> (String, Value) {
    delta_ev(
        index,
        json!({ "type": "input_json_delta", "partial_json": partial }),
    )
}

fn stop_ev(index: usize) -> (String, Value) {
    ev(json!({ "type": "content_block_stop", "index": index }))
}

fn tool_block(id: &str, name: &str) -> Value {
    json!({ "type": "tool_use", "id": id, "name": name, "input": {} })
}

/// The sequential case (every fragment of a call before the next call):
/// each call's block stops when the next call starts, so both stream their
/// fragments as they arrive and only the last block's stop waits for the end.
#[test]
fn text_then_two_tool_calls_with_split_arguments() {
    let s = steps(vec![
        delta(json!({ "content": "Running two tools." })),
        tool_call(0, Some("call_a"), Some("Bash"), ""),
        tool_call(0, None, None, "{\"comm"),
        tool_call(0, None, None, "and\":\"ls\"}"),
        tool_call(1, Some("call_b"), Some("Read"), "{\"file_path\":"),
        tool_call(1, None, None, "\"a.rs\"}"),
        finish("tool_calls"),
        usage(50, 20),
        SseItem::Done,
    ]);
    assert_eq!(s[0][0].0, "message_start");
    assert_eq!(
        s[0][1..],
        [
            start_ev(0, json!({ "type": "text", "text": "" })),
            delta_ev(
                0,
                json!({ "type": "text_delta", "text": "Running two tools." })
            ),
        ]
    );
    assert_eq!(
        s[1],
        [stop_ev(0), start_ev(1, tool_block("call_a", "Bash"))]
    );
    assert_eq!(s[2], [json_ev(1, "{\"comm")]);
    assert_eq!(s[3], [json_ev(1, "and\":\"ls\"}")]);
    // `{"command":"ls"}` is whole: call_b's start stops call_a's block.
    assert_eq!(
        s[4],
        [
            stop_ev(1),
            start_ev(2, tool_block("call_b", "Read")),
            json_ev(2, "{\"file_path\":")
        ]
    );
    assert_eq!(s[5], [json_ev(2, "\"a.rs\"}")]);
    assert_eq!((s[6].len(), s[7].len()), (0, 0));
    assert_eq!(
        names(&s[8]),
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert_eq!(s[8][0], stop_ev(2));
    assert_eq!(
        s[8][1].1,
        json!({ "type": "message_delta",
                "delta": { "stop_reason": "tool_use", "stop_sequence": null },
                "usage": { "input_tokens": 50, "output_tokens": 20 } })
    );
    assert!(s[9].is_empty(), "nothing after [DONE]");
}

/// Text and reasoning after a tool call with whole arguments stream live
/// too, and a later call after them opens its own block.
#[test]
fn blocks_after_a_whole_tool_call_stream_live() {
    let s = steps(vec![
        tool_call(0, Some("call_a"), Some("Bash"), "{\"command\":\"ls\"}"),
        delta(json!({ "reasoning_content": "Now " })),
        delta(json!({ "reasoning_content": "read.", "signature": "sig" })),
        delta(json!({ "content": "Reading." })),
        tool_call(1, Some("call_b"), Some("Read"), "{}"),
        SseItem::Done,
    ]);
    assert_eq!(
        s[0][1..],
        [
            start_ev(0, tool_block("call_a", "Bash")),
            json_ev(0, "{\"command\":\"ls\"}")
        ]
    );
    let thinking = json!({ "type": "thinking", "thinking": "", "signature": "" });
    assert_eq!(
        s[1],
        [
            stop_ev(0),
            start_ev(1, thinking),
            delta_ev(1, json!({ "type": "thinking_delta", "thinking": "Now " }))
        ]
    );
    assert_eq!(
        s[2],
        [
            delta_ev(1, json!({ "type": "thinking_delta", "thinking": "read." })),
            delta_ev(1, json!({ "type": "signature_delta", "signature": "sig" }))
        ]
    );
    assert_eq!(
        s[3],
        [
            stop_ev(1),
            start_ev(2, json!({ "type": "text", "text": "" })),
            delta_ev(2, json!({ "type": "text_delta", "text": "Reading." }))
        ]
    );
    assert_eq!(
        s[4],
        [
            stop_ev(2),
            start_ev(3, tool_block("call_b", "Read")),
            json_ev(3, "{}")
        ]
    );
    assert_eq!(
        names(&s[5]),
        ["content_block_stop", "message_delta", "message_stop"]
    );
}

/// A fragment for a call whose block was stopped (its arguments were whole)
/// would make them invalid; it is dropped and the stream stays valid.
#[test]
fn a_late_fragment_for_a_stopped_call_is_dropped() {
    let e = events(vec![
        tool_call(0, Some("call_a"), Some("Bash"), "{\"command\":\"ls\"}"),
        tool_call(1, Some("call_b"), Some("Read"), "{\"file_path\":"),
        tool_call(0, None, None, ",\"timeout\":5}"),
        tool_call(0, None, None, "  "),
        tool_call(1, None, None, "\"a.rs\"}"),
        finish("tool_calls"),
        SseItem::Done,
    ]);
    assert_well_formed(&e);
    assert_eq!(
        tool_inputs(&e),
        [
            ("Bash".to_string(), json!({ "command": "ls" })),
            ("Read".to_string(), json!({ "file_path": "a.rs" })),
        ]
    );
    let deltas: Vec<&str> = e
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        deltas,
        ["{\"command\":\"ls\"}", "{\"file_path\":", "\"a.rs\"}"]
    );
}

#[test]
fn only_a_whole_json_object_is_complete_arguments() {
    for whole in ["{}", " {\"a\":1} \n", "{\"s\":\"}{\",\"n\":[1,{}]}"] {
        assert!(arguments_complete(whole), "{whole:?}");
    }
    for partial in [
        "",
        "  ",
        "{",
        "{\"a\":",
        "{\"a\":\"}\"",
        "{}x",
        "[1]",
        "\"x\"",
        "12",
    ] {
        assert!(!arguments_complete(partial), "{partial:?}");
    }
}

/// Checks the Anthropic rules a client parser relies on: one block open at a
/// time, indices in order, every delta and stop for the open block.
fn assert_well_formed(e: &[(String, Value)]) {
    let mut open: Option<u64> = None;
    let mut next = 0;
    for (name, data) in e {
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(open, None, "a block started while another was open");
                assert_eq!(data["index"], next);
                open = Some(next);
                next += 1;
            }
            "content_block_delta" => {
                assert_eq!(Some(&data["index"]), open.map(Value::from).as_ref())
            }
            "content_block_stop" => {
                assert_eq!(Some(&data["index"]), open.map(Value::from).as_ref());
                open = None;
            }
            _ => assert_eq!(open, None, "{name} inside a block"),
        }
    }
}

/// Each tool call's input, joined from its blocks' fragments, by name.
fn tool_inputs(e: &[(String, Value)]) -> Vec<(String, Value)> {
    let mut calls: Vec<(u64, String, String)> = Vec::new();
    for (_, data) in e {
        if data["content_block"]["type"] == "tool_use" {
            let name = data["content_block"]["name"].as_str().unwrap_or_default();
            calls.push((
                data["index"].as_u64().unwrap_or(0),
                name.into(),
                String::new(),
            ));
        }
        if let Some(part) = data["delta"]["partial_json"].as_str()
            && let Some(call) = calls
                .iter_mut()
                .find(|c| Some(c.0) == data["index"].as_u64())
        {
            call.2.push_str(part);
        }
    }
    calls
        .into_iter()
        .map(|(_, name, args)| (name, serde_json::from_str(&args).expect("whole json")))
        .collect()
}

fn tool_call(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> SseItem {
    let mut c = json!({ "index": index, "type": "function", "function": { "arguments": args } });
    if let Some(n) = name {
        c["function"]["name"] = json!(n);
    }
    if let Some(i) = id {
        c["id"] = json!(i);
    }
    delta(json!({ "tool_calls": [c] }))
}

/// True interleaving: call_b starts while call_a's arguments are still
/// incomplete, so call_a keeps its block to the end and call_b (with all
/// that follows) is sent whole after it.
#[test]
fn interleaved_tool_call_fragments_each_reach_their_own_block() {
    let s = steps(vec![
        tool_call(0, Some("call_a"), Some("Bash"), "{\"command\":"),
        tool_call(1, Some("call_b"), Some("Read"), "{\"file_"),
        tool_call(0, None, None, "\"ls\"}"),
        tool_call(1, None, None, "path\":\"a.rs\"}"),
        finish("tool_calls"),
        SseItem::Done,
    ]);
    assert_eq!(
        s[0][1..],
        [
            start_ev(0, tool_block("call_a", "Bash")),
            json_ev(0, "{\"command\":")
        ]
    );
    assert!(s[1].is_empty(), "call_b waits: {:?}", s[1]);
    assert_eq!(s[2], [json_ev(0, "\"ls\"}")]);
    assert!(s[3].is_empty() && s[4].is_empty());
    assert_eq!(
        s[5][..4],
        [
            stop_ev(0),
            start_ev(1, tool_block("call_b", "Read")),
            json_ev(1, "{\"file_path\":\"a.rs\"}"),
            stop_ev(1)
        ]
    );
    let e: Vec<(String, Value)> = s.concat();
    assert_well_formed(&e);
    assert_eq!(
        tool_inputs(&e),
        [
            ("Bash".to_string(), json!({ "command": "ls" })),
            ("Read".to_string(), json!({ "file_path": "a.rs" })),
        ]
    );
    assert_eq!(e[e.len() - 2].1["delta"]["stop_reason"], "tool_use");
}

/// Headers first, then the fragments: call_a's arguments are empty when
/// call_b starts. Empty is not whole, so the fallback keeps both correct.
#[test]
fn call_headers_before_any_arguments_take_the_fallback() {
    let e = events(vec![
        tool_call(0, Some("call_a"), Some("Bash"), ""),
        tool_call(1, Some("call_b"), Some("Read"), ""),
        tool_call(2, Some("call_c"), Some("Grep"), ""),
        tool_call(1, None, None, "{\"file_path\":\"a.rs\"}"),
        tool_call(0, None, None, "{\"command\":\"ls\"}"),
        tool_call(2, None, None, "{}"),
        finish("tool_calls"),
        SseItem::Done,
    ]);
    assert_well_formed(&e);
    assert_eq!(
        tool_inputs(&e),
        [
            ("Bash".to_string(), json!({ "command": "ls" })),
            ("Read".to_string(), json!({ "file_path": "a.rs" })),
            ("Grep".to_string(), json!({})),
        ]
    );
}

#[test]
fn text_and_reasoning_after_a_live_tool_call_follow_it_whole() {
    let e = events(vec![
        tool_call(0, Some("call_a"), Some("Bash"), "{\"command\":"),
        delta(json!({ "reasoning_content": "hmm, " })),
        delta(json!({ "reasoning_content": "fine", "signature": "sig" })),
        delta(json!({ "content": "Running " })),
        tool_call(0, None, None, "\"ls\"}"),
        delta(json!({ "content": "it." })),
        finish("tool_calls"),
        SseItem::Done,
    ]);
    assert_well_formed(&e);
    assert_eq!(
        tool_inputs(&e),
        [("Bash".to_string(), json!({ "command": "ls" }))]
    );
    let blocks: Vec<&Value> = e
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| &d["content_block"]["type"])
        .collect();
    assert_eq!(blocks, ["tool_use", "thinking", "text"]);
    let deltas: Vec<&Value> = e.iter().map(|(_, d)| &d["delta"]).collect();
    assert!(deltas.contains(&&json!({ "type": "thinking_delta", "thinking": "hmm, fine" })));
    assert!(deltas.contains(&&json!({ "type": "signature_delta", "signature": "sig" })));
    assert!(deltas.contains(&&json!({ "type": "text_delta", "text": "Running it." })));
}

#[test]
fn a_named_stop_sequence_reaches_the_message_delta() {
    let echo = || Echo {
        model: "claude-haiku-4-5".into(),
        stop_sequences: vec!["END".into(), "###".into()],
    };
    let last_choice = |extra: Value| {
        let mut choice = json!({ "index": 0, "delta": {}, "finish_reason": "stop" });
        if let (Some(c), Value::Object(e)) = (choice.as_object_mut(), extra) {
            c.extend(e);
        }
        data(json!({ "id": "c1", "choices": [choice] }))
    };
    let end_of = |echo: Echo, items: Vec<SseItem>| {
        let e = events_for(echo, items);
        assert_eq!(names(&e).last(), Some(&"message_stop"));
        e[e.len() - 2].1["delta"].clone()
    };
    let text = || delta(json!({ "content": "1, 2, 3" }));
    // vLLM names the match in `stop_reason`, SGLang in `matched_stop`.
    assert_eq!(
        end_of(
            echo(),
            vec![
                text(),
                last_choice(json!({ "stop_reason": "END" })),
                SseItem::Done
            ]
        ),
        json!({ "stop_reason": "stop_sequence", "stop_sequence": "END" })
    );
    assert_eq!(
        end_of(
            echo(),
            vec![
                text(),
                last_choice(json!({ "matched_stop": "###" })),
                SseItem::Done
            ]
        ),
        json!({ "stop_reason": "stop_sequence", "stop_sequence": "###" })
    );
    // A stop token id, or a request without stop sequences: a plain end.
    let end_turn = json!({ "stop_reason": "end_turn", "stop_sequence": null });
    assert_eq!(
        end_of(
            echo(),
            vec![
                text(),
                last_choice(json!({ "stop_reason": 2 })),
                SseItem::Done
            ]
        ),
        end_turn
    );
    assert_eq!(
        end_of(
            Echo::model("m"),
            vec![
                text(),
                last_choice(json!({ "stop_reason": "END" })),
                SseItem::Done
            ]
        ),
        end_turn
    );
    // A tool call still asks the client to run it.
    let call = tool_call(0, Some("call_a"), Some("f"), "{}");
    assert_eq!(
        end_of(
            echo(),
            vec![
                call,
                last_choice(json!({ "matched_stop": "END" })),
                SseItem::Done
            ]
        ),
        json!({ "stop_reason": "tool_use", "stop_sequence": null })
    );
}

#[test]
fn upstream_error_mid_stream() {
    let mut s = MessageStream::new(Profile::Iflow, Echo::model("claude-sonnet-4-5"));
    let mut out = BytesMut::new();
    s.on_item(delta(json!({ "content": "partial" })), &mut out, "acc");
    s.fail(
        &GatewayError::upstream(
            "acc",
            UpstreamFault::StreamInterrupted("connection reset".into()),
        ),
        &mut out,
    );
    s.on_eof(&mut out);
    let e = parse(&out);
    assert_eq!(
        names(&e),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(e[3].1["type"], "error");
    assert_eq!(e[3].1["error"]["type"], "api_error");
    assert!(s.error().is_some_and(|m| m.contains("connection reset")));
}

#[test]
fn iflow_error_payload_in_the_stream() {
    let e = events(vec![data(
        json!({ "status": "449", "msg": "too many requests at once" }),
    )]);
    assert_eq!(names(&e), ["error"]);
    assert_eq!(e[0].1["error"]["type"], "rate_limit_error");
}

#[test]
fn eof_without_done_still_closes_the_message() {
    let e = events(vec![delta(json!({ "content": "x" }))]);
    assert_eq!(names(&e).last(), Some(&"message_stop"));
    assert_eq!(e[e.len() - 2].1["delta"]["stop_reason"], "end_turn");
}

/// Two well-formed `read` blocks, for path x and then path y.
fn assert_read_x_then_y(e: &[(String, Value)]) {
    assert_well_formed(e);
    assert_eq!(
        tool_inputs(e),
        [
            ("read".to_string(), json!({ "path": "x" })),
            ("read".to_string(), json!({ "path": "y" })),
        ]
    );
}

/// Providers that send no id at all and every call at index 0: a new name
/// after whole arguments is a new call, not more arguments for the last.
#[test]
fn a_new_name_after_whole_arguments_starts_a_new_call() {
    let e = events(vec![
        tool_call(0, None, Some("read"), "{\"path\": \"x\"}"),
        tool_call(0, None, Some("read"), "{\"path\": \"y\"}"),
        finish("tool_calls"),
        SseItem::Done,
    ]);
    assert_read_x_then_y(&e);
    // A name repeated on every fragment of one call does not split it, not
    // even where a fragment opens a nested object, nor does a trailing
    // fragment with the name and no arguments.
    let e = events(vec![
        tool_call(0, None, Some("read"), "{\"path\":"),
        tool_call(0, None, Some("read"), " \"x\", \"opts\": "),
        tool_call(0, None, Some("read"), "{\"all\": true}}"),
        tool_call(0, None, Some("read"), ""),
        finish("tool_calls"),
        SseItem::Done,
    ]);
    assert_eq!(
        tool_inputs(&e),
        [(
            "read".to_string(),
            json!({ "path": "x", "opts": { "all": true } })
        )]
    );
}

/// The same id for every call, each whole in one fragment at index 0.
#[test]
fn one_id_for_every_call_still_gives_one_block_per_call() {
    let e = events(vec![
        tool_call(0, Some("call_0"), Some("read"), "{\"path\": \"x\"}"),
        tool_call(0, Some("call_0"), Some("read"), "{\"path\": \"y\"}"),
        finish("tool_calls"),
        SseItem::Done,
    ]);
    assert_read_x_then_y(&e);
}

#[test]
fn two_calls_with_one_id_get_two_ids() {
    let e = events(vec![
        tool_call(0, Some("call_0"), Some("read"), "{\"path\": \"x\"}"),
        tool_call(1, Some("call_0"), Some("read"), "{\"path\":"),
        tool_call(1, Some("call_0"), None, " \"y\"}"),
        finish("tool_calls"),
        SseItem::Done,
    ]);
    let ids: Vec<&str> = e
        .iter()
        .filter(|(_, d)| d["content_block"]["type"] == "tool_use")
        .map(|(_, d)| d["content_block"]["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), 2, "{e:?}");
    assert_eq!(ids[0], "call_0");
    assert!(ids[1].starts_with("toolu_"), "{ids:?}");
    assert_read_x_then_y(&e);
}

#[test]
fn iflow_error_payload_in_an_openai_accounts_stream() {
    let mut s = MessageStream::new(Profile::OpenAi, Echo::model("m"));
    let mut out = BytesMut::new();
    s.on_item(delta(json!({ "content": "partial" })), &mut out, "acc");
    s.on_item(
        data(json!({ "status": "449", "msg": "too many requests at once" })),
        &mut out,
        "acc",
    );
    s.on_eof(&mut out);
    let e = parse(&out);
    assert_eq!(names(&e).last(), Some(&"error"), "{e:?}");
    assert_eq!(
        e.last().map(|x| &x.1["error"]["type"]),
        Some(&json!("rate_limit_error"))
    );
}

#[test]
fn half_an_emoji_in_each_of_two_events_keeps_the_text_around_it() {
    let e = events(vec![
        SseItem::Data(Bytes::from_static(
            br#"{"choices":[{"index":0,"delta":{"content":"x\ud83d"}}]}"#,
        )),
        SseItem::Data(Bytes::from_static(
            br#"{"choices":[{"index":0,"delta":{"content":"\ude00y"}}]}"#,
        )),
        finish("stop"),
        SseItem::Done,
    ]);
    let text: String = e
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "x\u{fffd}\u{fffd}y");
}
