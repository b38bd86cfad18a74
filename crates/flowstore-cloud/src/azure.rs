//! Azure Blob Storage: [`Azure`], made by [`AzureBuilder`], configured by [`AzureConfig`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use flowstore_core::raw::clients::{self, Fingerprint};
use flowstore_core::raw::config::BackendConfig;
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{ExposeSecret, NoSecrets, SecretSource, SecretString};
use flowstore_core::{OpenContext, Result, StorageReference};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::{HttpConnector, ReqwestConnector};
use serde::{Deserialize, Serialize};

use crate::blobs::{ObjectStoreBlobs, ObjectStoreClient};
use crate::completion::{AzureCompletion, Retries};
use crate::engine::Engine;
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::storage::{
    builder_common, client_error, cloud_storage, env_var, null_as_default, parse_storage_url,
};

/// The reference type name.
pub const TYPE_NAME: &str = "Azure";

/// The environment variable (and default secret) holding the connection string.
pub const CONNECTION_STRING_ENV: &str = "AZURE_STORAGE_CONNECTION_STRING";

const SCRIPT_KEY_ERROR: &str = "A `blob_name` must be provided to show where flow `.py` file is stored in Azure or provide a `local_script_path` pointing to a local script that contains the flow.";

const EXAMPLE: &str = "az://container/prefix?account_name=myaccount";

/// Option keys refused by `with_config` (credentials are typed builder methods).
const CREDENTIAL_KEYS: &[&str] = &[
    "account_key",
    "access_key",
    "sas_token",
    "sas_key",
    "connection_string",
];

const CREDENTIAL_HINT: &str = "use AzureBuilder::account_key / sas_token, or name the secret holding the connection string with connection_string_secret";

/// The backend fields of an `Azure` reference (Prefect 1's names; `account_name`, `endpoint`,
/// `local_script_path` and `prefix` are flowstore's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AzureConfig {
    /// The container.
    pub container: String,
    /// The name of the secret holding the connection string (else
    /// `AZURE_STORAGE_CONNECTION_STRING`, when it is set).
    #[serde(default)]
    pub connection_string_secret: Option<String>,
    /// A fixed blob name (else `<prefix>/<slug>/<timestamp slug>`).
    #[serde(default)]
    pub blob_name: Option<String>,
    /// Replace an existing blob instead of refusing (default false).
    #[serde(default, deserialize_with = "null_as_default")]
    pub overwrite: bool,
    /// Script mode.
    #[serde(default, deserialize_with = "null_as_default")]
    pub stored_as_script: bool,
    /// The local script uploaded at `persist` in script mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_script_path: Option<String>,
    /// Key prefix for default keys (from `az://container/prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The storage account (else the connection string's `AccountName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    /// The blob endpoint, e.g. Azurite's `http://127.0.0.1:10000/devstoreaccount1` (else the
    /// connection string's, else `https://<account>.blob.core.windows.net`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl BackendConfig for AzureConfig {
    const TYPE_NAME: &'static str = TYPE_NAME;
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("container", "container"),
        ("connection_string_secret", "connection_string_secret"),
        ("blob_name", "blob_name"),
        ("overwrite", "overwrite"),
        ("prefix", "prefix"),
        ("stored_as_script", "stored_as_script"),
        ("local_script_path", "local_script_path"),
        ("account_name", "account_name"),
        ("account", "account_name"),
        ("endpoint", "endpoint"),
        ("endpoint_url", "endpoint"),
    ];
}

cloud_storage!(
    /// Flows in an Azure Blob Storage container. Made by [`AzureBuilder`]
    /// ([`Azure::builder`]), or opened from a reference or an `az://` / `azure://` URL.
    ///
    /// Uploads at `persist` are create-only unless [`overwrite`](AzureBuilder::overwrite):
    /// `If-None-Match: *` on the request that makes the blob appear (Put Blob for small ones;
    /// Put Block List for large ones, which upload in blocks streamed from disk), and
    /// `get_flow_to_file` streams to disk while verifying.
    Azure,
    AzureConfig
);

