//! Amazon S3 (and S3-compatible servers): [`S3`], made by [`S3Builder`], configured by
//! [`S3Config`].

use std::path::PathBuf;
use std::sync::Arc;

use flowstore_core::raw::clients::{self, Fingerprint};
use flowstore_core::raw::config::{parse_bool, BackendConfig};
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{ExposeSecret, NoSecrets, SecretSource, SecretString};
use flowstore_core::{OpenContext, Result, StorageReference};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::client::{HttpConnector, ReqwestConnector};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::blobs::{ObjectStoreBlobs, ObjectStoreClient};
use crate::completion::{CreateOnlyCompletion, Retries, S3Completion};
use crate::engine::Engine;
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::storage::{
    builder_common, client_error, cloud_storage, env_var, null_as_default, parse_storage_url,
};

/// The reference type name.
pub const TYPE_NAME: &str = "S3";

const SCRIPT_KEY_ERROR: &str = "A `key` must be provided to show where flow `.py` file is stored in S3 or provide a `local_script_path` pointing to a local script that contains the flow.";

const EXAMPLE: &str = "s3://bucket/prefix?region=eu-west-1";

/// Keys of `client_options` that would put a credential into the reference.
const CREDENTIAL_OPTIONS: [&str; 3] = [
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
];

/// Option keys refused by `with_config` (credentials are typed builder methods).
const CREDENTIAL_KEYS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "session_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
];

const CREDENTIAL_HINT: &str = "use S3Builder::access_key_id / secret_access_key / session_token, the AWS_CREDENTIALS secret, or the AWS_* environment variables";

/// The client settings of an `S3` reference (`client_options`).
///
/// Prefect 1 passes every key here to `boto3.client(**client_options)`, so only boto3's own
/// arguments belong here: flowstore's settings are top-level fields of [`S3Config`], which
/// Prefect 1's schema ignores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct S3ClientOptions {
    /// An S3-compatible endpoint (MinIO, moto, R2…); `None`: AWS for the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// The region (`None`: `us-east-1`, or for a reference without endpoint, the agent's
    /// `AWS_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_name: Option<String>,
    /// Other boto3 arguments a Prefect 1 reference may carry: kept, not applied. Credentials
    /// here are refused at build (they would be stored).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The backend fields of an `S3` reference (Prefect 1's names; `prefix` and `allow_http` are
/// flowstore's, top-level fields Prefect 1 ignores).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// A fixed key (else `<prefix>/<slug>/<timestamp slug>`).
    #[serde(default)]
    pub key: Option<String>,
    /// Script mode.
    #[serde(default, deserialize_with = "null_as_default")]
    pub stored_as_script: bool,
    /// The local script uploaded at `persist` in script mode.
    #[serde(default)]
    pub local_script_path: Option<String>,
    /// Client settings: endpoint, region, plain HTTP.
    #[serde(default, deserialize_with = "null_as_default")]
    pub client_options: S3ClientOptions,
    /// Upload settings (boto3 `ExtraArgs` in Prefect 1): kept in the reference, not applied
    /// (a warning says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_options: Option<Value>,
    /// Key prefix for default keys (from `s3://bucket/prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// flowstore's: allow a plain-HTTP endpoint (`None`: allowed for an `http://` endpoint).
    /// References flowstore wrote before kept it in `client_options`, where Prefect 1 hands it
    /// to boto3, which refuses it; such references still open (it is moved here) and are
    /// written back with it here.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_bool_field"
    )]
    pub allow_http: Option<bool>,
}

impl BackendConfig for S3Config {
    const TYPE_NAME: &'static str = TYPE_NAME;
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("bucket", "bucket"),
        ("key", "key"),
        ("prefix", "prefix"),
        ("stored_as_script", "stored_as_script"),
        ("local_script_path", "local_script_path"),
        ("endpoint_url", "client_options.endpoint_url"),
        ("endpoint", "client_options.endpoint_url"),
        ("region", "client_options.region_name"),
        ("region_name", "client_options.region_name"),
        ("allow_http", "allow_http"),
    ];

    /// The recorded configuration, with a `client_options.allow_http` (where flowstore wrote
    /// it before) moved to the top-level `allow_http`.
    ///
    /// Errors with [`flowstore_core::Error::InvalidReference`] for fields that do not fit,
    /// naming the field.
    fn from_reference(reference: &StorageReference) -> Result<Self> {
        let mut config: S3Config = reference.backend_fields()?;
        config
            .lift_allow_http()
            .map_err(flowstore_core::Error::invalid_reference)?;
        Ok(config)
    }
}

