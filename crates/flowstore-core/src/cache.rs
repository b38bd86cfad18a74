//! A local on-disk cache that heals itself, for backend authors (the git clone cache; bundle
//! blob caches).
//!
//! A [`Cache`] is a directory of *entries* (one file or directory each, named by a key) with:
//!
//! - **Locks that die with their holder.** Every entry has an `flock(2)` lock file under
//!   `.meta/`: exclusive while an entry is created, repaired or evicted ([`Cache::lock`]), shared
//!   while it is in use ([`Cache::use_entry`]). The kernel releases them when a process dies, so
//!   a killed process never wedges the cache.
//! - **Temporaries that are reclaimed.** Work in progress goes to a [`TempDir`] under `.tmp/`
//!   held locked by its owner; [`Cache::sweep_temporaries`] removes the ones whose owner died.
//! - **Verification before use.** A [`TreeStamp`] records, for every file of an entry, its
//!   content id (a hash the caller chooses) and the metadata the kernel changes on every write
//!   (size, mtime, ctime, inode). [`TreeStamp::verify`] re-hashes only files whose metadata
//!   changed and reports any file that differs, is missing or was added; the caller discards and
//!   rebuilds the entry.
//! - **Bounds.** [`Cache::gc`] evicts entries older than a maximum age, then least recently used
//!   entries until the cache fits a maximum size, never one in use or used very recently.
//!
//! ```
//! use flowstore_core::cache::{Cache, CachePolicy};
//! let root = tempfile::tempdir()?;
//! let cache = Cache::new(root.path());
//! {
//!     let _writing = cache.lock("answer")?;
//!     let tmp = cache.temp_dir()?;
//!     std::fs::write(tmp.path().join("value"), b"42")?;
//!     cache.publish(tmp, "answer")?;
//! }
//! let in_use = cache.use_entry("answer")?;
//! assert_eq!(std::fs::read(cache.entry_path("answer").join("value"))?, b"42");
//! drop(in_use);
//! let report = cache.gc(&CachePolicy { max_size: Some(0), keep_recent: std::time::Duration::ZERO, ..CachePolicy::default() })?;
//! assert_eq!(report.evicted.len(), 1);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;

const META: &str = ".meta";
const TMP: &str = ".tmp";

/// How large and how old a cache may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Evict least recently used entries until the cache holds at most this many bytes.
    pub max_size: Option<u64>,
    /// Evict entries not used for this long.
    pub max_age: Option<Duration>,
    /// Never evict an entry used less than this long ago (a program may still be reading files
    /// of a flow it fetched).
    pub keep_recent: Duration,
}

impl Default for CachePolicy {
    /// 2 GiB, 30 days, entries used in the last 10 minutes kept.
    fn default() -> Self {
        CachePolicy {
            max_size: Some(2 << 30),
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
            keep_recent: Duration::from_secs(600),
        }
    }
}

impl CachePolicy {
    /// The default policy with `<PREFIX>_MAX_SIZE` (bytes, or with a `K`/`M`/`G`/`T` suffix;
    /// `none` for no limit) and `<PREFIX>_MAX_AGE` (seconds, or with an `s`/`m`/`h`/`d` suffix;
    /// `none`) from the environment.
    ///
    /// Errors: a variable that is set but does not parse, naming the variable.
    pub fn from_env(prefix: &str) -> Result<Self, String> {
        let mut policy = CachePolicy::default();
        let var = |name: String| std::env::var(&name).ok().map(|v| (name, v));
        if let Some((name, value)) = var(format!("{prefix}_MAX_SIZE")) {
            policy.max_size =
                parse_size_limit(&value).map_err(|e| format!("{name}={value:?}: {e}"))?;
        }
        if let Some((name, value)) = var(format!("{prefix}_MAX_AGE")) {
            policy.max_age =
                parse_age_limit(&value).map_err(|e| format!("{name}={value:?}: {e}"))?;
        }
        Ok(policy)
    }
}

