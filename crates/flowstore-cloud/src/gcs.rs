//! Google Cloud Storage: [`Gcs`], made by [`GcsBuilder`], configured by [`GcsConfig`].

use std::path::PathBuf;
use std::sync::Arc;

use flowstore_core::raw::clients::{self, Fingerprint};
use flowstore_core::raw::config::BackendConfig;
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{ExposeSecret, NoSecrets, SecretSource, SecretString};
use flowstore_core::{OpenContext, Result, StorageReference};
use object_store::gcp::GoogleCloudStorageBuilder;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::Error;
use crate::gcs_json::GcsJsonBlobs;
use crate::retry::RetryPolicy;
use crate::storage::{
    builder_common, client_error, cloud_storage, env_var, null_as_default, parse_storage_url,
};

/// The reference type name.
pub const TYPE_NAME: &str = "GCS";

/// A GCS emulator's address (e.g. `http://127.0.0.1:4443`), as Google's client libraries read
/// it; [`GcsBuilder::from_env`] records it as `emulator_host`.
pub const EMULATOR_ENV: &str = "STORAGE_EMULATOR_HOST";

const SCRIPT_KEY_ERROR: &str = "A `key` must be provided to show where flow `.py` file is stored in GCS or provide a `local_script_path` pointing to a local script that contains the flow.";

const EXAMPLE: &str = "gs://bucket/prefix";

/// Option keys refused by `with_config` (credentials are typed builder methods).
const CREDENTIAL_KEYS: &[&str] = &[
    "service_account_key",
    "google_service_account_key",
    "bearer_token",
];

const CREDENTIAL_HINT: &str = "use GcsBuilder::service_account_key, the GCP_CREDENTIALS secret, or GOOGLE_APPLICATION_CREDENTIALS";

/// The backend fields of a `GCS` reference (Prefect 1's names; `prefix` and `emulator_host` are
/// flowstore's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcsConfig {
    /// The bucket.
    pub bucket: String,
    /// A fixed key (else `<prefix>/<slug>/<timestamp slug>`).
    #[serde(default)]
    pub key: Option<String>,
    /// The Google Cloud project (informational: buckets are global).
    #[serde(default)]
    pub project: Option<String>,
    /// Script mode.
    #[serde(default, deserialize_with = "null_as_default")]
    pub stored_as_script: bool,
    /// The local script uploaded at `persist` in script mode.
    #[serde(default)]
    pub local_script_path: Option<String>,
    /// Key prefix for default keys (from `gs://bucket/prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A GCS emulator (`http://127.0.0.1:4443`, or `host:port`): requests go there, without
    /// OAuth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator_host: Option<String>,
}

impl BackendConfig for GcsConfig {
    const TYPE_NAME: &'static str = TYPE_NAME;
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("bucket", "bucket"),
        ("key", "key"),
        ("project", "project"),
        ("prefix", "prefix"),
        ("stored_as_script", "stored_as_script"),
        ("local_script_path", "local_script_path"),
        ("emulator_host", "emulator_host"),
    ];
}

cloud_storage!(
    /// Flows in a Google Cloud Storage bucket. Made by [`GcsBuilder`] ([`Gcs::builder`]), or
    /// opened from a reference or a `gs://` URL.
    ///
    /// Talks to the GCS JSON API (create-only media uploads with `ifGenerationMatch=0`,
    /// large ones streamed from disk in the same form, `alt=media` downloads) with bearer tokens from
    /// `object_store`'s GCP credential chain.
    Gcs,
    GcsConfig
);

/// Builds a [`Gcs`] storage.
///
/// Filled by typed setters, [`with_config`](GcsBuilder::with_config) pairs,
/// [`from_url`](GcsBuilder::from_url) or [`from_env`](GcsBuilder::from_env), which end in the
/// same configuration. [`build`](GcsBuilder::build) reads no environment variable for anything
/// the reference records (the emulator comes from `emulator_host` only).
///
/// Credentials, in order: the typed [`service_account_key`](GcsBuilder::service_account_key)
/// (a service-account JSON document); the `GCP_CREDENTIALS` secret (Prefect 1's, from the secret
/// sources then the environment); `GOOGLE_APPLICATION_CREDENTIALS` /
/// `GOOGLE_SERVICE_ACCOUNT*`; then ambient credentials (metadata server). An emulator needs
/// none. Credentials never enter the reference, a log, an error or `Debug`.
///
/// ```
/// use flowstore_cloud::{Gcs, GcsBuilder};
/// let storage = Gcs::builder("my-bucket").emulator("http://127.0.0.1:4443").build()?;
/// let same = GcsBuilder::from_url("gs://my-bucket?emulator_host=http://127.0.0.1:4443")?.build()?;
/// assert_eq!(storage.config(), same.config());
/// # Ok::<(), flowstore_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GcsBuilder {
    config: GcsConfig,
    index: FlowIndex,
    service_account_key: Option<SecretString>,
    retry: RetryPolicy,
    secrets: Arc<dyn SecretSource>,
}

