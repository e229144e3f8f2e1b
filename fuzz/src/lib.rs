//! The fuzz targets' bodies, shared by the libFuzzer binaries in
//! `fuzz/fuzz_targets/` and by the corpus-replay test of the main suite
//! (`tests/fuzz_replay.rs` includes this file with `#[path]`), so the fast
//! CI check runs exactly what `cargo fuzz` runs.
//!
//! Each function takes arbitrary bytes and panics (an assertion) only when
//! the gateway's code panics or breaks one of the invariants checked here.

use bytes::{Bytes, BytesMut};
use iflow_actix::anthropic::Echo;
use iflow_actix::anthropic::models::ModelMap;
use iflow_actix::anthropic::request::{estimate_tokens, translate};
use iflow_actix::anthropic::stream::MessageStream;
use iflow_actix::error::GatewayError;
use iflow_actix::openai::ChatRequest;
use iflow_actix::openai::sse::{SseDecoder, SseItem};
use iflow_actix::openai::stream::{DONE, EventShaper, KEEPALIVE, StreamShaper};
use iflow_actix::profile::iflow::body::Thinking;
use iflow_actix::profile::iflow::models::ReasoningLevel;
use iflow_actix::profile::{Profile, UpstreamFault};
use iflow_actix::store::{Account, AuthType, GatewayKey, UsageFile, UsageRow};
use serde_json::{Map, Value};
use std::time::Duration;

/// A target: arbitrary bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// The targets by name, as `cargo fuzz` and the replay test know them.
pub const TARGETS: &[(&str, Target)] = &[
    ("chat_request", chat_request),
    ("sse_stream", sse_stream),
    ("anthropic_request", anthropic_request),
    ("account_file", account_file),
];

// ---------------------------------------------------------------- chat_request

/// `ChatRequest::parse`, then every profile's body rewrite on what it accepts.
pub fn chat_request(data: &[u8]) {
    let Ok(req) = ChatRequest::parse(data) else {
        return;
    };
    assert!(!req.model.trim().is_empty(), "accepted an empty model");
    assert!(
        req.body
            .get("messages")
            .and_then(Value::as_array)
            .is_some_and(|m| !m.is_empty()),
        "accepted a request without messages"
    );
    let thinking = [
        None,
        Some(Thinking {
            enabled: true,
            level: ReasoningLevel::High,
        }),
        Some(Thinking {
            enabled: false,
            level: ReasoningLevel::Low,
        }),
    ];
    for stream in [req.stream, !req.stream] {
        for auth in [AuthType::OAuthIflow, AuthType::Iflow, AuthType::OpenAi] {
            for t in thinking {
                let mut body = req.body.clone();
                Profile::Iflow.rewrite_body(&mut body, auth, stream, t);
                check_iflow_body(&body, stream);
                check_serialises(&body);
            }
        }
        let mut body = req.body.clone();
        Profile::OpenAi.rewrite_body(&mut body, AuthType::OpenAi, stream, None);
        if stream {
            assert_eq!(body.get("stream"), Some(&Value::Bool(true)));
        }
        check_serialises(&body);
    }
}

/// What the iFlow profile promises about every body it sends.
fn check_iflow_body(body: &Map<String, Value>, stream: bool) {
    let model = body.get("model").and_then(Value::as_str);
    assert!(
        model.is_some_and(|m| !m.trim().is_empty()),
        "rewritten model {model:?}"
    );
    let limit = body.get("max_new_tokens").and_then(Value::as_u64);
    assert!(
        limit.is_some_and(|l| l > 0),
        "max_new_tokens {:?}",
        body.get("max_new_tokens")
    );
    if stream {
        assert_eq!(body.get("stream"), Some(&Value::Bool(true)));
        assert_eq!(
            body.get("stream_options")
                .and_then(|o| o.get("include_usage")),
            Some(&Value::Bool(true)),
            "a stream must ask for the usage chunk"
        );
    } else {
        assert!(!body.contains_key("stream_options"));
    }
    if !body.contains_key("tools") {
        assert!(
            !body.contains_key("tool_choice"),
            "tool_choice without tools"
        );
    }
}