/// A size limit: as [`parse_size`], or `none` for no limit.
///
/// Errors: as [`parse_size`].
pub fn parse_size_limit(text: &str) -> Result<Option<u64>, String> {
    parse_limit(text, parse_size)
}

/// An age limit: as [`parse_duration`], or `none` for no limit.
///
/// Errors: as [`parse_duration`].
pub fn parse_age_limit(text: &str) -> Result<Option<Duration>, String> {
    parse_limit(text, parse_duration)
}

fn parse_limit<T>(value: &str, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if value.trim().eq_ignore_ascii_case("none") {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

/// Parses a byte size: `1048576`, `512K`, `100M`, `2G`, `1T` (powers of 1024; a trailing `B` or
/// `iB` is allowed).
///
/// Errors: anything else, saying what is accepted.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown size unit {c:?} (use K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 500M or 2G"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a duration: `90` (seconds), `90s`, `15m`, `12h`, `30d`.
///
/// Errors: anything else, saying what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(format!("unknown duration unit {unit:?} (use s, m, h or d)")),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 12h or 30d"))?;
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// A directory of cache entries; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A lock on one entry: exclusive ([`Cache::lock`]) or shared ([`Cache::use_entry`]). Released
/// when dropped, or by the kernel when the process dies.
#[derive(Debug)]
pub struct EntryGuard {
    key: String,
    _file: File,
}

impl EntryGuard {
    /// The entry's key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// One entry as [`Cache::entries`] sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryInfo {
    /// The entry's key.
    pub key: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes (as recorded by [`Cache::set_size`], else measured).
    pub size: u64,
    /// When it was last used (or created).
    #[serde(with = "unix_seconds")]
    pub last_used: SystemTime,
    /// True if a process holds it (in use, or being written).
    pub in_use: bool,
}

/// What [`Cache::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Entries removed, with their sizes.
    pub evicted: Vec<EntryInfo>,
    /// Entries that stay.
    pub kept: Vec<EntryInfo>,
    /// Entries the policy would remove but that are in use or used very recently.
    pub skipped_in_use: Vec<String>,
    /// Temporaries of dead processes removed, and their bytes.
    pub temporaries_removed: usize,
    /// Bytes freed (entries and temporaries).
    pub bytes_freed: u64,
}

mod unix_seconds {
    use std::time::{SystemTime, UNIX_EPOCH};
    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }
}

