//! Tiny upstream proxies for the proxy tests: an HTTP CONNECT proxy (with
//! optional Basic auth) and a SOCKS5 proxy (no auth or user/password). Each
//! records the targets it was asked for, then pipes bytes both ways.

use super::wire::Conn;
use base64::Engine;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Creds = Option<(String, String)>;

pub struct Proxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// `CONNECT` proxy; with `creds`, anything but the right Basic auth gets 407.
    pub fn http(creds: Option<(&str, &str)>) -> Self {
        Self::start(owned(creds), http_session)
    }

    /// SOCKS5 proxy; with `creds`, only user/password auth is offered.
    pub fn socks5(creds: Option<(&str, &str)>) -> Self {
        Self::start(owned(creds), socks5_session)
    }

    fn start(creds: Creds, session: fn(TcpStream, &Creds, &Mutex<Vec<String>>)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (creds, log) = (creds.clone(), log.clone());
                std::thread::spawn(move || session(stream, &creds, &log));
            }
        });
        Self { addr, seen }
    }

    /// What clients asked for: `CONNECT host:port`, `SOCKS5 host:port`, or
    /// `rejected …` entries.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("proxy log").clone()
    }
}

fn owned(creds: Option<(&str, &str)>) -> Creds {
    creds.map(|(u, p)| (u.to_string(), p.to_string()))
}

fn http_session(stream: TcpStream, creds: &Creds, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut conn = Conn::new(stream);
    let Ok(Some(head)) = conn.read_head() else {
        return;
    };
    let target = head
        .start
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let wanted = creds.as_ref().map(|(u, p)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    let authorized = wanted.is_none() || head.header("proxy-authorization") == wanted.as_deref();
    if !head.start.starts_with("CONNECT ") || !authorized {
        seen.lock()
            .expect("log")
            .push(format!("rejected {}", head.start));
        let _ = conn.stream.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n",
        );
        return;
    }
    seen.lock().expect("log").push(format!("CONNECT {target}"));
    let Ok(upstream) = TcpStream::connect(&target) else {
        return;
    };
    if conn
        .stream
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let mut up = upstream;
    if up.write_all(&conn.buf).is_err() {
        return;
    }
    pipe(conn.stream, up);
}

fn socks5_session(mut s: TcpStream, creds: &Creds, seen: &Mutex<Vec<String>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let mut greeting = [0u8; 2];
    if s.read_exact(&mut greeting).is_err() || greeting[0] != 5 {
        return;
    }
    let mut methods = vec![0u8; usize::from(greeting[1])];
    if s.read_exact(&mut methods).is_err() {
        return;
    }
    let method = if creds.is_some() { 2 } else { 0 };
    if !methods.contains(&method) {
        seen.lock()
            .expect("log")
            .push(format!("rejected methods {methods:?}"));
        let _ = s.write_all(&[5, 0xff]);
        return;
    }
    if s.write_all(&[5, method]).is_err() {
        return;
    }
    if let Some((user, pass)) = creds {
        let Some((u, p)) = read_user_pass(&mut s) else {
            return;
        };
        let ok = &u == user && &p == pass;
        let _ = s.write_all(&[1, if ok { 0 } else { 1 }]);
        if !ok {
            seen.lock().expect("log").push(format!("rejected user {u}"));
            return;
        }
    }
    let mut req = [0u8; 4];
    if s.read_exact(&mut req).is_err() || req[..3] != [5, 1, 0] {
        return;
    }
    let host = match req[3] {
        1 => {
            let mut ip = [0u8; 4];
            let _ = s.read_exact(&mut ip);
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            let _ = s.read_exact(&mut len);
            let mut name = vec![0u8; usize::from(len[0])];
            let _ = s.read_exact(&mut name);
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => return,
    };
    let mut port = [0u8; 2];
    if s.read_exact(&mut port).is_err() {
        return;
    }
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    seen.lock().expect("log").push(format!("SOCKS5 {target}"));
    let Ok(upstream) = TcpStream::connect(&target) else {
        let _ = s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
        return;
    };
    if s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, port[0], port[1]])
        .is_err()
    {
        return;
    }
    pipe(s, upstream);
}

fn read_user_pass(s: &mut TcpStream) -> Option<(String, String)> {
    let mut version = [0u8; 1];
    s.read_exact(&mut version).ok()?;
    if version[0] != 1 {
        return None;
    }
    Some((read_field(s)?, read_field(s)?))
}

fn read_field(s: &mut TcpStream) -> Option<String> {
    let mut len = [0u8; 1];
    s.read_exact(&mut len).ok()?;
    let mut v = vec![0u8; usize::from(len[0])];
    s.read_exact(&mut v).ok()?;
    Some(String::from_utf8_lossy(&v).into_owned())
}

/// Copies bytes both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let _ = a.set_read_timeout(None);
    let _ = b.set_read_timeout(None);
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut b, &mut a);
    let _ = a.shutdown(Shutdown::Write);
    let _ = t.join();
}
