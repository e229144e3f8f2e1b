//! Runs one chat request on its account or on the pool: admission, the
//! profile's body rules, the upstream call and the relay. A pool request
//! that hits an account-level failure before any byte reached the client
//! moves to another account (bounded attempts). Every failure updates the
//! account's health: a cooldown for rate limits and upstream trouble, a
//! quarantine for a refused key, one refresh-and-retry for an OAuth key.

use super::auth::tag;
use super::meter::Meter;
use super::relay::ReplyFormat;
use super::{AppState, client, relay};
use crate::actors::refresher::RefreshAccount;
use crate::actors::registry::{
    AccountHandle, Lookup, PlaceActors, Principal, SetCooldown, SetState,
};
use crate::actors::scheduler::{Pick, PoolAdmission};
use crate::actors::upstream::{Acquire, Admission, Lease, Sign, UpstreamActor};
use crate::error::GatewayError;
use crate::openai::ChatRequest;
use crate::profile::{Profile, Verdict};
use crate::store::{AccountState, AuthType};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a request waits for the refresh its key error triggered.
const REFRESH_WAIT: Duration = Duration::from_secs(60);

pub struct ChatJob {
    pub principal: Principal,
    pub chat: ChatRequest,
    /// The client's API: OpenAI chat (`None`) or Anthropic messages, with
    /// what the Anthropic reply repeats from the request.
    pub anthropic: Option<crate::anthropic::Echo>,
    /// Conversation key for pool stickiness.
    pub affinity: Option<String>,
    pub received: Instant,
}

/// The ledger's key column for requests that named their account.
fn pinned_key() -> Arc<str> {
    static PINNED: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    PINNED.get_or_init(|| Arc::from("-")).clone()
}

/// The conversation a request belongs to, for pool stickiness: the
/// `x-session-id` header, else the OpenAI `user` field (which Anthropic's
/// `metadata.user_id` becomes).
pub fn affinity(req: &HttpRequest, chat: &ChatRequest) -> Option<String> {
    let usable = |s: &&str| !s.is_empty() && s.len() <= 256;
    req.headers()
        .get("x-session-id")
        .and_then(|v| v.to_str().ok())
        .filter(usable)
        .or_else(|| {
            chat.body
                .get("user")
                .and_then(serde_json::Value::as_str)
                .filter(usable)
        })
        .map(str::to_string)
}

