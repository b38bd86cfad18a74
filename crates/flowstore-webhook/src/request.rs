//! Turning requests-style keyword arguments (`url`, `headers`, `params`, `timeout`, `auth`,
//! `data`, `json`) into HTTP requests, rendered at call time and retried with backoff.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use flowstore_core::envelope::SealedFlow;
use flowstore_core::secret::{SecretSource, SecretString};
use flowstore_secrets::{render_with_redactor, ExposeSecret, Redactor};
use serde_json::Value;

use crate::error::Error;
use crate::method::HttpMethod;

/// How failed requests are retried: connection errors, timeouts, 429 and 5xx answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Retries after the first attempt (default 3, as in the reference system).
    pub max_retries: u32,
    /// Delay before the first retry; doubled each time (default 250 ms).
    pub base_delay: Duration,
    /// The longest delay, also the cap on a server's `Retry-After` (default 5 s).
    pub max_delay: Duration,
    /// Timeout of one attempt unless the kwargs set `timeout` (default 60 s).
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
        }
    }
}

/// The body of a request.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// No body (or the kwargs' own `data`/`json`).
    None,
    /// Bytes in memory (a serialized flow).
    Bytes(Bytes),
    /// A file streamed from disk (a script flow).
    File(PathBuf),
    /// A sealed flow: sent from memory, or streamed from the file it was sealed from (the
    /// stream fails, and the request with it, if the file changed since it was sealed).
    Sealed(SealedFlow),
}

/// A credential given to the builder as a typed value: sent by this storage, never recorded.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// HTTP basic authentication.
    Basic {
        /// The user name (not secret).
        user: String,
        /// The password.
        password: SecretString,
    },
}

impl Credential {
    fn secret(&self) -> &SecretString {
        match self {
            Credential::Bearer(token) => token,
            Credential::Basic { password, .. } => password,
        }
    }

    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Credential::Bearer(token) => req.bearer_auth(token.expose_secret()),
            Credential::Basic { user, password } => {
                req.basic_auth(user, Some(password.expose_secret()))
            }
        }
    }
}

/// `kwargs` without the arguments a typed credential replaces (`auth`, any `Authorization`
/// header), so their templates are neither rendered nor sent.
fn without_auth(kwargs: &Value) -> Value {
    let mut kwargs = kwargs.clone();
    if let Some(map) = kwargs.as_object_mut() {
        map.remove("auth");
        if let Some(headers) = map.get_mut("headers").and_then(Value::as_object_mut) {
            headers.retain(|k, _| !k.eq_ignore_ascii_case("authorization"));
        }
    }
    kwargs
}

/// The method a request is sent with: a configured one, or one no configuration chooses: `HEAD`
/// (the blob existence check) and `DELETE` (a prune's deletes, URL mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// A method the configuration names (or `GET` for directory listings and version reads).
    Http(HttpMethod),
    /// `HEAD`.
    Head,
    /// `DELETE`.
    Delete,
}

impl Verb {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verb::Http(m) => m.as_str(),
            Verb::Head => "HEAD",
            Verb::Delete => "DELETE",
        }
    }

    fn to_reqwest(self) -> reqwest::Method {
        match self {
            Verb::Http(m) => m.to_reqwest(),
            Verb::Head => reqwest::Method::HEAD,
            Verb::Delete => reqwest::Method::DELETE,
        }
    }
}

impl From<HttpMethod> for Verb {
    fn from(m: HttpMethod) -> Self {
        Verb::Http(m)
    }
}

/// One configured request: which one it is, its method and its (template) kwargs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpec<'a> {
    pub what: &'static str,
    pub method: Verb,
    pub kwargs: &'a Value,
}

impl RequestSpec<'_> {
    /// The URL template (never rendered: safe to show).
    pub fn url_template(&self) -> String {
        self.kwargs
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("(no url)")
            .to_string()
    }
}

/// Checks that kwargs are an object with a string `url`, and that header names (when `headers`
/// is an object) are valid HTTP header names.
pub(crate) fn validate_kwargs(what: &str, kwargs: &Value) -> Result<(), Error> {
    match kwargs.get("url") {
        Some(Value::String(u)) if !u.is_empty() => {}
        _ => {
            return Err(Error::Config(format!(
                "{what} needs a \"url\" string (e.g. {{\"url\": \"https://files.example/flows/my-flow\"}})"
            )))
        }
    }
    let headers = kwargs.get("headers").and_then(Value::as_object);
    for name in headers.into_iter().flat_map(|h| h.keys()) {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(Error::Config(format!(
                "{what}: {name:?} is not a valid HTTP header name"
            )));
        }
    }
    Ok(())
}

