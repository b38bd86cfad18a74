//! Google Cloud Storage.

use std::path::PathBuf;
use std::sync::Arc;

use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource};
use flowstore_core::{Error as CoreError, OpenContext, Result, StorageReference};
use flowstore_secrets::ExposeSecret;
use object_store::gcp::GoogleCloudStorageBuilder;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::Error;
use crate::gcs_json::GcsJsonBlobs;
use crate::retry::RetryPolicy;
use crate::storage::{split_url, CloudStorage, Fields};

/// The reference type name.
pub const TYPE_NAME: &str = "GCS";

/// A GCS emulator's address (e.g. `http://127.0.0.1:4443`), as Google's client libraries read it.
pub const EMULATOR_ENV: &str = "STORAGE_EMULATOR_HOST";

const SCRIPT_KEY_ERROR: &str = "A `key` must be provided to show where flow `.py` file is stored in GCS or provide a `local_script_path` pointing to a local script that contains the flow.";

/// The backend fields of a `GCS` reference (Prefect 1's names; `prefix` is flowstore's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcsFields {
    /// The bucket.
    pub bucket: String,
    /// A fixed key (else `<slug>/<timestamp slug>`).
    #[serde(default)]
    pub key: Option<String>,
    /// The Google Cloud project (informational: buckets are global).
    #[serde(default)]
    pub project: Option<String>,
    /// Script mode.
    #[serde(default)]
    pub stored_as_script: bool,
    /// The local script uploaded at build in script mode.
    #[serde(default)]
    pub local_script_path: Option<String>,
    /// Key prefix for default keys (from `gs://bucket/prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Builds GCS storage.
///
/// Talks to the GCS JSON API (create-only media uploads, resumable uploads streamed from disk),
/// with bearer tokens from `object_store`'s GCP credential chain: the `GCP_CREDENTIALS` secret (a
/// service-account JSON document, from the secret sources then the environment),
/// `GOOGLE_APPLICATION_CREDENTIALS` / `GOOGLE_SERVICE_ACCOUNT*`, then ambient credentials. With
/// `STORAGE_EMULATOR_HOST` set, requests go to that emulator without OAuth.
#[derive(Debug, Clone)]
pub struct Gcs {
    fields: GcsFields,
    emulator: Option<String>,
    retry: RetryPolicy,
    secrets: Arc<dyn SecretSource>,
}

impl Gcs {
    /// GCS storage in `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        Gcs {
            fields: GcsFields {
                bucket: bucket.into(),
                ..Default::default()
            },
            emulator: None,
            retry: RetryPolicy::default(),
            secrets: Arc::new(NoSecrets),
        }
    }

    /// A fixed key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.fields.key = Some(key.into());
        self
    }

    /// The project.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.fields.project = Some(project.into());
        self
    }

    /// Script mode: upload this local script at build.
    pub fn script(mut self, local_script_path: impl Into<PathBuf>) -> Self {
        self.fields.stored_as_script = true;
        self.fields.local_script_path = Some(local_script_path.into().display().to_string());
        self
    }

    /// Script mode without a local script: `key` names a script already uploaded.
    pub fn stored_as_script(mut self, on: bool) -> Self {
        self.fields.stored_as_script = on;
        self
    }

    /// A prefix for default keys.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.fields.prefix = Some(prefix.into());
        self
    }

    /// Talks to a GCS emulator at `url` without OAuth (instead of `STORAGE_EMULATOR_HOST`).
    pub fn emulator(mut self, url: impl Into<String>) -> Self {
        self.emulator = Some(url.into());
        self
    }

    /// Retry bounds.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Where the `GCP_CREDENTIALS` secret is looked up (then the environment).
    pub fn secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// The storage. Errors with [`CoreError::Config`] when the credentials cannot be used.
    pub fn build(self) -> Result<CloudStorage> {
        Ok(self.build_inner()?)
    }

    fn build_inner(self) -> Result<CloudStorage, Error> {
        let emulator = self
            .emulator
            .clone()
            .or_else(|| std::env::var(EMULATOR_ENV).ok().filter(|v| !v.is_empty()));
        let (base, credentials) = match &emulator {
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
                    GoogleCloudStorageBuilder::from_env().with_bucket_name(&self.fields.bucket);
                if flowstore_secrets::resolve_optional("GCP_CREDENTIALS", self.secrets.as_ref())?
                    .is_some()
                {
                    let creds =
                        flowstore_secrets::resolve_json("GCP_CREDENTIALS", self.secrets.as_ref())?;
                    b = b.with_service_account_key(creds.expose_secret().to_string());
                }
                let store = b.build().map_err(|e| Error::Client {
                    backend: TYPE_NAME,
                    message: e.to_string(),
                })?;
                (
                    "https://storage.googleapis.com".to_string(),
                    Some(store.credentials().clone()),
                )
            }
        };
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(self.retry.request_timeout)
            .build()
            .map_err(|e| Error::Client {
                backend: TYPE_NAME,
                message: format!("cannot create the HTTP client: {e}"),
            })?;
        let display = format!("gs://{}", self.fields.bucket);
        let blobs = GcsJsonBlobs {
            display: display.clone(),
            bucket: self.fields.bucket.clone(),
            base,
            client,
            credentials,
            retry: self.retry,
        };
        let mut engine = Engine::new(TYPE_NAME, display, Arc::new(blobs));
        engine.prefix = self.fields.prefix.clone();
        engine.fixed_key = self.fields.key.clone();
        engine.stored_as_script = self.fields.stored_as_script;
        engine.local_script_path = self.fields.local_script_path.as_ref().map(PathBuf::from);
        Ok(CloudStorage {
            engine,
            fields: Fields::Gcs(self.fields),
            script_key_error: SCRIPT_KEY_ERROR,
        })
    }

    /// Opens a `GCS` reference (Prefect 1's included).
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<CloudStorage> {
        let fields: GcsFields = reference.backend_fields()?;
        let mut storage = Gcs {
            fields,
            emulator: None,
            retry: RetryPolicy::default(),
            secrets: ctx.secrets.clone(),
        }
        .build()?;
        storage.engine.index = FlowIndex::from_reference(reference);
        Ok(storage)
    }

    /// Opens `gs://bucket/prefix`.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<CloudStorage> {
        let (bucket, prefix) = split_url(url, &["gs"]).ok_or_else(|| {
            CoreError::config(format!(
                "GCS storage URL \"{url}\" must look like gs://bucket/prefix"
            ))
        })?;
        let mut gcs = Gcs::new(bucket).secrets(ctx.secrets.clone());
        if let Some(p) = prefix {
            gcs = gcs.prefix(p);
        }
        if let Some(script) = &ctx.script_path {
            gcs = gcs.script(script);
        }
        gcs.build()
    }
}
