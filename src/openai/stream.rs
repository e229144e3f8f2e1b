//! Turns upstream SSE items into the client's event stream, one
//! `data: <json>\n\n` event per chunk, ending with `data: [DONE]`.
//!
//! Most chunks pass through byte for byte; a chunk is parsed only when it may
//! be an error payload (no `choices`), carries `usage`, or needs reasoning
//! folded. The final usage chunk the gateway asked for on the client's behalf
//! is kept back unless the client asked for it too.

use super::normalize;
use super::sse::SseItem;
use crate::error::GatewayError;
use crate::profile::Profile;
use bytes::{BufMut, Bytes, BytesMut};
use memchr::memmem;
use serde_json::Value;
use std::sync::LazyLock;

pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";
pub const DONE: &[u8] = b"data: [DONE]\n\n";

// Searchers for the keys that decide whether a chunk is parsed, built once:
// `memmem::find` builds one per call, which costs more than the search
// itself on a chunk of a hundred-odd bytes.
static CHOICES: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"choices\""));
static USAGE: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"usage\""));
static REASONING: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"reasoning_content\""));

/// The chunk's text contains `"choices"` (without it, it may be an error
/// payload).
pub fn mentions_choices(payload: &[u8]) -> bool {
    CHOICES.find(payload).is_some()
}

/// Turns upstream SSE items into the client's stream, in one client format.
pub trait EventShaper {
    /// What the client gets before any upstream data (nothing, by default).
    fn preamble(&mut self, _out: &mut BytesMut) {}
    /// Appends what the client should get for one upstream item.
    fn on_item(&mut self, item: SseItem, out: &mut BytesMut, account: &str);
    /// The upstream ended without `[DONE]`: end the client's stream properly.
    fn on_eof(&mut self, out: &mut BytesMut);
    /// Ends the stream with an error event.
    fn fail(&mut self, error: &GatewayError, out: &mut BytesMut);
    /// What to send while the upstream is silent.
    fn keepalive(&self) -> &'static [u8];
    fn is_done(&self) -> bool;
    /// The last `usage` object seen.
    fn usage(&self) -> Option<&Value>;
    /// The error the stream ended with, if any.
    fn error(&self) -> Option<&str>;
    /// Events sent to the client so far.
    fn chunks(&self) -> u64;
}

pub struct StreamShaper {
    profile: Profile,
    preserve_reasoning: bool,
    wants_usage: bool,
    done: bool,
    chunks: u64,
    usage: Option<Value>,
    error: Option<String>,
    skipped: super::sse::SkippedEvents,
}

impl StreamShaper {
    pub fn new(profile: Profile, preserve_reasoning: bool, wants_usage: bool) -> Self {
        Self {
            profile,
            preserve_reasoning,
            wants_usage,
            done: false,
            chunks: 0,
            usage: None,
            error: None,
            skipped: Default::default(),
        }
    }

    fn emit(&mut self, payload: &[u8], out: &mut BytesMut) {
        self.chunks += 1;
        out.reserve(payload.len() + 8);
        out.put_slice(b"data: ");
        if memchr::memchr(b'\r', payload).is_some() {
            // A lone CR ends a line for the client's SSE parser and would cut
            // the event in two. In JSON a raw CR can only be whitespace.
            out.extend(payload.iter().map(|&b| if b == b'\r' { b' ' } else { b }));
        } else {
            out.put_slice(payload);
        }
        out.put_slice(b"\n\n");
    }
}

impl EventShaper for StreamShaper {
    fn is_done(&self) -> bool {
        self.done
    }

