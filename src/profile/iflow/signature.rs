//! `x-iflow-signature`: HMAC-SHA256 over `"{user_agent}:{session_id}:{timestamp_ms}"`
//! keyed with the API key, as lowercase hex (protocol section 3).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The signature for one request, or `None` for an empty key: the official
/// client then sends neither `x-iflow-*` header.
pub fn sign(
    api_key: &str,
    user_agent: &str,
    session_id: &str,
    timestamp_ms: i64,
) -> Option<String> {
    if api_key.is_empty() {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()).ok()?;
    mac.update(user_agent.as_bytes());
    mac.update(b":");
    mac.update(session_id.as_bytes());
    mac.update(b":");
    mac.update(timestamp_ms.to_string().as_bytes());
    Some(hex(&mac.finalize().into_bytes()))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends `bytes` to `out` in lowercase hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked examples of protocol section 3.
    #[test]
    fn matches_the_protocol_vectors() {
        let cases = [
            (
                "sk-test-key",
                "session-123",
                1_700_000_000_000,
                "58c53cca7a2e841bed7cd0e9d89d519b04ac2b16414480e86430ceddde6d4547",
            ),
            (
                "sk-0123456789abcdef0123456789abcdef",
                "session-123e4567-e89b-12d3-a456-426614174000",
                1_700_000_000_000,
                "9bd78b084de5c40c3efa2e5c4aff966ffd24b559106111c0b37ada954c05b0b1",
            ),
            (
                "sk-test",
                "session-00000000-0000-0000-0000-000000000000",
                1_234_567_890_123,
                "a02dbf7863f8b7931a95afc1361d891265479563935cd06ccacfe764d5b59336",
            ),
            (
                "sk-test-key",
                "",
                1_700_000_000_000,
                "2ec728e8f36bb1714e444926f53b3f95b528136e68f4f23d86ac72ff61e32d8b",
            ),
        ];
        for (key, session, ts, expected) in cases {
            assert_eq!(
                sign(key, "iFlow-Cli", session, ts).as_deref(),
                Some(expected)
            );
        }
    }

    #[test]
    fn empty_key_gives_no_signature() {
        assert_eq!(sign("", "iFlow-Cli", "session-1", 1), None);
    }
}
