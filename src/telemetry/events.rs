//! The official client's telemetry payloads, as pure functions: GM events
//! (`{"gmkey":"AI","gokey":"k=v&…"}` with `encodeURIComponent` values) and
//! the `v.gif` page view.

use crate::profile::iflow::signature::hex;
use serde_json::{Value, json};

/// What one model call's events share.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    pub trace_id: String,
    pub session_id: String,
    pub conversation_id: String,
    pub model: String,
    /// The tool whose result is the last message, if any.
    pub tool: String,
    pub user_id: String,
    /// The `run_started` observation id, parent of the later events.
    pub observation_id: String,
}

/// Platform facts of `run_error`, in Node's naming.
#[derive(Debug, Clone)]
pub struct ClientFacts {
    pub cli_version: String,
    pub node_version: String,
    pub platform: String,
    pub arch: String,
    pub os_version: String,
}

/// 16 random hex characters.
pub fn observation_id() -> String {
    hex(&fastrand::u64(..).to_be_bytes())
}

/// JavaScript's `encodeURIComponent`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn gm_body(fields: &[(&str, &str)]) -> Value {
    let gokey = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_component(v)))
        .collect::<Vec<_>>()
        .join("&");
    json!({ "gmkey": "AI", "gokey": gokey })
}

fn sam(ctx: &RunContext) -> String {
    if ctx.trace_id.is_empty() {
        String::new()
    } else {
        format!("iflow.cli.{}.{}", ctx.conversation_id, ctx.trace_id)
    }
}

/// `/aitrack.lifecycle.run_started`.
pub fn run_started(ctx: &RunContext) -> Value {
    gm_body(&[
        ("pid", "iflow"),
        ("sam", &sam(ctx)),
        ("trace_id", &ctx.trace_id),
        ("session_id", &ctx.session_id),
        ("conversation_id", &ctx.conversation_id),
        ("observation_id", &ctx.observation_id),
        ("model", &ctx.model),
        ("tool", &ctx.tool),
        ("user_id", &ctx.user_id),
    ])
}

/// `/aitrack.lifecycle.run_finished` (after a successful non-stream reply).
pub fn run_finished(ctx: &RunContext, duration_ms: u128) -> Value {
    gm_body(&[
        ("pid", "iflow"),
        ("sam", &sam(ctx)),
        ("trace_id", &ctx.trace_id),
        ("session_id", &ctx.session_id),
        ("conversation_id", &ctx.conversation_id),
        ("observation_id", &observation_id()),
        ("parent_observation_id", &ctx.observation_id),
        ("duration", &duration_ms.to_string()),
        ("model", &ctx.model),
        ("tool", &ctx.tool),
        ("sessionId", &ctx.session_id),
        ("user_id", &ctx.user_id),
    ])
}

/// The most characters of a message, and of a stack, `run_error` carries.
const ERROR_TEXT_CAP: usize = 20_000;

/// `error_msg` as the official client builds it: the message, `\n`, then the
/// error's stack, which Node starts with `Error: <message>` followed by
/// `    at …` frames. The gateway has no JavaScript stack, so it sends one
/// frame naming the official request builder, `generateContentInternal`,
/// with Node's `<anonymous>` for an unknown location. The official client
/// cuts the stack at 20 000 characters; the gateway also cuts the message.
pub fn error_msg(error: &str) -> String {
    let message: String = error.chars().take(ERROR_TEXT_CAP).collect();
    let stack = format!("Error: {message}\n    at generateContentInternal (<anonymous>)");
    let stack: String = stack.chars().take(ERROR_TEXT_CAP).collect();
    format!("{message}\n{stack}")
}

/// `/aitrack.lifecycle.run_error`.
pub fn run_error(ctx: &RunContext, error: &str, facts: &ClientFacts) -> Value {
    let message = error_msg(error);
    gm_body(&[
        ("pid", "iflow"),
        ("sam", &sam(ctx)),
        ("trace_id", &ctx.trace_id),
        ("observation_id", &observation_id()),
        ("parent_observation_id", &ctx.observation_id),
        ("session_id", &ctx.session_id),
        ("conversation_id", &ctx.conversation_id),
        ("user_id", &ctx.user_id),
        ("error_msg", &message),
        ("model", &ctx.model),
        ("tool", &ctx.tool),
        ("toolName", ""),
        ("toolArgs", ""),
        ("cliVer", &facts.cli_version),
        ("platform", &facts.platform),
        ("arch", &facts.arch),
        ("nodeVersion", &facts.node_version),
        ("osVersion", &facts.os_version),
    ])
}

