//! Incremental decoding of an upstream `text/event-stream`.
//!
//! Lines split on `\n` (a trailing `\r` dropped); `data:` with or without a
//! space; every other field and comment is ignored; `[DONE]` ends the stream.
//! The official client reads each `data:` line as a chunk of its own, and
//! upstreams send one line per event, so a line that looks like a whole
//! JSON object (it starts with `{` and ends with `}`; it is not parsed) is
//! handed on at once, without waiting for the blank line. An event
//! whose data spans several `data:` lines (which the SSE format allows, and
//! some OpenAI-compatible servers send: pretty-printed JSON) is joined with
//! `\n` as the format says, up to its blank line, and re-written compactly
//! on one line, since the client's stream takes one line per event.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// The data of one event (a JSON chunk, normally).
    Data(Bytes),
    /// `data: [DONE]`.
    Done,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an upstream stream event exceeded {0} bytes")]
pub struct LineTooLong(pub usize);

/// Buffers partial lines (and events of several lines) between network reads.
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    max_line: usize,
    /// `buf[..scanned]` holds no newline: a long line is scanned once, not
    /// once per read.
    scanned: usize,
    /// The `data:` lines of an event not finished yet, joined with `\n`.
    pending: Option<BytesMut>,
}

impl SseDecoder {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_line,
            scanned: 0,
            pending: None,
        }
    }

    /// Appends bytes read from the network.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), LineTooLong> {
        self.buf.extend_from_slice(chunk);
        let pending = self.pending.as_ref().map_or(0, BytesMut::len);
        if pending > self.max_line
            || (self.buf.len() > self.max_line
                && memchr::memchr(b'\n', &self.buf[self.scanned..]).is_none())
        {
            return Err(LineTooLong(self.max_line));
        }
        Ok(())
    }

    /// The next complete item, if a whole one is buffered.
    pub fn next_item(&mut self) -> Option<SseItem> {
        while let Some(at) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            let end = self.scanned + at;
            self.scanned = 0;
            let line = self.buf.split_to(end + 1).freeze();
            if let Some(item) = self.line(line.slice(..end)) {
                return Some(item);
            }
        }
        self.scanned = self.buf.len();
        None
    }

    /// At end of stream: a last line that had no newline, and an event whose
    /// blank line never came.
    pub fn finish(&mut self) -> Option<SseItem> {
        self.scanned = 0;
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf).freeze();
            if let Some(item) = self.line(rest) {
                return Some(item);
            }
        }
        self.flush()
    }

    fn line(&mut self, mut line: Bytes) -> Option<SseItem> {
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.is_empty() {
            // The blank line that ends an event.
            return self.flush();
        }
        let rest = line.strip_prefix(b"data:")?;
        let start = line.len() - rest.len();
        let payload = line.slice(start..);
        if let Some(pending) = &mut self.pending {
            pending.extend_from_slice(b"\n");
            pending.extend_from_slice(&payload);
            return None;
        }
        let whole = trim(payload.clone());
        if whole.is_empty() {
            return None;
        }
        if whole.as_ref() == b"[DONE]" {
            return Some(SseItem::Done);
        }
        if whole.first() == Some(&b'{') && whole.last() == Some(&b'}') {
            return Some(SseItem::Data(whole));
        }
        // The first line of an event that may go on: wait for its end.
        self.pending = Some(BytesMut::from(payload.as_ref()));
        None
    }

    /// Ends the event being joined, if any.
    fn flush(&mut self) -> Option<SseItem> {
        let joined = trim(self.pending.take()?.freeze());
        if joined.is_empty() {
            return None;
        }
        if joined.as_ref() == b"[DONE]" {
            return Some(SseItem::Done);
        }
        if memchr::memchr(b'\n', &joined).is_none() {
            return Some(SseItem::Data(joined));
        }
        // Several lines: the client's stream takes one line per event, so
        // JSON is written anew without its line breaks. Data that is not
        // JSON is dropped, as the official client drops a line it cannot
        // parse.
        let value = parse_event(&joined)?;
        Some(SseItem::Data(Bytes::from(crate::json::to_vec(
            &value,
            joined.len(),
        ))))
    }
}

