//! `token list`: every account file, as a table or as JSON. It only reads:
//! the refresh locks are tried without waiting, and a file that cannot be
//! read gets a row of its own (state `unreadable`) and is never opened for
//! writing.

use super::TokenError;
use crate::actors::registry::{
    AccountRegistry, AccountSummary, ListAccounts, ListUnreadable, RefreshingNow,
};
use crate::cli::Cli;
use crate::store::AccountState;
use actix::Addr;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;

/// Longest reason the table shows for an unreadable file (JSON has it all).
const REASON_WIDTH: usize = 72;

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
    if a.refresh_due(lead, now) {
        "expiring"
    } else {
        "active"
    }
}

fn time_text(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

/// The reason cut to one short line for the table.
fn short(reason: &str) -> String {
    let line = reason.lines().next().unwrap_or_default();
    if line.chars().count() <= REASON_WIDTH {
        return line.to_string();
    }
    let cut: String = line.chars().take(REASON_WIDTH - 1).collect();
    format!("{cut}…")
}

pub(super) async fn run(
    registry: &Addr<AccountRegistry>,
    cli: &Cli,
    as_json: bool,
) -> Result<(), TokenError> {
    let gone = |_| TokenError::Registry;
    let accounts = registry.send(ListAccounts).await.map_err(gone)?;
    let unreadable = registry.send(ListUnreadable).await.map_err(gone)?;
    let refreshing = registry.send(RefreshingNow).await.map_err(gone)?;
    let now = Utc::now();
    let lead = cli.refresh.refresh_lead;
    let state = |s: &AccountSummary| state_of(s, lead, now, refreshing.contains(&s.account.uuid));
    if as_json {
        let mut rows: Vec<Value> = accounts
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
        rows.extend(unreadable.iter().map(|(uuid, reason)| {
            json!({
                "uuid": uuid,
                "auth_type": null,
                "api_key": null,
                "base_url": null,
                "oauth_expires_at": null,
                "state": "unreadable",
                "error": reason,
                "cooldown_until": null,
                "models": null,
                "request_count": null,
                "last_used_at": null,
                "created_at": null,
            })
        }));
        say!("{}", Value::Array(rows));
        return Ok(());
    }
    if accounts.is_empty() && unreadable.is_empty() {
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
    for (uuid, reason) in &unreadable {
        // Nothing in the file can be trusted: only the name and why.
        let line = format!(
            "{uuid:<36}  {:<11}  {:<12}  {:<16}  {:<11}  {}",
            "",
            "",
            "",
            "unreadable",
            short(reason)
        );
        say!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_to_one_short_line() {
        assert_eq!(
            short("expected value at line 1 column 1"),
            "expected value at line 1 column 1"
        );
        let long = "x".repeat(200) + "\nsecond line";
        let cut = short(&long);
        assert_eq!(cut.chars().count(), REASON_WIDTH);
        assert!(cut.ends_with('…') && !cut.contains('\n'), "{cut}");
    }
}
