//! One refresh of one account, start to end, under the account's refresh
//! lock: iFlow rotates refresh tokens, so two processes spending the same
//! one would leave the slower with `invalid_grant` on a healthy login.
//!
//! 1. Note the tokens this process believes current.
//! 2. Take the lock (off the actor thread; bounded wait).
//! 3. Re-read the file. Unreadable: stop before the token endpoint, since
//!    new tokens could not be saved. Tokens changed since step 1: another
//!    process refreshed (or logged in) meanwhile; take its tokens.
//! 4. Token endpoint, user info, save; or, on `invalid_grant`, mark
//!    needs-login if the rejected token is still the stored one.
//! 5. Release the lock.

use super::{REFRESH_LOCK_WAIT, RefreshError, RefreshOutcome};
use crate::actors::registry::{
    AccountRegistry, ApplyRefresh, GetAccount, MarkNeedsLogin, ReloadAccount,
};
use crate::oauth::OAuthError;
use crate::oauth::client::OAuthClient;
use crate::secret::short_id;
use crate::store::{Account, AccountStore, AuthType, NamedLock, StoreError};
use actix::prelude::*;
use std::rc::Rc;

pub(super) async fn refresh_once(
    registry: Addr<AccountRegistry>,
    accounts: AccountStore,
    client: Rc<OAuthClient>,
    uuid: String,
) -> Result<RefreshOutcome, RefreshError> {
    let known = registry
        .send(GetAccount(uuid.clone()))
        .await
        .map_err(|e| RefreshError::Store(e.to_string()))?;
    let lock = take_lock(accounts, uuid.clone()).await?;
    if lock.waited {
        log::debug!(
            "account {}: waited for another process's refresh",
            short_id(&uuid)
        );
    }
    let result = refresh_locked(&registry, &client, &uuid, known).await;
    // Removing the lock file is file I/O too: not on the actor thread.
    let _ = actix_web::rt::task::spawn_blocking(move || drop(lock)).await;
    result
}

async fn take_lock(accounts: AccountStore, uuid: String) -> Result<NamedLock, RefreshError> {
    let label = short_id(&uuid).to_string();
    let taken = actix_web::rt::task::spawn_blocking(move || {
        accounts.refresh_lock(&uuid, REFRESH_LOCK_WAIT)
    })
    .await
    .map_err(|e| RefreshError::Store(format!("refresh lock: {e}")))?;
    match taken {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(RefreshError::Busy(label)),
        Err(e) => Err(RefreshError::Store(e.to_string())),
    }
}

/// Steps 3 and 4, with the lock held.
async fn refresh_locked(
    registry: &Addr<AccountRegistry>,
    client: &OAuthClient,
    uuid: &str,
    known: Option<Account>,
) -> Result<RefreshOutcome, RefreshError> {
    let label = || short_id(uuid).to_string();
    let account = match registry.send(ReloadAccount(uuid.to_string())).await {
        Ok(Ok(Some(account))) => account,
        Ok(Ok(None)) => return Err(RefreshError::NotFound(label())),
        Ok(Err(StoreError::Corrupt { reason, .. })) => {
            return Err(RefreshError::Unreadable {
                account: label(),
                reason,
            });
        }
        Ok(Err(e @ StoreError::Io { .. })) => {
            return Err(RefreshError::Unreadable {
                account: label(),
                reason: e.to_string(),
            });
        }
        Ok(Err(e)) => return Err(RefreshError::Store(e.to_string())),
        Err(e) => return Err(RefreshError::Store(e.to_string())),
    };
    if account.auth_type != AuthType::OAuthIflow || account.oauth_refresh_token.is_empty() {
        return Err(RefreshError::NotOAuth(label()));
    }
    if let Some(known) = known.filter(|k| tokens_changed(k, &account)) {
        // The reload made them live already (and pushed a new key).
        log::info!(
            "account {}: tokens were renewed by another process; using those",
            label()
        );
        return Ok(RefreshOutcome {
            expires_at: account.oauth_expires_at,
            key_rotated: known.api_key != account.api_key,
            adopted: true,
        });
    }
    let tokens = match client.refresh(&account.oauth_refresh_token).await {
        Ok(tokens) => tokens,
        Err(e @ OAuthError::InvalidGrant(_)) => {
            // The handler logs the failure (server) or the command prints it (CLI).
            log::debug!(
                "account {}: refresh token rejected; needs `token login`",
                label()
            );
            let _ = registry
                .send(MarkNeedsLogin {
                    uuid: uuid.to_string(),
                    rejected: account.oauth_refresh_token.clone(),
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
                label()
            );
            None
        }
    };
    let key_rotated = new_key.is_some();
    let stored = registry
        .send(ApplyRefresh {
            uuid: uuid.to_string(),
            tokens,
            api_key: new_key,
        })
        .await
        .map_err(|e| RefreshError::Store(e.to_string()))?
        .map_err(|e| RefreshError::Store(e.to_string()))?;
    log::info!(
        "account {}: tokens refreshed, valid until {}{}",
        label(),
        stored
            .oauth_expires_at
            .map_or_else(|| "unknown".into(), |t| t.to_rfc3339()),
        if key_rotated { ", API key rotated" } else { "" }
    );
    Ok(RefreshOutcome {
        expires_at: stored.oauth_expires_at,
        key_rotated,
        adopted: false,
    })
}

/// Whether the file holds other tokens than this process knew: spent and
/// replaced by another process, or replaced by a login or import.
fn tokens_changed(known: &Account, now: &Account) -> bool {
    known.oauth_refresh_token != now.oauth_refresh_token
        || known.oauth_access_token != now.oauth_access_token
}
