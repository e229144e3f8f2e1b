//! Account messages of the registry: lookup, import, states and
//! cooldowns, listing (with the files that cannot be read), deletion,
//! rescans. What a refresh needs is in `refresh.rs`.

use super::{AccountRegistry, AccountSummary, Lookup, Principal, worker_gone};
use crate::actors::store_worker::StoreJob;
use crate::oauth::TokenSet;
use crate::secret::Secret;
use crate::store::keys::KEY_PREFIX;
use crate::store::{Account, AccountState, AuthType, StoreError};
use actix::prelude::*;
use chrono::{DateTime, Utc};

/// Finds who a bearer token belongs to, re-reading the disk for an unknown
/// gateway key or account uuid (one added by the CLI a moment ago).
#[derive(Message)]
#[rtype(result = "Option<Principal>")]
pub struct Resolve {
    pub token: String,
    /// Whether an account uuid may be used as a bearer token.
    pub accounts: bool,
}

/// Adds an account for an API key, or updates the one that has it.
#[derive(Message)]
#[rtype(result = "Result<(AccountSummary, bool), StoreError>")]
pub struct ImportAccount {
    pub api_key: Secret,
    /// `None` keeps the account's own (a login: the base URL is not part
    /// of it), or gives a new account iFlow's.
    pub base_url: Option<String>,
    pub auth_type: AuthType,
    /// OAuth tokens of a login; `None` for a bare key.
    pub tokens: Option<TokenSet>,
    /// Models served in the pool; `None` keeps what the account has.
    pub models: Option<Vec<String>>,
}

/// The stored account, as the registry knows it.
#[derive(Message)]
#[rtype(result = "Option<Account>")]
pub struct GetAccount(pub String);

/// Records (or clears) a state that needs the user.
#[derive(Message)]
#[rtype(result = "Result<Account, StoreError>")]
pub struct SetState {
    pub uuid: String,
    pub state: Option<AccountState>,
}

/// Persists a cooldown already applied in memory.
#[derive(Message)]
#[rtype(result = "Result<Account, StoreError>")]
pub struct SetCooldown {
    pub uuid: String,
    pub until: DateTime<Utc>,
}

/// `token reset`: clears cooldown and state.
#[derive(Message)]
#[rtype(result = "Result<Account, StoreError>")]
pub struct ResetAccount(pub String);

/// Every account, with usage not yet flushed included.
#[derive(Message)]
#[rtype(result = "Vec<AccountSummary>")]
pub struct ListAccounts;

/// Account files the last scan could not use: `(uuid from the file name,
/// reason)`, by file name.
#[derive(Message)]
#[rtype(result = "Vec<(String, String)>")]
pub struct ListUnreadable;

/// Removes an account file and its actor.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteAccount(pub String);

/// Re-reads the stores to pick up changes made by other processes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Rescan;

impl AccountRegistry {
    fn find(&self, token: &str, accounts: bool) -> Option<Principal> {
        match self.directory.load().lookup(token) {
            Lookup::Key(key) => Some(Principal::Key(key)),
            Lookup::Account(handle) if accounts => Some(Principal::Account(handle)),
            _ => None,
        }
    }

    /// Runs a read-modify-write of one account file, then makes the live
    /// account (and its upstream actor) match what was written.
    pub(super) fn modify_account<F>(
        &mut self,
        uuid: String,
        change: F,
    ) -> ResponseActFuture<Self, Result<Account, StoreError>>
    where
        F: FnOnce(&mut Account) + Send + 'static,
    {
        self.modify_account_if(uuid, move |a| {
            change(a);
            true
        })
    }

    /// [`AccountRegistry::modify_account`] that writes only when `change`
    /// returns true; the live account then matches the file either way.
    pub(super) fn modify_account_if<F>(
        &mut self,
        uuid: String,
        change: F,
    ) -> ResponseActFuture<Self, Result<Account, StoreError>>
    where
        F: FnOnce(&mut Account) -> bool + Send + 'static,
    {
        let job = StoreJob::new(move |stores| stores.accounts.modify_if(&uuid, change));
        Box::pin(self.worker.send(job).into_actor(self).map(|res, act, _| {
            let account = res.map_err(worker_gone)??;
            act.upsert(account.clone());
            act.publish();
            Ok(account)
        }))
    }
}

