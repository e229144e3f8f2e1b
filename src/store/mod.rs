//! The file stores: accounts (one JSON file each under `<data>/accounts/`),
//! gateway keys (`keys/`) and the usage ledger (`usage/`).
//!
//! Plain synchronous code, so it can be tested without actix; the server
//! runs it on the `StoreWorker` thread. Every change is "lock, read the file as it is on disk,
//! apply the change, write atomically, unlock", so a CLI process and a running
//! server can write the same directory without losing each other's updates.
//! Atomic write = temp file in the same directory (mode 0600), fsync, rename,
//! fsync of the directory.

pub mod account;
mod files;
pub mod keys;
pub mod usage;

pub use account::{Account, AccountState, AuthType, DEFAULT_IFLOW_BASE_URL};
pub use files::{JsonDir, NamedLock, stop_lock_waits};
pub use keys::{GatewayKey, KeySpec, KeyStore};
pub use usage::{UsageFile, UsageRow, UsageStore};

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A path for messages: an account file is named by its uuid, which is a
/// credential, so its name is cut to the short id.
pub fn shown(path: &Path) -> String {
    let Some(name) = path.file_name().map(|s| s.to_string_lossy()) else {
        return path.display().to_string();
    };
    let masked = without_uuids(&name);
    if masked == name {
        return path.display().to_string();
    }
    let dir = path
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    format!("{dir}/{masked}")
}

/// `name` with every account uuid in it (an account file's, or the one in a
/// temporary file's name, `.<uuid>.json.tmp-…`) cut to its first 8
/// characters: an account uuid is a credential.
fn without_uuids(name: &str) -> String {
    const LEN: usize = 36;
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while !rest.is_empty() {
        if let Some(candidate) = rest.get(..LEN)
            && uuid::Uuid::try_parse(candidate).is_ok()
        {
            out.push_str(crate::secret::short_id(candidate));
            out.push('…');
            rest = &rest[LEN..];
            continue;
        }
        let step = rest.chars().next().map_or(1, char::len_utf8);
        out.push_str(&rest[..step]);
        rest = &rest[step..];
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {}: {source}", shown(path))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("file {} is not usable ({reason}); it was left untouched", shown(path))]
    Corrupt { path: PathBuf, reason: String },
    #[error("no account {}", crate::secret::short_id(.0))]
    NotFound(String),
    #[error(
        "no key matches {}: give its id (key-…), a unique start of the id (8+ characters), its shown prefix (sk-iflow-…) or the whole key",
        crate::secret::short_id(.0)
    )]
    KeyNotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// An import found its key in a file it cannot read: a new account
    /// would duplicate that one.
    #[error(
        "account file {} holds this key but cannot be read ({reason}); fix or remove it (`iflow-actix token list` shows its whole name), then try again",
        shown(path)
    )]
    KeyInBrokenFile { path: PathBuf, reason: String },
}

/// What a scan of the directory found.
#[derive(Debug, Default)]
pub struct Scan {
    pub accounts: Vec<Account>,
    /// Files that were skipped, with the reason; they are never rewritten.
    pub problems: Vec<(PathBuf, String)>,
}

#[derive(Debug, Clone)]
pub struct AccountStore {
    files: JsonDir,
}

