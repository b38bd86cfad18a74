//! `Git` storage: a script flow committed in a git repository, cloned (shallow, cached) and
//! checked out at the ref asked for; the whole checkout is there for the flow to read files beside
//! it.
//!
//! Read-only, as in the reference system. Unlike it, a `commit` is checked out exactly, the flow
//! asked for by name is the one loaded, and with `pin` the commit is resolved at `build` and
//! recorded (with the file's digest) so every run of a registration gets the same code.

mod cache;
mod fields;
mod known_hosts;
mod transport;
mod url;
mod worktree;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource};
use flowstore_core::{
    async_trait, Error as CoreError, FetchedFlow, FlowInput, OpenContext, Registry, Result,
    Storage, StorageReference,
};

pub use cache::{
    default_cache_dir, CachedEntry, GitCache, Progress, ProgressHook, CACHE_ENV, POLICY_ENV_PREFIX,
};
pub use fields::GitFields;
pub use flowstore_core::cache::{CachePolicy, GcReport};

/// The reference type name.
pub const TYPE_NAME: &str = "Git";

/// Flows in a git repository.
///
/// ```
/// use flowstore_git::git::Git;
/// let storage = Git::new("org/repo", "flows/etl.py").branch("main").git_token_secret_name("MY_GIT_TOKEN");
/// # drop(storage);
/// ```
#[derive(Clone)]
pub struct Git {
    fields: GitFields,
    index: FlowIndex,
    secrets: Arc<dyn SecretSource>,
    cache_dir: PathBuf,
    cache_policy: Option<CachePolicy>,
    progress: Option<ProgressHook>,
}

impl std::fmt::Debug for Git {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Fields hold secret *names* only.
        f.debug_struct("Git")
            .field("fields", &self.fields)
            .field("flows", &self.index.flows)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl Git {
    /// Git storage for `flow_path` in `repo` (`org/repo` on `github.com` unless
    /// [`Git::host`] says otherwise).
    pub fn new(repo: impl Into<String>, flow_path: impl Into<String>) -> Self {
        Self::from_fields(GitFields {
            repo: Some(repo.into()),
            flow_path: flow_path.into(),
            ..GitFields::default()
        })
    }

    /// Git storage whose whole clone URL is in a secret.
    pub fn from_clone_url_secret(
        secret_name: impl Into<String>,
        flow_path: impl Into<String>,
    ) -> Self {
        Self::from_fields(GitFields {
            git_clone_url_secret_name: Some(secret_name.into()),
            flow_path: flow_path.into(),
            ..GitFields::default()
        })
    }

    fn from_fields(fields: GitFields) -> Self {
        Git {
            fields,
            index: FlowIndex::default(),
            secrets: Arc::new(NoSecrets),
            cache_dir: default_cache_dir(),
            cache_policy: None,
            progress: None,
        }
    }

    /// The host (and port) of the repository.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.fields.repo_host = host.into();
        self
    }

