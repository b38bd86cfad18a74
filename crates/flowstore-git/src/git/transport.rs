//! Talking to the remote: credentials, ssh host-key checks, progress, and resolving a branch, tag,
//! commit or the default branch to a commit with shallow single-ref fetches. Errors are
//! classified ([`Failure`]) so the cache knows whether discarding its copy can help.

use flowstore_core::secret::ExposeSecret;
use flowstore_core::Error as CoreError;
use git2::{FetchOptions, Oid, RemoteCallbacks, Repository};

use super::cache::{Progress, ProgressHook};
use super::config::Target;
use super::url::CloneTarget;
use crate::error::GitError;

/// Why an attempt failed, which decides what the cache does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The remote's answer (not found, refused credentials or host key, unreachable): final.
    Remote,
    /// Something in the local copy (a lock, a broken ref or config): discarding it may help.
    Cache,
    /// Objects that are missing or fail git's checks (zlib, object hash, pack checksum) after a
    /// fetch: the cache's fault on the first attempt, the server's on the second (into an empty
    /// cache).
    Data,
    /// Objects from the server were missing or failed git's checks in an empty cache: final.
    ServerData,
}

/// A failed attempt: the error to report and its [`Cause`].
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: CoreError,
    pub cause: Cause,
    /// libgit2's message (already redacted), for classification and the corrupt-data report.
    pub detail: Box<str>,
}

impl From<CoreError> for Failure {
    fn from(error: CoreError) -> Self {
        let cause = match &error {
            CoreError::Io { .. } => Cause::Cache,
            _ => Cause::Remote,
        };
        Failure {
            detail: error.to_string().into(),
            error,
            cause,
        }
    }
}

/// The cause of a libgit2 error.
pub(crate) fn classify(e: &git2::Error) -> Cause {
    use git2::ErrorClass as C;
    let msg = e.message();
    let data = [
        "incorrect data check",
        "hash mismatch",
        "checksum mismatch",
        "corrupt",
        "invalid data",
    ];
    if matches!(e.class(), C::Zlib | C::Sha1) || data.iter().any(|d| msg.contains(d)) {
        return Cause::Data;
    }
    if e.code() == git2::ErrorCode::Auth
        || e.code() == git2::ErrorCode::Certificate
        || matches!(e.class(), C::Net | C::Http | C::Ssh | C::Ssl | C::Callback)
        || msg.contains("couldn't find remote ref")
    {
        return Cause::Remote;
    }
    Cause::Cache
}

/// A [`Failure`] from a libgit2 error, with what was being done; credentials redacted.
///
/// The error reported is typed: refused credentials are [`CoreError::PermissionDenied`], a
/// repository the server does not have is [`CoreError::NotFound`] (`"repository"`), network
/// trouble (timeouts, resets, 5xx, 429) a temporary [`CoreError::Backend`]; the redacted libgit2
/// error is kept as the source ([`GitError`]).
pub(crate) fn git_failure(what: String, target: &CloneTarget, e: &git2::Error) -> Failure {
    let refusal = HOST_KEY_REFUSAL.with(|r| r.borrow_mut().take());
    let detail = target
        .redactor
        .redact(refusal.as_deref().unwrap_or(e.message()));
    let cause = if refusal.is_some() {
        Cause::Remote
    } else {
        classify(e)
    };
    let source = GitError {
        class: format!("{:?}", e.class()),
        code: format!("{:?}", e.code()),
        message: detail.clone(),
    };
    let lower = detail.to_ascii_lowercase();
    let auth = e.code() == git2::ErrorCode::Auth
        || lower.contains("refused the credentials")
        || lower.contains("none are configured")
        || (matches!(e.class(), git2::ErrorClass::Http | git2::ErrorClass::Net)
            && (lower.contains("401") || lower.contains("403") || lower.contains("auth")));
    let url = &target.url;
    let error = if refusal.is_some() {
        CoreError::backend("Git", format!("{what} {url}: {detail}"))
    } else if auth {
        CoreError::permission_denied(
            "Git",
            url.clone(),
            format!("{detail} (authentication failed: check the token secret and username)"),
        )
    } else if repository_missing(&lower) {
        CoreError::not_found(
            "repository",
            url.clone(),
            format!(
                "Git: repository {url} not found ({detail}). Check `repo` and `repo_host`, and \
                 that the credentials may read it"
            ),
        )
    } else if network_trouble(e, &lower) {
        CoreError::temporary("Git", format!("{what} {url}: {detail}"))
    } else {
        CoreError::backend("Git", format!("{what} {url}: {detail}"))
    };
    Failure {
        error: error.with_source(source),
        cause,
        detail: detail.into(),
    }
}

