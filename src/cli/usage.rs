//! `usage`: the usage ledger written by the server, per account, key and model.

use super::Cli;
use super::token::open_registry;
use crate::actors::registry::{ListKeys, UsageReport};
use crate::store::{StoreError, UsageRow};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the account registry stopped unexpectedly")]
    Registry,
}

pub async fn run(cli: &Cli, json: bool) -> Result<(), UsageError> {
    let registry = open_registry(cli)?;
    let report = registry
        .send(UsageReport)
        .await
        .map_err(|_| UsageError::Registry)??;
    if json {
        say!(
            "{}",
            serde_json::json!({ "since": report.since, "rows": report.rows })
        );
        return Ok(());
    }
    if report.rows.is_empty() {
        say!("no usage recorded yet (the server writes it every IFLOW_USAGE_FLUSH_INTERVAL)");
        return Ok(());
    }
    if let Some(since) = report.since {
        say!("since {}", since.format("%Y-%m-%d %H:%M UTC"));
    }
    // Keys by id, with the name they were created with, where there is one.
    let names: HashMap<String, String> = registry
        .send(ListKeys)
        .await
        .map_err(|_| UsageError::Registry)?
        .into_iter()
        .filter(|k| !k.name.is_empty())
        .map(|k| (k.id, k.name))
        .collect();
    let key_label = move |r: &UsageRow| match names.get(&r.key) {
        Some(name) => format!("{} ({name})", r.key),
        None => r.key.clone(),
    };
    for (title, by) in [
        (
            "ACCOUNT",
            Box::new(|r: &UsageRow| r.account.clone()) as Box<dyn Fn(&UsageRow) -> String>,
        ),
        ("KEY", Box::new(key_label)),
        ("MODEL", Box::new(|r: &UsageRow| r.model.clone())),
    ] {
        let mut totals: BTreeMap<String, UsageRow> = BTreeMap::new();
        for row in &report.rows {
            totals.entry(by(row)).or_default().absorb(row);
        }
        say!();
        say!(
            "{title:<38}  {:>9}  {:>7}  {:>13}  {:>13}",
            "REQUESTS",
            "ERRORS",
            "PROMPT TOK",
            "OUTPUT TOK"
        );
        for (name, t) in totals {
            say!(
                "{name:<38}  {:>9}  {:>7}  {:>13}  {:>13}",
                t.requests,
                t.errors,
                t.prompt_tokens,
                t.completion_tokens
            );
        }
    }
    Ok(())
}
