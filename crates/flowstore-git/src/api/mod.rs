//! Storages that fetch flow files through a git host's REST API (no clone): [`GitHub`],
//! [`GitLab`], [`Bitbucket`] (Server and Cloud) and [`CodeCommit`], each made by its builder
//! ([`GitHubBuilder`], …). Script flows only, as in the reference system; several flows per
//! storage, each at its file's path in the repository (Prefect 1 recorded that path as the flow's
//! location too). The file's digest is recorded at registration and checked at fetch when the
//! ref is a fixed commit SHA; every fetch reports the commit it read.
//!
//! Errors: a missing repository, ref or file is [`CoreError::NotFound`] (`"repository"`, `"ref"`,
//! `"file"`), 401/403 [`CoreError::PermissionDenied`], 429, 5xx and timeouts a temporary
//! [`CoreError::Backend`]; the server's answer is kept as the source
//! ([`HttpStatus`](crate::HttpStatus)). Tokens never appear in a reference, an error, a log or
//! `Debug`.

#[cfg(feature = "bitbucket")]
pub mod bitbucket;
#[cfg(feature = "codecommit")]
pub mod codecommit;
#[cfg(feature = "github")]
pub mod github;
#[cfg(feature = "gitlab")]
pub mod gitlab;
mod http;
#[cfg(feature = "codecommit")]
mod sigv4;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::raw::config::{apply_pairs, BackendConfig};
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource, SecretString};
use flowstore_core::{
    async_trait, Capabilities, Error as CoreError, FetchedFlow, FlowContent, FlowInput,
    OpenContext, Result, StorageReference,
};

#[cfg(feature = "bitbucket")]
pub use bitbucket::{Bitbucket, BitbucketBuilder, BitbucketConfig};
#[cfg(feature = "codecommit")]
pub use codecommit::{CodeCommit, CodeCommitBuilder, CodeCommitConfig};
#[cfg(feature = "github")]
pub use github::{GitHub, GitHubBuilder, GitHubConfig};
#[cfg(feature = "gitlab")]
pub use gitlab::{GitLab, GitLabBuilder, GitLabConfig};

use http::Http;

/// A file read through an API, with the commit it was read at.
#[derive(Debug, Clone)]
pub(crate) struct ApiFile {
    /// The commit SHA (or the ref as given, where the API does not report the commit).
    pub commit: String,
    /// The file's bytes.
    pub content: Bytes,
}

/// Credentials given to a builder as typed values: held in memory only, used instead of the
/// secrets the configuration names, never recorded, logged or shown.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    /// GitHub, GitLab, Bitbucket Server: the access token.
    pub token: Option<SecretString>,
    /// Bitbucket Cloud: the username (with `password`).
    pub username: Option<SecretString>,
    /// Bitbucket Cloud: the app password.
    pub password: Option<SecretString>,
    /// CodeCommit: the AWS access key id.
    pub access_key_id: Option<SecretString>,
    /// CodeCommit: the AWS secret access key.
    pub secret_access_key: Option<SecretString>,
    /// CodeCommit: the AWS session token.
    pub session_token: Option<SecretString>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: Vec<&str> = [
            (self.token.is_some(), "token"),
            (self.username.is_some(), "username"),
            (self.password.is_some(), "password"),
            (self.access_key_id.is_some(), "access_key_id"),
            (self.secret_access_key.is_some(), "secret_access_key"),
            (self.session_token.is_some(), "session_token"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        write!(f, "{set:?} (values hidden)")
    }
}

/// One provider's configuration and how to fetch a file of the repository it names.
#[async_trait]
pub(crate) trait Provider:
    BackendConfig + std::fmt::Debug + PartialEq + Send + Sync + 'static
{
    /// The configured flow file's path in the repository.
    fn path(&self) -> &str;
    /// The ref as configured (`None`: the repository's default branch).
    fn git_ref(&self) -> Option<&str>;
    /// Checks the configuration can work. Errors with [`CoreError::Config`] naming the field.
    fn validate(&self) -> Result<()>;
    /// Reads the file at `path`. Errors name the repository, ref or file that was not found.
    async fn fetch(
        &self,
        path: &str,
        http: &Http,
        credentials: &Credentials,
        secrets: &dyn SecretSource,
    ) -> Result<ApiFile>;
}

