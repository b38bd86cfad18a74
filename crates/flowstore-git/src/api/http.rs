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
            // One client (one connection pool) for every provider storage in this process.
            client: flowstore_core::raw::clients::shared(
                flowstore_core::raw::clients::Fingerprint::new("git-api-http"),
                || {
                    reqwest::Client::builder()
                        .user_agent(concat!("flowstore/", env!("CARGO_PKG_VERSION")))
                        .timeout(Duration::from_secs(60))
                        .build()
                },
            )
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
            let resp = self.connect(backend, what, &mut attempt, &make).await?;
            let status = resp.status().as_u16();
            if (status == 429 || status >= 500) && attempt <= self.retries {
                let wait = retry_after(resp.headers())
                    .unwrap_or(Duration::from_millis(200 << attempt))
                    .min(Duration::from_secs(5));
                tracing::warn!(backend, what, status, attempt, "retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                continue;
            }
            let headers = resp.headers().clone();
            let body = read_body(backend, what, resp).await?;
            return Ok(Reply {
                status,
                headers,
                body,
            });
        }
    }

    /// Sends the request `make` builds until the server answers, retrying connection errors
    /// while `attempt` (the requests sent so far, counted across a caller's loop) is at most
    /// the configured retries; any answer, whatever its status, is returned.
    ///
    /// Errors with a temporary [`CoreError::Backend`] naming the host when the server cannot
    /// be reached.
    async fn connect(
        &self,
        backend: &str,
        what: &str,
        attempt: &mut u32,
        make: &impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CoreError> {
        loop {
            *attempt += 1;
            match make().send().await {
                Ok(resp) => return Ok(resp),
                Err(e) if *attempt <= self.retries => {
                    tracing::warn!(backend, what, attempt = *attempt, error = %e.without_url(), "retrying");
                    tokio::time::sleep(Duration::from_millis(200 << *attempt)).await;
                }
                Err(e) => return Err(unreachable_error(backend, what, *attempt, e)),
            }
        }
    }
}

/// The longest a request may wait in total for a throttled answer (`Retry-After`) before its
/// caller reports the rate limit: a fetch is blocked at most this long by a server asking it to
/// slow down.
pub(crate) const THROTTLE_BUDGET: Duration = Duration::from_secs(60);

/// The wait a `Retry-After` header asks for, in seconds (the form GitHub and GitLab send);
/// `None` without one or with a value that is not a number of seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

