//! `Webhook` storage: the flow is sent to an HTTP endpoint at `persist` and fetched with a second
//! request at run time.
//!
//! Like Prefect 1's, a Webhook storage holds **one** flow: a second `add_flow` replaces the first.
//! A [`WebhookBuilder`] makes a [`Webhook`]: typed setters, [`WebhookBuilder::with_config`] pairs
//! or an `http(s)://` URL ([`WebhookBuilder::from_url`]), all ending in the same
//! [`WebhookConfig`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::bundle::{self, BundleInput, ScannedBundle};
use flowstore_core::envelope::SealedFlow;
use flowstore_core::raw::config::BackendConfig;
use flowstore_core::raw::sink::{file_digest, FlowFileSink};
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::SecretSource;
use flowstore_core::{
    async_trait, key, Error as CoreError, FetchedFlow, FlowInput, OpenContext, Result, Storage,
    StorageReference, StoredVersion,
};
use serde_json::Value;

use crate::builder::WebhookBuilder;
use crate::config::WebhookConfig;
use crate::error::{Error, BUILD_REQUEST, GET_FLOW_REQUEST};
use crate::method::HttpMethod;
use crate::request::{send, Body, Credential, RequestSpec, Retry};

/// The reference type name.
pub const TYPE_NAME: &str = "Webhook";

/// The largest flow `get_flow` holds in memory; larger ones are fetched with `get_flow_to_file`.
pub const MAX_IN_MEMORY: u64 = 2 << 30;

/// What `add_flow` staged for `persist`.
#[derive(Debug, Clone)]
pub(crate) enum Staged {
    Serialized {
        name: String,
        sealed: SealedFlow,
    },
    Script {
        name: String,
        path: PathBuf,
    },
    /// A bundle (URL mode): its blobs are uploaded at `persist`, then its manifest is sent as
    /// the flow.
    Bundle {
        input: BundleInput,
        scanned: ScannedBundle,
    },
}

/// Flows stored and fetched through any HTTP service (made by [`WebhookBuilder`]).
///
/// ```
/// use flowstore_webhook::{HttpMethod, Webhook};
/// let kwargs = serde_json::json!({
///     "url": "https://files.example/flows/etl",
///     "headers": {"Authorization": "Bearer ${FILES_TOKEN}"},
/// });
/// let storage = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get).build()?;
/// assert_eq!(storage.config().build_request_http_method, HttpMethod::Put);
/// assert!("DELETE".parse::<HttpMethod>().unwrap_err().to_string().contains("\"DELETE\" is not supported"));
/// # Ok::<(), flowstore_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Webhook {
    pub(crate) config: WebhookConfig,
    pub(crate) index: FlowIndex,
    pub(crate) staged: Option<Staged>,
    pub(crate) secrets: Arc<dyn SecretSource>,
    pub(crate) retry: Retry,
    pub(crate) credential: Option<Credential>,
    pub(crate) client: reqwest::Client,
    /// Set once a server answered a ranged blob read with the whole blob (warned about once).
    pub(crate) range_ignored: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The kwargs are templates (no rendered secrets), so they are safe to show; a typed
        // credential shows as redacted.
        f.debug_struct("Webhook")
            .field("config", &self.config)
            .field("flows", &self.index.flows)
            .field("retry", &self.retry)
            .field("credential", &self.credential)
            .finish()
    }
}

impl Webhook {
    /// A builder for the two requests (see [`WebhookBuilder::new`]).
    pub fn builder(
        build_request_kwargs: Value,
        build_request_http_method: HttpMethod,
        get_flow_request_kwargs: Value,
        get_flow_request_http_method: HttpMethod,
    ) -> WebhookBuilder {
        WebhookBuilder::new(
            build_request_kwargs,
            build_request_http_method,
            get_flow_request_kwargs,
            get_flow_request_http_method,
        )
    }

    /// The configuration, as [`Storage::reference`] records it (in URL mode the kwargs' `url`
    /// is the last added flow's).
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Opens a `Webhook` reference; `${NAME}` templates are rendered from the environment, then
    /// the context's secret sources.
    ///
    /// Errors with [`CoreError::InvalidReference`] for fields of the wrong shape (a method other
    /// than GET/PATCH/POST/PUT) and [`CoreError::Config`] for fields that cannot work (no url).
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<Self> {
        let mut builder = WebhookBuilder::from_config(WebhookConfig::from_reference(reference)?)
            .secret_sources(ctx.secrets.clone());
        builder.index = FlowIndex::from_reference(reference);
        builder.build()
    }

