//! The HTTP client the API storages share: bounded retries on connection errors, 429 and 5xx
//! (honouring `Retry-After` up to 5 s), and status errors that never include request headers.

use std::time::Duration;

use flowstore_core::Error as CoreError;

/// A response's status, headers and body.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

impl Reply {
    /// The body as JSON. Errors name `what` was being read.
    pub fn json(&self, backend: &str, what: &str) -> Result<serde_json::Value, CoreError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CoreError::backend(backend, format!("{what}: the response is not JSON: {e}"))
        })
    }
}

/// The shared client.
#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    retries: u32,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// A client with a 60 s timeout and 3 retries.
    pub fn new() -> Self {
        Http {
            client: reqwest::Client::builder()
                .user_agent(concat!("flowstore/", env!("CARGO_PKG_VERSION")))
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a default HTTP client builds"),
            retries: 3,
        }
    }

    /// The underlying client, to build requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request `make` builds, retrying connection errors, 429 and 5xx.
    pub async fn send(
        &self,
        backend: &str,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, CoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match make().send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry = (status == 429 || status >= 500) && attempt <= self.retries;
                    if retry {
                        let wait = resp
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                            .map(Duration::from_secs)
                            .unwrap_or(Duration::from_millis(200 << attempt))
                            .min(Duration::from_secs(5));
                        tracing::warn!(backend, what, status, attempt, "retrying in {wait:?}");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let headers = resp.headers().clone();
                    let body = resp.bytes().await.map_err(|e| {
                        CoreError::backend(
                            backend,
                            format!("{what}: reading the response: {}", e.without_url()),
                        )
                    })?;
                    return Ok(Reply {
                        status,
                        headers,
                        body,
                    });
                }
                Err(e) if attempt <= self.retries => {
                    tracing::warn!(backend, what, attempt, error = %e.without_url(), "retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => {
                    return Err(CoreError::backend(
                        backend,
                        format!(
                            "{what} failed after {attempt} attempt(s): {}",
                            e.without_url()
                        ),
                    ))
                }
            }
        }
    }
}

/// Percent-encodes `s`; `/` is kept when `keep_slash` (a path), encoded otherwise (one segment).
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes standard base64, ignoring the line breaks GitHub and GitLab put in content.
pub fn decode_base64(backend: &str, what: &str, s: &str) -> Result<bytes::Bytes, CoreError> {
    use base64::Engine as _;
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map(bytes::Bytes::from)
        .map_err(|e| CoreError::backend(backend, format!("{what}: the content is not base64: {e}")))
}

/// The secret `name` (secret sources, then the environment), if set.
pub fn optional_secret(
    name: &str,
    sources: &dyn flowstore_core::SecretSource,
) -> Result<Option<flowstore_core::secret::SecretString>, CoreError> {
    flowstore_secrets::resolve_optional(name, sources).map_err(CoreError::from)
}
