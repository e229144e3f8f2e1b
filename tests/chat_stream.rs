//! Streaming chat: the client gets each upstream event as `data: <json>\n\n`
//! in order, byte for byte, then `data: [DONE]\n\n`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::chat;
use common::fixtures::{self, STREAM_EVENTS, USAGE_EVENT};
use common::{API_KEY, iflow, setup, sse_events, stream_body};
use serde_json::{Value, json};

#[test]
fn stream_is_relayed_byte_for_byte_with_reasoning_content_and_tool_calls() {
    let s = setup(&[]);
    let resp = chat(s.gw.addr, &s.account, &stream_body("glm-5", "weather?"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    assert_eq!(resp.text(), fixtures::client_sse(false));
}

/// An upstream that spreads each event over several `data:` lines (the SSE
/// format joins them): the client still gets one compact line per event.
#[test]
fn events_spread_over_several_data_lines_reach_the_client_whole() {
    let s = setup(&[]);
    let body = stream_body("glm-5", "scenario:stream_multiline");
    let resp = chat(s.gw.addr, &s.account, &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), fixtures::client_sse(false));
}

#[test]
fn stream_request_is_signed_and_asks_upstream_for_usage() {
    let s = setup(&[]);
    let sent = stream_body("glm-5", "hi");
    assert_eq!(chat(s.gw.addr, &s.account, &sent).status, 200);
    let req = s.mock.last_request();
    iflow::assert_signed(&req, API_KEY);
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(req.body["messages"], sent["messages"]);
}

#[test]
fn usage_chunk_is_withheld_unless_the_client_asked_for_it() {
    let s = setup(&[]);
    let plain = chat(s.gw.addr, &s.account, &stream_body("glm-5", "hi"));
    assert!(!plain.text().contains(USAGE_EVENT));

    let mut asked = stream_body("glm-5", "hi");
    asked["stream_options"] = json!({"include_usage": true});
    let resp = chat(s.gw.addr, &s.account, &asked);
    assert_eq!(resp.text(), fixtures::client_sse(true));
}

/// What a delta must look like without preserved reasoning.
fn folded(event: &str) -> Value {
    let mut v: Value = serde_json::from_str(event).unwrap();
    let delta = v["choices"][0]["delta"].as_object_mut().unwrap();
    if let Some(r) = delta.remove("reasoning_content") {
        let empty = delta.get("content").is_none_or(|c| c.is_null() || c == "");
        if empty {
            delta.insert("content".into(), r);
        }
    }
    v
}

#[test]
fn without_preserved_reasoning_reasoning_deltas_become_content() {
    let s = setup(&[("IFLOW_PRESERVE_REASONING_CONTENT", "false")]);
    let resp = chat(s.gw.addr, &s.account, &stream_body("glm-5", "hi"));
    assert_eq!(resp.status, 200);
    let text = resp.text();
    assert!(!text.contains("reasoning_content"), "{text}");
    let events = sse_events(&text);
    assert_eq!(events.len(), STREAM_EVENTS.len() + 1, "{text}");
    for (got, sent) in events.iter().zip(STREAM_EVENTS) {
        let got: Value = serde_json::from_str(got).unwrap();
        assert_eq!(got, folded(sent));
    }
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(text.ends_with("\n\ndata: [DONE]\n\n"));
}

#[test]
fn gzip_stream_is_decoded_before_relaying() {
    let s = setup(&[]);
    let resp = chat(
        s.gw.addr,
        &s.account,
        &stream_body("glm-5", "scenario:stream_gzip"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.header("content-encoding").is_none());
    assert_eq!(resp.text(), fixtures::client_sse(false));
}

#[test]
fn openai_kind_stream_adds_only_what_streaming_needs() {
    let s = common::setup_kind("openai", &[]);
    let sent = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                      "stream": true, "temperature": 0.3});
    let resp = chat(s.gw.addr, &s.account, &sent);
    assert_eq!(resp.text(), fixtures::client_sse(false));
    let req = s.mock.last_request();
    assert!(req.header("session-id").is_none() && req.header("x-iflow-signature").is_none());
    let mut expected = sent.clone();
    expected["stream_options"] = json!({"include_usage": true});
    assert_eq!(req.body, expected);
}

#[test]
fn a_stream_and_a_completion_share_one_keep_alive_connection() {
    use common::client::{connect, read_response};
    use std::io::Write;
    let s = setup(&[]);
    let mut conn = common::wire::Conn::new(connect(s.gw.addr));
    for (body, expected) in [
        (stream_body("glm-5", "hi"), fixtures::client_sse(false)),
        (
            common::user_body("glm-5", "hi"),
            fixtures::completion("glm-5", true).to_string(),
        ),
    ] {
        let body = body.to_string();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
            s.account,
            body.len()
        );
        conn.stream.write_all(head.as_bytes()).unwrap();
        conn.stream.write_all(body.as_bytes()).unwrap();
        let resp = read_response(&mut conn);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), expected);
    }
}

#[test]
fn finished_streams_keep_their_upstream_connection() {
    // One worker, so one connection pool (each worker has its own).
    let s = setup(&[("IFLOW_WORKERS", "1")]);
    for _ in 0..3 {
        let resp = chat(s.gw.addr, &s.account, &stream_body("glm-5", "hi"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), fixtures::client_sse(false));
        // The gateway reads the end of the chunked body just after the
        // client's stream ends; give it that moment before the next call.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        s.mock.connections(),
        1,
        "each stream opened a new upstream connection"
    );
}
