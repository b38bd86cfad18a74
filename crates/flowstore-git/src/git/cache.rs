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
    let refusal = HOST_KEY_REFUSAL.with(|r| r.borrow_mut().take());
    let detail = target
        .redactor
        .redact(refusal.as_deref().unwrap_or(e.message()));
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
    submodules: bool,
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
    let dir = if submodules {
        dir.with_extension("with-submodules")
    } else {
        dir
    };
    if !dir.exists() {
        write_checkout(&repo, oid, &dir, sparse, remote, |tmp| {
            if submodules {
                check_out_submodules(cache_root, &repo, oid, remote, tmp, progress)
            } else {
                Ok(())
            }
        })?;
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
    cb.credentials(move |_url, _user, allowed| {
        attempts += 1;
        if let Some(ssh) = &remote.ssh {
            if attempts > 3 {
                return Err(git2::Error::from_str("the ssh server refused every key offered"));
            }
            if allowed.contains(git2::CredentialType::USERNAME) {
                return git2::Cred::username(&ssh.user);
            }
            if let Some(key) = &ssh.key_path {
                return git2::Cred::ssh_key(&ssh.user, None, key, None);
            }
            if std::env::var_os("SSH_AUTH_SOCK").is_some() && attempts == 1 {
                return git2::Cred::ssh_key_from_agent(&ssh.user);
            }
            let home = dirs::home_dir().unwrap_or_default().join(".ssh");
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let key = home.join(name);
                if key.exists() {
                    return git2::Cred::ssh_key(&ssh.user, None, &key, None);
                }
            }
            return Err(git2::Error::from_str("no ssh key: set ssh_key_path, run an ssh-agent, or create ~/.ssh/id_ed25519"));
        }
        match &remote.credentials {
            Some((user, pass)) if attempts <= 1 => git2::Cred::userpass_plaintext(user, pass.expose_secret()),
            Some(_) => Err(git2::Error::from_str("the server refused the credentials (401)")),
            None => Err(git2::Error::from_str(
                "the server asks for credentials (401), but none are configured: set git_token_secret_name",
            )),
        }
    });
    cb.certificate_check(move |cert, host| check_certificate(remote, cert, host));
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

