//! CORS for browser clients (`IFLOW_CORS_ORIGINS`): off by default; when on,
//! preflights are answered for the listed origins only, and their answers
//! (errors and streams included) carry the headers a browser needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::{Response, request};
use common::{assert_error, setup, stream_body, user_body};

const PAGE: &str = "https://chat.example.com";
const OTHER: &str = "https://elsewhere.example";

fn preflight(addr: std::net::SocketAddr, path: &str, origin: &str) -> Response {
    request(
        addr,
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type, x-stainless-os",
            ),
        ],
        None,
    )
}

fn post(
    addr: std::net::SocketAddr,
    token: &str,
    origin: &str,
    body: &serde_json::Value,
) -> Response {
    let auth = format!("Bearer {token}");
    request(
        addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("Origin", origin),
        ],
        Some(body.to_string().as_bytes()),
    )
}

#[test]
fn a_listed_origin_gets_preflights_and_cors_headers_on_every_answer() {
    let s = setup(&[("IFLOW_CORS_ORIGINS", PAGE)]);
    for path in ["/v1/chat/completions", "/v1/messages", "/v1/models"] {
        let resp = preflight(s.gw.addr, path, PAGE);
        assert_eq!(resp.status, 204, "{path}: {}", resp.text());
        assert_eq!(resp.header("access-control-allow-origin"), Some(PAGE));
        assert_eq!(
            resp.header("access-control-allow-methods"),
            Some("GET, HEAD, POST")
        );
        assert_eq!(
            resp.header("access-control-allow-headers"),
            Some("authorization, content-type, x-stainless-os")
        );
        assert_eq!(resp.header("access-control-max-age"), Some("3600"));
        assert_eq!(
            resp.header("vary"),
            Some("Origin, Access-Control-Request-Headers")
        );
        assert!(resp.header("access-control-allow-credentials").is_none());
    }
    assert!(
        s.mock.requests().is_empty(),
        "a preflight reached the upstream"
    );

    let ok = post(s.gw.addr, &s.account, PAGE, &user_body("glm-5", "hi"));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(
        ok.header("access-control-expose-headers"),
        Some("retry-after")
    );
    let stream = post(s.gw.addr, &s.account, PAGE, &stream_body("glm-5", "hi"));
    assert_eq!(stream.status, 200, "{}", stream.text());
    assert_eq!(stream.header("access-control-allow-origin"), Some(PAGE));
    assert!(stream.text().ends_with("data: [DONE]\n\n"));
    // The page must be able to read an error to show it.
    let refused = post(s.gw.addr, "not-a-key", PAGE, &user_body("glm-5", "hi"));
    assert_error(&refused, 401, "authentication_error", "invalid_api_key");
    assert_eq!(refused.header("access-control-allow-origin"), Some(PAGE));
}

#[test]
fn another_origin_is_refused_at_preflight_and_gets_no_cors_headers() {
    let s = setup(&[("IFLOW_CORS_ORIGINS", PAGE)]);
    let resp = preflight(s.gw.addr, "/v1/chat/completions", OTHER);
    assert_error(&resp, 403, "permission_error", "forbidden");
    assert!(
        resp.text().contains("IFLOW_CORS_ORIGINS"),
        "{}",
        resp.text()
    );
    assert!(resp.header("access-control-allow-origin").is_none());
    // A cache in front must not hand this refusal to an allowed origin.
    assert_eq!(
        resp.header("vary"),
        Some("Origin, Access-Control-Request-Headers")
    );
    let anthropic = preflight(s.gw.addr, "/v1/messages", OTHER);
    assert_eq!(anthropic.status, 403);
    assert_eq!(anthropic.json()["type"], "error", "{}", anthropic.text());

    // Outside a browser the request itself is served; the missing header
    // is what keeps a browser page on another origin from reading it.
    let resp = post(s.gw.addr, &s.account, OTHER, &user_body("glm-5", "hi"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.header("access-control-allow-origin").is_none());
    // Still marked as depending on the origin, for caches in front.
    assert_eq!(resp.header("vary"), Some("Origin"));
}

#[test]
fn any_origin_with_a_star_and_none_by_default() {
    let any = setup(&[("IFLOW_CORS_ORIGINS", "*")]);
    let resp = preflight(any.gw.addr, "/v1/chat/completions", OTHER);
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert_eq!(resp.header("access-control-allow-origin"), Some(OTHER));

    let off = setup(&[]);
    let resp = preflight(off.gw.addr, "/v1/chat/completions", PAGE);
    assert_error(&resp, 405, "invalid_request_error", "method_not_allowed");
    assert!(resp.header("access-control-allow-origin").is_none());
    let resp = post(off.gw.addr, &off.account, PAGE, &user_body("glm-5", "hi"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.header("access-control-allow-origin").is_none());
}