/// The `v.gif` page-view body, fields in the official order.
pub fn page_view(cna: &str, user_id: &str, facts: &ClientFacts, language: &str) -> String {
    let (device, os, o) = match facts.platform.as_str() {
        "darwin" => ("Macintosh", "Mac%20OS%20X", "mac"),
        "win32" => ("Windows", "Windows", "win"),
        other => ("Linux", "Linux", other),
    };
    let cache = format!("{:x}", fastrand::u32(..1 << 28));
    [
        "logtype=1".to_string(),
        "title=iFlow-CLI".into(),
        "pre=-".into(),
        "scr=-".into(),
        format!("cna={cna}"),
        "spm-cnt=a2110qe.33796382.46182003.0.0".into(),
        "aplus".into(),
        "pid=iflow".into(),
        format!("_user_id={user_id}"),
        format!("cache={cache}"),
        "sidx=aplusSidex".into(),
        "ckx=aplusCkx".into(),
        "platformType=pc".into(),
        format!("device_model={device}"),
        format!("os={os}"),
        format!("o={o}"),
        format!("node_version={}", facts.node_version),
        format!("language={language}"),
        "interactive=0".into(),
        "iFlowEnv=".into(),
        "_g_encode=utf-8".into(),
    ]
    .join("&")
}

/// Node's names for this machine.
pub fn local_facts(cli_version: &str, node_version: &str) -> ClientFacts {
    let platform = match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    ClientFacts {
        cli_version: cli_version.to_string(),
        node_version: node_version.to_string(),
        platform: platform.to_string(),
        arch: arch.to_string(),
        os_version: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RunContext {
        RunContext {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            session_id: "session-1".into(),
            conversation_id: "c-1".into(),
            model: "glm-5".into(),
            tool: String::new(),
            user_id: "u-1".into(),
            observation_id: "0123456789abcdef".into(),
        }
    }

    fn gokey_fields(v: &Value) -> Vec<(String, String)> {
        v["gokey"]
            .as_str()
            .unwrap_or_default()
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn encode_component_matches_javascript() {
        assert_eq!(encode_component("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode_component("-_.!~*'()"), "-_.!~*'()");
    }

    #[test]
    fn run_started_field_order_and_sam() {
        let v = run_started(&ctx());
        assert_eq!(v["gmkey"], "AI");
        let fields = gokey_fields(&v);
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "pid",
                "sam",
                "trace_id",
                "session_id",
                "conversation_id",
                "observation_id",
                "model",
                "tool",
                "user_id"
            ]
        );
        assert_eq!(
            fields[1].1,
            "iflow.cli.c-1.0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(fields[7].1, "");
    }

    #[test]
    fn finished_and_error_carry_the_parent() {
        let f = gokey_fields(&run_finished(&ctx(), 1234));
        assert!(f.contains(&("parent_observation_id".into(), "0123456789abcdef".into())));
        assert!(f.contains(&("duration".into(), "1234".into())));
        assert!(f.contains(&("sessionId".into(), "session-1".into())));
        let facts = local_facts("0.5.19", "v22.20.0");
        let e = gokey_fields(&run_error(&ctx(), "upstream refused", &facts));
        let names: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names.len(), 18);
        assert_eq!(names[8], "error_msg");
        assert_eq!(
            e[8].1,
            encode_component(
                "upstream refused\nError: upstream refused\n    at generateContentInternal (<anonymous>)"
            )
        );
        assert!(e.contains(&("cliVer".into(), "0.5.19".into())));
    }

    #[test]
    fn error_msg_caps_message_and_stack() {
        let long = error_msg(&"x".repeat(30_000));
        let (message, stack) = long.split_once('\n').unwrap();
        assert_eq!(message.chars().count(), 20_000);
        assert_eq!(stack.chars().count(), 20_000);
        assert!(stack.starts_with("Error: xxx"));
    }

    #[test]
    fn page_view_order() {
        let facts = local_facts("0.5.19", "v22.20.0");
        let body = page_view("CNA123", "u-1", &facts, "en_US.UTF-8");
        let keys: Vec<&str> = body
            .split('&')
            .map(|kv| kv.split('=').next().unwrap_or(kv))
            .collect();
        assert_eq!(keys.len(), 21);
        assert_eq!(
            &keys[..6],
            ["logtype", "title", "pre", "scr", "cna", "spm-cnt"]
        );
        assert_eq!(keys[6], "aplus");
        assert_eq!(keys[20], "_g_encode");
        assert!(body.contains("cna=CNA123"));
    }
}
