//! `Git` storage: script flows committed in a git repository, cloned (shallow, cached) and
//! checked out at the ref asked for; the whole checkout is there for the flow to read files
//! beside it.
//!
//! Read-only, as in the reference system. Unlike it, a `commit` is checked out exactly, the flow
//! asked for by name is the one loaded, and with `pin` the commit is resolved at
//! [`persist`](Storage::persist) and recorded (with each flow file's digest) so every run of a
//! registration gets the same code.
//!
//! Made by [`GitBuilder`] (`Git::builder(repo, flow_path)`, `GitBuilder::from_url`, …); opened
//! from a reference with [`Git::from_reference`].

mod cache;
mod config;
mod known_hosts;
mod transport;
mod url;
mod worktree;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::raw::config::{apply_pairs, parse_url, url_path};
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource, SecretString};
use flowstore_core::{
    async_trait, Capabilities, Error as CoreError, FetchedFlow, FlowInput, OpenContext, Registry,
    Result, Storage, StorageReference,
};

pub use cache::{
    default_cache_dir, CachedEntry, GitCache, Progress, ProgressHook, CACHE_ENV, POLICY_ENV_PREFIX,
};
pub use config::GitConfig;
pub use flowstore_core::cache::{CachePolicy, GcReport};

/// The reference type name.
pub const TYPE_NAME: &str = "Git";

/// The URL schemes [`GitBuilder::from_url`] takes (and [`register`] registers).
pub const URL_SCHEMES: [&str; 4] = ["git+https", "git+http", "git+ssh", "git"];

const URL_EXAMPLE: &str = "git+https://host/org/repo.git#branch=main";

/// Makes a [`Git`] storage: the repository and flow file, the ref, credentials, labels, and the
/// local clone cache. Filled by the typed setters, by [`GitBuilder::with_config`] (the
/// [`GitConfig`] keys), by [`GitBuilder::from_url`] or [`GitBuilder::from_env`]; all end in the
/// same state.
///
/// ```
/// use flowstore_git::{Git, GitBuilder};
/// let git = Git::builder("org/repo", "flows/etl.py")
///     .branch("main")
///     .pin(true)
///     .git_token_secret_name("MY_GIT_TOKEN")
///     .label("prod")
///     .build()?;
/// let same = GitBuilder::from_url("git+https://github.com/org/repo.git?label=prod#branch=main&pin&token_secret=MY_GIT_TOKEN")?
///     .flow_path("flows/etl.py")
///     .build()?;
/// assert_eq!(git.config(), same.config());
/// # Ok::<(), flowstore_core::Error>(())
/// ```
#[derive(Clone)]
pub struct GitBuilder {
    config: GitConfig,
    index: FlowIndex,
    secrets: Arc<dyn SecretSource>,
    access_token: Option<SecretString>,
    cache_dir: Option<PathBuf>,
    cache_policy: Option<CachePolicy>,
    progress: Option<ProgressHook>,
}

