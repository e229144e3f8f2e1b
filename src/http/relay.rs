//! Relays the upstream reply to the client: a whole JSON completion, or an
//! SSE stream forwarded chunk by chunk as it arrives.
//!
//! A stream's reply head waits for the first upstream event (so an error
//! sent as that event still gets its status); the rest is relayed by
//! [`sse_body::SseBody`], the response body itself.

mod sse_body;

use super::meter::Meter;
use crate::actors::upstream::Lease;
use crate::anthropic;
use crate::error::GatewayError;
use crate::openai::normalize;
use crate::openai::sse::{SseDecoder, SseItem};
use crate::openai::stream::{EventShaper, StreamShaper};
use crate::profile::UpstreamFault;
use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web::{Bytes, BytesMut};
use awc::error::PayloadError;
use futures::{Stream, StreamExt};
use serde_json::Value;
use std::time::Duration;

/// Error replies are read only this far (enough for any message), and for
/// this long: a stalled error body must not hold the account's slot.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The API the client speaks, and so the shape of the reply.
#[derive(Debug, Clone)]
pub enum ReplyFormat {
    /// OpenAI chat completions; `wants_usage`: the client asked for the
    /// final usage chunk of a stream.
    OpenAi { wants_usage: bool },
    /// Anthropic messages, with what the reply repeats from the request.
    Anthropic(anthropic::Echo),
}

pub struct RelayOptions {
    pub format: ReplyFormat,
    pub preserve_reasoning: bool,
    pub max_response_bytes: usize,
    pub idle_timeout: Duration,
    pub keepalive: Duration,
    pub body_timeout: Duration,
}

/// The parts of an upstream reply the relay reads.
pub trait UpstreamBody: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static {}
impl<S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static> UpstreamBody for S {}

/// Reads an error reply (status not 2xx) and turns it into the client's error.
/// The body read is bounded by `timeout`: a stalled error body must not hold
/// the account's slot.
async fn fail_with_status<S: UpstreamBody>(
    resp: awc::ClientResponse<S>,
    lease: &Lease,
    timeout: Duration,
) -> GatewayError {
    let status = resp.status().as_u16();
    let retry_after = header_text(resp.headers(), header::RETRY_AFTER);
    let body = read_error_body(resp, timeout).await;
    GatewayError::upstream(
        &lease.account_label,
        lease.profile.classify_status(status, retry_after, &body),
    )
}

/// The start of an error reply, read for at most `timeout` (and never more
/// than the error-body cap of time and size).
async fn read_error_body<S: UpstreamBody>(
    resp: awc::ClientResponse<S>,
    timeout: Duration,
) -> Bytes {
    let mut resp = resp.timeout(timeout.min(ERROR_BODY_TIMEOUT));
    // The start of a long body is kept (the message is there), not dropped.
    let mut buf = BytesMut::new();
    while let Some(Ok(chunk)) = resp.next().await {
        let room = ERROR_BODY_LIMIT - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    buf.freeze()
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An HTTP/1.1 reply with neither a length nor chunked encoding, whose body
/// would end when the server closes the connection (RFC 9112 6.3). awc
/// (actix-http's decoder) reads such a body as empty, so it is refused with
/// a message that says why rather than as an empty or broken reply. It is
/// the server's way of answering, so the account rests (cooldown) and a pool
/// request moves on.
fn close_delimited<S>(resp: &awc::ClientResponse<S>, account: &str) -> Option<GatewayError> {
    // actix-http reads `Transfer-Encoding: identity` without a length as
    // an empty body too: only a length or chunked encoding frames it.
    let chunked = resp.headers().get_all(header::TRANSFER_ENCODING).any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
    });
    let framed = resp.headers().contains_key(header::CONTENT_LENGTH) || chunked;
    (resp.version() == actix_web::http::Version::HTTP_11 && !framed).then(|| {
        GatewayError::upstream(
            account,
            UpstreamFault::ServerError {
                status: resp.status().as_u16(),
                message: "the reply has neither Content-Length nor chunked encoding (a body \
                          ended by closing the connection), which the gateway's HTTP client \
                          cannot read; the upstream must send one of them"
                    .into(),
            },
        )
    })
}

fn body_error(account: &str, e: PayloadError, limit: usize, timeout: Duration) -> GatewayError {
    let fault = match e {
        PayloadError::Overflow => {
            UpstreamFault::InvalidResponse(format!("reply larger than {limit} bytes"))
        }
        PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            UpstreamFault::Timeout(timeout)
        }
        // Nothing has reached the client yet: like a stream that broke
        // before its first event, this is the account's connection failing
        // (cooldown, and a pool request moves to another account).
        other => UpstreamFault::Unreachable(format!("the reply broke off before its end: {other}")),
    };
    GatewayError::upstream(account, fault)
}

