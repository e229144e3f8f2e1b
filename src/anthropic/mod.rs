//! The Anthropic Messages API, for Claude Code and other Anthropic SDK
//! clients: requests are translated to the OpenAI chat format and take the
//! same upstream path; replies (whole or streamed) are translated back.

pub mod errors;
pub mod models;
pub mod request;
pub mod response;
pub mod stream;

/// `msg_` / `toolu_` style ids: a prefix and 24 random alphanumerics.
pub fn new_id(prefix: &str) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let tail: String = (0..24)
        .map(|_| CHARS[fastrand::usize(..CHARS.len())] as char)
        .collect();
    format!("{prefix}{tail}")
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("stop_sequence") => "stop_sequence",
        _ => "end_turn",
    }
}
