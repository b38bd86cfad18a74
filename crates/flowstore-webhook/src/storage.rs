//! `Webhook` storage: the flow is sent to an HTTP endpoint at `persist` and fetched with a second
//! request at run time.
//!
//! Like Prefect 1's, a Webhook storage holds **one** flow: a second `add_flow` replaces the first.
//! A [`WebhookBuilder`] makes a [`Webhook`]: typed setters, [`WebhookBuilder::with_config`] pairs
//! or an `http(s)://` URL ([`WebhookBuilder::from_url`]), all ending in the same
//! [`WebhookConfig`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flowstore_core::raw::config::{self, BackendConfig};
use flowstore_core::raw::sink::{file_digest, FlowFileSink};
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource, SecretString};
use flowstore_core::{
    async_trait, key, Error as CoreError, FetchedFlow, FlowInput, OpenContext, Result, Storage,
    StorageReference,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Error;
use crate::method::HttpMethod;
use crate::request::{send, validate_kwargs, Body, Credential, RequestSpec, Retry};

/// The reference type name.
pub const TYPE_NAME: &str = "Webhook";

/// The largest flow `get_flow` holds in memory; larger ones are fetched with `get_flow_to_file`.
pub const MAX_IN_MEMORY: u64 = 2 << 30;

/// What an `http(s)://` storage URL looks like, for error messages.
const URL_EXAMPLE: &str = "https://files.example/flows?timeout=30&bearer_token_secret=FILES_TOKEN";

/// The backend fields of a `Webhook` reference (Prefect 1's names): the whole configuration of a
/// [`Webhook`] storage. The kwargs keep their `${NAME}` templates; rendered values and typed
/// credentials are never stored.
///
/// Option keys ([`WebhookBuilder::with_config`], a URL's query):
///
/// | key | sets |
/// |---|---|
/// | `build_request_http_method`, `get_flow_request_http_method` | the methods (GET, PATCH, POST, PUT) |
/// | `stored_as_script`, `flow_script_path` | script mode and the script sent |
/// | `timeout` | both requests' `timeout` (seconds); `build_request_timeout` / `get_flow_request_timeout` one |
/// | `header.<name>` | header `<name>` of both requests (a `${NAME}` template is rendered at call time) |
/// | `param.<name>` | query parameter `<name>` of both requests |
/// | `bearer_token_secret` | `Authorization: Bearer ${<value>}` on both requests, and declares the secret |
/// | `basic_auth` | `<user>:<secret name>`: `auth` = `[user, "${<secret name>}"]` on both, and declares the secret |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookConfig {
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

impl BackendConfig for WebhookConfig {
    const TYPE_NAME: &'static str = TYPE_NAME;
    /// `header.<name>` and `param.<name>` stand for any name; `timeout`, `bearer_token_secret`
    /// and `basic_auth` set both requests (see [`WebhookConfig`]).
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("build_request_http_method", "build_request_http_method"),
        (
            "get_flow_request_http_method",
            "get_flow_request_http_method",
        ),
        ("stored_as_script", "stored_as_script"),
        ("flow_script_path", "flow_script_path"),
        ("timeout", "*_request_kwargs.timeout"),
        ("build_request_timeout", "build_request_kwargs.timeout"),
        (
            "get_flow_request_timeout",
            "get_flow_request_kwargs.timeout",
        ),
        ("header.<name>", "*_request_kwargs.headers.<name>"),
        ("param.<name>", "*_request_kwargs.params.<name>"),
        (
            "bearer_token_secret",
            "*_request_kwargs.headers.Authorization",
        ),
        ("basic_auth", "*_request_kwargs.auth"),
    ];

    /// Sets one option (see the table on [`WebhookConfig`]).
    ///
    /// Errors with [`CoreError::Config`] for an unknown key (listing the known ones), a method
    /// other than GET/PATCH/POST/PUT, a timeout that is not a positive number of seconds, or a
    /// secret name that cannot be a `${NAME}` template.
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let both = [Request::Build, Request::Get];
        match key {
            "timeout" => self.set_timeout(key, value, &both),
            "build_request_timeout" => self.set_timeout(key, value, &[Request::Build]),
            "get_flow_request_timeout" => self.set_timeout(key, value, &[Request::Get]),
            "bearer_token_secret" => {
                check_secret_name(key, value)?;
                self.set_header("Authorization", &format!("Bearer ${{{value}}}"));
                Ok(())
            }
            "basic_auth" => {
                let Some((user, secret)) = value.split_once(':') else {
                    return Err(CoreError::config(format!(
                        "Webhook option basic_auth={value:?} must be USER:SECRET_NAME (the password \
                         is the secret's value, never written in the option)"
                    )));
                };
                check_secret_name(key, secret)?;
                self.set_auth(user, secret);
                Ok(())
            }
            _ => {
                if let Some(name) = key.strip_prefix("header.").filter(|n| !n.is_empty()) {
                    self.set_header(name, value);
                    return Ok(());
                }
                if let Some(name) = key.strip_prefix("param.").filter(|n| !n.is_empty()) {
                    self.set_in_both("params", name, Value::String(value.to_string()));
                    return Ok(());
                }
                let mut plain = Plain(self.clone());
                plain.set(key, value)?;
                *self = plain.0;
                Ok(())
            }
        }
    }
}

