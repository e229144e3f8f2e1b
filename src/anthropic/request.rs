//! Anthropic Messages request → OpenAI chat request.
//!
//! `system`, text/image/`tool_use`/`tool_result` blocks, tools, tool choice,
//! sampling fields, `thinking` and `metadata.user_id` are carried over;
//! fields without an OpenAI meaning are ignored, never rejected.

use super::Echo;
use super::models::ModelMap;
use crate::error::GatewayError;
use crate::openai::ChatRequest;
use crate::profile::iflow::body::Thinking;
use crate::profile::iflow::models::ReasoningLevel;
use serde_json::{Map, Value, json};

/// A translated request and what the reply needs to say.
pub struct Translated {
    pub chat: ChatRequest,
    /// The client's model name and stop sequences, for the reply.
    pub echo: Echo,
}

pub fn translate(bytes: &[u8], models: &ModelMap) -> Result<Translated, GatewayError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::invalid(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(req) = value else {
        return Err(GatewayError::invalid("request body must be a JSON object"));
    };
    let client_model = match req.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(_) => return Err(GatewayError::invalid("`model` must be a non-empty string")),
        None => return Err(GatewayError::invalid("`model` is required")),
    };
    let Some(Value::Array(messages)) = req.get("messages") else {
        return Err(GatewayError::invalid(
            "`messages` must be an array of messages",
        ));
    };
    let stream = match req.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(GatewayError::invalid("`stream` must be a boolean")),
    };

    check_types(&req, messages)?;

    let mut out_messages = Vec::new();
    if let Some(system) = req.get("system") {
        let text = text_of(system);
        if !text.is_empty() {
            out_messages.push(json!({ "role": "system", "content": text }));
        }
    }
    // The last user message holds the user's own words (not only images a
    // tool returned): a new turn.
    let mut users_own = false;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            Some("user") => users_own = user_message(content, &mut out_messages),
            Some("assistant") => out_messages.push(assistant_message(content)),
            _ => {
                return Err(GatewayError::invalid(format!(
                    "`messages[{i}].role` must be user or assistant"
                )));
            }
        }
    }
    if out_messages.is_empty() {
        return Err(GatewayError::invalid(if messages.is_empty() {
            "`messages` must contain at least one message"
        } else {
            "`messages` holds nothing the gateway can send: no text, image, tool_use, \
             tool_result or thinking block"
        }));
    }
    let starts_turn = users_own
        && out_messages
            .last()
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            == Some("user");

    let upstream_model = models.resolve(&client_model).to_string();
    let mut body = Map::new();
    body.insert("model".into(), Value::String(upstream_model.clone()));
    body.insert("messages".into(), Value::Array(out_messages));
    if stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    for key in ["max_tokens", "temperature", "top_p", "top_k"] {
        if let Some(v) = req.get(key).filter(|v| v.is_number()) {
            body.insert(key.into(), v.clone());
        }
    }
    let mut stop_sequences = Vec::new();
    if let Some(stops) = req
        .get("stop_sequences")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
    {
        body.insert("stop".into(), Value::Array(stops.clone()));
        stop_sequences = stops
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
    let tools = tools_of(req.get("tools"));
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = req.get("tool_choice") {
            apply_tool_choice(choice, &mut body);
        }
    }
    if let Some(user) = req
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        body.insert("user".into(), Value::String(user.to_string()));
    }

    Ok(Translated {
        chat: ChatRequest {
            body,
            model: upstream_model,
            stream,
            // The translator needs the final usage for `message_delta`.
            wants_stream_usage: true,
            starts_turn,
            thinking: thinking_of(req.get("thinking")),
            size_hint: bytes.len(),
        },
        echo: Echo {
            model: client_model,
            stop_sequences,
        },
    })
}

/// `thinking: {type: enabled, budget_tokens}` → on, at a level from the
/// budget; `{type: disabled}` → off; absent → the model's default.
fn thinking_of(value: Option<&Value>) -> Option<Thinking> {
    let value = value?;
    match value.get("type").and_then(Value::as_str)? {
        "enabled" => {
            let budget = value
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let level = match budget {
                16_000.. => ReasoningLevel::High,
                4_000.. => ReasoningLevel::Medium,
                _ => ReasoningLevel::Low,
            };
            Some(Thinking {
                enabled: true,
                level,
            })
        }
        "disabled" => Some(Thinking {
            enabled: false,
            level: ReasoningLevel::Low,
        }),
        _ => None,
    }
}