    /// Opens `http(s)://host/path?option=value…` ([`WebhookBuilder::from_url`]), in script mode
    /// for the context's `script_path`, then applies the context's `options`; templates are
    /// rendered from the environment, then the context's secret sources.
    ///
    /// Errors as [`WebhookBuilder::from_url`] and [`WebhookBuilder::build`] do.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<Self> {
        let mut builder = WebhookBuilder::from_url(url)?.secret_sources(ctx.secrets.clone());
        if let Some(script) = &ctx.script_path {
            builder = builder.script(script);
        }
        builder
            .with_configs(ctx.options.iter().map(|(k, v)| (k, v)))?
            .build()
    }

    fn spec_build(&self) -> RequestSpec<'_> {
        RequestSpec {
            what: BUILD_REQUEST,
            method: self.config.build_request_http_method.into(),
            kwargs: &self.config.build_request_kwargs,
        }
    }

    fn spec_get(&self) -> RequestSpec<'_> {
        RequestSpec {
            what: GET_FLOW_REQUEST,
            method: self.config.get_flow_request_http_method.into(),
            kwargs: &self.config.get_flow_request_kwargs,
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
            self.credential.as_ref(),
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
        let script = self.config.stored_as_script;
        let url_mode = self.config.key_base_url.is_some();
        flowstore_core::Capabilities {
            write: true,
            many_flows: false,
            serialized: !script,
            script,
            // URL mode keeps each registration at a URL of its own: listed from the server's
            // JSON directory listings, deleted with DELETE (a server that cannot answers with
            // an error saying what it must allow).
            list_versions: url_mode,
            stream_to_file: true,
            bundles: self.holds_bundles(),
            delete_versions: url_mode,
        }
    }

    /// Stages the flow for `persist`. A Webhook storage holds one flow: a flow added before is
    /// replaced (with a warning), as in the reference system. A bundle (URL mode only) is
    /// scanned here and its manifest staged as the flow; `persist` uploads its blobs.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        flowstore_core::validate_flow_name(flow.name())?;
        // Scanned before anything changes: a refused bundle leaves the storage as it was.
        let scanned = match &flow {
            FlowInput::Bundle(input) => Some(self.scan_bundle(input).await?),
            _ => None,
        };
        if let Some(old) = self.index.flows.keys().next() {
            tracing::warn!(old = %old, new = flow.name(), "Webhook storage holds one flow; replacing the one added before");
        }
        self.index.flows.clear();
        self.index.digests.clear();
        self.index.transfers.clear();
        if let Some(base) = &self.config.key_base_url {
            let url = format!("{base}/{}", key::new_flow_key(flow.name()));
            self.config.build_request_kwargs["url"] = Value::String(url.clone());
            self.config.get_flow_request_kwargs["url"] = Value::String(url);
        }
        let name = flow.name().to_string();
        self.staged = Some(match (flow, self.config.stored_as_script) {
            (_, true) => Staged::Script {
                name: name.clone(),
                path: PathBuf::from(self.config.flow_script_path.clone().expect("validated")),
            },
            (FlowInput::Serialized(sealed), false) => Staged::Serialized {
                name: name.clone(),
                sealed,
            },
            (FlowInput::Bundle(input), false) => Staged::Bundle {
                input,
                scanned: scanned.expect("a bundle is scanned above"),
            },
            (FlowInput::Script { .. }, false) => {
                return Err(CoreError::config(format!(
                    "Flow \"{name}\" is a script flow, but this Webhook storage sends serialized flows; \
                     use WebhookBuilder::script(path)"
                )))
            }
        });
        let location = self.spec_get().url_template();
        self.index.insert(&name, location.clone(), None)?;
        Ok(location)
    }

    /// Sends the staged flow with the build request (retrying per the policy) and records its
    /// digest. A bundle's missing blobs are uploaded first, then its manifest is sent as the
    /// flow, so a stored manifest never names a blob the server lacks.
    async fn persist(&mut self) -> Result<()> {
        let Some(staged) = self.staged.clone() else {
            return Ok(());
        };
        let mut transfer = None;
        let (name, body, digest) = match staged {
            Staged::Serialized { name, sealed } => {
                let digest = sealed.digest();
                (name, Body::Sealed(sealed), digest)
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
            Staged::Bundle { input, scanned } => {
                let report = bundle::upload(
                    &self.blobs(bundle::BlobArea::Live),
                    &scanned,
                    input.progress.as_ref(),
                )
                .await?;
                let manifest = scanned.manifest;
                transfer = Some((report, manifest.files().len()));
                (
                    input.name,
                    Body::Bytes(manifest.bytes().clone()),
                    manifest.digest(),
                )
            }
        };
        let sent = send(
            &self.client,
            self.spec_build(),
            &body,
            self.secrets.as_ref(),
            &self.retry,
            self.credential.as_ref(),
        )
        .await;
        if let Err(Error::Status { code: 412, .. }) = &sent {
            return Err(CoreError::AlreadyExists {
                location: self.spec_build().url_template(),
            });
        }
        if let (Err(_), Body::Sealed(sealed)) = (&sent, &body) {
            // A flow streamed from its file fails the request when the file changed after it
            // was sealed; the transport may report that only as a broken request: say why.
            if let Err(e) = still_as_sealed(sealed).await {
                return Err(CoreError::io(
                    format!("Flow \"{name}\": sending it with the build request"),
                    e,
                ));
            }
        }
        sent?;
        tracing::info!(flow = %name, url = %self.spec_build().url_template(), "sent flow");
        if let (Some((mut report, files)), Body::Bytes(manifest)) = (transfer, &body) {
            report.add_object(manifest.len() as u64);
            tracing::info!(flow = %name, files, uploaded = report.objects, reused = report.reused_objects, "stored bundle");
            self.index.transfers.insert(name.clone(), report);
        }
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
                        what: GET_FLOW_REQUEST,
                        method: self
                            .config
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
        if self.config.stored_as_script {
            self.index.open_script(name, &location, None, bytes, None)
        } else {
            self.index.open_serialized(name, &location, None, bytes)
        }
    }

    /// URL mode: reads the server's JSON directory listing of `<url>/` (the flow slugs) and of
    /// `<url>/<slug>/` (the versions; size and time from the listing), then the first 4 KiB of
    /// each version (a ranged `GET`, several at once) for its flow's name and whether it is a
    /// bundle. Newest first.
    ///
    /// Errors: [`CoreError::Unsupported`] outside URL mode (one fixed url holds no versions), and
    /// for a server that does not answer a directory `GET` with a JSON listing (naming the URL
    /// and saying it must serve them: nginx `autoindex on; autoindex_format json;`); 401
    /// [`CoreError::PermissionDenied`].
    async fn list_versions(&self, flow: Option<&str>) -> Result<Vec<StoredVersion>> {
        self.list_url_versions(flow).await
    }

    /// URL mode: an HTTP `DELETE` of the version's URL with the get_flow request's arguments
    /// (headers, auth, params); 404 or 410 (already gone) is success.
    ///
    /// Errors: [`CoreError::Config`] (nothing sent) for a location that is not
    /// `<url>/<flow slug>/<timestamp slug>` of this storage; [`CoreError::Unsupported`] outside
    /// URL mode, and when the server does not allow `DELETE` (405, 501: the message names the
    /// URL and says to allow it, nginx `dav_methods PUT DELETE;`, or to prune with the server's
    /// own tools); 401/403 [`CoreError::PermissionDenied`].
    async fn delete_version(&self, version: &StoredVersion) -> Result<()> {
        self.delete_url_version(version).await
    }

    /// URL mode: a `GET` of the version's URL with the get_flow request's arguments.
    ///
    /// Errors: as [`Storage::delete_version`] for the location; [`CoreError::NotFound`] when it
    /// is gone.
    async fn read_version(&self, version: &StoredVersion) -> Result<Bytes> {
        self.read_url_version(version).await
    }

    fn blob_store(&self) -> Option<Box<dyn bundle::BlobStore + '_>> {
        self.holds_bundles()
            .then(|| Box::new(self.blobs(bundle::BlobArea::Live)) as Box<dyn bundle::BlobStore>)
    }

    fn reference(&self) -> Result<StorageReference> {
        let mut reference = StorageReference::new(TYPE_NAME, &self.config)?;
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
            !self.config.stored_as_script,
        )?;
        while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Transport {
            what: GET_FLOW_REQUEST,
            method: self
                .config
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

/// Reads a flow sealed from a file through once, as it would be sent: an error when the file
/// changed after it was sealed (nothing to read for a flow held in memory).
async fn still_as_sealed(sealed: &SealedFlow) -> std::io::Result<()> {
    if sealed.as_bytes().is_some() {
        return Ok(());
    }
    let sealed = sealed.clone();
    tokio::task::spawn_blocking(move || {
        std::io::copy(&mut sealed.reader()?, &mut std::io::sink()).map(|_| ())
    })
    .await
    .map_err(std::io::Error::other)?
}
