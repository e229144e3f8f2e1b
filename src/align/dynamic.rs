//! The whitelist of dynamic fields: values that differ on every request (or
//! every machine) by nature. Each kind is described by a pattern, never by a
//! value, and checked by format, cross-checked against the chat request or
//! the gateway's state where the official client ties them together.

use super::compare::Captured;
use crate::profile::iflow::headers::USER_AGENT;
use crate::profile::iflow::signature::sign;
use serde::{Deserialize, Serialize};

/// How far a signed timestamp may be from the comparison time.
pub const TIMESTAMP_WINDOW_MS: i64 = 10_000;

/// The longest run a `duration-ms` field may report.
const MAX_DURATION_MS: u64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dynamic {
    /// `session-<uuid v4>`.
    SessionId,
    /// A lowercase UUID v4.
    UuidV4,
    /// Epoch milliseconds within [`TIMESTAMP_WINDOW_MS`] of now.
    EpochMs,
    /// `x-iflow-signature`: recomputed from the key, session id and timestamp.
    Signature,
    /// `00-<32 hex>-<16 hex>-01`.
    Traceparent,
    /// 16 lowercase hex: telemetry observation ids.
    #[serde(rename = "hex-16")]
    Hex16,
    /// 32 lowercase hex, the trace id of the chat request's `traceparent`.
    TraceId,
    /// `iflow.cli.<conversation-id>.<trace id>` of the chat request.
    Sam,
    /// The per-installation UUID v4 (`<data>/telemetry/installation_id`).
    InstallationId,
    /// A run's duration: whole milliseconds, at most an hour.
    DurationMs,
    /// The `cna` cookie the page-view collector handed out.
    Cna,
    /// The page view's cache buster: hex of a random number below 2^28.
    CacheBuster,
    /// Node's `process.version`: `v<major>.<minor>.<patch>`.
    NodeVersion,
    /// `$LANG`: `C`, `POSIX` or `ll[_CC][.charset][@modifier]`.
    Locale,
    /// `os.release()`, percent-encoded.
    OsRelease,
    /// `run_error.error_msg`: the message, `\n`, then a Node stack.
    ErrorMsg,
}

impl Dynamic {
    /// How the format reads, for humans (docs and diff output).
    pub fn pattern(self) -> &'static str {
        match self {
            Dynamic::SessionId => {
                "session-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
            }
            Dynamic::UuidV4 => {
                "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
            }
            Dynamic::EpochMs => "[0-9]{13}, within 10 s of now",
            Dynamic::Signature => {
                "[0-9a-f]{64} = HMAC-SHA256(api key, \"iFlow-Cli:\" + session-id + \":\" + x-iflow-timestamp)"
            }
            Dynamic::Traceparent => "00-[0-9a-f]{32}-[0-9a-f]{16}-01",
            Dynamic::Hex16 => "[0-9a-f]{16}",
            Dynamic::TraceId => "[0-9a-f]{32}, the chat request's traceparent trace id",
            Dynamic::Sam => "iflow.cli.<chat conversation-id>.<chat trace id>",
            Dynamic::InstallationId => "uuid v4, the content of <data>/telemetry/installation_id",
            Dynamic::DurationMs => "0|[1-9][0-9]*, milliseconds, at most 3600000",
            Dynamic::Cna => "[A-Za-z0-9+/=_-]{1,64}, the cna cookie the collector set",
            Dynamic::CacheBuster => "0|[1-9a-f][0-9a-f]{0,6}",
            Dynamic::NodeVersion => "v[0-9]+.[0-9]+.[0-9]+",
            Dynamic::Locale => "C|POSIX|[a-z]{2,3}(_[A-Z]{2})?(.[A-Za-z0-9-]+)?(@[a-z]+)?",
            Dynamic::OsRelease => "[A-Za-z0-9-_.!~*'()%]{1,256}",
            Dynamic::ErrorMsg => {
                "<message>\\n<Name>Error: ...\\n    at ... (percent-encoded), without the api key"
            }
        }
    }
}

/// What a format check may look at besides the value.
#[derive(Debug, Default, Clone, Copy)]
pub struct Facts<'a> {
    pub api_key: &'a str,
    pub now_ms: i64,
    /// The request the field belongs to (for the signature).
    pub request: Option<&'a Captured>,
    /// The chat request the telemetry is about.
    pub chat: Option<&'a Captured>,
    pub installation_id: Option<&'a str>,
    pub cna: Option<&'a str>,
}

