//! The persistent clone cache, built on [`flowstore_core::cache`] so it heals itself:
//!
//! - `clone-<remote>`: one bare repository per remote (keyed by its credential-free URL),
//!   updated with shallow single-ref fetches under the entry's exclusive lock. Under that lock no
//!   other flowstore process is inside the repository, so lock files a killed libgit2 left
//!   behind (`shallow.lock`, `refs/…/<branch>.lock`, `config.lock`, `HEAD.lock`) and its
//!   half-written packs are cleared first. An attempt that fails on the local copy (a lock, a
//!   broken ref, a corrupt pack or index) discards the clone and fetches once more; only data
//!   the server itself serves wrong is refused as corrupt.
//! - `checkout-<remote>-<commit>[…]`: the commit's files (`tree/`), written from git's
//!   hash-verified objects, with a [`TreeStamp`] of every file's blob id. Before each use the
//!   tree is checked against the stamp (files whose size, times or inode changed are re-hashed);
//!   a checkout that differs from the commit in any file is discarded and written again.
//! - Bounded: after a fetch the cache is trimmed to its [`CachePolicy`] (least recently used
//!   first, never an entry in use); temporaries of dead processes are removed. `flowstore cache
//!   status` and `flowstore cache gc` show and trim it by hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flowstore_core::cache::{Cache, CachePolicy, EntryGuard, EntryInfo, GcReport, TreeStamp};
use flowstore_core::Error as CoreError;
use git2::{Oid, Repository};
use sha2::{Digest, Sha256};

use super::advert;
use super::config::Target;
use super::transport::{git_failure, object_failure, resolve, Cause, Failure};
use super::url::CloneTarget;
use super::worktree::{blob_id, copy_dir, resolve_relative, write_tree, WriteError};

/// Environment variable overriding the cache directory.
pub const CACHE_ENV: &str = "FLOWSTORE_GIT_CACHE";

/// Prefix of the environment variables bounding the cache: `FLOWSTORE_GIT_CACHE_MAX_SIZE`
/// (e.g. `5G`, `none`) and `FLOWSTORE_GIT_CACHE_MAX_AGE` (e.g. `30d`, `none`).
pub const POLICY_ENV_PREFIX: &str = "FLOWSTORE_GIT_CACHE";

/// Transfer figures of one fetch, reported to the progress hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Objects received so far.
    pub received_objects: usize,
    /// Objects the server is sending.
    pub total_objects: usize,
    /// Bytes received so far.
    pub received_bytes: usize,
}

/// A callback told about fetch progress (the CLI draws a progress bar with it).
pub type ProgressHook = Arc<dyn Fn(Progress) + Send + Sync>;

/// The default cache directory: `$FLOWSTORE_GIT_CACHE`, else `~/.cache/flowstore/git`.
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os(CACHE_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("flowstore")
            .join("git"),
    }
}

/// The git cache of one directory: what it holds, and trimming it.
///
/// ```
/// use flowstore_git::git::GitCache;
/// let dir = tempfile::tempdir()?;
/// let cache = GitCache::new(dir.path());
/// assert!(cache.status()?.is_empty());
/// let report = cache.gc()?;
/// assert!(report.evicted.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct GitCache {
    cache: Cache,
    policy: CachePolicy,
}

/// One entry of the git cache, as [`GitCache::status`] lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CachedEntry {
    /// `clone` (a remote's repository), `checkout` (one commit's files) or `other` (left by an
    /// older flowstore; evicted like the rest).
    pub kind: &'static str,
    /// The remote's URL without credentials (absent for clone URLs kept in a secret).
    pub remote: Option<String>,
    /// The commit, for checkouts.
    pub commit: Option<String>,
    /// Key, path, size, last use and whether a process holds it.
    #[serde(flatten)]
    pub entry: EntryInfo,
}