/// The body goes out as JSON, written by the gateway's own writer: it must
/// be byte for byte what serde_json writes, and read back the same.
fn check_serialises(body: &Map<String, Value>) {
    let body = Value::Object(body.clone());
    let bytes = iflow_actix::json::to_vec(&body, 0);
    let reference = serde_json::to_vec(&body).expect("a body always serialises");
    assert!(
        bytes == reference,
        "the gateway's JSON differs from serde_json's"
    );
    let back: Value = serde_json::from_slice(&bytes).expect("and parses back");
    assert!(same_json(&back, &body), "JSON round trip changed the body");
}

/// JSON equality, floats included to the last bit: the gateway builds
/// serde_json with `float_roundtrip`, so a number a client wrote reaches the
/// upstream with the same value (without it, serde_json may read a float
/// 1 ULP off: `959999999999999999999999991` was the fuzzer's first find).
pub fn same_json(a: &Value, b: &Value) -> bool {
    a == b
}

// ------------------------------------------------------------------ sse_stream

/// Separates the network reads in an `sse_stream` input.
pub const CHUNK_BREAK: u8 = 0xFF;

/// How an `sse_stream` input's first byte drives the run.
#[derive(Debug, Clone, Copy)]
pub struct StreamSetup {
    pub anthropic: bool,
    pub preserve_reasoning: bool,
    pub wants_usage: bool,
    pub openai_profile: bool,
    pub short_lines: bool,
    /// 0: the upstream ends (EOF, as the relay handles it); 1: idle timeout
    /// after the last read; 2: a read error, then EOF; 3: the client leaves.
    pub end: u8,
    pub keepalives: bool,
}

impl StreamSetup {
    pub fn from_byte(b: u8) -> Self {
        Self {
            anthropic: b & 1 != 0,
            preserve_reasoning: b & 2 != 0,
            wants_usage: b & 4 != 0,
            openai_profile: b & 8 != 0,
            short_lines: b & 16 != 0,
            end: (b >> 5) & 3,
            keepalives: b & 128 != 0,
        }
    }

    pub fn to_byte(self) -> u8 {
        u8::from(self.anthropic)
            | u8::from(self.preserve_reasoning) << 1
            | u8::from(self.wants_usage) << 2
            | u8::from(self.openai_profile) << 3
            | u8::from(self.short_lines) << 4
            | (self.end & 3) << 5
            | u8::from(self.keepalives) << 7
    }
}

/// Byte chunks through `SseDecoder` and a shaper, the way the relay's
/// stream body drives them; the client's bytes must stay well-formed whatever arrives.
pub fn sse_stream(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let setup = StreamSetup::from_byte(first);
    let profile = if setup.openai_profile {
        Profile::OpenAi
    } else {
        Profile::Iflow
    };
    let out = if setup.anthropic {
        let mut shaper = MessageStream::new(profile, Echo::model("claude-sonnet-4-5"));
        let out = relay(&mut shaper, &setup, rest);
        check_anthropic_events(&out, shaper.is_done());
        out
    } else {
        let mut shaper = StreamShaper::new(profile, setup.preserve_reasoning, setup.wants_usage);
        let out = relay(&mut shaper, &setup, rest);
        check_openai_events(&out, shaper.is_done());
        out
    };
    assert!(
        out.is_empty() || out.ends_with(b"\n\n"),
        "unterminated event"
    );
}

