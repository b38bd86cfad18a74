//! What the three clouds share on top of the engine: the storage types (one macro makes `S3`,
//! `Azure` and `Gcs`), the builder methods every cloud has, and URL and environment helpers.

use flowstore_core::raw::config::{apply_pairs, parse_url, url_path, BackendConfig};
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::SecretString;
use flowstore_core::{Error as CoreError, Result};
use serde::{Deserialize, Deserializer};

use crate::error::Error;

/// Makes a storage type: the shared engine plus the cloud's configuration, implementing
/// `Storage`.
macro_rules! cloud_storage {
    ($(#[$meta:meta])* $name:ident, $config:ty) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pub(crate) engine: crate::engine::Engine,
            pub(crate) config: $config,
        }

        impl $name {
            /// The configuration: exactly the backend fields its reference records.
            pub fn config(&self) -> &$config {
                &self.config
            }

            /// Writes `bytes` at `key` behind flowstore's back, replacing what is there: for tests
            /// that prove altered flows are refused. Not for production use.
            #[doc(hidden)]
            pub async fn replace_object_for_tests(
                &self,
                key: &str,
                bytes: bytes::Bytes,
            ) -> flowstore_core::Result<()> {
                self.engine.blobs.replace(key, bytes).await
            }
        }

        #[flowstore_core::async_trait]
        impl flowstore_core::Storage for $name {
            fn type_name(&self) -> &'static str {
                TYPE_NAME
            }

            fn index(&self) -> &flowstore_core::raw::FlowIndex {
                &self.engine.index
            }

            fn index_mut(&mut self) -> &mut flowstore_core::raw::FlowIndex {
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
                    bundles: self.engine.bundles(),
                    delete_versions: true,
                }
            }

            /// Stages the flow (uploaded at `persist`) and returns its key. A bundle's tree is
            /// scanned now and staged as its manifest at a fresh default key (serialized mode
            /// without a fixed key only; else [`flowstore_core::bundle::unsupported`]).
            async fn add_flow(
                &mut self,
                flow: flowstore_core::FlowInput,
            ) -> flowstore_core::Result<String> {
                self.engine.add_flow(flow).await
            }

            /// Uploads every staged flow, create-only (an existing object is an error, except
            /// with Azure's `overwrite`), and records digests. A bundle's missing blobs go
            /// first (create-only; one listing finds them), then its manifest; what moved is
            /// the flow's [`transfer_report`](flowstore_core::Storage::transfer_report).
            async fn persist(&mut self) -> flowstore_core::Result<()> {
                self.engine.persist().await
            }

            async fn get_flow(&self, name: &str) -> flowstore_core::Result<flowstore_core::FetchedFlow> {
                self.engine.get_flow(name).await
            }

            fn reference(&self) -> flowstore_core::Result<flowstore_core::StorageReference> {
                let mut reference = flowstore_core::StorageReference::new(TYPE_NAME, &self.config)?;
                self.engine
                    .index
                    .fill_reference(&mut reference, flowstore_core::Storage::labels(self));
                Ok(reference)
            }

            async fn list_versions(
                &self,
                flow: Option<&str>,
            ) -> flowstore_core::Result<Vec<flowstore_core::StoredVersion>> {
                self.engine.list_versions(flow).await
            }

            /// Deletes the version's object (one already gone is success). Refuses, deleting
            /// nothing, any location that is not `<prefix>/<flow slug>/<timestamp slug>` of this
            /// storage (bundle blobs, other programs' objects, other prefixes).
            async fn delete_version(
                &self,
                version: &flowstore_core::StoredVersion,
            ) -> flowstore_core::Result<()> {
                self.engine.delete_version(version).await
            }

            /// Downloads the version's object (same checks as `delete_version`), unverified.
            async fn read_version(
                &self,
                version: &flowstore_core::StoredVersion,
            ) -> flowstore_core::Result<bytes::Bytes> {
                self.engine.read_version(version).await
            }

            async fn get_flow_to_file(
                &self,
                name: &str,
                dest: &std::path::Path,
            ) -> flowstore_core::Result<flowstore_core::FetchedFlow> {
                self.engine.get_flow_to_file(name, dest).await
            }

            /// Bundle blobs at `<prefix>/.blobs/sha256/<hex>` in the bucket (container);
            /// [`area`](flowstore_core::bundle::BlobStore::area) gives the swept ones at
            /// `<prefix>/.blobs/trash/sha256/<hex>`.
            fn blob_store(
                &self,
            ) -> Option<Box<dyn flowstore_core::bundle::BlobStore + '_>> {
                self.engine.bundles().then(|| {
                    Box::new(self.engine.blob_area(flowstore_core::bundle::BlobArea::Live))
                        as Box<dyn flowstore_core::bundle::BlobStore>
                })
            }
        }
    };
}
pub(crate) use cloud_storage;

