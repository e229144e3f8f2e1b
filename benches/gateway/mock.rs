//! A fast mock upstream for the benchmark: one thread, one current-thread
//! runtime, raw HTTP/1.1 with keep-alive. The model name picks the reply:
//! `bench-ns` a completion, `bench-s20` 20 chunks at once, `bench-s50` 20
//! chunks 50 ms apart. Every chunk carries its send time (`"t":<ns>` on the
//! shared clock), so the client can measure per-chunk delivery delay.

use memchr::memmem;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The clock mock and client share.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-ns","choices":[{"index":0,"message":{"role":"assistant","content":"Lifetimes tell the compiler how long references stay valid."},"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":11,"total_tokens":32}}"#;

pub fn start() -> u16 {
    epoch();
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind mock");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::Builder::new()
        .name("mock".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        let _ = stream.set_nodelay(true);
                        tokio::task::spawn_local(serve(stream));
                    }
                }
            });
        })
        .expect("mock thread");
    port
}

async fn serve(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some(body) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let ok = if memmem::find(&body, b"bench-s50").is_some() {
            stream_reply(&mut stream, Duration::from_millis(50)).await
        } else if memmem::find(&body, b"bench-s20").is_some() {
            stream_reply(&mut stream, Duration::ZERO).await
        } else {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                COMPLETION.len()
            );
            let mut out = head.into_bytes();
            out.extend_from_slice(COMPLETION.as_bytes());
            stream.write_all(&out).await.is_ok()
        };
        if !ok {
            return;
        }
    }
}

/// Reads one request; returns its body. `buf` keeps bytes of the next one.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 16384];
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
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some(body)
}

fn chunk(payload: &str) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

async fn stream_reply(stream: &mut TcpStream, gap: Duration) -> bool {
    let head =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    if stream.write_all(head).await.is_err() {
        return false;
    }
    let mut batch = Vec::new();
    for i in 0..20 {
        if i > 0 && !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let data = format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":null}}],\"t\":{}}}\n\n",
            now_ns()
        );
        batch.extend_from_slice(&chunk(&data));
        if !gap.is_zero() {
            if stream.write_all(&batch).await.is_err() {
                return false;
            }
            batch.clear();
        }
    }
    let tail = "data: {\"id\":\"chatcmpl-bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":20,\"total_tokens\":41}}\n\ndata: [DONE]\n\n";
    batch.extend_from_slice(&chunk(tail));
    batch.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&batch).await.is_ok()
}
