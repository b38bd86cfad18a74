//! `Webhook` storage: the flow is sent to an HTTP endpoint at `build` and fetched with a second
//! request at run time.
//!
//! Like Prefect 1's, a Webhook storage holds **one** flow: a second `add_flow` replaces the first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::raw::sink::{file_digest, FlowFileSink};
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource};
use flowstore_core::{
    async_trait, key, Error as CoreError, FetchedFlow, FlowInput, OpenContext, Result, Storage,
    StorageReference,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::method::HttpMethod;
use crate::request::{send, validate_kwargs, Body, RequestSpec, Retry};

/// The reference type name.
pub const TYPE_NAME: &str = "Webhook";

/// The largest flow `get_flow` holds in memory; larger ones are fetched with `get_flow_to_file`.
pub const MAX_IN_MEMORY: u64 = 2 << 30;

/// The backend fields of a `Webhook` reference (Prefect 1's names). The kwargs keep their
/// `${NAME}` templates; rendered values are never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookFields {
    /// Arguments of the build request (`url`, `headers`, `params`, `timeout`, `auth`, …).
    pub build_request_kwargs: Value,
    /// Method of the build request.
    pub build_request_http_method: HttpMethod,
    /// Arguments of the get request.
    pub get_flow_request_kwargs: Value,
    /// Method of the get request.
    pub get_flow_request_http_method: HttpMethod,
    /// Script mode.
    #[serde(default)]
    pub stored_as_script: bool,
    /// The script sent at build in script mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_script_path: Option<String>,
    /// URL mode (flowstore extension): each added flow is sent to `<key_base_url>/<flow key>`, a
    /// fresh key per registration, so registrations never share a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base_url: Option<String>,
}

/// What `add_flow` staged for `build`.
#[derive(Debug, Clone)]
enum Staged {
    Serialized { name: String, bytes: Bytes },
    Script { name: String, path: PathBuf },
}

/// Flows stored and fetched through any HTTP service.
///
/// ```
/// use flowstore_webhook::Webhook;
/// let storage = Webhook::new(
///     serde_json::json!({"url": "https://files.example/flows/etl", "headers": {"Authorization": "Bearer ${FILES_TOKEN}"}}),
///     "PUT",
///     serde_json::json!({"url": "https://files.example/flows/etl", "headers": {"Authorization": "Bearer ${FILES_TOKEN}"}}),
///     "GET",
/// ).unwrap();
/// assert!(Webhook::new(serde_json::json!({"url": "x"}), "DELETE", serde_json::json!({"url": "x"}), "GET")
///     .unwrap_err().to_string().contains("\"DELETE\" is not supported"));
/// # drop(storage);
/// ```
#[derive(Clone)]
pub struct Webhook {
    fields: WebhookFields,
    index: FlowIndex,
    staged: Option<Staged>,
    secrets: Arc<dyn SecretSource>,
    retry: Retry,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The kwargs are templates (no rendered secrets), so they are safe to show.
        f.debug_struct("Webhook")
            .field("fields", &self.fields)
            .field("flows", &self.index.flows)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Webhook {
    /// A Webhook storage in serialized mode.
    ///
    /// Errors with [`Error::Config`] for a method other than GET/PATCH/POST/PUT (naming it) or
    /// kwargs without a `url`.
    pub fn new(
        build_request_kwargs: Value,
        build_request_http_method: &str,
        get_flow_request_kwargs: Value,
        get_flow_request_http_method: &str,
    ) -> Result<Self, Error> {
        Self::from_fields(WebhookFields {
            build_request_kwargs,
            build_request_http_method: HttpMethod::parse(build_request_http_method)?,
            get_flow_request_kwargs,
            get_flow_request_http_method: HttpMethod::parse(get_flow_request_http_method)?,
            stored_as_script: false,
            flow_script_path: None,
            key_base_url: None,
        })
    }

    fn from_fields(fields: WebhookFields) -> Result<Self, Error> {
        validate_kwargs("build_request_kwargs", &fields.build_request_kwargs)?;
        validate_kwargs("get_flow_request_kwargs", &fields.get_flow_request_kwargs)?;
        if fields.stored_as_script && fields.flow_script_path.is_none() {
            return Err(Error::Config(
                "script mode needs `flow_script_path`, the script sent at build".to_string(),
            ));
        }
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::Config(format!("cannot create the HTTP client: {e}")))?;
        Ok(Webhook {
            fields,
            index: FlowIndex::default(),
            staged: None,
            secrets: Arc::new(NoSecrets),
            retry: Retry::default(),
            client,
        })
    }