/// Builds an [`Azure`] storage.
///
/// Filled by typed setters, [`with_config`](AzureBuilder::with_config) pairs,
/// [`from_url`](AzureBuilder::from_url) or [`from_env`](AzureBuilder::from_env), which end in
/// the same configuration. [`build`](AzureBuilder::build) reads no environment variable for
/// anything the reference records.
///
/// Credentials, in order: the typed [`account_key`](AzureBuilder::account_key) or
/// [`sas_token`](AzureBuilder::sas_token) (with `account_name`); the connection string from
/// the secret named by `connection_string_secret` (secret sources, then the environment
/// variable of that name), else from `AZURE_STORAGE_CONNECTION_STRING` when it is set; then,
/// with an `account_name`, ambient credentials (`AZURE_STORAGE_ACCOUNT_KEY`, service principal
/// and workload identity variables, managed identity). A connection string's `AccountName` and
/// `BlobEndpoint` apply where the configuration records none. Credentials never enter the
/// reference, a log, an error or `Debug`.
///
/// ```
/// use flowstore_cloud::{Azure, AzureBuilder};
/// let storage = Azure::builder("flows")
///     .account_name("devstoreaccount1")
///     .endpoint("http://127.0.0.1:10000/devstoreaccount1")
///     .account_key(std::env::var("AZURITE_KEY").unwrap_or_else(|_| "a2V5".into()))
///     .build()?;
/// assert_eq!(storage.config().account_name.as_deref(), Some("devstoreaccount1"));
/// let from_url = AzureBuilder::from_url("az://flows/team?account_name=devstoreaccount1")?;
/// assert_eq!(from_url.config().prefix.as_deref(), Some("team"));
/// # Ok::<(), flowstore_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AzureBuilder {
    config: AzureConfig,
    index: FlowIndex,
    account_key: Option<SecretString>,
    sas_token: Option<SecretString>,
    retry: RetryPolicy,
    secrets: Arc<dyn SecretSource>,
}

builder_common!(AzureBuilder, AzureConfig);

impl Azure {
    /// A builder for storage in `container` (same as [`AzureBuilder::new`]).
    pub fn builder(container: impl Into<String>) -> AzureBuilder {
        AzureBuilder::new(container)
    }

    /// Opens an `Azure` reference (Prefect 1's included), with the connection string from
    /// `ctx`'s secret sources, then the environment.
    ///
    /// Errors with [`flowstore_core::Error::InvalidReference`] for fields that do not fit and
    /// [`flowstore_core::Error::Config`] as [`AzureBuilder::build`] does.
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<Azure> {
        AzureBuilder {
            config: AzureConfig::from_reference(reference)?,
            index: FlowIndex::from_reference(reference),
            ..AzureBuilder::new("")
        }
        .secrets(ctx.secrets.clone())
        .build()
    }

    /// Opens `az://container/prefix?options` (or `azure://`) as the registry does:
    /// [`AzureBuilder::from_env`], then the URL, then `ctx`'s script path and options.
    ///
    /// Errors as [`AzureBuilder::with_url`] and [`AzureBuilder::build`] do.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<Azure> {
        AzureBuilder::for_registry_url(url, ctx)?.build()
    }
}

impl AzureBuilder {
    /// Azure storage in `container`; nothing is read from the environment.
    pub fn new(container: impl Into<String>) -> Self {
        AzureBuilder {
            config: AzureConfig {
                container: container.into(),
                ..Default::default()
            },
            index: FlowIndex::default(),
            account_key: None,
            sas_token: None,
            retry: RetryPolicy::default(),
            secrets: Arc::new(NoSecrets),
        }
    }

    /// A builder configured from the standard variables, with no container yet (set one with
    /// [`container`](AzureBuilder::container) or [`with_url`](AzureBuilder::with_url)): the
    /// account from `AZURE_STORAGE_ACCOUNT_NAME` or `AZURE_STORAGE_ACCOUNT`, the endpoint from
    /// `AZURE_STORAGE_ENDPOINT`. What it reads is recorded in the reference. The connection
    /// string and credential variables are read by [`build`](AzureBuilder::build), never
    /// recorded.
    pub fn from_env() -> Self {
        let mut b = AzureBuilder::new("");
        if let Some(account) = env_var(&["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT"]) {
            b = b.account_name(account);
        }
        if let Some(endpoint) = env_var(&["AZURE_STORAGE_ENDPOINT"]) {
            b = b.endpoint(endpoint);
        }
        b
    }

