//! `UpstreamActor`: one per account. Owns the account's credentials and ids,
//! admits requests under the concurrency cap with a bounded wait queue, and
//! signs each admitted request (after any wait, so the timestamp is fresh).
//!
//! It hands out a [`Lease`] instead of making the HTTP call: awc's client is
//! `!Send` and lives on the HTTP workers. The lease's permit travels with the
//! response, so dropping the response (client gone) frees the slot at once.

use crate::error::GatewayError;
use crate::profile::{Credentials, Profile, SessionIds};
use actix::prelude::*;
use actix_web::http::header::{HeaderName, HeaderValue};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Asks for a slot. Answered at once: either a signed [`Lease`] or a
/// [`Ticket`] to wait on outside the actor.
#[derive(Message)]
#[rtype(result = "Result<Admission, GatewayError>")]
pub struct Acquire {
    /// The request starts a new user turn (new conversation id).
    pub starts_turn: bool,
}

/// Turns a permit won with a [`Ticket`] into a signed lease.
#[derive(Message)]
#[rtype(result = "Lease")]
pub struct Sign {
    pub permit: SlotPermit,
    pub starts_turn: bool,
}

/// New credentials (refresh, re-import); used from the next request on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateCredentials(pub Credentials);

/// Stops the actor (account deleted). Leases already out stay valid.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

pub enum Admission {
    Ready(Lease),
    Queued(Ticket),
}

/// Everything a handler needs to make one upstream call.
pub struct Lease {
    pub permit: SlotPermit,
    /// The account's short id, for errors and logs (never the full uuid).
    pub account_label: Arc<str>,
    pub profile: Profile,
    pub credentials_auth: crate::store::AuthType,
    pub url: Arc<str>,
    /// `url`, parsed once per credential change rather than per request.
    pub uri: Option<actix_web::http::Uri>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A place in the account's wait queue. Dropping it leaves the queue.
pub struct Ticket {
    wait: Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>,
    _place: QueuePlace,
    stats: Arc<SlotStats>,
    pub timeout: Duration,
    pub retry_after: u64,
}

impl Ticket {
    /// Waits for a slot, up to the queue timeout.
    pub async fn wait(self, account: &str) -> Result<SlotPermit, GatewayError> {
        let retry_after = self.retry_after;
        let waited = tokio::select! {
            waited = tokio::time::timeout(self.timeout, self.wait) => waited,
            () = crate::shutdown::signalled() => return Err(crate::shutdown::refusal()),
        };
        match waited {
            Ok(Some(permit)) => Ok(SlotPermit::new(permit, self.stats.clone())),
            Ok(None) => Err(GatewayError::Unavailable(format!(
                "account {account} was removed"
            ))),
            Err(_) => Err(GatewayError::QueueTimeout {
                account: account.to_string(),
                retry_after,
            }),
        }
    }
}

/// Lets freed slots wake the pool scheduler, but only while requests wait
/// in the pool queue (so the common case costs one atomic load).
#[derive(Default)]
pub struct PoolSignal {
    pub waiting: AtomicUsize,
    wake: std::sync::OnceLock<Recipient<SlotFreed>>,
}

impl PoolSignal {
    pub fn connect(&self, to: Recipient<SlotFreed>) {
        let _ = self.wake.set(to);
    }

    fn slot_freed(&self) {
        if self.waiting.load(Ordering::Relaxed) > 0
            && let Some(to) = self.wake.get()
        {
            to.do_send(SlotFreed);
        }
    }
}

/// A slot was released somewhere.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SlotFreed;

/// Counters shared by the actor, its permits and the metrics/health views.
#[derive(Default)]
pub struct SlotStats {
    pub cap: usize,
    in_flight: AtomicUsize,
    waiting: AtomicUsize,
    /// Moving average of how long a slot is held, in milliseconds.
    avg_hold_ms: AtomicU64,
    pool: Option<Arc<PoolSignal>>,
}

impl SlotStats {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    fn record_hold(&self, held: Duration) {
        let ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
        let old = self.avg_hold_ms.load(Ordering::Relaxed);
        let new = if old == 0 { ms } else { (old * 7 + ms) / 8 };
        self.avg_hold_ms.store(new, Ordering::Relaxed);
    }

    /// How long a slot is usually held (at least a second, as an estimate).
    pub fn typical_hold(&self) -> Duration {
        Duration::from_millis(self.avg_hold_ms.load(Ordering::Relaxed).max(1000))
    }

    /// Seconds until a request joining the queue now would likely be served.
    fn retry_after(&self) -> u64 {
        let hold = self.avg_hold_ms.load(Ordering::Relaxed).max(1000);
        let ahead = self.waiting() as u64 + 1;
        let cap = self.cap.max(1) as u64;
        (hold * ahead / cap / 1000).clamp(1, 600)
    }
}

/// One held concurrency slot. Dropping it frees the slot.
pub struct SlotPermit {
    permit: Option<OwnedSemaphorePermit>,
    since: Instant,
    stats: Arc<SlotStats>,
}

impl SlotPermit {
    /// A slot on `slots` if one is free now.
    pub fn try_take(slots: &Arc<Semaphore>, stats: &Arc<SlotStats>) -> Option<Self> {
        let permit = slots.clone().try_acquire_owned().ok()?;
        Some(Self::new(permit, stats.clone()))
    }

    fn new(permit: OwnedSemaphorePermit, stats: Arc<SlotStats>) -> Self {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            permit: Some(permit),
            since: Instant::now(),
            stats,
        }
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.stats.record_hold(self.since.elapsed());
        // Give the slot back before telling the scheduler about it.
        drop(self.permit.take());
        if let Some(pool) = &self.stats.pool {
            pool.slot_freed();
        }
    }
}

