//! `AccountRegistry`: owns the account store and the set of live accounts.
//!
//! It keeps one [`UpstreamActor`] per account and publishes a read-only
//! [`Directory`] (token → account handle) that HTTP handlers read without a
//! message round trip. Blocking file work goes to the [`StoreWorker`] thread.
//! Usage counters live in memory (atomics bumped by handlers) and are written
//! in batches by [`FlushUsage`], never once per request.

use crate::actors::store_worker::{StoreJob, StoreWorker};
use crate::actors::upstream::{Retire, SlotStats, UpdateCredentials, UpstreamActor};
use crate::oauth::TokenSet;
use crate::profile::Credentials;
use crate::secret::Secret;
use crate::store::{Account, AccountState, AccountStore, AuthType, Scan, StoreError};
use actix::prelude::*;
use arc_swap::ArcSwap;
use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Looks a bearer token up, re-reading the disk when it is an unknown uuid
/// (an account added by the CLI a moment ago).
#[derive(Message)]
#[rtype(result = "Option<Arc<AccountHandle>>")]
pub struct Resolve(pub String);

/// Adds an account for an API key, or updates the one that has it.
#[derive(Message)]
#[rtype(result = "Result<(AccountSummary, bool), StoreError>")]
pub struct ImportAccount {
    pub api_key: Secret,
    pub base_url: String,
    pub auth_type: AuthType,
    /// OAuth tokens of a login; `None` for a bare key.
    pub tokens: Option<TokenSet>,
}

/// The stored account, as the registry knows it.
#[derive(Message)]
#[rtype(result = "Option<Account>")]
pub struct GetAccount(pub String);

/// The account as its file says now, made live: what a refresh must start
/// from, since the CLI may have spent the refresh token the registry holds.
/// `None` when the file is gone; the live copy when it cannot be read.
#[derive(Message)]
#[rtype(result = "Option<Account>")]
pub struct ReloadAccount(pub String);

/// Stores refreshed tokens (and a rotated API key) and hands the new
/// credentials to the account's upstream actor at once.
#[derive(Message)]
#[rtype(result = "Result<Account, StoreError>")]
pub struct ApplyRefresh {
    pub uuid: String,
    pub tokens: TokenSet,
    /// A new non-empty key from user info; `None` keeps the current one.
    pub api_key: Option<Secret>,
}

/// Records (or clears) a state that needs the user.
#[derive(Message)]
#[rtype(result = "Result<Account, StoreError>")]
pub struct SetState {
    pub uuid: String,
    pub state: Option<AccountState>,
}

/// Every account, with usage not yet flushed included.
#[derive(Message)]
#[rtype(result = "Vec<AccountSummary>")]
pub struct ListAccounts;

/// Removes an account file and its actor.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteAccount(pub String);

/// Writes pending usage counters; answers how many accounts were written.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct FlushUsage;

/// Re-reads the directory to pick up changes made by other processes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Rescan;

#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub concurrency: usize,
    pub queue_size: usize,
    pub queue_timeout: Duration,
    /// `None` for one-shot CLI use: no timers.
    pub flush_interval: Option<Duration>,
    pub rescan_interval: Option<Duration>,
}

/// What a request needs to know about its account.
pub struct AccountHandle {
    pub id: Arc<str>,
    pub upstream: Addr<UpstreamActor>,
    pub usage: Arc<UsageCounter>,
    pub slots: Arc<SlotStats>,
    /// Mirrors `state == key-invalid`, so a success can clear it cheaply.
    pub key_invalid: AtomicBool,
}

/// Requests served since the last flush.
#[derive(Debug, Default)]
pub struct UsageCounter {
    requests: AtomicU64,
    last_used_ms: AtomicI64,
}