/// True when libgit2's message (lower-cased) says the server has no such repository.
fn repository_missing(lower: &str) -> bool {
    [
        "repository not exported",
        "does not appear to be a git repository",
        "repository not found",
        "status code: 404",
        "no such repository",
    ]
    .iter()
    .any(|p| lower.contains(p))
}

/// True for failures that trying again later may cure: timeouts, dropped connections, server
/// errors and rate limits.
fn network_trouble(e: &git2::Error, lower: &str) -> bool {
    e.class() == git2::ErrorClass::Net
        || [
            "timed out",
            "timeout",
            "connection reset",
            "connection refused",
            "failed to connect",
            "could not connect",
            "early eof",
            "unexpected eof",
            "broken pipe",
            "status code: 5",
            "status code: 429",
        ]
        .iter()
        .any(|p| lower.contains(p))
}

/// A [`Failure`] reading objects a successful fetch should have brought: [`Cause::Data`]
/// whatever libgit2 calls it (missing, unreadable, failing its hash).
pub(crate) fn object_failure(what: String, target: &CloneTarget, e: &git2::Error) -> Failure {
    let detail = target.redactor.redact(e.message());
    // Never "not found" nor "temporary": the objects were fetched, and are missing or bad.
    let error = CoreError::backend("Git", format!("{what} {}: {detail}", target.url)).with_source(
        GitError {
            class: format!("{:?}", e.class()),
            code: format!("{:?}", e.code()),
            message: detail.clone(),
        },
    );
    Failure {
        error,
        cause: Cause::Data,
        detail: detail.into(),
    }
}

/// A ref (branch, tag, commit) the remote does not have: [`CoreError::NotFound`] (`"ref"`).
fn ref_not_found(message: String, url: &str, cause: Cause) -> Failure {
    Failure {
        detail: message.clone().into(),
        error: CoreError::not_found("ref", url.to_string(), format!("Git: {message}")),
        cause,
    }
}

pub(crate) fn callbacks<'a>(
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

/// Initializes libgit2 (and the TLS library it loads its CA certificates into) now, if nothing
/// has yet: the first call into libgit2 does it anyway, this only makes its cost visible.
pub(crate) fn init_libgit2() {
    let _ = Oid::from_bytes(&[0; 20]);
}