impl Cache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// The cache's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the entry `key` lives (it may not exist).
    pub fn entry_path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join(META).join(format!("{key}.lock"))
    }

    fn size_path(&self, key: &str) -> PathBuf {
        self.root.join(META).join(format!("{key}.size"))
    }

    /// Takes the entry's exclusive lock, waiting for other holders: held while the entry is
    /// created, changed, repaired or removed.
    ///
    /// Errors: the key is not a plain file name, or the lock file cannot be created.
    pub fn lock(&self, key: &str) -> io::Result<EntryGuard> {
        self.acquire(key, true, true).map(|g| g.expect("blocking"))
    }

    /// Takes the entry's exclusive lock only if nobody holds it (for eviction).
    ///
    /// Errors: as [`Cache::lock`].
    pub fn try_lock(&self, key: &str) -> io::Result<Option<EntryGuard>> {
        self.acquire(key, true, false)
    }

    /// Takes the entry's shared lock (waiting for a writer to finish) and records the use for
    /// least-recently-used eviction: held while the entry's files are read.
    ///
    /// Errors: as [`Cache::lock`].
    pub fn use_entry(&self, key: &str) -> io::Result<EntryGuard> {
        let guard = self.acquire(key, false, true)?.expect("blocking");
        // The lock file's mtime is the entry's last use.
        let _ = guard._file.set_modified(SystemTime::now());
        Ok(guard)
    }

    fn acquire(&self, key: &str, exclusive: bool, wait: bool) -> io::Result<Option<EntryGuard>> {
        check_key(key)?;
        let path = self.lock_path(key);
        fs::create_dir_all(path.parent().expect("lock files have a parent"))?;
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            let locked = match (exclusive, wait) {
                (true, true) => file.lock().map(|_| true)?,
                (false, true) => file.lock_shared().map(|_| true)?,
                (true, false) => try_locked(file.try_lock())?,
                (false, false) => try_locked(file.try_lock_shared())?,
            };
            if !locked {
                return Ok(None);
            }
            // An evictor may have removed the lock file while we waited on it: only a lock on
            // the file that is at the path now counts.
            if same_file(&file, &path) {
                return Ok(Some(EntryGuard {
                    key: key.to_string(),
                    _file: file,
                }));
            }
        }
    }

    /// Moves a finished temporary into place as the entry `key`, replacing whatever was there.
    /// Call it holding the entry's exclusive lock.
    ///
    /// Errors: the rename fails (the temporary is removed).
    pub fn publish(&self, tmp: TempDir, key: &str) -> io::Result<()> {
        check_key(key)?;
        let dest = self.entry_path(key);
        remove_path(&dest)?;
        fs::rename(tmp.path(), &dest)?;
        tmp.disarm();
        Ok(())
    }

    /// Removes the entry `key` and its recorded size. Call it holding the entry's exclusive lock.
    ///
    /// Errors: the entry exists and cannot be removed.
    pub fn remove(&self, key: &str) -> io::Result<u64> {
        check_key(key)?;
        let path = self.entry_path(key);
        let size = disk_usage(&path);
        // Rename first, so nothing half-removed is ever visible under the entry's name.
        if path.symlink_metadata().is_ok() {
            let doomed = self.temp_name()?;
            fs::rename(&path, &doomed)?;
            remove_path(&doomed)?;
        }
        let _ = fs::remove_file(self.size_path(key));
        Ok(size)
    }

    /// Records the entry's size (so listing the cache need not walk it).
    ///
    /// Errors: the record cannot be written.
    pub fn set_size(&self, key: &str, size: u64) -> io::Result<()> {
        check_key(key)?;
        let path = self.size_path(key);
        fs::create_dir_all(path.parent().expect("size files have a parent"))?;
        let tmp = self.temp_name()?;
        fs::write(&tmp, size.to_string())?;
        fs::rename(&tmp, &path)
    }

    /// Measures the entry and records its size; returns it.
    ///
    /// Errors: the record cannot be written.
    pub fn record_size(&self, key: &str) -> io::Result<u64> {
        let size = disk_usage(&self.entry_path(key));
        self.set_size(key, size)?;
        Ok(size)
    }

    /// A fresh name under `.tmp/` for a temporary file of this process (a file left by a process
    /// that died is removed by [`Cache::sweep_temporaries`]).
    pub(crate) fn temp_name(&self) -> io::Result<PathBuf> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = self.root.join(TMP);
        fs::create_dir_all(&dir)?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ok(dir.join(format!(
            "{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }

    /// A new temporary directory under `.tmp/`, locked by this process until it is published or
    /// dropped (dropping removes it). A process killed while holding one leaves it for
    /// [`Cache::sweep_temporaries`].
    ///
    /// Errors: the directory cannot be created or locked.
    pub fn temp_dir(&self) -> io::Result<TempDir> {
        let path = self.temp_name()?;
        fs::create_dir(&path)?;
        let file = File::open(&path)?;
        file.lock()?;
        Ok(TempDir {
            path,
            _lock: Some(file),
        })
    }

    /// Removes temporaries whose owner is gone: no process holds their lock and the process
    /// that made them has exited (or they are over a minute old). Returns how many and their bytes.
    ///
    /// Errors: `.tmp/` cannot be listed.
    pub fn sweep_temporaries(&self) -> io::Result<(usize, u64)> {
        let dir = self.root.join(TMP);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let (mut count, mut bytes) = (0, 0);
        for entry in entries.flatten() {
            let path = entry.path();
            if !temporary_is_abandoned(&path) {
                continue;
            }
            let size = disk_usage(&path);
            if remove_path(&path).is_ok() {
                tracing::info!(path = %path.display(), size, "removed a temporary left by a dead process");
                count += 1;
                bytes += size;
            }
        }
        Ok((count, bytes))
    }

    /// Every entry, least recently used first.
    ///
    /// Errors: the cache directory cannot be listed.
    pub fn entries(&self) -> io::Result<Vec<EntryInfo>> {
        let listing = match fs::read_dir(&self.root) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in listing.flatten() {
            let Some(key) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if key.starts_with('.') || check_key(&key).is_err() {
                continue;
            }
            let lock = self.lock_path(&key);
            let last_used = fs::metadata(&lock)
                .or_else(|_| entry.metadata())
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let size = match fs::read_to_string(self.size_path(&key)) {
                Ok(s) => s.trim().parse().unwrap_or(0),
                Err(_) => disk_usage(&entry.path()),
            };
            let in_use = match OpenOptions::new().read(true).open(&lock) {
                Ok(f) => !try_locked(f.try_lock()).unwrap_or(false),
                Err(_) => false,
            };
            out.push(EntryInfo {
                key,
                path: entry.path(),
                size,
                last_used,
                in_use,
            });
        }
        out.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.key.cmp(&b.key)));
        Ok(out)
    }

    /// Applies `policy`: sweeps abandoned temporaries, evicts entries unused for `max_age` or
    /// longer, then the least recently used until the rest fit `max_size`. An entry in use
    /// (locked by any process) or used within `keep_recent` is never evicted.
    ///
    /// Errors: the cache directory cannot be listed, or an entry cannot be removed.
    pub fn gc(&self, policy: &CachePolicy) -> io::Result<GcReport> {
        let (temporaries_removed, temp_bytes) = self.sweep_temporaries()?;
        let mut report = GcReport {
            temporaries_removed,
            bytes_freed: temp_bytes,
            ..GcReport::default()
        };
        let now = SystemTime::now();
        let age = |e: &EntryInfo| now.duration_since(e.last_used).unwrap_or_default();
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        for entry in entries {
            // `>=`: a zero max_age evicts everything, even an entry whose mtime is not behind the clock.
            let too_old = policy.max_age.is_some_and(|max| age(&entry) >= max);
            let too_big = policy.max_size.is_some_and(|max| total > max);
            if !(too_old || too_big) {
                report.kept.push(entry);
                continue;
            }
            let guard = if age(&entry) < policy.keep_recent {
                None
            } else {
                self.try_lock(&entry.key)?
            };
            let Some(guard) = guard else {
                report.skipped_in_use.push(entry.key.clone());
                report.kept.push(entry);
                continue;
            };
            self.remove(&entry.key)?;
            let _ = fs::remove_file(self.lock_path(&entry.key));
            drop(guard);
            tracing::info!(key = %entry.key, size = entry.size, "evicted a cache entry");
            total = total.saturating_sub(entry.size);
            report.bytes_freed += entry.size;
            report.evicted.push(entry);
        }
        Ok(report)
    }
}