    /// A builder from `az://container/prefix?options` (or `azure://`) alone: the host is the
    /// container, the path the prefix, every query pair goes through
    /// [`with_config`](AzureBuilder::with_config) (`account_name`, `endpoint`,
    /// `connection_string_secret`, `overwrite`, `label`…).
    ///
    /// Errors with [`flowstore_core::Error::Config`] for a URL that does not parse, another
    /// scheme, no container, credentials in the URL, or an option that is refused (naming it).
    pub fn from_url(url: &str) -> Result<Self> {
        AzureBuilder::new("").with_url(url)
    }

    /// Applies `az://container/prefix?options` over this builder: the container and prefix are
    /// replaced, the options set.
    ///
    /// Errors as [`from_url`](AzureBuilder::from_url) does.
    pub fn with_url(mut self, url: &str) -> Result<Self> {
        let parsed = parse_storage_url(url, &["az", "azure"], EXAMPLE)?;
        self.config.container = parsed.bucket;
        self.config.prefix = parsed.prefix;
        self.with_configs(parsed.pairs)
    }

    /// The container.
    pub fn container(mut self, container: impl Into<String>) -> Self {
        self.config.container = container.into();
        self
    }

    /// The name of the secret holding the connection string (recorded; agents resolve it).
    pub fn connection_string_secret(mut self, name: impl Into<String>) -> Self {
        self.config.connection_string_secret = Some(name.into());
        self
    }

    /// The storage account.
    pub fn account_name(mut self, account: impl Into<String>) -> Self {
        self.config.account_name = Some(account.into());
        self
    }