builder_common!(GcsBuilder, GcsConfig);

impl Gcs {
    /// A builder for storage in `bucket` (same as [`GcsBuilder::new`]).
    pub fn builder(bucket: impl Into<String>) -> GcsBuilder {
        GcsBuilder::new(bucket)
    }

    /// Opens a `GCS` reference (Prefect 1's included), with credentials from `ctx`'s secret
    /// sources, then the environment.
    ///
    /// Errors with [`flowstore_core::Error::InvalidReference`] for fields that do not fit and
    /// [`flowstore_core::Error::Config`] as [`GcsBuilder::build`] does.
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<Gcs> {
        GcsBuilder {
            config: GcsConfig::from_reference(reference)?,
            index: FlowIndex::from_reference(reference),
            ..GcsBuilder::new("")
        }
        .secrets(ctx.secrets.clone())
        .build()
    }

    /// Opens `gs://bucket/prefix?options` as the registry does: [`GcsBuilder::from_env`], then
    /// the URL, then `ctx`'s script path and options.
    ///
    /// Errors as [`GcsBuilder::with_url`] and [`GcsBuilder::build`] do.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<Gcs> {
        GcsBuilder::for_registry_url(url, ctx)?.build()
    }
}

impl GcsBuilder {
    /// GCS storage in `bucket`; nothing is read from the environment.
    pub fn new(bucket: impl Into<String>) -> Self {
        GcsBuilder {
            config: GcsConfig {
                bucket: bucket.into(),
                ..Default::default()
            },
            index: FlowIndex::default(),
            service_account_key: None,
            retry: RetryPolicy::default(),
            secrets: Arc::new(NoSecrets),
        }
    }

    /// A builder configured from the standard variables, with no bucket yet (set one with
    /// [`bucket`](GcsBuilder::bucket) or [`with_url`](GcsBuilder::with_url)): the emulator from
    /// `STORAGE_EMULATOR_HOST`, recorded in the reference. Credential variables are read by the
    /// credential chain at build, never recorded.
    pub fn from_env() -> Self {
        let mut b = GcsBuilder::new("");
        if let Some(host) = env_var(&[EMULATOR_ENV]) {
            b = b.emulator(host);
        }
        b
    }

    /// A builder from `gs://bucket/prefix?options` alone: the host is the bucket, the path the
    /// prefix, every query pair goes through [`with_config`](GcsBuilder::with_config) (`key`,
    /// `project`, `emulator_host`, `label`…).
    ///
    /// Errors with [`flowstore_core::Error::Config`] for a URL that does not parse, another
    /// scheme, no bucket, credentials in the URL, or an option that is refused (naming it).
    pub fn from_url(url: &str) -> Result<Self> {
        GcsBuilder::new("").with_url(url)
    }

    /// Applies `gs://bucket/prefix?options` over this builder: the bucket and prefix are
    /// replaced, the options set.
    ///
    /// Errors as [`from_url`](GcsBuilder::from_url) does.
    pub fn with_url(mut self, url: &str) -> Result<Self> {
        let parsed = parse_storage_url(url, &["gs"], EXAMPLE)?;
        self.config.bucket = parsed.bucket;
        self.config.prefix = parsed.prefix;
        self.with_configs(parsed.pairs)
    }

