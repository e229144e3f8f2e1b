//! Usage bookkeeping of the registry: the in-memory ledger bumped by
//! handlers, and the batched flush to the account files and the usage
//! ledger file.

use super::{AccountHandle, AccountRegistry, worker_gone};
use crate::actors::store_worker::StoreJob;
use crate::store::{StoreError, UsageFile, UsageRow};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Writes pending usage (account counters and the ledger); answers what
/// was written.
#[derive(Message)]
#[rtype(result = "Result<Flushed, StoreError>")]
pub struct FlushUsage;

/// What one [`FlushUsage`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Account files whose request counters were updated.
    pub accounts: usize,
    /// Rows (account, key, model) added to the usage ledger.
    pub ledger_rows: usize,
    /// Account files whose counters could not be written (kept in memory
    /// for the next flush).
    pub failed_accounts: usize,
}

/// The ledger on disk plus what is still pending in memory.
#[derive(Message)]
#[rtype(result = "Result<UsageFile, StoreError>")]
pub struct UsageReport;

type Slot = (Arc<str>, Arc<str>, Arc<str>);

/// Usage since the last flush, per (account, key, model). Keyed by shared
/// strings, so counting an existing slot allocates nothing.
#[derive(Debug, Default)]
pub struct UsageLedger {
    pending: Mutex<HashMap<Slot, UsageRow>>,
    /// Attempts under way: metered but not booked yet.
    open: AtomicUsize,
}

/// One finished request, as the ledger counts it.
pub struct UsageEvent<'a> {
    pub account: &'a Arc<str>,
    pub key: &'a Arc<str>,
    pub model: &'a Arc<str>,
    pub ok: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl UsageLedger {
    /// An attempt starts; [`UsageLedger::close`] follows once it is booked.
    pub fn open(&self) {
        self.open.fetch_add(1, Ordering::AcqRel);
    }

    pub fn close(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Waits (at most `within`) until every attempt under way is booked;
    /// answers how many are still open. At shutdown the workers drop the
    /// requests they cut off on their own threads, after the server has
    /// returned, and those attempts are booked as they are dropped.
    pub async fn settle(&self, within: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let open = self.open.load(Ordering::Acquire);
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub fn record(&self, event: &UsageEvent<'_>) {
        let slot = (
            event.account.clone(),
            event.key.clone(),
            event.model.clone(),
        );
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let row = pending.entry(slot).or_insert_with(|| UsageRow {
            account: event.account.to_string(),
            key: event.key.to_string(),
            model: event.model.to_string(),
            ..UsageRow::default()
        });
        // Token counts come from the upstream: never let them overflow.
        row.requests = row.requests.saturating_add(1);
        row.errors = row.errors.saturating_add(u64::from(!event.ok));
        row.prompt_tokens = row.prompt_tokens.saturating_add(event.prompt_tokens);
        row.completion_tokens = row
            .completion_tokens
            .saturating_add(event.completion_tokens);
        row.last_used_at = Some(Utc::now());
    }

    pub fn snapshot(&self) -> Vec<UsageRow> {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.values().cloned().collect()
    }

    fn take(&self) -> Vec<UsageRow> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *pending).into_values().collect()
    }

    fn restore(&self, rows: Vec<UsageRow>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for row in rows {
            let slot: Slot = (
                Arc::from(row.account.as_str()),
                Arc::from(row.key.as_str()),
                Arc::from(row.model.as_str()),
            );
            match pending.get_mut(&slot) {
                Some(existing) => existing.absorb(&row),
                None => {
                    pending.insert(slot, row);
                }
            }
        }
    }
}

/// One account's unflushed request count: id, requests, last use, handle.
type PendingCount = (String, u64, Option<DateTime<Utc>>, Arc<AccountHandle>);