/// The JSON of an event's data. Some upstreams cut a character outside the
/// Basic Multilingual Plane (an emoji) between two events, each holding half
/// of its UTF-16 surrogate pair as a `\u` escape; serde_json refuses such a
/// lone half, which would lose the whole event. Each lone half becomes
/// U+FFFD (the replacement character) instead, so the rest of the event's
/// text arrives. `None` when the data is not JSON even so.
pub fn parse_event(payload: &[u8]) -> Option<serde_json::Value> {
    match serde_json::from_slice(payload) {
        Ok(value) => Some(value),
        Err(_) if memchr::memmem::find(payload, b"\\u").is_some() => {
            serde_json::from_slice(&replace_lone_surrogates(payload)).ok()
        }
        Err(_) => None,
    }
}

/// Notes the stream events skipped because they are not JSON: a warning
/// for a stream's first, the others at debug level (an upstream's text
/// heartbeats, such as `data: ping`, would otherwise fill the log).
#[derive(Debug, Default)]
pub struct SkippedEvents(bool);

impl SkippedEvents {
    pub fn note(&mut self, account: &str, payload: &[u8]) {
        let len = payload.len();
        match std::mem::replace(&mut self.0, true) {
            false => log::warn!(
                "account {account}: skipped a stream event that is not JSON ({len} bytes); \
                 more in this stream are logged at debug level"
            ),
            true => log::debug!(
                "account {account}: skipped a stream event that is not JSON ({len} bytes)"
            ),
        }
    }
}

