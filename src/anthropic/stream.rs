//! OpenAI stream chunks → the Anthropic event sequence, built as chunks
//! arrive: `message_start`, then per content block `content_block_start`,
//! `content_block_delta`s and `content_block_stop` (reasoning, text and each
//! tool call get their own block, indexed in order), then `message_delta`
//! with the stop reason and usage, and `message_stop`. Upstream failures
//! become an `error` event.

use super::response::usage as anthropic_usage;
use super::{errors, new_id, stop_reason};
use crate::error::GatewayError;
use crate::openai::sse::SseItem;
use crate::openai::stream::EventShaper;
use crate::profile::Profile;
use bytes::{BufMut, BytesMut};
use serde_json::{Value, json};

pub const PING: &[u8] = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    Tool(u64),
}

pub struct MessageStream {
    profile: Profile,
    model: String,
    id: String,
    started: bool,
    done: bool,
    open: Option<(usize, Block)>,
    next_index: usize,
    /// Tool calls seen: (OpenAI call index, block index, call id).
    tools: Vec<(u64, usize, String)>,
    finish: Option<String>,
    usage: Option<Value>,
    error: Option<String>,
    events: u64,
}

fn event(out: &mut BytesMut, name: &str, data: &Value) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data.to_string().as_bytes());
    out.put_slice(b"\n\n");
}

impl MessageStream {
    /// `model` is the name the client asked for.
    pub fn new(profile: Profile, model: &str) -> Self {
        Self {
            profile,
            model: model.to_string(),
            id: new_id("msg_"),
            started: false,
            done: false,
            open: None,
            next_index: 0,
            tools: Vec::new(),
            finish: None,
            usage: None,
            error: None,
            events: 0,
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
            "model": self.model,
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
            let i = self.ensure(
                Block::Thinking,
                json!({ "type": "thinking", "thinking": "", "signature": "" }),
                out,
            );
            self.delta(
                i,
                json!({ "type": "thinking_delta", "thinking": text }),
                out,
            );
        }
        if let Some(sig) = delta
            .get("signature")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            && let Some((i, Block::Thinking)) = self.open
        {
            self.delta(
                i,
                json!({ "type": "signature_delta", "signature": sig }),
                out,
            );
        }
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let i = self.ensure(Block::Text, json!({ "type": "text", "text": "" }), out);
            self.delta(i, json!({ "type": "text_delta", "text": text }), out);
        }
        if let Some(Value::Array(calls)) = delta.get("tool_calls") {
            for call in calls {
                self.on_tool_call(call, out);
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
    }

    fn on_tool_call(&mut self, call: &Value, out: &mut BytesMut) {
        let n = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let function = call.get("function").cloned().unwrap_or(Value::Null);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let known = self
            .tools
            .iter()
            .rev()
            .find(|(t, _, _)| *t == n)
            .map(|(_, i, known_id)| (*i, known_id.clone()));
        // A fragment without an id (or repeating its call's id) continues
        // that call; a new id starts a new block even at the same index, as
        // providers that omit `index` send every call as index 0.
        let index = match (known, id) {
            (Some((i, _)), None) => i,
            (Some((i, known_id)), Some(id)) if known_id == id => i,
            _ => {
                let id = id.map_or_else(|| new_id("toolu_"), str::to_string);
                let name = function
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let block = self.next_index as u64;
                let index = self.ensure(
                    Block::Tool(block),
                    json!({ "type": "tool_use", "id": id, "name": name, "input": {} }),
                    out,
                );
                self.tools.push((n, index, id));
                index
            }
        };
        if let Some(args) = function
            .get("arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            self.delta(
                index,
                json!({ "type": "input_json_delta", "partial_json": args }),
                out,
            );
        }
    }

    fn finish_message(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.start(out);
        self.close(out);
        let used_tools = !self.tools.is_empty();
        let reason = match self.finish.as_deref() {
            Some("length") => "max_tokens",
            _ if used_tools => "tool_use",
            other => stop_reason(other),
        };
        // The upstream reports usage only at the end, so the input tokens
        // travel here too, not in `message_start`.
        let usage = anthropic_usage(self.usage.as_ref());
        event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": { "stop_reason": reason, "stop_sequence": null },
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
        let Ok(chunk) = serde_json::from_slice::<Value>(&payload) else {
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

#[cfg(test)]
mod tests;
