//! `key …` commands: gateway keys, through the same registry the server uses.

use super::token::open_registry;
use super::{Cli, KeyCommand};
use crate::actors::registry::{CreateKey, ListKeys, RevokeKey, UnreadableKeys};
use crate::store::{GatewayKey, KeySpec, StoreError};
use chrono::Utc;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the account registry stopped unexpectedly")]
    Registry,
}

pub async fn run(cmd: KeyCommand, cli: &Cli) -> Result<(), KeyError> {
    let registry = open_registry(cli)?;
    match cmd {
        KeyCommand::Create {
            name,
            models,
            max_concurrency,
            expires_in,
            admin,
        } => {
            let spec = KeySpec {
                name,
                admin,
                allowed_models: models
                    .into_iter()
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect(),
                max_concurrency,
                expires_at: expires_in
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .and_then(|d| Utc::now().checked_add_signed(d)),
            };
            let (key, plain) = registry
                .send(CreateKey(spec))
                .await
                .map_err(|_| KeyError::Registry)??;
            say!("created {} {}", key.id, describe(&key));
            say!();
            say!("  {}", plain.expose());
            say!();
            say!("This is the only time the key is shown; only its hash is stored.");
        }
        KeyCommand::List { json } => {
            let keys = registry
                .send(ListKeys)
                .await
                .map_err(|_| KeyError::Registry)?;
            let unreadable = registry
                .send(UnreadableKeys)
                .await
                .map_err(|_| KeyError::Registry)?;
            if json {
                let mut rows: Vec<_> = keys.iter().map(row).collect();
                rows.extend(unreadable.iter().map(|(file, reason)| {
                    json!({ "file": file, "state": "unreadable", "error": reason })
                }));
                say!("{}", serde_json::Value::Array(rows));
            } else if keys.is_empty() && unreadable.is_empty() {
                say!("no keys yet: create one with `iflow-actix key create --name NAME`");
            } else {
                say!(
                    "{:<16}  {:<14}  {:<8}  {:<20}  DETAILS",
                    "ID",
                    "KEY",
                    "STATE",
                    "NAME"
                );
                for k in &keys {
                    say!(
                        "{:<16}  {:<14}  {:<8}  {:<20}  {}",
                        k.id,
                        format!("{}…", k.prefix),
                        state(k),
                        k.name,
                        describe(k)
                    );
                }
                // Files that are not keys, so that nobody takes the list
                // for complete.
                for (file, reason) in &unreadable {
                    say!(
                        "{:<16}  {:<14}  {:<8}  {:<20}  {reason}",
                        file.strip_suffix(".json").unwrap_or(file),
                        "-",
                        "unreadable",
                        ""
                    );
                }
            }
        }
        KeyCommand::Revoke { id } => {
            let asked = chrono::Utc::now();
            let key = registry
                .send(RevokeKey(id))
                .await
                .map_err(|_| KeyError::Registry)??;
            // Revoking keeps the first revocation time.
            match key.revoked_at.filter(|at| *at < asked) {
                Some(at) => say!(
                    "{} ({}…) was already revoked on {}",
                    key.id,
                    key.prefix,
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => say!("revoked {} ({}…)", key.id, key.prefix),
            }
        }
    }
    Ok(())
}

fn state(k: &GatewayKey) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if !k.is_usable(Utc::now()) {
        "expired"
    } else {
        "active"
    }
}

fn describe(k: &GatewayKey) -> String {
    let mut parts = Vec::new();
    if k.admin {
        parts.push("admin".to_string());
    }
    if !k.allowed_models.is_empty() {
        parts.push(format!("models {}", k.allowed_models.join(",")));
    }
    if let Some(n) = k.max_concurrency {
        parts.push(format!("max {n} at once"));
    }
    if let Some(t) = k.expires_at {
        parts.push(format!("expires {}", t.format("%Y-%m-%d %H:%M")));
    }
    if parts.is_empty() {
        "(all models, no limits)".into()
    } else {
        format!("({})", parts.join("; "))
    }
}

fn row(k: &GatewayKey) -> serde_json::Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "state": state(k),
        "admin": k.admin,
        "allowed_models": k.allowed_models,
        "max_concurrency": k.max_concurrency,
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
        "created_at": k.created_at,
    })
}