/// Mirrors `http::relay::sse_body::SseBody`: preamble, each read fed to
/// the decoder and its items to the shaper, keep-alives while silent, the end as `setup` says.
fn relay(shaper: &mut dyn EventShaper, setup: &StreamSetup, input: &[u8]) -> Vec<u8> {
    const ACCOUNT: &str = "acc";
    let max_line = if setup.short_lines { 64 } else { 1 << 20 };
    let mut decoder = SseDecoder::new(max_line);
    let mut out = BytesMut::new();
    let mut sent = Vec::new();
    shaper.preamble(&mut out);
    flush(&mut out, &mut sent);
    for chunk in input.split(|b| *b == CHUNK_BREAK) {
        if shaper.is_done() {
            break;
        }
        match decoder.feed(chunk) {
            Ok(()) => {
                while let Some(item) = decoder.next_item() {
                    shaper.on_item(item, &mut out, ACCOUNT);
                }
            }
            Err(e) => {
                let fault = UpstreamFault::InvalidResponse(e.to_string());
                shaper.fail(&GatewayError::upstream(ACCOUNT, fault), &mut out);
            }
        }
        if setup.keepalives && !shaper.is_done() {
            out.extend_from_slice(shaper.keepalive());
        }
        flush(&mut out, &mut sent);
    }
    if !shaper.is_done() {
        match setup.end {
            0 | 2 => {
                if setup.end == 2 {
                    let fault = UpstreamFault::StreamInterrupted("connection reset".into());
                    shaper.fail(&GatewayError::upstream(ACCOUNT, fault), &mut out);
                }
                if let Some(item) = decoder.finish() {
                    shaper.on_item(item, &mut out, ACCOUNT);
                }
                if !shaper.is_done() {
                    let fault = UpstreamFault::StreamInterrupted("no [DONE]".into());
                    shaper.fail(&GatewayError::upstream(ACCOUNT, fault), &mut out);
                }
                shaper.on_eof(&mut out);
                assert!(shaper.is_done(), "on_eof must end the stream");
            }
            1 => {
                let fault = UpstreamFault::Timeout(Duration::from_secs(300));
                shaper.fail(&GatewayError::upstream(ACCOUNT, fault), &mut out);
                assert!(shaper.is_done(), "fail must end the stream");
            }
            _ => {}
        }
    }
    flush(&mut out, &mut sent);
    if shaper.is_done() {
        // A finished stream ignores whatever else arrives.
        let late = Bytes::from_static(b"{\"choices\":[{\"delta\":{\"content\":\"late\"}}]}");
        shaper.on_item(SseItem::Data(late), &mut out, ACCOUNT);
        shaper.on_item(SseItem::Done, &mut out, ACCOUNT);
        shaper.on_eof(&mut out);
        let fault = UpstreamFault::StreamInterrupted("late".into());
        shaper.fail(&GatewayError::upstream(ACCOUNT, fault), &mut out);
        assert!(out.is_empty(), "output after the end: {out:?}");
    }
    sent
}

/// What the relay hands to the client's connection.
fn flush(out: &mut BytesMut, sent: &mut Vec<u8>) {
    sent.extend_from_slice(&out.split());
}

/// OpenAI stream: every event `data: <one line>\n\n` (or a keep-alive
/// comment), `data: [DONE]` exactly once and last when finished, never before.
pub fn check_openai_events(out: &[u8], done: bool) {
    let keepalive = &KEEPALIVE[..KEEPALIVE.len() - 2];
    let done_event = &DONE[..DONE.len() - 2];
    let events = split_events(out);
    for (i, e) in events.iter().enumerate() {
        if *e == keepalive {
            continue;
        }
        let payload = e
            .strip_prefix(b"data: ")
            .unwrap_or_else(|| panic!("event {i} is not `data: `: {:?}", show(e)));
        assert!(
            !payload.contains(&b'\n') && !payload.contains(&b'\r'),
            "event {i} spans lines (a client's SSE parser splits it): {:?}",
            show(e)
        );
        assert!(!payload.is_empty(), "empty data event");
        if *e == done_event {
            assert_eq!(i, events.len() - 1, "[DONE] is not the last event");
        }
    }
    let dones = events.iter().filter(|e| **e == done_event).count();
    assert_eq!(dones, usize::from(done), "[DONE] count vs done={done}");
}

