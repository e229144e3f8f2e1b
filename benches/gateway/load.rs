//! The load generator: `concurrency` keep-alive connections, each sending
//! requests back to back until the phase ends, on one current-thread runtime.
//! It records latency, time to first byte and, for streams, the delay of
//! every chunk since the mock sent it.

use crate::mock::now_ns;
use memchr::memmem;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub bearer: Option<String>,
}

#[derive(Default, Debug)]
pub struct PhaseResult {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds.
    pub latencies: Vec<u32>,
    pub ttfbs: Vec<u32>,
    /// Per-chunk delivery delays (ns since the mock sent the chunk).
    pub chunk_delays: Vec<u32>,
}

impl PhaseResult {
    fn merge(&mut self, other: PhaseResult) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
        self.ttfbs.extend(other.ttfbs);
        self.chunk_delays.extend(other.chunk_delays);
    }
}

pub fn request_bytes(target: &Target, body: &str) -> Vec<u8> {
    let auth = target
        .bearer
        .as_ref()
        .map(|b| format!("authorization: Bearer {b}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n{body}",
        target.path,
        target.addr,
        body.len()
    )
    .into_bytes()
}

/// Runs one phase on its own thread and runtime. Connection `i` sends its
/// first request `spread * i / concurrency` after the start.
pub fn run(
    target: Target,
    body: String,
    concurrency: usize,
    duration: Duration,
    spread: Duration,
) -> PhaseResult {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let request = std::rc::Rc::new(request_bytes(&target, &body));
            let started = Instant::now();
            let deadline = started + duration;
            let mut tasks = Vec::new();
            for i in 0..concurrency {
                let request = request.clone();
                let addr = target.addr;
                let offset = spread.mul_f64(i as f64 / concurrency as f64);
                tasks.push(tokio::task::spawn_local(async move {
                    tokio::time::sleep(offset).await;
                    worker(addr, &request, deadline).await
                }));
            }
            let mut total = PhaseResult::default();
            for t in tasks {
                if let Ok(r) = t.await {
                    total.merge(r);
                }
            }
            total.elapsed = started.elapsed();
            total
        })
    })
    .join()
    .unwrap_or_default()
}

async fn worker(addr: SocketAddr, request: &[u8], deadline: Instant) -> PhaseResult {
    let mut result = PhaseResult::default();
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16384);
    while Instant::now() < deadline {
        let stream = match conn.as_mut() {
            Some(s) => s,
            None => match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    conn.insert(s)
                }
                Err(_) => {
                    result.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        buf.clear();
        match exchange(stream, request, &mut buf, sent, &mut result.chunk_delays).await {
            Some((200, ttfb)) => {
                result.requests += 1;
                result.latencies.push(micros(sent.elapsed()));
                result.ttfbs.push(micros(ttfb));
            }
            _ => {
                result.errors += 1;
                conn = None;
            }
        }
    }
    result
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// One request/response; returns (status, time to the first body byte).
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    sent: Instant,
    delays: &mut Vec<u32>,
) -> Option<(u16, Duration)> {
    stream.write_all(request).await.ok()?;
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = memmem::find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut ttfb = None;
    if buf.len() > head_end {
        ttfb = Some(sent.elapsed());
    }
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        while buf.len() < head_end + len {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            ttfb.get_or_insert_with(|| sent.elapsed());
            buf.extend_from_slice(&chunk[..n]);
        }
        return Some((status, ttfb.unwrap_or_else(|| sent.elapsed())));
    }
    // Chunked: read until the terminating chunk, timing each data event.
    let mut scanned = head_end;
    let mut last_read = buf.len() - head_end;
    loop {
        scanned += scan_events(&buf[scanned..], delays);
        let tail = &buf[buf.len().saturating_sub(last_read + 7).max(head_end)..];
        if memmem::find(tail, b"0\r\n\r\n").is_some()
            && (buf[head_end..].starts_with(b"0\r\n\r\n")
                || memmem::find(tail, b"\r\n0\r\n\r\n").is_some())
        {
            return Some((status, ttfb.unwrap_or_else(|| sent.elapsed())));
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        ttfb.get_or_insert_with(|| sent.elapsed());
        buf.extend_from_slice(&chunk[..n]);
        last_read = n;
    }
}

/// Records the delay of every complete `"t":<ns>` mark; returns how far
/// it got, so a mark cut by a read boundary is read again next time.
fn scan_events(bytes: &[u8], delays: &mut Vec<u32>) -> usize {
    let now = now_ns();
    let mut at = 0;
    loop {
        let Some(i) = memmem::find(&bytes[at..], b"\"t\":") else {
            return bytes.len().saturating_sub(3).max(at);
        };
        let start = at + i + 4;
        let Some(len) = bytes[start..].iter().position(|b| !b.is_ascii_digit()) else {
            return at + i;
        };
        let end = start + len;
        if let Ok(sent) = std::str::from_utf8(&bytes[start..end])
            .unwrap_or("x")
            .parse::<u64>()
        {
            delays.push(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
        }
        at = end;
    }
}