impl Handler<FlushUsage> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<Flushed, StoreError>>;

    /// Adds the pending counters to the files, on top of what is on disk.
    fn handle(&mut self, _msg: FlushUsage, _ctx: &mut Self::Context) -> Self::Result {
        let counts: Vec<PendingCount> = self
            .entries
            .iter()
            .filter_map(|(id, e)| {
                let n = e.handle.usage.take();
                (n > 0).then(|| (id.clone(), n, e.handle.usage.last_used(), e.handle.clone()))
            })
            .collect();
        let rows = self.ledger.take();
        if counts.is_empty() && rows.is_empty() {
            // Nothing new, but an earlier flush may be writing right now.
            // The worker runs jobs in order: once this empty one is done, so
            // is every write before it, and a shutdown that awaited this
            // flush cannot exit halfway through one.
            return Box::pin(
                self.worker
                    .send(StoreJob::new(|_| ()))
                    .into_actor(self)
                    .map(|res, _, _| {
                        res.map(|()| Flushed::default())
                            .map_err(|_| StoreError::Invalid("store worker unavailable".into()))
                    }),
            );
        }
        let work: Vec<(String, u64, Option<DateTime<Utc>>)> = counts
            .iter()
            .map(|(id, n, t, _)| (id.clone(), *n, *t))
            .collect();
        let job_rows = rows.clone();
        let job = StoreJob::new(move |stores| {
            let accounts: Vec<_> = work
                .into_iter()
                .map(|(id, n, t)| {
                    stores.accounts.modify(&id, |a| {
                        a.request_count += n;
                        a.last_used_at = a.last_used_at.max(t);
                    })
                })
                .collect();
            let ledger = if job_rows.is_empty() {
                Ok(())
            } else {
                stores.usage.add(&job_rows, Utc::now()).map(|_| ())
            };
            (accounts, ledger)
        });
        Box::pin(
            self.worker
                .send(job)
                .into_actor(self)
                .map(move |res, act, _| {
                    let Ok((results, ledger)) = res else {
                        for (_, n, _, handle) in &counts {
                            handle.usage.restore(*n);
                        }
                        act.ledger.restore(rows);
                        return Err(StoreError::Invalid("store worker unavailable".into()));
                    };
                    let mut first_error = None;
                    let mut ledger_rows = rows.len();
                    if let Err(e) = ledger {
                        let level = if act.ledger_unwritten {
                            log::Level::Debug
                        } else {
                            log::Level::Warn
                        };
                        act.ledger_unwritten = true;
                        log::log!(level, "usage ledger not written, will retry: {e}");
                        act.ledger.restore(rows);
                        ledger_rows = 0;
                        first_error = Some(e);
                    } else if ledger_rows > 0 && act.ledger_unwritten {
                        act.ledger_unwritten = false;
                        log::info!("usage ledger written again");
                    }
                    let mut written = 0;
                    let mut failed_accounts = 0;
                    for ((id, n, _, handle), result) in counts.iter().zip(results) {
                        match result {
                            Ok(account) => {
                                written += 1;
                                if act.usage_unwritten.remove(id) {
                                    log::info!(
                                        "account {}: usage written again",
                                        crate::secret::short_id(id)
                                    );
                                }
                                // The file may hold the CLI's changes (a new key or
                                // base URL): upsert hands them to the upstream actor.
                                // An account deleted meanwhile stays deleted.
                                if act.entries.contains_key(id) {
                                    act.upsert(account);
                                }
                            }
                            Err(StoreError::NotFound(_)) => {}
                            Err(e) => {
                                // Once per failure, not at every retry.
                                let level = if act.usage_unwritten.insert(id.clone()) {
                                    log::Level::Warn
                                } else {
                                    log::Level::Debug
                                };
                                log::log!(
                                    level,
                                    "account {}: usage not written, will retry: {e}",
                                    crate::secret::short_id(id)
                                );
                                handle.usage.restore(*n);
                                failed_accounts += 1;
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    if written > 0 {
                        // The files may have carried changes from the CLI.
                        act.publish();
                    }
                    match first_error {
                        Some(e) if written == 0 && ledger_rows == 0 => Err(e),
                        _ => Ok(Flushed {
                            accounts: written,
                            ledger_rows,
                            failed_accounts,
                        }),
                    }
                }),
        )
    }
}

impl Handler<UsageReport> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<UsageFile, StoreError>>;

    /// Totals from disk with the pending deltas added.
    fn handle(&mut self, _msg: UsageReport, _ctx: &mut Self::Context) -> Self::Result {
        let job = StoreJob::new(|stores| stores.usage.load());
        Box::pin(self.worker.send(job).into_actor(self).map(|res, act, _| {
            let mut file = res.map_err(worker_gone)??;
            file.add(&act.ledger.snapshot());
            Ok(file)
        }))
    }
}