/// Whether `value` has the format of `kind`.
pub fn check(kind: Dynamic, value: &str, facts: &Facts<'_>) -> bool {
    match kind {
        Dynamic::SessionId => value.strip_prefix("session-").is_some_and(is_uuid_v4),
        Dynamic::UuidV4 => is_uuid_v4(value),
        Dynamic::EpochMs => {
            value.len() == 13
                && value
                    .parse::<i64>()
                    .is_ok_and(|t| (t - facts.now_ms).abs() <= TIMESTAMP_WINDOW_MS)
        }
        Dynamic::Signature => {
            let Some(request) = facts.request else {
                return false;
            };
            let session = request.header("session-id").unwrap_or_default();
            let timestamp = request
                .header("x-iflow-timestamp")
                .and_then(|t| t.parse::<i64>().ok());
            timestamp
                .and_then(|t| sign(facts.api_key, USER_AGENT, session, t))
                .as_deref()
                == Some(value)
        }
        Dynamic::Traceparent => trace_id_of(value).is_some(),
        Dynamic::Hex16 => is_hex(value, 16),
        Dynamic::TraceId => is_hex(value, 32) && chat_trace_id(facts) == Some(value),
        Dynamic::Sam => {
            let conversation = facts.chat.and_then(|c| c.header("conversation-id"));
            match (conversation, chat_trace_id(facts)) {
                (Some(c), Some(t)) => value == format!("iflow.cli.{c}.{t}"),
                _ => false,
            }
        }
        Dynamic::InstallationId => {
            is_uuid_v4(value) && facts.installation_id.is_none_or(|id| id == value)
        }
        Dynamic::DurationMs => {
            (value == "0" || !value.starts_with('0'))
                && value.bytes().all(|b| b.is_ascii_digit())
                && value.parse::<u64>().is_ok_and(|d| d <= MAX_DURATION_MS)
        }
        Dynamic::Cna => {
            (1..=64).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b))
                && facts.cna.is_none_or(|c| c == value)
        }
        Dynamic::CacheBuster => {
            (1..=7).contains(&value.len())
                && (value == "0" || !value.starts_with('0'))
                && value
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        Dynamic::NodeVersion => value.strip_prefix('v').is_some_and(|v| {
            let parts: Vec<&str> = v.split('.').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        }),
        Dynamic::Locale => is_locale(value),
        Dynamic::OsRelease => {
            (1..=256).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()%".contains(&b))
        }
        Dynamic::ErrorMsg => is_error_msg(value, facts.api_key),
    }
}

/// The trace id (second field) of a well-formed sampled traceparent.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let parts: Vec<&str> = traceparent.split('-').collect();
    let ok = parts.len() == 4
        && parts[0] == "00"
        && is_hex(parts[1], 32)
        && is_hex(parts[2], 16)
        && parts[3] == "01";
    ok.then(|| parts[1])
}

fn chat_trace_id<'a>(facts: &Facts<'a>) -> Option<&'a str> {
    facts
        .chat
        .and_then(|c| c.header("traceparent"))
        .and_then(trace_id_of)
}

fn is_uuid_v4(s: &str) -> bool {
    s.len() == 36
        && s == s.to_ascii_lowercase()
        && uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_locale(value: &str) -> bool {
    if value == "C" || value == "POSIX" {
        return true;
    }
    let (value, modifier) = value.split_once('@').unwrap_or((value, "a"));
    let (value, charset) = value.split_once('.').unwrap_or((value, "a"));
    let (language, territory) = value.split_once('_').unwrap_or((value, "AA"));
    (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_lowercase())
        && territory.len() == 2
        && territory.bytes().all(|b| b.is_ascii_uppercase())
        && !charset.is_empty()
        && charset
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !modifier.is_empty()
        && modifier.bytes().all(|b| b.is_ascii_lowercase())
}

/// `encodeURIComponent`-ed `message + "\n" + stack`, where a Node stack is
/// an `…Error: …` line followed by `    at …` frames.
fn is_error_msg(value: &str, api_key: &str) -> bool {
    let Some(text) = percent_decode(value) else {
        return false;
    };
    if !api_key.is_empty() && text.contains(api_key) {
        return false;
    }
    let Some((message, stack)) = text.split_once('\n') else {
        return false;
    };
    let mut lines = stack.lines();
    let header_ok = lines.next().is_some_and(|l| {
        l.split_once(": ")
            .map_or(l, |(name, _)| name)
            .ends_with("Error")
    });
    let frames: Vec<&str> = lines.collect();
    !message.is_empty()
        && header_ok
        && !frames.is_empty()
        && frames.iter().all(|l| l.starts_with("    at "))
}

/// Decodes `%XX` escapes (as `decodeURIComponent`); `None` when malformed.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
