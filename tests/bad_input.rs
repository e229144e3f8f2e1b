//! Requests the gateway must refuse on its own, without calling upstream and
//! without touching the data directory: every refusal OpenAI-shaped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{get, post_chat, request, send_raw};
use common::{Setup, assert_error, secs, setup, snapshot, user_body};
use serde_json::json;
use std::io::{Read, Write};

fn invalid(s: &Setup, body: &[u8]) {
    let resp = post_chat(s.gw.addr, &s.account, body);
    let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
    assert_eq!(resp.status, 400, "{shown}: {}", resp.text());
    assert_error(&resp, 400, "invalid_request_error", "invalid_request");
}

#[test]
fn malformed_or_ill_typed_bodies_are_400() {
    let s = setup(&[]);
    let bodies: &[&str] = &[
        "",
        "{",
        "not json",
        "[]",
        "\"text\"",
        r#"{"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":7,"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"glm-5"}"#,
        r#"{"model":"glm-5","messages":{"role":"user"}}"#,
        r#"{"model":"glm-5","messages":[]}"#,
        r#"{"model":"glm-5","messages":["hi"]}"#,
        r#"{"model":"glm-5","messages":[{"content":"x"}]}"#,
        r#"{"model":"glm-5","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
        r#"{"model":"glm-5","messages":[{"role":"user","content":"x"}],"stream":1}"#,
    ];
    for body in bodies {
        invalid(&s, body.as_bytes());
    }
    assert!(s.mock.requests().is_empty());
}

#[test]
fn deeply_nested_json_is_a_clean_400() {
    let s = setup(&[]);
    invalid(&s, "[".repeat(100_000).as_bytes());
    let inside = format!(
        r#"{{"model":"glm-5","messages":[{{"role":"user","content":{}"x"{}}}]}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    invalid(&s, inside.as_bytes());
    assert_eq!(
        get(s.gw.addr, "/health", None).status,
        200,
        "gateway survived"
    );
    assert!(!s.gw.log().contains("panicked"));
}

/// A 4 MiB upload against a 1 KiB limit: the client still reads the 413.
#[test]
fn body_over_the_limit_is_413_declared_or_chunked() {
    let s = setup(&[("IFLOW_MAX_BODY_BYTES", "1KiB")]);
    let big = user_body("glm-5", &"x".repeat(4 << 20)).to_string();
    let resp = post_chat(s.gw.addr, &s.account, big.as_bytes());
    assert_error(&resp, 413, "invalid_request_error", "request_too_large");

    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.account
    );
    let mut raw = head.into_bytes();
    for piece in big.as_bytes().chunks(64 << 10) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    assert_error(
        &send_raw(s.gw.addr, &raw),
        413,
        "invalid_request_error",
        "request_too_large",
    );

    let small = user_body("glm-5", "hi").to_string();
    assert_eq!(
        post_chat(s.gw.addr, &s.account, small.as_bytes()).status,
        200
    );
    assert_eq!(s.mock.requests().len(), 1);
}

