//! `RefresherActor`: keeps OAuth logins alive.
//!
//! A timer (`run_interval`) scans for tokens with less than the lead time
//! left and schedules a refresh for each, spread by jitter. A refresh (in
//! `refresher/refresh.rs`) takes the account's cross-process refresh lock,
//! calls the token endpoint, then user info (a new non-empty API key
//! replaces the old one), then stores the result through the registry,
//! which hands the new credentials to the account's upstream actor at once.
//! At most one refresh per account runs at a time: in this process callers
//! asking meanwhile share it, and other processes wait for the lock and then
//! take the tokens it stored. Busy answers, network errors and a lock held
//! too long are retried with capped exponential backoff (`notify_later`);
//! `invalid_grant` marks the account needs-login. `token refresh` and the
//! per-request retry send the same message.

mod refresh;

use crate::actors::registry::{AccountRegistry, GetAccount, ListAccounts};
use crate::config::MaybeProxy;
use crate::metrics::Metrics;
use crate::oauth::client::OAuthClient;
use crate::oauth::{OAuthEndpoints, OAuthError};
use crate::secret::short_id;
use crate::store::{AccountState, AccountStore, AuthType};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::{LocalBoxFuture, Shared};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a refresh waits for another process's refresh of the same
/// account: longer than one refresh can hold the lock (token call up to
/// 30 s, user info up to three tries of 30 s plus backoff: about 125 s).
/// Waiting less only gives a transient `Busy`, retried later.
pub const REFRESH_LOCK_WAIT: Duration = Duration::from_secs(150);

/// Refreshes one account now (or joins the refresh already running).
#[derive(Message, Clone)]
#[rtype(result = "Result<RefreshOutcome, RefreshError>")]
pub struct RefreshAccount(pub String);

/// Looks for tokens that are due.
#[derive(Message)]
#[rtype(result = "()")]
struct ScanDue;

/// A refresh a scan (or a retry) scheduled: by the time its timer fires,
/// another process may have refreshed the account already, and this server
/// picked up the new tokens; then it is not started.
#[derive(Message)]
#[rtype(result = "()")]
struct RefreshIfDue(String);

#[derive(Debug, Clone, PartialEq)]
pub struct RefreshOutcome {
    pub expires_at: Option<DateTime<Utc>>,
    pub key_rotated: bool,
    /// Another process refreshed (or logged in) while this one waited, and
    /// its stored tokens were taken instead of spending them again.
    pub adopted: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RefreshError {
    #[error("no account {0}")]
    NotFound(String),
    #[error("account {0} has no OAuth login to refresh (it uses a plain API key)")]
    NotOAuth(String),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(
        "account {account} was not refreshed: its file cannot be read ({reason}), so new tokens could not be saved; the refresh token was not used"
    )]
    Unreadable { account: String, reason: String },
    #[error(
        "account {0} is being refreshed by another process that did not finish within {secs} s; try again later",
        secs = REFRESH_LOCK_WAIT.as_secs()
    )]
    Busy(String),
    #[error("refreshed tokens could not be stored: {0}")]
    Store(String),
}

