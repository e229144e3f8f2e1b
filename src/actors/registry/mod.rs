//! `AccountRegistry`: owns the file stores (accounts, gateway keys, usage)
//! and the set of live accounts.
//!
//! It keeps one [`UpstreamActor`] per account and publishes a read-only
//! [`Directory`] (token → account or key) that HTTP handlers read without a
//! message round trip. Blocking file work goes to the [`StoreWorker`]
//! thread. Usage counters live in memory and are written in batches by
//! [`FlushUsage`], never once per request. Files changed by another process
//! (the CLI) are picked up by [`Rescan`] and by [`Resolve`] for unknown tokens.
//!
//! Handlers are grouped by subject: `accounts.rs`, `keys.rs`, `usage.rs`.

mod accounts;
mod directory;
mod keys;
mod refresh;
mod usage;

pub use accounts::{
    DeleteAccount, GetAccount, ImportAccount, ListAccounts, ListUnreadable, Rescan, ResetAccount,
    Resolve, SetCooldown, SetState,
};
pub use directory::{
    AccountHandle, AccountHealth, CooldownPolicy, Directory, KeyHandle, Lookup, SharedDirectory,
    UsageCounter, digest,
};
pub use keys::{CreateKey, ListKeys, RevokeKey, UnreadableKeys};
pub use refresh::{ApplyRefresh, MarkNeedsLogin, RefreshingNow, ReloadAccount};
pub use usage::{FlushUsage, Flushed, UsageEvent, UsageLedger, UsageReport};

use crate::actors::homes::{Homes, Unplaced, mailbox};
use crate::actors::store_worker::{StoreWorker, Stores};
use crate::actors::upstream::{PoolSignal, Retire, UpdateCredentials, UpstreamActor};
use crate::profile::Credentials;
use crate::secret::short_id;
use crate::store::{Account, GatewayKey, Scan, StoreError};
use actix::prelude::*;
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct RegistrySettings {
    pub concurrency: usize,
    pub queue_size: usize,
    pub queue_timeout: Duration,
    /// `None` for one-shot CLI use: no timers.
    pub flush_interval: Option<Duration>,
    pub rescan_interval: Option<Duration>,
    /// Wakes the pool scheduler when a slot frees up.
    pub pool: Option<Arc<PoolSignal>>,
    /// Where account actors run: the HTTP workers (`serve`). `None` runs
    /// them on the registry's own arbiter (the CLI, tests).
    pub homes: Option<Homes>,
}

impl RegistrySettings {
    /// One-shot use (the CLI): no timers, no pool, one slot per account
    /// and no queue.
    pub fn one_shot() -> Self {
        RegistrySettings {
            concurrency: 1,
            queue_size: 0,
            queue_timeout: Duration::from_secs(1),
            flush_interval: None,
            rescan_interval: None,
            pool: None,
            homes: None,
        }
    }
}

/// Who a bearer token belongs to.
#[derive(Clone)]
pub enum Principal {
    Account(Arc<AccountHandle>),
    Key(Arc<KeyHandle>),
}

/// An account as `token list` shows it.
#[derive(Debug, Clone)]
pub struct AccountSummary {
    pub account: Account,
    pub in_flight: usize,
}

struct Entry {
    account: Account,
    handle: Arc<AccountHandle>,
}

pub struct AccountRegistry {
    settings: RegistrySettings,
    worker: Addr<StoreWorker>,
    entries: HashMap<String, Entry>,
    keys: Vec<GatewayKey>,
    directory: SharedDirectory,
    ledger: Arc<UsageLedger>,
    reported: HashSet<PathBuf>,
    /// Accounts whose usage could not be written, warned about once (the
    /// flush retries every interval until it works).
    usage_unwritten: HashSet<String>,
    /// The same for the usage ledger.
    ledger_unwritten: bool,
    /// The account files the last full scan could not use, with the reason.
    problems: Vec<(PathBuf, String)>,
    /// The same for key files.
    key_problems: Vec<(PathBuf, String)>,
    miss_window: (Instant, u32),
    /// Account actors made before any HTTP worker was up; their mailboxes
    /// are open and keep what is sent to them.
    unplaced: Vec<Unplaced<UpstreamActor>>,
}

