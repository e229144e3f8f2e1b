//! The Anthropic Messages endpoint streamed, at the byte level: the exact
//! `event:` + `data:` sequence for each kind of upstream stream, errors
//! before and during the stream, and `ping`s while the upstream is silent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::anthropic::{
    MODEL, assert_error_body, block_delta, block_start, block_stop, events, events_without_id,
    message_end, message_start, messages, stream_msg,
};
use common::client::Response;
use common::scripted::{STOPPED_TEXT, STREAM_USAGE, TEXT_DELTAS, THINK_DELTAS, TWO_CALLS};
use common::{API_KEY, setup};
use serde_json::{Value, json};

fn text_delta(index: usize, text: &str) -> (String, Value) {
    block_delta(index, json!({"type": "text_delta", "text": text}))
}

fn assert_stream_head(resp: &Response) {
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    assert_eq!(resp.header("cache-control"), Some("no-cache"));
}

#[test]
fn text_stream_is_one_text_block_then_end_turn_with_the_upstream_usage() {
    let s = setup(&[]);
    let resp = messages(s.gw.addr, &s.account, &stream_msg("scenario:stream_text"));
    assert_stream_head(&resp);
    let mut want = vec![
        message_start(MODEL),
        block_start(0, json!({"type": "text", "text": ""})),
    ];
    want.extend(TEXT_DELTAS.iter().map(|t| text_delta(0, t)));
    want.push(block_stop(0));
    want.extend(message_end("end_turn", STREAM_USAGE));
    assert_eq!(events_without_id(&resp.text()), want);
    assert!(!resp.text().contains("event: ping"));
    let sent = s.mock.last_request().body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(sent["model"], "glm-5");
}

#[test]
fn reasoning_then_text_is_a_thinking_block_then_a_text_block() {
    let s = setup(&[]);
    let resp = messages(s.gw.addr, &s.account, &stream_msg("scenario:stream_think"));
    assert_stream_head(&resp);
    let mut want = vec![
        message_start(MODEL),
        block_start(
            0,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
        ),
    ];
    want.extend(
        THINK_DELTAS
            .iter()
            .map(|t| block_delta(0, json!({"type": "thinking_delta", "thinking": t}))),
    );
    want.push(block_stop(0));
    want.push(block_start(1, json!({"type": "text", "text": ""})));
    want.extend(TEXT_DELTAS.iter().map(|t| text_delta(1, t)));
    want.push(block_stop(1));
    want.extend(message_end("end_turn", STREAM_USAGE));
    assert_eq!(events_without_id(&resp.text()), want);
}

/// Both calls stream their fragments live, one `input_json_delta` per
/// upstream fragment: the first call's arguments are whole when the second
/// starts, so its block stops there (a deferred call would arrive as one
/// delta holding all of its fragments).
#[test]
fn text_then_two_tool_calls_are_three_blocks_each_call_streamed_live() {
    let s = setup(&[]);
    let resp = messages(s.gw.addr, &s.account, &stream_msg("scenario:stream_tools2"));
    assert_stream_head(&resp);
    let mut want = vec![
        message_start(MODEL),
        block_start(0, json!({"type": "text", "text": ""})),
        text_delta(0, "Checking."),
        block_stop(0),
    ];
    for (n, (id, name, fragments)) in TWO_CALLS.iter().enumerate() {
        let index = n + 1;
        let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
        want.push(block_start(index, block));
        want.extend(fragments.iter().map(|f| {
            block_delta(
                index,
                json!({"type": "input_json_delta", "partial_json": f}),
            )
        }));
        want.push(block_stop(index));
    }
    want.extend(message_end("tool_use", STREAM_USAGE));
    assert_eq!(events_without_id(&resp.text()), want);
}

