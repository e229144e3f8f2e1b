//! Slow clients: a half-sent request head or a body that never ends must not
//! hold a connection past its timeout, nor stop other clients being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{chat, connect, get, read_response};
use common::wire::Conn;
use common::{assert_error, secs, setup, user_body};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads until the server closes; returns what it sent and how long it took.
fn read_until_closed(mut s: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    s.set_read_timeout(Some(secs(8))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "server kept the connection open ({e}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn half_sent_request_head_is_dropped_after_the_header_timeout() {
    // actix-http starts this timer from a clock it refreshes every 500 ms, so
    // the effective timeout is 0.5-1 s here; 500 ms would sometimes time out
    // a prompt client too.
    let s = setup(&[("IFLOW_CLIENT_HEADER_TIMEOUT", "1s")]);
    let mut slow = connect(s.gw.addr);
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .unwrap();
    let (got, took) = read_until_closed(slow);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(
        took >= Duration::from_millis(400) && took < secs(5),
        "{took:?}"
    );
    assert_eq!(get(s.gw.addr, "/health", None).status, 200);
}

/// Sends a chat request's head and `framing` (the body's framing header,
/// the blank line and the first bytes of the body), and no more.
fn start_body(s: &common::Setup, framing: &str) -> TcpStream {
    let mut slow = connect(s.gw.addr);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n{framing}",
        s.account
    );
    slow.write_all(head.as_bytes()).unwrap();
    slow
}

#[test]
fn unfinished_body_gets_408_while_other_clients_are_served() {
    let s = setup(&[("IFLOW_CLIENT_BODY_TIMEOUT", "1s")]);
    let slow = start_body(&s, "Content-Length: 1000\r\n\r\n{\"model\":");
    let started = Instant::now();

    // Meanwhile the same account and the same gateway still answer.
    let other = chat(s.gw.addr, &s.account, &user_body("glm-5", "hi"));
    assert_eq!(other.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "served only after {:?}",
        started.elapsed()
    );

    // The 408 comes with `connection: close`; actix then lingers (up to its
    // disconnect timeout) for the client to close first, so the answer, not
    // the close, is what must arrive on time.
    let resp = read_response(&mut Conn::new(slow));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < secs(4),
        "{took:?}"
    );
    assert_error(&resp, 408, "invalid_request_error", "request_timeout");
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(s.mock.requests().len(), 1);
}

/// The same for a chunked body: its unread rest must not be read as the
/// next request, so the 408 closes the connection here too.
#[test]
fn unfinished_chunked_body_gets_408_and_the_connection_closes() {
    let s = setup(&[("IFLOW_CLIENT_BODY_TIMEOUT", "1s")]);
    let slow = start_body(&s, "Transfer-Encoding: chunked\r\n\r\n9\r\n{\"model\":\r\n");
    let resp = read_response(&mut Conn::new(slow));
    assert_error(&resp, 408, "invalid_request_error", "request_timeout");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(s.mock.requests().is_empty());
}

#[test]
fn client_that_never_reads_its_answer_is_dropped_after_the_stall_timeout() {
    let s = setup(&[("IFLOW_CLIENT_STALL_TIMEOUT", "2s")]);
    // A small receive buffer, so the 3 MiB answer cannot all sit in it.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&s.gw.addr.into()).unwrap();
    let mut idle: TcpStream = sock.into();
    let raw =
        common::client::chat_request(&s.account, &user_body("glm-5", "scenario:big_complete"));
    idle.write_all(&raw).unwrap();
    std::thread::sleep(secs(7));

    // What is still delivered now is what was already in flight; the rest
    // of the answer must be gone with the connection.
    idle.set_read_timeout(Some(secs(2))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match idle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => break,
        }
    }
    assert!(
        got < 3 << 20,
        "the stalled client still received the whole answer ({got} bytes)"
    );
    // The gateway still serves others.
    let ok = chat(s.gw.addr, &s.account, &user_body("glm-5", "hi"));
    assert_eq!(ok.status, 200, "{}", ok.text());
}
