//! The account file store: one JSON file per account under `<data>/accounts/`.
//!
//! Plain synchronous code, so it can be tested without actix and called from
//! `spawn_blocking`. Every change is "lock, read the file as it is on disk,
//! apply the change, write atomically, unlock", so a CLI process and a running
//! server can write the same directory without losing each other's updates.
//! Atomic write = temp file in the same directory (mode 0600), fsync, rename,
//! fsync of the directory.

pub mod account;

pub use account::{Account, AccountState, AuthType, DEFAULT_IFLOW_BASE_URL};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const LOCK_FILE: &str = ".lock";
const TEMP_MARK: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("account file {path} is not usable ({reason}); it was left untouched")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no account {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
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
    dir: PathBuf,
}

/// Holds the directory's advisory lock until dropped.
struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl AccountStore {
    /// Opens (creating if needed) `<data_dir>/accounts`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let dir = data_dir.join("accounts");
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
            // Account files hold keys: keep the directory private too.
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err("chmod", &dir))?;
        }
        let store = Self { dir };
        store.remove_stale_temp_files();
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, uuid: &str) -> PathBuf {
        self.dir.join(format!("{uuid}.json"))
    }

    /// Reads every `*.json` file; broken ones are reported, not fatal.
    pub fn scan(&self) -> Result<Scan, StoreError> {
        let mut scan = Scan::default();
        let entries = fs::read_dir(&self.dir).map_err(io_err("read directory", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("read directory", &self.dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            match self.read_path(&path) {
                Ok(account) => scan.accounts.push(account),
                Err(StoreError::Corrupt { reason, .. }) => scan.problems.push((path, reason)),
                // Deleted between read_dir and read: not a problem.
                Err(StoreError::NotFound(_)) => {}
                Err(other) => scan.problems.push((path, other.to_string())),
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
        match self.read_path(&self.path_of(uuid)) {
            Ok(account) => Ok(Some(account)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a new account file.
    pub fn create(&self, account: &Account) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        if self.path_of(&account.uuid).exists() {
            return Err(StoreError::Invalid(format!(
                "account {} already exists",
                account.uuid
            )));
        }
        self.write_atomic(account)
    }

    /// Applies `change` to the account as it is on disk, under the lock, and
    /// writes the result. A missing or broken file is an error and is left as is.
    pub fn modify<F>(&self, uuid: &str, change: F) -> Result<Account, StoreError>
    where
        F: FnOnce(&mut Account),
    {
        let _lock = self.lock()?;
        let mut account = self
            .load(uuid)?
            .ok_or_else(|| StoreError::NotFound(uuid.to_string()))?;
        change(&mut account);
        account.uuid = uuid.to_string();
        self.write_atomic(&account)?;
        Ok(account)
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
        let _lock = self.lock()?;
        let existing = self
            .scan()?
            .accounts
            .into_iter()
            .find(|a| a.api_key == template.api_key && !a.api_key.is_empty());
        let (mut account, created) = match existing {
            Some(found) => (found, false),
            None => (template, true),
        };
        change(&mut account);
        self.write_atomic(&account)?;
        Ok((account, created))
    }

    /// Removes an account file; `false` when there was none.
    pub fn delete(&self, uuid: &str) -> Result<bool, StoreError> {
        if uuid::Uuid::parse_str(uuid).is_err() {
            return Ok(false);
        }
        let _lock = self.lock()?;
        let path = self.path_of(uuid);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.sync_dir()?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    fn read_path(&self, path: &Path) -> Result<Account, StoreError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(path.display().to_string()));
            }
            Err(e) => return Err(io_err("read", path)(e)),
        };
        let account = Account::from_json(&bytes).map_err(|reason| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        if stem.as_deref() != Some(account.uuid.as_str()) {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("file name does not match uuid {}", account.uuid),
            });
        }
        Ok(account)
    }

    fn lock(&self) -> Result<DirLock, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        file.lock().map_err(io_err("lock", &path))?;
        Ok(DirLock(file))
    }

    fn write_atomic(&self, account: &Account) -> Result<(), StoreError> {
        let final_path = self.path_of(&account.uuid);
        let temp_path = self.dir.join(format!(
            ".{}.json{TEMP_MARK}{}-{}",
            account.uuid,
            std::process::id(),
            fastrand::u64(..)
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp_path)
                .map_err(io_err("create", &temp_path))?;
            // The mode above is filtered by the umask; make it exact.
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(io_err("chmod", &temp_path))?;
            file.write_all(&account.to_json())
                .and_then(|()| file.write_all(b"\n"))
                .map_err(io_err("write", &temp_path))?;
            file.sync_all().map_err(io_err("fsync", &temp_path))?;
            fs::rename(&temp_path, &final_path).map_err(io_err("rename", &final_path))?;
            self.sync_dir()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp_path);
        }
        result
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", &self.dir))
    }

    /// Temp files older than a minute are leftovers of a process that died
    /// mid-write; the real file is intact, so they can go.
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let cutoff = SystemTime::now() - Duration::from_secs(60);
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().contains(TEMP_MARK) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t < cutoff)
                .unwrap_or(false);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests;