/// A temporary directory of a [`Cache`], removed when dropped unless published.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    _lock: Option<File>,
}

impl TempDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn disarm(mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = remove_path(&self.path);
        }
    }
}

fn temporary_is_abandoned(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let owner: Option<u32> = name.split('-').next().and_then(|p| p.parse().ok());
    let old = path
        .symlink_metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(60));
    let owner_alive = owner.is_some_and(process_alive);
    if owner_alive && !old {
        // Its owner may be between creating and locking it.
        return false;
    }
    match File::open(path) {
        // A directory: abandoned if nobody holds its lock.
        Ok(f) if path.is_dir() => try_locked(f.try_lock()).unwrap_or(false),
        // A file (a size record being written, a removal in progress): by its owner.
        _ => !owner_alive,
    }
}

/// Whether process `pid` is running (Linux: by `/proc`; elsewhere assumed alive).
pub(crate) fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        // Without /proc, assume alive: the lock and the age decide.
        true
    }
}

fn try_locked(r: Result<(), std::fs::TryLockError>) -> io::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

fn check_key(key: &str) -> io::Result<()> {
    let ok = !key.is_empty()
        && !key.starts_with('.')
        && key.len() <= 200
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cache key {key:?} must be a plain name of letters, digits, '-', '_' and '.'"),
        ))
    }
}