impl GitCache {
    /// The cache in `dir`, bounded by [`CachePolicy::default`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        GitCache {
            cache: Cache::new(dir),
            policy: CachePolicy::default(),
        }
    }

    /// The cache in [`default_cache_dir`], bounded by the policy the environment sets (see
    /// [`POLICY_ENV_PREFIX`]).
    ///
    /// Errors: a bound in the environment does not parse.
    pub fn from_env() -> Result<Self, CoreError> {
        Ok(GitCache::new(default_cache_dir()).with_policy(policy_from_env()?))
    }

    /// Replaces the bounds.
    pub fn with_policy(mut self, policy: CachePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The bounds.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        self.cache.root()
    }

    /// Every entry, least recently used first.
    ///
    /// Errors: the cache directory cannot be read.
    pub fn status(&self) -> Result<Vec<CachedEntry>, CoreError> {
        let entries = self.cache.entries().map_err(|e| self.io("reading", e))?;
        Ok(entries
            .into_iter()
            .map(|entry| {
                let read = |name: &str| {
                    std::fs::read_to_string(entry.path.join(name))
                        .ok()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                };
                let kind = if entry.key.starts_with("clone-") {
                    "clone"
                } else if entry.key.starts_with("checkout-") {
                    "checkout"
                } else {
                    "other"
                };
                CachedEntry {
                    kind,
                    remote: read(REMOTE_FILE),
                    commit: read(COMMIT_FILE),
                    entry,
                }
            })
            .collect())
    }

    /// Trims the cache to its policy: removes temporaries of dead processes, entries unused for
    /// longer than the maximum age, then the least recently used until it fits the maximum size.
    /// Entries in use by a running fetch are never removed.
    ///
    /// Errors: the cache directory cannot be read or an entry cannot be removed.
    pub fn gc(&self) -> Result<GcReport, CoreError> {
        self.cache
            .gc(&self.policy)
            .map_err(|e| self.io("trimming", e))
    }

    fn io(&self, what: &str, e: std::io::Error) -> CoreError {
        CoreError::io(
            format!("{what} the git cache {}", self.cache.root().display()),
            e,
        )
    }

    /// Trims the cache after a fetch (reads one small record per entry).
    fn trim(&self) {
        match self.gc() {
            Ok(r) if !r.evicted.is_empty() || r.temporaries_removed > 0 => tracing::info!(
                evicted = r.evicted.len(),
                temporaries = r.temporaries_removed,
                bytes_freed = r.bytes_freed,
                "trimmed the git cache"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("could not trim the git cache: {e}"),
        }
    }
}

/// The cache bounds the environment sets.
pub(crate) fn policy_from_env() -> Result<CachePolicy, CoreError> {
    CachePolicy::from_env(POLICY_ENV_PREFIX).map_err(CoreError::config)
}

const REMOTE_FILE: &str = "remote";
const COMMIT_FILE: &str = "commit";
const STAMP_FILE: &str = "stamp.json";
const TREE_DIR: &str = "tree";
const REPO_DIR: &str = "repo.git";

/// A verified checkout, held in use (not evictable) until dropped.
#[derive(Debug)]
pub(crate) struct Checkout {
    pub commit: String,
    /// The commit's files.
    pub dir: PathBuf,
    /// Every file's blob id, verified against `dir` just now.
    pub stamp: TreeStamp,
    _in_use: EntryGuard,
}

/// What to check out.
pub(crate) struct CheckoutRequest<'a> {
    pub remote: &'a CloneTarget,
    pub target: &'a Target,
    pub depth: u32,
    pub sparse: &'a [String],
    pub submodules: bool,
    pub progress: Option<&'a ProgressHook>,
}

/// Fetches the request's ref from the remote into the cache (when needed) and returns a verified
/// checkout of its commit. Blocking: run it on a blocking thread.
///
/// Errors: the remote's answer (not found, refused), a cache that cannot be repaired, or
/// ([`Cause::ServerData`]) objects the server sent that are missing or fail git's checks even in
/// an empty cache.
pub(crate) fn checkout(cache: &GitCache, req: &CheckoutRequest<'_>) -> Result<Checkout, Failure> {
    if let Some(co) = cached_checkout(cache, req) {
        return Ok(co);
    }
    with_commit(cache, req, |repo, oid, remote_key| {
        let co_key = checkout_key(remote_key, &oid.to_string(), req);
        ensure_checkout(cache, repo, oid, &co_key, req)
    })
}