/// The types the Anthropic API itself checks, so that a value of the wrong
/// type is a 400 rather than a turn or a setting quietly left out. Content
/// blocks of a type the translation does not know are still dropped (see
/// docs/api.md): they are well-formed, only not expressible upstream.
fn check_types(req: &Map<String, Value>, messages: &[Value]) -> Result<(), GatewayError> {
    match req.get("system") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            let text = |b: &Value| b.is_string() || b.get("text").is_some_and(Value::is_string);
            if let Some(j) = blocks.iter().position(|b| !text(b)) {
                return Err(GatewayError::invalid(format!(
                    "`system[{j}]` must be a text block"
                )));
            }
        }
        Some(_) => {
            return Err(GatewayError::invalid(
                "`system` must be a string or an array of text blocks",
            ));
        }
    }
    for key in ["max_tokens", "temperature", "top_p", "top_k"] {
        if req.get(key).is_some_and(|v| !v.is_null() && !v.is_number()) {
            return Err(GatewayError::invalid(format!("`{key}` must be a number")));
        }
    }
    if req
        .get("max_tokens")
        .is_some_and(|v| v.is_number() && v.as_u64().is_none_or(|n| n == 0))
    {
        return Err(GatewayError::invalid(
            "`max_tokens` must be a whole number of at least 1",
        ));
    }
    check_settings(req)?;
    for (i, message) in messages.iter().enumerate() {
        if !message.is_object() {
            return Err(GatewayError::invalid(format!(
                "`messages[{i}]` must be an object with `role` and `content`"
            )));
        }
        match message.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => {
                let typed = |b: &Value| b.get("type").is_some_and(Value::is_string);
                if let Some(j) = blocks.iter().position(|b| !typed(b)) {
                    return Err(GatewayError::invalid(format!(
                        "`messages[{i}].content[{j}]` must be a content block (an object with a string `type`)"
                    )));
                }
                for (j, block) in blocks.iter().enumerate() {
                    check_block(block, &format!("messages[{i}].content[{j}]"))?;
                }
            }
            _ => {
                return Err(GatewayError::invalid(format!(
                    "`messages[{i}].content` must be a string or an array of content blocks"
                )));
            }
        }
    }
    Ok(())
}

/// The fields a known content block must have, with their types.
fn check_block(block: &Value, at: &str) -> Result<(), GatewayError> {
    let wrong = |field: &str, what: &str| {
        Err(GatewayError::invalid(format!(
            "`{at}.{field}` must be {what}"
        )))
    };
    let is = |field: &str, test: fn(&Value) -> bool| block.get(field).is_some_and(test);
    match block.get("type").and_then(Value::as_str) {
        Some("text") if !is("text", Value::is_string) => wrong("text", "a string"),
        Some("tool_use") if !is("id", Value::is_string) => wrong("id", "a string"),
        Some("tool_use") if !is("name", Value::is_string) => wrong("name", "a string"),
        Some("tool_use") if block.get("input").is_some_and(|v| !v.is_object()) => {
            wrong("input", "an object")
        }
        Some("tool_result") if !is("tool_use_id", Value::is_string) => {
            wrong("tool_use_id", "a string")
        }
        Some("tool_result")
            if block
                .get("content")
                .is_some_and(|c| !(c.is_null() || c.is_string() || c.is_array())) =>
        {
            wrong("content", "a string or an array of content blocks")
        }
        _ => Ok(()),
    }
}

/// The request's settings other than the messages: each may be left out or
/// `null`, but a value of another type is refused, as the Anthropic API does.
fn check_settings(req: &Map<String, Value>) -> Result<(), GatewayError> {
    let set = |key: &str| req.get(key).filter(|v| !v.is_null());
    let invalid = |m: String| Err(GatewayError::invalid(m));
    if let Some(stops) = set("stop_sequences")
        && !stops
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    {
        return invalid("`stop_sequences` must be an array of strings".into());
    }
    if let Some(tools) = set("tools") {
        let Some(tools) = tools.as_array() else {
            return invalid("`tools` must be an array of tools".into());
        };
        // Only the tools that are sent on are checked: server tools and
        // toolsets (web search, an MCP connector's `mcp_toolset`, which has
        // no `name`) are dropped whatever they hold.
        for (i, tool) in tools.iter().enumerate() {
            let Some(schema) = tool.get("input_schema") else {
                continue;
            };
            if !schema.is_object() {
                return invalid(format!("`tools[{i}].input_schema` must be an object"));
            }
            if !tool.get("name").is_some_and(Value::is_string) {
                return invalid(format!("`tools[{i}].name` must be a string"));
            }
        }
    }
    if let Some(choice) = set("tool_choice") {
        match choice.get("type").and_then(Value::as_str) {
            Some("auto" | "any" | "none") => {}
            Some("tool") if choice.get("name").is_some_and(Value::is_string) => {}
            Some("tool") => return invalid("`tool_choice.name` must be a string".into()),
            _ => {
                return invalid(
                    "`tool_choice` must be an object whose `type` is auto, any, tool or none"
                        .into(),
                );
            }
        }
    }
    if let Some(metadata) = set("metadata") {
        if !metadata.is_object() {
            return invalid("`metadata` must be an object".into());
        }
        if metadata
            .get("user_id")
            .is_some_and(|u| !(u.is_null() || u.is_string()))
        {
            return invalid("`metadata.user_id` must be a string".into());
        }
    }
    if let Some(thinking) = set("thinking")
        && !thinking.get("type").is_some_and(Value::is_string)
    {
        return invalid("`thinking` must be an object with a string `type`".into());
    }
    Ok(())
}

