//! Registry messages a token refresh needs: the account as it is on disk,
//! the refreshed tokens, the compare-and-set that marks a dead login, and
//! which accounts some process is refreshing right now.

use super::accounts::set_tokens;
use super::{AccountRegistry, worker_gone};
use crate::actors::store_worker::StoreJob;
use crate::oauth::TokenSet;
use crate::secret::Secret;
use crate::store::{Account, AccountState, StoreError};
use actix::prelude::*;
use chrono::Utc;
use std::collections::HashSet;

/// The account as its file says now, made live: what a refresh must start
/// from, since another process may have spent the refresh token the registry
/// holds. `Ok(None)` when the file is gone; an error when it cannot be read,
/// so that no refresh token is spent on tokens that could not be saved.
#[derive(Message)]
#[rtype(result = "Result<Option<Account>, StoreError>")]
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

/// Marks the account `needs-login` after iFlow rejected `rejected`, but only
/// if that is still the refresh token on disk: a login or import that stored
/// new tokens meanwhile must not be marked dead.
#[derive(Message)]
#[rtype(result = "Result<Account, StoreError>")]
pub struct MarkNeedsLogin {
    pub uuid: String,
    pub rejected: Secret,
}

/// Which of the registry's accounts some process (this one included) is
/// refreshing now, from the refresh locks; never waits for one.
#[derive(Message)]
#[rtype(result = "HashSet<String>")]
pub struct RefreshingNow;

impl Handler<ReloadAccount> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<Option<Account>, StoreError>>;

    /// Re-reads one account file and applies it to the live account.
    fn handle(&mut self, msg: ReloadAccount, _ctx: &mut Self::Context) -> Self::Result {
        let uuid = msg.0;
        let job = StoreJob::new(move |stores| stores.accounts.load(&uuid));
        Box::pin(self.worker.send(job).into_actor(self).map(|res, act, _| {
            let found = res.map_err(worker_gone)??;
            if let Some(account) = &found {
                act.upsert(account.clone());
                act.publish();
            }
            Ok(found)
        }))
    }
}

impl Handler<ApplyRefresh> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<Account, StoreError>>;

    /// Writes new tokens (and key), clears the state, updates the actor.
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

impl Handler<MarkNeedsLogin> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<Account, StoreError>>;

    /// Writes `needs-login` if the rejected refresh token is still the stored one.
    fn handle(&mut self, msg: MarkNeedsLogin, _ctx: &mut Self::Context) -> Self::Result {
        self.modify_account_if(msg.uuid, move |a| {
            let still_dead = a.oauth_refresh_token == msg.rejected;
            if !still_dead {
                log::info!(
                    "account {}: a rejected refresh token was already replaced; not marking needs-login",
                    crate::secret::short_id(&a.uuid)
                );
            }
            if !still_dead || a.state == Some(AccountState::NeedsLogin) {
                return false;
            }
            a.state = Some(AccountState::NeedsLogin);
            a.updated_at = Some(Utc::now());
            true
        })
    }
}

impl Handler<RefreshingNow> for AccountRegistry {
    type Result = ResponseFuture<HashSet<String>>;

    /// Tries each account's refresh lock on the store thread.
    fn handle(&mut self, _msg: RefreshingNow, _ctx: &mut Self::Context) -> Self::Result {
        let uuids: Vec<String> = self.entries.keys().cloned().collect();
        let job = StoreJob::new(move |stores| {
            uuids
                .into_iter()
                .filter(|uuid| stores.accounts.refreshing(uuid))
                .collect::<HashSet<String>>()
        });
        let ask = self.worker.send(job);
        Box::pin(async move { ask.await.unwrap_or_default() })
    }
}
