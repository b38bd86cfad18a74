//! [`BlobCache`]: the shared, content-addressed cache of bundle blobs on this machine.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::cache::{Cache, CachePolicy, TempDir};
use crate::error::{Error, Result};

/// Environment variable naming the blob cache directory (default `~/.cache/flowstore/blobs`).
/// `FLOWSTORE_BLOB_CACHE_MAX_SIZE` and `FLOWSTORE_BLOB_CACHE_MAX_AGE` bound it.
pub const BLOB_CACHE_ENV: &str = "FLOWSTORE_BLOB_CACHE";

/// A directory of verified blobs named by digest, shared by every process on the machine.
///
/// - Blobs are written to a temporary file, verified, then renamed into place: a reader sees a
///   whole blob or none, and two processes fetching the same blob at once both succeed (same
///   name, same bytes).
/// - Blobs are read-only (`0444`, `0555` for the executable copy `<hex>.x`), because bundles
///   link them into materialized trees; a blob changed anyway is found when it is next used
///   (every use re-hashes it) and fetched again.
/// - Using a blob marks it used (its mtime); [`BlobCache::evict`] removes the least recently used
///   beyond the size bound and those unused beyond the age bound, never one used within the
///   policy's `keep_recent`. A tree that linked an evicted blob keeps its file.
#[derive(Debug, Clone)]
pub struct BlobCache {
    cache: Cache,
    policy: CachePolicy,
}

impl BlobCache {
    /// A cache at `root` with `policy`.
    pub fn new(root: impl Into<PathBuf>, policy: CachePolicy) -> Self {
        BlobCache {
            cache: Cache::new(root),
            policy,
        }
    }

