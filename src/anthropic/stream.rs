//! OpenAI stream chunks → the Anthropic event sequence, built as chunks
//! arrive: `message_start`, then per content block `content_block_start`,
//! `content_block_delta`s and `content_block_stop` (reasoning, text and each
//! tool call get their own block, indexed in order), then `message_delta`
//! with the stop reason and usage, and `message_stop`. Upstream failures
//! become an `error` event.
//!
//! Anthropic blocks run one at a time: once a block is stopped nothing can
//! be added to it. OpenAI providers normally send each tool call whole
//! (every fragment of call 0, then of call 1 …), but some interleave the
//! fragments of parallel calls. So when something new (another call, text,
//! reasoning) arrives while a tool call streams live:
//! - if the live call's arguments so far are one whole JSON object, nothing
//!   more can belong to them: its block is stopped and the newcomer streams
//!   live too (the common, sequential case);
//! - otherwise (arguments incomplete, or not started: providers that
//!   interleave often send every call's header before any argument) the
//!   live call keeps its block open to the end of the message, and whatever
//!   arrives after it is collected and sent, in arrival order and as whole
//!   blocks, when the message ends. Every fragment then lands in its own
//!   call's block, in any arrival order.
//!
//! A fragment for a call whose block was stopped with whole arguments can
//! only make them invalid JSON; it is dropped with a warning (an `error`
//! event would throw away the whole answer for it).

use super::response::usage as anthropic_usage;
use super::{Echo, errors, new_id, stop};
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

/// Where a tool call's argument fragments go.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// The live block with this index.
    Live(usize),
    /// This entry of `deferred`.
    Deferred(usize),
}

/// A block collected while a tool call streams live, sent at the end.
struct Deferred {
    kind: Block,
    start: Value,
    body: String,
    signature: String,
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
    /// Tool calls seen: (OpenAI call index, where it goes, call id).
    tools: Vec<(u64, Slot, String)>,
    deferred: Vec<Deferred>,
    finish: Option<String>,
    /// The request's stop sequence the upstream said it stopped at.
    matched_stop: Option<String>,
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

/// Whether a tool call's arguments so far are one whole JSON object, so
/// that no later fragment can belong to them. Empty arguments are not: they
/// may still come (interleaving providers send call headers first).
fn arguments_complete(args: &str) -> bool {
    args.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(args).is_ok()
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
            } else if let Some(last) = self.deferred.last_mut()
                && last.kind == Block::Thinking
            {
                last.signature.push_str(sig);
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
            .map(|(_, slot, known_id)| (*slot, known_id.as_str()));
        // A fragment without an id (or repeating its call's id) continues
        // that call; a new id starts a new block even at the same index, as
        // providers that omit `index` send every call as index 0.
        let slot = match (known, id) {
            (Some((slot, _)), None) => slot,
            (Some((slot, known_id)), Some(id)) if known_id == id => slot,
            _ => {
                let id = id.map_or_else(|| new_id("toolu_"), str::to_string);
                let name = function
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let start = json!({ "type": "tool_use", "id": id, "name": name, "input": {} });
                let slot = if self.must_defer(out) {
                    self.deferred.push(Deferred {
                        kind: Block::Tool(0),
                        start,
                        body: String::new(),
                        signature: String::new(),
                    });
                    Slot::Deferred(self.deferred.len() - 1)
                } else {
                    let block = self.next_index as u64;
                    self.live_args.clear();
                    Slot::Live(self.ensure(Block::Tool(block), start, out))
                };
                self.tools.push((n, slot, id));
                slot
            }
        };
        let Some(args) = function
            .get("arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        match slot {
            Slot::Live(index) if self.open.is_some_and(|(open, _)| open == index) => {
                self.live_args.push_str(args);
                self.delta(
                    index,
                    json!({ "type": "input_json_delta", "partial_json": args }),
                    out,
                );
            }
            // Its block was stopped because its arguments were whole (see
            // `must_defer`): more text could only spoil them.
            Slot::Live(index) => {
                if !args.trim().is_empty() {
                    let call = self.tools.iter().find_map(|(_, slot, id)| {
                        matches!(slot, Slot::Live(i) if *i == index).then_some(id.as_str())
                    });
                    log::warn!(
                        "anthropic stream: dropped {} bytes of arguments that came after \
                         tool call {}'s arguments were whole and its block stopped",
                        args.len(),
                        call.unwrap_or_default()
                    );
                }
            }
            Slot::Deferred(k) => self.deferred[k].body.push_str(args),
        }
    }

    /// Something that needs its own block has arrived. While a tool call
    /// streams live it decides: when that call's arguments are one whole
    /// JSON object and nothing is waiting yet, its block is stopped and the
    /// newcomer can stream live (returns false); otherwise the newcomer must
    /// wait for the end of the message (returns true). See the module notes.
    fn must_defer(&mut self, out: &mut BytesMut) -> bool {
        if !matches!(self.open, Some((_, Block::Tool(_)))) {
            return false;
        }
        if self.deferred.is_empty() && arguments_complete(&self.live_args) {
            self.close(out);
            self.live_args.clear();
            return false;
        }
        true
    }

    fn defer_text(&mut self, kind: Block, text: &str) {
        match self.deferred.last_mut() {
            Some(last) if last.kind == kind => last.body.push_str(text),
            _ => self.deferred.push(Deferred {
                kind,
                start: block_start(kind),
                body: text.to_string(),
                signature: String::new(),
            }),
        }
    }

    /// Sends the collected blocks, each whole, after the live one.
    fn flush_deferred(&mut self, out: &mut BytesMut) {
        self.close(out);
        for d in std::mem::take(&mut self.deferred) {
            let index = self.next_index;
            self.next_index += 1;
            event(
                out,
                "content_block_start",
                &json!({ "type": "content_block_start", "index": index, "content_block": d.start }),
            );
            if !d.body.is_empty() {
                let delta = match d.kind {
                    Block::Thinking => json!({ "type": "thinking_delta", "thinking": d.body }),
                    Block::Text => json!({ "type": "text_delta", "text": d.body }),
                    Block::Tool(_) => json!({ "type": "input_json_delta", "partial_json": d.body }),
                };
                self.delta(index, delta, out);
            }
            if !d.signature.is_empty() {
                self.delta(
                    index,
                    json!({ "type": "signature_delta", "signature": d.signature }),
                    out,
                );
            }
            event(
                out,
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": index }),
            );
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