impl S3Config {
    /// Moves `client_options.allow_http` to the top-level `allow_http` (which wins if both are
    /// set), so it is never written where Prefect 1 would pass it to boto3.
    fn lift_allow_http(&mut self) -> std::result::Result<(), String> {
        let Some(legacy) = self.client_options.other.remove("allow_http") else {
            return Ok(());
        };
        let legacy = lenient_bool(legacy)
            .map_err(|e| format!("S3 reference field client_options.allow_http: {e}"))?;
        self.allow_http = self.allow_http.or(legacy);
        Ok(())
    }
}

/// `true`/`false`, also as the strings `"true"`/`"false"` (older references).
fn lenient_bool_field<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<bool>, D::Error> {
    lenient_bool(Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// An `allow_http` value: `true`/`false`, also as the strings `"true"`/`"false"`; `null`: unset.
fn lenient_bool(value: Value) -> std::result::Result<Option<bool>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        Value::String(s) => parse_bool("allow_http", &s)
            .map(Some)
            .map_err(|e| e.to_string()),
        other => Err(format!("allow_http must be true or false, not {other}")),
    }
}

cloud_storage!(
    /// Flows in an S3 bucket (or an S3-compatible server). Made by [`S3Builder`]
    /// ([`S3::builder`]), or opened from a reference or an `s3://` URL.
    ///
    /// Uploads at `persist` are create-only: `If-None-Match: *` on PutObject for small ones;
    /// flows, scripts and blobs over [`MULTIPART_THRESHOLD`](crate::MULTIPART_THRESHOLD) upload
    /// in parts streamed from disk, and the condition goes on CompleteMultipartUpload (S3
    /// Express One Zone buckets: a HEAD of the key first). `get_flow_to_file` streams to disk
    /// while verifying.
    S3,
    S3Config
);

/// Builds an [`S3`] storage.
///
/// Filled by typed setters, by [`with_config`](S3Builder::with_config) pairs (the keys of
/// [`S3Config`]'s `OPTIONS`), by [`from_url`](S3Builder::from_url), or from the environment
/// ([`from_env`](S3Builder::from_env)); all four end in the same configuration, which the
/// reference records. [`build`](S3Builder::build) reads no environment variable for anything
/// the reference records: without a region it uses `us-east-1`.
///
/// Credentials, in order: the typed [`access_key_id`](S3Builder::access_key_id) /
/// [`secret_access_key`](S3Builder::secret_access_key) /
/// [`session_token`](S3Builder::session_token); the `AWS_CREDENTIALS` secret (Prefect 1's: JSON
/// `{"ACCESS_KEY", "SECRET_ACCESS_KEY", "SESSION_TOKEN"}`, from the secret sources then the
/// environment); the standard `AWS_*` credential variables and the web-identity, container and
/// instance credential chain. A custom endpoint with no credentials anywhere gets unsigned
/// requests. Credentials never enter the reference, a log, an error or `Debug`.
///
/// ```
/// use flowstore_cloud::{S3Builder, S3};
/// let storage = S3::builder("my-bucket")
///     .endpoint("http://127.0.0.1:9000")
///     .region("eu-west-1")
///     .label("prod")
///     .build()?;
/// let same = S3Builder::from_url("s3://my-bucket?endpoint_url=http://127.0.0.1:9000&region=eu-west-1&label=prod")?
///     .build()?;
/// assert_eq!(storage.config(), same.config());
/// # Ok::<(), flowstore_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct S3Builder {
    config: S3Config,
    index: FlowIndex,
    access_key_id: Option<SecretString>,
    secret_access_key: Option<SecretString>,
    session_token: Option<SecretString>,
    retry: RetryPolicy,
    secrets: Arc<dyn SecretSource>,
    /// The agent's region, for references that record neither a region nor an endpoint.
    fallback_region: Option<String>,
}

builder_common!(S3Builder, S3Config);

impl S3 {
    /// A builder for storage in `bucket` (same as [`S3Builder::new`]).
    pub fn builder(bucket: impl Into<String>) -> S3Builder {
        S3Builder::new(bucket)
    }

