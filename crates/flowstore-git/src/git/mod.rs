//! `Git` storage: script flows committed in a git repository, cloned (shallow, cached) and
//! checked out at the ref asked for; the whole checkout is there for the flow to read files
//! beside it. Bundle flows are directories of the repository (see [Bundles](#bundles)).
//!
//! Read-only, as in the reference system. Unlike it, a `commit` is checked out exactly, the flow
//! asked for by name is the one loaded, and with `pin` the commit is resolved at
//! [`persist`](Storage::persist) and recorded (with each flow file's digest) so every run of a
//! registration gets the same code.
//!
//! Made by [`GitBuilder`] (`Git::builder(repo, flow_path)`, `GitBuilder::from_url`, …); opened
//! from a reference with [`Git::from_reference`].
//!
//! # Bundles
//!
//! A bundle flow is a directory of the repository at the resolved commit:
//! `add_flow(FlowInput::bundle(name, dir, entry))` names the directory `dir` (relative to the
//! repository root, `.` for the root) and its entry file `entry` (relative to `dir`). The
//! reference records the location `bundle:<dir>//<entry>` — `bundle:projects/etl//flows/etl.py`,
//! `bundle:.//flow.py` (neither part holds an empty segment, so the first `//` splits them; a
//! script path of that shape is refused) — and, with `pin`, the digest of the bundle's manifest
//! at the pinned commit, so a tree that differs from the registered one is refused as
//! [`CoreError::FlowCorrupt`] naming the flow.
//!
//! [`Storage::get_flow`] returns [`FlowContent::Bundle`]: the manifest built from the tree of
//! `dir` (sha256 of each blob, read from git's verified objects; `100755` → `0755`, `100644` →
//! `0644`; symlinks, submodules and names a bundle cannot hold are refused naming the path;
//! ignore files are not applied — what is committed is the bundle). [`Storage::get_bundle`]
//! writes the directory's blobs into the shared [`BlobCache`] (skipping those already there and
//! verified) and materializes the tree from it.
//!
//! libgit2 has no partial clone, so what is fetched is what a script flow fetches: the one ref,
//! shallow (`clone_depth`, default 1) — the commit's whole tree, not only the directory — into
//! the clone cache, once per commit. Only the directory's objects are then read and copied.
//!
//! ```no_run
//! use flowstore_core::bundle::FetchOptions;
//! use flowstore_core::{FlowInput, Storage};
//! use flowstore_git::Git;
//! # async fn run() -> flowstore_core::Result<()> {
//! let mut git = Git::builder("org/flows", "projects/etl/flows/etl.py")
//!     .branch("main")
//!     .pin(true)
//!     .build()?;
//! git.add_flow(FlowInput::bundle("ETL", "projects/etl", "flows/etl.py")).await?;
//! git.persist().await?; // records the commit and the manifest's digest
//! let fetched = git
//!     .get_bundle("ETL", "/tmp/etl".as_ref(), &FetchOptions::default())
//!     .await?;
//! println!("run {}", fetched.entry.display());
//! # Ok(()) }
//! ```

mod advert;
mod builder;
mod bundle;
mod cache;
mod config;
mod known_hosts;
mod transport;
mod url;
mod worktree;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::bundle::{BlobCache, BundleInput, FetchOptions, FetchedBundle};
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{SecretSource, SecretString};
use flowstore_core::{
    async_trait, Capabilities, Error as CoreError, FetchedFlow, FlowContent, FlowInput,
    OpenContext, Registry, Result, Storage, StorageReference,
};