impl Handler<Resolve> for AccountRegistry {
    type Result = ResponseActFuture<Self, Option<Principal>>;

    /// Known tokens answer at once; unknown ones are looked for on disk.
    fn handle(&mut self, msg: Resolve, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(found) = self.find(&msg.token, msg.accounts) {
            return Box::pin(fut::ready(Some(found)));
        }
        let is_key = msg.token.starts_with(KEY_PREFIX);
        let is_uuid = msg.accounts && uuid::Uuid::parse_str(&msg.token).is_ok();
        if !(is_key || is_uuid) || !self.miss_check_allowed() {
            return Box::pin(fut::ready(None));
        }
        let token = msg.token;
        let accounts = msg.accounts;
        let lookup = token.clone();
        let job = StoreJob::new(move |stores| {
            if is_key {
                stores.keys.scan().map(|(keys, _)| (Some(keys), None))
            } else {
                stores.accounts.load(&lookup).map(|a| (None, a))
            }
        });
        Box::pin(
            self.worker
                .send(job)
                .into_actor(self)
                .map(move |res, act, _| {
                    let (keys, account) = res.ok()?.ok()?;
                    if let Some(keys) = keys {
                        act.keys = keys;
                    }
                    if let Some(account) = account {
                        act.upsert(account);
                    }
                    act.publish();
                    act.find(&token, accounts)
                }),
        )
    }
}

impl Handler<ImportAccount> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<(AccountSummary, bool), StoreError>>;

    /// Creates or updates the account holding this key.
    fn handle(&mut self, msg: ImportAccount, _ctx: &mut Self::Context) -> Self::Result {
        let base_url = msg
            .base_url
            .clone()
            .unwrap_or_else(|| crate::store::DEFAULT_IFLOW_BASE_URL.to_string());
        let template = Account::new(msg.api_key, base_url, msg.auth_type, Utc::now());
        let job = StoreJob::new(move |stores| {
            stores.accounts.upsert_by_api_key(template, |a| {
                if let Some(base_url) = msg.base_url {
                    a.base_url = base_url;
                }
                // A bare re-import of an OAuth login's key keeps the login.
                let keep_login = msg.tokens.is_none()
                    && msg.auth_type == AuthType::Iflow
                    && a.auth_type == AuthType::OAuthIflow
                    && !a.oauth_refresh_token.is_empty();
                if !keep_login {
                    a.auth_type = msg.auth_type;
                }
                match msg.tokens {
                    Some(tokens) => set_tokens(a, tokens),
                    None if a.auth_type != AuthType::OAuthIflow => {
                        a.oauth_access_token = Secret::default();
                        a.oauth_refresh_token = Secret::default();
                        a.oauth_expires_at = None;
                    }
                    None => {}
                }
                if let Some(models) = msg.models {
                    a.models = models;
                }
                // New credentials: whatever was wrong with the old ones is
                // moot, here and in a running server (reset_at).
                let now = Utc::now();
                a.state = None;
                a.cooldown_until = None;
                a.reset_at = Some(now);
                a.updated_at = Some(now);
            })
        });
        Box::pin(self.worker.send(job).into_actor(self).map(|res, act, _| {
            let (account, created) = res.map_err(worker_gone)??;
            let uuid = account.uuid.clone();
            act.upsert(account);
            act.publish();
            let entry = act
                .entries
                .get(&uuid)
                .ok_or_else(|| StoreError::NotFound(uuid.clone()))?;
            Ok((act.summary(entry), created))
        }))
    }
}

pub(super) fn set_tokens(a: &mut Account, tokens: TokenSet) {
    a.oauth_access_token = tokens.access_token;
    if let Some(refresh) = tokens.refresh_token {
        a.oauth_refresh_token = refresh;
    }
    a.oauth_expires_at = tokens.expires_at;
}

impl Handler<GetAccount> for AccountRegistry {
    type Result = Option<Account>;

    /// A copy of the live account.
    fn handle(&mut self, msg: GetAccount, _ctx: &mut Self::Context) -> Self::Result {
        self.entries.get(&msg.0).map(|e| e.account.clone())
    }
}