    /// Opens an `S3` reference (Prefect 1's included), with credentials from `ctx`'s secret
    /// sources, then the environment.
    ///
    /// A reference that records neither a region nor an endpoint (as Prefect 1 wrote them) is
    /// opened in the agent's `AWS_REGION` / `AWS_DEFAULT_REGION`, as boto3 does; anything the
    /// reference records is used as recorded.
    ///
    /// Errors with [`flowstore_core::Error::InvalidReference`] for fields that do not fit and
    /// [`flowstore_core::Error::Config`] as [`S3Builder::build`] does.
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<S3> {
        let config = S3Config::from_reference(reference)?;
        let opts = &config.client_options;
        let fallback_region = (opts.region_name.is_none() && opts.endpoint_url.is_none())
            .then(|| env_var(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
            .flatten();
        S3Builder {
            config,
            index: FlowIndex::from_reference(reference),
            fallback_region,
            ..S3Builder::new("")
        }
        .secrets(ctx.secrets.clone())
        .build()
    }

    /// Opens `s3://bucket/prefix?options` as the registry does: [`S3Builder::from_env`], then
    /// the URL, then `ctx`'s script path and options.
    ///
    /// Errors as [`S3Builder::with_url`] and [`S3Builder::build`] do.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<S3> {
        S3Builder::for_registry_url(url, ctx)?.build()
    }
}

impl S3Builder {
    /// S3 storage in `bucket`; nothing is read from the environment.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Builder {
            config: S3Config {
                bucket: bucket.into(),
                ..Default::default()
            },
            index: FlowIndex::default(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            retry: RetryPolicy::default(),
            secrets: Arc::new(NoSecrets),
            fallback_region: None,
        }
    }

    /// A builder configured from the standard variables, with no bucket yet (set one with
    /// [`bucket`](S3Builder::bucket) or [`with_url`](S3Builder::with_url)): the endpoint from
    /// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, the region from `AWS_REGION`
    /// or `AWS_DEFAULT_REGION`, plain HTTP from `AWS_ALLOW_HTTP`. What it reads is recorded in
    /// the reference. Credential variables are not read here but by the credential chain at
    /// build (they are never recorded).
    pub fn from_env() -> Self {
        let mut b = S3Builder::new("");
        if let Some(endpoint) =
            env_var(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"])
        {
            b = b.endpoint(endpoint);
        }
        if let Some(region) = env_var(&["AWS_REGION", "AWS_DEFAULT_REGION"]) {
            b = b.region(region);
        }
        if let Some(v) = env_var(&["AWS_ALLOW_HTTP"]) {
            match parse_bool("AWS_ALLOW_HTTP", &v) {
                Ok(on) => b = b.allow_http(on),
                Err(e) => tracing::warn!("ignoring AWS_ALLOW_HTTP: {e}"),
            }
        }
        b
    }

    /// A builder from `s3://bucket/prefix?options` alone (no environment): the host is the
    /// bucket, the path the prefix, and every query pair goes through
    /// [`with_config`](S3Builder::with_config) (`endpoint_url`, `region`, `allow_http`, `key`,
    /// `label`…).
    ///
    /// Errors with [`flowstore_core::Error::Config`] for a URL that does not parse, another
    /// scheme, no bucket, credentials in the URL, or an option that is refused (naming it).
    pub fn from_url(url: &str) -> Result<Self> {
        S3Builder::new("").with_url(url)
    }

    /// Applies `s3://bucket/prefix?options` over this builder (e.g. after
    /// [`from_env`](S3Builder::from_env)): the bucket and prefix are replaced, the options set.
    ///
    /// Errors as [`from_url`](S3Builder::from_url) does.
    pub fn with_url(mut self, url: &str) -> Result<Self> {
        let parsed = parse_storage_url(url, &["s3"], EXAMPLE)?;
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

    /// An S3-compatible endpoint (`client_options.endpoint_url`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.config.client_options.endpoint_url = Some(url.into());
        self
    }

    /// The region (`client_options.region_name`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config.client_options.region_name = Some(region.into());
        self
    }

    /// Allows a plain-HTTP endpoint (default: allowed for an `http://` endpoint); recorded as
    /// the reference's top-level `allow_http`.
    pub fn allow_http(mut self, on: bool) -> Self {
        self.config.allow_http = Some(on);
        self
    }

    /// The access key id (with [`secret_access_key`](S3Builder::secret_access_key)); never
    /// recorded.
    pub fn access_key_id(mut self, id: impl Into<SecretString>) -> Self {
        self.access_key_id = Some(id.into());
        self
    }

    /// The secret access key (with [`access_key_id`](S3Builder::access_key_id)); never recorded.
    pub fn secret_access_key(mut self, key: impl Into<SecretString>) -> Self {
        self.secret_access_key = Some(key.into());
        self
    }

