//! Where the account actors run: on the HTTP workers' own threads.
//!
//! Every request asks its account's [`UpstreamActor`] for a slot. When that
//! actor runs on the thread of the worker serving the request, the message
//! and its answer stay on that thread: no other thread is woken, nothing
//! crosses cores. With one worker no request ever leaves its thread; with
//! several, a request reaches another worker's thread only when its account
//! lives there (accounts are spread over the workers in turn).
//!
//! Each HTTP worker registers its arbiter as it starts, and again when actix
//! restarts a worker that failed. Actors are placed on a registered arbiter;
//! an arbiter that has stopped is skipped and forgotten. An actor made
//! before any worker is up waits, with its mailbox already open, until the
//! registry hears of the first one (see `PlaceActors`).
//!
//! [`UpstreamActor`]: crate::actors::upstream::UpstreamActor

use actix::dev::channel::AddressReceiver;
use actix::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;

/// The arbiters actors may be placed on. Cheap to clone; shared by the HTTP
/// server's worker factory (which registers) and the registry (which places).
#[derive(Clone, Default)]
pub struct Homes {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    arbiters: Mutex<Vec<(ThreadId, ArbiterHandle)>>,
    next: AtomicUsize,
}

/// An actor with its mailbox, not started yet.
pub type Unplaced<A> = (A, AddressReceiver<A>);

impl Homes {
    /// Registers the calling thread's arbiter (an HTTP worker starting).
    /// Returns false if it was registered already (the worker factory runs
    /// once per listening address).
    pub fn register_current(&self) -> bool {
        let me = std::thread::current().id();
        let mut arbiters = self.arbiters();
        if arbiters.iter().any(|(id, _)| *id == me) {
            return false;
        }
        arbiters.push((me, Arbiter::current()));
        true
    }

    /// How many arbiters are registered (stopped ones included until a
    /// placement finds them stopped).
    pub fn len(&self) -> usize {
        self.arbiters().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts `actor` on the next registered arbiter that is still running.
    /// Gives it back when there is none.
    pub fn start<A>(&self, actor: A, mailbox: AddressReceiver<A>) -> Result<(), Unplaced<A>>
    where
        A: Actor<Context = Context<A>> + Send,
    {
        let mut parcel = (actor, mailbox);
        loop {
            let Some((id, home)) = self.pick() else {
                return Err(parcel);
            };
            match Self::start_on(&home, parcel.0, parcel.1) {
                Ok(()) => return Ok(()),
                Err(back) => {
                    parcel = back;
                    self.forget(id);
                }
            }
        }
    }

    /// Starts `actor` on `home`; gives it back if that arbiter has stopped.
    pub fn start_on<A>(
        home: &ArbiterHandle,
        actor: A,
        mailbox: AddressReceiver<A>,
    ) -> Result<(), Unplaced<A>>
    where
        A: Actor<Context = Context<A>> + Send,
    {
        // The closure handed to an arbiter is dropped unrun if the arbiter
        // has stopped; the actor must survive that to go elsewhere.
        let parcel = Arc::new(Mutex::new(Some((actor, mailbox))));
        let inside = parcel.clone();
        let sent = home.spawn_fn(move || {
            let taken = inside.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some((actor, mailbox)) = taken {
                Context::with_receiver(mailbox).run(actor);
            }
        });
        if sent {
            return Ok(());
        }
        // Not sent, so never run: the actor is still in the parcel.
        match parcel.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(back) => Err(back),
            None => Ok(()),
        }
    }

    fn pick(&self) -> Option<(ThreadId, ArbiterHandle)> {
        let arbiters = self.arbiters();
        if arbiters.is_empty() {
            return None;
        }
        let turn = self.inner.next.fetch_add(1, Ordering::Relaxed) % arbiters.len();
        Some(arbiters[turn].clone())
    }

    fn forget(&self, id: ThreadId) {
        log::debug!("a stopped HTTP worker's arbiter was dropped from the actor homes");
        self.arbiters().retain(|(known, _)| *known != id);
    }

    fn arbiters(&self) -> std::sync::MutexGuard<'_, Vec<(ThreadId, ArbiterHandle)>> {
        self.inner
            .arbiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new actor's address with its mailbox, before the actor is started.
pub fn mailbox<A: Actor>() -> (Addr<A>, AddressReceiver<A>) {
    // actix's own default mailbox size; the actor may raise it once started.
    let (tx, rx) = actix::dev::channel::channel(16);
    (Addr::new(tx), rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Actor for Echo {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "std::thread::ThreadId")]
    struct WhereAreYou;

    impl Handler<WhereAreYou> for Echo {
        type Result = MessageResult<WhereAreYou>;

        fn handle(&mut self, _: WhereAreYou, _: &mut Context<Self>) -> Self::Result {
            MessageResult(std::thread::current().id())
        }
    }

    /// Registers a new arbiter's thread and returns the arbiter and its id.
    async fn worker(homes: &Homes) -> (Arbiter, ThreadId) {
        let arbiter = Arbiter::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let registering = homes.clone();
        arbiter.spawn_fn(move || {
            assert!(registering.register_current());
            assert!(!registering.register_current(), "registered twice");
            let _ = tx.send(std::thread::current().id());
        });
        (arbiter, rx.await.unwrap())
    }

    #[actix::test]
    async fn actors_run_on_the_registered_arbiters_in_turn() {
        let homes = Homes::default();
        let (a, a_id) = worker(&homes).await;
        let (b, b_id) = worker(&homes).await;
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (addr, rx) = mailbox::<Echo>();
            assert!(homes.start(Echo, rx).is_ok());
            seen.push(addr.send(WhereAreYou).await.unwrap());
        }
        assert_eq!(seen, vec![a_id, b_id, a_id, b_id]);
        a.stop();
        b.stop();
    }

    #[actix::test]
    async fn without_a_home_the_actor_comes_back_and_its_mail_waits() {
        let homes = Homes::default();
        let (addr, rx) = mailbox::<Echo>();
        let (actor, rx) = homes.start(Echo, rx).expect_err("no home yet");
        // A message sent before the actor runs is kept for it.
        let asked = addr.send(WhereAreYou);
        let (arbiter, id) = worker(&homes).await;
        assert!(homes.start(actor, rx).is_ok());
        assert_eq!(asked.await.unwrap(), id);
        arbiter.stop();
    }

    #[actix::test]
    async fn a_stopped_arbiter_is_skipped_and_forgotten() {
        let homes = Homes::default();
        let (gone, _) = worker(&homes).await;
        let (alive, alive_id) = worker(&homes).await;
        gone.stop();
        gone.join().unwrap();
        for _ in 0..3 {
            let (addr, rx) = mailbox::<Echo>();
            assert!(homes.start(Echo, rx).is_ok());
            assert_eq!(addr.send(WhereAreYou).await.unwrap(), alive_id);
        }
        assert_eq!(homes.len(), 1);
        alive.stop();
    }
}
