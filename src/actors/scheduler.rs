//! `SchedulerActor`: spreads gateway-key requests over the account pool.
//!
//! It picks the usable account (not cooling down, key not refused, serving
//! the model) with the fewest requests in flight, round robin among equals,
//! and takes one of its slots directly from the account's semaphore; the
//! account's `UpstreamActor` then signs the request. When every candidate is
//! at its cap the request waits in one FIFO queue (bounded in length and
//! time); a freed slot goes to the first waiter that can use it. A
//! conversation (the client's `user` field or session header) prefers the
//! account it used last while that account has room.
//!
//! The pick itself lives in [`PoolPicker`], shared with the HTTP workers:
//! while nobody waits in the queue, a worker picks for its request directly
//! (lock-free apart from the stickiness map), so the common case sends no
//! message to this actor's thread. Once anyone waits, every request goes
//! through the actor, so nobody passes the queue.

use crate::actors::registry::{AccountHandle, SharedDirectory};
use crate::actors::upstream::{PoolSignal, SlotFreed, SlotPermit};
use crate::error::GatewayError;
use actix::prelude::*;
use chrono::Utc;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Finds an account for a request.
#[derive(Message)]
#[rtype(result = "Result<PoolAdmission, GatewayError>")]
pub struct Pick {
    pub model: String,
    /// Conversation key for stickiness.
    pub affinity: Option<String>,
    /// Accounts that already failed this request.
    pub exclude: Vec<Arc<str>>,
}

/// A picked account with one of its slots.
pub type Picked = (Arc<AccountHandle>, SlotPermit);

pub enum PoolAdmission {
    Ready(Picked),
    Queued(PoolTicket),
}

/// A place in the pool queue. Dropping it gives the place up.
pub struct PoolTicket {
    rx: oneshot::Receiver<Result<Picked, GatewayError>>,
    pub timeout: Duration,
    pub retry_after: u64,
}

impl PoolTicket {
    pub async fn wait(self) -> Result<Picked, GatewayError> {
        let retry_after = self.retry_after;
        let waited = tokio::select! {
            waited = tokio::time::timeout(self.timeout, self.rx) => waited,
            () = crate::shutdown::signalled() => return Err(crate::shutdown::refusal()),
        };
        match waited {
            Ok(Ok(answer)) => answer,
            // The scheduler dropped the place: the wait is over either way.
            Ok(Err(_)) | Err(_) => Err(GatewayError::PoolBusy {
                retry_after,
                queued: true,
            }),
        }
    }
}

struct Waiter {
    model: String,
    affinity: Option<String>,
    exclude: Vec<Arc<str>>,
    tx: oneshot::Sender<Result<Picked, GatewayError>>,
    deadline: Instant,
}

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub queue_size: usize,
    pub queue_timeout: Duration,
    pub sticky: bool,
}

pub struct SchedulerActor {
    picker: Arc<PoolPicker>,
    settings: SchedulerSettings,
    queue: VecDeque<Waiter>,
}

/// The pick itself: which account, with which slot. Shared by the actor
/// (queued requests, and any request while others wait) and by the HTTP
/// workers, which pick for a request themselves while nobody waits
/// ([`PoolPicker::pick_now`]), without a message to the actor's thread.
pub struct PoolPicker {
    directory: SharedDirectory,
    signal: Arc<PoolSignal>,
    sticky: bool,
    cursor: AtomicUsize,
    affinity: Mutex<HashMap<String, (Arc<str>, Instant)>>,
}

/// Conversations remembered for stickiness, and for how long.
const AFFINITY_LIMIT: usize = 10_000;
const AFFINITY_TTL: Duration = Duration::from_secs(3600);

/// Why nobody can take a request, even by waiting.
enum NoAccount {
    None,
    NotForModel,
    Cooling(Duration),
}

impl NoAccount {
    fn into_error(self, model: &str) -> GatewayError {
        match self {
            NoAccount::None => GatewayError::Unavailable("no usable account in the pool".into()),
            NoAccount::NotForModel => GatewayError::InvalidRequest {
                message: format!("no account in the pool serves model {model:?}"),
                code: "model_not_available",
            },
            NoAccount::Cooling(left) => GatewayError::PoolCooling {
                retry_after: left.as_secs_f64().ceil().max(1.0) as u64,
            },
        }
    }
}

impl SchedulerActor {
    pub fn new(
        directory: SharedDirectory,
        signal: Arc<PoolSignal>,
        settings: SchedulerSettings,
    ) -> Self {
        Self {
            picker: Arc::new(PoolPicker {
                directory,
                signal,
                sticky: settings.sticky,
                cursor: AtomicUsize::new(0),
                affinity: Mutex::new(HashMap::new()),
            }),
            settings,
            queue: VecDeque::new(),
        }
    }