impl std::fmt::Debug for GitBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds secret *names* only; the typed token is shown as set or not.
        f.debug_struct("GitBuilder")
            .field("config", &self.config)
            .field("labels", &self.index.labels)
            .field("access_token", &self.access_token.as_ref().map(|_| "***"))
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl GitBuilder {
    /// A builder for `flow_path` (relative to the repository root) in `repo` (`org/repo` on
    /// `github.com` unless [`GitBuilder::host`] says otherwise).
    pub fn new(repo: impl Into<String>, flow_path: impl Into<String>) -> Self {
        Self::from_config(GitConfig {
            repo: Some(repo.into()),
            flow_path: flow_path.into(),
            ..GitConfig::default()
        })
    }

    /// A builder for a repository whose whole clone URL (credentials included) is kept in the
    /// secret `secret_name`, resolved at every fetch.
    pub fn from_clone_url_secret(
        secret_name: impl Into<String>,
        flow_path: impl Into<String>,
    ) -> Self {
        Self::from_config(GitConfig {
            git_clone_url_secret_name: Some(secret_name.into()),
            flow_path: flow_path.into(),
            ..GitConfig::default()
        })
    }

    /// A builder holding `config` as it is (e.g. read from a reference).
    pub fn from_config(config: GitConfig) -> Self {
        GitBuilder {
            config,
            index: FlowIndex::default(),
            secrets: Arc::new(NoSecrets),
            access_token: None,
            cache_dir: None,
            cache_policy: None,
            progress: None,
        }
    }

    /// A builder from a storage URL: `git+https://host/org/repo.git`, `git+http://…`,
    /// `git://host[:port]/org/repo.git` or `git+ssh://user@host[:port]/org/repo.git`.
    ///
    /// The query and the fragment take [`GitConfig`] keys (`#branch=main&pin=true`,
    /// `?tag=v1&label=prod`; the short keys `branch` and `token_secret`; a bare `pin` is
    /// `pin=true`), each applied with [`GitBuilder::with_config`]. A user in an https URL is the
    /// `git_token_username`, a password the [`access_token`](GitBuilder::access_token) (typed:
    /// never recorded; agents need `git_token_secret_name`); in an ssh URL the user is the ssh
    /// user. The flow file is the `flow_path` key, or set it with [`GitBuilder::flow_path`].
    ///
    /// Errors with [`CoreError::Config`] for a URL that does not parse, another scheme, a URL
    /// without host or repository path, and an unknown or ill-typed option (named).
    pub fn from_url(url: &str) -> Result<Self> {
        let u = parse_url(url, &URL_SCHEMES, URL_EXAMPLE)?;
        let bad = |why: &str| {
            CoreError::config(format!(
                "Git storage URL {}: {why}; it should look like {URL_EXAMPLE}",
                shown(&u)
            ))
        };
        let host = crate::urls::host_port(&u).ok_or_else(|| bad("it names no host"))?;
        let repo = url_path(&u)
            .map(|p| p.trim_end_matches(".git").to_string())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("it names no repository"))?;
        let mut b = GitBuilder::new(repo, "").host(host);
        let user = crate::urls::decode(u.username());
        let scheme = u.scheme().to_ascii_lowercase();
        if scheme == "git+ssh" {
            b.config.use_ssh = true;
            if u.password().is_some() {
                return Err(bad(
                    "an ssh URL takes no password (use ssh_key_path or an ssh-agent)",
                ));
            }
        } else {
            // https is the default, left unrecorded as a builder leaves it.
            let plain = scheme.trim_start_matches("git+");
            if plain != "https" {
                b.config.repo_scheme = Some(plain.to_string());
            }
            if let Some(p) = u.password() {
                b.access_token = Some(SecretString::from(crate::urls::decode(p)));
            }
        }
        if !user.is_empty() {
            b.config.git_token_username = Some(user);
        }
        for (k, v) in crate::urls::url_pairs(&u) {
            let v = if v.is_empty() && config::BOOL_OPTIONS.contains(&k.as_str()) {
                "true".to_string()
            } else {
                v
            };
            b = b.with_config(&k, &v)?;
        }
        Ok(b)
    }

    /// A builder for `flow_path` in `repo` that also takes flowstore's local cache settings from
    /// the environment: [`CACHE_ENV`] (the cache directory) and the bounds
    /// `FLOWSTORE_GIT_CACHE_MAX_SIZE` / `FLOWSTORE_GIT_CACHE_MAX_AGE`. They are settings of this
    /// machine and never recorded in the reference; git itself has no standard variables that
    /// configure the repository to read.
    ///
    /// Errors with [`CoreError::Config`] for a cache bound that does not parse.
    pub fn from_env(repo: impl Into<String>, flow_path: impl Into<String>) -> Result<Self> {
        let mut b = Self::new(repo, flow_path);
        b.cache_dir = Some(default_cache_dir());
        b.cache_policy = Some(cache::policy_from_env()?);
        Ok(b)
    }

    /// The flow file, relative to the repository root (`add_flow` records it for each flow).
    pub fn flow_path(mut self, path: impl Into<String>) -> Self {
        self.config.flow_path = path.into();
        self
    }

    /// The host (and port) of the repository (default `github.com`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.config.repo_host = host.into();
        self
    }

    /// `https` (default), `http` or `git`: the scheme of the clone URL built from the host.
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.config.repo_scheme = Some(scheme.into());
        self
    }

    /// Check out this branch (resolved at every fetch unless pinned).
    pub fn branch(mut self, branch: impl Into<String>) -> Self {
        self.config.branch_name = Some(branch.into());
        self
    }

    /// Check out this tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.config.tag = Some(tag.into());
        self
    }

    /// Check out exactly this commit.
    pub fn commit(mut self, sha: impl Into<String>) -> Self {
        self.config.commit = Some(sha.into());
        self
    }

    /// Resolve the ref at `persist` and record the commit and each flow file's digest.
    pub fn pin(mut self, on: bool) -> Self {
        self.config.pin = on;
        self
    }

    /// The secret holding an access token (sent as HTTP basic auth); recorded by name so agents
    /// can resolve it.
    pub fn git_token_secret_name(mut self, name: impl Into<String>) -> Self {
        self.config.git_token_secret_name = Some(name.into());
        self
    }

    /// The username sent with the token (default: the repository's owner; e.g. `oauth2` for
    /// GitLab deploy tokens).
    pub fn git_token_username(mut self, user: impl Into<String>) -> Self {
        self.config.git_token_username = Some(user.into());
        self
    }

    /// Send the token as `{user}:{token}` (default true) rather than as the username.
    pub fn format_access_token(mut self, on: bool) -> Self {
        self.config.format_access_token = on;
        self
    }

    /// An access token for HTTPS, held in memory only: used instead of `git_token_secret_name`
    /// by this storage, never written to the reference, a log or `Debug` (agents opening the
    /// reference need `git_token_secret_name`).
    pub fn access_token(mut self, token: SecretString) -> Self {
        self.access_token = Some(token);
        self
    }

    /// The secret holding the whole clone URL, used verbatim.
    pub fn git_clone_url_secret_name(mut self, name: impl Into<String>) -> Self {
        self.config.git_clone_url_secret_name = Some(name.into());
        self
    }

    /// Clone over ssh as `user`, authenticating with this key file (else ssh-agent or
    /// `~/.ssh/id_*`), the server checked against `known_hosts` (default `~/.ssh/known_hosts`).
    pub fn ssh(
        mut self,
        user: impl Into<String>,
        key_path: Option<String>,
        known_hosts: Option<String>,
    ) -> Self {
        self.config.use_ssh = true;
        self.config.git_token_username = Some(user.into());
        self.config.ssh_key_path = key_path;
        self.config.known_hosts_path = known_hosts;
        self
    }

    /// Accept an ssh host whose key is not in the known-hosts file (off by default).
    pub fn ssh_accept_unknown_host(mut self, on: bool) -> Self {
        self.config.ssh_accept_unknown_host = on;
        self
    }

    /// Also check out submodules.
    pub fn submodules(mut self, on: bool) -> Self {
        self.config.submodules = on;
        self
    }

    /// Only write the flows' directories and these paths out of the commit.
    pub fn sparse_paths(mut self, paths: Vec<String>) -> Self {
        self.config.sparse_paths = paths;
        self
    }

    /// History depth for branches and tags (default 1; 0 = everything).
    pub fn clone_depth(mut self, depth: u32) -> Self {
        self.config.clone_depth = depth;
        self
    }

    /// Informational: the flow the file defines (recorded; flowstore loads the flow asked for).
    pub fn flow_name(mut self, name: impl Into<String>) -> Self {
        self.config.flow_name = Some(name.into());
        self
    }

    /// Where secrets are looked up (then the environment).
    pub fn secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    flowstore_core::builder_common_methods!(index);

    /// Sets one option by its [`GitConfig`] key (`branch_name`, `pin`, …, and the short `branch`,
    /// `token_secret`), or one every storage takes (`label`, `add_default_labels`, `secret`).
    ///
    /// Errors with [`CoreError::Config`] for an unknown key (listing the known ones) or a value
    /// the field cannot hold.
    pub fn with_config(mut self, key: &str, value: &str) -> Result<Self> {
        apply_pairs(&mut self.config, &mut self.index, [(key, value)])?;
        Ok(self)
    }

    /// Sets every pair in order (see [`GitBuilder::with_config`]).
    ///
    /// Errors as [`GitBuilder::with_config`] does, at the first bad pair.
    pub fn with_configs<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        apply_pairs(&mut self.config, &mut self.index, pairs)?;
        Ok(self)
    }

    /// The clone cache directory (default [`default_cache_dir`]); a setting of this machine,
    /// not recorded.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// How large and old the clone cache may grow (default: [`CachePolicy::default`], or the
    /// bounds set by `FLOWSTORE_GIT_CACHE_MAX_SIZE` / `FLOWSTORE_GIT_CACHE_MAX_AGE`).
    pub fn cache_policy(mut self, policy: CachePolicy) -> Self {
        self.cache_policy = Some(policy);
        self
    }

    /// A callback for fetch progress.
    pub fn with_progress(mut self, hook: ProgressHook) -> Self {
        self.progress = Some(hook);
        self
    }

    /// The configuration as it stands (what the reference will record).
    pub fn config(&self) -> &GitConfig {
        &self.config
    }

    /// Makes the storage (no network I/O: the repository is read at `persist` and `get_flow`).
    ///
    /// Errors with [`CoreError::Config`] when there is no repository (neither `repo` nor
    /// `git_clone_url_secret_name`), no `flow_path`, more than one of `branch_name`/`tag`/
    /// `commit`, or an unsupported `repo_scheme`.
    pub fn build(self) -> Result<Git> {
        self.config.validate()?;
        if self.config.flow_path.trim().is_empty() {
            return Err(CoreError::config(
                "Git storage needs `flow_path`, the flow's file in the repository (with the CLI: \
                 register with --script and the flow's path in the repository)",
            ));
        }
        Ok(Git {
            config: self.config,
            index: self.index,
            secrets: self.secrets,
            access_token: self.access_token,
            cache_dir: self.cache_dir.unwrap_or_else(default_cache_dir),
            cache_policy: self.cache_policy,
            progress: self.progress,
        })
    }
}

