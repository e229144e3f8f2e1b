//! The mock upstream's answers, one per scenario name. A scenario comes from
//! the last user message (`scenario:NAME[:ARG] …`); without one, a stream
//! request gets the full stream script and any other a completion. A test
//! can also force one scenario on every request a mock gets (`Mock::force`).

use super::fixtures::{self, biz_error};
use super::mock::{Held, InFlight, Shared, hold};
use super::scripted;
use super::wire::{Conn, write_chunk};
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use serde_json::{Value, json};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// `scenario:NAME[:ARG]` at the start of the last user message, else the default.
pub(super) fn scenario_of(body: &Value) -> String {
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"));
    let text = last_user.and_then(|m| match &m["content"] {
        Value::String(s) => Some(s.as_str()),
        Value::Array(parts) => parts.iter().find_map(|p| p["text"].as_str()),
        _ => None,
    });
    if let Some(rest) = text.and_then(|t| t.strip_prefix("scenario:")) {
        return rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
    }
    if body["stream"] == true {
        "stream"
    } else {
        "complete"
    }
    .to_string()
}

/// Answers one request; `false` when the connection must not be reused.
pub(super) fn respond(
    conn: &mut Conn,
    shared: &Shared,
    flight: &InFlight<'_>,
    scenario: &str,
    body: &Value,
) -> bool {
    let model = body["model"].as_str().unwrap_or("m").to_string();
    let (name, arg) = scenario.split_once(':').unwrap_or((scenario, ""));
    let complete = fixtures::completion(&model, true).to_string();
    let s = &mut conn.stream;
    let ok = match name {
        "complete" => reply(s, 200, "application/json", &[], complete.as_bytes()),
        "complete_no_usage" => {
            let b = fixtures::completion(&model, false).to_string();
            reply(s, 200, "application/json", &[], b.as_bytes())
        }
        "reasoning_only" => {
            let b = fixtures::reasoning_only_completion().to_string();
            reply(s, 200, "application/json", &[], b.as_bytes())
        }
        "slow_status" => {
            // `slow_status:MS:CODE`: the `status` answer after MS milliseconds.
            let (ms, rest) = arg.split_once(':').unwrap_or((arg, "500"));
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(500)));
            return respond(conn, shared, flight, &format!("status:{rest}"), body);
        }
        "big_complete" => {
            let mut b = fixtures::completion(&model, true);
            b["choices"][0]["message"]["content"] = json!("z".repeat(3 << 20));
            reply(s, 200, "application/json", &[], b.to_string().as_bytes())
        }
        "slow_complete" => {
            std::thread::sleep(Duration::from_millis(arg.parse().unwrap_or(150)));
            flight.finish();
            reply(s, 200, "application/json", &[], complete.as_bytes())
        }
        "gzip" => {
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            let _ = e.write_all(complete.as_bytes());
            let gz = e.finish().unwrap_or_default();
            reply(
                s,
                200,
                "application/json",
                &[("content-encoding", "gzip")],
                &gz,
            )
        }
        "br" => {
            let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
            let _ = e.write_all(complete.as_bytes());
            let br = e.into_inner();
            reply(
                s,
                200,
                "application/json",
                &[("content-encoding", "br")],
                &br,
            )
        }
        "deflate" => {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
            let _ = e.write_all(complete.as_bytes());
            let z = e.finish().unwrap_or_default();
            reply(
                s,
                200,
                "application/json",
                &[("content-encoding", "deflate")],
                &z,
            )
        }
        "status" => {
            // `status:CODE[:RETRY_AFTER]`; a 429 says 17 s unless told.
            let (code, retry_after) = arg.split_once(':').unwrap_or((arg, ""));
            let code: u16 = code.parse().unwrap_or(500);
            let b =
                json!({"error": {"message": format!("mock status {code}"), "type": "mock_error"}});
            let retry_after = match (code, retry_after) {
                (_, r) if !r.is_empty() => Some(r),
                (429, _) => Some("17"),
                _ => None,
            };
            let extra: Vec<(&str, &str)> = retry_after
                .map(|r| ("retry-after", r))
                .into_iter()
                .collect();
            reply(
                s,
                code,
                "application/json",
                &extra,
                b.to_string().as_bytes(),
            )
        }
        "openai_coded" => {
            // `openai_coded:STATUS:CODE`: an OpenAI-style error whose `code`
            // says what happened, whatever the status.
            let (status, code) = arg.split_once(':').unwrap_or(("400", arg));
            let b = json!({"error": {
                "message": format!("mock {code}"),
                "type": "invalid_request_error",
                "code": code
            }});
            let status = status.parse().unwrap_or(400);
            reply(s, status, "application/json", &[], b.to_string().as_bytes())
        }
        "openai_overflow" => {
            // How OpenAI itself refuses a request longer than the model takes.
            let b = json!({"error": {
                "message": "This model's maximum context length is 8192 tokens.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded"
            }});
            reply(s, 400, "application/json", &[], b.to_string().as_bytes())
        }
        "biz" | "biz_text" => {
            let payload = biz_error(arg).map_or("{}", |b| b.body);
            let ctype = if name == "biz" {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            reply(s, 200, ctype, &[], payload.as_bytes())
        }
        "not_json" => reply(s, 200, "application/json", &[], b"<html>oops</html>"),
        "no_choices" => {
            let b = json!({"id": "chatcmpl-empty", "object": "chat.completion", "choices": []});
            reply(s, 200, "application/json", &[], b.to_string().as_bytes())
        }
        "stream_json" => reply(s, 200, "application/json", &[], complete.as_bytes()),
        "stream" => stream_head(s, &[]) && stream_pieces(s, fixtures::upstream_sse().as_bytes()),
        "stream_gzip" => {
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            let _ = e.write_all(fixtures::upstream_sse().as_bytes());
            let gz = e.finish().unwrap_or_default();
            stream_head(s, &[("content-encoding", "gzip")]) && stream_pieces(s, &gz)
        }
        "stream_multiline" => {
            // The script with each event pretty-printed over several `data:`
            // lines, as the SSE format allows (and some servers send).
            let mut sse = String::new();
            for event in fixtures::upstream_sse().split("\n\n") {
                let Some(data) = event.strip_prefix("data: ") else {
                    continue;
                };
                let pretty = serde_json::from_str::<Value>(data)
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or_else(|_| data.to_string());
                for line in pretty.lines() {
                    sse.push_str(&format!("data: {line}\n"));
                }
                sse.push('\n');
            }
            stream_head(s, &[]) && stream_pieces(s, sse.as_bytes())
        }
        "stream_biz" => {
            let payload = biz_error(arg).map_or("{}", |b| b.body);
            let text = format!(
                "data: {}\n\ndata: {payload}\n\ndata: {}\n\ndata: [DONE]\n\n",
                fixtures::STREAM_EVENTS[2],
                fixtures::STREAM_EVENTS[3]
            );
            stream_head(s, &[]) && stream_pieces(s, text.as_bytes())
        }
        "stream_biz_first" => {
            let payload = biz_error(arg).map_or("{}", |b| b.body);
            let text = format!("data: {payload}\n\ndata: [DONE]\n\n");
            stream_head(s, &[]) && stream_pieces(s, text.as_bytes())
        }
        "stream_endless" => {
            let line = format!("data: {{\"content\":\"{}", "x".repeat(8192));
            stream_head(s, &[]) && stream_pieces(s, line.as_bytes())
        }
        "stream_flood" => {
            // Up to 64 MiB of events, for a client that stops reading.
            let event = format!("data: {}\n\n", fixtures::STREAM_EVENTS[3]).repeat(100);
            let ok = stream_head(s, &[])
                && (0..(64 << 20) / event.len()).all(|_| write_chunk(s, event.as_bytes()).is_ok());
            ok && stream_pieces(s, b"data: [DONE]\n\n")
        }
        "stream_slow" => {
            let silence = Duration::from_millis(arg.parse().unwrap_or(1500));
            let first = format!("data: {}\n\n", fixtures::STREAM_EVENTS[0]);
            let sse = fixtures::upstream_sse();
            let ok = stream_head(s, &[]) && write_chunk(s, first.as_bytes()).is_ok();
            std::thread::sleep(silence);
            ok && stream_pieces(s, &sse.as_bytes()[first.len()..])
        }
        "stream_disconnect" => {
            let text = format!(
                "data: {}\n\ndata: {}\n\n",
                fixtures::STREAM_EVENTS[2],
                fixtures::STREAM_EVENTS[3]
            );
            let _ = stream_head(s, &[]) && write_chunk(s, text.as_bytes()).is_ok();
            return false;
        }
        "reset" | "stream_reset" => {
            // A connection reset (RST, not FIN): at once, or after the head
            // and one event of a stream.
            if name == "stream_reset" {
                let first = format!("data: {}\n\n", fixtures::STREAM_EVENTS[2]);
                let _ = stream_head(s, &[]) && write_chunk(s, first.as_bytes()).is_ok();
            }
            let _ = socket2::SockRef::from(&*s).set_linger(Some(Duration::ZERO));
            return false;
        }
        "hold" => match hold(conn, shared) {
            Held::Released => reply(
                &mut conn.stream,
                200,
                "application/json",
                &[],
                complete.as_bytes(),
            ),
            Held::Gone => false,
        },
        "stream_hold" => {
            let first = format!("data: {}\n\n", fixtures::STREAM_EVENTS[2]);
            if !(stream_head(s, &[]) && write_chunk(s, first.as_bytes()).is_ok()) {
                shared.count_early_close();
                return false;
            }
            match hold(conn, shared) {
                Held::Released => stream_pieces(&mut conn.stream, b"data: [DONE]\n\n"),
                Held::Gone => return false,
            }
        }
        "say" => {
            // `say:CODE:TEXT`: an iFlow error body with that code and message.
            let (code, text) = arg.split_once(':').unwrap_or((arg, ""));
            let b = json!({"status": code, "msg": text});
            reply(s, 200, "application/json", &[], b.to_string().as_bytes())
        }
        "stream_empty" => stream_head(s, &[]) && stream_pieces(s, b""),
        "close_delimited" | "close_delimited_10" | "close_delimited_identity" => {
            // A reply with neither a length nor chunked encoding, whose end
            // is the closed connection (RFC 9112 6.3), in HTTP/1.1 or 1.0;
            // or in 1.1 labelled `Transfer-Encoding: identity`.
            let version = if name == "close_delimited_10" {
                "1.0"
            } else {
                "1.1"
            };
            let identity = if name == "close_delimited_identity" {
                "transfer-encoding: identity\r\n"
            } else {
                ""
            };
            let (ctype, data) = match body["stream"] == true {
                true => ("text/event-stream", fixtures::upstream_sse()),
                false => ("application/json", complete),
            };
            let head = format!(
                "HTTP/{version} 200 OK\r\ncontent-type: {ctype}\r\n{identity}connection: close\r\n\r\n"
            );
            let _ = s
                .write_all(head.as_bytes())
                .and_then(|()| s.write_all(data.as_bytes()))
                .and_then(|()| s.flush());
            return false;
        }
        "cut_body" => {
            // A 200 reply whose body stops halfway, then the connection closes.
            let head = "HTTP/1.1 200 Mock\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\":";
            let _ = s.write_all(head.as_bytes()).and_then(|()| s.flush());
            return false;
        }
        "stall_body" => {
            // A reply head whose body never finishes: status in ARG, JSON type.
            let head = format!(
                "HTTP/1.1 {} Mock\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"status\":",
                arg.parse::<u16>().unwrap_or(500)
            );
            if s.write_all(head.as_bytes())
                .and_then(|()| s.flush())
                .is_err()
            {
                return false;
            }
            let _ = hold(conn, shared);
            false
        }
        "never" => {
            let _ = hold(conn, shared);
            false
        }
        name if scripted::handles(name) && body["stream"] == true => {
            stream_head(s, &[]) && stream_pieces(s, scripted::sse(name, body).as_bytes())
        }
        "stop_matched" if body["stream"] == true => {
            stream_head(s, &[]) && stream_pieces(s, scripted::stop_matched(body, arg).as_bytes())
        }
        "stop_matched" => {
            let b = scripted::stop_matched(body, arg);
            reply(s, 200, "application/json", &[], b.as_bytes())
        }
        "tools" => {
            let b = scripted::completion(body).to_string();
            reply(s, 200, "application/json", &[], b.as_bytes())
        }
        other => reply(
            s,
            500,
            "text/plain",
            &[],
            format!("unknown scenario {other}").as_bytes(),
        ),
    };
    if !ok && name.starts_with("stream") {
        shared.count_early_close();
    }
    ok
}

/// What the real upstream does with a request it cannot authenticate.
pub(super) fn reject(s: &mut TcpStream, why: &str) -> bool {
    let body = json!({"error": {"message": format!("mock upstream: {why}"), "type": "invalid_request_error", "code": "mock_rejected"}});
    reply(s, 400, "application/json", &[], body.to_string().as_bytes())
}

fn reply(s: &mut TcpStream, status: u16, ctype: &str, extra: &[(&str, &str)], body: &[u8]) -> bool {
    let mut head = format!(
        "HTTP/1.1 {status} Mock\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .and_then(|()| s.flush())
        .is_ok()
}

fn stream_head(s: &mut TcpStream, extra: &[(&str, &str)]) -> bool {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n",
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).is_ok()
}

/// Sends `data` as many small chunks (splitting events and even UTF-8
/// characters between reads), then the terminating chunk.
fn stream_pieces(s: &mut TcpStream, data: &[u8]) -> bool {
    for piece in data.chunks(48) {
        if write_chunk(s, piece).is_err() {
            return false;
        }
    }
    s.write_all(b"0\r\n\r\n").and_then(|()| s.flush()).is_ok()
}