/// Anthropic stream: every event `event: NAME\ndata: {json}\n\n` with
/// `type` = NAME, in a valid order: `message_start` first, blocks opened,
/// filled and closed by index in sequence, `message_delta` + `message_stop`
/// or `error` last.
pub fn check_anthropic_events(out: &[u8], done: bool) {
    let text = std::str::from_utf8(out).expect("Anthropic events are UTF-8");
    let mut started = false;
    let mut open: Option<(u64, String)> = None;
    let mut next_index = 0u64;
    let mut finished = false;
    let mut delta_seen = false;
    for (i, e) in split_events(out).iter().enumerate() {
        let e = std::str::from_utf8(e).expect("utf8");
        let (name, data) = e
            .strip_prefix("event: ")
            .and_then(|e| e.split_once("\ndata: "))
            .unwrap_or_else(|| panic!("malformed event {i}: {e:?}\nin {text}"));
        assert!(!data.contains('\n') && !data.contains('\r'), "{e:?}");
        let data: Value = serde_json::from_str(data)
            .unwrap_or_else(|err| panic!("event {i} data is not JSON ({err}): {e:?}"));
        assert!(data.is_object(), "{e:?}");
        assert_eq!(data["type"], name, "event {i}: {e:?}");
        assert!(!finished, "event after the end: {e:?}\nin {text}");
        if name != "message_start" && name != "error" {
            assert!(started, "{name} before message_start");
        }
        match name {
            "ping" => {}
            "message_start" => {
                assert!(!started, "second message_start");
                started = true;
            }
            "content_block_start" => {
                assert!(open.is_none(), "block opened while {open:?} is open");
                assert!(!delta_seen, "block after message_delta");
                assert_eq!(data["index"], next_index, "{e}");
                let kind = data["content_block"]["type"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no block type: {e}"));
                assert!(
                    ["text", "thinking", "tool_use"].contains(&kind),
                    "block type {kind}"
                );
                if kind == "tool_use" {
                    assert!(data["content_block"]["id"].is_string(), "{e}");
                    assert!(data["content_block"]["name"].is_string(), "{e}");
                }
                open = Some((next_index, kind.to_string()));
                next_index += 1;
            }
            "content_block_delta" => {
                let (index, kind) = open
                    .clone()
                    .unwrap_or_else(|| panic!("delta outside a block: {e}"));
                assert_eq!(data["index"], index, "{e}");
                let delta = data["delta"]["type"].as_str().unwrap_or_default();
                let allowed: &[&str] = match kind.as_str() {
                    "text" => &["text_delta"],
                    "thinking" => &["thinking_delta", "signature_delta"],
                    _ => &["input_json_delta"],
                };
                assert!(allowed.contains(&delta), "{delta} in a {kind} block: {e}");
            }
            "content_block_stop" => {
                let (index, _) = open
                    .take()
                    .unwrap_or_else(|| panic!("stop outside a block: {e}"));
                assert_eq!(data["index"], index, "{e}");
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta with a block open");
                assert!(!delta_seen, "second message_delta");
                assert!(data["delta"]["stop_reason"].is_string(), "{e}");
                assert!(data["usage"]["output_tokens"].is_u64(), "{e}");
                delta_seen = true;
            }
            "message_stop" => {
                assert!(delta_seen, "message_stop without message_delta");
                finished = true;
            }
            "error" => {
                assert!(data["error"]["type"].is_string(), "{e}");
                assert!(data["error"]["message"].is_string(), "{e}");
                finished = true;
            }
            other => panic!("unknown event {other}: {e}"),
        }
    }
    assert_eq!(finished, done, "stream end vs done={done}:\n{text}");
}

/// The events of a stream body (each without its closing blank line).
fn split_events(out: &[u8]) -> Vec<&[u8]> {
    let mut events = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let end = memchr::memmem::find(rest, b"\n\n").unwrap_or_else(|| {
            panic!("unterminated event: {:?}", show(rest));
        });
        events.push(&rest[..end]);
        rest = &rest[end + 2..];
    }
    events
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(400)]).into_owned()
}

// ----------------------------------------------------------- anthropic_request