    /// The blob endpoint (Azurite, sovereign clouds, private endpoints).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.config.endpoint = Some(url.into());
        self
    }

    /// The account key (base64, as the portal shows it); never recorded.
    pub fn account_key(mut self, key: impl Into<SecretString>) -> Self {
        self.account_key = Some(key.into());
        self
    }

    /// A shared access signature (the query string, with or without `?`); never recorded.
    pub fn sas_token(mut self, token: impl Into<SecretString>) -> Self {
        self.sas_token = Some(token.into());
        self
    }

    /// A fixed blob name instead of `<prefix>/<slug>/<timestamp>` (one flow per storage).
    pub fn blob_name(mut self, name: impl Into<String>) -> Self {
        self.config.blob_name = Some(name.into());
        self
    }

    /// Replace an existing blob (default: refuse, as every flowstore backend does).
    pub fn overwrite(mut self, on: bool) -> Self {
        self.config.overwrite = on;
        self
    }

    /// The storage. Does no network I/O.
    ///
    /// Errors with [`flowstore_core::Error::Config`] when no credentials or account can be
    /// found (naming where the connection string was looked for), a connection string without
    /// `AccountName`, or a client that cannot be configured; with
    /// [`flowstore_core::Error::SecretNotFound`]-style errors when a secret source fails.
    pub fn build(self) -> Result<Azure> {
        Ok(self.build_inner()?)
    }

    fn build_inner(self) -> Result<Azure, Error> {
        if self.config.container.trim().is_empty() {
            return Err(Error::client(
                TYPE_NAME,
                format!("no container was given; name one (Azure::builder(\"container\"), or a URL like {EXAMPLE})"),
            ));
        }
        let typed = self.account_key.is_some() || self.sas_token.is_some();
        // The connection string: named secret (required), else the default one (optional).
        let (secret_name, conn) = match (&self.config.connection_string_secret, typed) {
            (_, true) => (None, None),
            (Some(name), false) => {
                let conn = flowstore_secrets::resolve_optional(name, self.secrets.as_ref())?;
                if conn.is_none() {
                    return Err(self.no_connection_string(name));
                }
                (Some(name.clone()), conn)
            }
            (None, false) => (
                Some(CONNECTION_STRING_ENV.to_string()),
                flowstore_secrets::resolve_optional(CONNECTION_STRING_ENV, self.secrets.as_ref())?,
            ),
        };
        let parts = conn
            .as_ref()
            .map(|c| parse_connection_string(c.expose_secret()))
            .unwrap_or_default();
        let account = match (&self.config.account_name, parts.get("accountname")) {
            (Some(a), _) => a.clone(),
            (None, Some(a)) => a.clone(),
            (None, None) if typed => {
                return Err(Error::client(
                    TYPE_NAME,
                    "an account_key or sas_token needs an account_name (AzureBuilder::account_name, or account_name= in the URL)",
                ))
            }
            (None, None) if conn.is_some() => {
                return Err(Error::client(
                    TYPE_NAME,
                    format!(
                        "the connection string in {} has no AccountName",
                        secret_name.unwrap_or_default()
                    ),
                ))
            }
            (None, None) => {
                return Err(self.no_connection_string(
                    secret_name.as_deref().unwrap_or(CONNECTION_STRING_ENV),
                ))
            }
        };
        let endpoint = match (&self.config.endpoint, parts.get("blobendpoint")) {
            (Some(e), _) | (None, Some(e)) => e.trim_end_matches('/').to_string(),
            (None, None) => format!(
                "{}://{account}.blob.{}",
                parts
                    .get("defaultendpointsprotocol")
                    .map(String::as_str)
                    .unwrap_or("https"),
                parts
                    .get("endpointsuffix")
                    .map(String::as_str)
                    .unwrap_or("core.windows.net")
            ),
        };
        let allow_http = endpoint.starts_with("http://");
        let key = self.account_key.clone().or_else(|| {
            parts
                .get("accountkey")
                .map(|k| SecretString::from(k.clone()))
        });
        let sas = self.sas_token.clone().or_else(|| {
            parts
                .get("sharedaccesssignature")
                .map(|s| SecretString::from(s.clone()))
        });
        // The client builder (and the credential chain's reading of the environment) only when
        // no storage in this process has built this client yet.
        let builder = || {
            let mut b = if key.is_some() || sas.is_some() {
                MicrosoftAzureBuilder::new()
            } else {
                credential_chain()
            };
            b = b
                .with_account(&account)
                .with_container_name(&self.config.container)
                .with_endpoint(endpoint.clone())
                .with_retry(self.retry.retry_config())
                .with_client_options(self.retry.client_options(allow_http));
            if let Some(key) = &key {
                b = b.with_access_key(key.expose_secret());
            } else if let Some(sas) = &sas {
                b = b.with_config(
                    AzureConfigKey::SasKey,
                    sas.expose_secret().trim_start_matches('?'),
                );
            }
            b
        };
        let fingerprint = Fingerprint::new("azure")
            .part("account", &account)
            .part("container", &self.config.container)
            .part("endpoint", &endpoint)
            .part("retry", self.retry)
            .secret("connection string", conn.as_ref())
            .secret("key", key.as_ref())
            .secret("sas", sas.as_ref())
            .env(&["AZURE_"]);
        let client_options = self.retry.client_options(allow_http);
        let container_url = format!(
            "{endpoint}/{}",
            crate::completion::encode_value(&self.config.container)
        );
        let retries = Retries {
            max_retries: self.retry.max_retries,
        };
        let client = clients::shared(fingerprint, || {
            let failed = |e| {
                let shown: Vec<&SecretString> = [&conn, &key, &sas].into_iter().flatten().collect();
                client_error(TYPE_NAME, "the Azure client", e, &shown)
            };
            let azure = Arc::new(builder().build().map_err(failed)?);
            let http = ReqwestConnector::default()
                .connect(&client_options)
                .map_err(failed)?;
            let completion = AzureCompletion {
                azure: azure.clone(),
                http,
                container_url,
                account: account.clone(),
                retries,
            };
            Ok::<_, Error>(ObjectStoreClient {
                store: azure.clone(),
                multipart: azure,
                create_only: Some(Arc::new(completion)),
            })
        })?;
        let display = format!("az://{}", self.config.container);
        let blobs = ObjectStoreBlobs {
            backend: TYPE_NAME,
            display: display.clone(),
            client,
        };
        let mut engine = Engine::new(TYPE_NAME, display, Arc::new(blobs), SCRIPT_KEY_ERROR);
        engine.prefix = self.config.prefix.clone();
        engine.fixed_key = self.config.blob_name.clone();
        engine.stored_as_script = self.config.stored_as_script;
        engine.local_script_path = self.config.local_script_path.as_ref().map(PathBuf::from);
        engine.overwrite = self.config.overwrite;
        engine.index = self.index;
        Ok(Azure {
            engine,
            config: self.config,
        })
    }

    fn no_connection_string(&self, secret_name: &str) -> Error {
        Error::client(
            TYPE_NAME,
            format!(
                "Azure connection string not provided. Set the {secret_name} secret or environment variable \
                 (searched: {}, then the environment), or give an account_name with an account_key, \
                 a sas_token or ambient credentials",
                self.secrets.describe()
            ),
        )
    }
}