fn remove_path(path: &Path) -> io::Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => {
            make_writable(path);
            fs::remove_dir_all(path)
        }
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Read-only directories (git makes some) cannot be emptied: make them writable first.
fn make_writable(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = dir.symlink_metadata() {
            if m.is_dir() {
                if m.permissions().mode() & 0o200 == 0 {
                    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
                }
                if let Ok(list) = fs::read_dir(dir) {
                    for e in list.flatten() {
                        make_writable(&e.path());
                    }
                }
            }
        }
    }
}

/// Bytes a file or directory tree takes (file sizes; links not followed).
pub fn disk_usage(path: &Path) -> u64 {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .map(|l| l.flatten().map(|e| disk_usage(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// What one file of an entry looked like when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    /// The content id the caller's hasher gave (e.g. a git blob id, a SHA-256).
    id: String,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    kind: char,
}

/// The kind of a file in a stamped tree, given to the hasher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A symbolic link (hash its target, not what it points to).
    Symlink,
}

/// A record of every file under a directory: its content id and the metadata that changes on
/// any write. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeStamp {
    files: BTreeMap<String, FileStamp>,
}

/// A file of a stamped tree that no longer matches its stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Its content id differs from the recorded one.
    Changed(String),
    /// It is gone.
    Missing(String),
    /// It was not there when the tree was stamped.
    Added(String),
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Changed(p) => write!(f, "{p} was altered"),
            Mismatch::Missing(p) => write!(f, "{p} is missing"),
            Mismatch::Added(p) => write!(f, "{p} was added"),
        }
    }
}

/// Hashes one file of a tree: `(absolute path, kind) -> content id`.
pub type Hasher<'a> = &'a dyn Fn(&Path, FileKind) -> io::Result<String>;

impl TreeStamp {
    /// Stamps every file under `dir` (directories are implied by their files).
    ///
    /// Errors: a file cannot be read or hashed.
    pub fn record(dir: &Path, hash: Hasher<'_>) -> io::Result<Self> {
        let mut files = BTreeMap::new();
        walk(dir, "", &mut |rel, path, meta| {
            let kind = kind_of(meta);
            files.insert(rel.to_string(), stamp(meta, hash(path, kind)?));
            Ok(())
        })?;
        Ok(TreeStamp { files })
    }

    /// The recorded content id of `rel` (a `/`-separated path under the tree).
    pub fn id(&self, rel: &str) -> Option<&str> {
        self.files.get(rel).map(|f| f.id.as_str())
    }

    /// Checks `dir` against the stamp: files whose metadata is unchanged are trusted, the others
    /// re-hashed. Returns every mismatch (empty: the tree is as written).
    ///
    /// Errors: `dir` cannot be walked.
    pub fn verify(&self, dir: &Path, hash: Hasher<'_>) -> io::Result<Vec<Mismatch>> {
        let mut seen = 0usize;
        let mut mismatches = Vec::new();
        walk(dir, "", &mut |rel, path, meta| {
            let Some(want) = self.files.get(rel) else {
                mismatches.push(Mismatch::Added(rel.to_string()));
                return Ok(());
            };
            seen += 1;
            let kind = kind_of(meta);
            if !want.matches(meta) && (kind.to_char() != want.kind || hash(path, kind)? != want.id)
            {
                mismatches.push(Mismatch::Changed(rel.to_string()));
            }
            Ok(())
        })?;
        if seen < self.files.len() {
            for rel in self.files.keys() {
                let p = dir.join(rel);
                if p.symlink_metadata().is_err() {
                    mismatches.push(Mismatch::Missing(rel.clone()));
                }
            }
        }
        Ok(mismatches)
    }

