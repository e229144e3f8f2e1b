//! `StoreWorker`: the one thread where account-file I/O happens. Started as a
//! `SyncArbiter` with a single thread, so jobs run in the order they were sent
//! and never block an async actor or an HTTP worker.

use crate::store::AccountStore;
use actix::prelude::*;

/// A piece of blocking store work; its result goes back to the sender.
pub struct StoreJob<R>(Box<dyn FnOnce(&AccountStore) -> R + Send>);

impl<R> StoreJob<R> {
    pub fn new(job: impl FnOnce(&AccountStore) -> R + Send + 'static) -> Self {
        Self(Box::new(job))
    }
}

impl<R: Send + 'static> Message for StoreJob<R> {
    type Result = R;
}

pub struct StoreWorker {
    store: AccountStore,
}

impl StoreWorker {
    /// Starts the worker thread.
    pub fn start(store: AccountStore) -> Addr<Self> {
        SyncArbiter::start(1, move || StoreWorker {
            store: store.clone(),
        })
    }
}

impl Actor for StoreWorker {
    type Context = SyncContext<Self>;
}

impl<R: Send + 'static> Handler<StoreJob<R>> for StoreWorker {
    type Result = MessageResult<StoreJob<R>>;

    /// Runs the job on the store.
    fn handle(&mut self, job: StoreJob<R>, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult((job.0)(&self.store))
    }
}
