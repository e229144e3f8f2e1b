use super::*;
use crate::align::dynamic::Dynamic;
use crate::align::fixture::{BodyFormat, ExpectedRequest, FixtureAccount};
use crate::profile::iflow::headers::USER_AGENT;
use crate::profile::iflow::signature::sign;
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
            body_format: BodyFormat::Json,
            form_fields: Vec::new(),
            dynamic_fields: Default::default(),
        },
        forwarded: Vec::new(),
        upstream_reply: None,
        reply_status: 200,
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
fn a_timestamp_more_than_ten_seconds_off_is_a_bad_format() {
    let now = 1_800_000_000_000;
    assert_eq!(
        compare(&fixture(), &captured(now, body()), now + 9_000),
        vec![]
    );
    for off in [11_000, -11_000, 120_000] {
        let diffs = compare(&fixture(), &captured(now, body()), now + off);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(diffs[0].place, "header x-iflow-timestamp");
        assert_eq!(diffs[0].kind, DiffKind::BadFormat);
    }
}

/// A GM-style event: a JSON body whose `gokey` is a form, with rules.
fn event() -> ExpectedRequest {
    serde_json::from_value(json!({
        "method": "POST",
        "path": "//aitrack.lifecycle.run_started",
        "headers": [["content-type", "application/json"]],
        "body": { "gmkey": "AI", "gokey": {
            "pid": "iflow", "session_id": "session-x", "observation_id": "x", "arch": "x64"
        } },
        "form_fields": ["body.gokey"],
        "dynamic_fields": {
            "body.gokey.session_id": { "dynamic": "session-id", "same_as": "chat header session-id" },
            "body.gokey.observation_id": { "dynamic": "hex-16" },
            "body.gokey.arch": { "one_of": ["x64", "arm64"] }
        }
    }))
    .unwrap()
}

fn gm(gokey: &str) -> Captured {
    let body = json!({ "gmkey": "AI", "gokey": gokey })
        .to_string()
        .into_bytes();
    Captured {
        method: "POST".into(),
        path: "//aitrack.lifecycle.run_started".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    }
}

fn event_diffs(gokey: &str) -> Vec<(String, DiffKind)> {
    let chat = captured(1_800_000_000_000, body());
    let ctx = Context {
        facts: Facts::default(),
        peers: vec![Peer {
            label: "chat",
            captured: &chat,
            body: None,
        }],
    };
    compare_request(&event(), &gm(gokey), &ctx)
        .into_iter()
        .map(|d| (d.place, d.kind))
        .collect()
}

#[test]
fn body_rules_check_format_reference_and_choice() {
    let good = format!("pid=iflow&session_id={SESSION}&observation_id=0123456789abcdef&arch=arm64");
    assert_eq!(event_diffs(&good), vec![]);
    let bad = "pid=iflow&session_id=session-6f1c2a52-6c1d-4a8e-9a59-000000000000&observation_id=0123&arch=ia32";
    assert_eq!(
        event_diffs(bad),
        vec![
            ("body.gokey.session_id".to_string(), DiffKind::BadFormat),
            ("body.gokey.observation_id".to_string(), DiffKind::BadFormat),
            ("body.gokey.arch".to_string(), DiffKind::BadFormat),
        ]
    );
}

#[test]
fn form_fields_are_compared_one_by_one_and_in_order() {
    let swapped =
        format!("session_id={SESSION}&pid=iflow&observation_id=0123456789abcdef&arch=x64");
    assert_eq!(
        event_diffs(&swapped),
        vec![("body.gokey".to_string(), DiffKind::Order)]
    );
    let changed = "pid=qwen&observation_id=0123456789abcdef&arch=x64&extra=1";
    assert_eq!(
        event_diffs(changed),
        vec![
            ("body.gokey.pid".to_string(), DiffKind::Changed),
            ("body.gokey.session_id".to_string(), DiffKind::Missing),
            ("body.gokey.extra".to_string(), DiffKind::Extra),
        ]
    );
}

#[test]
fn captured_bodies_serialise_as_json_values() {
    let c = captured(1_800_000_000_000, body());
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["body"]["model"], "glm-5");
    let mut text = c.clone();
    text.body = b"logtype=1&aplus".to_vec();
    assert_eq!(
        serde_json::to_value(&text).unwrap()["body"],
        "logtype=1&aplus"
    );
}