/// [`WebhookConfig`] with the generic [`BackendConfig::set`], for the options that are plain
/// fields (methods, script mode).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct Plain(WebhookConfig);

impl BackendConfig for Plain {
    const TYPE_NAME: &'static str = TYPE_NAME;
    const OPTIONS: &'static [(&'static str, &'static str)] = WebhookConfig::OPTIONS;
}

/// Which request an option applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Build,
    Get,
}

/// Errors unless `name` can be written as a `${NAME}` template (letters, digits, `_`).
fn check_secret_name(key: &str, name: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(CoreError::config(format!(
            "Webhook option {key}: secret name {name:?} must be letters, digits and _ (it is \
             written as the template ${{{name}}} and resolved from the environment or the secret \
             sources at call time)"
        )));
    }
    Ok(())
}

impl WebhookConfig {
    /// A configuration for the two requests (serialized mode).
    pub fn new(
        build_request_kwargs: Value,
        build_request_http_method: HttpMethod,
        get_flow_request_kwargs: Value,
        get_flow_request_http_method: HttpMethod,
    ) -> Self {
        WebhookConfig {
            build_request_kwargs,
            build_request_http_method,
            get_flow_request_kwargs,
            get_flow_request_http_method,
            stored_as_script: false,
            flow_script_path: None,
            key_base_url: None,
        }
    }

    fn kwargs_mut(&mut self, request: Request) -> &mut Value {
        match request {
            Request::Build => &mut self.build_request_kwargs,
            Request::Get => &mut self.get_flow_request_kwargs,
        }
    }

    /// Sets `kwargs[field][name] = value` in both requests (a kwargs that is not an object is
    /// left alone: `build` reports it).
    fn set_in_both(&mut self, field: &str, name: &str, value: Value) {
        for request in [Request::Build, Request::Get] {
            if let Some(kwargs) = self.kwargs_mut(request).as_object_mut() {
                let slot = kwargs.entry(field).or_insert_with(|| json!({}));
                if !slot.is_object() {
                    *slot = json!({});
                }
                slot.as_object_mut()
                    .expect("made an object above")
                    .insert(name.to_string(), value.clone());
            }
        }
    }

    /// Sets header `name` in both requests, replacing one of the same name in any case.
    fn set_header(&mut self, name: &str, value: &str) {
        for request in [Request::Build, Request::Get] {
            if let Some(headers) = self
                .kwargs_mut(request)
                .get_mut("headers")
                .and_then(Value::as_object_mut)
            {
                headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
            }
        }
        self.set_in_both("headers", name, Value::String(value.to_string()));
    }

    fn set_auth(&mut self, user: &str, secret: &str) {
        for request in [Request::Build, Request::Get] {
            if let Some(kwargs) = self.kwargs_mut(request).as_object_mut() {
                kwargs.insert("auth".into(), json!([user, format!("${{{secret}}}")]));
            }
        }
    }