/// A string, or the text blocks of an array, joined.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => joined(blocks.iter().filter_map(|b| match b {
            Value::String(s) => Some(s.as_str()),
            _ => b.get("text").and_then(Value::as_str),
        })),
        _ => String::new(),
    }
}

/// Texts one per line; an empty one adds no blank line.
fn joined<'a>(texts: impl Iterator<Item = &'a str>) -> String {
    texts
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A user turn: its tool results become `tool` messages (which OpenAI wants
/// right after the assistant's tool calls), the rest one user message.
/// True when that message holds something of the user's own (text or an
/// image), not only the images of tool results.
fn user_message(content: &Value, out: &mut Vec<Value>) -> bool {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({ "role": "user", "content": s }));
            return true;
        }
        Value::Array(blocks) => blocks,
        _ => return false,
    };
    let mut parts = Vec::new();
    let mut tool_images = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(text) = block.get("text").and_then(Value::as_str) {
                    parts.push(json!({ "type": "text", "text": text }));
                }
            }
            Some("image") => {
                if let Some(url) = image_url(block.get("source")) {
                    parts.push(json!({ "type": "image_url", "image_url": { "url": url } }));
                }
            }
            Some("tool_result") => {
                let id = block
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let mut text = block.get("content").map(text_of).unwrap_or_default();
                // OpenAI's tool messages carry text only: a result's images
                // (a screenshot, an image file read) go on in the user
                // message that follows, and the tool message says so.
                let images: Vec<Value> = block
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("image"))
                    .filter_map(|b| image_url(b.get("source")))
                    .map(|url| json!({ "type": "image_url", "image_url": { "url": url } }))
                    .collect();
                if !images.is_empty() {
                    let note = match images.len() {
                        1 => {
                            "(the image this tool returned follows in the next message)".to_string()
                        }
                        n => format!(
                            "(the {n} images this tool returned follow in the next message)"
                        ),
                    };
                    text = joined([text.as_str(), note.as_str()].into_iter());
                    tool_images.extend(images);
                }
                if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                    text = format!("Error: {text}");
                }
                out.push(json!({ "role": "tool", "tool_call_id": id, "content": text }));
            }
            _ => {}
        }
    }
    let own = !parts.is_empty();
    // The tool results' images first: they answer the calls just made.
    tool_images.extend(parts);
    let parts = tool_images;
    if parts.is_empty() {
        return false;
    }
    // Plain text stays a string: every upstream understands that.
    let all_text = parts.iter().all(|p| p["type"] == "text");
    let content = if all_text {
        Value::String(joined(parts.iter().filter_map(|p| p["text"].as_str())))
    } else {
        Value::Array(parts)
    };
    out.push(json!({ "role": "user", "content": content }));
    own
}