/// Disk re-checks for unknown tokens allowed per second, so a flood of bad
/// tokens cannot turn into a flood of file reads.
const MISS_CHECKS_PER_SECOND: u32 = 20;

impl AccountRegistry {
    /// Reads the stores once (at start-up, before serving) and builds the
    /// registry. Must run inside an actix system: it starts actors.
    pub fn new(stores: Stores, settings: RegistrySettings) -> Result<Self, StoreError> {
        let scan = stores.accounts.scan()?;
        let (keys, key_problems) = stores.keys.scan()?;
        let mut registry = Self {
            settings,
            worker: StoreWorker::start(stores),
            entries: HashMap::new(),
            keys: Vec::new(),
            directory: Arc::new(ArcSwap::from_pointee(Directory::default())),
            ledger: Arc::new(UsageLedger::default()),
            reported: HashSet::new(),
            usage_unwritten: HashSet::new(),
            ledger_unwritten: false,
            problems: Vec::new(),
            key_problems: Vec::new(),
            miss_window: (Instant::now(), 0),
            unplaced: Vec::new(),
        };
        registry.report("key", &key_problems);
        registry.key_problems = key_problems;
        registry.keys = keys;
        registry.reconcile(scan);
        Ok(registry)
    }

    pub fn directory(&self) -> SharedDirectory {
        self.directory.clone()
    }

    pub fn ledger(&self) -> Arc<UsageLedger> {
        self.ledger.clone()
    }

    fn credentials(account: &Account) -> Credentials {
        Credentials {
            api_key: account.api_key.clone(),
            base_url: account.base_url.clone(),
            auth_type: account.auth_type,
        }
    }

    /// Adds or refreshes one account from its on-disk state. Only fields
    /// that changed on disk override what this process knows (a write of
    /// ours may still be on its way).
    fn upsert(&mut self, account: Account) -> Arc<AccountHandle> {
        if let Some(entry) = self.entries.get_mut(&account.uuid) {
            let old = &entry.account;
            let creds = Self::credentials(&account);
            let creds_changed = creds != Self::credentials(old);
            if creds_changed {
                log::info!("account {}: credentials changed", short_id(&account.uuid));
                entry.handle.upstream.do_send(UpdateCredentials(creds));
            }
            let tokens_changed = account.oauth_access_token != old.oauth_access_token;
            let cleared = old.state.is_some() && account.state.is_none();
            if account.reset_at != old.reset_at {
                entry.handle.health.reset(&account);
            } else {
                if creds_changed || tokens_changed || cleared {
                    entry.handle.health.forgive_key();
                }
                if account.cooldown_until != old.cooldown_until || account.state != old.state {
                    entry.handle.health.apply(&account);
                }
            }
            if account.models != old.models || account.auth_type != old.auth_type {
                entry.handle = Arc::new(AccountHandle {
                    auth_type: account.auth_type,
                    models: account.models.clone(),
                    ..(*entry.handle).clone()
                });
            }
            entry.account = account;
            return entry.handle.clone();
        }
        let actor = UpstreamActor::new(
            &account.uuid,
            Self::credentials(&account),
            self.settings.concurrency,
            self.settings.queue_size,
            self.settings.queue_timeout,
            self.settings.pool.clone(),
        );
        let handle = Arc::new(AccountHandle {
            id: Arc::from(account.uuid.as_str()),
            label: Arc::from(short_id(&account.uuid)),
            auth_type: account.auth_type,
            models: account.models.clone(),
            slots: actor.slots(),
            stats: actor.stats(),
            upstream: self.launch(actor, None),
            usage: Arc::new(UsageCounter::default()),
            health: Arc::new(AccountHealth::from_account(&account)),
        });
        log::debug!(
            "account {}: loaded ({})",
            short_id(&account.uuid),
            account.auth_type
        );
        self.entries.insert(
            account.uuid.clone(),
            Entry {
                account,
                handle: handle.clone(),
            },
        );
        handle
    }