    /// The bucket.
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.config.bucket = bucket.into();
        self
    }

    /// A fixed key instead of `<prefix>/<slug>/<timestamp>` (one flow per storage).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.config.key = Some(key.into());
        self
    }

    /// The project (recorded; informational).
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.config.project = Some(project.into());
        self
    }

    /// Talks to a GCS emulator at `url` without OAuth (`emulator_host`, recorded).
    pub fn emulator(mut self, url: impl Into<String>) -> Self {
        self.config.emulator_host = Some(url.into());
        self
    }

    /// A service-account key (the JSON document); never recorded.
    pub fn service_account_key(mut self, json: impl Into<SecretString>) -> Self {
        self.service_account_key = Some(json.into());
        self
    }

    /// The storage. Does no network I/O.
    ///
    /// Errors with [`flowstore_core::Error::Config`] for no bucket, or credentials that cannot
    /// be used (an unreadable service-account key; the client's error is the `source()` when
    /// it shows no part of the key).
    pub fn build(self) -> Result<Gcs> {
        Ok(self.build_inner()?)
    }

    fn build_inner(self) -> Result<Gcs, Error> {
        if self.config.bucket.trim().is_empty() {
            return Err(Error::client(
                TYPE_NAME,
                format!("no bucket was given; name one (Gcs::builder(\"bucket\"), or a URL like {EXAMPLE})"),
            ));
        }
        let (base, credentials) = match &self.config.emulator_host {
            Some(host) => {
                let base = if host.starts_with("http") {
                    host.clone()
                } else {
                    format!("http://{host}")
                };
                (base.trim_end_matches('/').to_string(), None)
            }
            None => {
                // object_store's GCP credential chain supplies the bearer tokens.
                let mut b =
                    GoogleCloudStorageBuilder::from_env().with_bucket_name(&self.config.bucket);
                let key = match &self.service_account_key {
                    Some(key) => Some(key.clone()),
                    None => {
                        let sources = self.secrets.as_ref();
                        match flowstore_secrets::resolve_optional("GCP_CREDENTIALS", sources)? {
                            Some(_) => {
                                let json =
                                    flowstore_secrets::resolve_json("GCP_CREDENTIALS", sources)?;
                                Some(SecretString::from(json.expose_secret().to_string()))
                            }
                            None => None,
                        }
                    }
                };
                if let Some(key) = &key {
                    b = b.with_service_account_key(key.expose_secret());
                }
                let fingerprint = Fingerprint::new("gcs-credentials")
                    .part("bucket", &self.config.bucket)
                    .secret("service account key", key.as_ref())
                    .env(&["GOOGLE_", "GCP_", "GCS_"]);
                let credentials = clients::shared(fingerprint, || {
                    b.build()
                        .map(|store| store.credentials().clone())
                        .map_err(|e| {
                            let shown: Vec<&SecretString> = key.iter().collect();
                            client_error(TYPE_NAME, "the GCS credentials", e, &shown)
                        })
                })?;
                (
                    "https://storage.googleapis.com".to_string(),
                    Some(credentials),
                )
            }
        };
        // One HTTP client (one connection pool) for every GCS storage with these timeouts.
        let fingerprint = Fingerprint::new("gcs-http").part("timeout", self.retry.request_timeout);
        let client = clients::shared(fingerprint, || {
            reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .timeout(self.retry.request_timeout)
                .build()
                .map_err(|e| client_error(TYPE_NAME, "cannot create the HTTP client", e, &[]))
        })?;
        let display = format!("gs://{}", self.config.bucket);
        let blobs = GcsJsonBlobs {
            display: display.clone(),
            bucket: self.config.bucket.clone(),
            base,
            client,
            credentials,
            retry: self.retry,
        };
        let mut engine = Engine::new(TYPE_NAME, display, Arc::new(blobs), SCRIPT_KEY_ERROR);
        engine.prefix = self.config.prefix.clone();
        engine.fixed_key = self.config.key.clone();
        engine.stored_as_script = self.config.stored_as_script;
        engine.local_script_path = self.config.local_script_path.as_ref().map(PathBuf::from);
        engine.index = self.index;
        Ok(Gcs {
            engine,
            config: self.config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_options_and_urls_end_in_the_same_config() {
        let typed = GcsBuilder::new("b")
            .project("p1")
            .key("k/flow.py")
            .emulator("127.0.0.1:4443")
            .add_default_labels(false);
        let url = GcsBuilder::from_url(
            "gs://b?project=p1&key=k/flow.py&emulator_host=127.0.0.1:4443&add_default_labels=false",
        )
        .unwrap();
        assert_eq!(typed.config(), url.config());
        assert_eq!(typed.index, url.index);
        let e = GcsBuilder::from_url("s3://b").unwrap_err().to_string();
        assert!(e.contains("gs://"), "{e}");
    }
}