/// The cache key of a remote's entries.
fn remote_key(remote: &CloneTarget) -> String {
    hex::encode(&Sha256::digest(remote.url.as_bytes())[..12])
}

/// The cache key of the checkout of `commit` the request asks for.
fn checkout_key(remote_key: &str, commit: &str, req: &CheckoutRequest<'_>) -> String {
    let mut co_key = format!("checkout-{remote_key}-{commit}");
    if !req.sparse.is_empty() {
        let paths = hex::encode(&Sha256::digest(req.sparse.join("\n").as_bytes())[..6]);
        co_key = format!("{co_key}-{paths}");
    }
    if req.submodules {
        co_key.push_str("-with-submodules");
    }
    co_key
}

/// The warm path of [`checkout`]: the checkout of the commit the target names now, if the cache
/// holds one that matches its stamp — without libgit2, without the clone's lock, and without
/// fetching. `None` sends the caller down the ordinary path, which fetches, writes, repairs and
/// reports errors; so does anything unexpected here.
///
/// A commit target needs no remote. A branch, tag or the default branch of a `git://` remote is
/// resolved by asking the server for its refs ([`advert::list_refs`]), every time — so a new
/// commit is seen — while the checkout of the commit the clone last fetched for the branch is
/// verified on another thread, as a guess; a guess that proves wrong is dropped. Other schemes
/// (https, ssh: credentials, TLS, host keys) take the ordinary path.
fn cached_checkout(cache: &GitCache, req: &CheckoutRequest<'_>) -> Option<Checkout> {
    let rkey = remote_key(req.remote);
    let verify = |commit: &str| -> Option<Checkout> {
        let key = checkout_key(&rkey, commit, req);
        let entry = cache.cache.entry_path(&key);
        // Not `use_entry` on a checkout that is not there: that would leave its lock file behind.
        entry.join(STAMP_FILE).symlink_metadata().ok()?;
        let in_use = cache.cache.use_entry(&key).ok()?;
        let stamp = verified_stamp(&entry, commit, false)?;
        Some(Checkout {
            commit: commit.to_string(),
            dir: entry.join(TREE_DIR),
            stamp,
            _in_use: in_use,
        })
    };
    if let Target::Commit(sha) = req.target {
        let sha = sha.to_ascii_lowercase();
        return if advert::is_full_sha(&sha) {
            tracing::debug_span!("verify_checkout").in_scope(|| verify(&sha))
        } else {
            None
        };
    }
    if !req.remote.url.starts_with("git://") {
        return None;
    }
    let guess = last_fetched(cache, &rkey, req.target);
    std::thread::scope(|s| {
        let speculation = guess.map(|commit| {
            let verify = &verify;
            s.spawn(move || {
                let found = tracing::debug_span!("speculative_verify").in_scope(|| verify(&commit));
                (commit, found)
            })
        });
        let listed =
            tracing::debug_span!("ref_lookup").in_scope(|| advert::list_refs(&req.remote.url));
        let remote = match listed {
            Ok(advert) => advert.commit_of(req.target),
            Err(e) => {
                tracing::debug!(url = %req.remote.url, "listing the remote's refs failed ({e}): fetching");
                None
            }
        };
        let guessed = speculation.and_then(|h| h.join().ok());
        let remote = remote?;
        match guessed {
            Some((commit, found)) if commit == remote => found,
            _ => tracing::debug_span!("verify_checkout").in_scope(|| verify(&remote)),
        }
    })
}