/// A non-empty environment variable (for the builders' `from_env`).
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// True for a full 40-hex commit SHA (a fixed ref, whose content cannot change).
pub(crate) fn is_commit_sha(r: &str) -> bool {
    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What every API builder holds; each provider's builder wraps one.
#[derive(Clone)]
pub(crate) struct ApiBuilder<P: Provider> {
    pub config: P,
    pub index: FlowIndex,
    pub secrets: Arc<dyn SecretSource>,
    pub credentials: Credentials,
}

impl<P: Provider> ApiBuilder<P> {
    pub fn new(config: P) -> Self {
        ApiBuilder {
            config,
            index: FlowIndex::default(),
            secrets: Arc::new(NoSecrets),
            credentials: Credentials::default(),
        }
    }

    pub fn with_configs<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        apply_pairs(&mut self.config, &mut self.index, pairs)
    }

    pub fn debug(&self, f: &mut std::fmt::Formatter<'_>, name: &str) -> std::fmt::Result {
        f.debug_struct(name)
            .field("config", &self.config)
            .field("labels", &self.index.labels)
            .field("credentials", &self.credentials)
            .finish()
    }

    pub fn build(self) -> Result<ApiStorage<P>> {
        self.config.validate()?;
        if self.config.path().trim().is_empty() {
            return Err(CoreError::config(format!(
                "{} storage needs `path`, the flow's file in the repository",
                P::TYPE_NAME
            )));
        }
        Ok(ApiStorage {
            config: self.config,
            index: self.index,
            secrets: self.secrets,
            credentials: self.credentials,
            http: Http::new(),
        })
    }
}

/// The storage engine every API storage wraps.
#[derive(Clone)]
pub(crate) struct ApiStorage<P: Provider> {
    pub config: P,
    index: FlowIndex,
    secrets: Arc<dyn SecretSource>,
    credentials: Credentials,
    http: Http,
}

impl<P: Provider> ApiStorage<P> {
    pub fn debug(&self, f: &mut std::fmt::Formatter<'_>, name: &str) -> std::fmt::Result {
        // The config names secrets, never holds them.
        f.debug_struct(name)
            .field("config", &self.config)
            .field("flows", &self.index.flows)
            .field("credentials", &self.credentials)
            .finish()
    }

    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<Self> {
        let mut b = ApiBuilder::new(P::from_reference(reference)?);
        b.secrets = ctx.secrets.clone();
        b.index = FlowIndex::from_reference(reference);
        b.build()
    }

    pub fn add_flow_at(&mut self, name: &str, path: &str) -> Result<String> {
        let p = std::path::Path::new(path);
        if path.trim().is_empty()
            || path.starts_with('/')
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(CoreError::config(format!(
                "Flow file path {path:?} must be a relative path inside the repository (no `..`)"
            )));
        }
        self.index.insert(name, path.to_string(), None)?;
        Ok(path.to_string())
    }

    async fn fetch(&self, path: &str) -> Result<ApiFile> {
        let file = self
            .config
            .fetch(path, &self.http, &self.credentials, self.secrets.as_ref())
            .await?;
        tracing::info!(backend = P::TYPE_NAME, path, commit = %file.commit, "fetched flow file");
        Ok(file)
    }

    pub fn index(&self) -> &FlowIndex {
        &self.index
    }

    pub fn index_mut(&mut self) -> &mut FlowIndex {
        &mut self.index
    }

    pub fn capabilities(&self) -> Capabilities {
        Capabilities::READ_ONLY_SCRIPTS
    }

    pub async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        if let FlowInput::Bundle(b) = &flow {
            return Err(flowstore_core::bundle::unsupported(P::TYPE_NAME, &b.name));
        }
        if let FlowInput::Serialized(s) = &flow {
            return Err(CoreError::config(format!(
                "{} storage is read-only: it loads script flows committed in the repository, so \
                 it cannot store the serialized flow \"{}\". Register it as a script (the \
                 flow's path in the repository), or store serialized flows in a writable storage",
                P::TYPE_NAME,
                s.name
            )));
        }
        let path = self.config.path().to_string();
        self.add_flow_at(flow.name(), &path)
    }

    /// Reads each flow's file once and records its digest.
    pub async fn persist(&mut self) -> Result<()> {
        let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, path) in &self.index.flows {
            if !self.index.digests.contains_key(name) {
                by_path.entry(path.clone()).or_default().push(name.clone());
            }
        }
        for (path, names) in by_path {
            let file = self.fetch(&path).await?;
            let digest = flowstore_core::envelope::sha256_digest(&file.content);
            for name in names {
                self.index.digests.insert(name, digest.clone());
            }
        }
        Ok(())
    }

    /// Reads the flow's file; with a fixed commit SHA its digest must match the registration's.
    pub async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        let file = self.fetch(&location).await?;
        if self.config.git_ref().is_some_and(is_commit_sha) {
            return self
                .index
                .open_script(name, &location, Some(file.commit), file.content, None);
        }
        Ok(FetchedFlow {
            name: name.to_string(),
            location,
            revision: Some(file.commit),
            content: FlowContent::Script {
                source: file.content,
                path: None,
            },
        })
    }

    pub fn reference(&self, labels: Vec<String>) -> Result<StorageReference> {
        let mut reference = StorageReference::new(P::TYPE_NAME, &self.config)?;
        self.index.fill_reference(&mut reference, labels);
        Ok(reference)
    }
}