/// The builder methods every cloud has. The builder has fields `config` (with `prefix`,
/// `stored_as_script` and `local_script_path`), `index`, `retry` and `secrets`, and a
/// `CREDENTIAL_KEYS` list of the option keys that would be credentials.
macro_rules! builder_common {
    ($builder:ident, $config:ty) => {
        impl $builder {
            /// The builder the registry makes for a URL: `from_env()`, then the URL, then
            /// `ctx`'s secret sources, script path and options (in that order, so the URL and
            /// the options win over the environment).
            pub(crate) fn for_registry_url(
                url: &str,
                ctx: &flowstore_core::OpenContext,
            ) -> flowstore_core::Result<Self> {
                let mut b = Self::from_env().with_url(url)?.secrets(ctx.secrets.clone());
                if let Some(script) = &ctx.script_path {
                    b = b.script(script);
                }
                b.with_configs(ctx.options.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            }

            /// The configuration so far (what the reference will record).
            pub fn config(&self) -> &$config {
                &self.config
            }

            /// Sets one option by its key, as a URL query pair would (see the config type's
            /// `OPTIONS`), or one of `label`, `add_default_labels`, `secret`.
            ///
            /// Errors with [`flowstore_core::Error::Config`] for an unknown key (naming it and
            /// the known ones), a value the field cannot hold, or a credential key (credentials
            /// are typed builder methods, never options: options are recorded).
            pub fn with_config(
                self,
                key: impl AsRef<str>,
                value: impl AsRef<str>,
            ) -> flowstore_core::Result<Self> {
                self.with_configs([(key, value)])
            }

            /// Sets every pair in order (see [`Self::with_config`]).
            ///
            /// Errors as [`Self::with_config`] does, on the first pair that is refused.
            pub fn with_configs<K: AsRef<str>, V: AsRef<str>>(
                mut self,
                pairs: impl IntoIterator<Item = (K, V)>,
            ) -> flowstore_core::Result<Self> {
                crate::storage::apply_options(
                    &mut self.config,
                    &mut self.index,
                    pairs,
                    CREDENTIAL_KEYS,
                    CREDENTIAL_HINT,
                )?;
                Ok(self)
            }

            flowstore_core::builder_common_methods!(index);

            /// A prefix for default keys (`<prefix>/<slug>/<timestamp>`).
            pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
                self.config.prefix = Some(prefix.into());
                self
            }

            /// Script mode: upload this local script at `persist` (streamed with multipart when
            /// large).
            pub fn script(mut self, local_script_path: impl Into<std::path::PathBuf>) -> Self {
                self.config.stored_as_script = true;
                self.config.local_script_path =
                    Some(local_script_path.into().display().to_string());
                self
            }

            /// Script mode without a local script: the fixed key names a script already
            /// uploaded.
            pub fn stored_as_script(mut self, on: bool) -> Self {
                self.config.stored_as_script = on;
                self
            }

            /// Retry bounds for every request.
            pub fn retry(mut self, retry: crate::RetryPolicy) -> Self {
                self.retry = retry;
                self
            }

            /// Where secrets named by the configuration (and the Prefect 1 credential secrets)
            /// are looked up, before the environment.
            pub fn secrets(
                mut self,
                secrets: std::sync::Arc<dyn flowstore_core::SecretSource>,
            ) -> Self {
                self.secrets = secrets;
                self
            }
        }
    };
}
pub(crate) use builder_common;