    /// The picker, for the HTTP workers' own picks.
    pub fn picker(&self) -> Arc<PoolPicker> {
        self.picker.clone()
    }
}

impl PoolPicker {
    /// Requests waiting in the pool queue.
    pub fn waiting(&self) -> usize {
        self.signal.waiting.load(Ordering::Relaxed)
    }

    /// A slot for a request right here, if nobody is waiting in the pool
    /// queue (a newcomer must not pass them) and an account has room now.
    /// `Ok(None)`: ask the scheduler, which queues the request.
    pub fn pick_now(
        &self,
        model: &str,
        affinity: Option<&str>,
        exclude: &[Arc<str>],
    ) -> Result<Option<Picked>, GatewayError> {
        if self.signal.waiting.load(Ordering::Relaxed) > 0 {
            return Ok(None);
        }
        let picked = self
            .try_pick(model, affinity, exclude)
            .map_err(|why| why.into_error(model))?;
        // Someone joined the queue while this pick ran: the slot may be the
        // one they are owed. Give it back (that wakes the scheduler, since
        // someone waits) and queue behind them.
        if picked.is_some() && self.signal.waiting.load(Ordering::Relaxed) > 0 {
            return Ok(None);
        }
        Ok(picked)
    }

    fn candidates(
        &self,
        model: &str,
        exclude: &[Arc<str>],
    ) -> Result<Vec<Arc<AccountHandle>>, NoAccount> {
        let dir = self.directory.load();
        let now = Utc::now();
        let serving: Vec<&Arc<AccountHandle>> = dir
            .handles()
            .iter()
            .filter(|h| h.serves(model) && !exclude.contains(&h.id))
            .collect();
        if serving.is_empty() {
            return Err(if dir.is_empty() {
                NoAccount::None
            } else {
                NoAccount::NotForModel
            });
        }
        let usable: Vec<Arc<AccountHandle>> = serving
            .iter()
            .filter(|h| h.health.usable(now))
            .map(|h| (*h).clone())
            .collect();
        if usable.is_empty() {
            let soonest = serving.iter().filter_map(|h| h.health.cooling(now)).min();
            return Err(soonest.map_or(NoAccount::None, NoAccount::Cooling));
        }
        Ok(usable)
    }

    /// Takes a slot on the best candidate, if one has room.
    fn try_pick(
        &self,
        model: &str,
        affinity: Option<&str>,
        exclude: &[Arc<str>],
    ) -> Result<Option<Picked>, NoAccount> {
        let candidates = self.candidates(model, exclude)?;
        // The conversation's account, while it is usable (and not excluded
        // by a failover of this request).
        let remembered = affinity
            .filter(|_| self.sticky)
            .and_then(|a| self.affinity().get(a).map(|(id, _)| id.clone()));
        let home = remembered.and_then(|id| candidates.iter().find(|h| h.id == id));
        if let Some(h) = home
            && let Some(permit) = SlotPermit::try_take(&h.slots, &h.stats)
        {
            let picked = (h.clone(), permit);
            if let Some(a) = affinity {
                self.remember(a, picked.0.id.clone());
            }
            return Ok(Some(picked));
        }
        // A busy home serves this one request elsewhere but stays the
        // conversation's account; one that is no longer usable is replaced.
        let rehome = home.is_none();
        let n = candidates.len();
        let start = self.cursor.load(Ordering::Relaxed) % n;
        let mut order: Vec<(usize, usize, usize)> = (0..n)
            .map(|i| {
                let idx = (start + i) % n;
                (candidates[idx].stats.in_flight(), i, idx)
            })
            .collect();
        order.sort_unstable();
        for (_, _, idx) in order {
            let h = &candidates[idx];
            if let Some(permit) = SlotPermit::try_take(&h.slots, &h.stats) {
                self.cursor.store(idx + 1, Ordering::Relaxed);
                if let Some(a) = affinity.filter(|_| self.sticky && rehome) {
                    self.remember(a, h.id.clone());
                }
                return Ok(Some((h.clone(), permit)));
            }
        }
        Ok(None)
    }

    fn remember(&self, conversation: &str, account: Arc<str>) {
        let mut map = self.affinity();
        if let Some(entry) = map.get_mut(conversation) {
            *entry = (account, Instant::now());
            return;
        }
        if map.len() >= AFFINITY_LIMIT {
            let cutoff = Instant::now() - AFFINITY_TTL;
            map.retain(|_, (_, t)| *t > cutoff);
            if map.len() >= AFFINITY_LIMIT {
                map.clear();
            }
        }
        map.insert(conversation.to_string(), (account, Instant::now()));
    }