/// vLLM and SGLang name the stop that matched; it lands in `message_delta`.
#[test]
fn a_stop_sequence_the_upstream_names_is_in_the_message_delta() {
    let s = setup(&[]);
    for field in ["stop_reason", "matched_stop"] {
        let mut body = stream_msg(&format!("scenario:stop_matched:{field}"));
        body["stop_sequences"] = json!(["\n\nHuman:", "4,"]);
        let resp = messages(s.gw.addr, &s.account, &body);
        assert_stream_head(&resp);
        let (input, output) = STREAM_USAGE;
        let want = vec![
            message_start(MODEL),
            block_start(0, json!({"type": "text", "text": ""})),
            text_delta(0, STOPPED_TEXT),
            block_stop(0),
            (
                "message_delta".to_string(),
                json!({"type": "message_delta",
                       "delta": {"stop_reason": "stop_sequence", "stop_sequence": "4,"},
                       "usage": {"input_tokens": input, "output_tokens": output}}),
            ),
            ("message_stop".to_string(), json!({"type": "message_stop"})),
        ];
        assert_eq!(events_without_id(&resp.text()), want, "{field}");
    }
}

/// True interleaving (both call headers, then alternating fragments): the
/// first call streams live and keeps its block to the end; the second is
/// sent whole after it, so each fragment still lands in its own block.
#[test]
fn interleaved_tool_calls_stream_the_first_live_and_send_the_second_whole() {
    let s = setup(&[]);
    let resp = messages(
        s.gw.addr,
        &s.account,
        &stream_msg("scenario:stream_tools2_interleaved"),
    );
    assert_stream_head(&resp);
    let mut want = vec![message_start(MODEL)];
    for (index, (id, name, fragments)) in TWO_CALLS.iter().enumerate() {
        let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
        want.push(block_start(index, block));
        let parts = if index == 0 {
            fragments.iter().map(|f| f.to_string()).collect()
        } else {
            vec![fragments.concat()]
        };
        want.extend(parts.iter().map(|f| {
            block_delta(
                index,
                json!({"type": "input_json_delta", "partial_json": f}),
            )
        }));
        want.push(block_stop(index));
    }
    want.extend(message_end("tool_use", STREAM_USAGE));
    assert_eq!(events_without_id(&resp.text()), want);
}

/// Events spread over several `data:` lines (pretty-printed JSON) make the
/// same Anthropic stream as the one-line events: nothing dropped.
#[test]
fn events_spread_over_several_data_lines_make_the_same_stream() {
    let s = setup(&[]);
    let stream = |scenario: &str| {
        let resp = messages(s.gw.addr, &s.account, &stream_msg(scenario));
        assert_stream_head(&resp);
        events_without_id(&resp.text())
    };
    let one_line = stream("scenario:stream");
    assert!(
        one_line
            .iter()
            .any(|(name, _)| name == "content_block_delta"),
        "{one_line:?}"
    );
    assert_eq!(stream("scenario:stream_multiline"), one_line);
}

#[test]
fn message_id_is_fresh_for_each_stream() {
    let s = setup(&[]);
    let id = || {
        let resp = messages(s.gw.addr, &s.account, &stream_msg("scenario:stream_text"));
        events(&resp.text())[0].1["message"]["id"].clone()
    };
    assert_ne!(id(), id());
}

#[test]
fn upstream_error_mid_stream_ends_the_stream_with_an_error_event() {
    let s = setup(&[]);
    let resp = messages(
        s.gw.addr,
        &s.account,
        &stream_msg("scenario:stream_biz:434"),
    );
    assert_stream_head(&resp);
    let evs = events_without_id(&resp.text());
    assert_eq!(
        evs[..3],
        [
            message_start(MODEL),
            block_start(0, json!({"type": "text", "text": ""})),
            text_delta(0, "Hello"),
        ]
    );
    assert_eq!(evs.len(), 4, "nothing after the error: {}", resp.text());
    assert_eq!(evs[3].0, "error");
    assert_error_body(&evs[3].1, "authentication_error");
    let message = evs[3].1["error"]["message"].as_str().unwrap();
    assert!(message.contains("Invalid apiKey"), "{message}");
    assert!(!resp.text().contains(API_KEY));
}

