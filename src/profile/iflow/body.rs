//! Per-model request-body rules of the official 0.5.19 client (protocol
//! section 5), applied on top of everything the client sent. Where the official
//! client takes a value from its settings (temperature, output limit, thinking
//! switch), the client's explicit value plays that role; where it forces one
//! (GLM, Kimi-K2.5, ROME), it is forced here too.

use super::models::{ReasoningLevel, ThinkingFamily, traits};
use crate::profile::fields;
use serde_json::{Map, Value, json};

/// The official default temperature (settings key `temperature`).
pub const DEFAULT_TEMPERATURE: f64 = 0.6;

/// The thinking switch a request asks for; on at level low by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thinking {
    pub enabled: bool,
    pub level: ReasoningLevel,
}

/// Reads the client's thinking switch: `reasoning_effort`, `thinking`,
/// `enable_thinking` or `chat_template_kwargs.enable_thinking`.
pub fn requested_thinking(body: &Map<String, Value>) -> Thinking {
    let mut t = Thinking {
        enabled: true,
        level: ReasoningLevel::Low,
    };
    if let Some(effort) = fields::get(body, "reasoning_effort").and_then(Value::as_str) {
        match effort.to_ascii_lowercase().as_str() {
            "none" | "minimal" | "off" => t.enabled = false,
            "medium" => t.level = ReasoningLevel::Medium,
            "high" | "xhigh" => t.level = ReasoningLevel::High,
            _ => {}
        }
    }
    let switch = match fields::get(body, "thinking") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("enabled") => Some(true),
            Some("disabled") => Some(false),
            _ => o.get("enabled").and_then(Value::as_bool),
        },
        _ => None,
    }
    .or_else(|| fields::get(body, "enable_thinking").and_then(Value::as_bool))
    .or_else(|| {
        fields::get(body, "chat_template_kwargs")
            .and_then(|k| k.get("enable_thinking"))
            .and_then(Value::as_bool)
    });
    if let Some(on) = switch {
        t.enabled = on;
    }
    t
}

/// Rewrites `body` for the iFlow upstream. `iflow_auth` is true for the
/// `oauth-iflow` and `iflow` auth types (the glm-4.6 rename depends on it).
/// `thinking` overrides the switch read from the body (translated requests
/// carry it outside the body).
pub fn apply(
    body: &mut Map<String, Value>,
    iflow_auth: bool,
    stream: bool,
    thinking: Option<Thinking>,
) {
    let mut model = fields::get(body, "model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();

    if iflow_auth && model == "glm-4.6" {
        model = "glm-4.6-exp".into();
    }

    if stream {
        crate::profile::ask_for_stream_usage(body);
    } else {
        fields::remove(body, "stream_options");
    }

    if fields::get(body, "temperature").is_none_or(Value::is_null) {
        fields::set(body, "temperature", json!(DEFAULT_TEMPERATURE));
    }

    let thinking = thinking.unwrap_or_else(|| requested_thinking(body));
    apply_thinking(body, &mut model, thinking);
    fields::set(body, "model", Value::String(model.clone()));

    // The thinking rules may have renamed the model; the rest go by the
    // name that is sent.
    let t = traits(&model);
    if t.glm_sampling {
        fields::set(body, "temperature", json!(1));
        fields::set(body, "top_p", json!(0.95));
    }

    let client_limit = ["max_new_tokens", "max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| {
            fields::get(body, k)
                .and_then(Value::as_u64)
                .filter(|v| *v > 0)
        });
    let limit = client_limit.unwrap_or(t.output_limit);
    fields::set(body, "max_new_tokens", json!(limit));

    if t.kimi_k25 {
        fields::remove(body, "temperature");
        fields::set(body, "top_p", json!(0.95));
        fields::set(body, "n", json!(1));
        fields::set(body, "presence_penalty", json!(0));
        fields::set(body, "frequency_penalty", json!(0));
    }
    if (t.kimi_k25 || t.deepseek_max_tokens)
        && fields::get(body, "max_tokens").is_none_or(Value::is_null)
    {
        fields::set(body, "max_tokens", json!(limit));
    }

    if fields::get(body, "stop").is_some_and(is_empty_value) {
        fields::remove(body, "stop");
    }
    if fields::get(body, "tools").is_some_and(is_empty_value) {
        fields::remove(body, "tools");
    }
    if fields::get(body, "tools").is_none() {
        fields::remove(body, "tool_choice");
    } else if t.kimi_k25
        && thinking.enabled
        && fields::get(body, "tool_choice").is_none_or(Value::is_null)
    {
        fields::set(body, "tool_choice", json!("auto"));
    }

    if model == "iFlow-ROME-30BA3B" {
        fields::set(body, "temperature", json!(0.7));
        fields::set(body, "top_p", json!(0.8));
        fields::set(body, "top_k", json!(20));
    }
}

fn apply_thinking(body: &mut Map<String, Value>, model: &mut String, t: Thinking) {
    let on = t.enabled;
    match traits(model).thinking {
        ThinkingFamily::O1 => {
            if on && t.level != ReasoningLevel::Low {
                fields::set(body, "reasoning", json!(true));
            }
        }
        ThinkingFamily::DeepSeek => {
            if on {
                fields::set(body, "thinking_mode", json!(true));
                if t.level != ReasoningLevel::Low {
                    fields::set(body, "reasoning", json!(true));
                }
                if model == "deepseek-v3.2-chat" {
                    *model = "deepseek-v3.2-reasoner".into();
                }
            }
        }
        ThinkingFamily::Glm47 => set_template_thinking(body, on),
        ThinkingFamily::Glm5 => {
            set_template_thinking(body, on);
            fields::set(body, "enable_thinking", json!(on));
            fields::set(body, "thinking", json!({ "type": enabled_word(on) }));
        }
        ThinkingFamily::Glm | ThinkingFamily::Claude => {
            if on {
                set_template_thinking(body, true);
            }
        }
        ThinkingFamily::Claude35Sonnet => {
            if on {
                let (tokens, level) = match t.level {
                    ReasoningLevel::Low => (2000, "low"),
                    ReasoningLevel::Medium => (10000, "medium"),
                    ReasoningLevel::High => (31999, "high"),
                };
                fields::set(
                    body,
                    "thinking",
                    json!({ "enabled": true, "max_tokens": tokens, "reasoning_level": level }),
                );
            }
        }
        ThinkingFamily::Reasoning => {
            if on {
                fields::set(body, "reasoning", json!(true));
            }
        }
        ThinkingFamily::KimiK25 => {
            fields::set(body, "thinking", json!({ "type": enabled_word(on) }));
        }
        ThinkingFamily::Thinking => {
            if on {
                fields::set(body, "thinking_mode", json!(true));
            }
        }
        ThinkingFamily::Mimo => {
            if on {
                fields::set(body, "thinking", json!({ "type": "enabled" }));
            }
        }
        ThinkingFamily::Qwen4b | ThinkingFamily::None => {}
    }
}

fn set_template_thinking(body: &mut Map<String, Value>, on: bool) {
    let kwargs = body
        .entry("chat_template_kwargs")
        .or_insert_with(|| Value::Object(Map::new()));
    if !kwargs.is_object() {
        *kwargs = Value::Object(Map::new());
    }
    if let Value::Object(k) = kwargs {
        k.insert("enable_thinking".into(), json!(on));
    }
}

fn enabled_word(on: bool) -> &'static str {
    if on { "enabled" } else { "disabled" }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