/// A client builder with the standard credential variables (account key, SAS, service
/// principal, workload and managed identity) and nothing else from the environment: account,
/// container and endpoint come from the configuration.
fn credential_chain() -> MicrosoftAzureBuilder {
    use AzureConfigKey as K;
    let mut b = MicrosoftAzureBuilder::new();
    for (name, value) in std::env::vars() {
        if !name.starts_with("AZURE_") {
            continue;
        }
        let Ok(key) = name.to_ascii_lowercase().parse::<AzureConfigKey>() else {
            continue;
        };
        if matches!(
            key,
            K::AccessKey
                | K::SasKey
                | K::Token
                | K::ClientId
                | K::ClientSecret
                | K::AuthorityId
                | K::AuthorityHost
                | K::MsiEndpoint
                | K::ObjectId
                | K::MsiResourceId
                | K::FederatedTokenFile
                | K::UseAzureCli
        ) {
            b = b.with_config(key, value);
        }
    }
    if let Ok(endpoint) = std::env::var("IDENTITY_ENDPOINT") {
        b = b.with_msi_endpoint(endpoint);
    }
    b
}

/// `Key=Value;Key=Value` with lower-cased keys (values may contain `=`).
fn parse_connection_string(s: &str) -> BTreeMap<String, String> {
    s.split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_azurite_and_sas_connection_strings() {
        let p = parse_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=abc==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        );
        assert_eq!(p["accountname"], "devstoreaccount1");
        assert_eq!(p["accountkey"], "abc==");
        assert_eq!(p["blobendpoint"], "http://127.0.0.1:10000/devstoreaccount1");
        let p = parse_connection_string("AccountName=a;SharedAccessSignature=sv=2020&sig=x%3D");
        assert_eq!(p["sharedaccesssignature"], "sv=2020&sig=x%3D");
    }

    #[test]
    fn setters_options_and_urls_end_in_the_same_config() {
        let typed = AzureBuilder::new("c")
            .account_name("acct")
            .endpoint("http://127.0.0.1:10000/acct")
            .overwrite(true)
            .prefix("p")
            .label("eu");
        let url = AzureBuilder::from_url(
            "azure://c/p?account=acct&endpoint=http://127.0.0.1:10000/acct&overwrite=true&label=eu",
        )
        .unwrap();
        assert_eq!(typed.config(), url.config());
        assert_eq!(typed.index.labels, url.index.labels);
        let e = AzureBuilder::from_url("az://c?account_key=x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"account_key\" is a credential"), "{e}");
        let e = AzureBuilder::from_url("az://c?acount_name=x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"acount_name\"") && e.contains("account_name"),
            "{e}"
        );
    }

    #[test]
    fn typed_key_needs_an_account() {
        let e = AzureBuilder::new("c")
            .account_key("a2V5")
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("account_name"), "{e}");
    }
}