impl Handler<SetState> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<Account, StoreError>>;

    /// Persists the account's state (no write when it is already so).
    fn handle(&mut self, msg: SetState, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(entry) = self.entries.get(&msg.uuid)
            && entry.account.state == msg.state
        {
            return Box::pin(fut::ready(Ok(entry.account.clone())));
        }
        self.modify_account(msg.uuid, move |a| {
            // A key refused after the refresh token died is that dead login:
            // needs-login says what to do and keeps the refresher off it.
            if msg.state == Some(AccountState::KeyInvalid)
                && a.state == Some(AccountState::NeedsLogin)
            {
                return;
            }
            a.state = msg.state;
            a.updated_at = Some(Utc::now());
        })
    }
}

impl Handler<SetCooldown> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<Account, StoreError>>;

    /// Persists a cooldown unless the file already holds one as long.
    fn handle(&mut self, msg: SetCooldown, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(entry) = self.entries.get(&msg.uuid)
            && entry.account.cooldown_until >= Some(msg.until)
        {
            return Box::pin(fut::ready(Ok(entry.account.clone())));
        }
        self.modify_account(msg.uuid, move |a| {
            a.cooldown_until = a.cooldown_until.max(Some(msg.until));
        })
    }
}

impl Handler<ResetAccount> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<Account, StoreError>>;

    /// Clears cooldown and state, so the pool uses the account again.
    fn handle(&mut self, msg: ResetAccount, _ctx: &mut Self::Context) -> Self::Result {
        self.modify_account(msg.0, |a| {
            let now = Utc::now();
            a.cooldown_until = None;
            a.state = None;
            a.reset_at = Some(now);
            a.updated_at = Some(now);
        })
    }
}

impl Handler<ListAccounts> for AccountRegistry {
    type Result = MessageResult<ListAccounts>;

    /// Summaries, oldest account first.
    fn handle(&mut self, _msg: ListAccounts, _ctx: &mut Self::Context) -> Self::Result {
        let mut list: Vec<AccountSummary> =
            self.entries.values().map(|e| self.summary(e)).collect();
        list.sort_by(|a, b| {
            (a.account.created_at, &a.account.uuid).cmp(&(b.account.created_at, &b.account.uuid))
        });
        MessageResult(list)
    }
}

impl Handler<ListUnreadable> for AccountRegistry {
    type Result = MessageResult<ListUnreadable>;

    /// The broken files of the last scan; they are never opened for writing.
    fn handle(&mut self, _msg: ListUnreadable, _ctx: &mut Self::Context) -> Self::Result {
        let mut list: Vec<(String, String)> = self
            .problems
            .iter()
            .map(|(path, reason)| {
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                (stem.unwrap_or_default(), reason.clone())
            })
            .collect();
        list.sort();
        MessageResult(list)
    }
}

impl Handler<DeleteAccount> for AccountRegistry {
    type Result = ResponseActFuture<Self, Result<bool, StoreError>>;

    /// Deletes the file, then retires the actor.
    fn handle(&mut self, msg: DeleteAccount, _ctx: &mut Self::Context) -> Self::Result {
        let uuid = msg.0;
        let job_uuid = uuid.clone();
        let job = StoreJob::new(move |stores| stores.accounts.delete(&job_uuid));
        Box::pin(
            self.worker
                .send(job)
                .into_actor(self)
                .map(move |res, act, _| {
                    let deleted = res.map_err(worker_gone)??;
                    act.remove(&uuid);
                    act.publish();
                    Ok(deleted)
                }),
        )
    }
}

impl Handler<Rescan> for AccountRegistry {
    type Result = ResponseActFuture<Self, ()>;

    /// Applies what other processes changed in the accounts and keys.
    fn handle(&mut self, _msg: Rescan, _ctx: &mut Self::Context) -> Self::Result {
        let job = StoreJob::new(|stores| {
            Ok::<_, StoreError>((stores.accounts.scan()?, stores.keys.scan()?))
        });
        Box::pin(
            self.worker
                .send(job)
                .into_actor(self)
                .map(|res, act, _| match res {
                    Ok(Ok((scan, (keys, problems)))) => {
                        act.report("key", &problems);
                        act.key_problems = problems;
                        act.keys = keys;
                        act.reconcile(scan);
                    }
                    Ok(Err(e)) => log::warn!("rescan of the data directory failed: {e}"),
                    Err(e) => log::warn!("rescan skipped: {e}"),
                }),
        )
    }
}