pub async fn run(
    req: &HttpRequest,
    state: &AppState,
    http: &awc::Client,
    job: ChatJob,
) -> Result<HttpResponse, GatewayError> {
    let ChatJob {
        principal,
        chat,
        anthropic,
        affinity,
        received,
    } = job;
    let model: Arc<str> = Arc::from(chat.model.as_str());
    tag(req, None, Some(&model));
    let (key_id, key_permit): (Arc<str>, _) = match &principal {
        Principal::Key(k) => {
            if !k.key.allows_model(&model) {
                return Err(GatewayError::Forbidden(format!(
                    "this key may not use model {model:?}"
                )));
            }
            let permit = match &k.slots {
                Some(slots) => Some(Arc::new(slots.clone().try_acquire_owned().map_err(
                    |_| GatewayError::KeyBusy {
                        limit: k.key.max_concurrency.unwrap_or(1),
                    },
                )?)),
                None => None,
            };
            (k.id.clone(), permit)
        }
        Principal::Account(_) => (pinned_key(), None),
    };
    let pool = matches!(principal, Principal::Key(_));
    let deadline = state.config.failover_deadline;
    let max_attempts = if pool {
        state.config.failover_attempts
    } else {
        1
    };
    // The Anthropic translation adds a field only the iFlow profile takes
    // (the thinking signature).
    let translated = anthropic.is_some();
    let format = match anthropic {
        Some(echo) => ReplyFormat::Anthropic(echo),
        None => ReplyFormat::OpenAi {
            wants_usage: chat.wants_stream_usage,
        },
    };
    let mut bodies: Vec<((Profile, AuthType), Bytes, Arc<str>)> = Vec::new();
    let mut exclude: Vec<Arc<str>> = Vec::new();
    let mut refreshed: Vec<Arc<str>> = Vec::new();
    let mut attempts = 0;
    let mut last: Option<GatewayError> = None;

    loop {
        // The first attempt's clock starts when the request arrived; a
        // failover's when it begins, so overhead is not counted twice.
        let attempt_started = if attempts == 0 {
            received
        } else {
            Instant::now()
        };
        let admitted = match &principal {
            Principal::Account(h) => admit_pinned(state, h, chat.starts_turn)
                .await
                .map(|(lease, waited)| (h.clone(), lease, waited)),
            Principal::Key(_) => {
                let admit = admit_pool(
                    state,
                    &model,
                    affinity.as_deref(),
                    &exclude,
                    chat.starts_turn,
                );
                if last.is_none() {
                    admit.await
                } else {
                    // A failover waits for another account only until the
                    // deadline; then the client gets the last error (below).
                    let left = deadline.saturating_sub(received.elapsed());
                    actix_web::rt::time::timeout(left, admit)
                        .await
                        .unwrap_or_else(|_| {
                            let why = format!(
                                "failover deadline ({deadline:?}) passed while waiting for another account"
                            );
                            log::warn!("{why}");
                            Err(GatewayError::Unavailable(why))
                        })
                }
            }
        };
        let (handle, lease, queue_wait) = match admitted {
            Ok(admitted) => admitted,
            // After a failover, the upstream's own error says more than
            // "no other account is free".
            Err(e) => return Err(last.unwrap_or(e)),
        };
        if last.is_some() {
            // Another account took the request after a failure.
            state.metrics.failover();
        }
        tag(req, Some(handle.label.clone()), None);
        let (body, sent_model) = body_for(&mut bodies, &chat, &lease, translated);
        let run = state
            .telemetry
            .as_ref()
            .map(|t| t.start(http, &lease.headers, &sent_model, &tool_name(&chat)));
        handle.usage.record();
        let meter = Meter::new(
            state.metrics.clone(),
            state.ledger.clone(),
            handle.id.clone(),
            key_id.clone(),
            model.clone(),
            attempt_started,
            queue_wait,
            key_permit.clone(),
        );
        attempts += 1;
        let result = forward(state, http, lease, chat.stream, format.clone(), body, meter).await;
        if let Some(run) = run {
            match &result {
                // The official client reports a finished run only for
                // non-stream replies.
                Ok(_) if !chat.stream => run.finished(http),
                Ok(_) => {}
                // The upstream's fault, without the gateway's account label:
                // the collector is a third party.
                Err(e) => run.failed(
                    http,
                    &e.fault().map_or_else(|| e.to_string(), ToString::to_string),
                ),
            }
        }
        let err = match result {
            Ok(response) => {
                handle.health.record_success();
                if handle.health.key_refused() {
                    // The key works again: forget the refusal, here and on disk.
                    handle.health.forgive_key();
                    if handle.health.marked_key_invalid() {
                        state.registry.do_send(SetState {
                            uuid: handle.id.to_string(),
                            state: None,
                        });
                    }
                }
                return Ok(response);
            }
            Err(e) => e,
        };
        let Some(fault) = err.fault() else {
            return Err(err);
        };
        match fault.verdict() {
            Verdict::RequestLevel => return Err(err),
            Verdict::Quarantine | Verdict::KeyExpired
                if handle.auth_type == AuthType::OAuthIflow && !refreshed.contains(&handle.id) =>
            {
                refreshed.push(handle.id.clone());
                if !handle.health.take_refusal_refresh(chrono::Utc::now()) {
                    log::warn!(
                        "account {}: key refused again less than a minute after a refresh \
                         for a refusal; not refreshing again yet",
                        handle.label
                    );
                } else if refresh(state, &handle).await {
                    // Same request again with the new key; not a failover.
                    attempts -= 1;
                    continue;
                }
                refuse(state, &handle, false);
            }
            Verdict::Quarantine | Verdict::KeyExpired => refuse(state, &handle, true),
            Verdict::CoolDown(retry_after) => {
                cool_down(state, &handle, retry_after, fault_reason(&err))
            }
        }
        if pool && attempts < max_attempts {
            if received.elapsed() >= deadline {
                log::warn!(
                    "account {}: {err}; failover deadline ({deadline:?}) passed, giving up",
                    handle.label
                );
                return Err(err);
            }
            log::warn!(
                "account {}: {err}; looking for another account",
                handle.label
            );
            exclude.push(handle.id.clone());
            last = Some(err);
            continue;
        }
        return Err(err);
    }
}

