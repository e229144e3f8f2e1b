//! `token …` commands. They drive the same actors the server uses (the
//! account registry, the refresher) inside a short-lived actix system: one
//! code path for both.

mod list;

pub use list::state_of;

use super::{Cli, TokenCommand};
use crate::actors::refresher::{RefreshAccount, RefresherActor};
use crate::actors::registry::{
    AccountRegistry, DeleteAccount, GetAccount, ImportAccount, ListAccounts, ListUnreadable,
    RegistrySettings, ResetAccount,
};
use crate::actors::store_worker::Stores;
use crate::oauth::client::OAuthClient;
use crate::oauth::login::{LoginOptions, login};
use crate::oauth::official_files;
use crate::secret::Secret;
use crate::store::{AccountStore, AuthType, StoreError};
use actix::{Actor, Addr};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Import(#[from] official_files::ImportError),
    #[error("{0}")]
    Login(#[from] crate::oauth::login::LoginError),
    #[error("{0}")]
    Refresh(#[from] crate::actors::refresher::RefreshError),
    #[error("the account registry stopped unexpectedly")]
    Registry,
}

pub async fn run(cmd: TokenCommand, cli: &Cli) -> Result<(), TokenError> {
    crate::http::server::install_crypto_provider();
    // An import reads and checks its input before the store is opened, so a
    // refused import leaves the data directory exactly as it was.
    let cmd = match cmd {
        TokenCommand::Import {
            api_key: Some(key),
            base_url,
            kind,
            models,
            ..
        } => {
            let message = key_import(key, base_url, &kind, models)?;
            return store_account(&open_registry(cli)?, message).await;
        }
        TokenCommand::Import { path, .. } => {
            let message = official_import(path)?;
            return store_account(&open_registry(cli)?, message).await;
        }
        other => other,
    };
    let registry = open_registry(cli)?;
    match cmd {
        TokenCommand::List { json } => list::run(&registry, cli, json).await,
        // Imports returned above.
        TokenCommand::Import { .. } => Ok(()),
        TokenCommand::Login {
            port,
            no_browser,
            no_open,
            timeout,
        } => {
            let opts = LoginOptions {
                port,
                paste: no_browser,
                open_browser: !no_open,
                timeout,
            };
            login_and_store(&registry, cli, &opts).await
        }
        TokenCommand::Refresh { uuid } => {
            // A broken file is named too, so the refresh can say what is wrong.
            let uuid = full_uuid(&registry, &uuid, true).await?;
            refresh(registry, cli, uuid).await
        }
        TokenCommand::Reset { uuid } => {
            let uuid = full_uuid(&registry, &uuid, false).await?;
            reset(&registry, uuid).await
        }
        TokenCommand::Delete { uuid, yes } => {
            let uuid = full_uuid(&registry, &uuid, false).await?;
            delete(&registry, uuid, yes).await
        }
    }
}

/// The account a uuid, or a unique start of one (at least 8 characters, as
/// logs show them), names; with `unreadable`, files that cannot be read
/// count too.
async fn full_uuid(
    registry: &Addr<AccountRegistry>,
    given: &str,
    unreadable: bool,
) -> Result<String, TokenError> {
    let mut uuids: Vec<String> = registry
        .send(ListAccounts)
        .await
        .map_err(|_| TokenError::Registry)?
        .into_iter()
        .map(|s| s.account.uuid)
        .collect();
    if unreadable {
        let broken = registry
            .send(ListUnreadable)
            .await
            .map_err(|_| TokenError::Registry)?;
        uuids.extend(broken.into_iter().map(|(uuid, _)| uuid));
    }
    if uuids.iter().any(|u| u == given) {
        return Ok(given.to_string());
    }
    let matches: Vec<&str> = uuids
        .iter()
        .map(String::as_str)
        .filter(|u| given.len() >= 8 && u.starts_with(given))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).to_string()),
        [] if given.len() < 8 => Err(TokenError::Invalid(format!(
            "no account {given}: give the uuid or at least its first 8 characters"
        ))),
        [] => Err(TokenError::Invalid(format!("no account {given}"))),
        _ => Err(TokenError::Invalid(format!(
            "{given} matches several accounts; give more of the uuid"
        ))),
    }
}

/// The registry the server runs, without its timers: one code path for both.
pub fn open_registry(cli: &Cli) -> Result<Addr<AccountRegistry>, StoreError> {
    let registry =
        AccountRegistry::new(Stores::open(&cli.data_dir)?, RegistrySettings::one_shot())?;
    Ok(registry.start())
}

async fn store_account(
    registry: &Addr<AccountRegistry>,
    message: ImportAccount,
) -> Result<(), TokenError> {
    let (summary, created) = registry
        .send(message)
        .await
        .map_err(|_| TokenError::Registry)??;
    let a = &summary.account;
    say!(
        "{} account {} ({}, key {}, {})",
        if created { "added" } else { "updated" },
        a.uuid,
        a.auth_type,
        a.api_key.masked(),
        a.base_url
    );
    say!("use it with: Authorization: Bearer {}", a.uuid);
    Ok(())
}