    /// Starts an account actor where it belongs (see [`Homes`]): on `near`
    /// if given and running, else on the next worker in turn (on this
    /// thread without homes), or keeps it until a worker is up. Its address
    /// works at once.
    fn launch(
        &mut self,
        actor: UpstreamActor,
        near: Option<&ArbiterHandle>,
    ) -> Addr<UpstreamActor> {
        let (addr, mailbox) = mailbox();
        let (actor, mailbox) = match near {
            Some(home) => match Homes::start_on(home, actor, mailbox) {
                Ok(()) => return addr,
                Err(back) => back,
            },
            None => (actor, mailbox),
        };
        match &self.settings.homes {
            None => {
                Context::with_receiver(mailbox).run(actor);
            }
            Some(homes) => {
                if let Err(unplaced) = homes.start(actor, mailbox) {
                    self.unplaced.push(unplaced);
                }
            }
        }
        addr
    }

    /// Starts the actors that were waiting for a worker, and replaces any
    /// whose thread has gone (actix restarts an HTTP worker that failed;
    /// the actors living on it stop with it).
    fn place_actors(&mut self, near: Option<&ArbiterHandle>) {
        if let Some(homes) = &self.settings.homes {
            for (actor, mailbox) in std::mem::take(&mut self.unplaced) {
                if let Err(unplaced) = homes.start(actor, mailbox) {
                    self.unplaced.push(unplaced);
                }
            }
        }
        let dead: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.handle.upstream.connected())
            .map(|(id, _)| id.clone())
            .collect();
        if dead.is_empty() {
            return;
        }
        let waiting = self.unplaced.len();
        let count = dead.len();
        for id in dead {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let h = entry.handle.clone();
            let actor = UpstreamActor::with_slots(
                &id,
                Self::credentials(&entry.account),
                h.slots.clone(),
                h.stats.clone(),
                self.settings.queue_size,
                self.settings.queue_timeout,
            );
            let upstream = self.launch(actor, near);
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.handle = Arc::new(AccountHandle {
                    upstream,
                    ..(*h).clone()
                });
            }
        }
        // Actors no worker took mean the server is stopping (or about to
        // restart a worker): not worth a warning.
        let unplaced = self.unplaced.len() - waiting;
        if unplaced > 0 {
            log::debug!(
                "{count} account actors stopped with their threads; {unplaced} wait for a worker"
            );
        } else {
            log::warn!("{count} account actors stopped with their worker's thread; replaced");
        }
        self.publish();
    }

    fn remove(&mut self, uuid: &str) {
        if let Some(entry) = self.entries.remove(uuid) {
            log::info!("account {}: removed", short_id(uuid));
            // Here and not only in the actor: an actor that stopped with its
            // thread never reads Retire, and its waiters must still wake.
            entry.handle.slots.close();
            entry.handle.upstream.do_send(Retire);
        }
    }

    fn report(&mut self, kind: &str, problems: &[(PathBuf, String)]) {
        // A server warns; a CLI command (no timers) says it at info, since
        // `token list` and `key list` show such files as rows and the other
        // commands' output is their result.
        let level = if self.settings.flush_interval.is_some() {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        for (path, reason) in problems {
            if self.reported.insert(path.clone()) {
                // An account file is named by its uuid, a credential: show
                // the short id, enough to find the file.
                log::log!(
                    level,
                    "skipping {kind} file {}: {reason}",
                    crate::store::shown(path)
                );
            }
        }
    }

    /// Makes the live set match a fresh scan of the accounts directory.
    fn reconcile(&mut self, scan: Scan) {
        let mut seen: HashSet<String> = HashSet::new();
        for account in scan.accounts {
            seen.insert(account.uuid.clone());
            self.upsert(account);
        }
        // A file that turned unreadable keeps its last good state live.
        for (path, _) in &scan.problems {
            if let Some(stem) = path.file_stem() {
                seen.insert(stem.to_string_lossy().into_owned());
            }
        }
        self.report("account", &scan.problems);
        self.problems = scan.problems;
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.remove(&id);
        }
        // A periodic check too, should a worker's restart go unannounced.
        self.place_actors(None);
        self.publish();
    }

    fn publish(&self) {
        let mut accounts: Vec<(Option<chrono::DateTime<chrono::Utc>>, Arc<AccountHandle>)> = self
            .entries
            .values()
            .map(|e| (e.account.created_at, e.handle.clone()))
            .collect();
        accounts.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        let old = self.directory.load();
        let keys = self
            .keys
            .iter()
            .map(|k| {
                // Keep the live semaphore of a key that did not change.
                let kept = old.key_by_id(&k.id).filter(|h| h.key == *k);
                let handle = kept.unwrap_or_else(|| {
                    Arc::new(KeyHandle {
                        key: k.clone(),
                        id: Arc::from(k.id.as_str()),
                        slots: k
                            .max_concurrency
                            .map(|n| Arc::new(Semaphore::new(n.max(1)))),
                    })
                });
                (k.hash.clone(), handle)
            })
            .collect();
        self.directory.store(Arc::new(Directory::new(
            accounts.into_iter().map(|(_, h)| h).collect(),
            keys,
        )));
    }

    fn summary(&self, entry: &Entry) -> AccountSummary {
        let mut account = entry.account.clone();
        account.request_count += entry.handle.usage.pending();
        if let Some(t) = entry.handle.usage.last_used() {
            account.last_used_at = account.last_used_at.max(Some(t));
        }
        AccountSummary {
            account,
            in_flight: entry.handle.stats.in_flight(),
        }
    }

    fn miss_check_allowed(&mut self) -> bool {
        let (start, count) = &mut self.miss_window;
        if start.elapsed() >= Duration::from_secs(1) {
            *start = Instant::now();
            *count = 0;
        }
        *count += 1;
        *count <= MISS_CHECKS_PER_SECOND
    }
}