/// `translate` and `estimate_tokens`; what translates is a valid chat request.
pub fn anthropic_request(data: &[u8]) {
    let maps = [
        ModelMap::default(),
        ModelMap::parse("claude-opus-4-1=kimi-k2.5,claude-*=deepseek-v3.2-chat").expect("map"),
    ];
    for map in &maps {
        let translated = translate(data, map);
        let estimate = estimate_tokens(data, map);
        assert_eq!(
            translated.is_ok(),
            estimate.is_ok(),
            "translate and estimate_tokens disagree"
        );
        let Ok(t) = translated else {
            continue;
        };
        assert!(!t.echo.model.trim().is_empty());
        let chat = t.chat;
        assert!(chat.wants_stream_usage);
        // The translated body must pass the OpenAI endpoint's own checks.
        let bytes = serde_json::to_vec(&chat.body).expect("serialises");
        let again = match ChatRequest::parse(&bytes) {
            Ok(again) => again,
            // Tool schemas move one level deeper (`tools[].function.parameters`),
            // so a schema at serde_json's nesting limit reads back as too deep;
            // the upstream gets it all the same.
            Err(e) if e.to_string().contains("recursion limit") => continue,
            Err(e) => panic!("translation is not a valid chat request: {e}"),
        };
        assert_eq!(again.model, chat.model);
        assert_eq!(again.stream, chat.stream);
        assert_eq!(again.starts_turn, chat.starts_turn);
        for auth in [AuthType::OAuthIflow, AuthType::OpenAi] {
            let mut body = chat.body.clone();
            Profile::for_auth(auth).rewrite_body(&mut body, auth, chat.stream, chat.thinking);
            check_serialises(&body);
        }
    }
}

// ---------------------------------------------------------------- account_file

/// The data directory's file formats: an account file must read back exactly
/// as written; key and usage files likewise.
pub fn account_file(data: &[u8]) {
    if let Ok(account) = Account::from_json(data) {
        let written = account.to_json();
        let back = Account::from_json(&written)
            .unwrap_or_else(|e| panic!("a written account file does not read back: {e}"));
        // Every modelled field exactly; unknown fields (`extra`) as JSON.
        let typed = |a: &Account| Account {
            extra: Map::new(),
            ..a.clone()
        };
        assert_eq!(typed(&back), typed(&account), "account round trip is lossy");
        let (a, b) = (
            Value::Object(account.extra),
            Value::Object(back.extra.clone()),
        );
        assert!(same_json(&a, &b), "unknown fields changed: {a} -> {b}");
        let rewritten: Value = serde_json::from_slice(&back.to_json()).expect("json");
        let first: Value = serde_json::from_slice(&written).expect("json");
        assert!(
            same_json(&rewritten, &first),
            "account rewrite is not stable"
        );
    }
    if let Ok(key) = serde_json::from_slice::<GatewayKey>(data) {
        let written = serde_json::to_vec_pretty(&key).expect("key serialises");
        let back: GatewayKey = serde_json::from_slice(&written)
            .unwrap_or_else(|e| panic!("a written key file does not read back: {e}"));
        let typed = |k: &GatewayKey| GatewayKey {
            extra: Map::new(),
            ..k.clone()
        };
        assert_eq!(typed(&back), typed(&key), "key round trip is lossy");
        let (a, b) = (Value::Object(key.extra.clone()), Value::Object(back.extra));
        assert!(same_json(&a, &b), "unknown key fields changed: {a} -> {b}");
        let now = chrono::Utc::now();
        let _ = (key.is_usable(now), key.allows_model("glm-5"));
    }
    if let Ok(mut usage) = serde_json::from_slice::<UsageFile>(data) {
        let written = serde_json::to_vec_pretty(&usage).expect("usage serialises");
        let back: UsageFile = serde_json::from_slice(&written)
            .unwrap_or_else(|e| panic!("a written usage ledger does not read back: {e}"));
        assert_eq!(back, usage, "usage round trip is lossy");
        // Adding its own rows back doubles every counter (saturation aside).
        let rows: Vec<UsageRow> = usage.rows.clone();
        let small = rows.iter().all(|r| {
            [r.requests, r.errors, r.prompt_tokens, r.completion_tokens]
                .iter()
                .all(|n| *n < u64::MAX / 4)
        });
        if small && rows.len() < 64 {
            usage.add(&rows);
        }
    }
}