/// The rewritten body for the lease's profile (made once per profile), and
/// the model name it carries. `translated`: the body was made from an
/// Anthropic request.
fn body_for(
    bodies: &mut Vec<((Profile, AuthType), Bytes, Arc<str>)>,
    chat: &ChatRequest,
    lease: &Lease,
    translated: bool,
) -> (Bytes, Arc<str>) {
    let slot = (lease.profile, lease.credentials_auth);
    if let Some((_, body, model)) = bodies.iter().find(|(k, _, _)| *k == slot) {
        return (body.clone(), model.clone());
    }
    let mut body = chat.body.clone();
    lease.profile.rewrite_body(
        &mut body,
        lease.credentials_auth,
        chat.stream,
        chat.thinking,
    );
    if translated && lease.profile == Profile::OpenAi {
        crate::anthropic::request::drop_thinking_signature(&mut body);
    }
    let model: Arc<str> = Arc::from(
        body.get("model")
            .and_then(|m| m.as_str())
            .unwrap_or_default(),
    );
    // The rules add a few short fields at most: the client's length plus a
    // margin is enough room to write the body without growing the buffer.
    let body = serde_json::Value::Object(body);
    let bytes = Bytes::from(crate::json::to_vec(&body, chat.size_hint + 256));
    bodies.push((slot, bytes.clone(), model.clone()));
    (bytes, model)
}