/// Resolves `target` to a commit, fetching what is missing. `fresh` says the repository was
/// just created, so a commit missing from it is the remote's answer, not the cache's fault.
pub(crate) fn resolve(
    repo: &Repository,
    remote: &CloneTarget,
    target: &Target,
    depth: u32,
    fresh: bool,
    progress: Option<&ProgressHook>,
) -> Result<Oid, Failure> {
    let stats = std::cell::Cell::new(Progress::default());
    let fetch = |refspecs: &[String], depth: u32| -> Result<(), Failure> {
        let _fetching = tracing::debug_span!("fetch").entered();
        let mut anon = repo
            .remote_anonymous(&remote.url)
            .map_err(|e| git_failure("opening".into(), remote, &e))?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks(remote, &stats, progress));
        opts.download_tags(git2::AutotagOption::None);
        // 0 = the whole history; libgit2 reads i32::MAX as "unshallow" for a shallow cache.
        opts.depth(if depth == 0 { i32::MAX } else { depth as i32 });
        anon.fetch(refspecs, Some(&mut opts), None)
            .map_err(|e| git_failure("fetching from".into(), remote, &e))
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
                .map_err(|_| {
                    ref_not_found(
                        format!(
                            "Commit {sha} not found in {}: it is on no branch of the repository",
                            remote.url
                        ),
                        &remote.url,
                        if fresh { Cause::Remote } else { Cause::Cache },
                    )
                })?
                .id()
        }
        Target::Branch(b) => fetch_ref(
            repo,
            remote,
            &fetch,
            (
                &format!("refs/heads/{b}"),
                &format!("refs/flowstore/heads/{b}"),
            ),
            depth,
            ("Branch", b),
        )?,
        Target::Tag(t) => fetch_ref(
            repo,
            remote,
            &fetch,
            (
                &format!("refs/tags/{t}"),
                &format!("refs/flowstore/tags/{t}"),
            ),
            depth,
            ("Tag", t),
        )?,
        Target::Default => {
            let default = default_branch(repo, remote)?;
            let name = default.trim_start_matches("refs/heads/").to_string();
            fetch_ref(
                repo,
                remote,
                &fetch,
                (&default, &format!("refs/flowstore/heads/{name}")),
                depth,
                ("Branch", &name),
            )?
        }
    };
    Ok(oid)
}

/// Fetches refspecs at a depth.
type FetchFn<'a> = dyn Fn(&[String], u32) -> Result<(), Failure> + 'a;

/// Fetches the remote ref `src` into the local ref `dst` and returns its commit; `what` is the
/// ref's kind and name for messages.
fn fetch_ref(
    repo: &Repository,
    remote: &CloneTarget,
    fetch: &FetchFn<'_>,
    (src, dst): (&str, &str),
    depth: u32,
    (kind, name): (&str, &str),
) -> Result<Oid, Failure> {
    match fetch(&[format!("+{src}:{dst}")], depth) {
        Ok(()) => {}
        Err(f)
            if f.cause == Cause::Remote
                && !matches!(f.error, CoreError::NotFound { .. })
                && (f.detail.contains("couldn't find remote ref")
                    || f.detail.contains("not found")) =>
        {
            return Err(ref_not_found(
                format!("{kind} \"{name}\" not found in {}", remote.url),
                &remote.url,
                Cause::Remote,
            ))
        }
        Err(f) => return Err(f),
    }
    // libgit2 fetches a ref the server does not advertise without complaint: no ref, no branch.
    let reference = repo.find_reference(dst).map_err(|_| {
        ref_not_found(
            format!("{kind} \"{name}\" not found in {}", remote.url),
            &remote.url,
            Cause::Remote,
        )
    })?;
    reference.peel_to_commit().map(|c| c.id()).map_err(|e| {
        object_failure(
            format!("reading {kind} \"{name}\" from the cache of"),
            remote,
            &e,
        )
    })
}

fn default_branch(repo: &Repository, remote: &CloneTarget) -> Result<String, Failure> {
    let mut anon = repo
        .remote_anonymous(&remote.url)
        .map_err(|e| git_failure("opening".into(), remote, &e))?;
    let stats = std::cell::Cell::new(Progress::default());
    let conn = anon
        .connect_auth(
            git2::Direction::Fetch,
            Some(callbacks(remote, &stats, None)),
            None,
        )
        .map_err(|e| git_failure("connecting to".into(), remote, &e))?;
    let name = conn
        .default_branch()
        .map_err(|e| git_failure("reading the default branch of".into(), remote, &e))?;
    Ok(name.as_str().ok().map(str::to_string).ok_or_else(|| {
        CoreError::backend(
            "Git",
            format!("the default branch of {} is not UTF-8", remote.url),
        )
    })?)
}