    /// The cache named by `$FLOWSTORE_BLOB_CACHE` (else `$XDG_CACHE_HOME/flowstore/blobs`, else
    /// `~/.cache/flowstore/blobs`), bounded by `FLOWSTORE_BLOB_CACHE_MAX_SIZE`/`_MAX_AGE`
    /// (default 2 GiB, 30 days).
    ///
    /// Errors with [`Error::Config`] when no directory can be found or a bound does not parse.
    pub fn from_env() -> Result<Self> {
        let policy = CachePolicy::from_env(BLOB_CACHE_ENV).map_err(Error::config)?;
        let root = match std::env::var_os(BLOB_CACHE_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
                Some(xdg) => PathBuf::from(xdg).join("flowstore/blobs"),
                None => match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
                    Some(home) => PathBuf::from(home).join(".cache/flowstore/blobs"),
                    None => {
                        return Err(Error::config(format!(
                            "No directory for the bundle blob cache: set {BLOB_CACHE_ENV} or HOME"
                        )))
                    }
                },
            },
        };
        Ok(BlobCache::new(root, policy))
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        self.cache.root()
    }

    /// The bounds [`BlobCache::evict`] applies.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// The same cache with other bounds.
    pub fn with_policy(mut self, policy: CachePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How many blobs the cache holds and their bytes.
    pub fn usage(&self) -> (usize, u64) {
        let Ok(entries) = fs::read_dir(self.root().join("sha256")) else {
            return (0, 0);
        };
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.len()))
    }

    /// Where the blob `digest` is (or would be) kept; `executable` names the `0555` copy.
    pub fn blob_path(&self, digest: &str, executable: bool) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let name = if executable {
            format!("{hex}.x")
        } else {
            hex.to_string()
        };
        self.root().join("sha256").join(name)
    }

    /// A temporary directory inside the cache (same filesystem as the blobs), removed when
    /// dropped; one left by a killed process is swept by a later fetch.
    ///
    /// Errors: the cache directory cannot be created.
    pub fn temp_dir(&self) -> Result<TempDir> {
        fs::create_dir_all(self.root().join("sha256"))
            .and_then(|_| self.cache.temp_dir())
            .map_err(|e| self.io_error("creating a temporary directory in", e))
    }

    /// Removes temporaries of processes that died mid-download ([`BlobCache::evict`], which
    /// every fetch ends with, does it).
    pub fn sweep(&self) {
        if let Err(e) = self.cache.sweep_temporaries() {
            tracing::debug!(error = %e, "sweeping blob cache temporaries failed");
        }
    }

    fn io_error(&self, what: &str, e: io::Error) -> Error {
        Error::io(
            format!(
                "{what} the bundle blob cache {} (set {BLOB_CACHE_ENV} to use another directory)",
                self.root().display()
            ),
            e,
        )
    }

    /// Checks the cached blob against its digest (re-hashing it) and marks it used. A blob that
    /// does not match is removed. Returns whether a good blob is in place.
    pub fn verify(&self, digest: &str, executable: bool) -> bool {
        let path = self.blob_path(digest, executable);
        match super::digest_file(&path) {
            Ok((actual, _)) if actual == digest => {
                mark_used(&path);
                true
            }
            Ok((actual, _)) => {
                tracing::warn!(blob = %path.display(), expected = digest, actual = %actual, "a cached blob was altered; fetching it again");
                let _ = fs::remove_file(&path);
                false
            }
            Err(_) => false,
        }
    }

    /// Hashes `file` (a download in a directory of [`BlobCache::temp_dir`] or on the same
    /// filesystem) and moves it into the cache as `digest`.
    ///
    /// Errors with [`Error::FlowCorrupt`] naming flow `flow`, its file `path` and the blob's
    /// `location` when the bytes do not match (the file is left where it is).
    pub fn add_verified(
        &self,
        file: &Path,
        digest: &str,
        flow: &str,
        path: &str,
        location: &str,
    ) -> Result<()> {
        let (actual, _) = super::digest_file(file)?;
        check_digest(&actual, digest, flow, path, location)?;
        self.insert(file, digest, false).map(|_| ())
    }

    /// Checks `bytes` (one file of a pack, in memory) against `digest` and writes them into the
    /// cache as that blob, through a temporary file renamed into place.
    ///
    /// Errors with [`Error::FlowCorrupt`] naming flow `flow`, its file `path` and the blob's
    /// `location` when the bytes do not match.
    pub fn add_bytes_verified(
        &self,
        bytes: &[u8],
        digest: &str,
        flow: &str,
        path: &str,
        location: &str,
    ) -> Result<()> {
        let actual = crate::envelope::sha256_digest(bytes);
        check_digest(&actual, digest, flow, path, location)?;
        // A temporary file of its own (not a locked directory): one file per blob, often
        // hundreds per fetch; one left by a killed process is swept by its dead owner's id.
        let file = self
            .cache
            .temp_name()
            .map_err(|e| self.io_error("writing to", e))?;
        let written = fs::write(&file, bytes)
            .map_err(|e| self.io_error("writing to", e))
            .and_then(|_| self.insert(&file, digest, false));
        if written.is_err() {
            let _ = fs::remove_file(&file);
        }
        written.map(|_| ())
    }

    /// Moves a verified file into the cache as `digest` (read-only), replacing nothing that is
    /// already there with different bytes (same name means same bytes).
    pub(crate) fn insert(&self, file: &Path, digest: &str, executable: bool) -> Result<PathBuf> {
        let path = self.blob_path(digest, executable);
        set_read_only(file, executable).map_err(|e| self.io_error("writing to", e))?;
        fs::rename(file, &path).map_err(|e| self.io_error("writing to", e))?;
        Ok(path)
    }

    /// Makes the executable copy of a verified blob from its plain copy.
    pub(crate) fn make_executable(&self, digest: &str) -> Result<PathBuf> {
        let tmp = self.temp_dir()?;
        let copy = tmp.path().join("blob");
        fs::copy(self.blob_path(digest, false), &copy)
            .map_err(|e| self.io_error("copying a blob in", e))?;
        self.insert(&copy, digest, true)
    }

    /// Evicts blobs by the cache's policy, never one named in `keep`, and removes temporaries of
    /// dead processes. Returns how many blobs and bytes were removed.
    pub fn evict(&self, keep: &[&str]) -> (usize, u64) {
        self.sweep();
        let dir = self.root().join("sha256");
        let Ok(entries) = fs::read_dir(&dir) else {
            return (0, 0);
        };
        let now = SystemTime::now();
        let mut blobs: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        let mut total = 0u64;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let used = meta.modified().unwrap_or(now);
            total += meta.len();
            let name = entry.file_name();
            let hex = name.to_string_lossy();
            let hex = hex.trim_end_matches(".x");
            if keep.iter().any(|k| k.strip_prefix("sha256:") == Some(hex)) {
                continue;
            }
            blobs.push((used, meta.len(), entry.path()));
        }
        blobs.sort();
        let (mut count, mut freed) = (0usize, 0u64);
        for (used, size, path) in blobs {
            let age = now.duration_since(used).unwrap_or_default();
            if age < self.policy.keep_recent {
                continue;
            }
            let too_old = self.policy.max_age.is_some_and(|max| age >= max);
            let too_big = self.policy.max_size.is_some_and(|max| total > max);
            if !(too_old || too_big) {
                continue;
            }
            if fs::remove_file(&path).is_ok() {
                tracing::debug!(blob = %path.display(), size, "evicted a cached blob");
                total = total.saturating_sub(size);
                count += 1;
                freed += size;
            }
        }
        (count, freed)
    }
}

