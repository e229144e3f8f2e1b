//! Usage totals per (account, gateway key, model), in `<data>/usage/ledger.json`.
//! The server adds its in-memory deltas in batches under the directory lock,
//! so totals survive restarts and concurrent writers add up.

use super::StoreError;
use super::files::JsonDir;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

const LEDGER: &str = "ledger.json";

/// One line of the ledger. `key` is a gateway key id, or `-` for requests
/// that named an account directly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub account: String,
    pub key: String,
    pub model: String,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl UsageRow {
    fn same_slot(&self, other: &UsageRow) -> bool {
        self.account == other.account && self.key == other.key && self.model == other.model
    }

    /// Adds `delta`'s counters to this row.
    pub fn absorb(&mut self, delta: &UsageRow) {
        self.requests = self.requests.saturating_add(delta.requests);
        self.errors = self.errors.saturating_add(delta.errors);
        self.prompt_tokens = self.prompt_tokens.saturating_add(delta.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(delta.completion_tokens);
        self.last_used_at = self.last_used_at.max(delta.last_used_at);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageFile {
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub rows: Vec<UsageRow>,
}

impl UsageFile {
    /// Merges deltas into the totals.
    pub fn add(&mut self, deltas: &[UsageRow]) {
        for delta in deltas {
            match self.rows.iter_mut().find(|r| r.same_slot(delta)) {
                Some(row) => row.absorb(delta),
                None => self.rows.push(delta.clone()),
            }
        }
        self.rows
            .sort_by(|a, b| (&a.account, &a.key, &a.model).cmp(&(&b.account, &b.key, &b.model)));
    }
}

#[derive(Debug, Clone)]
pub struct UsageStore {
    files: JsonDir,
}

impl UsageStore {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            files: JsonDir::open(data_dir.join("usage"))?,
        })
    }

    pub fn load(&self) -> Result<UsageFile, StoreError> {
        match self.files.read(LEDGER)? {
            None => Ok(UsageFile::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: self.files.path(LEDGER),
                reason: e.to_string(),
            }),
        }
    }

    /// Adds deltas to the ledger on disk; returns the new totals.
    pub fn add(&self, deltas: &[UsageRow], now: DateTime<Utc>) -> Result<UsageFile, StoreError> {
        let _lock = self.files.lock()?;
        let mut ledger = self.load()?;
        ledger.since.get_or_insert(now);
        ledger.add(deltas);
        let bytes =
            serde_json::to_vec_pretty(&ledger).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.files.write_atomic(LEDGER, &bytes)?;
        Ok(ledger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, requests: u64, tokens: u64) -> UsageRow {
        UsageRow {
            account: "a".into(),
            key: "-".into(),
            model: model.into(),
            requests,
            prompt_tokens: tokens,
            ..UsageRow::default()
        }
    }

    #[test]
    fn deltas_add_up_across_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = UsageStore::open(dir.path()).expect("open");
        let two = UsageStore::open(dir.path()).expect("open");
        one.add(&[row("glm-5", 2, 10)], Utc::now()).expect("add");
        two.add(&[row("glm-5", 3, 5), row("kimi-k2.5", 1, 1)], Utc::now())
            .expect("add");
        let ledger = one.load().expect("load");
        assert_eq!(ledger.rows.len(), 2);
        assert_eq!(ledger.rows[0].requests, 5);
        assert_eq!(ledger.rows[0].prompt_tokens, 15);
    }
}
