//! [`WebhookBuilder`]: typed setters, [`WebhookBuilder::with_config`] pairs or an `http(s)://`
//! URL, all ending in the same [`WebhookConfig`]; `build()` makes a [`Webhook`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flowstore_core::raw::FlowIndex;
use flowstore_core::raw::{clients, config};
use flowstore_core::secret::{NoSecrets, SecretSource, SecretString};
use flowstore_core::{Error as CoreError, Result};
use serde_json::{json, Value};

use crate::config::{Request, WebhookConfig};
use crate::error::Error;
use crate::method::HttpMethod;
use crate::request::{validate_kwargs, Credential, Retry};
use crate::storage::Webhook;

/// What an `http(s)://` storage URL looks like, for error messages.
const URL_EXAMPLE: &str = "https://files.example/flows?timeout=30&bearer_token_secret=FILES_TOKEN";

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
    pub(crate) index: FlowIndex,
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
        // One client (one connection pool) for every Webhook storage in this process.
        let client = clients::shared(clients::Fingerprint::new("webhook-http"), || {
            reqwest::Client::builder().build().map_err(|e| {
                CoreError::config("Webhook storage: cannot create the HTTP client").with_source(e)
            })
        })?;
        Ok(Webhook {
            config,
            index,
            staged: None,
            secrets,
            retry,
            credential,
            client,
            range_ignored: Default::default(),
        })
    }
}