    /// `https` (default), `http` or `git`.
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.fields.repo_scheme = Some(scheme.into());
        self
    }

    /// Check out this branch (resolved at every fetch unless pinned).
    pub fn branch(mut self, branch: impl Into<String>) -> Self {
        self.fields.branch_name = Some(branch.into());
        self
    }

    /// Check out this tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.fields.tag = Some(tag.into());
        self
    }

    /// Check out exactly this commit.
    pub fn commit(mut self, sha: impl Into<String>) -> Self {
        self.fields.commit = Some(sha.into());
        self
    }

    /// Resolve the ref at `build` and record the commit and the file's digest.
    pub fn pin(mut self, on: bool) -> Self {
        self.fields.pin = on;
        self
    }

    /// The secret holding an access token (sent as HTTP basic auth).
    pub fn git_token_secret_name(mut self, name: impl Into<String>) -> Self {
        self.fields.git_token_secret_name = Some(name.into());
        self
    }

    /// The username sent with the token (e.g. `oauth2` for GitLab deploy tokens).
    pub fn git_token_username(mut self, user: impl Into<String>) -> Self {
        self.fields.git_token_username = Some(user.into());
        self
    }

    /// Clone over ssh, authenticating with this key file (else ssh-agent or `~/.ssh/id_*`), the
    /// server checked against `known_hosts` (default `~/.ssh/known_hosts`).
    pub fn ssh(
        mut self,
        user: impl Into<String>,
        key_path: Option<String>,
        known_hosts: Option<String>,
    ) -> Self {
        self.fields.use_ssh = true;
        self.fields.git_token_username = Some(user.into());
        self.fields.ssh_key_path = key_path;
        self.fields.known_hosts_path = known_hosts;
        self
    }

    /// Accept an ssh host whose key is not in the known-hosts file (off by default).
    pub fn ssh_accept_unknown_host(mut self, on: bool) -> Self {
        self.fields.ssh_accept_unknown_host = on;
        self
    }

    /// Also check out submodules.
    pub fn submodules(mut self, on: bool) -> Self {
        self.fields.submodules = on;
        self
    }

    /// Only write the flow's directory and these paths out of the commit.
    pub fn sparse_paths(mut self, paths: Vec<String>) -> Self {
        self.fields.sparse_paths = paths;
        self
    }

    /// History depth for branches and tags (default 1; 0 = everything).
    pub fn clone_depth(mut self, depth: u32) -> Self {
        self.fields.clone_depth = depth;
        self
    }

    /// Where secrets are looked up (then the environment).
    pub fn secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// The clone cache directory (default [`default_cache_dir`]).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = dir.into();
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

    /// The fields as they go into the reference.
    pub fn fields(&self) -> &GitFields {
        &self.fields
    }

    /// Opens a `Git` reference (Prefect 1's included).
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<Self> {
        let fields: GitFields = reference.backend_fields()?;
        fields.validate()?;
        let mut git = Self::from_fields(fields).secrets(ctx.secrets.clone());
        git.index = FlowIndex::from_reference(reference);
        git.progress = ctx.progress.clone().map(progress_hook);
        Ok(git)
    }

    /// Opens `git+https://host/org/repo.git#branch=main` (also `git+http`, `git+ssh`, `git://`;
    /// fragment keys `branch`, `tag`, `commit`, `pin=true`, `token_secret`), with the flow file
    /// from the context's script path.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<Self> {
        let bad = || {
            CoreError::config(format!(
            "Git storage URL \"{url}\" must look like git+https://host/org/repo.git#branch=main"
        ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let scheme = match scheme {
            "git+https" => "https",
            "git+http" => "http",
            "git" => "git",
            "git+ssh" => "ssh",
            _ => return Err(bad()),
        };
        let (location, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let (host, repo) = location.split_once('/').ok_or_else(bad)?;
        let repo = repo.trim_end_matches('/').trim_end_matches(".git");
        let flow_path = ctx.script_path.clone().ok_or_else(|| {
            CoreError::config("Git storage stores script flows: register with --script and the flow's path in the repository")
        })?;
        let mut git = Git::new(repo, flow_path)
            .host(host)
            .secrets(ctx.secrets.clone());
        if scheme == "ssh" {
            git.fields.use_ssh = true;
        } else {
            git = git.scheme(scheme);
        }
        for pair in fragment.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            git = match k {
                "branch" => git.branch(v),
                "tag" => git.tag(v),
                "commit" => git.commit(v),
                "pin" => git.pin(v == "true" || v.is_empty()),
                "token_secret" => git.git_token_secret_name(v),
                other => {
                    return Err(CoreError::config(format!(
                        "Git storage URL \"{url}\": unknown option \"{other}\""
                    )))
                }
            };
        }
        git.fields.validate()?;
        Ok(git)
    }

    /// Fetches (cached) and checks out the configured ref; returns the verified checkout, held
    /// in use until dropped. `flow` names the flow in errors.
    async fn checkout(&self, flow: &str) -> Result<cache::Checkout> {
        let target = self.fields.target()?;
        let remote = url::clone_target(&self.fields, self.secrets.as_ref())?;
        let flow_dir = std::path::Path::new(&self.fields.flow_path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut sparse = self.fields.sparse_paths.clone();
        if !sparse.is_empty() {
            sparse.push(if flow_dir.is_empty() {
                self.fields.flow_path.clone()
            } else {
                format!("{flow_dir}/")
            });
        }
        let policy = match &self.cache_policy {
            Some(p) => p.clone(),
            None => cache::policy_from_env()?,
        };
        let cache = GitCache::new(&self.cache_dir).with_policy(policy);
        let (depth, progress) = (self.fields.clone_depth, self.progress.clone());
        let submodules = self.fields.submodules;
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
        .map_err(|e| CoreError::backend(TYPE_NAME, format!("checkout task failed: {e}")))?;
        outcome.map_err(|failure| match failure.cause {
            transport::Cause::ServerData => CoreError::FlowCorrupt {
                flow: flow.to_string(),
                location: self.fields.flow_path.clone(),
                reason: format!(
                    "objects the server sent are missing or fail git's checks, twice, the second \
                     time into an empty cache: {}. The repository on the server may be damaged",
                    failure.detail
                ),
            },
            _ => failure.error,
        })
    }

    /// Reads the flow file at a checkout, checking the path stays inside the checkout (no `..`,
    /// no symlink out of it), the bytes are the commit's (their blob id is the one git recorded)
    /// and the flow is defined in it.
    fn read_flow(&self, name: &str, co: &cache::Checkout) -> Result<(Bytes, PathBuf)> {
        let path = co.dir.join(&self.fields.flow_path);
        let repo = self
            .fields
            .repo
            .as_deref()
            .unwrap_or("(from the clone-URL secret)");
        let not_found = || CoreError::Backend {
            temporary: false,
            backend: TYPE_NAME.into(),
            message: format!(
                "File {} not found in repo {repo} at commit {}",
                self.fields.flow_path, co.commit
            ),
            source: None,
        };
        let (Ok(real), Ok(root)) = (path.canonicalize(), co.dir.canonicalize()) else {
            return Err(not_found());
        };
        let Ok(rel) = real.strip_prefix(&root) else {
            return Err(CoreError::OutsideStorage {
                flow: name.to_string(),
                location: self.fields.flow_path.clone(),
                root: format!("the checkout of commit {}", co.commit),
            });
        };
        let source = std::fs::read(&real).map_err(|_| not_found())?;
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
        if !String::from_utf8_lossy(&source).contains(name) {
            return Err(CoreError::Backend {
                temporary: false,
                backend: TYPE_NAME.into(),
                message: format!(
                    "Flow \"{name}\" not found in file {} at commit {}: the file ({} bytes, \
                     verified against git blob {blob}) does not contain the name \"{name}\"; \
                     check the flow's name and flow_path",
                    self.fields.flow_path,
                    co.commit,
                    source.len()
                ),
                source: None,
            });
        }
        Ok((Bytes::from(source), path))
    }
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

    fn capabilities(&self) -> flowstore_core::Capabilities {
        flowstore_core::Capabilities::READ_ONLY_SCRIPTS
    }

    /// Records the flow (the file is already committed); location: the flow path.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        self.fields.validate()?;
        self.index
            .insert(flow.name(), self.fields.flow_path.clone(), None)?;
        Ok(self.fields.flow_path.clone())
    }

    /// With `pin`, resolves the ref now and records the commit and each flow file's digest.
    async fn persist(&mut self) -> Result<()> {
        if !self.fields.pin || self.fields.commit.is_some() && self.fields.pinned_from.is_some() {
            return Ok(());
        }
        let names: Vec<String> = self.index.flows.keys().cloned().collect();
        let co = self.checkout(&names.join(", ")).await?;
        for name in names {
            let (source, _) = self.read_flow(&name, &co)?;
            self.index
                .digests
                .insert(name, flowstore_core::envelope::sha256_digest(&source));
        }
        self.fields.pinned_from = self
            .fields
            .branch_name
            .take()
            .or_else(|| self.fields.tag.take());
        self.fields.commit = Some(co.commit.clone());
        tracing::info!(commit = %co.commit, "pinned");
        Ok(())
    }

    async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        let co = self.checkout(name).await?;
        tracing::info!(flow = name, commit = %co.commit, "using commit");
        let (source, path) = self.read_flow(name, &co)?;
        self.index
            .open_script(name, &location, Some(co.commit), source, Some(path))
    }

    fn reference(&self) -> Result<StorageReference> {
        let mut reference = StorageReference::new(TYPE_NAME, &self.fields)?;
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
    for scheme in ["git+https", "git+http", "git+ssh", "git"] {
        registry.register_scheme(scheme, |u, ctx| {
            Ok(Box::new(Git::from_url(u, ctx)?) as Box<dyn Storage>)
        });
    }
}
