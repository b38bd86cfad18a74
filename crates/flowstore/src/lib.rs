//! # flowstore
//!
//! Store workflow ("flow") definitions in pluggable backends and fetch them back at run time,
//! verified against the digest recorded when they were registered. An orchestrator keeps only a
//! small JSON *storage reference*; an agent on any machine turns it back into a storage with
//! [`open`] / [`open_json`] and fetches the flow. References written by Prefect 1 open as they are.
//!
//! This crate is the facade: one dependency, one Cargo feature per backend. Each backend also
//! lives in its own crate (`flowstore-local`, `flowstore-cloud`, `flowstore-git`,
//! `flowstore-docker`, `flowstore-webhook`), usable alone.
//!
//! ## Register in S3, fetch back on an agent
//!
//! ```no_run
//! # #[cfg(feature = "s3")] // this example needs the `s3` feature
//! # async fn example() -> flowstore::Result<()> {
//! use flowstore::{seal, Storage, S3};
//! let app = flowstore::app_info!();
//! let mut storage = S3::builder("my-bucket").endpoint("http://127.0.0.1:9000").build()?;
//! storage.add_flow(seal("My ETL Flow", &["extract", "load"], &app)?.into()).await?;
//! storage.persist().await?;
//! let reference = storage.reference()?.to_json(); // keep this in your database
//!
//! // On an agent, anywhere: the reference is all it needs.
//! let agent = flowstore::open_json(&reference)?;
//! let tasks: Vec<String> = agent.get_flow("My ETL Flow").await?.decode(&app)?;
//! # Ok(()) }
//! ```
//!
//! The same with the default feature (`local`), running for real:
//!
//! ```
//! # #[tokio::main] async fn main() -> flowstore::Result<()> {
//! use flowstore::{seal, Local, Storage};
//! let dir = tempfile::tempdir().unwrap();
//! let app = flowstore::app_info!();
//! let mut storage = Local::builder().directory(dir.path()).build()?;
//! storage.add_flow(seal("My ETL Flow", &["extract", "load"], &app)?.into()).await?;
//! storage.persist().await?;
//! let agent = flowstore::open_json(&storage.reference()?.to_json())?;
//! let tasks: Vec<String> = agent.get_flow("My ETL Flow").await?.decode(&app)?;
//! assert_eq!(tasks, ["extract", "load"]);
//! # Ok(()) }
//! ```
//!
//! ## Bundles: a flow with its code
//!
//! A bundle is a directory tree registered as one flow: every distinct file is a
//! content-addressed blob, uploaded only if the storage lacks it, plus one manifest. An agent
//! downloads only the blobs its local cache lacks, verifies every file, and gets the whole tree
//! atomically (see [`bundle`]).
//!
//! ```
//! # #[tokio::main] async fn main() -> flowstore::Result<()> {
//! use flowstore::{bundle::FetchOptions, FlowInput, Local, Storage};
//! let project = tempfile::tempdir().unwrap();
//! std::fs::create_dir(project.path().join("flows")).unwrap();
//! std::fs::write(project.path().join("flows/etl.py"), "from helpers import run\nrun()\n").unwrap();
//! std::fs::write(project.path().join("helpers.py"), "def run(): print('hi')\n").unwrap();
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut storage = Local::builder().directory(dir.path()).build()?;
//! storage.add_flow(FlowInput::bundle("ETL", project.path(), "flows/etl.py")).await?;
//! storage.persist().await?;
//!
//! let agent = flowstore::open_json(&storage.reference()?.to_json())?;
//! let work = tempfile::tempdir().unwrap();
//! let options = FetchOptions::with_cache_dir(work.path().join("cache"));
//! let tree = agent.get_bundle("ETL", &work.path().join("etl"), &options).await?;
//! assert!(tree.entry.ends_with("flows/etl.py"));
//! assert!(tree.root.join("helpers.py").is_file());
//! # Ok(()) }
//! ```
//!
//! Storages also open from a URL plus options, as the `flowstore` command's `--storage` does:
//! `flowstore::open_url("s3://my-bucket/flows", [("region", "eu-west-1"), ("label", "prod")])`.
//!
//! ## Features
//!
//! | feature | backends | reference `type` | URL schemes |
//! |---|---|---|---|
//! | `local` (default) | [`Local`], [`Module`] | `Local`, `Module` | `file://` |
//! | `s3` | [`S3`] | `S3` | `s3://` |
//! | `azure` | [`Azure`] | `Azure` | `az://`, `azure://` |
//! | `gcs` | [`Gcs`] | `GCS` | `gs://` |
//! | `git` | [`Git`] | `Git` | `git://`, `git+https://`, `git+http://`, `git+ssh://` |
//! | `github`, `gitlab`, `bitbucket`, `codecommit` | [`GitHub`], [`GitLab`], [`Bitbucket`], [`CodeCommit`] | same names | `github://`, `gitlab://`, `bitbucket://`, `codecommit://` |
//! | `docker` (+ `docker-engine`) | [`Docker`] | `Docker` | `docker://` |
//! | `webhook` | [`Webhook`] | `Webhook` | `http://`, `https://` |
//! | `full` | all of the above | | |
//!
//! ## What each backend can do
//!
//! Every storage declares it ([`Storage::capabilities`]); the conformance suite every backend
//! runs picks its checks from it.
//!
//! | backend | write | many flows | serialized | script | list versions | stream to file | bundles | delete versions ([`prune`]) |
//! |---|---|---|---|---|---|---|---|---|
//! | Local | yes | yes | yes | yes | serialized mode | yes | serialized mode | serialized mode |
//! | Module | yes (this process) | yes | yes | no | no | no | no | no |
//! | S3, Azure, GCS | yes | yes (unless a fixed key) | yes | yes | yes | yes | serialized mode, no fixed key | where it lists |
//! | Git | no (read-only) | yes | no | yes | no | no | yes (a directory of the repository) | no |
//! | GitHub, GitLab, Bitbucket, CodeCommit | no (read-only) | yes | no | yes | no | no | no | no |
//! | Docker | yes (an image) | yes | yes | yes | registry tags | no | serialized mode (one image layer) | registry tags, where the registry allows deletes |
//! | Webhook | yes | no (one flow) | yes | yes | URL mode (JSON directory listings) | yes | URL mode | URL mode (the server must allow `DELETE`) |
//!
//! ## Errors
//!
//! One [`Error`] type: typed [`Error::NotFound`] (what and where), [`Error::PermissionDenied`],
//! [`Error::FlowCorrupt`] (a flow that fails its digest is never loaded), with the lower error kept
//! as `source()` and [`Error::is_temporary`] telling whether a retry may help.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;

