//! OpenAI stream chunks → the Anthropic event sequence, built as chunks
//! arrive: `message_start`, then per content block `content_block_start`,
//! `content_block_delta`s and `content_block_stop` (reasoning, text and each
//! tool call get their own block, indexed in order), then `message_delta`
//! with the stop reason and usage, and `message_stop`. Upstream failures
//! become an `error` event.
//!
//! Tool calls, and what waits while one streams: `tools`.

use super::response::usage as anthropic_usage;
use super::{Echo, errors, new_id, stop};
use crate::error::GatewayError;
use crate::openai::sse::SseItem;
use crate::openai::stream::EventShaper;
use crate::profile::Profile;
use bytes::{BufMut, BytesMut};
use serde_json::{Value, json};
use tools::{Deferred, Slot};

pub const PING: &[u8] = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    Tool(u64),
}

pub struct MessageStream {
    profile: Profile,
    echo: Echo,
    id: String,
    started: bool,
    done: bool,
    open: Option<(usize, Block)>,
    /// The arguments so far of the tool call whose block is open.
    live_args: String,
    next_index: usize,
    /// Tool calls seen: (OpenAI call index, where it goes, the upstream's
    /// call id or, when it sent none, the one made up for it).
    tools: Vec<(u64, Slot, String)>,
    deferred: Vec<Deferred>,
    finish: Option<String>,
    /// The request's stop sequence the upstream said it stopped at.
    matched_stop: Option<String>,
    usage: Option<Value>,
    error: Option<String>,
    events: u64,
    skipped: crate::openai::sse::SkippedEvents,
}

fn event(out: &mut BytesMut, name: &str, data: &Value) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data.to_string().as_bytes());
    out.put_slice(b"\n\n");
}

/// The `content_block_start` payload of a text or thinking block.
fn block_start(kind: Block) -> Value {
    match kind {
        Block::Thinking => json!({ "type": "thinking", "thinking": "", "signature": "" }),
        _ => json!({ "type": "text", "text": "" }),
    }
}

impl MessageStream {
    /// `echo`: the model name the client asked for and its stop sequences.
    pub fn new(profile: Profile, echo: Echo) -> Self {
        Self {
            profile,
            echo,
            id: new_id("msg_"),
            started: false,
            done: false,
            open: None,
            live_args: String::new(),
            next_index: 0,
            tools: Vec::new(),
            deferred: Vec::new(),
            finish: None,
            matched_stop: None,
            usage: None,
            error: None,
            events: 0,
            skipped: Default::default(),
        }
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.echo.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": { "input_tokens": 0, "output_tokens": 0 },
        });
        event(
            out,
            "message_start",
            &json!({ "type": "message_start", "message": message }),
        );
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            event(
                out,
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": index }),
            );
        }
    }

    /// Makes `block` the open block, opening it (with `start`) if needed.
    fn ensure(&mut self, block: Block, start: Value, out: &mut BytesMut) -> usize {
        if let Some((index, open)) = self.open
            && open == block
        {
            return index;
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, block));
        event(
            out,
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": start }),
        );
        index
    }

    fn delta(&mut self, index: usize, delta: Value, out: &mut BytesMut) {
        self.events += 1;
        event(
            out,
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        );
    }

    fn on_chunk(&mut self, chunk: &Value, out: &mut BytesMut) {
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
        if let Some(text) = delta
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if self.must_defer(out) {
                self.defer_text(Block::Thinking, text);
            } else {
                let i = self.ensure(Block::Thinking, block_start(Block::Thinking), out);
                self.delta(
                    i,
                    json!({ "type": "thinking_delta", "thinking": text }),
                    out,
                );
            }
        }
        if let Some(sig) = delta
            .get("signature")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            if let Some((i, Block::Thinking)) = self.open {
                self.delta(
                    i,
                    json!({ "type": "signature_delta", "signature": sig }),
                    out,
                );
            } else {
                self.defer_signature(sig);
            }
        }
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if self.must_defer(out) {
                self.defer_text(Block::Text, text);
            } else {
                let i = self.ensure(Block::Text, block_start(Block::Text), out);
                self.delta(i, json!({ "type": "text_delta", "text": text }), out);
            }
        }
        if let Some(Value::Array(calls)) = delta.get("tool_calls") {
            for call in calls {
                self.on_tool_call(call, out);
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        if self.matched_stop.is_none() {
            self.matched_stop = self.echo.matched_stop(choice);
        }
    }

    fn finish_message(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.start(out);
        self.flush_deferred(out);
        let (reason, sequence) = stop(
            self.finish.as_deref(),
            !self.tools.is_empty(),
            self.matched_stop.as_deref(),
        );
        // The upstream reports usage only at the end, so the input tokens
        // travel here too, not in `message_start`.
        let usage = anthropic_usage(self.usage.as_ref());
        event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": { "stop_reason": reason, "stop_sequence": sequence },
                "usage": usage,
            }),
        );
        event(out, "message_stop", &json!({ "type": "message_stop" }));
        self.done = true;
    }
}

impl EventShaper for MessageStream {
    /// `message_start` goes out at once, so nothing (a `ping`) precedes it.
    fn preamble(&mut self, out: &mut BytesMut) {
        self.start(out);
    }

    fn on_item(&mut self, item: SseItem, out: &mut BytesMut, account: &str) {
        if self.done {
            return;
        }
        let payload = match item {
            SseItem::Done => return self.finish_message(out),
            SseItem::Data(payload) => payload,
        };
        let Some(chunk) = crate::openai::sse::parse_event(&payload) else {
            // As the official client does with a line it cannot parse.
            self.skipped.note(account, &payload);
            return;
        };
        if chunk.get("choices").is_none()
            && let Some(fault) = self.profile.classify_body(&chunk)
        {
            return self.fail(&GatewayError::upstream(account, fault), out);
        }
        self.start(out);
        self.on_chunk(&chunk, out);
    }

    fn on_eof(&mut self, out: &mut BytesMut) {
        self.finish_message(out);
    }

    fn fail(&mut self, error: &GatewayError, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.error = Some(error.to_string());
        event(out, "error", &errors::body(error));
        self.done = true;
    }

    fn keepalive(&self) -> &'static [u8] {
        PING
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<&Value> {
        self.usage.as_ref()
    }

    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn chunks(&self) -> u64 {
        self.events
    }
}

mod tools;

#[cfg(test)]
mod tests;
