//! A directory of JSON files written the safe way: an advisory lock for
//! read-modify-write across processes, and atomic replacement (temp file in
//! the same directory, mode 0600, fsync, rename, fsync of the directory), so
//! a reader or a crash never sees half a file. Named locks guard longer work
//! (an OAuth refresh) on one item without holding up the whole directory.

use super::StoreError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const LOCK_FILE: &str = ".lock";
pub(super) const TEMP_MARK: &str = ".tmp-";

pub(super) fn io_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

#[derive(Debug, Clone)]
pub struct JsonDir {
    dir: PathBuf,
}

/// Holds the directory's advisory lock until dropped.
pub struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// An exclusive advisory lock on one named lock file. Dropping it removes
/// the file, then unlocks, so no lock file outlives its use (a process that
/// dies keeps its file, but the kernel frees the lock and the next holder
/// removes it).
pub struct NamedLock {
    file: File,
    path: PathBuf,
    /// Whether another process held the lock when it was asked for.
    pub waited: bool,
}

impl Drop for NamedLock {
    fn drop(&mut self) {
        // Removed while still held: a process that opened the old file and
        // waits on it finds the path gone once it gets the lock, and retries.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// How often a held named lock is tried again.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// Opens (creating it 0600 if needed) a lock file; its content is unused.
fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("open lock file", path))
}

/// Set when the process shuts down: waits for named locks give up at once,
/// so a blocking thread waiting on another process's refresh cannot keep
/// the runtime (whose shutdown waits for its blocking threads) alive.
static STOP_WAITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every present and future [`JsonDir::lock_named`] wait end now.
pub fn stop_lock_waits() {
    STOP_WAITING.store(true, std::sync::atomic::Ordering::Relaxed);
}

impl JsonDir {
    /// A directory of JSON files. It is created (private, 0700) only when
    /// something is first written, so reading commands leave no trace.
    pub fn open(dir: PathBuf) -> Result<Self, StoreError> {
        let files = Self { dir };
        files.remove_stale_temp_files();
        Ok(files)
    }

    fn ensure_dir(&self) -> Result<(), StoreError> {
        if !self.dir.exists() {
            // Every directory made here (the data folder itself too, when it
            // is new) is private: another user must not swap the files.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(io_err("create directory", &self.dir))?;
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err("chmod", &self.dir))?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The exclusive advisory lock on the directory (blocks until free).
    pub fn lock(&self) -> Result<DirLock, StoreError> {
        self.ensure_dir()?;
        let path = self.dir.join(LOCK_FILE);
        let file = open_lock_file(&path)?;
        file.lock().map_err(io_err("lock", &path))?;
        Ok(DirLock(file))
    }

    /// Takes the exclusive lock `name` (a dot file, which no scan reads),
    /// waiting up to `wait` while another process holds it; `Ok(None)` when
    /// it is still held then. Blocking: call it off async threads.
    pub fn lock_named(&self, name: &str, wait: Duration) -> Result<Option<NamedLock>, StoreError> {
        self.ensure_dir()?;
        let path = self.dir.join(name);
        let deadline = Instant::now() + wait;
        let mut waited = false;
        loop {
            let file = open_lock_file(&path)?;
            match file.try_lock() {
                // The previous holder removes the file before unlocking; a
                // lock on a file no longer at `path` guards nothing.
                Ok(()) if same_file(&file, &path) => {
                    return Ok(Some(NamedLock { file, path, waited }));
                }
                // Replaced under us: try again, within the same deadline
                // and not in a busy loop.
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => waited = true,
                Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
            }
            drop(file);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || STOP_WAITING.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(None);
            }
            std::thread::sleep(left.min(LOCK_POLL));
        }
    }

    /// Whether another process holds the lock `name` now. Never waits and
    /// never creates the file.
    pub fn is_locked(&self, name: &str) -> bool {
        let Ok(file) = File::open(self.dir.join(name)) else {
            return false;
        };
        // A shared lock is refused only while someone holds it exclusively.
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(_)) => false,
        }
    }

    /// `Ok(None)` when the file does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(name);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Names of the visible `*.json` files (none while the directory does
    /// not exist).
    pub fn json_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(io_err("read directory", &self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("read directory", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && name.ends_with(".json") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Replaces (or creates) `name` with `bytes`, atomically.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.ensure_dir()?;
        let final_path = self.path(name);
        let temp_path = self.dir.join(format!(
            ".{name}{TEMP_MARK}{}-{}",
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
            file.write_all(bytes)
                .and_then(|()| file.write_all(b"\n"))
                .map_err(io_err("write", &temp_path))?;
            file.sync_all().map_err(io_err("fsync", &temp_path))?;
            fs::rename(&temp_path, &final_path).map_err(io_err("rename", &final_path))?;
            self.sync_dir_after_change();
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp_path);
        }
        result
    }

    /// Removes `name`; `false` when it was not there.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Ok(()) => {
                self.sync_dir_after_change();
                Ok(true)
            }
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Makes a rename or removal durable. The change itself has already
    /// happened and readers see it, so a failure here (some network and FUSE
    /// file systems refuse directory fsync) is logged, not returned: calling
    /// it a failed write would make callers redo or undo a done change.
    fn sync_dir_after_change(&self) {
        if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
            log::warn!("fsync of directory {} failed: {e}", self.dir.display());
        }
    }

    /// Temp files older than a minute are leftovers of a process that died
    /// mid-write; the real file is intact, so they can go.
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let cutoff = SystemTime::now() - Duration::from_secs(60);
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().contains(TEMP_MARK) {
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

/// Whether `file` is (still) the file at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
