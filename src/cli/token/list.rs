//! `token list`: every account, as a table or as JSON. It only reads: the
//! refresh locks are tried without waiting.

use super::TokenError;
use crate::actors::registry::{AccountRegistry, AccountSummary, ListAccounts, RefreshingNow};
use crate::cli::Cli;
use crate::store::{AccountState, AuthType};
use actix::Addr;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;

/// The account's state as `token list` shows it. `refreshing` (some process
/// holds the account's refresh lock) comes first: it says what is happening
/// now and ends by itself.
pub fn state_of(
    summary: &AccountSummary,
    lead: Duration,
    now: DateTime<Utc>,
    refreshing: bool,
) -> &'static str {
    let a = &summary.account;
    if refreshing {
        return "refreshing";
    }
    if let Some(state) = a.state {
        return match state {
            AccountState::NeedsLogin => "needs-login",
            AccountState::KeyInvalid => "key-invalid",
        };
    }
    if a.cooldown_until.is_some_and(|t| t > now) {
        return "cooldown";
    }
    let lead = chrono::Duration::from_std(lead).unwrap_or(chrono::Duration::MAX);
    match (a.auth_type, a.oauth_expires_at) {
        (AuthType::OAuthIflow, Some(t)) if t - now < lead => "expiring",
        _ => "active",
    }
}

fn time_text(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

pub(super) async fn run(
    registry: &Addr<AccountRegistry>,
    cli: &Cli,
    as_json: bool,
) -> Result<(), TokenError> {
    let gone = |_| TokenError::Registry;
    let accounts = registry.send(ListAccounts).await.map_err(gone)?;
    let refreshing = registry.send(RefreshingNow).await.map_err(gone)?;
    let now = Utc::now();
    let lead = cli.refresh.refresh_lead;
    let state = |s: &AccountSummary| state_of(s, lead, now, refreshing.contains(&s.account.uuid));
    if as_json {
        let rows: Vec<Value> = accounts
            .iter()
            .map(|s| {
                let a = &s.account;
                json!({
                    "uuid": a.uuid,
                    "auth_type": a.auth_type.as_str(),
                    "api_key": a.api_key.masked(),
                    "base_url": a.base_url,
                    "oauth_expires_at": a.oauth_expires_at,
                    "state": state(s),
                    "cooldown_until": a.cooldown_until,
                    "models": a.models,
                    "request_count": a.request_count,
                    "last_used_at": a.last_used_at,
                    "created_at": a.created_at,
                })
            })
            .collect();
        say!("{}", Value::Array(rows));
        return Ok(());
    }
    if accounts.is_empty() {
        say!("no accounts yet: add one with `iflow-actix token login` or `token import`");
        return Ok(());
    }
    let row = |cells: [&str; 7]| {
        let [uuid, auth, key, expires, state, requests, used] = cells;
        let line = format!(
            "{uuid:<36}  {auth:<11}  {key:<12}  {expires:<16}  {state:<11}  {requests:>8}  {used:<16}"
        );
        say!("{}", line.trim_end());
    };
    row([
        "UUID",
        "AUTH",
        "KEY",
        "TOKEN EXPIRES",
        "STATE",
        "REQUESTS",
        "LAST USED",
    ]);
    for s in &accounts {
        let a = &s.account;
        row([
            &a.uuid,
            a.auth_type.as_str(),
            &a.api_key.masked(),
            &time_text(a.oauth_expires_at),
            state(s),
            &a.request_count.to_string(),
            &time_text(a.last_used_at),
        ]);
    }
    Ok(())
}
