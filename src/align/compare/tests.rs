use super::*;
use crate::align::fixture::{ExpectedRequest, FixtureAccount};
use serde_json::json;

const KEY: &str = "sk-test-key";
const SESSION: &str = "session-6f1c2a52-6c1d-4a8e-9a59-3f2b8f0f7a11";

fn fixture() -> Fixture {
    Fixture {
        name: "t".into(),
        description: String::new(),
        account: FixtureAccount {
            auth_type: "oauth-iflow".into(),
            api_key: KEY.into(),
        },
        request: json!({}),
        expected: ExpectedRequest {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            headers: vec![
                ("user-agent".into(), HeaderRule::Exact("iFlow-Cli".into())),
                (
                    "session-id".into(),
                    HeaderRule::Dynamic {
                        dynamic: Dynamic::SessionId,
                    },
                ),
                (
                    "conversation-id".into(),
                    HeaderRule::Dynamic {
                        dynamic: Dynamic::UuidV4,
                    },
                ),
                (
                    "x-iflow-timestamp".into(),
                    HeaderRule::Dynamic {
                        dynamic: Dynamic::EpochMs,
                    },
                ),
                (
                    "x-iflow-signature".into(),
                    HeaderRule::Dynamic {
                        dynamic: Dynamic::Signature,
                    },
                ),
                (
                    "traceparent".into(),
                    HeaderRule::Dynamic {
                        dynamic: Dynamic::Traceparent,
                    },
                ),
            ],
            body: json!({ "model": "glm-5", "temperature": 1, "messages": [{ "role": "user", "content": "hi" }] }),
        },
        file_stem: None,
    }
}

fn captured(now_ms: i64, body: serde_json::Value) -> Captured {
    let ts = now_ms.to_string();
    let sig = sign(KEY, USER_AGENT, SESSION, now_ms).unwrap_or_default();
    let body = body.to_string().into_bytes();
    Captured {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![
            ("host".into(), "127.0.0.1:1".into()),
            ("content-length".into(), body.len().to_string()),
            ("date".into(), "Thu, 01 Jan 2026 00:00:00 GMT".into()),
            ("user-agent".into(), "iFlow-Cli".into()),
            ("session-id".into(), SESSION.into()),
            (
                "conversation-id".into(),
                "0b9c6f1e-2d3a-4c5b-8e7f-9a0b1c2d3e4f".into(),
            ),
            ("x-iflow-timestamp".into(), ts),
            ("x-iflow-signature".into(), sig),
            (
                "traceparent".into(),
                "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01".into(),
            ),
        ],
        body,
    }
}

fn body() -> serde_json::Value {
    json!({ "messages": [{ "role": "user", "content": "hi" }], "temperature": 1.0, "model": "glm-5" })
}

#[test]
fn identical_up_to_dynamic_fields_and_key_order() {
    let now = 1_800_000_000_000;
    assert_eq!(
        compare(&fixture(), &captured(now, body()), now + 500),
        vec![]
    );
}

#[test]
fn every_kind_of_difference_is_named() {
    let now = 1_800_000_000_000;
    let mut c = captured(
        now,
        json!({ "model": "glm-5-x", "messages": [], "extra": true }),
    );
    c.headers.retain(|(n, _)| n != "user-agent");
    c.headers.push(("x-client-type".into(), "iflow-cli".into()));
    for (n, v) in &mut c.headers {
        if n == "conversation-id" {
            *v = "not-a-uuid".into();
        }
        if n == "x-iflow-signature" {
            *v = "0".repeat(64);
        }
    }
    let found: Vec<(String, DiffKind)> = compare(&fixture(), &c, now)
        .into_iter()
        .map(|d| (d.place, d.kind))
        .collect();
    for expected in [
        ("header user-agent", DiffKind::Missing),
        ("header conversation-id", DiffKind::BadFormat),
        ("header x-iflow-signature", DiffKind::BadFormat),
        ("header x-client-type", DiffKind::Extra),
        ("body.model", DiffKind::Changed),
        ("body.temperature", DiffKind::Missing),
        ("body.messages[0]", DiffKind::Missing),
        ("body.extra", DiffKind::Extra),
    ] {
        assert!(
            found
                .iter()
                .any(|(p, k)| p == expected.0 && *k == expected.1),
            "{expected:?} not in {found:?}"
        );
    }
}

#[test]
fn a_stale_timestamp_is_a_bad_format() {
    let now = 1_800_000_000_000;
    let diffs = compare(&fixture(), &captured(now, body()), now + 120_000);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].place, "header x-iflow-timestamp");
}
