//! A blocking HTTP/1.1 test client over `std::net::TcpStream`: whole
//! responses with their exact body bytes (chunked framing removed), and
//! streams read incrementally. Every read has a timeout.

use super::wire::{Conn, Head};
use serde_json::Value;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the gateway");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    let _ = s.set_nodelay(true);
    s
}

fn status_of(head: &Head) -> u16 {
    head.start
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {:?}", head.start))
}

/// Reads one whole response from a connection.
pub fn read_response(conn: &mut Conn) -> Response {
    let head = conn
        .read_head()
        .expect("read response head")
        .expect("the gateway closed the connection without answering");
    let status = status_of(&head);
    let body = conn.read_body(&head, true).expect("read response body");
    Response { status, head, body }
}

/// Sends `raw` bytes as they are and reads the response.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut s = connect(addr);
    s.write_all(raw).expect("send request");
    read_response(&mut Conn::new(s))
}

pub fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.unwrap_or_default());
    raw
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    send_raw(addr, &request_bytes(method, path, headers, body))
}

/// `POST /v1/chat/completions` with a bearer token and raw body bytes.
pub fn post_chat(addr: SocketAddr, token: &str, body: &[u8]) -> Response {
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    request(addr, "POST", "/v1/chat/completions", &headers, Some(body))
}

/// `POST /v1/chat/completions` with a JSON body.
pub fn chat(addr: SocketAddr, token: &str, body: &Value) -> Response {
    post_chat(addr, token, body.to_string().as_bytes())
}

pub fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    request(addr, "GET", path, &headers, None)
}

/// A streamed response read chunk by chunk.
pub struct Streaming {
    conn: Conn,
    pub status: u16,
    pub head: Head,
    /// The body bytes received so far, chunk framing removed.
    pub received: Vec<u8>,
    pub ended: bool,
}

/// The raw bytes of `POST /v1/chat/completions` with a bearer token.
pub fn chat_request(token: &str, body: &Value) -> Vec<u8> {
    let auth = format!("Bearer {token}");
    let bytes = body.to_string();
    request_bytes(
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(bytes.as_bytes()),
    )
}

/// Sends a chat request and reads only the response head.
pub fn open_stream(addr: SocketAddr, token: &str, body: &Value) -> Streaming {
    let raw = chat_request(token, body);
    let mut s = connect(addr);
    s.write_all(&raw).expect("send request");
    let mut conn = Conn::new(s);
    let head = conn
        .read_head()
        .expect("read head")
        .expect("no response head");
    let status = status_of(&head);
    Streaming {
        conn,
        status,
        head,
        received: Vec::new(),
        ended: false,
    }
}

impl Streaming {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// Reads chunks until `pred(received)` holds or the body ends; `false`
    /// when `timeout` passes first.
    pub fn read_until(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !pred(&self.text()) {
            if self.ended || Instant::now() >= deadline {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = self
                .conn
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.conn.read_chunk() {
                Ok(Some(data)) => self.received.extend_from_slice(&data),
                Ok(None) => self.ended = true,
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads the rest of the body (bounded by [`READ_TIMEOUT`]).
    pub fn read_to_end(&mut self) -> String {
        let ended = self.read_until(READ_TIMEOUT, |_| false) || self.ended;
        assert!(
            ended,
            "stream did not end in time; got so far: {}",
            self.text()
        );
        self.text()
    }

    /// Drops the connection without reading further.
    pub fn abandon(self) {
        let _ = self.conn.stream.shutdown(std::net::Shutdown::Both);
    }
}