/// Defines a provider's public storage type (a newtype over [`ApiStorage`]) and its builder
/// (over [`ApiBuilder`]) with the methods every API storage shares; the provider's module adds
/// its constructors and setters.
macro_rules! api_storage {
    (
        $(#[$storage_doc:meta])*
        storage $name:ident;
        $(#[$builder_doc:meta])*
        builder $builder:ident;
        config $config:ty;
    ) => {
        $(#[$storage_doc])*
        #[derive(Clone)]
        pub struct $name(crate::api::ApiStorage<$config>);

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.debug(f, stringify!($name))
            }
        }

        impl $name {
            /// The configuration (what the reference records).
            pub fn config(&self) -> &$config {
                &self.0.config
            }

            #[doc = concat!("Opens a `", stringify!($name), "` reference (Prefect 1's included) with the context's secrets.")]
            ///
            /// Errors with [`flowstore_core::Error::InvalidReference`] for fields that do not fit
            /// and [`flowstore_core::Error::Config`] for a configuration that cannot work.
            pub fn from_reference(
                reference: &flowstore_core::StorageReference,
                ctx: &flowstore_core::OpenContext,
            ) -> flowstore_core::Result<Self> {
                Ok($name(crate::api::ApiStorage::from_reference(reference, ctx)?))
            }

            #[doc = concat!("Opens a storage URL ([`", stringify!($builder), "::from_url`]) with the context: its script path is the flow file (`path`), its options are applied after the URL's own, its secrets are used.")]
            ///
            /// Errors as the builder's `from_url` and `build` do.
            pub fn from_url(
                url: &str,
                ctx: &flowstore_core::OpenContext,
            ) -> flowstore_core::Result<Self> {
                let mut b = $builder::from_url(url)?;
                if let Some(path) = &ctx.script_path {
                    b = b.with_config("path", path)?;
                }
                b = b.with_configs(ctx.options.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
                b.0.secrets = ctx.secrets.clone();
                b.build()
            }

            /// Adds script flow `name` defined in the file at `path` (relative to the repository
            /// root) instead of the configured `path`, so one storage can hold flows of several
            /// files of the same repository and ref. Returns the location (`path`).
            ///
            /// Errors as `add_flow` does ([`flowstore_core::Error::NameConflict`], an invalid
            /// name), and with [`flowstore_core::Error::Config`] for an empty or absolute path or
            /// one with `..` in it.
            pub fn add_flow_at(&mut self, name: &str, path: &str) -> flowstore_core::Result<String> {
                self.0.add_flow_at(name, path)
            }
        }

        #[flowstore_core::async_trait]
        impl flowstore_core::Storage for $name {
            fn type_name(&self) -> &'static str {
                <$config as flowstore_core::raw::config::BackendConfig>::TYPE_NAME
            }

            /// Read-only: script flows only, several per storage (each names its file).
            fn capabilities(&self) -> flowstore_core::Capabilities {
                self.0.capabilities()
            }

            fn index(&self) -> &flowstore_core::raw::FlowIndex {
                self.0.index()
            }

            fn index_mut(&mut self) -> &mut flowstore_core::raw::FlowIndex {
                self.0.index_mut()
            }

            /// Records a script flow (the file is already in the repository); location: its path.
            ///
            /// Errors with [`flowstore_core::Error::Config`] for a serialized flow (read-only
            /// storage), [`flowstore_core::Error::Unsupported`] for a bundle flow (this storage
            /// does not hold bundles; `Git` serves a repository's directory as one) and
            /// [`flowstore_core::Error::NameConflict`] for a name already held.
            async fn add_flow(
                &mut self,
                flow: flowstore_core::FlowInput,
            ) -> flowstore_core::Result<String> {
                self.0.add_flow(flow).await
            }

            /// Reads each flow's file once and records its digest.
            async fn persist(&mut self) -> flowstore_core::Result<()> {
                self.0.persist().await
            }

            /// Reads the flow's file (resolving the ref to a commit); with a fixed commit SHA as
            /// the ref, its digest must match the registration's
            /// ([`flowstore_core::Error::FlowCorrupt`] otherwise).
            async fn get_flow(&self, name: &str) -> flowstore_core::Result<flowstore_core::FetchedFlow> {
                self.0.get_flow(name).await
            }

            fn reference(&self) -> flowstore_core::Result<flowstore_core::StorageReference> {
                self.0.reference(flowstore_core::Storage::labels(self))
            }
        }

        $(#[$builder_doc])*
        #[derive(Clone)]
        pub struct $builder(crate::api::ApiBuilder<$config>);

        impl std::fmt::Debug for $builder {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.debug(f, stringify!($builder))
            }
        }

        impl $builder {
            /// A builder holding `config` as it is (e.g. read from a reference).
            pub fn from_config(config: $config) -> Self {
                $builder(crate::api::ApiBuilder::new(config))
            }

            /// Where secrets (tokens) are looked up, then the environment.
            pub fn secrets(mut self, secrets: std::sync::Arc<dyn flowstore_core::SecretSource>) -> Self {
                self.0.secrets = secrets;
                self
            }

            flowstore_core::builder_common_methods!(0.index);

            #[doc = concat!("Sets one option by its [`", stringify!($config), "`] key (or an alias in its `OPTIONS`), or one every storage takes (`label`, `add_default_labels`, `secret`).")]
            ///
            /// Errors with [`flowstore_core::Error::Config`] for an unknown key (listing the
            /// known ones) or a value the field cannot hold.
            pub fn with_config(mut self, key: &str, value: &str) -> flowstore_core::Result<Self> {
                self.0.with_configs([(key, value)])?;
                Ok(self)
            }

            /// Sets every pair in order (see `with_config`).
            ///
            /// Errors as `with_config` does, at the first bad pair.
            pub fn with_configs<K: AsRef<str>, V: AsRef<str>>(
                mut self,
                pairs: impl IntoIterator<Item = (K, V)>,
            ) -> flowstore_core::Result<Self> {
                self.0.with_configs(pairs)?;
                Ok(self)
            }

            /// The configuration as it stands (what the reference will record).
            pub fn config(&self) -> &$config {
                &self.0.config
            }

            #[doc = concat!("Makes the [`", stringify!($name), "`] storage (no network I/O: files are read at `persist` and `get_flow`).")]
            ///
            /// Errors with [`flowstore_core::Error::Config`] for a configuration that cannot work
            /// (a missing `path`, repository or host; naming the field).
            pub fn build(self) -> flowstore_core::Result<$name> {
                Ok($name(self.0.build()?))
            }
        }
    };
}
pub(crate) use api_storage;

/// Registers the API storage types and URL schemes compiled in: `GitHub` (`github://`),
/// `GitLab` (`gitlab://`, `gitlab+http://`), `Bitbucket` (`bitbucket://`, `bitbucket+http://`)
/// and `CodeCommit` (`codecommit://`).
pub fn register(registry: &mut flowstore_core::Registry) {
    use flowstore_core::Storage;
    macro_rules! reg {
        ($ty:ty, $config:ty, [$($scheme:literal),*]) => {
            registry.register_type(
                <$config as BackendConfig>::TYPE_NAME,
                |r, ctx| Ok(Box::new(<$ty>::from_reference(r, ctx)?) as Box<dyn Storage>),
            );
            $(
                registry.register_scheme($scheme, |u, ctx| {
                    Ok(Box::new(<$ty>::from_url(u, ctx)?) as Box<dyn Storage>)
                });
            )*
        };
    }
    #[cfg(feature = "github")]
    reg!(GitHub, GitHubConfig, ["github"]);
    #[cfg(feature = "gitlab")]
    reg!(GitLab, GitLabConfig, ["gitlab", "gitlab+http"]);
    #[cfg(feature = "bitbucket")]
    reg!(Bitbucket, BitbucketConfig, ["bitbucket", "bitbucket+http"]);
    #[cfg(feature = "codecommit")]
    reg!(CodeCommit, CodeCommitConfig, ["codecommit"]);
    let _ = registry;
}
