//! `token …` commands. They drive the same `AccountRegistry` actor the
//! server uses, inside a short-lived actix system: one code path for both.

#![allow(clippy::print_stdout)]

use super::TokenCommand;
use crate::actors::registry::{
    AccountRegistry, AccountSummary, ImportKey, ListAccounts, RegistrySettings,
};
use crate::secret::Secret;
use crate::store::{AccountStore, AuthType, StoreError};
use actix::{Actor, Addr};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("the account registry stopped unexpectedly")]
    Registry,
}

/// Refresh lead used to call an OAuth token "expiring".
const EXPIRING_WITHIN: chrono::Duration = chrono::Duration::hours(24);

pub async fn run(cmd: TokenCommand, data_dir: &Path) -> Result<(), TokenError> {
    let registry = open_registry(data_dir)?;
    match cmd {
        TokenCommand::List { json } => list(&registry, json).await,
        TokenCommand::Import {
            api_key,
            base_url,
            kind,
        } => import_key(&registry, api_key, base_url, &kind).await,
    }
}

fn open_registry(data_dir: &Path) -> Result<Addr<AccountRegistry>, TokenError> {
    let store = AccountStore::open(data_dir)?;
    let registry = AccountRegistry::new(
        store,
        RegistrySettings {
            concurrency: 1,
            queue_size: 0,
            queue_timeout: Duration::from_secs(1),
            flush_interval: None,
            rescan_interval: None,
        },
    )?;
    Ok(registry.start())
}

async fn import_key(
    registry: &Addr<AccountRegistry>,
    api_key: String,
    base_url: String,
    kind: &str,
) -> Result<(), TokenError> {
    let api_key = api_key.trim().to_string();
    if api_key.is_empty() {
        return Err(TokenError::Invalid("the API key is empty".into()));
    }
    let base_url = base_url.trim().trim_end_matches('/').to_string();
    match url::Url::parse(&base_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(TokenError::Invalid(format!(
                "--base-url {base_url:?} is not an http(s) URL"
            )));
        }
    }
    let auth_type = if kind == "openai" {
        AuthType::OpenAi
    } else {
        AuthType::Iflow
    };
    let (summary, created) = registry
        .send(ImportKey {
            api_key: Secret::new(api_key),
            base_url,
            auth_type,
        })
        .await
        .map_err(|_| TokenError::Registry)??;
    let a = &summary.account;
    println!(
        "{} account {} ({}, key {}, {})",
        if created { "added" } else { "updated" },
        a.uuid,
        a.auth_type,
        a.api_key.masked(),
        a.base_url
    );
    println!("use it with: Authorization: Bearer {}", a.uuid);
    Ok(())
}

/// The account's state as `token list` shows it.
pub fn state_of(summary: &AccountSummary, now: DateTime<Utc>) -> &'static str {
    let a = &summary.account;
    if a.auth_type != AuthType::OAuthIflow {
        return "active";
    }
    match a.oauth_expires_at {
        Some(t) if t <= now => "expired",
        Some(t) if t - now < EXPIRING_WITHIN => "expiring",
        _ => "active",
    }
}

fn time_text(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

async fn list(registry: &Addr<AccountRegistry>, as_json: bool) -> Result<(), TokenError> {
    let accounts = registry
        .send(ListAccounts)
        .await
        .map_err(|_| TokenError::Registry)?;
    let now = Utc::now();
    if as_json {
        let rows: Vec<_> = accounts
            .iter()
            .map(|s| {
                let a = &s.account;
                json!({
                    "uuid": a.uuid,
                    "auth_type": a.auth_type.as_str(),
                    "api_key": a.api_key.masked(),
                    "base_url": a.base_url,
                    "oauth_expires_at": a.oauth_expires_at,
                    "state": state_of(s, now),
                    "request_count": a.request_count,
                    "last_used_at": a.last_used_at,
                    "created_at": a.created_at,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if accounts.is_empty() {
        println!("no accounts yet: add one with `iflow-actix token import --api-key sk-…`");
        return Ok(());
    }
    println!(
        "{:<36}  {:<11}  {:<12}  {:<16}  {:<8}  {:>8}  {:<16}",
        "UUID", "AUTH", "KEY", "TOKEN EXPIRES", "STATE", "REQUESTS", "LAST USED"
    );
    for s in &accounts {
        let a = &s.account;
        println!(
            "{:<36}  {:<11}  {:<12}  {:<16}  {:<8}  {:>8}  {:<16}",
            a.uuid,
            a.auth_type.as_str(),
            a.api_key.masked(),
            time_text(a.oauth_expires_at),
            state_of(s, now),
            a.request_count,
            time_text(a.last_used_at)
        );
    }
    Ok(())
}