/// Checks a `--api-key` import.
fn key_import(
    api_key: String,
    base_url: String,
    kind: &str,
    models: Option<Vec<String>>,
) -> Result<ImportAccount, TokenError> {
    let api_key = api_key.trim().to_string();
    if api_key.is_empty() {
        return Err(TokenError::Invalid("the API key is empty".into()));
    }
    // A key goes into a header as it is: a space or line break inside is a
    // copy-and-paste slip, and the upstream would refuse every request.
    if api_key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TokenError::Invalid(
            "the API key holds a space or a line break: check how it was copied".into(),
        ));
    }
    let base_url = base_url.trim().trim_end_matches('/').to_string();
    match url::Url::parse(&base_url) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            // It would be stored, listed and logged like any base URL.
            return Err(TokenError::Invalid(
                "--base-url must not hold a user name or password: the API key is the credential"
                    .into(),
            ));
        }
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(TokenError::Invalid(format!(
                "--base-url {base_url:?} is not an http(s) URL"
            )));
        }
    }
    let auth_type = if kind == "openai" {
        AuthType::OpenAi
    } else {
        AuthType::Iflow
    };
    // iFlow API keys start with `sk-` (the settings.json import checks the
    // same); anything else would only fail later, on every request.
    if auth_type == AuthType::Iflow && !api_key.starts_with("sk-") {
        return Err(TokenError::Invalid(
            "an iFlow API key starts with sk-: check the key, or add `--kind openai` for \
             another provider's key"
                .into(),
        ));
    }
    Ok(ImportAccount {
        api_key: Secret::new(api_key),
        base_url: Some(base_url),
        auth_type,
        tokens: None,
        models: models.map(|m| {
            m.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }),
    })
}

/// Reads the official CLI's login.
fn official_import(path: Option<PathBuf>) -> Result<ImportAccount, TokenError> {
    let path = path
        .or_else(official_files::default_settings_path)
        .ok_or_else(|| TokenError::Invalid("no path given and $HOME is not set".into()))?;
    let found = official_files::read(&path)?;
    for note in &found.notes {
        eprintln!("note: {note}");
    }
    Ok(ImportAccount {
        api_key: found.api_key,
        base_url: Some(found.base_url),
        auth_type: found.auth_type,
        tokens: found.tokens,
        models: None,
    })
}

async fn login_and_store(
    registry: &Addr<AccountRegistry>,
    cli: &Cli,
    opts: &LoginOptions,
) -> Result<(), TokenError> {
    let client = OAuthClient::new(cli.oauth.clone(), &cli.upstream_proxy);
    let announce = |text: &str| {
        say!("{text}");
        let _ = std::io::stdout().flush();
    };
    let (tokens, user) = login(&client, opts, &announce).await?;
    if let Some(name) = &user.user_name {
        say!("logged in as {name}");
    }
    store_account(
        registry,
        ImportAccount {
            api_key: user.api_key,
            // A new login's account gets iFlow's; a second login with the
            // same key keeps a base URL set by hand (a mirror, say).
            base_url: None,
            auth_type: AuthType::OAuthIflow,
            tokens: Some(tokens),
            models: None,
        },
    )
    .await
}

async fn refresh(
    registry: Addr<AccountRegistry>,
    cli: &Cli,
    uuid: String,
) -> Result<(), TokenError> {
    let refresher = RefresherActor::new(
        registry,
        AccountStore::open(&cli.data_dir)?,
        cli.oauth.clone(),
        &cli.upstream_proxy,
        cli.refresh.clone(),
        false,
    )
    .start();
    let outcome = refresher
        .send(RefreshAccount(uuid.clone()))
        .await
        .map_err(|_| TokenError::Registry)??;
    say!(
        "account {uuid}: {}, valid until {}{}",
        if outcome.adopted {
            "already refreshed by another process"
        } else {
            "refreshed"
        },
        outcome
            .expires_at
            .map_or_else(|| "unknown".into(), |t| t.to_rfc3339()),
        if outcome.key_rotated {
            "; the API key was rotated"
        } else {
            ""
        }
    );
    Ok(())
}

async fn reset(registry: &Addr<AccountRegistry>, uuid: String) -> Result<(), TokenError> {
    registry
        .send(ResetAccount(uuid.clone()))
        .await
        .map_err(|_| TokenError::Registry)?
        .map_err(|e| match e {
            StoreError::NotFound(_) => TokenError::Invalid(format!("no account {uuid}")),
            other => other.into(),
        })?;
    say!("account {uuid}: cooldown and state cleared");
    Ok(())
}

async fn delete(
    registry: &Addr<AccountRegistry>,
    uuid: String,
    yes: bool,
) -> Result<(), TokenError> {
    let account = registry
        .send(GetAccount(uuid.clone()))
        .await
        .map_err(|_| TokenError::Registry)?
        .ok_or_else(|| TokenError::Invalid(format!("no account {uuid}")))?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(TokenError::Invalid(
                "refusing to delete without confirmation; pass --yes".into(),
            ));
        }
        eprint!(
            "Delete account {uuid} (key {})? [y/N] ",
            account.api_key.masked()
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            say!("kept account {uuid}");
            return Ok(());
        }
    }
    let deleted = registry
        .send(DeleteAccount(uuid.clone()))
        .await
        .map_err(|_| TokenError::Registry)??;
    if deleted {
        say!("deleted account {uuid}");
    }
    Ok(())
}