/// The URL for messages, without its password.
fn shown(u: &flowstore_core::raw::config::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_password(None);
    format!("\"{u}\"")
}

/// Flows in a git repository (see the [module docs](self)); made by [`GitBuilder`].
///
/// ```no_run
/// use flowstore_core::{FlowInput, Storage};
/// use flowstore_git::Git;
/// # async fn run() -> flowstore_core::Result<()> {
/// let mut git = Git::builder("org/flows", "flows/etl.py").branch("main").pin(true).build()?;
/// git.add_flow(FlowInput::script("ETL")).await?;
/// git.persist().await?; // resolves `main` and records the commit and the file's digest
/// let reference = git.reference()?.to_json();
/// # let _ = reference; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Git {
    config: GitConfig,
    index: FlowIndex,
    secrets: Arc<dyn SecretSource>,
    access_token: Option<SecretString>,
    cache_dir: PathBuf,
    cache_policy: Option<CachePolicy>,
    progress: Option<ProgressHook>,
}

impl std::fmt::Debug for Git {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds secret *names* only.
        f.debug_struct("Git")
            .field("config", &self.config)
            .field("flows", &self.index.flows)
            .field("access_token", &self.access_token.as_ref().map(|_| "***"))
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl Git {
    /// A builder for `flow_path` in `repo` (see [`GitBuilder::new`]).
    pub fn builder(repo: impl Into<String>, flow_path: impl Into<String>) -> GitBuilder {
        GitBuilder::new(repo, flow_path)
    }

    /// The configuration (what the reference records).
    pub fn config(&self) -> &GitConfig {
        &self.config
    }

    /// The clone cache directory this storage uses.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Opens a `Git` reference (Prefect 1's included), with the context's secrets and progress.
    ///
    /// Errors with [`CoreError::InvalidReference`] for fields that do not fit and
    /// [`CoreError::Config`] for a configuration that cannot work (see [`GitBuilder::build`]).
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<Self> {
        let config: GitConfig = reference.backend_fields()?;
        let mut b = GitBuilder::from_config(config).secrets(ctx.secrets.clone());
        b.index = FlowIndex::from_reference(reference);
        b.progress = ctx.progress.clone().map(progress_hook);
        b.build()
    }

    /// Opens a storage URL ([`GitBuilder::from_url`]) with the context: its script path is the
    /// flow file, its options are applied after the URL's own, its secrets and progress are used.
    ///
    /// Errors as [`GitBuilder::from_url`] and [`GitBuilder::build`] do.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<Self> {
        let mut b = GitBuilder::from_url(url)?;
        if let Some(path) = &ctx.script_path {
            b.config.flow_path = path.clone();
        }
        b = b.with_configs(ctx.options.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        b.secrets = ctx.secrets.clone();
        b.progress = ctx.progress.clone().map(progress_hook);
        b.build()
    }

    /// Adds script flow `name` defined in the file at `path` (relative to the repository root)
    /// instead of the configured `flow_path`, so one storage can hold flows of several files of
    /// the same repository and ref. Returns the location (`path`).
    ///
    /// Errors as `add_flow` does ([`CoreError::NameConflict`], an invalid name), and with
    /// [`CoreError::Config`] for an empty or absolute path or one with `..` in it.
    pub fn add_flow_at(&mut self, name: &str, path: &str) -> Result<String> {
        self.config.validate()?;
        check_repo_path(path)?;
        self.index.insert(name, path.to_string(), None)?;
        Ok(path.to_string())
    }

    /// The paths to write in a sparse checkout: the configured ones and each flow's directory.
    fn sparse_set(&self) -> Vec<String> {
        if self.config.sparse_paths.is_empty() {
            return Vec::new();
        }
        let mut sparse = self.config.sparse_paths.clone();
        let files = std::iter::once(&self.config.flow_path).chain(self.index.flows.values());
        for file in files {
            let dir = Path::new(file)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let entry = if dir.is_empty() {
                file.clone()
            } else {
                format!("{dir}/")
            };
            if !sparse.contains(&entry) {
                sparse.push(entry);
            }
        }
        sparse
    }

    /// Fetches (cached) and checks out the configured ref; returns the verified checkout, held
    /// in use until dropped. `flow` names the flow(s) in errors.
    async fn checkout(&self, flow: &str) -> Result<cache::Checkout> {
        let target = self.config.target()?;
        let remote = url::clone_target(
            &self.config,
            self.secrets.as_ref(),
            self.access_token.as_ref(),
        )?;
        let sparse = self.sparse_set();
        let policy = match &self.cache_policy {
            Some(p) => p.clone(),
            None => cache::policy_from_env()?,
        };
        let cache = GitCache::new(&self.cache_dir).with_policy(policy);
        let (depth, progress) = (self.config.clone_depth, self.progress.clone());
        let submodules = self.config.submodules;
        let outcome = tokio::task::spawn_blocking(move || {
            cache::checkout(
                &cache,
                &cache::CheckoutRequest {
                    remote: &remote,
                    target: &target,
                    depth,
                    sparse: &sparse,
                    submodules,
                    progress: progress.as_ref(),
                },
            )
        })
        .await
        .map_err(|e| {
            CoreError::backend(TYPE_NAME, format!("the checkout task failed: {e}")).with_source(e)
        })?;
        outcome.map_err(|failure| match failure.cause {
            transport::Cause::ServerData => CoreError::FlowCorrupt {
                flow: flow.to_string(),
                location: self.repo_label(),
                reason: format!(
                    "objects the server sent are missing or fail git's checks, twice, the second \
                     time into an empty cache: {}. The repository on the server may be damaged",
                    failure.detail
                ),
            },
            _ => failure.error,
        })
    }

    fn repo_label(&self) -> String {
        self.config
            .repo
            .clone()
            .unwrap_or_else(|| "(the repository in the clone-URL secret)".to_string())
    }

    /// Reads the file at `location` of a checkout, checking the path stays inside the checkout
    /// (no `..`, no symlink out of it) and the bytes are the commit's (their blob id is the one
    /// git recorded).
    fn read_file(
        &self,
        name: &str,
        location: &str,
        co: &cache::Checkout,
    ) -> Result<(Bytes, PathBuf)> {
        let path = co.dir.join(location);
        let repo = self.repo_label();
        let not_found = || {
            CoreError::not_found(
                "file",
                format!("{repo}@{}:{location}", co.commit),
                format!(
                    "Git: File {location} not found in repo {repo} at commit {}. Check the flow \
                     path: it is relative to the repository root",
                    co.commit
                ),
            )
        };
        let root = co
            .dir
            .canonicalize()
            .map_err(|e| CoreError::io(format!("reading the checkout {}", co.dir.display()), e))?;
        let real = match path.canonicalize() {
            Ok(real) => real,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(not_found().with_source(e))
            }
            Err(e) => return Err(CoreError::io(format!("reading {}", path.display()), e)),
        };
        let Ok(rel) = real.strip_prefix(&root) else {
            return Err(CoreError::OutsideStorage {
                flow: name.to_string(),
                location: location.to_string(),
                root: format!("the checkout of commit {}", co.commit),
            });
        };
        if real.is_dir() {
            return Err(not_found());
        }
        let source = std::fs::read(&real)
            .map_err(|e| CoreError::io(format!("reading {}", path.display()), e))?;
        let blob = git2::Oid::hash_object(git2::ObjectType::Blob, &source)
            .map(|o| o.to_string())
            .unwrap_or_default();
        let recorded = co.stamp.id(&rel.to_string_lossy()).unwrap_or("(none)");
        if blob != recorded {
            return Err(CoreError::FlowCorrupt {
                flow: name.to_string(),
                location: path.display().to_string(),
                reason: format!(
                    "its git blob id is {blob}, commit {} records {recorded} (the file changed \
                     while it was read); fetch again",
                    co.commit
                ),
            });
        }
        Ok((Bytes::from(source), path))
    }
}

