//! [`CloudStorage`]: the `Storage` the S3, Azure and GCS builders produce.

use std::path::Path;

use flowstore_core::raw::FlowIndex;
use flowstore_core::{
    async_trait, FetchedFlow, FlowInput, Result, Storage, StorageReference, StoredVersion,
};
use serde::Serialize;

use crate::engine::Engine;

/// The reference fields of whichever cloud this storage is on.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Fields {
    #[cfg(feature = "s3")]
    S3(crate::s3::S3Fields),
    #[cfg(feature = "azure")]
    Azure(crate::azure::AzureFields),
    #[cfg(feature = "gcs")]
    Gcs(crate::gcs::GcsFields),
}

/// Flows in an object store (S3, Azure Blob or GCS). Made by [`S3`](crate::S3),
/// [`Azure`](crate::Azure) or [`Gcs`](crate::Gcs), or opened from a reference.
#[derive(Debug, Clone)]
pub struct CloudStorage {
    pub(crate) engine: Engine,
    pub(crate) fields: Fields,
    pub(crate) script_key_error: &'static str,
}

impl CloudStorage {
    /// Writes `bytes` at `key` behind flowstore's back, replacing what is there: for tests that
    /// prove altered flows are refused. Not for production use.
    #[doc(hidden)]
    pub async fn replace_object_for_tests(&self, key: &str, bytes: bytes::Bytes) -> Result<()> {
        self.engine.blobs.replace(key, bytes).await
    }
}

#[async_trait]
impl Storage for CloudStorage {
    fn type_name(&self) -> &'static str {
        self.engine.backend
    }

    fn index(&self) -> &FlowIndex {
        &self.engine.index
    }

    fn index_mut(&mut self) -> &mut FlowIndex {
        &mut self.engine.index
    }

    fn capabilities(&self) -> flowstore_core::Capabilities {
        let script = self.engine.stored_as_script;
        flowstore_core::Capabilities {
            write: true,
            many_flows: self.engine.fixed_key.is_none(),
            serialized: !script,
            script,
            list_versions: true,
            stream_to_file: true,
        }
    }

    /// Stages the flow (uploaded at `build`) and returns its key.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        self.engine.add_flow(flow, self.script_key_error)
    }

    /// Uploads every staged flow, create-only (an existing object is an error, except with Azure's
    /// `overwrite`), and records digests.
    async fn persist(&mut self) -> Result<()> {
        self.engine.persist().await
    }

    async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        self.engine.get_flow(name).await
    }

    fn reference(&self) -> Result<StorageReference> {
        let mut reference = StorageReference::new(self.engine.backend, &self.fields)?;
        self.engine
            .index
            .fill_reference(&mut reference, self.labels());
        Ok(reference)
    }

    async fn list_versions(&self, flow: Option<&str>) -> Result<Vec<StoredVersion>> {
        self.engine.list_versions(flow).await
    }

    async fn get_flow_to_file(&self, name: &str, dest: &Path) -> Result<FetchedFlow> {
        self.engine.get_flow_to_file(name, dest).await
    }
}

/// Splits `scheme://bucket/prefix` into bucket and optional prefix.
pub(crate) fn split_url<'a>(url: &'a str, schemes: &[&str]) -> Option<(&'a str, Option<&'a str>)> {
    let rest = schemes
        .iter()
        .find_map(|s| url.strip_prefix(&format!("{s}://")))?;
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, Some(p.trim_matches('/')).filter(|p| !p.is_empty())),
        None => (rest, None),
    };
    (!bucket.is_empty()).then_some((bucket, prefix))
}