struct QueuePlace(Arc<SlotStats>);

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct UpstreamActor {
    account_label: Arc<str>,
    credentials: Credentials,
    profile: Profile,
    url: Arc<str>,
    uri: Option<actix_web::http::Uri>,
    ids: SessionIds,
    /// The profile's fixed headers, built once per credential change.
    fixed_headers: Vec<(HeaderName, HeaderValue)>,
    slots: Arc<Semaphore>,
    stats: Arc<SlotStats>,
    queue_size: usize,
    queue_timeout: Duration,
}

impl UpstreamActor {
    pub fn new(
        account_id: &str,
        credentials: Credentials,
        cap: usize,
        queue_size: usize,
        queue_timeout: Duration,
        pool: Option<Arc<PoolSignal>>,
    ) -> Self {
        let cap = cap.max(1);
        let stats = Arc::new(SlotStats {
            cap,
            pool,
            ..SlotStats::default()
        });
        let slots = Arc::new(Semaphore::new(cap));
        Self::with_slots(
            account_id,
            credentials,
            slots,
            stats,
            queue_size,
            queue_timeout,
        )
    }

    /// An actor for slots that already exist: the successor of an actor
    /// that died with its thread, so requests already holding a slot still
    /// count against the cap. It starts a new session.
    pub fn with_slots(
        account_id: &str,
        credentials: Credentials,
        slots: Arc<Semaphore>,
        stats: Arc<SlotStats>,
        queue_size: usize,
        queue_timeout: Duration,
    ) -> Self {
        let mut actor = Self {
            account_label: Arc::from(crate::secret::short_id(account_id)),
            profile: Profile::for_auth(credentials.auth_type),
            url: Arc::from(""),
            uri: None,
            credentials,
            ids: SessionIds::new(),
            fixed_headers: Vec::new(),
            slots,
            stats,
            queue_size,
            queue_timeout,
        };
        actor.prepare();
        actor
    }

    /// Derives what depends on the credentials: URL and fixed headers.
    fn prepare(&mut self) {
        self.profile = Profile::for_auth(self.credentials.auth_type);
        self.url = Arc::from(Profile::chat_url(&self.credentials.base_url));
        self.uri = self.url.parse().ok();
        self.fixed_headers = typed(self.profile.fixed_headers(&self.credentials, &self.ids));
    }

    pub fn stats(&self) -> Arc<SlotStats> {
        self.stats.clone()
    }

    /// The concurrency cap itself, for the pool scheduler.
    pub fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }

    fn lease(&mut self, permit: SlotPermit, starts_turn: bool) -> Lease {
        if starts_turn {
            self.ids.start_turn();
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        Lease {
            permit,
            account_label: self.account_label.clone(),
            profile: self.profile,
            credentials_auth: self.credentials.auth_type,
            url: self.url.clone(),
            uri: self.uri.clone(),
            headers: {
                let varying =
                    self.profile
                        .per_request_headers(&self.credentials, &self.ids, now_ms);
                let mut headers = Vec::with_capacity(self.fixed_headers.len() + varying.len());
                headers.extend(self.fixed_headers.iter().cloned());
                headers.extend(typed(varying));
                headers
            },
        }
    }
}

/// Header pairs as the HTTP client takes them; a value that is not a valid
/// header (a key with a newline, say) is left out rather than sent broken.
fn typed(pairs: Vec<(&'static str, String)>) -> Vec<(HeaderName, HeaderValue)> {
    pairs
        .into_iter()
        .filter_map(|(name, value)| {
            let value = HeaderValue::try_from(value).ok()?;
            Some((HeaderName::from_static(name), value))
        })
        .collect()
}

impl Actor for UpstreamActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Bursts of requests for one account must not be refused by the
        // mailbox before the queue policy even sees them.
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Acquire> for UpstreamActor {
    type Result = Result<Admission, GatewayError>;

    /// A free slot gives a signed lease; otherwise a queue place, or 429 when the queue is full.
    fn handle(&mut self, msg: Acquire, _ctx: &mut Self::Context) -> Self::Result {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            let permit = SlotPermit::new(permit, self.stats.clone());
            return Ok(Admission::Ready(self.lease(permit, msg.starts_turn)));
        }
        if self.stats.waiting() >= self.queue_size {
            return Err(GatewayError::QueueFull {
                account: self.account_label.to_string(),
                retry_after: self.stats.retry_after(),
            });
        }
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let place = QueuePlace(self.stats.clone());
        let slots = self.slots.clone();
        Ok(Admission::Queued(Ticket {
            wait: Box::pin(async move { slots.acquire_owned().await.ok() }),
            _place: place,
            stats: self.stats.clone(),
            timeout: self.queue_timeout,
            retry_after: self.stats.retry_after(),
        }))
    }
}

impl Handler<Sign> for UpstreamActor {
    type Result = MessageResult<Sign>;

    /// Signs a request whose slot was won after waiting.
    fn handle(&mut self, msg: Sign, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.lease(msg.permit, msg.starts_turn))
    }
}

impl Handler<UpdateCredentials> for UpstreamActor {
    type Result = ();

    /// Swaps in new credentials; the session id stays.
    fn handle(&mut self, msg: UpdateCredentials, _ctx: &mut Self::Context) {
        self.credentials = msg.0;
        self.prepare();
    }
}

impl Handler<Retire> for UpstreamActor {
    type Result = ();

    /// Stops taking requests, and wakes every waiter with "removed" instead
    /// of letting them time out. (Only here: an actor that dies with its
    /// thread leaves the slots to its successor.)
    fn handle(&mut self, _msg: Retire, ctx: &mut Self::Context) {
        self.slots.close();
        ctx.stop();
    }
}

#[cfg(test)]
mod tests;
