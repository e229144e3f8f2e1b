//! Incremental decoding of an upstream `text/event-stream`, the way the
//! official client reads it: lines split on `\n`, `data:` with or without a
//! space, `[DONE]` ends the stream, every other line is ignored.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// The payload of one `data:` line (a JSON chunk, normally).
    Data(Bytes),
    /// `data: [DONE]`.
    Done,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an upstream stream line exceeded {0} bytes")]
pub struct LineTooLong(pub usize);

/// Buffers partial lines between network reads.
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    max_line: usize,
    /// `buf[..scanned]` holds no newline: a long line is scanned once, not
    /// once per read.
    scanned: usize,
}

impl SseDecoder {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_line,
            scanned: 0,
        }
    }

    /// Appends bytes read from the network.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), LineTooLong> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > self.max_line
            && memchr::memchr(b'\n', &self.buf[self.scanned..]).is_none()
        {
            return Err(LineTooLong(self.max_line));
        }
        Ok(())
    }

    /// The next complete item, if a whole line is buffered.
    pub fn next_item(&mut self) -> Option<SseItem> {
        while let Some(at) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            let end = self.scanned + at;
            self.scanned = 0;
            let line = self.buf.split_to(end + 1).freeze();
            if let Some(item) = parse_line(line.slice(..end)) {
                return Some(item);
            }
        }
        self.scanned = self.buf.len();
        None
    }

    /// At end of stream: a last line that had no newline.
    pub fn finish(&mut self) -> Option<SseItem> {
        if self.buf.is_empty() {
            return None;
        }
        self.scanned = 0;
        let rest = std::mem::take(&mut self.buf).freeze();
        parse_line(rest)
    }
}

fn parse_line(mut line: Bytes) -> Option<SseItem> {
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    let rest = line.strip_prefix(b"data:")?;
    let start = line.len() - rest.len();
    let payload = line.slice(start..);
    let payload = trim(payload);
    if payload.is_empty() {
        return None;
    }
    if payload.as_ref() == b"[DONE]" {
        return Some(SseItem::Done);
    }
    Some(SseItem::Data(payload))
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
    fn last_line_without_newline_is_read_at_finish() {
        let mut d = SseDecoder::new(1024);
        d.feed(b"data: [DONE]").expect("feed");
        assert_eq!(d.next_item(), None);
        assert_eq!(d.finish(), Some(SseItem::Done));
    }

    #[test]
    fn refuses_an_endless_line() {
        let mut d = SseDecoder::new(8);
        assert_eq!(d.feed(b"data: 0123456789"), Err(LineTooLong(8)));
    }
}
