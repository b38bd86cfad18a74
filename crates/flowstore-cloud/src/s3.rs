//! Amazon S3 (and S3-compatible servers).

use std::path::PathBuf;
use std::sync::Arc;

use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource};
use flowstore_core::{Error as CoreError, OpenContext, Result, StorageReference};
use flowstore_secrets::ExposeSecret;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::blobs::ObjectStoreBlobs;
use crate::engine::Engine;
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::storage::{split_url, CloudStorage, Fields};

/// The reference type name.
pub const TYPE_NAME: &str = "S3";

const SCRIPT_KEY_ERROR: &str = "A `key` must be provided to show where flow `.py` file is stored in S3 or provide a `local_script_path` pointing to a local script that contains the flow.";

/// Keys of `client_options` that would put a credential into the reference.
const CREDENTIAL_OPTIONS: [&str; 3] = [
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
];

/// The backend fields of an `S3` reference (Prefect 1's names; `prefix` is flowstore's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct S3Fields {
    /// The bucket.
    pub bucket: String,
    /// A fixed key (else `<slug>/<timestamp slug>`).
    #[serde(default)]
    pub key: Option<String>,
    /// Script mode.
    #[serde(default)]
    pub stored_as_script: bool,
    /// The local script uploaded at build in script mode.
    #[serde(default)]
    pub local_script_path: Option<String>,
    /// Client settings, as boto3 keyword arguments: `endpoint_url`, `region_name`, and
    /// flowstore's `allow_http`. Credentials are refused here (they would be stored).
    #[serde(default)]
    pub client_options: Map<String, Value>,
    /// Upload settings (boto3 `ExtraArgs` in Prefect 1): kept in the reference, not applied yet
    /// (a warning says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_options: Option<Value>,
    /// Key prefix for default keys (from `s3://bucket/prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Builds S3 storage.
///
/// Credentials, in order: the `AWS_CREDENTIALS` secret (JSON `{"ACCESS_KEY", "SECRET_ACCESS_KEY",
/// "SESSION_TOKEN"}`, from the secret sources then the environment), then the standard `AWS_*`
/// environment variables and the instance/container credential chain.
///
/// ```
/// let storage = flowstore_cloud::S3::new("my-bucket")
///     .endpoint("http://127.0.0.1:9000")
///     .allow_http(true)
///     .build()
///     .unwrap();
/// # use flowstore_core::Storage;
/// assert_eq!(storage.type_name(), "S3");
/// ```
#[derive(Debug, Clone)]
pub struct S3 {
    fields: S3Fields,
    retry: RetryPolicy,
    secrets: Arc<dyn SecretSource>,
}