impl RefreshError {
    /// Worth retrying after a while: the OAuth server was busy or away, or
    /// another process held the account's refresh lock.
    pub fn is_transient(&self) -> bool {
        match self {
            RefreshError::OAuth(e) => e.is_transient(),
            RefreshError::Busy(_) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct RefreshSettings {
    /// Refresh OAuth tokens when less than this is left.
    #[arg(long, global = true, env = "IFLOW_REFRESH_LEAD", default_value = "24h", value_parser = crate::config::parse_with("IFLOW_REFRESH_LEAD", crate::config::duration))]
    pub refresh_lead: Duration,
    /// How often the server looks for tokens to refresh.
    #[arg(long, global = true, env = "IFLOW_REFRESH_INTERVAL", default_value = "5m", value_parser = crate::config::parse_with("IFLOW_REFRESH_INTERVAL", crate::config::duration))]
    pub refresh_interval: Duration,
    /// First wait after a failed refresh; doubles on each failure.
    #[arg(long, global = true, env = "IFLOW_REFRESH_RETRY_MIN", default_value = "30s", value_parser = crate::config::parse_with("IFLOW_REFRESH_RETRY_MIN", crate::config::duration))]
    pub refresh_retry_min: Duration,
    /// Longest wait between refresh retries.
    #[arg(long, global = true, env = "IFLOW_REFRESH_RETRY_MAX", default_value = "30m", value_parser = crate::config::parse_with("IFLOW_REFRESH_RETRY_MAX", crate::config::duration))]
    pub refresh_retry_max: Duration,
}

type SharedRefresh = Shared<LocalBoxFuture<'static, Result<RefreshOutcome, RefreshError>>>;

pub struct RefresherActor {
    registry: Addr<AccountRegistry>,
    /// Where the refresh locks are; shared with every process on the folder.
    accounts: AccountStore,
    client: Rc<OAuthClient>,
    settings: RefreshSettings,
    /// Scan on a timer (server) or only on request (CLI).
    scanning: bool,
    running: HashMap<String, SharedRefresh>,
    /// Refreshes waiting on a timer; cancelled when one runs earlier.
    scheduled: HashMap<String, SpawnHandle>,
    failures: HashMap<String, (u32, Instant)>,
    /// Accounts whose new token lives no longer than `refresh_lead`: when
    /// it expires and how long it lives. Such a token is due again at once;
    /// it is refreshed at half its life instead of on every scan.
    short_lived: HashMap<String, (DateTime<Utc>, chrono::Duration)>,
    metrics: Option<Arc<Metrics>>,
}

impl RefresherActor {
    /// Must run inside an actix system.
    pub fn new(
        registry: Addr<AccountRegistry>,
        accounts: AccountStore,
        endpoints: OAuthEndpoints,
        proxy: &MaybeProxy,
        settings: RefreshSettings,
        scanning: bool,
    ) -> Self {
        Self {
            registry,
            accounts,
            client: Rc::new(OAuthClient::new(endpoints, proxy)),
            settings,
            scanning,
            running: HashMap::new(),
            scheduled: HashMap::new(),
            failures: HashMap::new(),
            short_lived: HashMap::new(),
            metrics: None,
        }
    }

    /// Counts refresh outcomes in the gateway's metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, uuid: String, delay: Duration) {
        let handle = ctx.notify_later(RefreshIfDue(uuid.clone()), delay);
        if let Some(old) = self.scheduled.insert(uuid, handle) {
            ctx.cancel_future(old);
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let base = self.settings.refresh_retry_min;
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        let delay = base
            .saturating_mul(factor)
            .min(self.settings.refresh_retry_max);
        // ±20% so that accounts that failed together do not retry together.
        delay.mul_f64(0.8 + fastrand::f64() * 0.4)
    }

    /// Notes how long a freshly refreshed token lives, when that is within
    /// the lead (the lead is meant to be a fraction of a token's life).
    fn note_lifetime(&mut self, uuid: &str, expires_at: Option<DateTime<Utc>>) {
        let lead =
            chrono::Duration::from_std(self.settings.refresh_lead).unwrap_or(chrono::Duration::MAX);
        let short = expires_at
            .map(|at| (at, at - Utc::now()))
            .filter(|(_, life)| *life > chrono::Duration::zero() && *life <= lead);
        let Some((expires, life)) = short else {
            self.short_lived.remove(uuid);
            return;
        };
        if self
            .short_lived
            .insert(uuid.to_string(), (expires, life))
            .is_none()
        {
            log::warn!(
                "account {}: its tokens last {}, no longer than IFLOW_REFRESH_LEAD ({}); \
                 they are refreshed at half their life instead (on every scan when half \
                 their life is shorter than two scans, IFLOW_REFRESH_INTERVAL)",
                short_id(uuid),
                humantime::format_duration(Duration::from_secs(
                    u64::try_from(life.num_seconds()).unwrap_or(0)
                )),
                humantime::format_duration(self.settings.refresh_lead)
            );
        }
    }

    /// A short-lived token with more than half its life left, and enough
    /// left that a later scan (two intervals and the largest jitter away)
    /// still refreshes it in time. Wall-clock time: a machine that slept
    /// refreshes on its first scan after waking.
    fn fresh(&self, uuid: &str) -> bool {
        let scans =
            chrono::Duration::from_std(self.settings.refresh_interval * 2 + self.max_jitter())
                .unwrap_or(chrono::Duration::MAX);
        self.short_lived.get(uuid).is_some_and(|(expires, life)| {
            let left = *expires - Utc::now();
            left > *life / 2 && left > scans
        })
    }

    /// An OAuth account this server should refresh now: inside the lead,
    /// with a refresh token iFlow has not refused, and not a short-lived
    /// token that can wait for half its life.
    fn due(&self, a: &crate::store::Account, now: DateTime<Utc>) -> bool {
        let lead =
            chrono::Duration::from_std(self.settings.refresh_lead).unwrap_or(chrono::Duration::MAX);
        a.auth_type == AuthType::OAuthIflow
            && !a.oauth_refresh_token.is_empty()
            && a.state != Some(AccountState::NeedsLogin)
            && a.refresh_due(lead, now)
            && !self.fresh(&a.uuid)
    }

    fn jitter(&self) -> Duration {
        self.max_jitter().mul_f64(fastrand::f64())
    }

    /// A scan's refreshes start spread over up to this long.
    fn max_jitter(&self) -> Duration {
        (self.settings.refresh_interval / 2).min(Duration::from_secs(30))
    }
}

impl Actor for RefresherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.scanning {
            ctx.notify(ScanDue);
            ctx.run_interval(self.settings.refresh_interval, |_, ctx| ctx.notify(ScanDue));
        }
    }
}

impl Handler<RefreshAccount> for RefresherActor {
    type Result = ResponseActFuture<Self, Result<RefreshOutcome, RefreshError>>;

