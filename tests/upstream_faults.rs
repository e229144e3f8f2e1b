//! Upstream failures answered before any byte is relayed: each must become
//! the documented status, type and code, as an OpenAI-shaped error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::anthropic::{messages, user_msg};
use common::client::chat;
use common::fixtures::BIZ_ERRORS;
use common::gateway::{Gateway, import};
use common::{API_KEY, assert_error, setup, setup_kind, stream_body, user_body};
use std::net::TcpListener;
use std::time::{Duration, Instant};

#[test]
fn upstream_429_keeps_its_retry_after_in_both_modes() {
    let s = setup(&[]);
    for body in [
        user_body("glm-5", "scenario:status:429"),
        stream_body("glm-5", "scenario:status:429"),
    ] {
        let resp = chat(s.gw.addr, &s.account, &body);
        assert_error(&resp, 429, "rate_limit_error", "upstream_rate_limited");
        assert_eq!(resp.header("retry-after"), Some("17"));
    }
}

#[test]
fn upstream_500_becomes_502() {
    let s = setup(&[]);
    for body in [
        user_body("glm-5", "scenario:status:500"),
        stream_body("glm-5", "scenario:status:500"),
    ] {
        let resp = chat(s.gw.addr, &s.account, &body);
        assert_error(&resp, 502, "upstream_error", "upstream_server_error");
    }
}

#[test]
fn upstream_401_and_403_become_401_auth_rejected() {
    let s = setup(&[]);
    for code in ["401", "403"] {
        let resp = chat(
            s.gw.addr,
            &s.account,
            &user_body("glm-5", &format!("scenario:status:{code}")),
        );
        assert_error(&resp, 401, "authentication_error", "upstream_auth_rejected");
        assert!(!resp.text().contains(API_KEY));
    }
}

fn expect_retry_after(code: &str) -> Option<&'static str> {
    matches!(code, "upstream_concurrency_limit" | "upstream_rate_limited").then_some("1")
}

#[test]
fn every_200_error_body_is_classified_in_non_stream_mode() {
    let s = setup(&[]);
    for case in BIZ_ERRORS {
        let body = user_body("glm-5", &format!("scenario:biz:{}", case.name));
        let resp = chat(s.gw.addr, &s.account, &body);
        assert_error(&resp, case.status, case.kind, case.code);
        assert_eq!(
            resp.header("retry-after"),
            expect_retry_after(case.code),
            "{}",
            case.name
        );
    }
}

#[test]
fn every_200_json_error_reply_to_a_stream_request_gets_a_proper_status() {
    let s = setup(&[]);
    for case in BIZ_ERRORS {
        let body = stream_body("glm-5", &format!("scenario:biz:{}", case.name));
        let resp = chat(s.gw.addr, &s.account, &body);
        assert_error(&resp, case.status, case.kind, case.code);
        assert_eq!(
            resp.header("retry-after"),
            expect_retry_after(case.code),
            "{}",
            case.name
        );
    }
}

/// Protocol 7.3: any reply that is not `text/event-stream` (or octet-stream)
/// is read as an error body, whatever its declared type.
#[test]
fn error_body_sent_as_text_plain_to_a_stream_request_is_not_an_empty_stream() {
    let s = setup(&[]);
    for case in BIZ_ERRORS {
        let body = stream_body("glm-5", &format!("scenario:biz_text:{}", case.name));
        let resp = chat(s.gw.addr, &s.account, &body);
        assert_error(&resp, case.status, case.kind, case.code);
    }
}

/// A stream request answered with `scenario` is refused before any byte:
/// 502 with `code`, and a message that says `why`.
fn stream_refused(scenario: &str, code: &str, why: &str) {
    let s = setup(&[]);
    let resp = chat(
        s.gw.addr,
        &s.account,
        &stream_body("glm-5", &format!("scenario:{scenario}")),
    );
    assert_error(&resp, 502, "upstream_error", code);
    assert!(resp.text().contains(why), "{}", resp.text());
}

#[test]
fn a_json_completion_in_reply_to_a_stream_request_is_an_invalid_response() {
    stream_refused(
        "stream_json",
        "upstream_invalid_response",
        "expected an event stream, got application/json",
    );
}

#[test]
fn unusable_completions_are_502_invalid_response() {
    let s = setup(&[]);
    for scenario in ["scenario:not_json", "scenario:no_choices"] {
        let resp = chat(s.gw.addr, &s.account, &user_body("glm-5", scenario));
        assert_error(&resp, 502, "upstream_error", "upstream_invalid_response");
    }
}

#[test]
fn completion_larger_than_the_response_limit_is_502() {
    let s = setup(&[("IFLOW_MAX_RESPONSE_BYTES", "200")]);
    let resp = chat(s.gw.addr, &s.account, &user_body("glm-5", "hi"));
    assert_error(&resp, 502, "upstream_error", "upstream_invalid_response");
}

#[test]
fn refused_connection_is_502_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let account = import(dir.path(), API_KEY, &format!("http://{closed}/v1"), "iflow");
    let gw = Gateway::start(dir.path(), &[]);
    for body in [user_body("glm-5", "hi"), stream_body("glm-5", "hi")] {
        let resp = chat(gw.addr, &account, &body);
        assert_error(&resp, 502, "upstream_error", "upstream_unreachable");
    }
}

#[test]
fn an_upstream_that_echoes_the_key_does_not_leak_it_to_the_client_or_the_log() {
    let s = setup(&[]);
    for code in ["434", "500"] {
        // A scenario argument ends at the first space.
        let text = format!("scenario:say:{code}:key={API_KEY},refused");
        for body in [user_body("glm-5", &text), stream_body("glm-5", &text)] {
            let resp = chat(s.gw.addr, &s.account, &body);
            assert!(resp.status >= 400, "{}", resp.text());
            assert!(!resp.text().contains(API_KEY), "{}", resp.text());
            assert!(resp.text().contains(",refused"), "{}", resp.text());
        }
    }
    assert!(!s.gw.log().contains(API_KEY), "the key reached the log");
}

