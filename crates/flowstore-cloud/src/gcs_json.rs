//! [`Blobs`] on the GCS JSON API: multipart (metadata + media) uploads with
//! `ifGenerationMatch=0` (create-only), large ones streamed from disk, `alt=media` downloads,
//! paginated listing. Credentials come from `object_store`'s GCP credential chain (bearer tokens); an
//! emulator needs none.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use flowstore_core::Error as CoreError;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::gcp::GcpCredentialProvider;
use serde::Deserialize;

use crate::blobs::{BlobMeta, Blobs, ChunkStream, PutError, Source};
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

/// An object's metadata from the headers of its `alt=media` download: the generation
/// (`x-goog-generation`), `Last-Modified`, the `ETag` (quotes removed, as the JSON resource
/// gives it) and the stored length (`x-goog-stored-content-length`, else `Content-Length`).
/// `None` when the generation, the time or the length is missing or unreadable.
fn meta_from_headers(key: &str, headers: &reqwest::header::HeaderMap) -> Option<BlobMeta> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let size = text("x-goog-stored-content-length")
        .or_else(|| text("content-length"))?
        .parse()
        .ok()?;
    let last_modified = DateTime::parse_from_rfc2822(text("last-modified")?)
        .ok()?
        .with_timezone(&Utc);
    Some(BlobMeta {
        key: key.to_string(),
        size,
        last_modified,
        etag: text("etag").map(|e| e.trim_matches('"').to_string()),
        version: Some(text("x-goog-generation")?.to_string()),
    })
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

    /// One `uploadType=multipart` upload of `length` bytes (`body`: the metadata part and the
    /// media, separated by `boundary`), create-only (`ifGenerationMatch=0`) unless `overwrite`.
    fn upload_request(
        &self,
        boundary: &str,
        length: u64,
        overwrite: bool,
        body: reqwest::Body,
    ) -> reqwest::RequestBuilder {
        let mut q = vec![("uploadType", "multipart")];
        if !overwrite {
            q.push(("ifGenerationMatch", "0"));
        }
        self.client
            .post(self.upload_url())
            .query(&q)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; boundary={boundary}"),
            )
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body)
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
    fn location(&self, key: &str) -> String {
        self.url(key)
    }

    /// A multipart upload (metadata + media in one request): the form on which GCS (and its
    /// emulators) enforce `ifGenerationMatch=0`, making it create-only.
    async fn put(&self, key: &str, bytes: Bytes, overwrite: bool) -> Result<(), PutError> {
        let what = format!("uploading to {}", self.url(key));
        let boundary = boundary(bytes.len() as u64);
        // Sent as three chunks (metadata part, the flow's bytes, closing boundary) so the flow is
        // not copied into a second buffer.
        let (head, tail) = multipart_frame(key, &boundary);
        let length = head.len() + bytes.len() + tail.len();
        let body = move || {
            reqwest::Body::wrap_stream(futures::stream::iter(
                [head.clone(), bytes.clone(), tail.clone()].map(Ok::<_, std::io::Error>),
            ))
        };
        let resp = self
            .send(&what, || {
                let rb = self.upload_request(&boundary, length as u64, overwrite, body());
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

    /// One `uploadType=multipart` request whose media part is streamed from `source`, with
    /// `ifGenerationMatch=0` unless `overwrite`: create-only in the request that makes the
    /// object, so no check first and no race. (A resumable upload would take the condition
    /// too, and real GCS enforces it there, but fake-gcs-server ignores it on resumable
    /// uploads, so the tests could not show it; a resumable upload restarted from the start is
    /// no better than this request sent again.)
    ///
    /// The source's last chunk is held back until its stream has ended cleanly: when it ends
    /// in an error (a sealed flow whose file changed), the request is cut short before its
    /// declared length, so the server never has the whole body and creates nothing.
    async fn put_stream(
        &self,
        key: &str,
        source: &Source,
        len: u64,
        overwrite: bool,
    ) -> Result<(), PutError> {
        let what = format!("uploading to {}", self.url(key));
        let boundary = boundary(len);
        let (head, tail) = multipart_frame(key, &boundary);
        let length = head.len() as u64 + len + tail.len() as u64;
        // The read error of the last attempt, kept for the error (reqwest only sees that the
        // body failed).
        let failed: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let resp = self
            .send(&what, || {
                let failed = failed.clone();
                let (head, tail) = (head.clone(), tail.clone());
                let boundary = boundary.clone();
                async move {
                    if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        // A source that failed to read is not sent again.
                        return Err(source.read_error(&self.url(key), e));
                    }
                    let media = hold_last(source.stream()).map(move |chunk| {
                        chunk.map_err(|e| {
                            let shown = std::io::Error::new(e.kind(), e.to_string());
                            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            shown
                        })
                    });
                    let body = futures::stream::once(async move { Ok(head) })
                        .chain(media)
                        .chain(futures::stream::once(async move { Ok(tail) }));
                    Ok(self.upload_request(
                        &boundary,
                        length,
                        overwrite,
                        reqwest::Body::wrap_stream(body),
                    ))
                }
            })
            .await;
        if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(PutError::Other(source.read_error(&self.url(key), e)));
        }
        let resp = resp.map_err(PutError::Other)?;
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

    /// One request: the `alt=media` download, whose headers carry the object's metadata
    /// (`x-goog-generation`, `Last-Modified`, `ETag`, the stored length). Only if a server
    /// leaves one of them out is the metadata asked for in a second request.
    async fn get(&self, key: &str) -> Result<(BlobMeta, ChunkStream), CoreError> {
        let what = format!("downloading {}", self.url(key));
        let url = self.object_url(key);
        let resp = self
            .send(&what, || {
                let rb = self.client.get(&url).query(&[("alt", "media")]);
                async move { Ok(rb) }
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(Op::Get, &what, key, resp).await);
        }
        let meta = match meta_from_headers(key, resp.headers()) {
            Some(meta) => meta,
            None => {
                let meta_resp = self
                    .send(&what, || {
                        let rb = self.client.get(&url);
                        async move { Ok(rb) }
                    })
                    .await?;
                if !meta_resp.status().is_success() {
                    return Err(self.status_error(Op::Get, &what, key, meta_resp).await);
                }
                let resource: ObjectResource = meta_resp.json().await.map_err(|e| {
                    let e = e.without_url();
                    self.error(format!("{what}: unreadable object metadata: {e}"))
                        .with_source(e)
                })?;
                resource.meta()
            }
        };
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

/// A multipart boundary for a body of `len` bytes (the media is binary: the boundary only has to
/// be unlikely in it).
fn boundary(len: u64) -> String {
    format!(
        "flowstore-{:x}-{len:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    )
}

/// What goes before the media of an `uploadType=multipart` request (the metadata part naming
/// `key`, then the media part's header) and after it (the closing boundary).
fn multipart_frame(key: &str, boundary: &str) -> (Bytes, Bytes) {
    let head = Bytes::from(format!(
        "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n",
        serde_json::json!({ "name": key })
    ));
    (head, Bytes::from(format!("\r\n--{boundary}--\r\n")))
}

/// Yields each chunk of `inner` only once the next one has arrived, and the last only once the
/// stream has ended cleanly: a stream that ends in an error never delivers all its bytes, so a
/// request with a declared length is cut short rather than completed.
fn hold_last(
    inner: BoxStream<'static, std::io::Result<Bytes>>,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    futures::stream::unfold(Some((inner, None::<Bytes>)), |state| async move {
        let (mut inner, mut held) = state?;
        loop {
            match inner.next().await {
                Some(Ok(chunk)) => match held.replace(chunk) {
                    Some(previous) => return Some((Ok(previous), Some((inner, held)))),
                    None => continue,
                },
                Some(Err(e)) => return Some((Err(e), None)),
                None => return held.map(|last| (Ok(last), None)),
            }
        }
    })
    .boxed()
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

    #[tokio::test]
    async fn the_last_chunk_waits_for_a_clean_end() {
        use bytes::Bytes;
        use futures::StreamExt;
        let chunks = |items: Vec<std::io::Result<&'static str>>| {
            futures::stream::iter(
                items
                    .into_iter()
                    .map(|r| r.map(|s| Bytes::from_static(s.as_bytes()))),
            )
            .boxed()
        };
        let clean: Vec<_> = super::hold_last(chunks(vec![Ok("a"), Ok("b"), Ok("c")]))
            .collect()
            .await;
        let clean: Vec<Bytes> = clean.into_iter().map(Result::unwrap).collect();
        assert_eq!(clean, ["a", "b", "c"]);
        // An error at the end: the chunk before it is never yielded.
        let failed: Vec<_> = super::hold_last(chunks(vec![
            Ok("a"),
            Ok("b"),
            Err(std::io::Error::other("changed after it was sealed")),
        ]))
        .collect()
        .await;
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert_eq!(failed[0].as_ref().unwrap().as_ref(), b"a");
        assert!(failed[1].is_err());
    }

    #[test]
    fn object_names_are_one_path_segment() {
        assert_eq!(super::encode("a/b c+ü"), "a%2Fb%20c%2B%C3%BC");
    }
}