fn image_url(source: Option<&Value>) -> Option<String> {
    let source = source?;
    match source.get("type").and_then(Value::as_str)? {
        "base64" => {
            let media = source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("image/png");
            let data = source.get("data").and_then(Value::as_str)?;
            Some(format!("data:{media};base64,{data}"))
        }
        "url" => source
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// Removes the thinking signature from translated assistant messages. The
/// iFlow API takes it back as the official client sends it; a plain
/// OpenAI-compatible API has no such field, so an `openai` account gets the
/// turns without it. `reasoning_content` stays: OpenAI-compatible reasoning
/// APIs read it back (DeepSeek's thinking mode needs it on turns that
/// called tools).
pub fn drop_thinking_signature(body: &mut Map<String, Value>) {
    let Some(Value::Array(messages)) = body.get_mut("messages") else {
        return;
    };
    for message in messages {
        if message.get("role").and_then(Value::as_str) == Some("assistant")
            && let Value::Object(fields) = message
        {
            fields.shift_remove("signature");
        }
    }
}

/// An assistant turn: text → content, thinking → `reasoning_content` and
/// `signature` (as the official client replays them), tool_use →
/// `tool_calls`. Several thinking blocks: their texts are joined and the
/// last non-empty signature is kept, as the message has room for one.
fn assistant_message(content: &Value) -> Value {
    let blocks = match content {
        Value::String(s) => return json!({ "role": "assistant", "content": s }),
        Value::Array(blocks) => blocks.as_slice(),
        _ => &[],
    };
    let mut text = Vec::new();
    let mut reasoning = Vec::new();
    let mut signature = None;
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.extend(block.get("text").and_then(Value::as_str)),
            Some("thinking") => {
                reasoning.extend(block.get("thinking").and_then(Value::as_str));
                if let Some(s) = block
                    .get("signature")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    signature = Some(s);
                }
            }
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": block.get("id").and_then(Value::as_str).unwrap_or_default(),
                    "type": "function",
                    "function": {
                        "name": block.get("name").and_then(Value::as_str).unwrap_or_default(),
                        "arguments": input.to_string(),
                    }
                }));
            }
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), json!(text.join("")));
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), json!(reasoning.join("")));
    }
    if let Some(signature) = signature {
        message.insert("signature".into(), json!(signature));
    }
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    Value::Object(message)
}

/// Client tools with an `input_schema`; server tools (web search…) have
/// no OpenAI form and are left out.
fn tools_of(tools: Option<&Value>) -> Vec<Value> {
    let Some(Value::Array(tools)) = tools else {
        return Vec::new();
    };
    tools
        .iter()
        .filter_map(|t| {
            let name = t.get("name").and_then(Value::as_str)?;
            let schema = t.get("input_schema")?;
            let mut function = json!({ "name": name, "parameters": schema });
            if let Some(d) = t.get("description").and_then(Value::as_str) {
                function["description"] = json!(d);
            }
            Some(json!({ "type": "function", "function": function }))
        })
        .collect()
}

fn apply_tool_choice(choice: &Value, body: &mut Map<String, Value>) {
    let mapped = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => Some(json!("auto")),
        Some("any") => Some(json!("required")),
        Some("none") => Some(json!("none")),
        Some("tool") => choice
            .get("name")
            .and_then(Value::as_str)
            .map(|name| json!({ "type": "function", "function": { "name": name } })),
        _ => None,
    };
    if let Some(mapped) = mapped {
        body.insert("tool_choice".into(), mapped);
    }
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true)
    {
        body.insert("parallel_tool_calls".into(), json!(false));
    }
}

/// What `count_tokens` counts for an image: about what Anthropic charges
/// for one of the largest size it takes without scaling (1.15 megapixels,
/// at its documented width × height / 750). Its bytes say nothing useful.
pub const IMAGE_TOKENS: u64 = 1_600;

/// A rough token count for `count_tokens` (no tokenizer is available for
/// the upstream models): about four ASCII characters per token, one per
/// other character, plus a little per message; a fixed count per image.
pub fn estimate_tokens(bytes: &[u8], models: &ModelMap) -> Result<u64, GatewayError> {
    let translated = translate(bytes, models)?;
    let mut tokens = 0u64;
    let mut count = |text: &str| {
        let ascii = text.bytes().filter(u8::is_ascii).count() as u64;
        let other = text.chars().filter(|c| !c.is_ascii()).count() as u64;
        tokens += ascii.div_ceil(4) + other;
    };
    let mut images = 0u64;
    if let Some(Value::Array(messages)) = translated.chat.body.get("messages") {
        for m in messages {
            let mut m = m.clone();
            if let Some(Value::Array(parts)) = m.get_mut("content") {
                for part in parts.iter_mut() {
                    if let Some(url) = part.get_mut("image_url").and_then(|i| i.get_mut("url")) {
                        *url = Value::String(String::new());
                        images += 1;
                    }
                }
            }
            count(&m.to_string());
        }
    }
    if let Some(tools) = translated.chat.body.get("tools") {
        count(&tools.to_string());
    }
    Ok(tokens + images * IMAGE_TOKENS)
}

#[cfg(test)]
mod tests;