impl Http {
    /// As [`Http::send`], with a caller's notion of "throttled": an answer for which
    /// `throttled(status, headers, body)` is true is retried after the `Retry-After` it carries
    /// (60 s when it names none, as GitHub asks) as long as the waits add up to at most
    /// [`THROTTLE_BUDGET`]; past that the throttled answer is returned for the caller to report
    /// (it can tell by asking `throttled` again). Connection errors and 5xx are retried as
    /// [`Http::send`] does; 429 is retried only if `throttled` says so.
    ///
    /// Errors as [`Http::send`] does.
    pub async fn send_throttled(
        &self,
        backend: &str,
        what: &str,
        throttled: impl Fn(u16, &reqwest::header::HeaderMap, &[u8]) -> bool,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, CoreError> {
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            let resp = self.connect(backend, what, &mut attempt, &make).await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let reply = Reply {
                status,
                headers,
                body: read_body(backend, what, resp).await?,
            };
            if throttled(reply.status, &reply.headers, &reply.body) {
                let wait = retry_after(&reply.headers).unwrap_or(Duration::from_secs(60));
                if waited + wait > THROTTLE_BUDGET {
                    return Ok(reply);
                }
                waited += wait;
                tracing::warn!(
                    backend,
                    what,
                    status = reply.status,
                    "throttled: waiting {wait:?}"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if reply.status >= 500 && attempt <= self.retries {
                let wait = retry_after(&reply.headers)
                    .unwrap_or(Duration::from_millis(200 << attempt))
                    .min(Duration::from_secs(5));
                tracing::warn!(
                    backend,
                    what,
                    status = reply.status,
                    attempt,
                    "retrying in {wait:?}"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok(reply);
        }
    }

    /// Sends the request `make` builds once (connection errors retried as [`Http::send`] does)
    /// and, for a 200, streams the body into `sink` chunk by chunk, refusing more than `max_len`
    /// bytes. Any other status is returned as a [`Reply`] with its body (and `sink` unused);
    /// for a 200 the returned `Reply` has an empty body.
    ///
    /// Errors with a temporary [`CoreError::Backend`] when the server cannot be reached or the
    /// body breaks off, and a permanent one when the body is longer than `max_len`.
    pub async fn stream(
        &self,
        backend: &str,
        what: &str,
        max_len: u64,
        mut sink: impl FnMut(&[u8]),
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, CoreError> {
        let mut resp = self.connect(backend, what, &mut 0, &make).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if status != 200 {
            let body = read_body(backend, what, resp).await?;
            return Ok(Reply {
                status,
                headers,
                body,
            });
        }
        let mut len: u64 = 0;
        loop {
            let chunk = resp.chunk().await.map_err(|e| {
                let e = e.without_url();
                CoreError::temporary(backend, format!("{what}: reading the response: {e}"))
                    .with_source(e)
            })?;
            let Some(chunk) = chunk else { break };
            len += chunk.len() as u64;
            if len > max_len {
                return Err(CoreError::backend(
                    backend,
                    format!("{what}: the answer is longer than {max_len} bytes; refused"),
                ));
            }
            sink(&chunk);
        }
        Ok(Reply {
            status,
            headers,
            body: bytes::Bytes::new(),
        })
    }
}

/// Reads a whole response body; a body that breaks off is a temporary error.
async fn read_body(
    backend: &str,
    what: &str,
    resp: reqwest::Response,
) -> Result<bytes::Bytes, CoreError> {
    resp.bytes().await.map_err(|e| {
        let e = e.without_url();
        CoreError::temporary(backend, format!("{what}: reading the response: {e}")).with_source(e)
    })
}

/// The error for a server that could not be reached after `attempt` attempts: it names the
/// host (never the path or query, which may carry more than a location) and keeps the client's
/// error without its URL.
fn unreachable_error(backend: &str, what: &str, attempt: u32, e: reqwest::Error) -> CoreError {
    let host = e
        .url()
        .and_then(|u| u.host_str().map(|h| (h.to_string(), u.port())))
        .map(|(h, port)| match port {
            Some(p) => format!(" (cannot reach {h}:{p})"),
            None => format!(" (cannot reach {h})"),
        })
        .unwrap_or_default();
    let e = e.without_url();
    CoreError::temporary(
        backend,
        format!(
            "{what} failed after {attempt} attempt(s){host}: {e}. Whether the repository or \
             file exists is unknown: check the network and the API address, then try again"
        ),
    )
    .with_source(e)
}

/// The git object id of a blob holding `content`, in the object format `id_len` says (40 hex
/// digits: SHA-1, 64: SHA-256): the hash of `blob <len>\0` followed by the bytes.
pub(crate) struct BlobHasher {
    inner: BlobHash,
}

enum BlobHash {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl BlobHasher {
    /// A hasher for a blob of `len` bytes whose id has `id_len` hex digits (40 or 64); `None`
    /// for another length.
    pub fn new(id_len: usize, len: u64) -> Option<Self> {
        use sha2::Digest as _;
        let header = format!("blob {len}\0");
        let inner = match id_len {
            40 => {
                let mut h = sha1::Sha1::new();
                h.update(header.as_bytes());
                BlobHash::Sha1(h)
            }
            64 => {
                let mut h = sha2::Sha256::new();
                h.update(header.as_bytes());
                BlobHash::Sha256(h)
            }
            _ => return None,
        };
        Some(BlobHasher { inner })
    }

    /// Hashes the next bytes of the blob.
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        match &mut self.inner {
            BlobHash::Sha1(h) => h.update(bytes),
            BlobHash::Sha256(h) => h.update(bytes),
        }
    }

    /// The blob's id, lower-case hex.
    pub fn finish(self) -> String {
        use sha2::Digest as _;
        match self.inner {
            BlobHash::Sha1(h) => hex::encode(h.finalize()),
            BlobHash::Sha256(h) => hex::encode(h.finalize()),
        }
    }
}

/// The git blob id of `content` in the format `id_len` says (see [`BlobHasher`]).
pub(crate) fn blob_id(id_len: usize, content: &[u8]) -> Option<String> {
    let mut h = BlobHasher::new(id_len, content.len() as u64)?;
    h.update(content);
    Some(h.finish())
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

    #[test]
    fn blob_ids_are_gits() {
        // `git hash-object` of an empty file and of "hello\n" (SHA-1 and SHA-256 repositories).
        assert_eq!(
            blob_id(40, b"").as_deref(),
            Some("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")
        );
        assert_eq!(
            blob_id(40, b"hello\n").as_deref(),
            Some("ce013625030ba8dba906f756967f9e9ca394464a")
        );
        assert_eq!(
            blob_id(64, b"").as_deref(),
            Some("473a0f4c3be8a93681a267e3b1e9a7dcda1185436fe141f7749120a303721813")
        );
        assert_eq!(blob_id(12, b""), None);
    }

    #[test]
    fn retry_after_is_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