use bundle::{BlobSink, BundleLocation, ReadBundle};
use config::Target;

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
        if BundleLocation::looks_like(path) {
            return Err(CoreError::config(format!(
                "Flow file path {path:?} has the shape of a bundle location \
                 (`bundle:<directory>//<entry>`); add bundle flows with FlowInput::bundle"
            )));
        }
        self.index.insert(name, path.to_string(), None)?;
        Ok(path.to_string())
    }

    /// Adds bundle flow `input.name`: the directory `input.dir` of the repository (relative to
    /// its root, `.` for the root) with entry file `input.entry` (relative to that directory).
    /// Nothing is uploaded (the files are committed); with `pin`, [`Storage::persist`] records
    /// the digest of the bundle's manifest at the pinned commit. Returns the location,
    /// `bundle:<dir>//<entry>`.
    fn add_bundle(&mut self, input: BundleInput) -> Result<String> {
        self.config.validate()?;
        let location = BundleLocation::new(&input.name, &input.dir, &input.entry)?.to_location();
        self.index.insert(&input.name, location.clone(), None)?;
        Ok(location)
    }

    /// The paths to write in a sparse checkout: the configured ones and each script flow's
    /// directory (bundles are read from the clone, not from a checkout).
    fn sparse_set(&self) -> Vec<String> {
        if self.config.sparse_paths.is_empty() {
            return Vec::new();
        }
        let mut sparse = self.config.sparse_paths.clone();
        let scripts = self
            .index
            .flows
            .values()
            .filter(|l| !BundleLocation::looks_like(l));
        let files = std::iter::once(&self.config.flow_path).chain(scripts);
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
        let remote = self.remote()?;
        let sparse = self.sparse_set();
        let cache = self.git_cache()?;
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
        outcome.map_err(|failure| self.failure_error(flow, failure))
    }

    /// Where to clone from, with credentials resolved.
    fn remote(&self) -> Result<url::CloneTarget> {
        url::clone_target(
            &self.config,
            self.secrets.as_ref(),
            self.access_token.as_ref(),
        )
    }

    /// The clone cache with its bounds (set in code, else from the environment).
    fn git_cache(&self) -> Result<GitCache> {
        let policy = match &self.cache_policy {
            Some(p) => p.clone(),
            None => cache::policy_from_env()?,
        };
        Ok(GitCache::new(&self.cache_dir).with_policy(policy))
    }

    /// The error a failed fetch reports; `flow` names the flow(s) when the server's objects are
    /// bad.
    fn failure_error(&self, flow: &str, failure: transport::Failure) -> CoreError {
        match failure.cause {
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
        }
    }

    /// Fetches `target` into the clone cache (when needed: a shallow fetch of the one ref, as
    /// for script flows — libgit2 has no partial clone, so the commit's whole tree comes, not
    /// only the bundles' directories) and reads the bundle flows `flows` at its commit from the
    /// cached clone, under the clone's lock. With `sink`, each bundle's blobs are written to the
    /// blob cache (those already there, verified, are skipped). Returns the commit and the
    /// bundles in order.
    async fn read_bundles(
        &self,
        target: Target,
        flows: Vec<(String, BundleLocation)>,
        sink: Option<BlobSink>,
    ) -> Result<(String, Vec<ReadBundle>)> {
        let remote = self.remote()?;
        let cache = self.git_cache()?;
        let (depth, progress) = (self.config.clone_depth, self.progress.clone());
        let repo_label = self.repo_label();
        let names: Vec<&str> = flows.iter().map(|(n, _)| n.as_str()).collect();
        let names = names.join(", ");
        let outcome = tokio::task::spawn_blocking(move || {
            let request = cache::CheckoutRequest {
                remote: &remote,
                target: &target,
                depth,
                sparse: &[],
                submodules: false,
                progress: progress.as_ref(),
            };
            cache::with_commit(&cache, &request, |repo, oid, _| {
                let read = flows
                    .iter()
                    .map(|(name, loc)| {
                        bundle::read(repo, oid, &remote, (name, &repo_label), loc, sink.as_ref())
                    })
                    .collect::<std::result::Result<Vec<_>, transport::Failure>>()?;
                Ok((oid.to_string(), read))
            })
        })
        .await
        .map_err(|e| {
            CoreError::backend(TYPE_NAME, format!("the bundle read task failed: {e}"))
                .with_source(e)
        })?;
        outcome.map_err(|failure| self.failure_error(&names, failure))
    }

    /// Checks out the configured ref and records the digest of each script flow of `names`;
    /// returns the commit.
    async fn pin_scripts(&mut self, names: Vec<String>) -> Result<String> {
        let co = self.checkout(&names.join(", ")).await?;
        for name in names {
            let location = self.index.location(&name)?.to_string();
            let (source, _) = self.read_file(&name, &location, &co)?;
            self.index
                .digests
                .insert(name, flowstore_core::envelope::sha256_digest(&source));
        }
        Ok(co.commit.clone())
    }

    /// Reads bundle flow `name` at the configured ref and checks its manifest against the digest
    /// recorded when the storage pinned.
    async fn read_bundle(
        &self,
        name: &str,
        loc: &BundleLocation,
        sink: Option<BlobSink>,
    ) -> Result<(String, ReadBundle)> {
        let flows = vec![(name.to_string(), loc.clone())];
        let (commit, mut read) = self
            .read_bundles(self.config.target()?, flows, sink)
            .await?;
        let read = read.pop().ok_or_else(|| {
            CoreError::backend(TYPE_NAME, format!("bundle flow \"{name}\" was not read"))
        })?;
        let actual = read.manifest.digest();
        match self.index.digests.get(name) {
            Some(expected) if *expected != actual => Err(CoreError::FlowCorrupt {
                flow: name.to_string(),
                location: format!("{}@{commit}:{}", self.repo_label(), loc.dir),
                reason: format!(
                    "the manifest of its directory {} at commit {commit} has digest {actual}, but \
                     {expected} was recorded at registration: the directory's files are not the \
                     ones registered",
                    loc.dir
                ),
            }),
            _ => Ok((commit, read)),
        }
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
        let blob = worktree::blob_id_of(&source);
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

    /// Read-only: script flows and bundles (directories of the repository), several per storage
    /// (each names its file or directory), no listing.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            bundles: true,
            delete_versions: false,
            ..Capabilities::READ_ONLY_SCRIPTS
        }
    }

    /// Records a script flow (the file is already committed; location: the flow path) or a
    /// bundle flow: `FlowInput::bundle(name, dir, entry)` names the directory `dir` of the
    /// repository (relative to its root, `.` for the root) and its entry file `entry` (relative
    /// to `dir`); location: `bundle:<dir>//<entry>`.
    ///
    /// Errors with [`CoreError::Config`] for a serialized flow (Git storage is read-only) or a
    /// bundle directory or entry that is not a relative path inside the repository, and
    /// [`CoreError::NameConflict`] for a name already held.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        match flow {
            FlowInput::Serialized(s) => Err(CoreError::config(format!(
                "Git storage is read-only: it loads script flows committed in the repository, so \
                 it cannot store the serialized flow \"{}\". Register it with --script (the \
                 flow's path in the repository), or store serialized flows in a writable storage",
                s.name
            ))),
            FlowInput::Bundle(input) => self.add_bundle(input),
            script => {
                let path = self.config.flow_path.clone();
                self.add_flow_at(script.name(), &path)
            }
        }
    }

    /// With `pin`, resolves the ref now and records the commit and each flow's digest: a script
    /// file's, or a bundle's manifest's (built from its directory at the commit). Flows added
    /// after pinning get their digest at the pinned commit.
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
        let mut bundles = Vec::new();
        let mut scripts = Vec::new();
        for name in names {
            match BundleLocation::parse(&name, self.index.location(&name)?) {
                Some(loc) => bundles.push((name, loc?)),
                None => scripts.push(name),
            }
        }
        let commit = if bundles.is_empty() {
            self.pin_scripts(scripts).await?
        } else {
            // At the scripts' commit when there are scripts, so every flow pins the same one.
            let target = if scripts.is_empty() {
                self.config.target()?
            } else {
                Target::Commit(self.pin_scripts(scripts).await?)
            };
            let names: Vec<String> = bundles.iter().map(|(n, _)| n.clone()).collect();
            let (resolved, read) = self.read_bundles(target, bundles, None).await?;
            for (name, bundle) in names.into_iter().zip(read) {
                self.index.digests.insert(name, bundle.manifest.digest());
            }
            resolved
        };
        if let Some(from) = self
            .config
            .branch_name
            .take()
            .or_else(|| self.config.tag.take())
        {
            self.config.pinned_from = Some(from);
        }
        tracing::info!(commit = %commit, "pinned");
        self.config.commit = Some(commit);
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
    ///
    /// A bundle flow comes back as [`FlowContent::Bundle`]: the manifest of its directory at the
    /// commit (every file read from git's verified objects and hashed), checked against the
    /// digest recorded when the storage pinned. Errors then also: [`CoreError::NotFound`] for a
    /// missing directory (`"directory"`) or entry file; [`CoreError::Config`] naming the path of
    /// a symlink, a submodule or a name a bundle cannot hold.
    async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        if let Some(loc) = BundleLocation::parse(name, &location) {
            let (commit, read) = self.read_bundle(name, &loc?, None).await?;
            tracing::info!(flow = name, commit = %commit, "bundle read");
            return Ok(FetchedFlow {
                name: name.to_string(),
                location,
                revision: Some(commit),
                content: FlowContent::Bundle(read.manifest),
            });
        }
        let co = self.checkout(name).await?;
        tracing::info!(flow = name, commit = %co.commit, "using commit");
        let (source, path) =
            tracing::debug_span!("read_file").in_scope(|| self.read_file(name, &location, &co))?;
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

    /// Fetches bundle flow `name`'s directory at the resolved commit and materializes it at
    /// `dest`. The ref is fetched into the clone cache as for script flows (a shallow fetch of
    /// the one ref: libgit2 has no partial clone, so the commit's whole tree is transferred, once
    /// per commit, not only the directory); then only the directory's blobs are read from the
    /// clone (git verifies each against its id), each not already in the blob cache
    /// (`options.cache`, else [`BlobCache::from_env`]) is written there and verified by its
    /// sha256, and the tree is materialized from the cache. The transfer report counts the blobs
    /// written to the blob cache (`objects`, `bytes`) and found there already (`reused_*`).
    /// `options.parallelism` does not apply (blobs are read from the local clone one by one).
    ///
    /// Errors as [`Storage::get_flow`] of a bundle, plus [`CoreError::Unsupported`] for a script
    /// flow and those of materializing (`dest` not empty and not made by a fetch, I/O).
    async fn get_bundle(
        &self,
        name: &str,
        dest: &Path,
        options: &FetchOptions,
    ) -> Result<FetchedBundle> {
        let location = self.index.location(name)?.to_string();
        let Some(loc) = BundleLocation::parse(name, &location) else {
            return Err(CoreError::Unsupported {
                backend: "flowstore".to_string(),
                what: format!(
                    "fetching flow \"{name}\" as a bundle: it is a script flow (file {location}); \
                     fetch it with get_flow"
                ),
            });
        };
        let cache = match &options.cache {
            Some(c) => c.clone(),
            None => BlobCache::from_env()?,
        };
        let sink = BlobSink {
            cache: cache.clone(),
            progress: options.progress.clone(),
        };
        let (commit, read) = self.read_bundle(name, &loc?, Some(sink)).await?;
        let ReadBundle { manifest, transfer } = read;
        let (to_build, dest_owned) = (manifest.clone(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || {
            flowstore_core::bundle::materialize_from_cache(&cache, &to_build, &dest_owned)
        })
        .await
        .map_err(|e| {
            CoreError::backend(TYPE_NAME, format!("materializing the bundle: {e}")).with_source(e)
        })??;
        tracing::info!(
            flow = name,
            commit = %commit,
            written = transfer.objects,
            reused = transfer.reused_objects,
            "bundle materialized"
        );
        Ok(FetchedBundle {
            name: name.to_string(),
            root: dest.to_path_buf(),
            entry: dest.join(manifest.entry()),
            manifest,
            transfer,
        })
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
