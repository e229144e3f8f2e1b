//! An independent check of the iFlow request header set and signature,
//! written from the protocol (not from the crate's signing code).

use super::mock::Recorded;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Headers awc adds to every request on its own: actix-http's HTTP/1 encoder
/// always writes `date` (there is no switch to turn it off), so it is
/// tolerated here and reported as a known deviation from the official client.
pub const TRANSPORT_HEADERS: &[&str] = &["host", "content-length", "date"];

/// Every header an iFlow chat request carries (besides [`TRANSPORT_HEADERS`]).
pub const IFLOW_HEADERS: &[&str] = &[
    "content-type",
    "authorization",
    "user-agent",
    "session-id",
    "conversation-id",
    "x-iflow-signature",
    "x-iflow-timestamp",
    "traceparent",
    "accept",
    "accept-language",
    "sec-fetch-mode",
    "accept-encoding",
];

/// Lowercase hex HMAC-SHA256(key = api_key, message = `iFlow-Cli:<session>:<ts>`).
pub fn signature(api_key: &str, session_id: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()).expect("any key length");
    mac.update(format!("iFlow-Cli:{session_id}:{timestamp}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_uuid_v4(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4)
        && s.len() == 36
        && s == s.to_ascii_lowercase()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every problem with a request's iFlow headers; empty when all is right.
pub fn header_problems(req: &Recorded, api_key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let get = |n: &str| req.header(n).unwrap_or_default();
    let mut names: Vec<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut expected = [IFLOW_HEADERS, TRANSPORT_HEADERS].concat();
    expected.sort_unstable();
    check(names == expected, format!("header names {names:?}"));
    check(
        get("content-type") == "application/json",
        "content-type".into(),
    );
    check(
        get("authorization") == format!("Bearer {api_key}"),
        "authorization".into(),
    );
    check(get("user-agent") == "iFlow-Cli", "user-agent".into());
    let session = get("session-id");
    check(
        session.strip_prefix("session-").is_some_and(is_uuid_v4),
        format!("session-id {session:?}"),
    );
    check(is_uuid_v4(get("conversation-id")), "conversation-id".into());
    let ts = get("x-iflow-timestamp");
    let now = chrono::Utc::now().timestamp_millis();
    let skew = ts.parse::<i64>().map(|t| (now - t).abs());
    check(
        skew.is_ok_and(|s| s < 10_000),
        format!("timestamp {ts:?} vs now {now}"),
    );
    check(
        get("x-iflow-signature") == signature(api_key, session, ts),
        format!("signature {:?}", get("x-iflow-signature")),
    );
    let tp: Vec<&str> = get("traceparent").split('-').collect();
    check(
        tp.len() == 4 && tp[0] == "00" && is_hex(tp[1], 32) && is_hex(tp[2], 16) && tp[3] == "01",
        format!("traceparent {:?}", get("traceparent")),
    );
    check(get("accept") == "*/*", "accept".into());
    check(get("accept-language") == "*", "accept-language".into());
    check(get("sec-fetch-mode") == "cors", "sec-fetch-mode".into());
    check(
        get("accept-encoding") == "br, gzip, deflate",
        "accept-encoding".into(),
    );
    check(
        get("content-length") == req.raw_body.len().to_string(),
        "content-length".into(),
    );
    problems
}

/// Panics with the list of problems, if any.
pub fn assert_signed(req: &Recorded, api_key: &str) {
    let problems = header_problems(req, api_key);
    assert!(
        problems.is_empty(),
        "bad iFlow headers: {problems:?}\n{:#?}",
        req.headers
    );
}