    /// Script mode: `build` sends the script at `path` (streamed), `get_flow` returns its source.
    pub fn script(mut self, path: impl Into<PathBuf>) -> Self {
        self.fields.stored_as_script = true;
        self.fields.flow_script_path = Some(path.into().display().to_string());
        self
    }

    /// Where `${NAME}` templates look after the environment.
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// The retry policy.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Opens a `Webhook` reference.
    ///
    /// Errors with [`CoreError::InvalidReference`] or [`CoreError::Config`] for bad fields.
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<Self> {
        let fields: WebhookFields = reference.backend_fields()?;
        let mut storage = Self::from_fields(fields)?.with_secrets(ctx.secrets.clone());
        storage.index = FlowIndex::from_reference(reference);
        Ok(storage)
    }

    /// Opens `http(s)://host/path` as PUT + GET of `<url>/<flow key>` (script mode for the
    /// context's `script_path`).
    ///
    /// Errors with [`CoreError::Config`] for a URL that does not parse.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        reqwest::Url::parse(&base).map_err(|e| {
            CoreError::config(format!("Webhook storage URL \"{url}\" is not a URL: {e}"))
        })?;
        let kwargs = serde_json::json!({ "url": base });
        let mut storage =
            Self::new(kwargs.clone(), "PUT", kwargs, "GET")?.with_secrets(ctx.secrets.clone());
        if let Some(script) = &ctx.script_path {
            storage = storage.script(script);
        }
        storage.fields.key_base_url = Some(base);
        Ok(storage)
    }

    fn spec_build(&self) -> RequestSpec<'_> {
        RequestSpec {
            what: "build request",
            method: self.fields.build_request_http_method,
            kwargs: &self.fields.build_request_kwargs,
        }
    }

    fn spec_get(&self) -> RequestSpec<'_> {
        RequestSpec {
            what: "get_flow request",
            method: self.fields.get_flow_request_http_method,
            kwargs: &self.fields.get_flow_request_kwargs,
        }
    }

    async fn fetch(&self, name: &str) -> Result<reqwest::Response, Error> {
        self.index.location(name)?;
        let resp = send(
            &self.client,
            self.spec_get(),
            &Body::None,
            self.secrets.as_ref(),
            &self.retry,
        )
        .await?;
        tracing::info!(flow = name, url = %self.spec_get().url_template(), "fetched flow");
        Ok(resp)
    }
}

#[async_trait]
impl Storage for Webhook {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn index(&self) -> &FlowIndex {
        &self.index
    }

    fn index_mut(&mut self) -> &mut FlowIndex {
        &mut self.index
    }

    fn capabilities(&self) -> flowstore_core::Capabilities {
        let script = self.fields.stored_as_script;
        flowstore_core::Capabilities {
            write: true,
            many_flows: false,
            serialized: !script,
            script,
            list_versions: false,
            stream_to_file: true,
        }
    }