#[test]
fn a_20_mib_body_is_accepted_with_the_default_limit() {
    let s = setup(&[]);
    let content = format!("scenario:complete {}", "y".repeat(20 << 20));
    let resp = post_chat(
        s.gw.addr,
        &s.account,
        user_body("glm-5", &content).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let req = s.mock.last_request();
    assert_eq!(
        req.body["messages"][0]["content"].as_str().map(str::len),
        Some(content.len())
    );
}

#[test]
fn wrong_method_is_405_and_unknown_path_is_404() {
    let s = setup(&[]);
    let auth = format!("Bearer {}", s.account);
    let h = [("Authorization", auth.as_str())];
    for (method, path, allow) in [
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/chat/completions", "POST"),
        ("POST", "/health", "GET, HEAD"),
        ("DELETE", "/v1/models", "GET, HEAD"),
        ("POST", "/v1/models/glm-5", "GET, HEAD"),
    ] {
        let resp = request(s.gw.addr, method, path, &h, Some(b"{}"));
        assert_error(&resp, 405, "invalid_request_error", "method_not_allowed");
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
    }
    for path in [
        "/",
        "/v1/completions",
        "/v1/chat/completions/x",
        "/v2/models",
    ] {
        let resp = request(s.gw.addr, "GET", path, &h, None);
        assert_error(&resp, 404, "invalid_request_error", "not_found");
        assert!(!resp.text().contains("did you mean"), "{}", resp.text());
    }
    // A base URL with a trailing slash, joined with a path that starts
    // with one: still 404, but the message names the route.
    for path in [
        "/v1//chat/completions",
        "/v1/chat/completions/",
        "//v1/models",
    ] {
        let resp = request(s.gw.addr, "POST", path, &h, Some(b"{}"));
        assert_error(&resp, 404, "invalid_request_error", "not_found");
        let tidy = path.replace("//", "/");
        let tidy = tidy.trim_end_matches('/');
        assert!(
            resp.text()
                .contains(&format!("did you mean {tidy}? check the client's base URL")),
            "{}",
            resp.text()
        );
    }
}

#[test]
fn missing_or_unknown_bearer_is_401_and_health_needs_none() {
    let s = setup(&[]);
    let body = user_body("glm-5", "hi").to_string();
    let unknown = uuid::Uuid::new_v4().to_string();
    let bad_auth = [
        None,
        Some(String::new()),
        Some("Bearer ".into()),
        Some(format!("Basic {}", s.account)),
        Some(format!("Bearer {unknown}")),
        Some("Bearer not-a-uuid".into()),
        Some(format!("Bearer {}", common::API_KEY)),
    ];
    for auth in &bad_auth {
        let h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let chat = request(
            s.gw.addr,
            "POST",
            "/v1/chat/completions",
            &h,
            Some(body.as_bytes()),
        );
        assert_error(&chat, 401, "authentication_error", "invalid_api_key");
        if auth.is_none() {
            let message = chat.json()["error"]["message"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                message.starts_with("missing API key")
                    && message.contains("`Authorization: Bearer")
                    && message.contains("`x-api-key:"),
                "{message}"
            );
        }
        let models = request(s.gw.addr, "GET", "/v1/models", &h, None);
        assert_error(&models, 401, "authentication_error", "invalid_api_key");
    }
    assert!(s.mock.requests().is_empty());
    let health = get(s.gw.addr, "/health", None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    // HEAD: the status and headers of GET, and no body (read to the close).
    let mut conn = std::net::TcpStream::connect(s.gw.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(
        raw.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {raw}"
    );
    let models = get(s.gw.addr, "/v1/models", Some(&s.account)).json();
    assert_eq!(models["object"], "list");
    let one = get(s.gw.addr, "/v1/models/glm-5", Some(&s.account));
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(
        one.json(),
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "glm-5")
            .cloned()
            .unwrap()
    );
    let missing = get(s.gw.addr, "/v1/models/no-such-model", Some(&s.account));
    assert_error(&missing, 404, "invalid_request_error", "model_not_found");
    let anonymous = get(s.gw.addr, "/v1/models/glm-5", None);
    assert_error(&anonymous, 401, "authentication_error", "invalid_api_key");
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "glm-5")
    );
}

#[test]
fn refused_requests_leave_the_data_directory_byte_identical() {
    let mut s = setup(&[("IFLOW_USAGE_FLUSH_INTERVAL", "100ms")]);
    let before = snapshot(s.dir.path());
    let unknown = uuid::Uuid::new_v4().to_string();
    let _ = post_chat(s.gw.addr, &s.account, b"{");
    let _ = post_chat(
        s.gw.addr,
        &s.account,
        json!({"model": "glm-5"}).to_string().as_bytes(),
    );
    let _ = post_chat(
        s.gw.addr,
        &unknown,
        user_body("glm-5", "hi").to_string().as_bytes(),
    );
    let _ = request(s.gw.addr, "GET", "/v1/chat/completions", &[], None);
    let _ = request(s.gw.addr, "GET", "/nope", &[], None);
    // Shutdown flushes usage: anything counted would be written now.
    let (exit, _) = s.gw.terminate(secs(10)).expect("gateway exits on SIGTERM");
    assert!(exit.success());
    assert_eq!(snapshot(s.dir.path()), before);
}
