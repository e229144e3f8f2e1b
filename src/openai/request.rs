//! Parses and checks a `POST /v1/chat/completions` body. Every field the client
//! sent is kept, modelled or not; only what the gateway itself relies on is
//! checked.

use crate::error::GatewayError;
use crate::profile::iflow::body::Thinking;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The whole request object, as sent.
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client asked for the final usage chunk (`stream_options.include_usage`).
    pub wants_stream_usage: bool,
    /// The last message is the user's: a new prompt, so a new conversation id.
    pub starts_turn: bool,
    /// A thinking switch decided outside the body (translated requests).
    pub thinking: Option<Thinking>,
    /// Length of the client's request body: the buffer size to start from
    /// when the rewritten body is written out.
    pub size_hint: usize,
}

impl ChatRequest {
    pub fn parse(bytes: &[u8]) -> Result<Self, GatewayError> {
        // serde_json refuses nesting deeper than 128 levels, so a hostile body
        // ends here as a 400 rather than exhausting the stack.
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| GatewayError::invalid(format!("request body is not valid JSON: {e}")))?;
        let Value::Object(body) = value else {
            return Err(GatewayError::invalid("request body must be a JSON object"));
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
            Some(Value::String(_)) => return Err(field_error("model", "must not be empty")),
            Some(_) => return Err(field_error("model", "must be a string")),
            None => return Err(field_error("model", "is required")),
        };
        let messages = match body.get("messages") {
            Some(Value::Array(m)) => m,
            Some(_) => {
                return Err(field_error(
                    "messages",
                    "must be an array of message objects",
                ));
            }
            None => return Err(field_error("messages", "is required")),
        };
        if messages.is_empty() {
            return Err(field_error("messages", "must contain at least one message"));
        }
        for (i, message) in messages.iter().enumerate() {
            let Value::Object(m) = message else {
                return Err(field_error(&format!("messages[{i}]"), "must be an object"));
            };
            if !m.get("role").is_some_and(Value::is_string) {
                return Err(field_error(
                    &format!("messages[{i}].role"),
                    "must be a string",
                ));
            }
        }
        let starts_turn = messages
            .last()
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            == Some("user");
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(field_error("stream", "must be a boolean")),
        };
        let wants_stream_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            body,
            model,
            stream,
            wants_stream_usage,
            starts_turn,
            thinking: None,
            size_hint: bytes.len(),
        })
    }
}

fn field_error(field: &str, problem: &str) -> GatewayError {
    GatewayError::invalid(format!("`{field}` {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        ChatRequest::parse(body.as_bytes())
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn accepts_and_keeps_unmodelled_fields() {
        let r = ChatRequest::parse(
            br#"{"model":"glm-5","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],
                 "stream":true,"stream_options":{"include_usage":true},"seed":3,"logprobs":true}"#,
        )
        .expect("valid");
        assert!(r.stream && r.wants_stream_usage && r.starts_turn);
        assert_eq!(r.body["seed"], 3);
        assert_eq!(r.body["logprobs"], true);
    }

    #[test]
    fn tool_result_continues_the_turn() {
        let r = ChatRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"1","content":"y"}]}"#,
        )
        .expect("valid");
        assert!(!r.starts_turn);
        assert!(!r.stream);
    }

    #[test]
    fn rejects_bad_shapes_with_clear_messages() {
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[]").contains("JSON object"));
        assert!(err(r#"{"messages":[]}"#).contains("`model` is required"));
        assert!(err(r#"{"model":1,"messages":[]}"#).contains("`model` must be a string"));
        assert!(err(r#"{"model":"m"}"#).contains("`messages` is required"));
        assert!(err(r#"{"model":"m","messages":{}}"#).contains("`messages` must be an array"));
        assert!(err(r#"{"model":"m","messages":[1]}"#).contains("`messages[0]` must be an object"));
        assert!(err(r#"{"model":"m","messages":[{"content":"x"}]}"#).contains("role"));
        assert!(
            err(r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#)
                .contains("`stream` must be a boolean")
        );
    }

    #[test]
    fn deep_nesting_is_a_clean_error() {
        let deep = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":{}1{}}}]}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(err(&deep).contains("recursion limit"));
    }
}