    fn keepalive(&self) -> &'static [u8] {
        KEEPALIVE
    }

    fn usage(&self) -> Option<&Value> {
        self.usage.as_ref()
    }

    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn chunks(&self) -> u64 {
        self.chunks
    }

    fn on_item(&mut self, item: SseItem, out: &mut BytesMut, account: &str) {
        if self.done {
            return;
        }
        let payload = match item {
            SseItem::Done => {
                out.put_slice(DONE);
                self.done = true;
                return;
            }
            SseItem::Data(payload) => payload,
        };
        let has_choices = mentions_choices(&payload);
        let has_usage = USAGE.find(&payload).is_some();
        let fold = !self.preserve_reasoning && REASONING.find(&payload).is_some();
        if has_choices && !has_usage && !fold {
            self.emit(&payload, out);
            return;
        }
        let Some(mut chunk) = super::sse::parse_event(&payload) else {
            // Not JSON: the official client would skip it; so do we.
            self.skipped.note(account, &payload);
            return;
        };
        if !has_choices && let Some(fault) = self.profile.classify_body(&chunk) {
            self.fail(&GatewayError::upstream(account, fault), out);
            return;
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
            let no_choices = chunk
                .get("choices")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if no_choices && !self.wants_usage {
                return;
            }
        }
        if fold && normalize::chunk(&mut chunk, false) {
            let bytes = crate::json::to_vec(&chunk, payload.len() + 64);
            self.emit(&Bytes::from(bytes), out);
            return;
        }
        self.emit(&payload, out);
    }

    fn on_eof(&mut self, out: &mut BytesMut) {
        if !self.done {
            out.put_slice(DONE);
            self.done = true;
        }
    }

    fn fail(&mut self, error: &GatewayError, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.error = Some(error.to_string());
        out.put_slice(b"data: ");
        out.put_slice(error.body().to_string().as_bytes());
        out.put_slice(b"\n\n");
        out.put_slice(DONE);
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::UpstreamFault;

    fn data(s: &str) -> SseItem {
        SseItem::Data(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn run(shaper: &mut StreamShaper, items: Vec<SseItem>) -> String {
        let mut out = BytesMut::new();
        for item in items {
            shaper.on_item(item, &mut out, "acc");
        }
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    #[test]
    fn passes_chunks_through_and_ends_with_done() {
        let mut s = StreamShaper::new(Profile::Iflow, true, false);
        let out = run(
            &mut s,
            vec![
                data(r#"{"choices":[{"delta":{"reasoning_content":"r"}}]}"#),
                data(r#"{"choices":[{"delta":{"content":"a"}}]}"#),
                data(
                    r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
                ),
                SseItem::Done,
            ],
        );
        assert_eq!(
            out,
            "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"r\"}}]}\n\n\
             data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n\
             data: [DONE]\n\n"
        );
        assert_eq!(
            s.usage.as_ref().map(|u| u["total_tokens"].clone()),
            Some(5.into())
        );
        assert!(s.is_done());
    }

    #[test]
    fn usage_chunk_is_forwarded_when_the_client_asked() {
        let mut s = StreamShaper::new(Profile::Iflow, true, true);
        let out = run(
            &mut s,
            vec![data(r#"{"choices":[],"usage":{"total_tokens":5}}"#)],
        );
        assert!(out.contains("total_tokens"));
    }

    #[test]
    fn reasoning_is_folded_when_not_preserved() {
        let mut s = StreamShaper::new(Profile::Iflow, false, false);
        let out = run(
            &mut s,
            vec![data(r#"{"choices":[{"delta":{"reasoning_content":"r"}}]}"#)],
        );
        assert_eq!(
            out,
            "data: {\"choices\":[{\"delta\":{\"content\":\"r\"}}]}\n\n"
        );
    }

    #[test]
    fn error_payload_mid_stream_becomes_an_error_event() {
        let mut s = StreamShaper::new(Profile::Iflow, true, false);
        let out = run(
            &mut s,
            vec![
                data(r#"{"choices":[{"delta":{"content":"a"}}]}"#),
                data(r#"{"status":"449","msg":"too many requests at once"}"#),
                data(r#"{"choices":[{"delta":{"content":"never"}}]}"#),
            ],
        );
        assert!(
            out.contains("\"code\":\"upstream_concurrency_limit\""),
            "{out}"
        );
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert!(!out.contains("never"));
    }

    /// Found by the `sse_stream` fuzz target: a CR inside an upstream line
    /// was passed through, and SSE clients split the event at it.
    #[test]
    fn a_carriage_return_inside_a_chunk_does_not_split_the_event() {
        let mut s = StreamShaper::new(Profile::Iflow, true, false);
        let out = run(
            &mut s,
            vec![data("{\"choices\":\r[{\"delta\":{\"content\":\"a\"}}]}")],
        );
        assert_eq!(
            out,
            "data: {\"choices\": [{\"delta\":{\"content\":\"a\"}}]}\n\n"
        );
    }

    #[test]
    fn failure_and_eof_end_the_stream_once() {
        let mut s = StreamShaper::new(Profile::Iflow, true, false);
        let mut out = BytesMut::new();
        s.fail(
            &GatewayError::upstream("acc", UpstreamFault::StreamInterrupted("reset".into())),
            &mut out,
        );
        s.on_eof(&mut out);
        let text = String::from_utf8(out.to_vec()).expect("utf8");
        assert_eq!(text.matches("[DONE]").count(), 1);
        assert!(text.starts_with("data: {\"error\":"));
    }
}
