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

mod builder;
mod cache;
mod config;
mod known_hosts;
mod transport;
mod url;
mod worktree;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{SecretSource, SecretString};
use flowstore_core::{
    async_trait, Capabilities, Error as CoreError, FetchedFlow, FlowInput, OpenContext, Registry,
    Result, Storage, StorageReference,
};

pub use builder::GitBuilder;
pub use cache::{
    default_cache_dir, CachedEntry, GitCache, Progress, ProgressHook, CACHE_ENV, POLICY_ENV_PREFIX,
};
pub use config::GitConfig;
pub use flowstore_core::cache::{CachePolicy, GcReport};

/// The reference type name.
pub const TYPE_NAME: &str = "Git";

/// The URL schemes [`GitBuilder::from_url`] takes (and [`register`] registers).
pub const URL_SCHEMES: [&str; 4] = ["git+https", "git+http", "git+ssh", "git"];

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
