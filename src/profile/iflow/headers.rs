//! The chat request header set of the official client (protocol section 2):
//! its own headers in its order, then the ones Node's fetch adds.

use super::signature::{push_hex, sign};

pub const USER_AGENT: &str = "iFlow-Cli";

/// What varies per request; everything else is fixed.
pub struct HeaderInput<'a> {
    pub api_key: &'a str,
    pub session_id: &'a str,
    pub conversation_id: &'a str,
    pub timestamp_ms: i64,
    pub traceparent: &'a str,
}

/// The headers that stay the same for an account's session: built once
/// per credential change.
pub fn fixed(api_key: &str, session_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        ("authorization", format!("Bearer {api_key}")),
        ("user-agent", USER_AGENT.to_string()),
        ("session-id", session_id.to_string()),
        ("accept", "*/*".to_string()),
        ("accept-language", "*".to_string()),
        ("sec-fetch-mode", "cors".to_string()),
        ("accept-encoding", "br, gzip, deflate".to_string()),
    ]
}

/// The headers that change with every request: the conversation, the
/// signature over a fresh timestamp, and the trace context.
pub fn per_request(input: &HeaderInput<'_>) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(4);
    headers.push(("conversation-id", input.conversation_id.to_string()));
    if let Some(signature) = sign(
        input.api_key,
        USER_AGENT,
        input.session_id,
        input.timestamp_ms,
    ) {
        headers.push(("x-iflow-signature", signature));
        headers.push(("x-iflow-timestamp", input.timestamp_ms.to_string()));
    }
    headers.push(("traceparent", input.traceparent.to_string()));
    headers
}

/// The whole set in the official client's wire order. `host`, `connection`
/// and `content-length` are added by the HTTP client.
pub fn build(input: &HeaderInput<'_>) -> Vec<(&'static str, String)> {
    // The official order: the client's own headers up to session-id, the
    // per-request ones, then fetch's accept headers.
    let mut fixed = fixed(input.api_key, input.session_id);
    let accept = fixed.split_off(4);
    fixed.extend(per_request(input));
    fixed.extend(accept);
    fixed
}

/// A W3C traceparent with random ids and the sampled flag, as the official
/// client sends from inside its `model_call` span.
pub fn new_traceparent() -> String {
    // Built in place: this runs for every request.
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, &fastrand::u128(1..).to_be_bytes());
    out.push('-');
    push_hex(&mut out, &fastrand::u64(1..).to_be_bytes());
    out.push_str("-01");
    out
}

/// `session-<uuid v4>`, one per account for the life of the process.
pub fn new_session_id() -> String {
    format!("session-{}", uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_set_and_order_follow_the_official_client() {
        let h = build(&HeaderInput {
            api_key: "sk-test-key",
            session_id: "session-123",
            conversation_id: "c0ffee00-0000-4000-8000-000000000000",
            timestamp_ms: 1_700_000_000_000,
            traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
        });
        let names: Vec<&str> = h.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
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
                "accept-encoding"
            ]
        );
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("authorization"), Some("Bearer sk-test-key"));
        assert_eq!(get("user-agent"), Some("iFlow-Cli"));
        assert_eq!(
            get("x-iflow-signature"),
            Some("58c53cca7a2e841bed7cd0e9d89d519b04ac2b16414480e86430ceddde6d4547")
        );
        assert_eq!(get("x-iflow-timestamp"), Some("1700000000000"));
    }

    #[test]
    fn empty_key_omits_signature_headers() {
        let h = build(&HeaderInput {
            api_key: "",
            session_id: "session-1",
            conversation_id: "c",
            timestamp_ms: 1,
            traceparent: "t",
        });
        assert!(h.iter().all(|(n, _)| !n.starts_with("x-iflow")));
    }

    #[test]
    fn generated_ids_have_the_official_shapes() {
        let tp = new_traceparent();
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
        let sid = new_session_id();
        let uuid = sid.strip_prefix("session-").expect("prefix");
        assert_eq!(
            uuid::Uuid::parse_str(uuid).map(|u| u.get_version_num()),
            Ok(4)
        );
    }
}
