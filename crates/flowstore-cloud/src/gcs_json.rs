//! [`Blobs`] on the GCS JSON API: media uploads with `ifGenerationMatch=0` (create-only),
//! resumable uploads streamed from disk for large scripts, `alt=media` downloads, paginated
//! listing. Credentials come from `object_store`'s GCP credential chain (bearer tokens); an
//! emulator needs none.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use flowstore_core::Error as CoreError;
use futures::{StreamExt, TryStreamExt};
use object_store::gcp::GcpCredentialProvider;
use serde::Deserialize;

use crate::blobs::{BlobMeta, Blobs, ChunkStream, PutError};
use crate::error::{Failure, Op};
use crate::retry::RetryPolicy;

const BACKEND: &str = "GCS";

/// One bucket through the JSON API.
pub(crate) struct GcsJsonBlobs {
    pub display: String,
    pub bucket: String,
    /// `https://storage.googleapis.com`, or an emulator's address.
    pub base: String,
    pub client: reqwest::Client,
    /// `None` for an emulator (no OAuth).
    pub credentials: Option<GcpCredentialProvider>,
    pub retry: RetryPolicy,
}

#[derive(Deserialize)]
struct ObjectResource {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    generation: Option<String>,
}

#[derive(Deserialize)]
struct ObjectList {
    #[serde(default)]
    items: Vec<ObjectResource>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

impl ObjectResource {
    fn meta(self) -> BlobMeta {
        BlobMeta {
            size: self
                .size
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            last_modified: self
                .updated
                .as_deref()
                .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or_default(),
            etag: self.etag,
            version: self.generation,
            key: self.name,
        }
    }
}

/// What stays unescaped in one URL path segment: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes an object name as one URL path segment.
fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

impl GcsJsonBlobs {
    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            encode(&self.bucket),
            encode(key)
        )
    }

    fn upload_url(&self) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o",
            self.base,
            encode(&self.bucket)
        )
    }

    fn url(&self, key: &str) -> String {
        if key.is_empty() {
            self.display.clone()
        } else {
            format!("{}/{key}", self.display)
        }
    }

    /// Where a failure of `what` at `key` happened.
    fn failure(&self, op: Op, what: &str, key: &str) -> Failure<'_> {
        let location = self.url(key);
        Failure {
            backend: BACKEND,
            display: &self.display,
            what: if what.contains("://") {
                what.to_string()
            } else {
                format!("{what} {location}")
            },
            location,
            op,
        }
    }

    /// A failure that is not an HTTP answer (a response that cannot be read).
    fn error(&self, message: String) -> CoreError {
        CoreError::backend(BACKEND, message)
    }

    async fn authorize(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, CoreError> {
        match &self.credentials {
            None => Ok(rb),
            Some(c) => {
                let token = c.get_credential().await.map_err(|e| {
                    self.error(format!(
                        "getting GCS credentials: {e} (set a service_account_key, the GCP_CREDENTIALS secret or GOOGLE_APPLICATION_CREDENTIALS)"
                    ))
                    .with_source(e)
                })?;
                Ok(rb.bearer_auth(&token.bearer))
            }
        }
    }

    /// Sends a request built by `make`, retrying connection errors, 429 and 5xx within the policy.
    async fn send<F, Fut>(&self, what: &str, make: F) -> Result<reqwest::Response, CoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::RequestBuilder, CoreError>>,
    {
        let started = Instant::now();
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            let rb = self.authorize(make().await?).await?;
            let retryable_left =
                attempt <= self.retry.max_retries && started.elapsed() < self.retry.retry_timeout;
            match rb.send().await {
                Ok(resp)
                    if (resp.status().is_server_error() || resp.status().as_u16() == 429)
                        && retryable_left =>
                {
                    tracing::warn!(what, status = %resp.status(), attempt, "retrying");
                }
                Ok(resp) => return Ok(resp),
                Err(e) if retryable_left => {
                    tracing::warn!(what, error = %e.without_url(), attempt, "retrying");
                }
                Err(e) => {
                    let e = e.without_url();
                    let detail = format!("{e} ({attempt} attempt(s))");
                    return Err(Failure {
                        backend: BACKEND,
                        display: &self.display,
                        what: what.to_string(),
                        location: self.display.clone(),
                        op: Op::Get,
                    }
                    .other(&detail, true, Some(Box::new(e))));
                }
            }
            let delay = Duration::from_millis(50u64 << attempt.min(6)).min(Duration::from_secs(2));
            tokio::time::sleep(delay).await;
        }
    }

    /// Maps an answer that is not a success for `what` at `key`. A 404 on a read asks the API
    /// whether the bucket exists, to say which of the two is missing.
    async fn status_error(
        &self,
        op: Op,
        what: &str,
        key: &str,
        resp: reqwest::Response,
    ) -> CoreError {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let bucket_missing = status == 404 && op == Op::Get && !self.bucket_exists().await;
        self.failure(op, what, key)
            .status(status, body, bucket_missing)
    }

    /// False only when the API says the bucket does not exist.
    async fn bucket_exists(&self) -> bool {
        let url = format!("{}/storage/v1/b/{}", self.base, encode(&self.bucket));
        match self
            .send("checking the bucket", || {
                let rb = self.client.get(&url);
                async move { Ok(rb) }
            })
            .await
        {
            Ok(resp) => resp.status().as_u16() != 404,
            Err(_) => true,
        }
    }

    fn put_result(&self, status: reqwest::StatusCode) -> Option<PutError> {
        (status.as_u16() == 412).then_some(PutError::Exists)
    }
}