/// A non-stream completion: checked for iFlow's "200 with an error body",
/// shaped, and sent whole.
pub async fn complete<S: UpstreamBody>(
    resp: awc::ClientResponse<S>,
    lease: Lease,
    opts: &RelayOptions,
    meter: Meter,
) -> Result<HttpResponse, GatewayError> {
    match complete_reply(resp, lease, opts).await {
        Ok((response, usage)) => {
            meter.finish(true, usage.as_ref());
            Ok(response)
        }
        Err(e) => {
            meter.finish(false, None);
            Err(e)
        }
    }
}

async fn complete_reply<S: UpstreamBody>(
    resp: awc::ClientResponse<S>,
    lease: Lease,
    opts: &RelayOptions,
) -> Result<(HttpResponse, Option<Value>), GatewayError> {
    if !resp.status().is_success() {
        return Err(fail_with_status(resp, &lease, opts.body_timeout).await);
    }
    if let Some(e) = close_delimited(&resp, &lease.account_label) {
        return Err(e);
    }
    // awc ends a body cut short by a closed connection as if it were
    // complete; an unencoded body can be checked against its length.
    let declared: Option<usize> = match resp.headers().get(header::CONTENT_ENCODING) {
        Some(e) if e.as_bytes() != b"identity" => None,
        _ => header_text(resp.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
    };
    let mut resp = resp.timeout(opts.body_timeout);
    let account = &lease.account_label;
    let body = resp
        .body()
        .limit(opts.max_response_bytes)
        .await
        .map_err(|e| body_error(account, e, opts.max_response_bytes, opts.body_timeout))?;
    if let Some(len) = declared.filter(|len| body.len() < *len) {
        return Err(GatewayError::upstream(
            account,
            UpstreamFault::Unreachable(format!(
                "the reply broke off after {} of {len} bytes",
                body.len()
            )),
        ));
    }
    drop(lease.permit);
    if matches!(opts.format, ReplyFormat::OpenAi { .. })
        && opts.preserve_reasoning
        && let Some(usage) = plain_success(&body)
    {
        // Nothing to change: the upstream's bytes go out as they came.
        let response = HttpResponse::Ok()
            .content_type("application/json")
            .body(body);
        return Ok((response, Some(usage)));
    }
    let mut reply: Value = serde_json::from_slice(&body).map_err(|e| {
        GatewayError::upstream(
            account,
            UpstreamFault::InvalidResponse(format!("reply is not JSON: {e}")),
        )
    })?;
    if let Some(fault) = lease.profile.classify_body(&reply) {
        return Err(GatewayError::upstream(account, fault));
    }
    let has_choices = reply
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    if !has_choices {
        return Err(GatewayError::upstream(
            account,
            UpstreamFault::InvalidResponse("reply has no choices".into()),
        ));
    }
    let usage = reply.get("usage").filter(|u| !u.is_null()).cloned();
    let reply = match &opts.format {
        ReplyFormat::OpenAi { .. } => {
            normalize::completion(&mut reply, opts.preserve_reasoning);
            reply
        }
        ReplyFormat::Anthropic(echo) => anthropic::response::message(&reply, echo),
    };
    let bytes = crate::json::to_vec(&reply, body.len() + 256);
    let response = HttpResponse::Ok()
        .content_type("application/json")
        .body(bytes);
    Ok((response, usage))
}

/// The fields of a completion that decide whether it can pass untouched.
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(default)]
    usage: Option<Value>,
    status: Option<serde::de::IgnoredAny>,
    error_code: Option<serde::de::IgnoredAny>,
    msg: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    error: Option<Value>,
}

/// A reply with choices, a usage object and no trace of an error body
/// needs no rewriting; returns its usage. Anything else takes the full path
/// (error classification, zero usage), so this only skips work.
fn plain_success(body: &[u8]) -> Option<Value> {
    let probe: Probe = serde_json::from_slice(body).ok()?;
    let clean = probe.status.is_none()
        && probe.error_code.is_none()
        && probe.msg.is_none()
        && probe.error.as_ref().is_none_or(Value::is_null)
        && probe.choices.as_ref().is_some_and(|c| !c.is_empty());
    probe.usage.filter(|u| clean && u.is_object())
}