impl UsageCounter {
    pub fn record(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.last_used_ms
            .fetch_max(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    pub fn pending(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn last_used(&self) -> Option<DateTime<Utc>> {
        match self.last_used_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Utc.timestamp_millis_opt(ms).single(),
        }
    }

    fn take(&self) -> u64 {
        self.requests.swap(0, Ordering::Relaxed)
    }

    fn restore(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
    }
}

/// Token → account, swapped whole whenever the set of accounts changes.
#[derive(Default)]
pub struct Directory {
    by_digest: HashMap<[u8; 32], Arc<AccountHandle>>,
}

pub type SharedDirectory = Arc<ArcSwap<Directory>>;

impl Directory {
    /// Finds the account whose uuid is `token`. The map is keyed by a digest
    /// and the final comparison is constant-time, so response timing says
    /// nothing about how close a guess was.
    pub fn find(&self, token: &str) -> Option<Arc<AccountHandle>> {
        let handle = self.by_digest.get(&digest(token))?;
        bool::from(handle.id.as_bytes().ct_eq(token.as_bytes())).then(|| handle.clone())
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn handles(&self) -> impl Iterator<Item = &Arc<AccountHandle>> {
        self.by_digest.values()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
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
    directory: SharedDirectory,
    reported: HashSet<PathBuf>,
    miss_window: (Instant, u32),
}

/// Disk re-checks for unknown tokens allowed per second, so a flood of bad
/// tokens cannot turn into a flood of file reads.
const MISS_CHECKS_PER_SECOND: u32 = 20;

impl AccountRegistry {
    /// Reads the store once (at start-up, before serving) and builds the
    /// registry. Must run inside an actix system: it starts actors.
    pub fn new(store: AccountStore, settings: RegistrySettings) -> Result<Self, StoreError> {
        let scan = store.scan()?;
        let mut registry = Self {
            settings,
            worker: StoreWorker::start(store),
            entries: HashMap::new(),
            directory: Arc::new(ArcSwap::from_pointee(Directory::default())),
            reported: HashSet::new(),
            miss_window: (Instant::now(), 0),
        };
        registry.reconcile(scan);
        Ok(registry)
    }

    pub fn directory(&self) -> SharedDirectory {
        self.directory.clone()
    }

    fn credentials(account: &Account) -> Credentials {
        Credentials {
            api_key: account.api_key.clone(),
            base_url: account.base_url.clone(),
            auth_type: account.auth_type,
        }
    }

    /// Adds or refreshes one account from its on-disk state.
    fn upsert(&mut self, account: Account) -> Arc<AccountHandle> {
        if let Some(entry) = self.entries.get_mut(&account.uuid) {
            let creds = Self::credentials(&account);
            if creds != Self::credentials(&entry.account) {
                log::info!("account {}: credentials changed", account.uuid);
                entry.handle.upstream.do_send(UpdateCredentials(creds));
            }
            entry.handle.key_invalid.store(
                account.state == Some(AccountState::KeyInvalid),
                Ordering::Relaxed,
            );
            entry.account = account;
            return entry.handle.clone();
        }
        let actor = UpstreamActor::new(
            &account.uuid,
            Self::credentials(&account),
            self.settings.concurrency,
            self.settings.queue_size,
            self.settings.queue_timeout,
        );
        let slots = actor.stats();
        let handle = Arc::new(AccountHandle {
            id: Arc::from(account.uuid.as_str()),
            upstream: actor.start(),
            usage: Arc::new(UsageCounter::default()),
            slots,
            key_invalid: AtomicBool::new(account.state == Some(AccountState::KeyInvalid)),
        });
        log::debug!("account {}: loaded ({})", account.uuid, account.auth_type);
        self.entries.insert(
            account.uuid.clone(),
            Entry {
                account,
                handle: handle.clone(),
            },
        );
        handle
    }

    fn remove(&mut self, uuid: &str) {
        if let Some(entry) = self.entries.remove(uuid) {
            log::info!("account {uuid}: removed");
            entry.handle.upstream.do_send(Retire);
        }
    }

    /// Makes the live set match a fresh scan of the directory.
    fn reconcile(&mut self, scan: Scan) {
        let mut seen: HashSet<String> = HashSet::new();
        for account in scan.accounts {
            seen.insert(account.uuid.clone());
            self.upsert(account);
        }
        // A file that turned unreadable keeps its last good state live.
        for (path, reason) in &scan.problems {
            if let Some(stem) = path.file_stem() {
                seen.insert(stem.to_string_lossy().into_owned());
            }
            if self.reported.insert(path.clone()) {
                log::warn!("skipping account file {}: {reason}", path.display());
            }
        }
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.remove(&id);
        }
        self.publish();
    }

    fn publish(&self) {
        let by_digest = self
            .entries
            .values()
            .map(|e| (digest(&e.account.uuid), e.handle.clone()))
            .collect();
        self.directory.store(Arc::new(Directory { by_digest }));
    }

    fn summary(&self, entry: &Entry) -> AccountSummary {
        let mut account = entry.account.clone();
        account.request_count += entry.handle.usage.pending();
        if let Some(t) = entry.handle.usage.last_used() {
            account.last_used_at = account.last_used_at.max(Some(t));
        }
        AccountSummary {
            account,
            in_flight: entry.handle.slots.in_flight(),
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
        if let Some(every) = self.settings.flush_interval {
            ctx.run_interval(every, |_, ctx| ctx.notify(FlushUsage));
        }
        if let Some(every) = self.settings.rescan_interval {
            ctx.run_interval(every, |_, ctx| ctx.notify(Rescan));
        }
    }
}

fn worker_gone(e: MailboxError) -> StoreError {
    StoreError::Invalid(format!("store worker unavailable: {e}"))
}

impl Handler<Resolve> for AccountRegistry {
    type Result = ResponseActFuture<Self, Option<Arc<AccountHandle>>>;

    /// Known tokens answer at once; an unknown uuid is looked for on disk.
    fn handle(&mut self, msg: Resolve, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(found) = self.directory.load().find(&msg.0) {
            return Box::pin(fut::ready(Some(found)));
        }
        if uuid::Uuid::parse_str(&msg.0).is_err() || !self.miss_check_allowed() {
            return Box::pin(fut::ready(None));
        }
        let uuid = msg.0;
        let job = StoreJob::new(move |store| store.load(&uuid));
        Box::pin(self.worker.send(job).into_actor(self).map(|res, act, _| {
            let account = res.ok()?.ok()??;
            let handle = act.upsert(account);
            act.publish();
            Some(handle)
        }))
    }
}

impl Handler<ImportAccount> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<(AccountSummary, bool), StoreError>>;

    /// Creates or updates the account holding this key.
    fn handle(&mut self, msg: ImportAccount, _ctx: &mut Self::Context) -> Self::Result {
        let template = Account::new(msg.api_key, msg.base_url.clone(), msg.auth_type, Utc::now());
        let job = StoreJob::new(move |store| {
            store.upsert_by_api_key(template, |a| {
                a.base_url = msg.base_url;
                a.auth_type = msg.auth_type;
                match msg.tokens {
                    Some(tokens) => set_tokens(a, tokens),
                    None if msg.auth_type != AuthType::OAuthIflow => {
                        a.oauth_access_token = Secret::default();
                        a.oauth_refresh_token = Secret::default();
                        a.oauth_expires_at = None;
                    }
                    None => {}
                }
                a.state = None;
                a.updated_at = Some(Utc::now());
            })
        });
        Box::pin(self.worker.send(job).into_actor(self).map(|res, act, _| {
            let (account, created) = res.map_err(worker_gone)??;
            let uuid = account.uuid.clone();
            act.upsert(account);
            act.publish();
            let entry = act
                .entries
                .get(&uuid)
                .ok_or_else(|| StoreError::NotFound(uuid.clone()))?;
            Ok((act.summary(entry), created))
        }))
    }
}

fn set_tokens(a: &mut Account, tokens: TokenSet) {
    a.oauth_access_token = tokens.access_token;
    if let Some(refresh) = tokens.refresh_token {
        a.oauth_refresh_token = refresh;
    }
    a.oauth_expires_at = tokens.expires_at;
}

impl AccountRegistry {
    /// Runs a read-modify-write of one account file, then makes the live
    /// account (and its upstream actor) match what was written.
    fn modify_account<F>(
        &mut self,
        uuid: String,
        change: F,
    ) -> ResponseActFuture<Self, Result<Account, StoreError>>
    where
        F: FnOnce(&mut Account) + Send + 'static,
    {
        let job = StoreJob::new(move |store| store.modify(&uuid, change));
        Box::pin(self.worker.send(job).into_actor(self).map(|res, act, _| {
            let account = res.map_err(worker_gone)??;
            act.upsert(account.clone());
            act.publish();
            Ok(account)
        }))
    }
}

impl Handler<GetAccount> for AccountRegistry {
    type Result = Option<Account>;

    /// A copy of the live account.
    fn handle(&mut self, msg: GetAccount, _ctx: &mut Self::Context) -> Self::Result {
        self.entries.get(&msg.0).map(|e| e.account.clone())
    }
}

impl Handler<ReloadAccount> for AccountRegistry {
    type Result = ResponseActFuture<Self, Option<Account>>;

    /// Re-reads one account file and applies it to the live account.
    fn handle(&mut self, msg: ReloadAccount, _ctx: &mut Self::Context) -> Self::Result {
        let uuid = msg.0;
        let job_uuid = uuid.clone();
        let job = StoreJob::new(move |store| store.load(&job_uuid));
        Box::pin(
            self.worker
                .send(job)
                .into_actor(self)
                .map(move |res, act, _| match res {
                    Ok(Ok(Some(account))) => {
                        act.upsert(account.clone());
                        act.publish();
                        Some(account)
                    }
                    Ok(Ok(None)) => None,
                    _ => act.entries.get(&uuid).map(|e| e.account.clone()),
                }),
        )
    }
}

impl Handler<ApplyRefresh> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<Account, StoreError>>;

    /// Writes new tokens (and key), clears any state, updates the actor.
    fn handle(&mut self, msg: ApplyRefresh, _ctx: &mut Self::Context) -> Self::Result {
        self.modify_account(msg.uuid, move |a| {
            set_tokens(a, msg.tokens);
            if let Some(key) = msg.api_key.filter(|k| !k.is_empty()) {
                a.api_key = key;
            }
            a.state = None;
            a.updated_at = Some(Utc::now());
        })
    }
}

impl Handler<SetState> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<Account, StoreError>>;

    /// Persists the account's state (no write when it is already so).
    fn handle(&mut self, msg: SetState, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(entry) = self.entries.get(&msg.uuid)
            && entry.account.state == msg.state
        {
            return Box::pin(fut::ready(Ok(entry.account.clone())));
        }
        self.modify_account(msg.uuid, move |a| {
            // A key refused after the refresh token died is that dead login:
            // needs-login says what to do and keeps the refresher off it.
            if msg.state == Some(AccountState::KeyInvalid)
                && a.state == Some(AccountState::NeedsLogin)
            {
                return;
            }
            a.state = msg.state;
            a.updated_at = Some(Utc::now());
        })
    }
}

impl Handler<ListAccounts> for AccountRegistry {
    type Result = MessageResult<ListAccounts>;

