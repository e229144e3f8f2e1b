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

use serde_json::Value;

/// What an Anthropic reply repeats from its request.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    /// The model name the client asked for (the reply reports it).
    pub model: String,
    /// The request's `stop_sequences`, to name the one that ended a reply.
    pub stop_sequences: Vec<String>,
}

impl Echo {
    /// An echo of `model` for a request without stop sequences.
    pub fn model(model: &str) -> Self {
        Self {
            model: model.to_string(),
            stop_sequences: Vec::new(),
        }
    }

    /// The request's stop sequence an upstream choice says it stopped at.
    /// OpenAI has no field for it; vLLM puts the matched string in the
    /// choice's `stop_reason` and SGLang in `matched_stop` (both may also
    /// hold a token id, which is not a stop sequence). Only a string equal
    /// to one of the request's sequences counts.
    pub fn matched_stop(&self, choice: &Value) -> Option<String> {
        ["stop_reason", "matched_stop"]
            .iter()
            .filter_map(|k| choice.get(k).and_then(Value::as_str))
            .find(|s| self.stop_sequences.iter().any(|stop| stop == s))
            .map(str::to_string)
    }
}

/// Anthropic's `stop_reason` and `stop_sequence` for a finished reply:
/// `max_tokens` for `finish_reason: length`; `tool_use` when the reply
/// holds a tool call (the client must run it, whatever else matched);
/// `stop_sequence` with the sequence when the upstream named one of the
/// request's; otherwise the OpenAI `finish_reason` mapped.
pub fn stop(
    finish: Option<&str>,
    used_tools: bool,
    matched: Option<&str>,
) -> (&'static str, Value) {
    let reason = match (finish, matched) {
        (Some("length"), _) => "max_tokens",
        _ if used_tools => "tool_use",
        (_, Some(sequence)) => return ("stop_sequence", Value::from(sequence)),
        (Some("tool_calls") | Some("function_call"), _) => "tool_use",
        (Some("stop_sequence"), _) => "stop_sequence",
        _ => "end_turn",
    };
    (reason, Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stop_reasons() {
        let null = Value::Null;
        assert_eq!(
            stop(Some("length"), true, Some("END")),
            ("max_tokens", null.clone())
        );
        assert_eq!(
            stop(Some("tool_calls"), true, Some("END")),
            ("tool_use", null.clone())
        );
        assert_eq!(
            stop(Some("stop"), false, Some("END")),
            ("stop_sequence", json!("END"))
        );
        assert_eq!(
            stop(None, false, Some("END")),
            ("stop_sequence", json!("END"))
        );
        assert_eq!(
            stop(Some("stop_sequence"), false, None),
            ("stop_sequence", null.clone())
        );
        assert_eq!(
            stop(Some("function_call"), false, None),
            ("tool_use", null.clone())
        );
        assert_eq!(stop(Some("stop"), false, None), ("end_turn", null.clone()));
        assert_eq!(
            stop(Some("content_filter"), false, None),
            ("end_turn", null)
        );
    }

    #[test]
    fn matched_stop_is_one_of_the_requests_sequences() {
        let echo = Echo {
            model: "m".into(),
            stop_sequences: vec!["END".into(), "\n\nHuman:".into()],
        };
        let matched = |choice: Value| echo.matched_stop(&choice);
        assert_eq!(matched(json!({ "stop_reason": "END" })), Some("END".into()));
        assert_eq!(
            matched(json!({ "matched_stop": "END" })),
            Some("END".into())
        );
        // A token id, an unknown string, null: no stop sequence.
        assert_eq!(matched(json!({ "stop_reason": 151_643 })), None);
        assert_eq!(matched(json!({ "matched_stop": "STOP" })), None);
        assert_eq!(
            matched(json!({ "stop_reason": null, "matched_stop": 2 })),
            None
        );
        assert_eq!(matched(json!({ "finish_reason": "stop" })), None);
        // Without stop sequences in the request nothing matches.
        assert_eq!(
            Echo::model("m").matched_stop(&json!({ "stop_reason": "END" })),
            None
        );
    }
}