/// The commit the clone last fetched for a branch target (read from its ref file, without
/// libgit2 nor the clone's lock: a guess, checked against the remote).
fn last_fetched(cache: &GitCache, remote_key: &str, target: &Target) -> Option<String> {
    let Target::Branch(branch) = target else {
        return None;
    };
    if branch.contains("..") || branch.starts_with('/') {
        return None;
    }
    let repo = cache
        .cache
        .entry_path(&format!("clone-{remote_key}"))
        .join(REPO_DIR);
    let name = format!("refs/flowstore/heads/{branch}");
    let sha = match std::fs::read_to_string(repo.join(&name)) {
        Ok(text) => text.trim().to_string(),
        Err(_) => std::fs::read_to_string(repo.join("packed-refs"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_suffix(name.as_str())?.strip_suffix(' '))?
            .to_string(),
    };
    advert::is_full_sha(&sha).then_some(sha)
}

/// Fetches the request's ref from the remote into the cache (when needed) and runs `read` on the
/// cached clone, the resolved commit and the remote's cache key, under the clone's exclusive lock
/// (so no other flowstore process fetches into, or repairs, the clone meanwhile). Blocking.
///
/// Self-healing like [`checkout`]: when an attempt fails on the local copy ([`Cause::Cache`],
/// [`Cause::Data`] — `read` returns the latter for objects it cannot read), the clone is
/// discarded and everything, `read` included, runs once more; a second [`Cause::Data`] is the
/// server's ([`Cause::ServerData`]). `read` returns [`Cause::Remote`] for failures that
/// discarding the clone cannot cure.
pub(crate) fn with_commit<T>(
    cache: &GitCache,
    req: &CheckoutRequest<'_>,
    mut read: impl FnMut(&Repository, Oid, &str) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let remote = req.remote;
    let remote_key = remote_key(remote);
    let clone_key = format!("clone-{remote_key}");
    let _writing = tracing::debug_span!("lock_clone")
        .in_scope(|| cache.cache.lock(&clone_key))
        .map_err(|e| cache.io("locking", e))?;
    let mut run = || -> Result<T, Failure> {
        let (repo, oid) = attempt(cache, &clone_key, req)?;
        let _ =
            tracing::debug_span!("record_size").in_scope(|| cache.cache.record_size(&clone_key));
        read(&repo, oid, &remote_key)
    };
    let out = match run() {
        Ok(out) => out,
        Err(first) if matches!(first.cause, Cause::Cache | Cause::Data) => {
            tracing::warn!(
                cache = %cache.cache.entry_path(&clone_key).display(),
                "the cached clone of {} failed ({}): discarding it and fetching again",
                remote.url,
                first.detail
            );
            cache
                .cache
                .remove(&clone_key)
                .map_err(|e| cache.io("discarding a broken clone in", e))?;
            run().map_err(|mut second| {
                if second.cause == Cause::Data {
                    second.cause = Cause::ServerData;
                    second.detail = format!("{} (from {})", second.detail, remote.url).into();
                }
                second
            })?
        }
        Err(first) => return Err(first),
    };
    // Also sweeps temporaries left by dead processes.
    tracing::debug_span!("trim").in_scope(|| cache.trim());
    Ok(out)
}

/// Opens (or creates) the clone, clears what dead processes left in it and resolves the target.
fn attempt(
    cache: &GitCache,
    clone_key: &str,
    req: &CheckoutRequest<'_>,
) -> Result<(Repository, Oid), Failure> {
    let entry = cache.cache.entry_path(clone_key);
    let bare = entry.join(REPO_DIR);
    tracing::debug_span!("libgit2_init").in_scope(super::transport::init_libgit2);
    let opening = tracing::debug_span!("open_clone").entered();
    clear_stale_git_files(&bare);
    let (repo, fresh) = match Repository::open_bare(&bare) {
        Ok(r) => (r, false),
        Err(_) => {
            // Half-created (killed during init) or absent: start clean.
            let _ = std::fs::remove_dir_all(&entry);
            std::fs::create_dir_all(&entry).map_err(|e| Failure::from(cache.io("creating", e)))?;
            let repo = Repository::init_bare(&bare)
                .map_err(|e| git_failure("creating the cache for".into(), req.remote, &e))?;
            let _ = std::fs::write(
                entry.join(REMOTE_FILE),
                req.remote.redactor.redact(&req.remote.url),
            );
            (repo, true)
        }
    };
    drop(opening);
    let oid = resolve(
        &repo,
        req.remote,
        req.target,
        req.depth,
        fresh,
        req.progress,
    )?;
    // Reading the commit and its tree proves the objects are there and hash-verified.
    let _checking = tracing::debug_span!("commit_check").entered();
    repo.find_commit(oid).and_then(|c| c.tree()).map_err(|e| {
        object_failure(
            format!("reading commit {oid} from the cache of"),
            req.remote,
            &e,
        )
    })?;
    Ok((repo, oid))
}

/// Removes lock files and half-written packs a killed libgit2 left in `repo` (only call it under
/// the clone's exclusive lock: no flowstore process is inside the repository then).
fn clear_stale_git_files(repo: &Path) {
    fn walk(dir: &Path) {
        let Ok(list) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in list.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path);
            } else if name.ends_with(".lock")
                || name.starts_with("pack_git2_")
                || name.starts_with("tmp_pack_")
            {
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::warn!(
                        path = %path.display(),
                        "removed a git lock or temporary file left by an interrupted fetch"
                    ),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "could not remove a stale git file: {e}")
                    }
                }
            }
        }
    }
    walk(repo);
}