    fn set_timeout(&mut self, key: &str, value: &str, requests: &[Request]) -> Result<()> {
        let seconds: Value = match (value.parse::<u64>(), value.parse::<f64>()) {
            (Ok(n), _) if n > 0 => json!(n),
            (_, Ok(f)) if f > 0.0 && f.is_finite() => json!(f),
            _ => {
                return Err(CoreError::config(format!(
                    "Webhook option {key}={value:?} must be a positive number of seconds"
                )))
            }
        };
        for &request in requests {
            if let Some(kwargs) = self.kwargs_mut(request).as_object_mut() {
                kwargs.insert("timeout".into(), seconds.clone());
            }
        }
        Ok(())
    }

    fn has_auth(&self) -> bool {
        [&self.build_request_kwargs, &self.get_flow_request_kwargs]
            .iter()
            .any(|k| {
                k.get("auth").is_some()
                    || k.get("headers")
                        .and_then(Value::as_object)
                        .is_some_and(|h| h.keys().any(|n| n.eq_ignore_ascii_case("authorization")))
            })
    }
}

/// Makes a [`Webhook`] storage: [`Webhook::builder`] (or [`WebhookBuilder::from_url`]), then
/// setters, then [`WebhookBuilder::build`].
///
/// ```
/// use flowstore_core::secret::SecretString;
/// use flowstore_webhook::{HttpMethod, Webhook, WebhookBuilder};
/// let kwargs = serde_json::json!({"url": "https://files.example/flows/etl"});
/// let typed = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get)
///     .timeout(std::time::Duration::from_secs(30))
///     .bearer_token_secret("FILES_TOKEN") // recorded: agents resolve FILES_TOKEN
///     .bearer_token(SecretString::from("t0k3n")) // sent from here, never recorded
///     .build()?;
/// assert!(!typed.reference()?.to_json().contains("t0k3n"));
///
/// // Through option pairs, as a URL's query gives them.
/// let paired = WebhookBuilder::from_url("https://files.example/flows")?
///     .with_configs([("timeout", "30"), ("bearer_token_secret", "FILES_TOKEN")])?
///     .build()?;
/// assert_eq!(paired.config().get_flow_request_kwargs["headers"]["Authorization"], "Bearer ${FILES_TOKEN}");
/// # use flowstore_core::Storage;
/// # Ok::<(), flowstore_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct WebhookBuilder {
    config: WebhookConfig,
    index: FlowIndex,
    secrets: Arc<dyn SecretSource>,
    retry: Retry,
    credential: Option<Credential>,
}

impl WebhookBuilder {
    /// A builder for the two requests, as Prefect 1's `Webhook(build_request_kwargs,
    /// build_request_http_method, get_flow_request_kwargs, get_flow_request_http_method)`.
    /// The kwargs are requests-style (`url`, `headers`, `params`, `timeout`, `auth`) and may
    /// hold `${NAME}` templates, rendered at call time.
    pub fn new(
        build_request_kwargs: Value,
        build_request_http_method: HttpMethod,
        get_flow_request_kwargs: Value,
        get_flow_request_http_method: HttpMethod,
    ) -> Self {
        Self::from_config(WebhookConfig::new(
            build_request_kwargs,
            build_request_http_method,
            get_flow_request_kwargs,
            get_flow_request_http_method,
        ))
    }

    /// A builder for an existing configuration (from a reference, say).
    pub fn from_config(config: WebhookConfig) -> Self {
        WebhookBuilder {
            config,
            index: FlowIndex::default(),
            secrets: Arc::new(NoSecrets),
            retry: Retry::default(),
            credential: None,
        }
    }

