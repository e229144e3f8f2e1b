//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`: enough to
//! play the browser of a login and a gateway client, with no runtime.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", self.text()))
    }
}

/// Sends one request with `Connection: close` and reads the whole reply.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    let url = url::Url::parse(url).unwrap();
    let host = url.host_str().unwrap();
    // `localhost` in a callback URL means the IPv4 loopback the CLI bound.
    let connect_host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let port = url.port_or_known_default().unwrap();
    let mut stream = TcpStream::connect((connect_host, port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {host}:{port}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).unwrap();
    read_reply(&mut stream)
}

/// Reads one reply, ending at its declared length (a server may keep the
/// socket open a while after an error reply to a request it did not read).
fn read_reply(stream: &mut TcpStream) -> HttpReply {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(reply) = complete(&raw) {
            return reply;
        }
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            return parse(&raw);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// The reply, once `raw` holds all of it by Content-Length or final chunk.
fn complete(raw: &[u8]) -> Option<HttpReply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let reply = parse(raw);
    let body = &raw[split + 4..];
    if let Some(len) = reply.header("content-length") {
        return (body.len() >= len.parse::<usize>().unwrap()).then_some(reply);
    }
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"));
    (chunked && body.ends_with(b"0\r\n\r\n")).then_some(reply)
}

fn parse(raw: &[u8]) -> HttpReply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no reply head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpReply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

pub fn http_get(url: &str) -> HttpReply {
    request("GET", url, &[], b"")
}

/// A non-stream chat completion through the gateway for account `uuid`.
pub fn chat(port: u16, uuid: &str) -> HttpReply {
    let body = br#"{"model":"glm-4.6","messages":[{"role":"user","content":"hi"}]}"#;
    request(
        "POST",
        &format!("http://127.0.0.1:{port}/v1/chat/completions"),
        &[
            ("authorization", &format!("Bearer {uuid}")),
            ("content-type", "application/json"),
        ],
        body,
    )
}

/// A stream chat completion through the gateway for account `uuid`.
pub fn chat_stream(port: u16, uuid: &str) -> HttpReply {
    let body = br#"{"model":"glm-4.6","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    request(
        "POST",
        &format!("http://127.0.0.1:{port}/v1/chat/completions"),
        &[
            ("authorization", &format!("Bearer {uuid}")),
            ("content-type", "application/json"),
        ],
        body,
    )
}