thread_local! {
    /// Why the last host-key check on this thread refused (libgit2 reports only a generic error).
    static HOST_KEY_REFUSAL: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn refuse(reason: String) -> git2::Error {
    HOST_KEY_REFUSAL.with(|r| *r.borrow_mut() = Some(reason.clone()));
    git2::Error::from_str(&reason)
}

/// Checks an ssh server's host key against the known-hosts file; TLS certificates are left to
/// libgit2's own verification.
fn check_certificate(
    remote: &CloneTarget,
    cert: &git2::cert::Cert<'_>,
    host: &str,
) -> Result<git2::CertificateCheckStatus, git2::Error> {
    let (Some(ssh), Some(hostkey)) = (&remote.ssh, cert.as_hostkey()) else {
        return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
    };
    let (Some(key), Some(kind)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
        return Err(git2::Error::from_str(
            "the ssh server sent no usable host key",
        ));
    };
    use super::known_hosts::{check, Verdict};
    let verdict = check(&ssh.known_hosts, host, ssh.port, kind.name(), key);
    tracing::debug!(
        host,
        port = ssh.port,
        kind = kind.name(),
        ?verdict,
        "ssh host key"
    );
    match verdict {
        Verdict::Known => Ok(git2::CertificateCheckStatus::CertificateOk),
        Verdict::Unknown if ssh.accept_unknown_host => {
            tracing::warn!(host, "accepting an ssh host key that is not in known_hosts (ssh_accept_unknown_host)");
            Ok(git2::CertificateCheckStatus::CertificateOk)
        }
        Verdict::Unknown => Err(refuse(format!(
            "the ssh host key of {host} (port {}) is not in {}: add it (ssh-keyscan -p {} {host} >> known_hosts) or set ssh_accept_unknown_host",
            ssh.port,
            ssh.known_hosts.display(),
            ssh.port
        ))),
        Verdict::Changed => Err(refuse(format!(
            "the ssh host key of {host} (port {}) does not match {}: refusing (possible impostor)",
            ssh.port,
            ssh.known_hosts.display()
        ))),
    }
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
    finish: impl FnOnce(&Path) -> Result<(), CoreError>,
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
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| backend_err("reading commit from".into(), remote, &e))?;
    std::fs::create_dir_all(&tmp)
        .map_err(|e| CoreError::io(format!("creating {}", tmp.display()), e))?;
    if let Err(e) = write_tree(repo, &tree, &tmp, "", sparse) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(CoreError::io(
            format!(
                "checking out {oid} of {} into {}",
                remote.url,
                tmp.display()
            ),
            e,
        ));
    }
    if let Err(e) = finish(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
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

/// True if `path` (a file, or a directory when `dir`) is inside the sparse set, or a directory
/// on the way to it. An empty set means everything.
fn wanted(sparse: &[String], path: &str, dir: bool) -> bool {
    sparse.is_empty()
        || sparse.iter().any(|s| {
            let s = s.trim_end_matches('/');
            path == s
                || path.starts_with(&format!("{s}/"))
                || (dir && s.starts_with(&format!("{path}/")))
        })
}

/// Writes a tree's blobs (files, executables, symlinks) under `dir`. Gitlinks (submodules) are
/// left for [`check_out_submodules`].
fn write_tree(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    dir: &Path,
    prefix: &str,
    sparse: &[String],
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: git2::Error| std::io::Error::other(e.message().to_string());
    for entry in tree.iter() {
        let Some(name) = entry.name().ok() else {
            continue;
        };
        if name == ".git" || name.contains('/') || name == ".." || name == "." {
            continue;
        }
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let target = dir.join(name);
        match entry.kind() {
            Some(git2::ObjectType::Tree) => {
                if !wanted(sparse, &path, true) {
                    continue;
                }
                std::fs::create_dir_all(&target)?;
                let sub = repo.find_tree(entry.id()).map_err(io)?;
                write_tree(repo, &sub, &target, &path, sparse)?;
            }
            Some(git2::ObjectType::Blob) => {
                if !wanted(sparse, &path, false) {
                    continue;
                }
                let blob = repo.find_blob(entry.id()).map_err(io)?;
                if entry.filemode() == 0o120000 {
                    let link = String::from_utf8_lossy(blob.content()).into_owned();
                    std::os::unix::fs::symlink(link, &target)?;
                } else {
                    std::fs::write(&target, blob.content())?;
                    if entry.filemode() == 0o100755 {
                        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks out each submodule listed in the commit's `.gitmodules` at the commit its gitlink
/// records, from its own (cached) remote, into `into/<path>`.
fn check_out_submodules(
    cache_root: &Path,
    repo: &Repository,
    oid: Oid,
    remote: &CloneTarget,
    into: &Path,
    progress: Option<&ProgressHook>,
) -> Result<(), CoreError> {
    let gitmodules = into.join(".gitmodules");
    if !gitmodules.exists() {
        return Ok(());
    }
    let config = git2::Config::open(&gitmodules)
        .map_err(|e| backend_err("reading .gitmodules of".into(), remote, &e))?;
    let mut entries = config
        .entries(Some(r"submodule\..*\.path"))
        .map_err(|e| backend_err("reading .gitmodules of".into(), remote, &e))?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| backend_err("reading".into(), remote, &e))?;
    let mut found = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(|e| backend_err("reading .gitmodules of".into(), remote, &e))?;
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
            .map_err(|e| {
                backend_err(
                    format!("reading the url of submodule {name} in"),
                    remote,
                    &e,
                )
            })?;
        let url = resolve_relative(&remote.url, &url);
        let gitlink = tree
            .get_path(Path::new(&path))
            .map_err(|e| backend_err(format!("finding submodule {path} in"), remote, &e))?
            .id();
        let sub = CloneTarget {
            url,
            credentials: remote.credentials.clone(),
            ssh: remote.ssh.clone(),
            redactor: remote.redactor.clone(),
        };
        let co = checkout(
            cache_root,
            &sub,
            &Target::Commit(gitlink.to_string()),
            0,
            &[],
            true,
            progress,
        )?;
        copy_dir(&co.dir, &into.join(&path))?;
    }
    Ok(())
}

/// `../other.git` relative to the parent's URL; absolute URLs as they are.
fn resolve_relative(parent: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_string();
    }
    let mut base: Vec<&str> = parent.trim_end_matches('/').split('/').collect();
    for part in url.split('/') {
        match part {
            "." => {}
            ".." => {
                base.pop();
            }
            p => base.push(p),
        }
    }
    base.join("/")
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), CoreError> {
    std::fs::create_dir_all(to)
        .map_err(|e| CoreError::io(format!("creating {}", to.display()), e))?;
    for entry in std::fs::read_dir(from)
        .map_err(|e| CoreError::io(format!("reading {}", from.display()), e))?
    {
        let entry = entry.map_err(|e| CoreError::io(format!("reading {}", from.display()), e))?;
        let target = to.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| CoreError::io(format!("copying to {}", target.display()), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn relative_submodule_urls_resolve_against_the_parent() {
        assert_eq!(
            super::resolve_relative("git://h/org/app.git", "../lib.git"),
            "git://h/org/lib.git"
        );
        assert_eq!(
            super::resolve_relative("git://h/org/app.git", "https://x/y.git"),
            "https://x/y.git"
        );
    }
}
