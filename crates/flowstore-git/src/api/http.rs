//! The HTTP client the API storages share: bounded retries on connection errors, 429 and 5xx
//! (honouring `Retry-After` up to 5 s), status errors typed as core's (never including request
//! headers), and the percent-encoding of paths and refs.

use std::time::Duration;

use flowstore_core::Error as CoreError;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::HttpStatus;

/// Everything but RFC 3986's unreserved characters is encoded (one path segment or query value).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// As [`SEGMENT`], keeping `/` (a path of several segments).
pub(crate) const PATH: &AsciiSet = &SEGMENT.remove(b'/');

/// Percent-encodes `s` as one path segment or query value (`/` encoded too).
pub(crate) fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Percent-encodes `s` as a path (`/` kept).
pub(crate) fn encode_path(s: &str) -> String {
    utf8_percent_encode(s, PATH).to_string()
}

/// A response's status, headers and body.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

impl Reply {
    /// The body as JSON. Errors name `what` was being read, keeping the parser's error.
    pub fn json(&self, backend: &str, what: &str) -> Result<serde_json::Value, CoreError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CoreError::backend(backend, format!("{what}: the response is not JSON: {e}"))
                .with_source(self.http_status())
        })
    }

    /// The status and the start of the body, as an error to keep as a source.
    pub fn http_status(&self) -> HttpStatus {
        HttpStatus::new(self.status, &self.body)
    }

    /// The error for an answer that is not the one asked for, typed by status: 401 and 403 are
    /// [`CoreError::PermissionDenied`] (for `location`), 429 and 5xx a temporary
    /// [`CoreError::Backend`], anything else a permanent one; the answer is kept as the source.
    /// Not-found answers are the provider's to type (they say what is missing).
    pub fn status_error(&self, backend: &str, location: &str, message: String) -> CoreError {
        let e = match self.status {
            401 | 403 => CoreError::permission_denied(backend, location, message),
            429 | 500..=599 => CoreError::temporary(
                backend,
                format!("{message} (HTTP {}; try again later)", self.status),
            ),
            s => CoreError::backend(backend, format!("{message} (HTTP {s})")),
        };
        e.with_source(self.http_status())
    }
}

/// The shared client.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    retries: u32,
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

    /// Sends the request `make` builds, retrying connection errors, 429 and 5xx. A 429 or 5xx
    /// that outlasts the retries is returned as a [`Reply`] (see [`Reply::status_error`]).
    ///
    /// Errors with a temporary [`CoreError::Backend`] when the server cannot be reached or the
    /// response cannot be read, keeping the HTTP client's error (without the URL) as the source.
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
                        let e = e.without_url();
                        CoreError::temporary(backend, format!("{what}: reading the response: {e}"))
                            .with_source(e)
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
                    let e = e.without_url();
                    return Err(CoreError::temporary(
                        backend,
                        format!("{what} failed after {attempt} attempt(s): {e}"),
                    )
                    .with_source(e));
                }
            }
        }
    }
}

/// Decodes standard base64, ignoring the line breaks GitHub and GitLab put in content.
pub(crate) fn decode_base64(backend: &str, what: &str, s: &str) -> Result<bytes::Bytes, CoreError> {
    use base64::Engine as _;
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map(bytes::Bytes::from)
        .map_err(|e| {
            CoreError::backend(backend, format!("{what}: the content is not base64: {e}"))
                .with_source(e)
        })
}

/// The secret `name` (secret sources, then the environment), if set.
pub(crate) fn optional_secret(
    name: &str,
    sources: &dyn flowstore_core::SecretSource,
) -> Result<Option<flowstore_core::secret::SecretString>, CoreError> {
    flowstore_secrets::resolve_optional(name, sources).map_err(crate::error::secret_error)
}

/// A required secret `name` (secret sources, then the environment).
pub(crate) fn required_secret(
    name: &str,
    sources: &dyn flowstore_core::SecretSource,
) -> Result<flowstore_core::secret::SecretString, CoreError> {
    flowstore_secrets::resolve(name, sources).map_err(crate::error::secret_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments_and_paths() {
        assert_eq!(encode_segment("group/sub proj"), "group%2Fsub%20proj");
        assert_eq!(
            encode_path("flows/my flow ü.py"),
            "flows/my%20flow%20%C3%BC.py"
        );
        assert_eq!(encode_segment("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(encode_segment("feature/x+y"), "feature%2Fx%2By");
    }
}
