//! Storages that fetch one flow file through a git host's REST API (no clone): GitHub, GitLab,
//! Bitbucket (Server and Cloud) and AWS CodeCommit. Script flows only, as in the reference
//! system. The file's digest is recorded at registration and checked at fetch when the ref is a
//! fixed commit SHA; every fetch reports the commit it read.

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

use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource};
use flowstore_core::{
    async_trait, FetchedFlow, FlowContent, FlowInput, OpenContext, Result, Storage,
    StorageReference,
};
use serde::{de::DeserializeOwned, Serialize};

pub use http::Http;

/// A file read through an API, with the commit it was read at.
#[derive(Debug, Clone)]
pub struct ApiFile {
    /// The commit SHA (or the ref as given, where the API does not report the commit).
    pub commit: String,
    /// The file's bytes.
    pub content: Bytes,
}

/// One provider's fields and how to fetch the file they name.
#[async_trait]
pub trait Provider:
    Send + Sync + Clone + std::fmt::Debug + Serialize + DeserializeOwned + 'static
{
    /// The reference type name.
    const TYPE_NAME: &'static str;
    /// The flow file's path in the repository.
    fn path(&self) -> &str;
    /// The ref as configured (`None`: the repository's default branch).
    fn git_ref(&self) -> Option<&str>;
    /// Reads the file. Errors name the repository, ref or file that was not found.
    async fn fetch(&self, http: &Http, secrets: &dyn SecretSource) -> Result<ApiFile>;
}

/// True for a full 40-hex commit SHA (a fixed ref, whose content cannot change).
pub fn is_commit_sha(r: &str) -> bool {
    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A storage over a provider's API.
#[derive(Clone)]
pub struct ApiStorage<P: Provider> {
    fields: P,
    index: FlowIndex,
    secrets: Arc<dyn SecretSource>,
    http: Http,
}

impl<P: Provider> std::fmt::Debug for ApiStorage<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Fields name secrets, never hold them.
        f.debug_struct(P::TYPE_NAME)
            .field("fields", &self.fields)
            .field("flows", &self.index.flows)
            .finish()
    }
}

impl<P: Provider> ApiStorage<P> {
    /// A storage for the file the fields name.
    pub fn new(fields: P) -> Self {
        ApiStorage {
            fields,
            index: FlowIndex::default(),
            secrets: Arc::new(NoSecrets),
            http: Http::new(),
        }
    }

    /// Where secrets (tokens) are looked up, then the environment.
    pub fn secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// The fields.
    pub fn fields(&self) -> &P {
        &self.fields
    }

    /// Opens a reference of this provider's type.
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<Self> {
        let fields: P = reference.backend_fields()?;
        let mut s = Self::new(fields).secrets(ctx.secrets.clone());
        s.index = FlowIndex::from_reference(reference);
        Ok(s)
    }

    async fn fetch(&self) -> Result<ApiFile> {
        let file = self.fields.fetch(&self.http, self.secrets.as_ref()).await?;
        tracing::info!(backend = P::TYPE_NAME, path = self.fields.path(), commit = %file.commit, "fetched flow file");
        Ok(file)
    }
}

#[async_trait]
impl<P: Provider> Storage for ApiStorage<P> {
    fn type_name(&self) -> &'static str {
        P::TYPE_NAME
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

    /// Records the flow; the file is already in the repository. Location: its path.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        let path = self.fields.path().to_string();
        self.index.insert(flow.name(), path.clone(), None)?;
        Ok(path)
    }

    /// Reads the file once and records its digest for every flow.
    async fn persist(&mut self) -> Result<()> {
        if self.index.flows.is_empty() {
            return Ok(());
        }
        let file = self.fetch().await?;
        let digest = flowstore_core::envelope::sha256_digest(&file.content);
        for name in self.index.flows.keys().cloned().collect::<Vec<_>>() {
            self.index.digests.insert(name, digest.clone());
        }
        Ok(())
    }

    /// Reads the file; with a fixed commit SHA its digest must match the registration's.
    async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        let file = self.fetch().await?;
        if self.fields.git_ref().is_some_and(is_commit_sha) {
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

    fn reference(&self) -> Result<StorageReference> {
        let mut reference = StorageReference::new(P::TYPE_NAME, &self.fields)?;
        self.index.fill_reference(&mut reference, self.labels());
        Ok(reference)
    }
}

/// Registers the API storage types compiled in.
pub fn register(registry: &mut flowstore_core::Registry) {
    #[allow(dead_code)]
    fn open<P: Provider>(r: &StorageReference, ctx: &OpenContext) -> Result<Box<dyn Storage>> {
        Ok(Box::new(ApiStorage::<P>::from_reference(r, ctx)?))
    }
    #[cfg(feature = "github")]
    registry.register_type(
        github::GitHubFields::TYPE_NAME,
        open::<github::GitHubFields>,
    );
    #[cfg(feature = "gitlab")]
    registry.register_type(
        gitlab::GitLabFields::TYPE_NAME,
        open::<gitlab::GitLabFields>,
    );
    #[cfg(feature = "bitbucket")]
    registry.register_type(
        bitbucket::BitbucketFields::TYPE_NAME,
        open::<bitbucket::BitbucketFields>,
    );
    #[cfg(feature = "codecommit")]
    registry.register_type(
        codecommit::CodeCommitFields::TYPE_NAME,
        open::<codecommit::CodeCommitFields>,
    );
    let _ = registry;
}
