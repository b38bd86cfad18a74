//! The persistent clone cache: one bare repository per remote (keyed by its credential-free URL)
//! under `~/.cache/flowstore/git` (or `$FLOWSTORE_GIT_CACHE`), a lock so concurrent fetches of the
//! same remote on one machine take turns, shallow single-ref fetches, and one immutable checkout
//! directory per commit.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flowstore_core::secret::ExposeSecret;
use flowstore_core::Error as CoreError;
use git2::{FetchOptions, Oid, RemoteCallbacks, Repository};
use sha2::{Digest, Sha256};

use super::fields::Target;
use super::url::CloneTarget;

/// Environment variable overriding the cache directory.
pub const CACHE_ENV: &str = "FLOWSTORE_GIT_CACHE";

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

/// The default cache directory.
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os(CACHE_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("flowstore")
            .join("git"),
    }
}

/// What one checkout produced.
#[derive(Debug, Clone)]
pub(crate) struct Checkout {
    pub commit: String,
    pub dir: PathBuf,
}

fn backend_err(what: String, target: &CloneTarget, e: &git2::Error) -> CoreError {
    let detail = target.redactor.redact(e.message());
    let hint = match e.class() {
        git2::ErrorClass::Http | git2::ErrorClass::Net
            if detail.contains("401") || detail.contains("auth") =>
        {
            " (authentication failed: check the token secret and username)"
        }
        _ if e.code() == git2::ErrorCode::Auth => {
            " (authentication failed: check the token secret and username)"
        }
        _ => "",
    };
    CoreError::Backend {
        backend: "Git".to_string(),
        message: format!("{what} {}: {detail}{hint}", target.url),
        source: None,
    }
}

/// Fetches `target` from the remote into the cache (when needed) and checks out its commit.
/// Blocking: run it on a blocking thread.
pub(crate) fn checkout(
    cache_root: &Path,
    remote: &CloneTarget,
    target: &Target,
    depth: u32,
    sparse: &[String],
    progress: Option<&ProgressHook>,
) -> Result<Checkout, CoreError> {
    let key = hex::encode(&Sha256::digest(remote.url.as_bytes())[..12]);
    let root = cache_root.join(key);
    std::fs::create_dir_all(&root)
        .map_err(|e| CoreError::io(format!("creating git cache {}", root.display()), e))?;
    let lock = File::create(root.join("lock"))
        .map_err(|e| CoreError::io(format!("locking {}", root.display()), e))?;
    lock.lock()
        .map_err(|e| CoreError::io(format!("locking {}", root.display()), e))?;

    let bare = root.join("repo.git");
    let repo = match Repository::open_bare(&bare) {
        Ok(r) => r,
        Err(_) => Repository::init_bare(&bare)
            .map_err(|e| backend_err("creating the cache for".into(), remote, &e))?,
    };
    let oid = resolve(&repo, remote, target, depth, progress)?;
    let commit = oid.to_string();
    let dir = root.join("checkouts").join(if sparse.is_empty() {
        commit.clone()
    } else {
        format!(
            "{commit}-{}",
            hex::encode(&Sha256::digest(sparse.join("\n").as_bytes())[..6])
        )
    });
    if !dir.exists() {
        write_checkout(&repo, oid, &dir, sparse, remote)?;
    }
    drop(lock);
    Ok(Checkout { commit, dir })
}

fn callbacks<'a>(
    remote: &'a CloneTarget,
    stats: &'a std::cell::Cell<Progress>,
    progress: Option<&'a ProgressHook>,
) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let mut attempts = 0;
    cb.credentials(move |_url, _user, _allowed| {
        attempts += 1;
        match &remote.credentials {
            Some((user, pass)) if attempts <= 1 => git2::Cred::userpass_plaintext(user, pass.expose_secret()),
            Some(_) => Err(git2::Error::from_str("the server refused the credentials (401)")),
            None => Err(git2::Error::from_str(
                "the server asks for credentials (401), but none are configured: set git_token_secret_name",
            )),
        }
    });
    cb.transfer_progress(move |p| {
        let now = Progress {
            received_objects: p.received_objects(),
            total_objects: p.total_objects(),
            received_bytes: p.received_bytes(),
        };
        stats.set(now);
        if let Some(hook) = progress {
            hook(now);
        }
        true
    });
    cb
}