impl S3 {
    /// S3 storage in `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3 {
            fields: S3Fields {
                bucket: bucket.into(),
                ..Default::default()
            },
            retry: RetryPolicy::default(),
            secrets: Arc::new(NoSecrets),
        }
    }

    /// A fixed key instead of `<slug>/<timestamp>`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.fields.key = Some(key.into());
        self
    }

    /// Script mode: upload this local script at build (streamed with multipart when large).
    pub fn script(mut self, local_script_path: impl Into<PathBuf>) -> Self {
        self.fields.stored_as_script = true;
        self.fields.local_script_path = Some(local_script_path.into().display().to_string());
        self
    }

    /// Script mode without a local script: `key` names a script already in the bucket.
    pub fn stored_as_script(mut self, on: bool) -> Self {
        self.fields.stored_as_script = on;
        self
    }

    /// An S3-compatible endpoint (`client_options.endpoint_url`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.fields
            .client_options
            .insert("endpoint_url".into(), Value::String(url.into()));
        self
    }

    /// The region (`client_options.region_name`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.fields
            .client_options
            .insert("region_name".into(), Value::String(region.into()));
        self
    }

    /// Allows plain-HTTP endpoints (local servers).
    pub fn allow_http(mut self, on: bool) -> Self {
        self.fields
            .client_options
            .insert("allow_http".into(), Value::Bool(on));
        self
    }

    /// A prefix for default keys.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.fields.prefix = Some(prefix.into());
        self
    }

    /// Retry bounds.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Where the `AWS_CREDENTIALS` secret is looked up (then the environment).
    pub fn secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// The storage.
    ///
    /// Errors with [`CoreError::Config`] for credentials in `client_options`, an unusable
    /// `AWS_CREDENTIALS` secret, or a client that cannot be configured.
    pub fn build(self) -> Result<CloudStorage> {
        Ok(self.build_inner()?)
    }

    fn build_inner(self) -> Result<CloudStorage, Error> {
        let opts = &self.fields.client_options;
        if let Some(k) = CREDENTIAL_OPTIONS.iter().find(|k| opts.contains_key(**k)) {
            return Err(Error::Client {
                backend: TYPE_NAME,
                message: format!(
                    "client_options.{k} would store a credential in the storage reference; \
                     use the AWS_CREDENTIALS secret or the AWS_* environment variables instead"
                ),
            });
        }
        let text = |k: &str| opts.get(k).and_then(Value::as_str).map(str::to_string);
        let allow_http = match opts.get("allow_http") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => text("endpoint_url").is_some_and(|u| u.starts_with("http://")),
        };
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.fields.bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(self.retry.retry_config())
            .with_client_options(self.retry.client_options(allow_http));
        if let Some(endpoint) = text("endpoint_url") {
            b = b
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        match text("region_name") {
            Some(region) => b = b.with_region(region),
            None if std::env::var("AWS_REGION").is_err()
                && std::env::var("AWS_DEFAULT_REGION").is_err() =>
            {
                b = b.with_region("us-east-1")
            }
            None => {}
        }
        let explicit = aws_credentials(self.secrets.as_ref())?;
        if explicit.is_none()
            && text("endpoint_url").is_some()
            && std::env::var("AWS_ACCESS_KEY_ID").is_err()
        {
            // A custom endpoint without credentials is a local or anonymous server: send unsigned
            // requests rather than asking a cloud instance-metadata service for credentials.
            tracing::debug!("no S3 credentials for a custom endpoint: requests are unsigned");
            b = b.with_skip_signature(true);
        }
        if let Some(creds) = explicit {
            let c = creds.expose_secret();
            let field = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
            let (Some(key), Some(secret)) = (field("ACCESS_KEY"), field("SECRET_ACCESS_KEY"))
            else {
                return Err(Error::Client {
                    backend: TYPE_NAME,
                    message: "the AWS_CREDENTIALS secret must be JSON with ACCESS_KEY and SECRET_ACCESS_KEY (and optionally SESSION_TOKEN)".into(),
                });
            };
            b = b.with_access_key_id(key).with_secret_access_key(secret);
            if let Some(token) = field("SESSION_TOKEN") {
                b = b.with_token(token);
            }
        }
        if let Some(upload) = &self.fields.upload_options {
            tracing::warn!(options = %upload, "S3 upload_options are not applied by flowstore");
        }
        let store = b.build().map_err(|e| Error::Client {
            backend: TYPE_NAME,
            message: e.to_string(),
        })?;
        let display = format!("s3://{}", self.fields.bucket);
        let blobs = ObjectStoreBlobs {
            backend: TYPE_NAME,
            display: display.clone(),
            store: Arc::new(store),
        };
        let mut engine = Engine::new(TYPE_NAME, display, Arc::new(blobs));
        engine.prefix = self.fields.prefix.clone();
        engine.fixed_key = self.fields.key.clone();
        engine.stored_as_script = self.fields.stored_as_script;
        engine.local_script_path = self.fields.local_script_path.as_ref().map(PathBuf::from);
        Ok(CloudStorage {
            engine,
            fields: Fields::S3(self.fields),
            script_key_error: SCRIPT_KEY_ERROR,
        })
    }

    /// Opens an `S3` reference (Prefect 1's included).
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<CloudStorage> {
        let fields: S3Fields = reference.backend_fields()?;
        let mut storage = S3 {
            fields,
            retry: RetryPolicy::default(),
            secrets: ctx.secrets.clone(),
        }
        .build()?;
        storage.engine.index = FlowIndex::from_reference(reference);
        Ok(storage)
    }

    /// Opens `s3://bucket/prefix`; the endpoint and plain-HTTP switch come from `AWS_ENDPOINT_URL`
    /// (or `AWS_ENDPOINT`) and `AWS_ALLOW_HTTP`, and are recorded in the reference.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<CloudStorage> {
        let (bucket, prefix) = split_url(url, &["s3"]).ok_or_else(|| {
            CoreError::config(format!(
                "S3 storage URL \"{url}\" must look like s3://bucket/prefix"
            ))
        })?;
        let mut s3 = S3::new(bucket).secrets(ctx.secrets.clone());
        if let Some(p) = prefix {
            s3 = s3.prefix(p);
        }
        if let Ok(endpoint) =
            std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"))
        {
            s3 = s3.endpoint(endpoint);
        }
        if std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true") {
            s3 = s3.allow_http(true);
        }
        if let Some(script) = &ctx.script_path {
            s3 = s3.script(script);
        }
        s3.build()
    }
}

/// The `AWS_CREDENTIALS` secret as JSON, if it is set anywhere.
fn aws_credentials(
    sources: &dyn SecretSource,
) -> Result<Option<flowstore_secrets::SecretJson>, Error> {
    match flowstore_secrets::resolve_optional("AWS_CREDENTIALS", sources)? {
        None => Ok(None),
        Some(_) => Ok(Some(flowstore_secrets::resolve_json(
            "AWS_CREDENTIALS",
            sources,
        )?)),
    }
}