/// Applies option pairs (common ones to the index, the rest to the configuration), refusing
/// credential keys with `hint`.
pub(crate) fn apply_options<C: BackendConfig, K: AsRef<str>, V: AsRef<str>>(
    config: &mut C,
    index: &mut FlowIndex,
    pairs: impl IntoIterator<Item = (K, V)>,
    credential_keys: &[&str],
    hint: &str,
) -> Result<()> {
    let pairs: Vec<(K, V)> = pairs.into_iter().collect();
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| credential_keys.contains(&k.as_ref()))
    {
        return Err(CoreError::config(format!(
            "{} option \"{}\" is a credential: credentials are not taken from URLs or options, \
             which the storage reference records; {hint}",
            C::TYPE_NAME,
            k.as_ref()
        )));
    }
    let mut new_config = config.clone();
    let mut new_index = index.clone();
    apply_pairs(&mut new_config, &mut new_index, pairs)?;
    *config = new_config;
    *index = new_index;
    Ok(())
}

/// A storage URL, parsed.
#[derive(Debug)]
pub(crate) struct StorageUrl {
    /// The host: the bucket or container.
    pub bucket: String,
    /// The path without its slashes, percent-decoded.
    pub prefix: Option<String>,
    /// The query pairs, in order.
    pub pairs: Vec<(String, String)>,
}

/// Parses `scheme://bucket/prefix?options` once: the bucket, the prefix and the query pairs.
///
/// Errors with [`CoreError::Config`] for an unparsable URL, another scheme, no bucket, or
/// credentials in the URL.
pub(crate) fn parse_storage_url(url: &str, schemes: &[&str], example: &str) -> Result<StorageUrl> {
    let parsed = parse_url(url, schemes, example)?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CoreError::config(format!(
            "Storage URL {}://{} carries credentials; they would be recorded in the reference. \
             Give them as builder options, secrets or the provider's environment variables.",
            parsed.scheme(),
            parsed.host_str().unwrap_or("")
        )));
    }
    let bucket = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            CoreError::config(format!(
                "Storage URL \"{url}\" names no bucket; it should look like {example}"
            ))
        })?
        .to_string();
    let pairs = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(StorageUrl {
        bucket,
        prefix: url_path(&parsed),
        pairs,
    })
}

/// The first of `names` set (and not empty) in the environment.
pub(crate) fn env_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

/// A [`Error::Client`] for a client that could not be built: the message is redacted of
/// `secrets`, and the client's error is kept as the source only when it shows none of them.
pub(crate) fn client_error(
    backend: &'static str,
    context: &str,
    e: impl std::error::Error + Send + Sync + 'static,
    secrets: &[&SecretString],
) -> Error {
    let text = e.to_string();
    let redacted = flowstore_secrets::redact(&text, secrets);
    let debug = format!("{e:?}");
    let clean = redacted == text && flowstore_secrets::redact(&debug, secrets) == debug;
    Error::Client {
        backend,
        message: format!("{context}: {redacted}"),
        source: clean.then(|| Box::new(e) as flowstore_core::error::BoxError),
    }
}

/// Reads `null` as the field's default (Prefect 1 writes `null` for unset options).
pub(crate) fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_are_parsed_once() {
        let StorageUrl {
            bucket,
            prefix,
            pairs,
        } = parse_storage_url(
            "s3://my-bucket/team%20a/flows/?region=eu-west-1&label=prod",
            &["s3"],
            "s3://bucket/prefix",
        )
        .unwrap();
        assert_eq!(bucket, "my-bucket");
        assert_eq!(prefix.as_deref(), Some("team a/flows"));
        assert_eq!(
            pairs,
            [
                ("region".to_string(), "eu-west-1".to_string()),
                ("label".to_string(), "prod".to_string())
            ]
        );
        let u = parse_storage_url("s3://b", &["s3"], "x").unwrap();
        assert!(u.prefix.is_none() && u.pairs.is_empty());
        for bad in [
            "s3:///prefix",
            "gs://b",
            "s3://AKIA:secret@b/p",
            "not a url",
        ] {
            let e = parse_storage_url(bad, &["s3"], "s3://bucket/prefix").unwrap_err();
            assert!(!e.to_string().contains("secret@"), "{e}");
        }
    }
}