    /// A session token for temporary credentials; never recorded.
    pub fn session_token(mut self, token: impl Into<SecretString>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    /// The storage. Does no network I/O.
    ///
    /// Errors with [`flowstore_core::Error::Config`] for no bucket, credentials in
    /// `client_options`, an access key id without its secret key (or the reverse), an unusable
    /// `AWS_CREDENTIALS` secret, or a client that cannot be configured (the client's error is
    /// the `source()`).
    pub fn build(self) -> Result<S3> {
        Ok(self.build_inner()?)
    }

    fn build_inner(mut self) -> Result<S3, Error> {
        self.config
            .lift_allow_http()
            .map_err(|e| Error::client(TYPE_NAME, e))?;
        if self.config.bucket.trim().is_empty() {
            return Err(Error::client(
                TYPE_NAME,
                format!("no bucket was given; name one (S3::builder(\"bucket\"), or a URL like {EXAMPLE})"),
            ));
        }
        let opts = &self.config.client_options;
        if let Some(k) = CREDENTIAL_OPTIONS
            .iter()
            .find(|k| opts.other.contains_key(**k))
        {
            return Err(Error::client(
                TYPE_NAME,
                format!(
                    "client_options.{k} would store a credential in the storage reference; \
                     use the AWS_CREDENTIALS secret, the typed builder credentials or the AWS_* environment variables instead"
                ),
            ));
        }
        let endpoint = opts.endpoint_url.clone();
        let allow_http = self.config.allow_http.unwrap_or_else(|| {
            endpoint
                .as_deref()
                .is_some_and(|u| u.starts_with("http://"))
        });
        let region = opts
            .region_name
            .clone()
            .or_else(|| self.fallback_region.clone())
            .unwrap_or_else(|| "us-east-1".to_string());
        let explicit = self.explicit_credentials()?;
        // A custom endpoint without credentials is a local or anonymous server: send unsigned
        // requests rather than asking a cloud metadata service for credentials.
        let unsigned =
            explicit.is_none() && endpoint.is_some() && env_var(&["AWS_ACCESS_KEY_ID"]).is_none();
        if unsigned {
            tracing::debug!("no S3 credentials for a custom endpoint: requests are unsigned");
        }
        let shown: Vec<SecretString> = explicit
            .iter()
            .flat_map(|k| [Some(k.id.clone()), Some(k.secret.clone()), k.token.clone()])
            .flatten()
            .collect();
        // The client builder (and the credential chain's reading of the environment) only when
        // no storage in this process has built this client yet.
        let builder = || {
            let mut b = credential_chain()
                .with_bucket_name(&self.config.bucket)
                .with_region(&region)
                .with_conditional_put(S3ConditionalPut::ETagMatch)
                .with_retry(self.retry.retry_config())
                .with_client_options(self.retry.client_options(allow_http));
            if let Some(endpoint) = &endpoint {
                b = b
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(AwsKeys { id, secret, token }) = &explicit {
                b = b
                    .with_access_key_id(id.expose_secret())
                    .with_secret_access_key(secret.expose_secret());
                if let Some(token) = token {
                    b = b.with_token(token.expose_secret());
                }
            }
            if unsigned {
                b = b.with_skip_signature(true);
            }
            b
        };
        if let Some(upload) = &self.config.upload_options {
            tracing::warn!(options = %upload, "S3 upload_options are not applied by flowstore");
        }
        let mut fingerprint = Fingerprint::new("s3")
            .part("bucket", &self.config.bucket)
            .part("region", &region)
            .part("endpoint", &endpoint)
            .part("allow_http", allow_http)
            .part("retry", self.retry)
            .part("unsigned", unsigned)
            .env(&["AWS_"]);
        for (i, s) in shown.iter().enumerate() {
            fingerprint = fingerprint.secret(&format!("credential {i}"), Some(s));
        }
        let bucket_url = match &endpoint {
            Some(e) => format!("{}/{}", e.trim_end_matches('/'), self.config.bucket),
            None => format!("https://s3.{region}.amazonaws.com/{}", self.config.bucket),
        };
        // S3 Express One Zone buckets are reached on zonal endpoints that `object_store` picks:
        // their large uploads keep the HEAD guard rather than guess that address.
        let zonal = self.config.bucket.ends_with("--x-s3");
        let client_options = self.retry.client_options(allow_http);
        let retries = Retries {
            max_retries: self.retry.max_retries,
        };
        let client = clients::shared(fingerprint, || {
            let failed = |e| {
                let shown: Vec<&SecretString> = shown.iter().collect();
                client_error(TYPE_NAME, "the S3 client", e, &shown)
            };
            let s3 = Arc::new(builder().build().map_err(failed)?);
            let http = ReqwestConnector::default()
                .connect(&client_options)
                .map_err(failed)?;
            let completion = S3Completion {
                s3: s3.clone(),
                http,
                bucket_url,
                region: region.clone(),
                signed: !unsigned,
                retries,
            };
            Ok::<_, Error>(ObjectStoreClient {
                store: s3.clone(),
                multipart: s3,
                create_only: (!zonal)
                    .then(|| Arc::new(completion) as Arc<dyn CreateOnlyCompletion>),
            })
        })?;
        let display = format!("s3://{}", self.config.bucket);
        let blobs = ObjectStoreBlobs {
            backend: TYPE_NAME,
            display: display.clone(),
            client,
        };
        let mut engine = Engine::new(TYPE_NAME, display, Arc::new(blobs), SCRIPT_KEY_ERROR);
        engine.prefix = self.config.prefix.clone();
        engine.fixed_key = self.config.key.clone();
        engine.stored_as_script = self.config.stored_as_script;
        engine.local_script_path = self.config.local_script_path.as_ref().map(PathBuf::from);
        engine.index = self.index;
        Ok(S3 {
            engine,
            config: self.config,
        })
    }

    /// The typed credentials, else the `AWS_CREDENTIALS` secret; `None`: the standard chain.
    fn explicit_credentials(&self) -> Result<Option<AwsKeys>, Error> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => {
                return Ok(Some(AwsKeys {
                    id: id.clone(),
                    secret: secret.clone(),
                    token: self.session_token.clone(),
                }))
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::client(
                    TYPE_NAME,
                    "give both access_key_id and secret_access_key (or neither, for the AWS_CREDENTIALS secret and the standard chain)",
                ))
            }
            (None, None) => {}
        }
        let sources = self.secrets.as_ref();
        if flowstore_secrets::resolve_optional("AWS_CREDENTIALS", sources)?.is_none() {
            return Ok(None);
        }
        let creds = flowstore_secrets::resolve_json("AWS_CREDENTIALS", sources)?;
        let c = creds.expose_secret();
        let field = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .map(|v| SecretString::from(v.to_string()))
        };
        let (Some(key), Some(secret)) = (field("ACCESS_KEY"), field("SECRET_ACCESS_KEY")) else {
            return Err(Error::client(
                TYPE_NAME,
                "the AWS_CREDENTIALS secret must be JSON with ACCESS_KEY and SECRET_ACCESS_KEY (and optionally SESSION_TOKEN)",
            ));
        };
        Ok(Some(AwsKeys {
            id: key,
            secret,
            token: field("SESSION_TOKEN"),
        }))
    }
}