#[flowstore_core::async_trait]
impl Blobs for GcsJsonBlobs {
    /// A multipart upload (metadata + media in one request): the form on which GCS (and its
    /// emulators) enforce `ifGenerationMatch=0`, making it create-only.
    async fn put(&self, key: &str, bytes: Bytes, overwrite: bool) -> Result<(), PutError> {
        let what = format!("uploading to {}", self.url(key));
        let boundary = format!(
            "flowstore-{:x}-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            bytes.len()
        );
        // Sent as three chunks (metadata part, the flow's bytes, closing boundary) so the flow is
        // not copied into a second buffer: a large serialized flow is in memory once.
        let head = Bytes::from(format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n",
            serde_json::json!({ "name": key })
        ));
        let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        let length = head.len() + bytes.len() + tail.len();
        let body = move || {
            reqwest::Body::wrap_stream(futures::stream::iter(
                [head.clone(), bytes.clone(), tail.clone()].map(Ok::<_, std::io::Error>),
            ))
        };
        let resp = self
            .send(&what, || {
                let mut q = vec![("uploadType", "multipart")];
                if !overwrite {
                    q.push(("ifGenerationMatch", "0"));
                }
                let rb = self
                    .client
                    .post(self.upload_url())
                    .query(&q)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        format!("multipart/related; boundary={boundary}"),
                    )
                    .header(reqwest::header::CONTENT_LENGTH, length)
                    .body(body());
                async move { Ok(rb) }
            })
            .await
            .map_err(PutError::Other)?;
        if let Some(e) = self.put_result(resp.status()) {
            return Err(e);
        }
        if !resp.status().is_success() {
            return Err(PutError::Other(
                self.status_error(Op::Put, &what, key, resp).await,
            ));
        }
        Ok(())
    }

    /// A resumable upload: one session, the file streamed from disk in a single PUT. The key is
    /// checked first, as not every server enforces `ifGenerationMatch` on resumable sessions.
    async fn put_file(&self, key: &str, path: &Path, overwrite: bool) -> Result<(), PutError> {
        let what = format!("uploading to {}", self.url(key));
        if !overwrite {
            match self.exists(key).await {
                Ok(true) => return Err(PutError::Exists),
                Ok(false) => {}
                Err(e) => return Err(PutError::Other(e)),
            }
        }
        let read_err = |e| PutError::Other(CoreError::io(format!("reading {}", path.display()), e));
        let len = tokio::fs::metadata(path).await.map_err(read_err)?.len();
        let resp = self
            .send(&what, || {
                let mut q = vec![
                    ("uploadType", "resumable".to_string()),
                    ("name", key.to_string()),
                ];
                if !overwrite {
                    q.push(("ifGenerationMatch", "0".to_string()));
                }
                let rb = self
                    .client
                    .post(self.upload_url())
                    .query(&q)
                    .header("X-Upload-Content-Length", len)
                    .header("X-Upload-Content-Type", "application/octet-stream")
                    .json(&serde_json::json!({ "name": key }));
                async move { Ok(rb) }
            })
            .await
            .map_err(PutError::Other)?;
        if let Some(e) = self.put_result(resp.status()) {
            return Err(e);
        }
        if !resp.status().is_success() {
            return Err(PutError::Other(
                self.status_error(Op::Put, &what, key, resp).await,
            ));
        }
        let session = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                PutError::Other(self.error(format!("{what}: the server started no upload session")))
            })?;
        let resp = self
            .send(&what, || {
                let session = session.clone();
                async move {
                    let file = tokio::fs::File::open(path)
                        .await
                        .map_err(|e| CoreError::io(format!("reading {}", path.display()), e))?;
                    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
                    Ok(self
                        .client
                        .put(session)
                        .header(reqwest::header::CONTENT_LENGTH, len)
                        .body(reqwest::Body::wrap_stream(stream)))
                }
            })
            .await
            .map_err(PutError::Other)?;
        if let Some(e) = self.put_result(resp.status()) {
            return Err(e);
        }
        if !resp.status().is_success() {
            return Err(PutError::Other(
                self.status_error(Op::Put, &what, key, resp).await,
            ));
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<(BlobMeta, ChunkStream), CoreError> {
        let what = format!("downloading {}", self.url(key));
        let url = self.object_url(key);
        let resp = self
            .send(&what, || {
                let rb = self.client.get(&url);
                async move { Ok(rb) }
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(Op::Get, &what, key, resp).await);
        }
        let resource: ObjectResource = resp.json().await.map_err(|e| {
            let e = e.without_url();
            self.error(format!("{what}: unreadable object metadata: {e}"))
                .with_source(e)
        })?;
        let meta = resource.meta();
        let resp = self
            .send(&what, || {
                let rb = self.client.get(&url).query(&[("alt", "media")]);
                async move { Ok(rb) }
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(Op::Get, &what, key, resp).await);
        }
        let display = self.url(key);
        let stream = resp
            .bytes_stream()
            .map_err(move |e| {
                let e = e.without_url();
                CoreError::temporary(
                    BACKEND,
                    format!("downloading {display} was cut off: {e}; try again"),
                )
                .with_source(e)
            })
            .boxed();
        Ok((meta, stream))
    }

    /// The object's metadata request (no media): 200 is there, 404 is not.
    async fn exists(&self, key: &str) -> Result<bool, CoreError> {
        let what = format!("checking {}", self.url(key));
        let url = self.object_url(key);
        let resp = self
            .send(&what, || {
                let rb = self.client.get(&url);
                async move { Ok(rb) }
            })
            .await?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error(Op::Get, &what, key, resp).await),
        }
    }

    /// One `alt=media` request with a `Range` header, and no metadata request. A server that
    /// ignores the range (200) has the window cut out of its answer as it streams by.
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, CoreError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let location = self.url(key);
        let short =
            |detail: &str| crate::blobs::short_object(BACKEND, &location, offset, len, detail);
        let last = offset.checked_add(len - 1).ok_or_else(|| short(""))?;
        let what = format!("reading bytes {offset}-{last} of {location}");
        let url = self.object_url(key);
        let resp = self
            .send(&what, || {
                let rb = self
                    .client
                    .get(&url)
                    .query(&[("alt", "media")])
                    .header(reqwest::header::RANGE, format!("bytes={offset}-{last}"));
                async move { Ok(rb) }
            })
            .await?;
        let cut_off = |e: reqwest::Error| {
            let e = e.without_url();
            CoreError::temporary(BACKEND, format!("{what} was cut off: {e}; try again"))
                .with_source(e)
        };
        let bytes = match resp.status().as_u16() {
            206 => {
                let start = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range_start);
                if start.is_some_and(|s| s != offset) {
                    return Err(self.error(format!(
                        "{what}: the server answered another range ({:?})",
                        resp.headers().get(reqwest::header::CONTENT_RANGE)
                    )));
                }
                resp.bytes().await.map_err(cut_off)?
            }
            200 => {
                // The whole object: keep the window, stop reading once it is complete.
                let mut window = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                let (mut seen, end) = (0u64, offset + len);
                let mut stream = resp.bytes_stream();
                while let Some(chunk) = stream.try_next().await.map_err(cut_off)? {
                    let (from, to) = (seen, seen + chunk.len() as u64);
                    seen = to;
                    if to > offset && from < end {
                        let a = offset.saturating_sub(from) as usize;
                        let b = (end.min(to) - from) as usize;
                        window.extend_from_slice(&chunk[a..b]);
                    }
                    if seen >= end {
                        break;
                    }
                }
                Bytes::from(window)
            }
            416 => {
                let size = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes */"))
                    .map_or(String::new(), |n| format!(" (it holds {} bytes)", n.trim()));
                return Err(short(&size));
            }
            _ => return Err(self.status_error(Op::Get, &what, key, resp).await),
        };
        if bytes.len() as u64 != len {
            return Err(short(&format!(" (only {} came back)", bytes.len())));
        }
        Ok(bytes)
    }

    async fn head_bytes(&self, key: &str, n: u64) -> Option<Bytes> {
        if n == 0 {
            return Some(Bytes::new());
        }
        let url = self.object_url(key);
        let resp = self
            .send("reading a header", || {
                let rb = self
                    .client
                    .get(&url)
                    .query(&[("alt", "media")])
                    .header(reqwest::header::RANGE, format!("bytes=0-{}", n - 1));
                async move { Ok(rb) }
            })
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.bytes().await.ok()
    }

    async fn list(&self, prefix: Option<&str>) -> Result<Vec<BlobMeta>, CoreError> {
        let what = format!("listing {}", self.url(prefix.unwrap_or("")));
        let url = format!("{}/storage/v1/b/{}/o", self.base, encode(&self.bucket));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = self
                .send(&what, || {
                    let mut q: Vec<(&str, String)> = Vec::new();
                    if let Some(p) = prefix {
                        q.push(("prefix", p.to_string()));
                    }
                    if let Some(t) = &token {
                        q.push(("pageToken", t.clone()));
                    }
                    let rb = self.client.get(&url).query(&q);
                    async move { Ok(rb) }
                })
                .await?;
            if !resp.status().is_success() {
                return Err(self
                    .status_error(Op::List, &what, prefix.unwrap_or(""), resp)
                    .await);
            }
            let page: ObjectList = resp.json().await.map_err(|e| {
                let e = e.without_url();
                self.error(format!("{what}: unreadable listing: {e}"))
                    .with_source(e)
            })?;
            out.extend(page.items.into_iter().map(ObjectResource::meta));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// `DELETE` on the object: 204 is deleted; 404 is success when the bucket exists (the
    /// object is already gone) and a missing bucket otherwise.
    async fn delete(&self, key: &str) -> Result<(), CoreError> {
        let what = format!("deleting {}", self.url(key));
        let url = self.object_url(key);
        let resp = self
            .send(&what, || {
                let rb = self.client.delete(&url);
                async move { Ok(rb) }
            })
            .await?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            404 if self.bucket_exists().await => Ok(()),
            _ => Err(self.status_error(Op::Delete, &what, key, resp).await),
        }
    }

    async fn replace(&self, key: &str, bytes: Bytes) -> Result<(), CoreError> {
        match self.put(key, bytes, true).await {
            Ok(()) => Ok(()),
            Err(PutError::Exists) => Err(self.error(format!("writing {}: refused", self.url(key)))),
            Err(PutError::Other(e)) => Err(e),
        }
    }
}

/// Where a `Content-Range: bytes <first>-<last>/<size>` answer starts.
fn content_range_start(value: &str) -> Option<u64> {
    value
        .trim()
        .strip_prefix("bytes ")?
        .split(['-', '/'])
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_ranges_are_read() {
        assert_eq!(super::content_range_start("bytes 10-19/100"), Some(10));
        assert_eq!(super::content_range_start("bytes */100"), None);
        assert_eq!(super::content_range_start("items 1-2/3"), None);
    }

    #[test]
    fn object_names_are_one_path_segment() {
        assert_eq!(super::encode("a/b c+ü"), "a%2Fb%20c%2B%C3%BC");
    }
}