/// A stream: the reply head is checked now (so an error still gets a proper
/// status), then the response body relays the events.
pub async fn stream<S: UpstreamBody>(
    resp: awc::ClientResponse<S>,
    lease: Lease,
    opts: RelayOptions,
    meter: Meter,
) -> Result<HttpResponse, GatewayError> {
    if !resp.status().is_success() {
        meter.finish(false, None);
        return Err(fail_with_status(resp, &lease, opts.body_timeout).await);
    }
    if let Some(e) = close_delimited(&resp, &lease.account_label) {
        meter.finish(false, None);
        return Err(e);
    }
    let content_type = header_text(resp.headers(), header::CONTENT_TYPE)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let is_stream = ["text/event-stream", "application/octet-stream"]
        .iter()
        .any(|t| content_type.trim_start().starts_with(t));
    if !is_stream {
        // iFlow answers some failures with a JSON body and status 200 even to a
        // stream request, not always labelled as JSON; the official client
        // would show an empty stream (protocol 7.3).
        let account = lease.account_label.clone();
        let body = read_error_body(resp, opts.body_timeout).await;
        let fault = crate::openai::sse::parse_event(&body)
            .and_then(|v| lease.profile.classify_body(&v))
            .unwrap_or_else(|| {
                let got = match content_type.split(';').next().map(str::trim) {
                    Some(t) if !t.is_empty() => t.to_string(),
                    _ => "no content type".to_string(),
                };
                UpstreamFault::InvalidResponse(format!("expected an event stream, got {got}"))
            });
        meter.finish(false, None);
        return Err(GatewayError::upstream(&account, fault));
    }

    // Look at the first event before answering: an error sent as the first
    // event still gets a proper status (and a failover), since the client
    // has received nothing yet.
    let mut resp = resp;
    let first = match first_look(&mut resp, &lease, &opts).await {
        Ok(first) => first,
        Err(e) => {
            meter.finish(false, None);
            return Err(e);
        }
    };
    let timing = sse_body::Timing {
        idle_timeout: opts.idle_timeout,
        keepalive: opts.keepalive,
    };
    let body = sse_body::SseBody::new(
        resp,
        lease,
        &opts.format,
        opts.preserve_reasoning,
        timing,
        meter,
        first,
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// The event shaper for the client's API.
fn shaper_for(
    format: &ReplyFormat,
    profile: crate::profile::Profile,
    preserve_reasoning: bool,
) -> Box<dyn EventShaper> {
    match format {
        ReplyFormat::OpenAi { wants_usage } => {
            Box::new(StreamShaper::new(profile, preserve_reasoning, *wants_usage))
        }
        ReplyFormat::Anthropic(echo) => {
            Box::new(anthropic::stream::MessageStream::new(profile, echo.clone()))
        }
    }
}

/// How long to wait for the first event before answering anyway (a silent
/// upstream then gets keep-alives, not a client waiting for headers).
const FIRST_EVENT_WAIT: Duration = Duration::from_secs(2);

/// Reads until the first complete event (or the wait, or the end) and
/// refuses the stream if that event is an upstream error.
async fn first_look<S: UpstreamBody>(
    upstream: &mut S,
    lease: &Lease,
    opts: &RelayOptions,
) -> Result<sse_body::Start, GatewayError> {
    let account = &lease.account_label;
    let mut look = sse_body::Start {
        decoder: SseDecoder::new(opts.max_response_bytes),
        items: Vec::new(),
        ended: false,
        heard: tokio::time::Instant::now(),
    };
    let deadline = tokio::time::Instant::now() + FIRST_EVENT_WAIT.min(opts.keepalive);
    while look.items.is_empty() {
        match tokio::time::timeout_at(deadline, upstream.next()).await {
            Err(_) => break,
            Ok(None) => {
                look.ended = true;
                break;
            }
            Ok(Some(Err(e))) => {
                return Err(GatewayError::upstream(
                    account,
                    UpstreamFault::Unreachable(format!(
                        "the stream broke before its first event: {e}"
                    )),
                ));
            }
            Ok(Some(Ok(bytes))) => {
                look.heard = tokio::time::Instant::now();
                look.decoder.feed(&bytes).map_err(|e| {
                    GatewayError::upstream(account, UpstreamFault::InvalidResponse(e.to_string()))
                })?;
                while let Some(item) = look.decoder.next_item() {
                    look.items.push(item);
                }
            }
        }
    }
    if look.ended && look.items.is_empty() {
        // A last line without its newline still counts as an event; an
        // upstream that ended without any has failed like a broken
        // connection, and the client has received nothing yet.
        match look.decoder.finish() {
            Some(item) => look.items.push(item),
            None => {
                return Err(GatewayError::upstream(
                    account,
                    UpstreamFault::Unreachable("the stream ended before its first event".into()),
                ));
            }
        }
    }
    if let Some(SseItem::Data(payload)) = look.items.first()
        && !crate::openai::stream::mentions_choices(payload)
        && let Some(fault) =
            crate::openai::sse::parse_event(payload).and_then(|v| lease.profile.classify_body(&v))
    {
        return Err(GatewayError::upstream(account, fault));
    }
    Ok(look)
}
