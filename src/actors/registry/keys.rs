//! Gateway-key messages of the registry: create, list, revoke.

use super::{AccountRegistry, worker_gone};
use crate::actors::store_worker::StoreJob;
use crate::secret::Secret;
use crate::store::{GatewayKey, KeySpec, StoreError};
use actix::prelude::*;
use chrono::Utc;

/// Creates a key; the plain key is in the answer and nowhere else.
#[derive(Message)]
#[rtype(result = "Result<(GatewayKey, Secret), StoreError>")]
pub struct CreateKey(pub KeySpec);

/// Every key, revoked ones included.
#[derive(Message)]
#[rtype(result = "Vec<GatewayKey>")]
pub struct ListKeys;

/// The key files the last scan could not use: file name and reason.
#[derive(Message)]
#[rtype(result = "Vec<(String, String)>")]
pub struct UnreadableKeys;

/// Revokes a key by id (or a unique start of its id or prefix).
#[derive(Message)]
#[rtype(result = "Result<GatewayKey, StoreError>")]
pub struct RevokeKey(pub String);

impl Handler<CreateKey> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<(GatewayKey, Secret), StoreError>>;

    /// Generates, stores (hashed) and publishes a key.
    fn handle(&mut self, msg: CreateKey, _ctx: &mut Self::Context) -> Self::Result {
        let job = StoreJob::new(move |stores| {
            let (key, plain) = GatewayKey::generate(msg.0, Utc::now())?;
            stores.keys.create(&key)?;
            Ok((key, plain))
        });
        Box::pin(self.worker.send(job).into_actor(self).map(|res, act, _| {
            let (key, plain) = res.map_err(worker_gone)??;
            act.keys.push(key.clone());
            act.publish();
            Ok((key, plain))
        }))
    }
}

impl Handler<ListKeys> for AccountRegistry {
    type Result = MessageResult<ListKeys>;

    /// The keys as last read or written.
    fn handle(&mut self, _msg: ListKeys, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.keys.clone())
    }
}

impl Handler<UnreadableKeys> for AccountRegistry {
    type Result = MessageResult<UnreadableKeys>;

    fn handle(&mut self, _msg: UnreadableKeys, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.key_problems
                .iter()
                .map(|(path, reason)| {
                    let name = path.file_name().map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    (name, reason.clone())
                })
                .collect(),
        )
    }
}

impl Handler<RevokeKey> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<GatewayKey, StoreError>>;

    /// Marks the key revoked on disk and drops it from the directory.
    fn handle(&mut self, msg: RevokeKey, _ctx: &mut Self::Context) -> Self::Result {
        let job = StoreJob::new(move |stores| stores.keys.revoke(&msg.0, Utc::now()));
        Box::pin(self.worker.send(job).into_actor(self).map(|res, act, _| {
            let key = res.map_err(worker_gone)??;
            match act.keys.iter_mut().find(|k| k.id == key.id) {
                Some(k) => *k = key.clone(),
                None => act.keys.push(key.clone()),
            }
            act.publish();
            Ok(key)
        }))
    }
}