    /// Starts a refresh, or joins the one already running for the account.
    fn handle(&mut self, msg: RefreshAccount, ctx: &mut Self::Context) -> Self::Result {
        let uuid = msg.0;
        // Running now makes a refresh still waiting on a timer pointless.
        if let Some(pending) = self.scheduled.remove(&uuid) {
            ctx.cancel_future(pending);
        }
        let shared = match self.running.get(&uuid) {
            Some(running) => running.clone(),
            None => {
                let fut = refresh::refresh_once(
                    self.registry.clone(),
                    self.accounts.clone(),
                    self.client.clone(),
                    uuid.clone(),
                )
                .boxed_local()
                .shared();
                self.running.insert(uuid.clone(), fut.clone());
                fut
            }
        };
        Box::pin(shared.into_actor(self).map(move |result, act, ctx| {
            // Only the first caller to see the result does the bookkeeping.
            if act.running.remove(&uuid).is_some() {
                if let Some(metrics) = &act.metrics {
                    metrics.refresh(match &result {
                        Ok(_) => "success",
                        Err(RefreshError::OAuth(OAuthError::InvalidGrant(_))) => "invalid_grant",
                        Err(e) if e.is_transient() => "transient",
                        Err(_) => "failed",
                    });
                }
                match &result {
                    Ok(outcome) => {
                        act.failures.remove(&uuid);
                        if act.scanning {
                            act.note_lifetime(&uuid, outcome.expires_at);
                        }
                    }
                    Err(e) if e.is_transient() && act.scanning => {
                        let failures = act.failures.get(&uuid).map_or(0, |f| f.0) + 1;
                        let delay = act.backoff(failures);
                        log::warn!(
                            "account {}: refresh failed ({e}); retry {failures} in {delay:?}",
                            short_id(&uuid)
                        );
                        act.failures
                            .insert(uuid.clone(), (failures, Instant::now() + delay));
                        act.schedule(ctx, uuid.clone(), delay);
                    }
                    Err(e) if act.scanning => {
                        log::warn!("account {}: refresh failed: {e}", short_id(&uuid))
                    }
                    // `token refresh` prints the error itself; a log line would repeat it.
                    Err(_) => {}
                }
            }
            result
        }))
    }
}

impl Handler<RefreshIfDue> for RefresherActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: RefreshIfDue, _ctx: &mut Self::Context) -> Self::Result {
        let uuid = msg.0;
        Box::pin(
            self.registry
                .send(GetAccount(uuid.clone()))
                .into_actor(self)
                .map(move |found, act, ctx| match found {
                    Ok(Some(a)) if !act.due(&a, Utc::now()) => {
                        log::info!(
                            "account {}: renewed meanwhile (by another process); \
                             no refresh needed",
                            short_id(&uuid)
                        );
                        act.scheduled.remove(&uuid);
                        act.failures.remove(&uuid);
                    }
                    // Due still, or not known to the registry (the refresh
                    // reports that itself).
                    _ => ctx.notify(RefreshAccount(uuid)),
                }),
        )
    }
}

impl Handler<ScanDue> for RefresherActor {
    type Result = ResponseActFuture<Self, ()>;

    /// Schedules a refresh for every OAuth account inside the lead time.
    fn handle(&mut self, _msg: ScanDue, _ctx: &mut Self::Context) -> Self::Result {
        Box::pin(
            self.registry
                .send(ListAccounts)
                .into_actor(self)
                .map(|accounts, act, ctx| {
                    let Ok(accounts) = accounts else { return };
                    let now = Utc::now();
                    for summary in accounts {
                        let a = summary.account;
                        let due = act.due(&a, now);
                        let waiting = act.running.contains_key(&a.uuid)
                            || act.scheduled.contains_key(&a.uuid)
                            || act
                                .failures
                                .get(&a.uuid)
                                .is_some_and(|(_, next)| *next > Instant::now());
                        if due && !waiting {
                            let delay = act.jitter();
                            act.schedule(ctx, a.uuid, delay);
                        }
                    }
                }),
        )
    }
}