/// Returns the verified checkout `key` of `oid`, writing it (again) when it is missing or does
/// not match the commit.
fn ensure_checkout(
    cache: &GitCache,
    repo: &Repository,
    oid: Oid,
    key: &str,
    req: &CheckoutRequest<'_>,
) -> Result<Checkout, Failure> {
    let entry = cache.cache.entry_path(key);
    for _ in 0..5 {
        let verifying = tracing::debug_span!("verify_checkout").entered();
        let in_use = cache
            .cache
            .use_entry(key)
            .map_err(|e| cache.io("using", e))?;
        let verified = verified_stamp(&entry, &oid.to_string(), true);
        drop(verifying);
        if let Some(stamp) = verified {
            return Ok(Checkout {
                commit: oid.to_string(),
                dir: entry.join(TREE_DIR),
                stamp,
                _in_use: in_use,
            });
        }
        drop(in_use);
        let _writing = cache.cache.lock(key).map_err(|e| cache.io("locking", e))?;
        // Another process may have written it while we waited.
        if verified_stamp(&entry, &oid.to_string(), false).is_some() {
            continue;
        }
        tracing::debug_span!("write_checkout")
            .in_scope(|| write_checkout(cache, repo, oid, key, req))?;
    }
    Err(Failure::from(CoreError::backend(
        "Git",
        format!(
            "the checkout of commit {oid} of {} in {} keeps changing while it is verified: \
             is another program writing to the cache?",
            req.remote.url,
            entry.display()
        ),
    )))
}

/// The checkout's stamp if its files match it (with `report`, logging what differs when they
/// don't).
fn verified_stamp(entry: &Path, oid: &str, report: bool) -> Option<TreeStamp> {
    let stamp = TreeStamp::load(&entry.join(STAMP_FILE)).ok()?;
    match stamp.verify(&entry.join(TREE_DIR), &blob_id) {
        Ok(m) if m.is_empty() => Some(stamp),
        Ok(_) | Err(_) if !report => None,
        Ok(mismatches) => {
            let shown: Vec<String> = mismatches.iter().take(5).map(|m| m.to_string()).collect();
            tracing::warn!(
                checkout = %entry.display(),
                "the cached checkout of commit {oid} does not match the commit ({}{}): writing it again",
                shown.join(", "),
                if mismatches.len() > 5 { ", …" } else { "" }
            );
            None
        }
        Err(e) => {
            tracing::warn!(checkout = %entry.display(), "cannot verify the cached checkout of commit {oid} ({e}): writing it again");
            None
        }
    }
}