pub use flowstore_core::envelope::{self, seal, seal_bytes, AppInfo, SealedFlow};
pub use flowstore_core::secret::{SecretSource, SecretString};
pub use flowstore_core::{
    app_info, Capabilities, Error, FetchedFlow, FlowContent, FlowInput, OpenContext, Progress,
    ProgressFn, Registry, Result, Storage, StorageReference, StoredVersion,
};
pub use flowstore_core::{bundle, cache, flow, key, prune};

/// The backend crates, for everything beyond the storage types re-exported at the top.
pub mod backends {
    #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
    pub use flowstore_cloud as cloud;
    #[cfg(feature = "docker")]
    pub use flowstore_docker as docker;
    #[cfg(any(
        feature = "git",
        feature = "github",
        feature = "gitlab",
        feature = "bitbucket",
        feature = "codecommit"
    ))]
    pub use flowstore_git as git;
    #[cfg(feature = "local")]
    pub use flowstore_local as local;
    #[cfg(feature = "webhook")]
    pub use flowstore_webhook as webhook;
}

/// Secret sources (environment, files, directories) and how the default ones are configured.
pub use flowstore_secrets as secrets;

#[cfg(feature = "azure")]
pub use flowstore_cloud::{Azure, AzureBuilder};
#[cfg(feature = "gcs")]
pub use flowstore_cloud::{Gcs, GcsBuilder};
#[cfg(feature = "s3")]
pub use flowstore_cloud::{S3Builder, S3};
#[cfg(feature = "docker")]
pub use flowstore_docker::{Docker, DockerBuilder};
#[cfg(feature = "bitbucket")]
pub use flowstore_git::{Bitbucket, BitbucketBuilder};
#[cfg(feature = "codecommit")]
pub use flowstore_git::{CodeCommit, CodeCommitBuilder};
#[cfg(feature = "git")]
pub use flowstore_git::{Git, GitBuilder};
#[cfg(feature = "github")]
pub use flowstore_git::{GitHub, GitHubBuilder};
#[cfg(feature = "gitlab")]
pub use flowstore_git::{GitLab, GitLabBuilder};
#[cfg(feature = "local")]
pub use flowstore_local::{Local, LocalBuilder, Module, ModuleBuilder};
#[cfg(feature = "webhook")]
pub use flowstore_webhook::{Webhook, WebhookBuilder};