    /// Summaries, oldest account first.
    fn handle(&mut self, _msg: ListAccounts, _ctx: &mut Self::Context) -> Self::Result {
        let mut list: Vec<AccountSummary> =
            self.entries.values().map(|e| self.summary(e)).collect();
        list.sort_by(|a, b| {
            (a.account.created_at, &a.account.uuid).cmp(&(b.account.created_at, &b.account.uuid))
        });
        MessageResult(list)
    }
}

impl Handler<DeleteAccount> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<bool, StoreError>>;

    /// Deletes the file, then retires the actor.
    fn handle(&mut self, msg: DeleteAccount, _ctx: &mut Self::Context) -> Self::Result {
        let uuid = msg.0;
        let job_uuid = uuid.clone();
        let job = StoreJob::new(move |store| store.delete(&job_uuid));
        Box::pin(
            self.worker
                .send(job)
                .into_actor(self)
                .map(move |res, act, _| {
                    let deleted = res.map_err(worker_gone)??;
                    act.remove(&uuid);
                    act.publish();
                    Ok(deleted)
                }),
        )
    }
}

/// One account's unflushed usage: id, requests, last use, handle.
type PendingUsage = (String, u64, Option<DateTime<Utc>>, Arc<AccountHandle>);

impl Handler<FlushUsage> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<usize, StoreError>>;

    /// Adds the pending counters to the files, on top of what is on disk.
    fn handle(&mut self, _msg: FlushUsage, _ctx: &mut Self::Context) -> Self::Result {
        let batch: Vec<PendingUsage> = self
            .entries
            .iter()
            .filter_map(|(id, e)| {
                let n = e.handle.usage.take();
                (n > 0).then(|| (id.clone(), n, e.handle.usage.last_used(), e.handle.clone()))
            })
            .collect();
        if batch.is_empty() {
            return Box::pin(fut::ready(Ok(0)));
        }
        let work: Vec<(String, u64, Option<DateTime<Utc>>)> = batch
            .iter()
            .map(|(id, n, t, _)| (id.clone(), *n, *t))
            .collect();
        let job = StoreJob::new(move |store| {
            work.into_iter()
                .map(|(id, n, t)| {
                    store.modify(&id, |a| {
                        a.request_count += n;
                        a.last_used_at = a.last_used_at.max(t);
                    })
                })
                .collect::<Vec<_>>()
        });
        Box::pin(
            self.worker
                .send(job)
                .into_actor(self)
                .map(move |res, act, _| {
                    let Ok(results) = res else {
                        for (_, n, _, handle) in &batch {
                            handle.usage.restore(*n);
                        }
                        return Err(StoreError::Invalid("store worker unavailable".into()));
                    };
                    let mut written = 0;
                    let mut first_error = None;
                    for ((id, n, _, handle), result) in batch.iter().zip(results) {
                        match result {
                            Ok(account) => {
                                written += 1;
                                // The file may hold the CLI's changes (a new key or
                                // base URL): upsert hands them to the upstream actor,
                                // which a plain assignment would silently skip, and
                                // the next rescan would then see nothing to do.
                                if act.entries.contains_key(id) {
                                    act.upsert(account);
                                }
                            }
                            Err(StoreError::NotFound(_)) => {}
                            Err(e) => {
                                log::warn!("account {id}: usage not written, will retry: {e}");
                                handle.usage.restore(*n);
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    match first_error {
                        Some(e) if written == 0 => Err(e),
                        _ => Ok(written),
                    }
                }),
        )
    }
}

impl Handler<Rescan> for AccountRegistry {
    type Result = ResponseActFuture<Self, ()>;

    /// Applies what other processes changed in the directory.
    fn handle(&mut self, _msg: Rescan, _ctx: &mut Self::Context) -> Self::Result {
        let job = StoreJob::new(|store| store.scan());
        Box::pin(
            self.worker
                .send(job)
                .into_actor(self)
                .map(|res, act, _| match res {
                    Ok(Ok(scan)) => act.reconcile(scan),
                    Ok(Err(e)) => log::warn!("rescan of the account store failed: {e}"),
                    Err(e) => log::warn!("rescan skipped: {e}"),
                }),
        )
    }
}