/// Sends the request, retrying per `retry`; returns a response with a success status. A typed
/// `credential` replaces the kwargs' own `auth` and `Authorization` header.
pub(crate) async fn send(
    client: &reqwest::Client,
    spec: RequestSpec<'_>,
    body: &Body,
    sources: &dyn SecretSource,
    retry: &Retry,
    credential: Option<&Credential>,
) -> Result<reqwest::Response, Error> {
    let (rendered, redactor) = match credential {
        Some(c) => {
            let (rendered, mut redactor) =
                render_with_redactor(&without_auth(spec.kwargs), sources)?;
            redactor.add(c.secret().clone());
            (rendered, redactor)
        }
        None => render_with_redactor(spec.kwargs, sources)?,
    };
    let kwargs = rendered.expose_secret();
    let url_template = spec.url_template();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let mut request = build(client, spec, kwargs, body, retry).await?;
        if let Some(c) = credential {
            request = c.apply(request);
        }
        let outcome = request.send().await;
        let retries_left = attempt <= retry.max_retries;
        match outcome {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp) => {
                let status = resp.status();
                let retryable = status.as_u16() == 429 || status.is_server_error();
                if retryable && retries_left {
                    let delay = retry_after(&resp).unwrap_or_else(|| backoff(retry, attempt));
                    tracing::warn!(
                        request = spec.what, method = spec.method.as_str(), url = %url_template,
                        status = %status, attempt, "retrying in {delay:?}"
                    );
                    tokio::time::sleep(delay.min(retry.max_delay)).await;
                    continue;
                }
                let text = resp.bytes().await.unwrap_or_default();
                let shown = String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
                let shown = redactor.redact(&shown);
                return Err(Error::Status {
                    what: spec.what,
                    method: spec.method.as_str().to_string(),
                    url: url_template,
                    code: status.as_u16(),
                    status: status.to_string(),
                    body: if shown.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", shown.trim())
                    },
                });
            }
            Err(e) => {
                let reason = describe(&e, &redactor);
                if retries_left {
                    let delay = backoff(retry, attempt);
                    tracing::warn!(
                        request = spec.what, method = spec.method.as_str(), url = %url_template,
                        attempt, error = %reason, "retrying in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                    continue;
                }
                return Err(Error::Transport {
                    what: spec.what,
                    method: spec.method.as_str().to_string(),
                    url: url_template,
                    attempts: attempt,
                    reason,
                });
            }
        }
    }
}

fn backoff(retry: &Retry, attempt: u32) -> Duration {
    retry
        .base_delay
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(retry.max_delay)
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The error and its causes without the URL (which may hold a rendered secret), scrubbed.
fn describe(e: &reqwest::Error, redactor: &Redactor) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let head = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read".to_string()
    } else {
        "the request failed".to_string()
    };
    parts.push(head);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    redactor.redact(&parts.join(": "))
}

/// Builds one attempt's request from rendered kwargs.
async fn build(
    client: &reqwest::Client,
    spec: RequestSpec<'_>,
    kwargs: &Value,
    body: &Body,
    retry: &Retry,
) -> Result<reqwest::RequestBuilder, Error> {
    let bad = |m: String| Error::Config(format!("{} arguments: {m}", spec.what));
    let url = kwargs
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("\"url\" must be a string".into()))?;
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        bad(format!(
            "\"url\" (template {}) is not a URL: {e}",
            spec.url_template()
        ))
    })?;
    let mut req = client.request(spec.method.to_reqwest(), parsed);
    let timeout = kwargs
        .get("timeout")
        .and_then(Value::as_f64)
        .filter(|t| *t > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(retry.timeout);
    req = req.timeout(timeout);
    for (key, value) in kwargs.as_object().into_iter().flatten() {
        match key.as_str() {
            "url" | "timeout" | "data" | "json" => {}
            "headers" => {
                for (name, v) in value
                    .as_object()
                    .ok_or_else(|| bad("\"headers\" must be an object".into()))?
                {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    req = req.header(name.as_str(), v);
                }
            }
            "params" => {
                let pairs: Vec<(String, String)> = value
                    .as_object()
                    .ok_or_else(|| bad("\"params\" must be an object".into()))?
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect();
                req = req.query(&pairs);
            }
            "auth" => {
                let parts: Vec<&str> = value
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match parts.as_slice() {
                    [user, pass] => req = req.basic_auth(user, Some(pass)),
                    _ => return Err(bad("\"auth\" must be [\"user\", \"password\"]".into())),
                }
            }
            other => tracing::debug!(argument = other, "ignoring an unsupported request argument"),
        }
    }
    // A build PUT is create-only where the server honours conditional requests (412 otherwise).
    let user_conditional = kwargs
        .get("headers")
        .and_then(Value::as_object)
        .is_some_and(|h| {
            h.keys().any(|k| {
                k.eq_ignore_ascii_case("if-none-match") || k.eq_ignore_ascii_case("if-match")
            })
        });
    if spec.method == Verb::Http(HttpMethod::Put)
        && !matches!(body, Body::None)
        && !user_conditional
    {
        req = req.header(reqwest::header::IF_NONE_MATCH, "*");
    }
    req = match body {
        Body::Bytes(b) => {
            if kwargs.get("data").is_some() {
                tracing::warn!(
                    "{}: the flow is the request body; the \"data\" argument is overwritten",
                    spec.what
                );
            }
            req.body(b.clone())
        }
        Body::File(path) => {
            if kwargs.get("data").is_some() {
                tracing::warn!(
                    "{}: the flow is the request body; the \"data\" argument is overwritten",
                    spec.what
                );
            }
            let file = tokio::fs::File::open(path).await.map_err(|e| {
                Error::Core(flowstore_core::Error::io(
                    format!("opening {} to send it", path.display()),
                    e,
                ))
            })?;
            let len = file.metadata().await.map(|m| m.len()).ok();
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
            let req = req.body(reqwest::Body::wrap_stream(stream));
            match len {
                Some(n) => req.header(reqwest::header::CONTENT_LENGTH, n),
                None => req,
            }
        }
        Body::Sealed(sealed) => {
            if kwargs.get("data").is_some() {
                tracing::warn!(
                    "{}: the flow is the request body; the \"data\" argument is overwritten",
                    spec.what
                );
            }
            match sealed.as_bytes() {
                Some(b) => req.body(b.clone()),
                None => req
                    .body(reqwest::Body::wrap_stream(sealed.stream()))
                    .header(reqwest::header::CONTENT_LENGTH, sealed.len()),
            }
        }
        Body::None => match (kwargs.get("data"), kwargs.get("json")) {
            (Some(Value::String(s)), _) => req.body(s.clone()),
            (Some(other), _) => req.body(other.to_string()),
            (None, Some(j)) => req.json(j),
            (None, None) => req,
        },
    };
    Ok(req)
}
