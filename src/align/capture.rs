//! A capturing upstream for the replay: a small HTTP/1.1 server on
//! 127.0.0.1 that records every request exactly as it arrived and answers
//! chat calls (whole or streamed, or as scripted for the next call) and
//! telemetry calls plausibly.

use super::compare::Captured;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The `cna` cookie the page-view endpoint hands out (the shape of a real
/// one: 24 base64 characters).
pub const CNA: &str = "Fq9HIVx4y2cCAXkGd2h0ZmNt";

#[derive(Default)]
struct Log {
    requests: Mutex<Vec<Captured>>,
    arrived: Condvar,
    /// Status and JSON body for the next chat call, instead of a success.
    next_chat: Mutex<Option<(u16, Vec<u8>)>>,
}

impl Log {
    fn requests(&self) -> MutexGuard<'_, Vec<Captured>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the next arrival, at most `limit`.
    fn wait<'a>(
        &self,
        requests: MutexGuard<'a, Vec<Captured>>,
        limit: Duration,
    ) -> MutexGuard<'a, Vec<Captured>> {
        self.arrived
            .wait_timeout(requests, limit)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

pub struct CaptureServer {
    pub port: u16,
    log: Arc<Log>,
}

impl CaptureServer {
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let log = Arc::new(Log::default());
        let shared = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Ok(Self { port, log })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers the next chat call with `status` and this JSON body.
    pub fn answer_next_chat(&self, status: u16, body: &serde_json::Value) {
        *self
            .log
            .next_chat
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some((status, body.to_string().into_bytes()));
    }

    /// Drops a scripted answer no chat call took (the gateway refused the
    /// case before calling upstream), so it cannot leak into the next case.
    pub fn forget_next_chat(&self) {
        *self
            .log
            .next_chat
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Waits until at least `count` requests arrived in all (at most
    /// `timeout`), then until none arrived for `quiet`; returns how many
    /// there are. Fire-and-forget senders finish on their own schedule.
    pub fn settle(&self, count: usize, quiet: Duration, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut requests = self.log.requests();
        while requests.len() < count && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            requests = self.log.wait(requests, left);
        }
        let mut seen = requests.len();
        let mut quiet_until = Instant::now() + quiet;
        loop {
            let now = Instant::now();
            if now >= quiet_until || now >= deadline + quiet {
                return seen;
            }
            requests = self.log.wait(requests, quiet_until - now);
            if requests.len() != seen {
                seen = requests.len();
                quiet_until = Instant::now() + quiet;
            }
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Captured> {
        self.log.requests().clone()
    }

    /// Waits until `count` requests matching `pick` arrived, or `timeout`.
    pub fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
        pick: impl Fn(&Captured) -> bool,
    ) -> Vec<Captured> {
        let deadline = Instant::now() + timeout;
        let mut requests = self.log.requests();
        loop {
            let matching: Vec<Captured> = requests.iter().filter(|r| pick(r)).cloned().collect();
            let now = Instant::now();
            if matching.len() >= count || now >= deadline {
                return matching;
            }
            requests = self.log.wait(requests, deadline - now);
        }
    }
}

fn serve(stream: TcpStream, log: &Log) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let scripted = if request.path.ends_with("/chat/completions") {
        log.next_chat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    } else {
        None
    };
    let reply = match scripted {
        Some((status, body)) => {
            response(&format!("{status} Scripted"), "application/json", "", &body)
        }
        None => answer(&request),
    };
    {
        let mut requests = log.requests();
        requests.push(request);
    }
    log.arrived.notify_all();
    let _ = writer.write_all(&reply);
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Captured> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(Captured {
        method,
        path,
        headers,
        body,
    })
}

fn response(status: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn answer(request: &Captured) -> Vec<u8> {
    if request.method == "GET" {
        // The page-view endpoint hands out the `cna` cookie.
        return response(
            "200 OK",
            "image/gif",
            &format!("set-cookie: cna={CNA}; Path=/\r\n"),
            b"",
        );
    }
    if !request.path.ends_with("/chat/completions") {
        return response("200 OK", "application/json", "", b"{\"success\":true}");
    }
    let stream = serde_json::from_slice::<serde_json::Value>(&request.body)
        .ok()
        .and_then(|b| b.get("stream").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    if stream {
        let body = concat!(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        response("200 OK", "text/event-stream", "", body.as_bytes())
    } else {
        let body = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        response("200 OK", "application/json", "", body.as_bytes())
    }
}