/// [`Error::FlowCorrupt`] naming the flow, its file and the blob's location, unless `actual`
/// is the `expected` digest.
fn check_digest(
    actual: &str,
    expected: &str,
    flow: &str,
    path: &str,
    location: &str,
) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    Err(Error::FlowCorrupt {
        flow: flow.to_string(),
        location: location.to_string(),
        reason: format!(
            "its file {path:?} has digest {actual}, but the manifest records {expected}"
        ),
    })
}

fn mark_used(path: &Path) {
    if let Ok(file) = fs::File::open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

#[cfg(unix)]
fn set_read_only(path: &Path, executable: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if executable { 0o555 } else { 0o444 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_read_only(path: &Path, _executable: bool) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn put(cache: &BlobCache, bytes: &[u8]) -> String {
        let digest = crate::envelope::sha256_digest(bytes);
        let tmp = cache.temp_dir().unwrap();
        let file = tmp.path().join("blob");
        fs::write(&file, bytes).unwrap();
        cache.insert(&file, &digest, false).unwrap();
        digest
    }

    #[test]
    fn an_altered_blob_fails_verification_and_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(root.path(), CachePolicy::default());
        let digest = put(&cache, b"good bytes");
        assert!(cache.verify(&digest, false));
        let path = cache.blob_path(&digest, false);
        let mut perms = fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&path, perms).unwrap();
        fs::write(&path, b"bad bytes!").unwrap();
        assert!(!cache.verify(&digest, false));
        assert!(!path.exists(), "the altered blob was removed");
    }

    #[test]
    fn eviction_removes_least_recently_used_beyond_the_size_bound_but_never_kept_ones() {
        let root = tempfile::tempdir().unwrap();
        let policy = CachePolicy {
            max_size: Some(25),
            max_age: None,
            keep_recent: Duration::ZERO,
        };
        let cache = BlobCache::new(root.path(), policy);
        let old = put(&cache, &[1u8; 10]);
        let kept = put(&cache, &[2u8; 10]);
        let new = put(&cache, &[3u8; 10]);
        let past = SystemTime::now() - Duration::from_secs(3600);
        for (d, t) in [
            (&old, past),
            (&kept, past - Duration::from_secs(60)),
            (&new, SystemTime::now()),
        ] {
            fs::File::open(cache.blob_path(d, false))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let (count, freed) = cache.evict(&[kept.as_str()]);
        assert_eq!((count, freed), (1, 10));
        assert!(!cache.blob_path(&old, false).exists());
        assert!(cache.blob_path(&kept, false).exists());
        assert!(cache.blob_path(&new, false).exists());
    }
}
