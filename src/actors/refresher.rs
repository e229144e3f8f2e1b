//! `RefresherActor`: keeps OAuth logins alive.
//!
//! A timer (`run_interval`) scans for tokens with less than the lead time
//! left and schedules a refresh for each, spread by jitter. A refresh calls
//! the token endpoint, then user info (a new non-empty API key replaces the
//! old one), then stores the result through the registry, which hands the
//! new credentials to the account's upstream actor at once. At most one
//! refresh per account runs at a time; callers asking meanwhile share it.
//! Busy answers and network errors are retried with capped exponential
//! backoff (`notify_later`); `invalid_grant` marks the account needs-login.
//! `token refresh` and the per-request retry send the same message.

use crate::actors::registry::{
    AccountRegistry, ApplyRefresh, ListAccounts, ReloadAccount, SetState,
};
use crate::config::MaybeProxy;
use crate::metrics::Metrics;
use crate::oauth::client::OAuthClient;
use crate::oauth::{OAuthEndpoints, OAuthError};
use crate::secret::short_id;
use crate::store::{AccountState, AuthType};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::{LocalBoxFuture, Shared};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Refreshes one account now (or joins the refresh already running).
#[derive(Message, Clone)]
#[rtype(result = "Result<RefreshOutcome, RefreshError>")]
pub struct RefreshAccount(pub String);

/// Looks for tokens that are due.
#[derive(Message)]
#[rtype(result = "()")]
struct ScanDue;

#[derive(Debug, Clone, PartialEq)]
pub struct RefreshOutcome {
    pub expires_at: Option<DateTime<Utc>>,
    pub key_rotated: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RefreshError {
    #[error("no account {0}")]
    NotFound(String),
    #[error("account {0} has no OAuth login to refresh (it uses a plain API key)")]
    NotOAuth(String),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("refreshed tokens could not be stored: {0}")]
    Store(String),
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
    client: Rc<OAuthClient>,
    settings: RefreshSettings,
    /// Scan on a timer (server) or only on request (CLI).
    scanning: bool,
    running: HashMap<String, SharedRefresh>,
    /// Refreshes waiting on a timer; cancelled when one runs earlier.
    scheduled: HashMap<String, SpawnHandle>,
    failures: HashMap<String, (u32, Instant)>,
    metrics: Option<Arc<Metrics>>,
}

impl RefresherActor {
    /// Must run inside an actix system.
    pub fn new(
        registry: Addr<AccountRegistry>,
        endpoints: OAuthEndpoints,
        proxy: &MaybeProxy,
        settings: RefreshSettings,
        scanning: bool,
    ) -> Self {
        Self {
            registry,
            client: Rc::new(OAuthClient::new(endpoints, proxy)),
            settings,
            scanning,
            running: HashMap::new(),
            scheduled: HashMap::new(),
            failures: HashMap::new(),
            metrics: None,
        }
    }

    /// Counts refresh outcomes in the gateway's metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, uuid: String, delay: Duration) {
        let handle = ctx.notify_later(RefreshAccount(uuid.clone()), delay);
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

    fn jitter(&self) -> Duration {
        let spread = (self.settings.refresh_interval / 2).min(Duration::from_secs(30));
        spread.mul_f64(fastrand::f64())
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

async fn refresh_once(
    registry: Addr<AccountRegistry>,
    client: Rc<OAuthClient>,
    uuid: String,
) -> Result<RefreshOutcome, RefreshError> {
    let store_err = |e: String| RefreshError::Store(e);
    let account = registry
        // From disk: another process may have refreshed (and so spent the
        // refresh token the registry still holds) since the last rescan.
        .send(ReloadAccount(uuid.clone()))
        .await
        .map_err(|e| store_err(e.to_string()))?
        .ok_or_else(|| RefreshError::NotFound(short_id(&uuid).to_string()))?;
    if account.auth_type != AuthType::OAuthIflow || account.oauth_refresh_token.is_empty() {
        return Err(RefreshError::NotOAuth(short_id(&uuid).to_string()));
    }
    let tokens = match client.refresh(&account.oauth_refresh_token).await {
        Ok(tokens) => tokens,
        Err(e @ OAuthError::InvalidGrant(_)) => {
            // The handler logs the failure (server) or the command prints it (CLI).
            log::debug!(
                "account {}: refresh token rejected; needs `token login`",
                short_id(&uuid)
            );
            let _ = registry
                .send(SetState {
                    uuid: uuid.clone(),
                    state: Some(AccountState::NeedsLogin),
                })
                .await;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let new_key = match client.user_info(&tokens.access_token).await {
        Ok(info) if !info.api_key.is_empty() && info.api_key != account.api_key => {
            Some(info.api_key)
        }
        Ok(_) => None,
        Err(e) => {
            log::warn!(
                "account {}: user info after refresh failed, keeping the key: {e}",
                short_id(&uuid)
            );
            None
        }
    };
    let key_rotated = new_key.is_some();
    let stored = registry
        .send(ApplyRefresh {
            uuid: uuid.clone(),
            tokens,
            api_key: new_key,
        })
        .await
        .map_err(|e| store_err(e.to_string()))?
        .map_err(|e| store_err(e.to_string()))?;
    log::info!(
        "account {}: tokens refreshed, valid until {}{}",
        short_id(&uuid),
        stored
            .oauth_expires_at
            .map_or_else(|| "unknown".into(), |t| t.to_rfc3339()),
        if key_rotated { ", API key rotated" } else { "" }
    );
    Ok(RefreshOutcome {
        expires_at: stored.oauth_expires_at,
        key_rotated,
    })
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
                let fut = refresh_once(self.registry.clone(), self.client.clone(), uuid.clone())
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
                        Err(RefreshError::OAuth(OAuthError::Transient(_))) => "transient",
                        Err(_) => "failed",
                    });
                }
                match &result {
                    Ok(_) => {
                        act.failures.remove(&uuid);
                    }
                    Err(RefreshError::OAuth(e)) if e.is_transient() && act.scanning => {
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
                    let lead = chrono::Duration::from_std(act.settings.refresh_lead)
                        .unwrap_or(chrono::Duration::MAX);
                    for summary in accounts {
                        let a = summary.account;
                        let due = a.auth_type == AuthType::OAuthIflow
                            && !a.oauth_refresh_token.is_empty()
                            && a.state != Some(AccountState::NeedsLogin)
                            && a.oauth_expires_at.is_some_and(|t| t - now < lead);
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
