//! Tool calls in the Anthropic stream, and the blocks that wait for the end.
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

use super::{Block, MessageStream, block_start, event};
use crate::anthropic::new_id;
use bytes::BytesMut;
use serde_json::{Value, json};

/// Where a tool call's argument fragments go.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    /// The live block with this index.
    Live(usize),
    /// This entry of `deferred`.
    Deferred(usize),
}

/// A block collected while a tool call streams live, sent at the end.
pub(super) struct Deferred {
    kind: Block,
    start: Value,
    body: String,
    signature: String,
}

/// Whether a tool call's arguments so far are one whole JSON object, so
/// that no later fragment can belong to them. Empty arguments are not: they
/// may still come (interleaving providers send call headers first).
pub(super) fn arguments_complete(args: &str) -> bool {
    args.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(args).is_ok()
}

impl MessageStream {
    /// One upstream tool-call fragment: a new call gets its block (live or
    /// collected), and arguments go to their own call's block.
    pub(super) fn on_tool_call(&mut self, call: &Value, out: &mut BytesMut) {
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
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // A fragment without an id (or repeating its call's id) continues
        // that call; a new id starts a new block even at the same index, as
        // providers that omit `index` send every call as index 0. Some of
        // those send no id either, or the same one for every call, each
        // call whole in one fragment: a fragment with a name and arguments
        // that open an object, after the call's arguments are whole, is a
        // new call too.
        let opens_call = !name.is_empty()
            && function
                .get("arguments")
                .and_then(Value::as_str)
                .is_some_and(|a| a.trim_start().starts_with('{'));
        let continues = |slot| !(opens_call && self.call_is_whole(slot));
        let slot = match (known, id) {
            (Some((slot, _)), None) if continues(slot) => slot,
            (Some((slot, known_id)), Some(id)) if known_id == id && continues(slot) => slot,
            _ => {
                let key = id.map_or_else(|| new_id("toolu_"), str::to_string);
                // Clients answer a tool call by its id: two calls of one
                // message must not share one, whatever the upstream sent.
                let id = match self.tools.iter().any(|(_, _, k)| *k == key) {
                    true => new_id("toolu_"),
                    false => key.clone(),
                };
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
                self.tools.push((n, slot, key));
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

    /// Whether the call in `slot` has one whole JSON object of arguments
    /// (a stopped live block always had).
    fn call_is_whole(&self, slot: Slot) -> bool {
        match slot {
            Slot::Live(index) if self.open.is_some_and(|(open, _)| open == index) => {
                arguments_complete(&self.live_args)
            }
            Slot::Live(_) => true,
            Slot::Deferred(k) => arguments_complete(&self.deferred[k].body),
        }
    }

    /// Something that needs its own block has arrived. While a tool call
    /// streams live it decides: when that call's arguments are one whole
    /// JSON object and nothing is waiting yet, its block is stopped and the
    /// newcomer can stream live (returns false); otherwise the newcomer must
    /// wait for the end of the message (returns true). See the module notes.
    pub(super) fn must_defer(&mut self, out: &mut BytesMut) -> bool {
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

    pub(super) fn defer_text(&mut self, kind: Block, text: &str) {
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

    /// A signature for the thinking block collected last, if it is one
    /// (a signature follows its thoughts; with no such block it is lost).
    pub(super) fn defer_signature(&mut self, signature: &str) {
        if let Some(last) = self.deferred.last_mut()
            && last.kind == Block::Thinking
        {
            last.signature.push_str(signature);
        }
    }

    /// Sends the collected blocks, each whole, after the live one.
    pub(super) fn flush_deferred(&mut self, out: &mut BytesMut) {
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
}