/// Writes the commit's tree (or its sparse paths, and submodules) to a temporary directory,
/// stamps it and publishes it as `key`. Call it holding `key`'s exclusive lock.
fn write_checkout(
    cache: &GitCache,
    repo: &Repository,
    oid: Oid,
    key: &str,
    req: &CheckoutRequest<'_>,
) -> Result<(), Failure> {
    let tmp = cache
        .cache
        .temp_dir()
        .map_err(|e| cache.io("creating a temporary directory in", e))?;
    let tree_dir = tmp.path().join(TREE_DIR);
    let tree = repo.find_commit(oid).and_then(|c| c.tree()).map_err(|e| {
        object_failure(
            format!("reading commit {oid} from the cache of"),
            req.remote,
            &e,
        )
    })?;
    let written = std::fs::create_dir_all(&tree_dir)
        .map_err(WriteError::Io)
        .and_then(|()| write_tree(repo, &tree, &tree_dir, "", req.sparse));
    match written {
        Ok(()) => {}
        Err(WriteError::Object(e)) => {
            return Err(object_failure(
                format!("checking out commit {oid} from the cache of"),
                req.remote,
                &e,
            ))
        }
        Err(WriteError::Io(e)) => {
            return Err(CoreError::io(
                format!(
                    "checking out {oid} of {} into {}",
                    req.remote.url,
                    tree_dir.display()
                ),
                e,
            )
            .into())
        }
    }
    if req.submodules {
        check_out_submodules(cache, repo, oid, req, &tree_dir)?;
    }
    let stamp = TreeStamp::record(&tree_dir, &blob_id)
        .map_err(|e| CoreError::io(format!("stamping {}", tree_dir.display()), e))?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(tmp.path().join(name), bytes)
            .map_err(|e| CoreError::io(format!("writing {name} in {}", tmp.path().display()), e))
    };
    stamp
        .save(&tmp.path().join(STAMP_FILE))
        .map_err(|e| CoreError::io(format!("writing the stamp in {}", tmp.path().display()), e))?;
    write(COMMIT_FILE, oid.to_string().as_bytes())?;
    write(
        REMOTE_FILE,
        req.remote.redactor.redact(&req.remote.url).as_bytes(),
    )?;
    cache
        .cache
        .publish(tmp, key)
        .map_err(|e| cache.io(&format!("placing checkout {key} in"), e))?;
    let _ = cache.cache.record_size(key);
    tracing::debug!(commit = %oid, key, "checkout written");
    Ok(())
}

/// Checks out each submodule listed in the commit's `.gitmodules` at the commit its gitlink
/// records, from its own (cached) remote, into `into/<path>`.
fn check_out_submodules(
    cache: &GitCache,
    repo: &Repository,
    oid: Oid,
    req: &CheckoutRequest<'_>,
    into: &Path,
) -> Result<(), Failure> {
    let remote = req.remote;
    let gitmodules = into.join(".gitmodules");
    if !gitmodules.exists() {
        return Ok(());
    }
    let fail = |what: String, e: git2::Error| git_failure(what, remote, &e);
    let config =
        git2::Config::open(&gitmodules).map_err(|e| fail("reading .gitmodules of".into(), e))?;
    let mut entries = config
        .entries(Some(r"submodule\..*\.path"))
        .map_err(|e| fail("reading .gitmodules of".into(), e))?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| fail("reading".into(), e))?;
    let mut found = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(|e| fail("reading .gitmodules of".into(), e))?;
        let (Some(key), Some(path)) = (entry.name().ok(), entry.value().ok()) else {
            continue;
        };
        let name = key
            .trim_start_matches("submodule.")
            .trim_end_matches(".path")
            .to_string();
        found.push((name, path.to_string()));
    }
    for (name, path) in found {
        let url = config
            .get_string(&format!("submodule.{name}.url"))
            .map_err(|e| fail(format!("reading the url of submodule {name} in"), e))?;
        let gitlink = tree
            .get_path(Path::new(&path))
            .map_err(|e| fail(format!("finding submodule {path} in"), e))?
            .id();
        let sub = CloneTarget {
            url: resolve_relative(&remote.url, &url),
            credentials: remote.credentials.clone(),
            ssh: remote.ssh.clone(),
            redactor: remote.redactor.clone(),
        };
        let co = checkout(
            cache,
            &CheckoutRequest {
                remote: &sub,
                target: &Target::Commit(gitlink.to_string()),
                depth: 0,
                sparse: &[],
                submodules: true,
                progress: req.progress,
            },
        )?;
        copy_dir(&co.dir, &into.join(&path))?;
    }
    Ok(())
}