#[test]
fn non_stream_reply_cut_off_midway_is_502_unreachable() {
    let s = setup(&[]);
    let resp = chat(
        s.gw.addr,
        &s.account,
        &user_body("glm-5", "scenario:cut_body"),
    );
    assert_error(&resp, 502, "upstream_error", "upstream_unreachable");
}

#[test]
fn a_reply_ended_by_closing_the_connection_is_refused_in_http_1_1_and_read_in_1_0() {
    let s = setup(&[]);
    for body in [
        user_body("glm-5", "scenario:close_delimited"),
        stream_body("glm-5", "scenario:close_delimited"),
        user_body("glm-5", "scenario:close_delimited_identity"),
        stream_body("glm-5", "scenario:close_delimited_identity"),
    ] {
        let resp = chat(s.gw.addr, &s.account, &body);
        assert_error(&resp, 502, "upstream_error", "upstream_server_error");
        assert!(
            resp.text()
                .contains("neither Content-Length nor chunked encoding"),
            "{}",
            resp.text()
        );
    }
    // HTTP/1.0 has no chunked encoding: there, the close is the only way
    // to end a body, and the reply is read whole.
    let resp = chat(
        s.gw.addr,
        &s.account,
        &user_body("glm-5", "scenario:close_delimited_10"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = chat(
        s.gw.addr,
        &s.account,
        &stream_body("glm-5", "scenario:close_delimited_10"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().ends_with("data: [DONE]\n\n"), "{}", resp.text());
    assert!(!resp.text().contains("error"), "{}", resp.text());
}

#[test]
fn a_stream_that_ends_before_its_first_event_is_502_unreachable() {
    stream_refused(
        "stream_empty",
        "upstream_unreachable",
        "the stream ended before its first event",
    );
}

#[test]
fn an_openai_accounts_400_context_overflow_is_context_length_exceeded_and_prompt_too_long_on_messages()
 {
    let s = setup_kind("openai", &[]);
    for body in [
        user_body("gpt-4o", "scenario:openai_overflow"),
        stream_body("gpt-4o", "scenario:openai_overflow"),
    ] {
        let resp = chat(s.gw.addr, &s.account, &body);
        assert_error(
            &resp,
            400,
            "invalid_request_error",
            "context_length_exceeded",
        );
        // The wording agents look for before they shorten the conversation.
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("maximum context length"), "{message}");
    }
    let resp = messages(s.gw.addr, &s.account, &user_msg("scenario:openai_overflow"));
    assert_eq!(resp.status, 400, "{}", resp.text());
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("prompt is too long: "), "{message}");
}

#[test]
fn an_openai_accounts_error_code_wins_over_the_status() {
    // OpenAI-compatible servers send a dead key or a rate limit as a 400 or
    // a 5xx with the code in the body; the code is what the account's
    // health and the client's retry act on.
    let cases = [
        (
            "400:invalid_api_key",
            401,
            "authentication_error",
            "upstream_key_invalid",
        ),
        (
            "403:invalid_api_key",
            401,
            "authentication_error",
            "upstream_key_invalid",
        ),
        (
            "400:rate_limit_exceeded",
            429,
            "rate_limit_error",
            "upstream_rate_limited",
        ),
        (
            "503:rate_limit_exceeded",
            429,
            "rate_limit_error",
            "upstream_rate_limited",
        ),
        (
            "400:something_else",
            400,
            "invalid_request_error",
            "upstream_bad_request",
        ),
    ];
    for (arg, status, kind, code) in cases {
        // A fresh account each time: a dead key is not used again.
        let s = setup_kind("openai", &[]);
        let resp = chat(
            s.gw.addr,
            &s.account,
            &user_body("gpt-4o", &format!("scenario:openai_coded:{arg}")),
        );
        assert_error(&resp, status, kind, code);
    }
}

#[test]
fn never_answering_upstream_times_out_with_504() {
    let s = setup(&[("IFLOW_UPSTREAM_TIMEOUT", "1s")]);
    let started = Instant::now();
    let resp = chat(s.gw.addr, &s.account, &user_body("glm-5", "scenario:never"));
    let took = started.elapsed();
    assert_error(&resp, 504, "upstream_error", "upstream_timeout");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(
        s.mock.wait_early_closes(1, Duration::from_secs(5)),
        "the gateway kept the timed-out upstream connection open"
    );
}

#[test]
fn a_reply_body_that_stalls_is_bounded_by_the_upstream_timeout() {
    let s = setup(&[("IFLOW_UPSTREAM_TIMEOUT", "1s")]);
    let cases = [
        (
            user_body("glm-5", "scenario:stall_body:200"),
            504,
            "upstream_timeout",
        ),
        (
            user_body("glm-5", "scenario:stall_body:500"),
            502,
            "upstream_server_error",
        ),
        (
            stream_body("glm-5", "scenario:stall_body:200"),
            502,
            "upstream_invalid_response",
        ),
    ];
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let started = Instant::now();
        let resp = chat(s.gw.addr, &s.account, &body);
        let took = started.elapsed();
        assert_eq!(resp.status, status, "{}", resp.text());
        assert_eq!(resp.json()["error"]["code"], code);
        assert!(took < Duration::from_secs(4), "case {i} took {took:?}");
        assert!(
            s.mock.wait_early_closes(i + 1, Duration::from_secs(5)),
            "upstream left open"
        );
    }
}