/// Installs every backend compiled into this build (by Cargo feature) into `registry`: their
/// reference types and URL schemes.
///
/// ```
/// let mut registry = flowstore::Registry::new();
/// flowstore::install_backends(&mut registry);
/// assert!(registry.types().contains(&"Local"));
/// ```
pub fn install_backends(registry: &mut Registry) {
    #[cfg(feature = "local")]
    flowstore_local::register(registry);
    #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
    flowstore_cloud::register(registry);
    #[cfg(any(
        feature = "git",
        feature = "github",
        feature = "gitlab",
        feature = "bitbucket",
        feature = "codecommit"
    ))]
    flowstore_git::register(registry);
    #[cfg(feature = "docker")]
    flowstore_docker::register(registry);
    #[cfg(feature = "webhook")]
    flowstore_webhook::register(registry);
    let _ = registry;
}

/// A registry with every compiled-in backend and the default secret sources, first match wins:
/// the file named by `FLOWSTORE_SECRETS_FILE`, the directory named by `FLOWSTORE_SECRETS_DIR`,
/// Prefect 1's local secrets (`PREFECT__CONTEXT__SECRETS__<NAME>`, then `[context.secrets]` in
/// `~/.prefect/backend.toml` and `~/.prefect/config.toml`), then the environment variable
/// `<NAME>` itself (see `flowstore_secrets::default_sources`).
///
/// Errors with [`Error::Config`] when the secrets file cannot be read or parsed.
pub fn registry() -> Result<Registry> {
    let sources = flowstore_secrets::default_sources().map_err(Error::from)?;
    let mut registry = Registry::new().with_secrets(Arc::new(sources));
    install_backends(&mut registry);
    Ok(registry)
}

/// Opens the storage a reference describes, with every compiled-in backend and the default
/// secret sources, after checking that every secret the reference declares can be found.
///
/// Errors with [`Error::UnknownType`] for a backend that is not compiled in (naming the feature
/// to turn on), [`Error::SecretNotFound`] naming a missing secret, and the backend's errors for
/// fields that cannot work.
pub fn open(reference: &StorageReference) -> Result<Box<dyn Storage>> {
    registry()?.open(reference)
}

/// Parses a reference from JSON and opens it (see [`open`]).
///
/// Errors with [`Error::InvalidReference`] for JSON that is not a storage reference, then as
/// [`open`] does.
pub fn open_json(json: &str) -> Result<Box<dyn Storage>> {
    open(&StorageReference::from_json(json)?)
}

/// Opens a storage from a URL (`file:///srv/flows`, `s3://bucket/prefix?region=eu-west-1`,
/// `git+https://host/org/repo.git#branch=main`, …), then applies `options` as the URL's query
/// would (`("label", "prod")`, `("endpoint_url", "http://127.0.0.1:9000")`).
///
/// Errors with [`Error::UnknownScheme`] naming the schemes compiled in, and [`Error::Config`]
/// naming an option the backend does not take.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let url = format!("file://{}", dir.path().display());
/// let storage = flowstore::open_url(&url, [("label", "prod")]).unwrap();
/// assert_eq!(storage.type_name(), "Local");
/// assert!(storage.labels().contains(&"prod".to_string()));
/// ```
pub fn open_url<K: Into<String>, V: Into<String>>(
    url: &str,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<Box<dyn Storage>> {
    registry()?.open_url_with(url, options)
}