    fn affinity(&self) -> MutexGuard<'_, HashMap<String, (Arc<str>, Instant)>> {
        self.affinity.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SchedulerActor {
    fn retry_after(&self) -> u64 {
        let dir = self.picker.directory.load();
        let cap: usize = dir.handles().iter().map(|h| h.stats.cap).sum();
        let hold = dir
            .handles()
            .iter()
            .map(|h| h.stats.typical_hold())
            .max()
            .unwrap_or(Duration::from_secs(1));
        let ahead = self.queue.len() as u64 + 1;
        (hold.as_secs().max(1) * ahead / cap.max(1) as u64).clamp(1, 600)
    }

    fn enqueue(&mut self, msg: Pick) -> Result<PoolAdmission, GatewayError> {
        if self.queue.len() >= self.settings.queue_size {
            return Err(GatewayError::PoolBusy {
                retry_after: self.retry_after(),
                queued: false,
            });
        }
        let (tx, rx) = oneshot::channel();
        let retry_after = self.retry_after();
        self.queue.push_back(Waiter {
            model: msg.model,
            affinity: msg.affinity,
            exclude: msg.exclude,
            tx,
            // A little after the client's own timer, which reports the timeout.
            deadline: Instant::now() + self.settings.queue_timeout + Duration::from_secs(1),
        });
        self.picker
            .signal
            .waiting
            .store(self.queue.len(), Ordering::Relaxed);
        // A slot freed between the last try and the waiting count going up
        // sent no wake-up: look once more now that freed slots will.
        self.serve_queue(false);
        Ok(PoolAdmission::Queued(PoolTicket {
            rx,
            timeout: self.settings.queue_timeout,
            retry_after,
        }))
    }

    /// Hands free slots to waiters, oldest first; drops waiters that left
    /// and fails those no account can take any more. Unless `full` (the
    /// periodic pass), it returns at once when no account has a free slot,
    /// so a saturated pool does not rescan its queue for every arrival.
    fn serve_queue(&mut self, full: bool) {
        let now = Instant::now();
        let any_room = self
            .picker
            .directory
            .load()
            .handles()
            .iter()
            .any(|h| h.slots.available_permits() > 0);
        if !full && !any_room {
            return;
        }
        let mut i = 0;
        while i < self.queue.len() {
            let outcome = {
                let w = &self.queue[i];
                if w.tx.is_closed() || w.deadline <= now {
                    None
                } else {
                    let (model, affinity, exclude) =
                        (w.model.clone(), w.affinity.clone(), w.exclude.clone());
                    Some(self.picker.try_pick(&model, affinity.as_deref(), &exclude))
                }
            };
            match outcome {
                // Left, or past its deadline.
                None => {
                    self.queue.remove(i);
                }
                Some(Ok(None)) => i += 1,
                Some(answer) => {
                    // A slot, or a reason no account will ever take it
                    // (all cooling, none left): either ends the wait now.
                    let answer = answer
                        .map_err(|why| why.into_error(&self.queue[i].model))
                        .and_then(|picked| picked.ok_or(GatewayError::Internal("no slot".into())));
                    if let Some(w) = self.queue.remove(i) {
                        // A waiter that left meanwhile drops the permit again.
                        let _ = w.tx.send(answer);
                    }
                }
            }
        }
        self.picker
            .signal
            .waiting
            .store(self.queue.len(), Ordering::Relaxed);
    }
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.picker.signal.connect(ctx.address().recipient());
        // Cooldowns end and waiters leave without any slot being freed.
        ctx.run_interval(Duration::from_millis(250), |act, _| {
            if !act.queue.is_empty() {
                act.serve_queue(true);
            }
        });
    }
}

impl Handler<Pick> for SchedulerActor {
    type Result = Result<PoolAdmission, GatewayError>;

    /// A slot now, a place in the queue, or the reason there is none.
    fn handle(&mut self, msg: Pick, _ctx: &mut Self::Context) -> Self::Result {
        // Nobody jumps the queue while others wait: waiters take every free
        // slot they can use first. A slot left free after that is one no
        // waiter can use (another model's account), so the newcomer may.
        if !self.queue.is_empty() {
            self.serve_queue(false);
        }
        // A request no account can ever take is refused now, not after a
        // wait in the queue.
        match self
            .picker
            .try_pick(&msg.model, msg.affinity.as_deref(), &msg.exclude)
        {
            Ok(Some(picked)) => return Ok(PoolAdmission::Ready(picked)),
            Ok(None) => {}
            Err(why) => return Err(why.into_error(&msg.model)),
        }
        self.enqueue(msg)
    }
}

impl Handler<SlotFreed> for SchedulerActor {
    type Result = ();

    /// Gives the freed slot to the first waiter that can use it.
    fn handle(&mut self, _msg: SlotFreed, _ctx: &mut Self::Context) {
        if !self.queue.is_empty() {
            self.serve_queue(false);
        }
    }
}

#[cfg(test)]
mod tests;
