//! Runs baseline inputs through the real gateway binary against the
//! capturing server, and compares what arrived with the baselines: each
//! chat call, and in `official` mode the telemetry around it.

use super::capture::{CNA, CaptureServer};
use super::compare::{Captured, Difference, compare};
use super::dynamic::Facts;
use super::fixture::{ExpectedRequest, Fixture, TelemetryFixture};
use super::telemetry::{TelemetryResult, compare_group};
use crate::secret::Secret;
use crate::store::{Account, AccountStore, AuthType};
use process::{TempDir, post_chat, start_gateway};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

mod process;

/// How long the fire-and-forget telemetry of one request gets to arrive,
/// and the silence that ends a request's group.
const TELEMETRY_WAIT: Duration = Duration::from_secs(5);
const TELEMETRY_QUIET: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub description: String,
    /// What the official client sends for this input.
    pub baseline: ExpectedRequest,
    /// Baseline places that hold the client's own forwarded fields.
    pub forwarded: Vec<String>,
    /// The upstream request the gateway sent, if one arrived.
    pub captured: Option<Captured>,
    /// The status the gateway answered the client with.
    pub reply_status: Option<u16>,
    pub differences: Vec<Difference>,
    /// Why the case could not be compared.
    pub error: Option<String>,
}

/// What a replay produced: the chat cases, the telemetry sequences (in
/// `official` mode), and every request other than a chat call.
pub struct Replay {
    pub cases: Vec<CaseResult>,
    pub telemetry: Vec<TelemetryResult>,
    pub others: Vec<Captured>,
}

fn is_chat(r: &Captured) -> bool {
    r.path.ends_with("/chat/completions")
}

/// Replays `fixtures` through `gateway_bin` in `mode` (`off` or
/// `official`); in `official` mode the telemetry around each request is
/// compared with the `telemetry` sequences.
pub fn run(
    fixtures: &[Fixture],
    telemetry: &[TelemetryFixture],
    gateway_bin: &Path,
    mode: &str,
) -> Result<Replay, String> {
    let official = mode == "official";
    let capture = CaptureServer::start().map_err(|e| format!("capture server: {e}"))?;
    let dir = TempDir(
        std::env::temp_dir().join(format!("iflow-align-{}", uuid::Uuid::new_v4().simple())),
    );
    let accounts = create_accounts(fixtures, &dir.0, &capture.base_url())?;
    let gateway = start_gateway(gateway_bin, &dir.0, mode, &capture.base_url())?;
    let expected_count = |after: Option<&str>| -> usize {
        telemetry
            .iter()
            .filter(|t| t.after.as_deref() == after)
            .map(|t| t.requests.len())
            .sum()
    };

    // Start-up telemetry (the `cna` request) comes before any chat call.
    let mut seen = if official {
        capture.settle(expected_count(None), TELEMETRY_QUIET, TELEMETRY_WAIT)
    } else {
        0
    };
    let startup: Vec<Captured> = capture.requests().into_iter().take(seen).collect();
    let mut cases = Vec::new();
    let mut arrivals: Vec<Vec<Captured>> = Vec::new();
    for f in fixtures {
        let uuid = accounts
            .iter()
            .find(|(t, k, _)| *t == f.account.auth_type && *k == f.account.api_key)
            .map(|(_, _, u)| u.clone())
            .unwrap_or_default();
        if let Some(reply) = &f.upstream_reply {
            capture.answer_next_chat(reply.status, &reply.body);
        }
        let before = seen;
        let sent = post_chat(gateway.port, &uuid, &f.request);
        capture.forget_next_chat();
        let now_ms = chrono::Utc::now().timestamp_millis();
        seen = if official {
            let want = before + 1 + expected_count(Some(&f.name));
            capture.settle(want, TELEMETRY_QUIET, TELEMETRY_WAIT)
        } else {
            capture.requests().len()
        };
        let new: Vec<Captured> = capture
            .requests()
            .into_iter()
            .skip(before)
            .take(seen - before)
            .collect();
        let (chats, others): (Vec<Captured>, Vec<Captured>) = new.into_iter().partition(is_chat);
        let chat = chats.into_iter().next();
        cases.push(case_result(f, chat, sent, now_ms));
        arrivals.push(others);
    }
    if !official {
        // Anything sent late in `off` mode still has to show up below.
        capture.settle(0, TELEMETRY_QUIET, TELEMETRY_QUIET);
    }
    let installation_id = std::fs::read_to_string(dir.0.join("telemetry/installation_id")).ok();
    drop(gateway);

    let mut results = Vec::new();
    if official {
        for t in telemetry {
            let (arrived, chat) = match &t.after {
                None => (startup.clone(), None),
                Some(name) => {
                    let Some(i) = cases.iter().position(|c| &c.name == name) else {
                        // The case was not selected (`align diff --case`).
                        continue;
                    };
                    let chat = cases[i]
                        .captured
                        .as_ref()
                        .map(|c| (&fixtures[i].expected, c));
                    (std::mem::take(&mut arrivals[i]), chat)
                }
            };
            let facts = Facts {
                installation_id: installation_id.as_deref().map(str::trim),
                cna: Some(CNA),
                ..Facts::default()
            };
            results.push(compare_group(t, arrived, chat, facts));
        }
    }
    let others = capture
        .requests()
        .into_iter()
        .filter(|r| !is_chat(r))
        .collect();
    Ok(Replay {
        cases,
        telemetry: results,
        others,
    })
}

/// One account per distinct (auth type, key) of the fixtures, on the
/// capture server; returns (auth type, key, uuid).
fn create_accounts(
    fixtures: &[Fixture],
    data: &Path,
    capture: &str,
) -> Result<Vec<(String, String, String)>, String> {
    let store = AccountStore::open(data).map_err(|e| e.to_string())?;
    let mut accounts: Vec<(String, String, String)> = Vec::new();
    for f in fixtures {
        let known = accounts
            .iter()
            .any(|(t, k, _)| *t == f.account.auth_type && *k == f.account.api_key);
        if known {
            continue;
        }
        let auth: AuthType = f.account.auth_type.parse()?;
        let account = Account::new(
            Secret::new(f.account.api_key.clone()),
            format!("{capture}/v1"),
            auth,
            chrono::Utc::now(),
        );
        store.create(&account).map_err(|e| e.to_string())?;
        accounts.push((
            f.account.auth_type.clone(),
            f.account.api_key.clone(),
            account.uuid,
        ));
    }
    Ok(accounts)
}

fn case_result(
    f: &Fixture,
    chat: Option<Captured>,
    sent: Result<(u16, String), String>,
    now_ms: i64,
) -> CaseResult {
    let (reply_status, mut error) = match &sent {
        Err(e) => (None, Some(e.clone())),
        Ok((status, _)) if *status == f.reply_status => (Some(*status), None),
        Ok((status, reply)) => (
            Some(*status),
            Some(format!(
                "the gateway answered {status}, the case expects {}: {reply}",
                f.reply_status
            )),
        ),
    };
    let differences = match &chat {
        Some(captured) if sent.is_ok() => compare(f, captured, now_ms),
        _ => Vec::new(),
    };
    if chat.is_none() && error.is_none() {
        error = Some("no upstream request arrived".into());
    }
    CaseResult {
        name: f.name.clone(),
        description: f.description.clone(),
        baseline: f.expected.clone(),
        forwarded: f.forwarded.clone(),
        captured: chat,
        reply_status,
        differences,
        error,
    }
}