/// Resolves `target` to a commit, fetching what is missing.
fn resolve(
    repo: &Repository,
    remote: &CloneTarget,
    target: &Target,
    depth: u32,
    progress: Option<&ProgressHook>,
) -> Result<Oid, CoreError> {
    let stats = std::cell::Cell::new(Progress::default());
    let fetch = |refspecs: &[String], depth: u32| -> Result<(), CoreError> {
        let mut anon = repo
            .remote_anonymous(&remote.url)
            .map_err(|e| backend_err("opening".into(), remote, &e))?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks(remote, &stats, progress));
        opts.download_tags(git2::AutotagOption::None);
        // 0 = the whole history; libgit2 reads i32::MAX as "unshallow" for a shallow cache.
        opts.depth(if depth == 0 { i32::MAX } else { depth as i32 });
        anon.fetch(refspecs, Some(&mut opts), None)
            .map_err(|e| backend_err("fetching from".into(), remote, &e))
    };
    let oid = match target {
        Target::Commit(sha) => {
            let wanted = Oid::from_str(sha)
                .map_err(|_| CoreError::config(format!("Commit \"{sha}\" is not a commit SHA")))?;
            if repo.find_commit(wanted).is_err() {
                // Servers only hand out advertised refs: fetch every branch's full history.
                fetch(&["+refs/heads/*:refs/flowstore/heads/*".to_string()], 0)?;
            }
            repo.find_commit(wanted)
                .map_err(|_| CoreError::Backend {
                    backend: "Git".into(),
                    message: format!(
                        "Commit {sha} not found in {}: it is on no branch of the repository",
                        remote.url
                    ),
                    source: None,
                })?
                .id()
        }
        Target::Branch(b) => fetch_ref(
            repo,
            remote,
            &fetch,
            &format!("refs/heads/{b}"),
            &format!("refs/flowstore/heads/{b}"),
            depth,
            "Branch",
            b,
        )?,
        Target::Tag(t) => fetch_ref(
            repo,
            remote,
            &fetch,
            &format!("refs/tags/{t}"),
            &format!("refs/flowstore/tags/{t}"),
            depth,
            "Tag",
            t,
        )?,
        Target::Default => {
            let default = default_branch(repo, remote)?;
            let name = default.trim_start_matches("refs/heads/").to_string();
            fetch_ref(
                repo,
                remote,
                &fetch,
                &default,
                &format!("refs/flowstore/heads/{name}"),
                depth,
                "Branch",
                &name,
            )?
        }
    };
    Ok(oid)
}

/// Fetches refspecs at a depth.
type FetchFn<'a> = dyn Fn(&[String], u32) -> Result<(), CoreError> + 'a;

#[allow(clippy::too_many_arguments)]
fn fetch_ref(
    repo: &Repository,
    remote: &CloneTarget,
    fetch: &FetchFn<'_>,
    src: &str,
    dst: &str,
    depth: u32,
    kind: &str,
    name: &str,
) -> Result<Oid, CoreError> {
    match fetch(&[format!("+{src}:{dst}")], depth) {
        Ok(()) => {}
        Err(e)
            if e.to_string().contains("couldn't find remote ref")
                || e.to_string().contains("not found") =>
        {
            return Err(CoreError::Backend {
                backend: "Git".into(),
                message: format!("{kind} \"{name}\" not found in {}", remote.url),
                source: None,
            })
        }
        Err(e) => return Err(e),
    }
    let reference = repo.find_reference(dst).map_err(|_| CoreError::Backend {
        backend: "Git".into(),
        message: format!("{kind} \"{name}\" not found in {}", remote.url),
        source: None,
    })?;
    reference
        .peel_to_commit()
        .map(|c| c.id())
        .map_err(|e| backend_err(format!("{kind} \"{name}\" in"), remote, &e))
}

fn default_branch(repo: &Repository, remote: &CloneTarget) -> Result<String, CoreError> {
    let mut anon = repo
        .remote_anonymous(&remote.url)
        .map_err(|e| backend_err("opening".into(), remote, &e))?;
    let stats = std::cell::Cell::new(Progress::default());
    let conn = anon
        .connect_auth(
            git2::Direction::Fetch,
            Some(callbacks(remote, &stats, None)),
            None,
        )
        .map_err(|e| backend_err("connecting to".into(), remote, &e))?;
    let name = conn
        .default_branch()
        .map_err(|e| backend_err("reading the default branch of".into(), remote, &e))?;
    name.as_str().ok().map(str::to_string).ok_or_else(|| {
        CoreError::backend(
            "Git",
            format!("the default branch of {} is not UTF-8", remote.url),
        )
    })
}

/// Writes the commit's tree (or the sparse paths of it) to `dir`, atomically: a temporary
/// directory renamed into place, so a checkout directory is always complete.
fn write_checkout(
    repo: &Repository,
    oid: Oid,
    dir: &Path,
    sparse: &[String],
    remote: &CloneTarget,
) -> Result<(), CoreError> {
    static N: AtomicU64 = AtomicU64::new(0);
    let parent = dir.parent().expect("checkouts have a parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| CoreError::io(format!("creating {}", parent.display()), e))?;
    let tmp = parent.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let commit = repo
        .find_commit(oid)
        .map_err(|e| backend_err("reading commit from".into(), remote, &e))?;
    let mut co = git2::build::CheckoutBuilder::new();
    co.target_dir(&tmp).force().recreate_missing(true);
    for p in sparse {
        co.path(p);
    }
    repo.checkout_tree(commit.as_object(), Some(&mut co))
        .map_err(|e| backend_err(format!("checking out {oid} of"), remote, &e))?;
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(CoreError::io(
            format!("placing checkout {}", dir.display()),
            e,
        )),
    }
}