#[test]
fn upstream_cut_before_done_ends_the_stream_with_an_api_error_event() {
    let s = setup(&[]);
    let resp = messages(
        s.gw.addr,
        &s.account,
        &stream_msg("scenario:stream_disconnect"),
    );
    assert_stream_head(&resp);
    let evs = events_without_id(&resp.text());
    let want = [
        message_start(MODEL),
        block_start(0, json!({"type": "text", "text": ""})),
        text_delta(0, "Hello"),
        text_delta(0, " world, é ✓"),
    ];
    assert_eq!(evs[..4], want);
    assert_eq!(evs.len(), 5, "{}", resp.text());
    assert_eq!(evs[4].0, "error");
    assert_error_body(&evs[4].1, "api_error");
}

#[test]
fn silent_upstream_gets_ping_events_between_the_deltas() {
    let s = setup(&[("IFLOW_SSE_KEEPALIVE", "200ms")]);
    let resp = messages(
        s.gw.addr,
        &s.account,
        &stream_msg("scenario:stream_slow:1200"),
    );
    assert_stream_head(&resp);
    let text = resp.text();
    let names: Vec<String> = events(&text).into_iter().map(|(n, _)| n).collect();
    let first_ping = names.iter().position(|n| n == "ping").expect("a ping");
    let pings = names.iter().filter(|n| *n == "ping").count();
    assert!(
        (2..=8).contains(&pings),
        "{pings} pings in 1.2 s: {names:?}"
    );
    assert_eq!(
        names[..first_ping],
        [
            "message_start",
            "content_block_start",
            "content_block_delta"
        ]
    );
    assert!(text.contains("event: ping\ndata: {\"type\":\"ping\"}\n\n"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(!text.contains(": keep-alive"), "no OpenAI comments: {text}");
}

#[test]
fn default_stream_script_keeps_reasoning_text_and_the_tool_call_in_order() {
    let s = setup(&[]);
    let resp = messages(s.gw.addr, &s.account, &stream_msg("weather?"));
    assert_stream_head(&resp);
    let evs = events_without_id(&resp.text());
    let starts: Vec<&Value> = evs
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| &d["content_block"])
        .collect();
    assert_eq!(
        starts,
        [
            &json!({"type": "thinking", "thinking": "", "signature": ""}),
            &json!({"type": "text", "text": ""}),
            &json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}),
        ]
    );
    let end = message_end("tool_use", (11, 7));
    assert_eq!(evs[evs.len() - 2..], end);
}

#[test]
fn plain_openai_account_streams_the_same_events_and_gets_the_translated_body() {
    let s = common::setup_kind("openai", &[]);
    let resp = messages(s.gw.addr, &s.account, &stream_msg("scenario:stream_text"));
    assert_stream_head(&resp);
    let mut want = vec![
        message_start(MODEL),
        block_start(0, json!({"type": "text", "text": ""})),
    ];
    want.extend(TEXT_DELTAS.iter().map(|t| text_delta(0, t)));
    want.push(block_stop(0));
    want.extend(message_end("end_turn", STREAM_USAGE));
    assert_eq!(events_without_id(&resp.text()), want);
    let sent = s.mock.last_request();
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(
        sent.body,
        json!({"model": "glm-5", "messages": [{"role": "user", "content": "scenario:stream_text"}],
               "stream": true, "max_tokens": 1024, "stream_options": {"include_usage": true}})
    );
}

/// Calls without `index` read as call 0; a new id still starts a new block
/// (not more arguments of the first call), and since the first call's
/// arguments are whole, the second streams live after it.
#[test]
fn tool_calls_without_index_but_with_their_own_ids_are_separate_blocks() {
    let s = setup(&[]);
    let resp = messages(
        s.gw.addr,
        &s.account,
        &stream_msg("scenario:stream_tools2_noindex"),
    );
    assert_stream_head(&resp);
    let mut want = vec![message_start(MODEL)];
    for (index, (id, name, fragments)) in TWO_CALLS.iter().enumerate() {
        let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
        want.push(block_start(index, block));
        let args = fragments.concat();
        want.push(block_delta(
            index,
            json!({"type": "input_json_delta", "partial_json": args}),
        ));
        want.push(block_stop(index));
    }
    want.extend(message_end("tool_use", STREAM_USAGE));
    assert_eq!(events_without_id(&resp.text()), want);
}