/// Explicit AWS credentials.
struct AwsKeys {
    id: SecretString,
    secret: SecretString,
    token: Option<SecretString>,
}

/// A client builder with the standard credential variables (keys, web identity, container and
/// instance credentials) and nothing else from the environment: region, endpoint and plain HTTP
/// come from the configuration only.
fn credential_chain() -> AmazonS3Builder {
    use AmazonS3ConfigKey as K;
    let mut b = AmazonS3Builder::new();
    for (name, value) in std::env::vars() {
        if !name.starts_with("AWS_") {
            continue;
        }
        let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() else {
            continue;
        };
        if matches!(
            key,
            K::AccessKeyId
                | K::SecretAccessKey
                | K::Token
                | K::ImdsV1Fallback
                | K::MetadataEndpoint
                | K::ContainerCredentialsRelativeUri
                | K::ContainerCredentialsFullUri
                | K::ContainerAuthorizationTokenFile
                | K::WebIdentityTokenFile
                | K::RoleArn
                | K::RoleSessionName
                | K::StsEndpoint
        ) {
            b = b.with_config(key, value);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowstore_core::Storage;

    #[test]
    fn setters_options_and_urls_end_in_the_same_config() {
        let typed = S3::builder("b")
            .endpoint("http://127.0.0.1:9000")
            .region("eu-west-1")
            .allow_http(true)
            .prefix("team/flows")
            .label("prod")
            .build()
            .unwrap();
        let pairs = S3Builder::new("b")
            .with_configs([
                ("endpoint_url", "http://127.0.0.1:9000"),
                ("region", "eu-west-1"),
                ("allow_http", "true"),
                ("prefix", "team/flows"),
                ("label", "prod"),
            ])
            .unwrap()
            .build()
            .unwrap();
        let url = S3Builder::from_url(
            "s3://b/team/flows?endpoint_url=http://127.0.0.1:9000&region=eu-west-1&allow_http=true&label=prod",
        )
        .unwrap()
        .build()
        .unwrap();
        for other in [&pairs, &url] {
            assert_eq!(typed.config(), other.config());
            assert_eq!(typed.labels(), other.labels());
        }
        assert_eq!(typed.labels(), ["prod"]);
    }

    #[test]
    fn credential_options_are_refused_by_name() {
        let e = S3Builder::from_url("s3://b?secret_access_key=do-not-store")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"secret_access_key\" is a credential") && !e.contains("do-not-store"),
            "{e}"
        );
        let e = S3Builder::new("b")
            .access_key_id("AKIA")
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("secret_access_key"), "{e}");
    }

    #[test]
    fn prefect1_nulls_are_defaults() {
        let reference = StorageReference::from_json(
            r#"{"type":"S3","bucket":"b","key":null,"stored_as_script":null,"client_options":null,"flows":{}}"#,
        )
        .unwrap();
        let config = S3Config::from_reference(&reference).unwrap();
        assert_eq!(config.bucket, "b");
        assert!(!config.stored_as_script);
        assert_eq!(config.client_options, S3ClientOptions::default());
    }

    /// Prefect 1 passes `client_options` to `boto3.client(**client_options)`, which refuses
    /// any key it does not know: flowstore's own `allow_http` goes top-level (ignored by
    /// Prefect 1's schema), however it was set.
    #[test]
    fn allow_http_is_never_written_into_client_options() {
        let typed = S3::builder("b")
            .endpoint("http://127.0.0.1:9000")
            .allow_http(true)
            .build()
            .unwrap();
        let pairs = S3Builder::new("b")
            .with_configs([
                ("endpoint", "http://127.0.0.1:9000"),
                ("allow_http", "true"),
            ])
            .unwrap()
            .build()
            .unwrap();
        let url = S3Builder::from_url("s3://b?endpoint_url=http://127.0.0.1:9000&allow_http=true")
            .unwrap()
            .build()
            .unwrap();
        for s in [typed, pairs, url] {
            let json: Value = serde_json::from_str(&s.reference().unwrap().to_json()).unwrap();
            assert_eq!(
                json["client_options"],
                serde_json::json!({"endpoint_url": "http://127.0.0.1:9000"}),
                "{json}"
            );
            assert_eq!(json["allow_http"], Value::Bool(true), "{json}");
        }
    }

    /// References flowstore wrote before kept `allow_http` in `client_options`: they open with
    /// the same setting, and are written back with it top-level.
    #[test]
    fn client_options_allow_http_of_older_references_moves_top_level() {
        for (value, want) in [
            (serde_json::json!(false), false),
            (serde_json::json!("false"), false),
            (serde_json::json!(true), true),
        ] {
            let reference = StorageReference::from_json(
                &serde_json::json!({
                    "type": "S3", "bucket": "b", "flows": {},
                    "client_options": {"endpoint_url": "http://127.0.0.1:9000", "allow_http": value},
                })
                .to_string(),
            )
            .unwrap();
            let s = S3::from_reference(&reference, &OpenContext::default()).unwrap();
            assert_eq!(s.config().allow_http, Some(want));
            assert!(s.config().client_options.other.is_empty());
            let json: Value = serde_json::from_str(&s.reference().unwrap().to_json()).unwrap();
            assert_eq!(json["allow_http"], Value::Bool(want), "{json}");
            assert!(json["client_options"].get("allow_http").is_none(), "{json}");
        }
        // The top-level value wins over an older one left in client_options.
        let reference = StorageReference::from_json(
            r#"{"type":"S3","bucket":"b","allow_http":false,"client_options":{"allow_http":true}}"#,
        )
        .unwrap();
        assert_eq!(
            S3Config::from_reference(&reference).unwrap().allow_http,
            Some(false)
        );
        let reference = StorageReference::from_json(
            r#"{"type":"S3","bucket":"b","client_options":{"allow_http":"maybe"}}"#,
        )
        .unwrap();
        let e = S3Config::from_reference(&reference)
            .unwrap_err()
            .to_string();
        assert!(e.contains("client_options.allow_http"), "{e}");
    }

    #[test]
    fn no_bucket_is_a_clear_error() {
        let e = S3Builder::new("").build().unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
    }
}