    /// A builder for `http(s)://host/path?option=value…`: each added flow is PUT to, and later
    /// fetched with a GET of, `<url>/<flow key>` (a fresh key per registration); every query pair
    /// is applied with [`WebhookBuilder::with_config`].
    ///
    /// Errors with [`CoreError::Config`] for a URL that does not parse or is not http(s), one
    /// that carries a user or password (it would be recorded in the reference: use
    /// `bearer_token_secret` or `basic_auth`), and an unknown option (named).
    pub fn from_url(url: &str) -> Result<Self> {
        let mut parsed = config::parse_url(url, &["http", "https"], URL_EXAMPLE)?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(CoreError::config(
                "Webhook storage URL must not carry a user or password: it would be recorded in \
                 the reference. Use bearer_token_secret=SECRET_NAME or basic_auth=USER:SECRET_NAME \
                 (or the builder's bearer_token / basic_auth)",
            ));
        }
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        parsed.set_query(None);
        parsed.set_fragment(None);
        let base = parsed.as_str().trim_end_matches('/').to_string();
        let kwargs = json!({ "url": base });
        let mut builder = Self::new(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get);
        builder.config.key_base_url = Some(base);
        builder.with_configs(pairs)
    }

    /// Script mode: `persist` sends the script at `path` (streamed), `get_flow` returns its source.
    pub fn script(mut self, path: impl AsRef<Path>) -> Self {
        self.config.stored_as_script = true;
        self.config.flow_script_path = Some(path.as_ref().display().to_string());
        self
    }

    /// The method of the build request (default PUT in URL mode).
    pub fn build_request_http_method(mut self, method: HttpMethod) -> Self {
        self.config.build_request_http_method = method;
        self
    }

    /// The method of the get_flow request (default GET in URL mode).
    pub fn get_flow_request_http_method(mut self, method: HttpMethod) -> Self {
        self.config.get_flow_request_http_method = method;
        self
    }

    /// Sets header `name` on both requests (recorded; `${NAME}` templates are rendered at call
    /// time, so put secrets there as templates).
    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.config.set_header(name, value.as_ref());
        self
    }

    /// Sets query parameter `name` on both requests (recorded; `${NAME}` templates allowed).
    pub fn param(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.config
            .set_in_both("params", name, Value::String(value.as_ref().to_string()));
        self
    }

    /// The timeout of one attempt of either request (recorded as `timeout`, in seconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        let seconds = timeout.as_secs_f64();
        let value = if timeout.subsec_nanos() == 0 {
            json!(timeout.as_secs())
        } else {
            json!(seconds)
        };
        for request in [Request::Build, Request::Get] {
            if let Some(kwargs) = self.config.kwargs_mut(request).as_object_mut() {
                kwargs.insert("timeout".into(), value.clone());
            }
        }
        self
    }

    /// A bearer token this storage sends (`Authorization: Bearer …`, replacing any recorded
    /// Authorization header or `auth` in this process). Never recorded, logged or shown: an
    /// agent opening the reference needs its own, so also name the secret it resolves with
    /// [`WebhookBuilder::bearer_token_secret`].
    pub fn bearer_token(mut self, token: SecretString) -> Self {
        self.credential = Some(Credential::Bearer(token));
        self
    }

    /// Records `Authorization: Bearer ${name}` on both requests and declares secret `name`: an
    /// agent resolves it from its environment or secret sources at call time.
    pub fn bearer_token_secret(mut self, name: &str) -> Self {
        self.config
            .set_header("Authorization", &format!("Bearer ${{{name}}}"));
        self.secret(name)
    }

    /// HTTP basic authentication this storage sends (replacing any recorded Authorization
    /// header or `auth` in this process); the password is never recorded, logged or shown. Name
    /// the secret agents resolve with [`WebhookBuilder::basic_auth_secret`].
    pub fn basic_auth(mut self, user: impl Into<String>, password: SecretString) -> Self {
        self.credential = Some(Credential::Basic {
            user: user.into(),
            password,
        });
        self
    }

    /// Records `auth: [user, "${password_secret}"]` on both requests and declares secret
    /// `password_secret`.
    pub fn basic_auth_secret(mut self, user: &str, password_secret: &str) -> Self {
        self.config.set_auth(user, password_secret);
        self.secret(password_secret)
    }

    /// Where `${NAME}` templates look after the environment (default: nowhere else).
    pub fn secret_sources(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// The retry policy (default [`Retry::default`]); not recorded.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    flowstore_core::builder_common_methods!(index);

    /// Sets one option by key, as a URL query gives it (see the table on [`WebhookConfig`]), or
    /// one every storage takes (`label`, `add_default_labels`, `secret`). `bearer_token_secret`
    /// and `basic_auth` also declare the secret they name.
    ///
    /// Errors with [`CoreError::Config`] for an unknown key (naming it and the known ones) or a
    /// value that does not fit.
    pub fn with_config(self, key: &str, value: &str) -> Result<Self> {
        self.with_configs([(key, value)])
    }

    /// Sets options in order (see [`WebhookBuilder::with_config`]).
    ///
    /// Errors as [`WebhookBuilder::with_config`] does, at the first pair that fails.
    pub fn with_configs<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.as_ref());
            config::apply_pairs(&mut self.config, &mut self.index, [(k, v)])?;
            let declared = match k {
                "bearer_token_secret" => Some(v),
                "basic_auth" => v.split_once(':').map(|(_, secret)| secret),
                _ => None,
            };
            if let Some(name) = declared {
                self = self.secret(name);
            }
        }
        Ok(self)
    }

    /// The configuration so far.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Builds the storage (no request is sent until `persist` or a fetch).
    ///
    /// Errors with [`CoreError::Config`] for kwargs without a `url` string, script mode without
    /// `flow_script_path`, or an HTTP client that cannot be set up.
    pub fn build(self) -> Result<Webhook> {
        let WebhookBuilder {
            config,
            index,
            secrets,
            retry,
            credential,
        } = self;
        validate_kwargs("build_request_kwargs", &config.build_request_kwargs)?;
        validate_kwargs("get_flow_request_kwargs", &config.get_flow_request_kwargs)?;
        if config.stored_as_script && config.flow_script_path.is_none() {
            return Err(Error::Config(
                "script mode needs `flow_script_path`, the script sent at build".to_string(),
            )
            .into());
        }
        if credential.is_some() && !config.has_auth() {
            tracing::warn!(
                "Webhook storage: the typed credential is sent from this process but not recorded; \
                 an agent opening the reference sends none. Name the secret agents resolve with \
                 bearer_token_secret / basic_auth_secret."
            );
        }
        let client = reqwest::Client::builder().build().map_err(|e| {
            CoreError::config("Webhook storage: cannot create the HTTP client").with_source(e)
        })?;
        Ok(Webhook {
            config,
            index,
            staged: None,
            secrets,
            retry,
            credential,
            client,
        })
    }
}