impl AccountStore {
    /// Opens `<data_dir>/accounts`; the folder is created on the first write.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            files: JsonDir::open(data_dir.join("accounts"))?,
        })
    }

    pub fn dir(&self) -> &Path {
        self.files.dir()
    }

    pub fn path_of(&self, uuid: &str) -> PathBuf {
        self.files.path(&file_name(uuid))
    }

    /// Reads every `*.json` file; broken ones are reported, not fatal.
    pub fn scan(&self) -> Result<Scan, StoreError> {
        let mut scan = Scan::default();
        for name in self.files.json_names()? {
            let uuid = name.trim_end_matches(".json");
            match self.read(uuid) {
                Ok(Some(account)) => scan.accounts.push(account),
                // Deleted between listing and reading: not a problem.
                Ok(None) => {}
                Err(StoreError::Corrupt { path, reason }) => scan.problems.push((path, reason)),
                Err(other) => scan.problems.push((self.path_of(uuid), other.to_string())),
            }
        }
        scan.accounts
            .sort_by(|a, b| (a.created_at, &a.uuid).cmp(&(b.created_at, &b.uuid)));
        Ok(scan)
    }

    /// The account as it is on disk now, or `None` when there is no file.
    pub fn load(&self, uuid: &str) -> Result<Option<Account>, StoreError> {
        if uuid::Uuid::parse_str(uuid).is_err() {
            return Ok(None);
        }
        self.read(uuid)
    }

    /// Writes a new account file.
    pub fn create(&self, account: &Account) -> Result<(), StoreError> {
        let _lock = self.files.lock()?;
        if self.path_of(&account.uuid).exists() {
            return Err(StoreError::Invalid(format!(
                "account {} already exists",
                account.uuid
            )));
        }
        self.write(account)
    }

    /// Applies `change` to the account as it is on disk, under the lock, and
    /// writes the result. A missing or broken file is an error and is left as is.
    pub fn modify<F>(&self, uuid: &str, change: F) -> Result<Account, StoreError>
    where
        F: FnOnce(&mut Account),
    {
        self.modify_if(uuid, |a| {
            change(a);
            true
        })
    }

    /// Like [`AccountStore::modify`], but writes only when `change` returns
    /// true (a compare-and-set against the disk version); returns the
    /// account as it is on disk afterwards either way.
    pub fn modify_if<F>(&self, uuid: &str, change: F) -> Result<Account, StoreError>
    where
        F: FnOnce(&mut Account) -> bool,
    {
        let _lock = self.files.lock()?;
        let on_disk = self
            .load(uuid)?
            .ok_or_else(|| StoreError::NotFound(uuid.to_string()))?;
        let mut account = on_disk.clone();
        if !change(&mut account) {
            return Ok(on_disk);
        }
        account.uuid = uuid.to_string();
        self.write(&account)?;
        Ok(account)
    }

    /// Takes the account's refresh lock, waiting up to `wait` for another
    /// process that holds it; `Ok(None)` when it is still held then. One
    /// refresh per account across every process: a refresh token is spent
    /// and its successor stored while this is held. Blocking.
    pub fn refresh_lock(
        &self,
        uuid: &str,
        wait: Duration,
    ) -> Result<Option<NamedLock>, StoreError> {
        if uuid::Uuid::parse_str(uuid).is_err() {
            return Err(StoreError::NotFound(uuid.to_string()));
        }
        self.files.lock_named(&refresh_lock_name(uuid), wait)
    }

    /// Whether some process is refreshing the account now (never waits).
    pub fn refreshing(&self, uuid: &str) -> bool {
        uuid::Uuid::parse_str(uuid).is_ok() && self.files.is_locked(&refresh_lock_name(uuid))
    }

    /// Creates an account, or updates the one holding the same API key, so
    /// importing a key twice never makes a duplicate. Returns the stored
    /// account and whether it is new.
    pub fn upsert_by_api_key<F>(
        &self,
        template: Account,
        change: F,
    ) -> Result<(Account, bool), StoreError>
    where
        F: FnOnce(&mut Account),
    {
        let _lock = self.files.lock()?;
        let scan = self.scan()?;
        let key = &template.api_key;
        let existing = scan
            .accounts
            .into_iter()
            .find(|a| a.api_key == *key && !key.is_empty());
        let (mut account, created) = match existing {
            Some(found) => (found, false),
            None => {
                self.refuse_key_in_broken_file(&scan.problems, key)?;
                (template, true)
            }
        };
        change(&mut account);
        self.write(&account)?;
        Ok((account, created))
    }

    /// A broken file cannot say which key it holds, but its bytes can: if
    /// they contain `key`, a new account would be a duplicate of it.
    fn refuse_key_in_broken_file(
        &self,
        problems: &[(PathBuf, String)],
        key: &crate::secret::Secret,
    ) -> Result<(), StoreError> {
        if key.is_empty() {
            return Ok(());
        }
        let needle = key.expose().as_bytes();
        for (path, reason) in problems {
            // Unreadable bytes cannot be checked; such a file is only skipped.
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return Err(StoreError::KeyInBrokenFile {
                    path: path.clone(),
                    reason: reason.clone(),
                });
            }
        }
        Ok(())
    }

    /// Removes an account file; `false` when there was none.
    pub fn delete(&self, uuid: &str) -> Result<bool, StoreError> {
        if uuid::Uuid::parse_str(uuid).is_err() {
            return Ok(false);
        }
        let _lock = self.files.lock()?;
        self.files.remove(&file_name(uuid))
    }

    fn read(&self, uuid: &str) -> Result<Option<Account>, StoreError> {
        let Some(bytes) = self.files.read(&file_name(uuid))? else {
            return Ok(None);
        };
        let path = self.path_of(uuid);
        let account = Account::from_json(&bytes).map_err(|reason| StoreError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        if account.uuid != uuid {
            return Err(StoreError::Corrupt {
                path,
                reason: format!(
                    "file name does not match the uuid inside ({}…)",
                    crate::secret::short_id(&account.uuid)
                ),
            });
        }
        Ok(Some(account))
    }

    fn write(&self, account: &Account) -> Result<(), StoreError> {
        self.files
            .write_atomic(&file_name(&account.uuid), &account.to_json())
    }
}

fn file_name(id: &str) -> String {
    format!("{id}.json")
}

/// A dot file, so scans never take it for an account.
fn refresh_lock_name(uuid: &str) -> String {
    format!(".refresh-{uuid}.lock")
}

#[cfg(test)]
mod tests;
