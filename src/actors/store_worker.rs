//! `StoreWorker`: the one thread where store file I/O happens. Started as a
//! `SyncArbiter` with a single thread, so jobs run in the order they were sent
//! and never block an async actor or an HTTP worker.

use crate::store::{AccountStore, KeyStore, StoreError, UsageStore};
use actix::prelude::*;
use std::path::Path;

/// The file stores under one data directory.
#[derive(Debug, Clone)]
pub struct Stores {
    pub accounts: AccountStore,
    pub keys: KeyStore,
    pub usage: UsageStore,
}

impl Stores {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            accounts: AccountStore::open(data_dir)?,
            keys: KeyStore::open(data_dir)?,
            usage: UsageStore::open(data_dir)?,
        })
    }
}

/// A piece of blocking store work; its result goes back to the sender.
pub struct StoreJob<R>(Box<dyn FnOnce(&Stores) -> R + Send>);

impl<R> StoreJob<R> {
    pub fn new(job: impl FnOnce(&Stores) -> R + Send + 'static) -> Self {
        Self(Box::new(job))
    }
}

impl<R: Send + 'static> Message for StoreJob<R> {
    type Result = R;
}

pub struct StoreWorker {
    stores: Stores,
}

impl StoreWorker {
    /// Starts the worker thread.
    pub fn start(stores: Stores) -> Addr<Self> {
        SyncArbiter::start(1, move || StoreWorker {
            stores: stores.clone(),
        })
    }
}

impl Actor for StoreWorker {
    type Context = SyncContext<Self>;
}

impl<R: Send + 'static> Handler<StoreJob<R>> for StoreWorker {
    type Result = MessageResult<StoreJob<R>>;

    /// Runs the job on the stores.
    fn handle(&mut self, job: StoreJob<R>, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult((job.0)(&self.stores))
    }
}