    /// Writes the stamp to `path`: a header line, then one line per file (kind, content id,
    /// size, mtime, ctime, inode, the path as a JSON string) — compact, and read back in one pass.
    ///
    /// Errors: the file cannot be written.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(64 + self.files.len() * 120);
        text.push_str(STAMP_HEADER);
        text.push('\n');
        for (rel, f) in &self.files {
            let quoted = serde_json::to_string(rel).map_err(io::Error::other)?;
            let _ = writeln!(
                text,
                "{} {} {} {} {} {} {quoted}",
                f.kind, f.id, f.size, f.mtime_ns, f.ctime_ns, f.ino
            );
        }
        fs::write(path, text)
    }

    /// Reads a stamp written by [`TreeStamp::save`].
    ///
    /// Errors: the file cannot be read or is not a stamp.
    pub fn load(path: &Path) -> io::Result<Self> {
        let text = fs::read_to_string(path)?;
        let bad = |line: usize| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a tree stamp (line {line})", path.display()),
            )
        };
        let mut lines = text.lines();
        if lines.next() != Some(STAMP_HEADER) {
            return Err(bad(1));
        }
        let mut files = BTreeMap::new();
        for (i, line) in lines.enumerate() {
            let mut parts = line.splitn(7, ' ');
            let mut next = || parts.next().ok_or_else(|| bad(i + 2));
            let kind = next()?.chars().next().ok_or_else(|| bad(i + 2))?;
            let id = next()?.to_string();
            let num = |s: &str| s.parse::<i128>().map_err(|_| bad(i + 2));
            let size = num(next()?)? as u64;
            let mtime_ns = num(next()?)?;
            let ctime_ns = num(next()?)?;
            let ino = num(next()?)? as u64;
            let rel: String = serde_json::from_str(next()?).map_err(|_| bad(i + 2))?;
            files.insert(
                rel,
                FileStamp {
                    id,
                    size,
                    mtime_ns,
                    ctime_ns,
                    ino,
                    kind,
                },
            );
        }
        Ok(TreeStamp { files })
    }
}

const STAMP_HEADER: &str = "flowstore-tree-stamp 1";

impl FileStamp {
    /// True if `meta` is what was recorded (then the content is trusted without re-hashing).
    fn matches(&self, meta: &fs::Metadata) -> bool {
        let now = stamp(meta, String::new());
        now.size == self.size
            && now.mtime_ns == self.mtime_ns
            && now.ctime_ns == self.ctime_ns
            && now.ino == self.ino
            && now.kind == self.kind
    }
}

impl FileKind {
    fn to_char(self) -> char {
        match self {
            FileKind::File => 'f',
            FileKind::Symlink => 'l',
        }
    }
}

fn kind_of(meta: &fs::Metadata) -> FileKind {
    if meta.file_type().is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::File
    }
}

#[cfg(unix)]
fn stamp(meta: &fs::Metadata, id: String) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    FileStamp {
        id,
        size: meta.len(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        ino: meta.ino(),
        kind: kind_of(meta).to_char(),
    }
}

#[cfg(not(unix))]
fn stamp(meta: &fs::Metadata, id: String) -> FileStamp {
    // Without ctime and inodes every file is re-hashed unless its size and mtime match.
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    FileStamp {
        id,
        size: meta.len(),
        mtime_ns,
        ctime_ns: 0,
        ino: 0,
        kind: kind_of(meta).to_char(),
    }
}