/// `payload` with every `\uD800`–`\uDFFF` escape that is not half of a
/// high-then-low pair written as `\ufffd`.
fn replace_lone_surrogates(payload: &[u8]) -> Vec<u8> {
    let unit = |at: usize| -> Option<u16> {
        let hex = payload.get(at..at + 6)?;
        if &hex[..2] != b"\\u" {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    };
    let high = |u: u16| (0xD800..0xDC00).contains(&u);
    let low = |u: u16| (0xDC00..0xE000).contains(&u);
    let mut out = Vec::with_capacity(payload.len());
    let mut i = 0;
    while i < payload.len() {
        if payload[i] != b'\\' {
            out.push(payload[i]);
            i += 1;
            continue;
        }
        match unit(i) {
            Some(u) if high(u) && unit(i + 6).is_some_and(low) => {
                out.extend_from_slice(&payload[i..i + 12]);
                i += 12;
            }
            Some(u) if high(u) || low(u) => {
                out.extend_from_slice(b"\\ufffd");
                i += 6;
            }
            // Any other escape (`\\` included): the backslash and the
            // byte after it, copied as they are.
            _ => {
                let end = (i + 2).min(payload.len());
                out.extend_from_slice(&payload[i..end]);
                i = end;
            }
        }
    }
    out
}

fn trim(b: Bytes) -> Bytes {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    b.slice(start..end.max(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(d: &mut SseDecoder) -> Vec<SseItem> {
        std::iter::from_fn(|| d.next_item()).collect()
    }

    #[test]
    fn splits_events_across_reads_and_formats() {
        let mut d = SseDecoder::new(1024);
        d.feed(b"data: {\"a\":1}\n\ndata:{\"b\"").expect("feed");
        assert_eq!(
            drain(&mut d),
            vec![SseItem::Data(Bytes::from_static(b"{\"a\":1}"))]
        );
        d.feed(b":2}\r\n\r\n: keep-alive\nevent: x\nid: 3\ndata:[DONE]\n")
            .expect("feed");
        assert_eq!(
            drain(&mut d),
            vec![
                SseItem::Data(Bytes::from_static(b"{\"b\":2}")),
                SseItem::Done
            ]
        );
    }

    #[test]
    fn lone_surrogate_escapes_become_replacement_characters() {
        let parsed = |s: &str| parse_event(s.as_bytes());
        // Half an emoji in each of two events: both events still arrive.
        assert_eq!(
            parsed(r#"{"t":"x\ud83d"}"#),
            Some(serde_json::json!({"t": "x\u{fffd}"}))
        );
        assert_eq!(
            parsed(r#"{"t":"\ude00y"}"#),
            Some(serde_json::json!({"t": "\u{fffd}y"}))
        );
        // A whole pair, an escaped backslash before `u`, and other escapes
        // are left alone.
        assert_eq!(
            parsed(r#"{"t":"\ud83d\ude00 \\ud83d \n \u00e9","u":"\udc00\ud83d"}"#),
            Some(serde_json::json!({"t": "😀 \\ud83d \n é", "u": "\u{fffd}\u{fffd}"}))
        );
        assert_eq!(parsed("not json"), None);
        assert_eq!(parsed(r#"{"t":"\ud83d"#), None, "still broken JSON");
    }

    #[test]
    fn last_line_without_newline_is_read_at_finish() {
        let mut d = SseDecoder::new(1024);
        d.feed(b"data: [DONE]").expect("feed");
        assert_eq!(d.next_item(), None);
        assert_eq!(d.finish(), Some(SseItem::Done));
    }

    #[test]
    fn an_event_of_several_data_lines_is_joined_and_written_on_one_line() {
        let mut d = SseDecoder::new(1024);
        d.feed(b"data: {\n").expect("feed");
        assert_eq!(drain(&mut d), vec![], "the event is not over yet");
        d.feed(b"data:   \"choices\": [ {\"delta\": {\"content\": \"a\\nb\"}}\ndata: ]\n")
            .expect("feed");
        d.feed(b": comment\ndata: }\n\ndata: {\"next\":1}\n")
            .expect("feed");
        assert_eq!(
            drain(&mut d),
            vec![
                SseItem::Data(Bytes::from_static(
                    b"{\"choices\":[{\"delta\":{\"content\":\"a\\nb\"}}]}"
                )),
                SseItem::Data(Bytes::from_static(b"{\"next\":1}")),
            ]
        );
    }

    #[test]
    fn joined_data_that_is_not_json_is_dropped_and_the_stream_goes_on() {
        let mut d = SseDecoder::new(1024);
        d.feed(b"data: {\"choices\": [\ndata: oops\n\ndata: plain\n\ndata: [DONE]\n")
            .expect("feed");
        assert_eq!(
            drain(&mut d),
            vec![SseItem::Data(Bytes::from_static(b"plain")), SseItem::Done]
        );
    }

    #[test]
    fn an_event_cut_off_by_the_end_of_the_stream_is_still_read() {
        let mut d = SseDecoder::new(1024);
        d.feed(b"data: {\ndata: \"a\": 1\ndata: }").expect("feed");
        assert_eq!(drain(&mut d), vec![]);
        assert_eq!(
            d.finish(),
            Some(SseItem::Data(Bytes::from_static(b"{\"a\":1}")))
        );
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn an_endless_event_of_short_lines_is_refused() {
        let mut d = SseDecoder::new(16);
        d.feed(b"data: [\n").expect("feed");
        let mut refused = false;
        for _ in 0..8 {
            if d.feed(b"data: 1,2,3\n").is_err() {
                refused = true;
                break;
            }
            assert_eq!(drain(&mut d), vec![]);
        }
        assert!(refused, "an event grew past the limit without end");
    }

    #[test]
    fn refuses_an_endless_line() {
        let mut d = SseDecoder::new(8);
        assert_eq!(d.feed(b"data: 0123456789"), Err(LineTooLong(8)));
    }
}