    /// Stages the flow for `build`. A Webhook storage holds one flow: a flow added before is
    /// replaced (with a warning), as in the reference system.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        flowstore_core::validate_flow_name(flow.name())?;
        if let Some(old) = self.index.flows.keys().next() {
            tracing::warn!(old = %old, new = flow.name(), "Webhook storage holds one flow; replacing the one added before");
        }
        self.index.flows.clear();
        self.index.digests.clear();
        if let Some(base) = &self.fields.key_base_url {
            let url = format!("{base}/{}", key::new_flow_key(flow.name()));
            self.fields.build_request_kwargs["url"] = Value::String(url.clone());
            self.fields.get_flow_request_kwargs["url"] = Value::String(url);
        }
        let name = flow.name().to_string();
        self.staged = Some(match (flow, self.fields.stored_as_script) {
            (_, true) => Staged::Script {
                name: name.clone(),
                path: PathBuf::from(self.fields.flow_script_path.clone().expect("validated")),
            },
            (FlowInput::Serialized(sealed), false) => Staged::Serialized {
                name: name.clone(),
                bytes: sealed.bytes,
            },
            (FlowInput::Script { .. }, false) => {
                return Err(CoreError::config(format!(
                    "Flow \"{name}\" is a script flow, but this Webhook storage sends serialized flows; \
                     use Webhook::script(path)"
                )))
            }
        });
        let location = self.spec_get().url_template();
        self.index.insert(&name, location.clone(), None)?;
        Ok(location)
    }

    /// Sends the staged flow with the build request (retrying per the policy) and records its
    /// digest.
    async fn persist(&mut self) -> Result<()> {
        let Some(staged) = self.staged.clone() else {
            return Ok(());
        };
        let (name, body, digest) = match staged {
            Staged::Serialized { name, bytes } => {
                let digest = flowstore_core::envelope::sha256_digest(&bytes);
                (name, Body::Bytes(bytes), digest)
            }
            Staged::Script { name, path } => {
                let p = path.clone();
                let digest = tokio::task::spawn_blocking(move || file_digest(&p))
                    .await
                    .map_err(|e| {
                        CoreError::backend(TYPE_NAME, format!("digest task failed: {e}"))
                    })??;
                (name, Body::File(path), digest)
            }
        };
        let sent = send(
            &self.client,
            self.spec_build(),
            &body,
            self.secrets.as_ref(),
            &self.retry,
        )
        .await;
        if let Err(Error::Status { status, .. }) = &sent {
            if status.starts_with("412") {
                return Err(CoreError::AlreadyExists {
                    location: self.spec_build().url_template(),
                });
            }
        }
        sent?;
        tracing::info!(flow = %name, url = %self.spec_build().url_template(), "sent flow");
        self.index.digests.insert(name, digest);
        self.staged = None;
        Ok(())
    }

    /// Fetches the flow; a response cut off mid-body is fetched again (bounded by the retry
    /// policy), never returned partial.
    async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        let mut attempt = 0u32;
        let bytes = loop {
            attempt += 1;
            let resp = self.fetch(name).await?;
            if resp.content_length().is_some_and(|n| n > MAX_IN_MEMORY) {
                return Err(CoreError::config(format!(
                    "Flow \"{name}\" at {location} is larger than {MAX_IN_MEMORY} bytes; fetch it to a file \
                     (get_flow_to_file, or `flowstore fetch -o FILE`)"
                )));
            }
            match resp.bytes().await {
                Ok(b) => break b,
                Err(e) if attempt <= self.retry.max_retries => {
                    tracing::warn!(flow = name, attempt, error = %e.without_url(), "response body cut off; fetching again");
                    tokio::time::sleep(self.retry.base_delay).await;
                }
                Err(e) => {
                    return Err(Error::Transport {
                        what: "get_flow request",
                        method: self
                            .fields
                            .get_flow_request_http_method
                            .as_str()
                            .to_string(),
                        url: location,
                        attempts: attempt,
                        reason: format!("reading the body: {}", e.without_url()),
                    }
                    .into())
                }
            }
        };
        if self.fields.stored_as_script {
            self.index.open_script(name, &location, None, bytes, None)
        } else {
            self.index.open_serialized(name, &location, None, bytes)
        }
    }

    fn reference(&self) -> Result<StorageReference> {
        let mut reference = StorageReference::new(TYPE_NAME, &self.fields)?;
        self.index.fill_reference(&mut reference, self.labels());
        Ok(reference)
    }

    /// Streams the response to `dest`, verifying as it goes; `dest` appears only if everything
    /// checked out, and an existing file is never replaced.
    async fn get_flow_to_file(&self, name: &str, dest: &Path) -> Result<FetchedFlow> {
        let mut resp = self.fetch(name).await?;
        let location = self.index.location(name)?.to_string();
        let mut sink = FlowFileSink::create(
            &self.index,
            name,
            &location,
            dest,
            !self.fields.stored_as_script,
        )?;
        while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Transport {
            what: "get_flow request",
            method: self
                .fields
                .get_flow_request_http_method
                .as_str()
                .to_string(),
            url: location.clone(),
            attempts: 1,
            reason: format!("reading the body: {}", e.without_url()),
        })? {
            sink.push(&chunk)?;
        }
        sink.finish(None)
    }
}