/// Calls `f(relative path, path, metadata)` for every non-directory under `dir`.
fn walk(
    dir: &Path,
    prefix: &str,
    f: &mut dyn FnMut(&str, &Path, &fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let rel = if prefix.is_empty() {
            name.into_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        // Not followed through symlinks; relative to the open directory (no path lookup).
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&path, &rel, f)?;
        } else {
            f(&rel, &path, &meta)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(path: &Path, kind: FileKind) -> io::Result<String> {
        use sha2::{Digest, Sha256};
        let bytes = match kind {
            FileKind::File => fs::read(path)?,
            FileKind::Symlink => fs::read_link(path)?.into_os_string().into_encoded_bytes(),
        };
        Ok(hex::encode(Sha256::digest(&bytes)))
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("2X").unwrap_err().contains("unit"));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn a_stamp_finds_altered_missing_and_added_files_and_trusts_touched_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("lib")).unwrap();
        fs::write(d.join("flow.py"), "flow").unwrap();
        fs::write(d.join("lib/a.py"), "a").unwrap();
        fs::write(d.join("lib/b.py"), "b").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("lib/a.py", d.join("link")).unwrap();
        let stamp = TreeStamp::record(d, &sha).unwrap();
        assert!(stamp.verify(d, &sha).unwrap().is_empty());

        // Same content rewritten: metadata changed, content id equal: trusted.
        fs::write(d.join("lib/b.py"), "b").unwrap();
        assert!(stamp.verify(d, &sha).unwrap().is_empty());

        // Same size, one byte altered, mtime put back: ctime still tells.
        let before = fs::metadata(d.join("flow.py")).unwrap().modified().unwrap();
        fs::write(d.join("flow.py"), "flaw").unwrap();
        File::options()
            .write(true)
            .open(d.join("flow.py"))
            .unwrap()
            .set_modified(before)
            .unwrap();
        fs::remove_file(d.join("lib/a.py")).unwrap();
        fs::write(d.join("extra.py"), "x").unwrap();
        let mut found = stamp.verify(d, &sha).unwrap();
        found.sort_by_key(|m| m.to_string());
        assert_eq!(
            found,
            vec![
                Mismatch::Added("extra.py".into()),
                Mismatch::Changed("flow.py".into()),
                Mismatch::Missing("lib/a.py".into()),
            ]
        );
    }

    #[test]
    fn gc_evicts_old_then_least_recently_used_and_never_an_entry_in_use() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path());
        let mut held = None;
        for (key, size) in [("a", 100usize), ("b", 200), ("c", 300)] {
            let writing = cache.lock(key).unwrap();
            let tmp = cache.temp_dir().unwrap();
            fs::write(tmp.path().join("data"), vec![0u8; size]).unwrap();
            cache.publish(tmp, key).unwrap();
            cache.record_size(key).unwrap();
            drop(writing);
            let in_use = cache.use_entry(key).unwrap();
            if key == "a" {
                held = Some(in_use);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // "a" is the least recently used, but in use: "b" goes instead.
        let policy = CachePolicy {
            max_size: Some(400),
            max_age: None,
            keep_recent: Duration::ZERO,
        };
        let report = cache.gc(&policy).unwrap();
        let evicted: Vec<_> = report.evicted.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(evicted, ["b"]);
        assert_eq!(report.skipped_in_use, ["a"]);
        assert!(!cache.entry_path("b").exists());
        assert!(cache.entry_path("a").exists() && cache.entry_path("c").exists());
        drop(held);

        // Kept recent: nothing goes even over the limit.
        let recent = CachePolicy {
            max_size: Some(0),
            max_age: None,
            keep_recent: Duration::from_secs(3600),
        };
        assert!(cache.gc(&recent).unwrap().evicted.is_empty());
        // Max age 0: everything not in use goes.
        let old = CachePolicy {
            max_size: None,
            max_age: Some(Duration::ZERO),
            keep_recent: Duration::ZERO,
        };
        assert_eq!(cache.gc(&old).unwrap().evicted.len(), 2);
        assert!(cache.entries().unwrap().is_empty());
    }

    #[test]
    fn temporaries_of_dead_processes_are_swept_and_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path());
        let live = cache.temp_dir().unwrap();
        // A temporary named after a process that cannot exist (pid beyond pid_max), unlocked.
        let dead = root.path().join(TMP).join("4294967295-0-0");
        fs::create_dir_all(dead.join("sub")).unwrap();
        fs::write(dead.join("sub/file"), vec![1u8; 1000]).unwrap();
        let (n, bytes) = cache.sweep_temporaries().unwrap();
        assert_eq!((n, bytes), (1, 1000));
        assert!(!dead.exists());
        assert!(live.path().exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }

    #[test]
    fn keys_are_plain_names() {
        let cache = Cache::new("/nonexistent");
        for bad in ["", "../x", "a/b", ".meta"] {
            assert!(cache.lock(bad).is_err(), "{bad}");
        }
    }
}