/// Checks a path inside the repository: not empty, relative, no `..`.
fn check_repo_path(path: &str) -> Result<()> {
    let p = Path::new(path);
    let bad = path.trim().is_empty()
        || p.is_absolute()
        || p.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::RootDir
            )
        });
    if bad {
        return Err(CoreError::config(format!(
            "Flow file path {path:?} must be a relative path inside the repository (no `..`)"
        )));
    }
    Ok(())
}

#[async_trait]
impl Storage for Git {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn index(&self) -> &FlowIndex {
        &self.index
    }

    fn index_mut(&mut self) -> &mut FlowIndex {
        &mut self.index
    }

    /// Read-only: script flows only, several per storage (each names its file), no listing.
    fn capabilities(&self) -> Capabilities {
        Capabilities::READ_ONLY_SCRIPTS
    }

    /// Records a script flow (the file is already committed); location: the flow path.
    ///
    /// Errors with [`CoreError::Config`] for a serialized flow (Git storage is read-only) and
    /// [`CoreError::NameConflict`] for a name already held.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        if let FlowInput::Serialized(s) = &flow {
            return Err(CoreError::config(format!(
                "Git storage is read-only: it loads script flows committed in the repository, so \
                 it cannot store the serialized flow \"{}\". Register it with --script (the \
                 flow's path in the repository), or store serialized flows in a writable storage",
                s.name
            )));
        }
        let path = self.config.flow_path.clone();
        self.add_flow_at(flow.name(), &path)
    }

    /// With `pin`, resolves the ref now and records the commit and each flow file's digest
    /// (flows added after pinning get their digest at the pinned commit).
    async fn persist(&mut self) -> Result<()> {
        if !self.config.pin || self.index.flows.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self
            .index
            .flows
            .keys()
            .filter(|n| !self.index.digests.contains_key(*n))
            .cloned()
            .collect();
        if names.is_empty() && self.config.commit.is_some() {
            return Ok(());
        }
        let co = self.checkout(&names.join(", ")).await?;
        for name in names {
            let location = self.index.location(&name)?.to_string();
            let (source, _) = self.read_file(&name, &location, &co)?;
            self.index
                .digests
                .insert(name, flowstore_core::envelope::sha256_digest(&source));
        }
        if let Some(from) = self
            .config
            .branch_name
            .take()
            .or_else(|| self.config.tag.take())
        {
            self.config.pinned_from = Some(from);
        }
        self.config.commit = Some(co.commit.clone());
        tracing::info!(commit = %co.commit, "pinned");
        Ok(())
    }

    /// Fetches the repository (cached), checks out the ref and reads the flow's file, checking
    /// it is the commit's, inside the checkout, defines the flow, and (pinned) matches the
    /// digest recorded at registration.
    ///
    /// Errors: [`CoreError::FlowNotFound`] for a name not held; [`CoreError::NotFound`] for a
    /// missing repository, ref, file, or a file that does not name the flow;
    /// [`CoreError::PermissionDenied`] for refused credentials; [`CoreError::FlowCorrupt`] for
    /// altered bytes; [`CoreError::OutsideStorage`] for a path that leads out of the checkout.
    async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        let co = self.checkout(name).await?;
        tracing::info!(flow = name, commit = %co.commit, "using commit");
        let (source, path) = self.read_file(name, &location, &co)?;
        let (commit, size) = (co.commit.clone(), source.len());
        // Checked against the registration first: an altered file is corrupt, not "missing".
        let fetched =
            self.index
                .open_script(name, &location, Some(co.commit), source, Some(path))?;
        if !String::from_utf8_lossy(fetched.bytes()).contains(name) {
            return Err(CoreError::not_found(
                "flow",
                format!("{}@{commit}:{location}", self.repo_label()),
                format!(
                    "Git: Flow \"{name}\" not found in file {location} at commit {commit}: the \
                     file ({size} bytes, verified against git's blob id) does not contain the \
                     name \"{name}\"; check the flow's name and flow_path"
                ),
            ));
        }
        Ok(fetched)
    }

    fn reference(&self) -> Result<StorageReference> {
        let mut reference = StorageReference::new(TYPE_NAME, &self.config)?;
        self.index.fill_reference(&mut reference, self.labels());
        Ok(reference)
    }
}

/// Adapts a registry progress callback to clone progress.
fn progress_hook(f: flowstore_core::ProgressFn) -> ProgressHook {
    Arc::new(move |p: Progress| {
        f(flowstore_core::Progress {
            what: "objects received",
            done: p.received_objects as u64,
            total: Some(p.total_objects as u64),
        })
    })
}

/// Registers the `Git` type and the `git+https`, `git+http`, `git+ssh` and `git` URL schemes.
pub fn register(registry: &mut Registry) {
    registry.register_type(TYPE_NAME, |r, ctx| {
        Ok(Box::new(Git::from_reference(r, ctx)?) as Box<dyn Storage>)
    });
    for scheme in URL_SCHEMES {
        registry.register_scheme(scheme, |u, ctx| {
            Ok(Box::new(Git::from_url(u, ctx)?) as Box<dyn Storage>)
        });
    }
}