impl Actor for AccountRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Handlers ask for rare things (unknown tokens, state changes), but
        // a burst must not be refused by a small mailbox.
        ctx.set_mailbox_capacity(1024);
        if let Some(every) = self.settings.flush_interval {
            ctx.run_interval(every, |_, ctx| ctx.notify(FlushUsage));
        }
        if let Some(every) = self.settings.rescan_interval {
            ctx.run_interval(every, |_, ctx| ctx.notify(Rescan));
        }
    }
}

/// An HTTP worker started (or a request found an account actor gone):
/// start the actors waiting for a worker and replace those whose thread
/// stopped.
#[derive(Message, Default)]
#[rtype(result = "()")]
pub struct PlaceActors {
    /// Start replacements here rather than on the next worker in turn: a
    /// request's own worker, which runs for as long as the request does
    /// (at shutdown the others may be stopping too).
    pub near: Option<ArbiterHandle>,
}

impl PlaceActors {
    /// Asked from a request: replacements go to the caller's worker.
    pub fn near_me() -> Self {
        Self {
            near: Some(Arbiter::current()),
        }
    }
}

impl Handler<PlaceActors> for AccountRegistry {
    type Result = ();

    fn handle(&mut self, msg: PlaceActors, _: &mut Self::Context) {
        self.place_actors(msg.near.as_ref());
    }
}

fn worker_gone(e: MailboxError) -> StoreError {
    StoreError::Invalid(format!("store worker unavailable: {e}"))
}

#[cfg(test)]
mod tests;
