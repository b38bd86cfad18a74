//! Azure Blob Storage.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource};
use flowstore_core::{Error as CoreError, OpenContext, Result, StorageReference};
use flowstore_secrets::ExposeSecret;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use serde::{Deserialize, Serialize};

use crate::blobs::ObjectStoreBlobs;
use crate::engine::Engine;
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::storage::{split_url, CloudStorage, Fields};

/// The reference type name.
pub const TYPE_NAME: &str = "Azure";

/// The environment variable (and default secret) holding the connection string.
pub const CONNECTION_STRING_ENV: &str = "AZURE_STORAGE_CONNECTION_STRING";

const SCRIPT_KEY_ERROR: &str = "A `blob_name` must be provided to show where flow `.py` file is stored in Azure or provide a `local_script_path` pointing to a local script that contains the flow.";

/// The backend fields of an `Azure` reference (Prefect 1's names; `local_script_path` and
/// `prefix` are flowstore's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AzureFields {
    /// The container.
    pub container: String,
    /// The name of the secret holding the connection string (else `AZURE_STORAGE_CONNECTION_STRING`).
    #[serde(default)]
    pub connection_string_secret: Option<String>,
    /// A fixed blob name (else `<slug>/<timestamp slug>`).
    #[serde(default)]
    pub blob_name: Option<String>,
    /// Replace an existing blob instead of refusing (default false).
    #[serde(default)]
    pub overwrite: bool,
    /// Script mode.
    #[serde(default)]
    pub stored_as_script: bool,
    /// The local script uploaded at build in script mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_script_path: Option<String>,
    /// Key prefix for default keys (from `az://container/prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Builds Azure Blob storage.
///
/// The connection string comes from the secret named by `connection_string_secret` (secret
/// sources, then the environment variable of that name), else `AZURE_STORAGE_CONNECTION_STRING`.
/// A string with `AccountKey=` or `SharedAccessSignature=` is used as is; one without means
/// ambient credentials (managed identity, workload identity, `AZURE_*` variables).
#[derive(Debug, Clone)]
pub struct Azure {
    fields: AzureFields,
    retry: RetryPolicy,
    secrets: Arc<dyn SecretSource>,
}

impl Azure {
    /// Azure storage in `container`.
    pub fn new(container: impl Into<String>) -> Self {
        Azure {
            fields: AzureFields {
                container: container.into(),
                ..Default::default()
            },
            retry: RetryPolicy::default(),
            secrets: Arc::new(NoSecrets),
        }
    }

    /// The secret holding the connection string.
    pub fn connection_string_secret(mut self, name: impl Into<String>) -> Self {
        self.fields.connection_string_secret = Some(name.into());
        self
    }

    /// A fixed blob name.
    pub fn blob_name(mut self, name: impl Into<String>) -> Self {
        self.fields.blob_name = Some(name.into());
        self
    }

    /// Replace an existing blob (default: refuse, as every flowstore backend does).
    pub fn overwrite(mut self, on: bool) -> Self {
        self.fields.overwrite = on;
        self
    }

    /// Script mode: upload this local script at build.
    pub fn script(mut self, local_script_path: impl Into<PathBuf>) -> Self {
        self.fields.stored_as_script = true;
        self.fields.local_script_path = Some(local_script_path.into().display().to_string());
        self
    }

    /// Script mode without a local script: `blob_name` names a script already uploaded.
    pub fn stored_as_script(mut self, on: bool) -> Self {
        self.fields.stored_as_script = on;
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

    /// Where the connection-string secret is looked up (then the environment).
    pub fn secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// The storage.
    ///
    /// Errors with [`CoreError::Config`] when no connection string is found (naming where it was
    /// looked for) or it cannot be used.
    pub fn build(self) -> Result<CloudStorage> {
        Ok(self.build_inner()?)
    }

    fn build_inner(self) -> Result<CloudStorage, Error> {
        let secret_name = self
            .fields
            .connection_string_secret
            .clone()
            .unwrap_or_else(|| CONNECTION_STRING_ENV.to_string());
        let conn = flowstore_secrets::resolve_optional(&secret_name, self.secrets.as_ref())?.ok_or_else(|| {
            Error::Client {
                backend: TYPE_NAME,
                message: format!(
                    "Azure connection string not provided. Set the {secret_name} secret or environment variable \
                     (searched: {}, then the environment)",
                    self.secrets.describe()
                ),
            }
        })?;
        let parts = parse_connection_string(conn.expose_secret());
        let account = parts
            .get("accountname")
            .cloned()
            .ok_or_else(|| Error::Client {
                backend: TYPE_NAME,
                message: format!("the connection string in {secret_name} has no AccountName"),
            })?;
        let endpoint = match parts.get("blobendpoint") {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!(
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
        let mut b =
            if parts.contains_key("accountkey") || parts.contains_key("sharedaccesssignature") {
                MicrosoftAzureBuilder::new()
            } else {
                // Ambient credentials: managed identity, workload identity, AZURE_* variables.
                MicrosoftAzureBuilder::from_env()
            };
        b = b
            .with_account(&account)
            .with_container_name(&self.fields.container)
            .with_endpoint(endpoint.clone())
            .with_retry(self.retry.retry_config())
            .with_client_options(self.retry.client_options(allow_http));
        if let Some(key) = parts.get("accountkey") {
            b = b.with_access_key(key);
        } else if let Some(sas) = parts.get("sharedaccesssignature") {
            b = b.with_config(AzureConfigKey::SasKey, sas);
        }
        let store = b.build().map_err(|e| Error::Client {
            backend: TYPE_NAME,
            message: flowstore_secrets::redact(&e.to_string(), &[&conn]),
        })?;
        let display = format!("az://{}", self.fields.container);
        let blobs = ObjectStoreBlobs {
            backend: TYPE_NAME,
            display: display.clone(),
            store: Arc::new(store),
        };
        let mut engine = Engine::new(TYPE_NAME, display, Arc::new(blobs));
        engine.prefix = self.fields.prefix.clone();
        engine.fixed_key = self.fields.blob_name.clone();
        engine.stored_as_script = self.fields.stored_as_script;
        engine.local_script_path = self.fields.local_script_path.as_ref().map(PathBuf::from);
        engine.overwrite = self.fields.overwrite;
        Ok(CloudStorage {
            engine,
            fields: Fields::Azure(self.fields),
            script_key_error: SCRIPT_KEY_ERROR,
        })
    }

    /// Opens an `Azure` reference (Prefect 1's included).
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<CloudStorage> {
        let fields: AzureFields = reference.backend_fields()?;
        let mut storage = Azure {
            fields,
            retry: RetryPolicy::default(),
            secrets: ctx.secrets.clone(),
        }
        .build()?;
        storage.engine.index = FlowIndex::from_reference(reference);
        Ok(storage)
    }

    /// Opens `az://container/prefix` (or `azure://`), with the connection string from
    /// `AZURE_STORAGE_CONNECTION_STRING`.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<CloudStorage> {
        let (container, prefix) = split_url(url, &["az", "azure"]).ok_or_else(|| {
            CoreError::config(format!(
                "Azure storage URL \"{url}\" must look like az://container/prefix"
            ))
        })?;
        let mut azure = Azure::new(container).secrets(ctx.secrets.clone());
        if let Some(p) = prefix {
            azure = azure.prefix(p);
        }
        if let Some(script) = &ctx.script_path {
            azure = azure.script(script);
        }
        azure.build()
    }
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
}