/// What `add_flow` staged for `persist`.
#[derive(Debug, Clone)]
enum Staged {
    Serialized { name: String, bytes: Bytes },
    Script { name: String, path: PathBuf },
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
    config: WebhookConfig,
    index: FlowIndex,
    staged: Option<Staged>,
    secrets: Arc<dyn SecretSource>,
    retry: Retry,
    credential: Option<Credential>,
    client: reqwest::Client,
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
            what: "build request",
            method: self.config.build_request_http_method,
            kwargs: &self.config.build_request_kwargs,
        }
    }

    fn spec_get(&self) -> RequestSpec<'_> {
        RequestSpec {
            what: "get_flow request",
            method: self.config.get_flow_request_http_method,
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
        flowstore_core::Capabilities {
            write: true,
            many_flows: false,
            serialized: !script,
            script,
            list_versions: false,
            stream_to_file: true,
        }
    }

    /// Stages the flow for `persist`. A Webhook storage holds one flow: a flow added before is
    /// replaced (with a warning), as in the reference system.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        flowstore_core::validate_flow_name(flow.name())?;
        if let Some(old) = self.index.flows.keys().next() {
            tracing::warn!(old = %old, new = flow.name(), "Webhook storage holds one flow; replacing the one added before");
        }
        self.index.flows.clear();
        self.index.digests.clear();
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
                bytes: sealed.bytes,
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
            self.credential.as_ref(),
        )
        .await;
        if let Err(Error::Status { code: 412, .. }) = &sent {
            return Err(CoreError::AlreadyExists {
                location: self.spec_build().url_template(),
            });
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
            what: "get_flow request",
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