/// The tool whose result is the last message, by the id of its call.
fn tool_name(chat: &ChatRequest) -> String {
    let Some(serde_json::Value::Array(messages)) = chat.body.get("messages") else {
        return String::new();
    };
    let Some(last) = messages.last().filter(|m| m["role"] == "tool") else {
        return String::new();
    };
    let id = &last["tool_call_id"];
    messages
        .iter()
        .rev()
        .filter_map(|m| m["tool_calls"].as_array())
        .flatten()
        .find(|call| &call["id"] == id)
        .and_then(|call| call["function"]["name"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Sends one upstream call and relays its reply in the client's format.
async fn forward(
    state: &AppState,
    http: &awc::Client,
    mut lease: Lease,
    stream: bool,
    format: ReplyFormat,
    body: Bytes,
    mut meter: Meter,
) -> Result<HttpResponse, GatewayError> {
    let cfg = &state.config;
    let mut request = match &lease.uri {
        Some(uri) => http.post(uri.clone()),
        None => http.post(&*lease.url),
    };
    // Into the request's own map: `insert_header` would move the whole
    // request in and out once per header.
    let headers = request.headers_mut();
    for (name, value) in std::mem::take(&mut lease.headers) {
        headers.insert(name, value);
    }
    meter.sent();
    let response = match request.send_body(body).await {
        Ok(response) => response,
        Err(e) => {
            meter.finish(false, None);
            return Err(client::send_error(
                &lease.account_label,
                e,
                cfg.upstream_timeout,
            ));
        }
    };
    meter.head();
    let opts = relay::RelayOptions {
        format,
        preserve_reasoning: cfg.preserve_reasoning_content,
        max_response_bytes: cfg.max_response_bytes,
        idle_timeout: cfg.stream_idle_timeout,
        keepalive: cfg.sse_keepalive,
        body_timeout: cfg.upstream_timeout,
    };
    if stream {
        relay::stream(response, lease, opts, meter).await
    } else {
        relay::complete(response, lease, &opts, meter).await
    }
}

/// A slot on a named account, waiting in its queue if it is busy. Cooldown
/// and quarantine steer the pool only: a request that names its account goes
/// there, and the upstream's answer is passed on as it is.
async fn admit_pinned(
    state: &AppState,
    account: &AccountHandle,
    starts_turn: bool,
) -> Result<(Lease, Duration), GatewayError> {
    let started = Instant::now();
    let mut upstream = account.upstream.clone();
    let mut replaced = false;
    loop {
        match acquire_from(&upstream, &account.label, starts_turn).await {
            Ok(admitted) => return admitted.map(|lease| (lease, started.elapsed())),
            Err(e) if replaced => return Err(actor_gone(state, e)),
            Err(_) => {
                // The actor stopped with its worker's thread (actix
                // restarted that worker, or it finished first at shutdown):
                // have it replaced, then ask the new one, once.
                replaced = true;
                let _ = state.registry.send(PlaceActors::near_me()).await;
                match state.directory.load().lookup(&account.id) {
                    Lookup::Account(handle) => upstream = handle.upstream.clone(),
                    _ => {
                        return Err(GatewayError::Unavailable(format!(
                            "account {} was removed",
                            account.label
                        )));
                    }
                }
            }
        }
    }
}

/// A slot and a signature from one account actor, after a wait in its
/// queue if it is busy. The outer error: the actor did not answer.
async fn acquire_from(
    upstream: &actix::Addr<UpstreamActor>,
    label: &str,
    starts_turn: bool,
) -> Result<Result<Lease, GatewayError>, actix::MailboxError> {
    let ticket = match upstream.send(Acquire { starts_turn }).await? {
        Ok(Admission::Ready(lease)) => return Ok(Ok(lease)),
        Ok(Admission::Queued(ticket)) => ticket,
        Err(refused) => return Ok(Err(refused)),
    };
    let permit = match ticket.wait(label).await {
        Ok(permit) => permit,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(upstream
        .send(Sign {
            permit,
            starts_turn,
        })
        .await?))
}

/// A slot on the best pool account, waiting in the pool queue if all are busy.
async fn admit_pool(
    state: &AppState,
    model: &str,
    affinity: Option<&str>,
    exclude: &[Arc<str>],
    starts_turn: bool,
) -> Result<(Arc<AccountHandle>, Lease, Duration), GatewayError> {
    let started = Instant::now();
    let mut exclude = exclude.to_vec();
    let mut replaced = false;
    loop {
        // Picked here while nobody waits; otherwise the scheduler decides
        // (and queues the request if every account is full).
        let (handle, permit) = match state.picker.pick_now(model, affinity, &exclude)? {
            Some(picked) => picked,
            None => {
                let admission = state
                    .scheduler
                    .send(Pick {
                        model: model.to_string(),
                        affinity: affinity.map(str::to_string),
                        exclude: exclude.clone(),
                    })
                    .await
                    .map_err(gone)??;
                match admission {
                    PoolAdmission::Ready(picked) => picked,
                    PoolAdmission::Queued(ticket) => ticket.wait().await?,
                }
            }
        };
        match handle
            .upstream
            .send(Sign {
                permit,
                starts_turn,
            })
            .await
        {
            Ok(lease) => return Ok((handle, lease, started.elapsed())),
            // Its actor stopped with its worker's thread, or the account was
            // deleted between the pick and the signature. The first time,
            // wait for the registry to replace stopped actors and pick
            // again (the same account may come back, with a new actor);
            // after that, leave the account out.
            Err(_) if !replaced => {
                replaced = true;
                let _ = state.registry.send(PlaceActors::near_me()).await;
            }
            Err(e) => {
                actor_gone(state, e);
                exclude.push(handle.id.clone());
            }
        }
    }
}

fn gone(e: actix::MailboxError) -> GatewayError {
    GatewayError::Unavailable(format!("an internal actor is unavailable: {e}"))
}

/// An account actor did not answer: it was retired, or it stopped with the
/// HTTP worker it lived on. The registry replaces the latter.
fn actor_gone(state: &AppState, e: actix::MailboxError) -> GatewayError {
    state.registry.do_send(PlaceActors::near_me());
    gone(e)
}

fn fault_reason(err: &GatewayError) -> &'static str {
    err.kind_and_code().1
}

fn cool_down(
    state: &AppState,
    handle: &AccountHandle,
    retry_after: Option<Duration>,
    reason: &'static str,
) {
    let until = handle
        .health
        .start_cooldown(&state.cooldown, retry_after, Utc::now());
    log::warn!(
        "account {}: cooling down until {} ({reason})",
        handle.label,
        until.to_rfc3339()
    );
    state.metrics.cooldown(reason);
    state.registry.do_send(SetCooldown {
        uuid: handle.id.to_string(),
        until,
    });
}

/// Keeps an account whose key was refused out until its credentials change.
/// `persist` records `key-invalid` on disk; an OAuth account whose refresh
/// failed is not marked, because the refresher records why (needs-login) and
/// a later successful refresh brings it back.
fn refuse(state: &AppState, handle: &AccountHandle, persist: bool) {
    log::warn!(
        "account {}: key refused upstream; out of the pool until its credentials change",
        handle.label
    );
    handle.health.refuse_key();
    state.metrics.cooldown("key_refused");
    if persist {
        state.registry.do_send(SetState {
            uuid: handle.id.to_string(),
            state: Some(AccountState::KeyInvalid),
        });
    }
}

/// Asks the refresher for new credentials; true when they arrived.
async fn refresh(state: &AppState, account: &AccountHandle) -> bool {
    let ask = state.refresher.send(RefreshAccount(account.id.to_string()));
    match tokio::time::timeout(REFRESH_WAIT, ask).await {
        Ok(Ok(Ok(_))) => true,
        Ok(Ok(Err(e))) => {
            log::warn!(
                "account {}: key refused and refresh failed: {e}",
                account.label
            );
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
