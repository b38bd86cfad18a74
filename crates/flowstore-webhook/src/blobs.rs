//! Bundle blobs of a [`Webhook`] storage in URL mode: each blob lives at
//! `<key_base_url>/.blobs/sha256/<hex>` (a swept one at `<key_base_url>/.blobs/trash/sha256/<hex>`,
//! the [`BlobArea::Trash`] view) and travels with the storage's own request arguments (headers,
//! params, auth, timeout; `${NAME}` templates rendered at call time):
//!
//! - existence: `HEAD` with the build request's arguments (404 or 410: missing);
//! - upload: the build request's method (PUT by default) with the blob as the body, create-only
//!   as flows are (`If-None-Match: *` on a PUT; a 412 means the blob is already there, which is
//!   success: same name, same bytes);
//! - download: the get_flow request's method (GET by default), streamed to the file;
//! - one file out of a pack: the same request with `Range: bytes=<first>-<last>`. A `206`
//!   answer must say (`Content-Range`) that it starts at or before the first byte asked for; a
//!   server that ignores `Range` and answers `200` with the whole blob still gives the right
//!   bytes: the body is read up to the end of the range and sliced (logged once per storage as a
//!   warning, since it costs the download the range was meant to save);
//! - listing (for a prune's sweep): `GET` of the area's directory (`…/.blobs/sha256/`) with the
//!   get_flow request's arguments, answered with a JSON directory listing (nginx
//!   `autoindex_format json`); a missing directory holds no blobs;
//! - delete (a prune's sweep): `DELETE` with the get_flow request's arguments; 404 or 410 means
//!   already gone.
//!
//! The configured body arguments (`data`, `json`) are never sent with a blob request. Every
//! request is retried by the storage's [`Retry`](crate::Retry) policy.

use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use flowstore_core::bundle::{self, BlobArea, BlobInfo, BlobStore, BundleInput, ScannedBundle};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, BLOB_CHECK, BLOB_DELETE, BLOB_DOWNLOAD, BLOB_UPLOAD};
use crate::request::{send, Body, RequestSpec, Verb};
use crate::storage::{Webhook, TYPE_NAME};

/// `kwargs` aimed at `url`, without the configured body (`data`, `json`): a blob request's body
/// is the blob, or nothing (and a listing, read or delete sends none).
fn blob_kwargs(kwargs: &Value, url: &str) -> Value {
    let mut kwargs = kwargs.clone();
    if let Some(map) = kwargs.as_object_mut() {
        map.insert("url".into(), Value::String(url.to_string()));
        map.remove("data");
        map.remove("json");
    }
    kwargs
}

impl Webhook {
    /// Whether this storage holds bundles: URL mode (`key_base_url`), serialized mode.
    pub(crate) fn holds_bundles(&self) -> bool {
        !self.config.stored_as_script && self.config.key_base_url.is_some()
    }

    /// The blob's URL in the live area as configured (a template, never rendered: safe to show).
    #[cfg(test)]
    pub(crate) fn blob_url(&self, digest: &str) -> Result<String> {
        self.blob_url_in(BlobArea::Live, digest)
    }

    /// The blob's URL in `area` as configured (a template: safe to show).
    ///
    /// Errors with [`CoreError::Unsupported`] outside URL mode (no `key_base_url`).
    pub(crate) fn blob_url_in(&self, area: BlobArea, digest: &str) -> Result<String> {
        let base = self.url_base().ok_or_else(|| CoreError::Unsupported {
            backend: TYPE_NAME.to_string(),
            what: format!(
                "blob {digest}: this Webhook storage is not in URL mode (no key_base_url), \
                 so it has nowhere to keep bundle blobs; open it with \
                 WebhookBuilder::from_url(\"https://files.example/flows\")"
            ),
        })?;
        Ok(format!("{base}/{}", area.key(digest)))
    }

    /// The blobs of `area` (`<key_base_url>/.blobs/sha256/`, or `.blobs/trash/sha256/`), as a
    /// store of their own.
    pub(crate) fn blobs(&self, area: BlobArea) -> AreaBlobs<'_> {
        AreaBlobs {
            storage: self,
            area,
        }
    }

    /// Sends one request aimed at `url` with the build request's (`build`) or the get_flow
    /// request's arguments (without their body arguments), plus `extra_headers`.
    pub(crate) async fn send_to(
        &self,
        what: &'static str,
        url: &str,
        method: Verb,
        build: bool,
        extra_headers: &[(&str, &str)],
        body: &Body,
    ) -> Result<reqwest::Response, Error> {
        let base = if build {
            &self.config.build_request_kwargs
        } else {
            &self.config.get_flow_request_kwargs
        };
        let mut kwargs = blob_kwargs(base, url);
        if !extra_headers.is_empty() {
            if let Some(map) = kwargs.as_object_mut() {
                let headers = map
                    .entry("headers")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(headers) = headers.as_object_mut() {
                    for (name, value) in extra_headers {
                        headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
                        headers.insert(name.to_string(), Value::String(value.to_string()));
                    }
                }
            }
        }
        let spec = RequestSpec {
            what,
            method,
            kwargs: &kwargs,
        };
        send(
            &self.client,
            spec,
            body,
            self.secrets.as_ref(),
            &self.retry,
            self.credential.as_ref(),
        )
        .await
    }

    /// Walks and hashes the bundle's tree off the async threads.
    ///
    /// Errors with [`bundle::unsupported`] unless the storage holds bundles (URL mode, serialized
    /// mode), and as [`BundleInput::scan`] does.
    pub(crate) async fn scan_bundle(&self, input: &BundleInput) -> Result<ScannedBundle> {
        if !self.holds_bundles() {
            let hint = if self.config.stored_as_script {
                "this Webhook storage is in script mode"
            } else {
                "this Webhook storage sends every flow to one configured url; open it in URL mode \
                 (WebhookBuilder::from_url(\"https://files.example/flows\")) so blobs get URLs of \
                 their own"
            };
            return Err(match bundle::unsupported(TYPE_NAME, &input.name) {
                CoreError::Unsupported { backend, what } => CoreError::Unsupported {
                    backend,
                    what: format!("{what}; {hint}"),
                },
                other => other,
            });
        }
        let scan_input = input.clone();
        tokio::task::spawn_blocking(move || scan_input.scan())
            .await
            .map_err(|e| CoreError::backend(TYPE_NAME, format!("scan task failed: {e}")))?
    }
}

/// The blobs of one area (live or trash) of a [`Webhook`] storage in URL mode.
pub(crate) struct AreaBlobs<'a> {
    storage: &'a Webhook,
    area: BlobArea,
}

impl AreaBlobs<'_> {
    /// The blob's URL in this area (a template: safe to show).
    fn url(&self, digest: &str) -> Result<String> {
        self.storage.blob_url_in(self.area, digest)
    }

    /// Sends one blob request aimed at the blob's URL in this area.
    async fn request(
        &self,
        what: &'static str,
        digest: &str,
        method: Verb,
        build: bool,
        extra_headers: &[(&str, &str)],
        body: &Body,
    ) -> Result<reqwest::Response, Error> {
        let url = self.url(digest)?;
        self.storage
            .send_to(what, &url, method, build, extra_headers, body)
            .await
    }
}

#[async_trait]
impl BlobStore for AreaBlobs<'_> {
    fn blob_location(&self, digest: &str) -> String {
        self.url(digest)
            .unwrap_or_else(|_| format!("(no key_base_url)/{}", self.area.key(digest)))
    }

    /// `HEAD` of the blob's URL with the build request's arguments; 404 or 410 is "missing".
    async fn has_blob(&self, digest: &str) -> Result<bool> {
        match self
            .request(BLOB_CHECK, digest, Verb::Head, true, &[], &Body::None)
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::Status {
                code: 404 | 410, ..
            }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams the file with the build request's method; a 412 answer to the create-only PUT
    /// means the blob is already stored, which is success (same name, same bytes).
    async fn put_blob(&self, digest: &str, source: &Path, _size: u64) -> Result<()> {
        let method = self.storage.config.build_request_http_method.into();
        let body = Body::File(source.to_path_buf());
        match self
            .request(BLOB_UPLOAD, digest, method, true, &[], &body)
            .await
        {
            Ok(_) => {
                tracing::debug!(blob = %self.blob_location(digest), "uploaded blob");
                Ok(())
            }
            Err(Error::Status { code: 412, .. }) => {
                tracing::debug!(blob = %self.blob_location(digest), "blob already stored");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Streams the answer to the get_flow request's method into `dest`; a body cut off mid-way
    /// is fetched again from the start (bounded by the retry policy).
    async fn get_blob(&self, digest: &str, dest: &Path) -> Result<u64> {
        let method: Verb = self.storage.config.get_flow_request_http_method.into();
        let write_err =
            |e| CoreError::io(format!("writing blob {digest} to {}", dest.display()), e);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut resp = self
                .request(BLOB_DOWNLOAD, digest, method, false, &[], &Body::None)
                .await?;
            let mut file = tokio::fs::File::create(dest).await.map_err(write_err)?;
            let mut written = 0u64;
            let cut = loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        file.write_all(&chunk).await.map_err(write_err)?;
                        written += chunk.len() as u64;
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            match cut {
                None => {
                    file.flush().await.map_err(write_err)?;
                    return Ok(written);
                }
                Some(e) if attempt <= self.storage.retry.max_retries => {
                    tracing::warn!(blob = %self.blob_location(digest), attempt, error = %e.without_url(), "blob download cut off; fetching again");
                    tokio::time::sleep(self.storage.retry.base_delay).await;
                }
                Some(e) => {
                    return Err(Error::Transport {
                        what: BLOB_DOWNLOAD,
                        method: method.as_str().to_string(),
                        url: self.blob_location(digest),
                        attempts: attempt,
                        reason: format!("reading the body: {}", e.without_url()),
                    }
                    .into())
                }
            }
        }
    }

    /// The get_flow request (its method and arguments) with `Range: bytes=<offset>-<last>`. A
    /// `206` answer is checked against its `Content-Range`; a `200` (a server that ignores
    /// `Range`) is read up to the end of the range and sliced, and the rest of it is not read.
    /// A body cut off mid-way is requested again (bounded by the retry policy). No request is
    /// made for an empty range.
    ///
    /// Errors: a missing blob is [`CoreError::NotFound`]; a blob shorter than the range (a `416`
    /// answer, or a body that ends early), or a `206` that does not hold the range, is a
    /// permanent [`CoreError::Backend`] naming the blob's URL and the range.
    async fn get_blob_range(&self, digest: &str, offset: u64, len: u64) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let location = self.blob_location(digest);
        let too_large = || {
            CoreError::config(format!(
                "blob {location}: a range of {len} bytes at offset {offset} cannot be read into \
                 memory on this machine; the bundle's manifest is not one flowstore wrote"
            ))
        };
        let last = offset.checked_add(len - 1).ok_or_else(too_large)?;
        let want = usize::try_from(len).map_err(|_| too_large())?;
        let range = format!("bytes={offset}-{last}");
        let short = |detail: String| {
            CoreError::backend(
                TYPE_NAME,
                format!(
                    "blob {location} does not hold the bytes the bundle's manifest places in it \
                     (Range {range}): {detail}; the blob or the manifest was altered, register \
                     the bundle again"
                ),
            )
        };
        let method: Verb = self.storage.config.get_flow_request_http_method.into();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut resp = match self
                .request(
                    BLOB_DOWNLOAD,
                    digest,
                    method,
                    false,
                    &[("Range", &range)],
                    &Body::None,
                )
                .await
            {
                Ok(resp) => resp,
                Err(e @ Error::Status { code: 416, .. }) => {
                    return Err(
                        short("the server answered 416 (it is shorter)".into()).with_source(e)
                    )
                }
                Err(e) => return Err(e.into()),
            };
            let status = resp.status();
            // Bytes of the body that come before the range.
            let mut skip = if status == reqwest::StatusCode::PARTIAL_CONTENT {
                let header = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok());
                match header.and_then(content_range_start) {
                    Some(first) if first <= offset => offset - first,
                    _ => {
                        return Err(CoreError::backend(
                            TYPE_NAME,
                            format!(
                                "the blob download {} {location} asked for Range {range} and the \
                                 server answered 206 with Content-Range {}: not the bytes asked \
                                 for; check that the server serves single byte ranges",
                                method.as_str(),
                                header.map_or("(none)".to_string(), |h| format!("{h:?}")),
                            ),
                        ))
                    }
                }
            } else {
                if !self.storage.range_ignored.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        blob = %location, status = %status,
                        "the server ignored the Range header and sent the whole blob; bundle \
                         files are sliced out of it, but each costs a whole pack's download"
                    );
                }
                offset
            };
            // Grown as bytes arrive: a manifest's size is not trusted for an allocation.
            let mut out = BytesMut::with_capacity(want.min(8 << 20));
            let mut skipped = 0u64;
            let cut = loop {
                if out.len() == want {
                    break None;
                }
                match resp.chunk().await {
                    Ok(Some(mut chunk)) => {
                        if skip > 0 {
                            let n = skip.min(chunk.len() as u64);
                            chunk = chunk.slice(n as usize..);
                            skip -= n;
                            skipped += n;
                        }
                        let take = chunk.len().min(want - out.len());
                        out.extend_from_slice(&chunk[..take]);
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            match cut {
                None if out.len() == want => return Ok(out.freeze()),
                None => {
                    return Err(short(format!(
                        "the answer ({status}) ended after {} bytes",
                        skipped + out.len() as u64
                    )))
                }
                Some(e) if attempt <= self.storage.retry.max_retries => {
                    tracing::warn!(blob = %location, attempt, error = %e.without_url(), "ranged blob read cut off; reading it again");
                    tokio::time::sleep(self.storage.retry.base_delay).await;
                }
                Some(e) => {
                    return Err(Error::Transport {
                        what: BLOB_DOWNLOAD,
                        method: method.as_str().to_string(),
                        url: location,
                        attempts: attempt,
                        reason: format!("reading the body: {}", e.without_url()),
                    }
                    .into())
                }
            }
        }
    }

    /// PUTs (the build request's method) `bytes` over the blob with `If-Match: *`, so the
    /// create-only guard does not apply.
    async fn replace_blob_for_tests(&self, digest: &str, bytes: &[u8]) -> Result<bool> {
        let method = self.storage.config.build_request_http_method.into();
        let body = Body::Bytes(bytes.to_vec().into());
        self.request(
            BLOB_UPLOAD,
            digest,
            method,
            true,
            &[("If-Match", "*")],
            &body,
        )
        .await?;
        Ok(true)
    }

    fn area(&self, area: BlobArea) -> Option<Box<dyn BlobStore + '_>> {
        Some(Box::new(self.storage.blobs(area)))
    }

    /// Reads the JSON directory listing of the area's directory (`…/.blobs/sha256/`; a missing
    /// directory holds no blobs). Files whose name is not 64 hex digits are not blobs. A blob's
    /// time is its file's, to the second.
    ///
    /// Errors: a server that does not serve JSON directory listings is
    /// [`CoreError::Unsupported`] naming the URL and what the server must do.
    async fn list_blobs(&self) -> Result<Vec<BlobInfo>> {
        let Some(base) = self.storage.url_base() else {
            return Err(self.storage.not_url_mode("listing bundle blobs"));
        };
        let dir = format!("{base}/{}", self.area.dir());
        let entries = self
            .storage
            .list_dir(&dir, "listing bundle blobs")
            .await?
            .unwrap_or_default();
        Ok(entries
            .into_iter()
            .filter(|e| e.is_file())
            .filter_map(|e| {
                let digest = BlobArea::digest_of(&e.name)?;
                Some(BlobInfo {
                    digest,
                    size: e.size.unwrap_or(0),
                    // A listing without a time: treated as just written, so never swept early.
                    modified: e.modified().unwrap_or_else(chrono::Utc::now),
                })
            })
            .collect())
    }

    /// `DELETE` of the blob's URL in this area with the get_flow request's arguments; 404 or
    /// 410 (already gone) is success.
    ///
    /// Errors: a server that does not allow `DELETE` is [`CoreError::Unsupported`] naming the
    /// storage's URL and what to do; 401/403 [`CoreError::PermissionDenied`].
    async fn delete_blob(&self, digest: &str) -> Result<()> {
        let url = self.url(digest)?;
        self.storage.delete_url(BLOB_DELETE, &url).await?;
        tracing::debug!(blob = %url, "deleted blob");
        Ok(())
    }
}

/// The first byte of a `Content-Range: bytes <first>-<last>/<size or *>` header.
fn content_range_start(value: &str) -> Option<u64> {
    let spec = value.trim().strip_prefix("bytes ")?;
    let (range, _size) = spec.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last) = (
        first.trim().parse::<u64>().ok()?,
        last.trim().parse::<u64>().ok()?,
    );
    (first <= last).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HttpMethod;
    use serde_json::json;

    #[test]
    fn blob_requests_keep_arguments_but_not_the_body_or_url() {
        let kwargs = json!({
            "url": "https://files.example/flows/etl/2024",
            "headers": {"Authorization": "Bearer ${TOKEN}"},
            "params": {"v": "2"},
            "data": "configured body",
            "json": {"a": 1},
            "timeout": 5,
        });
        let blob = blob_kwargs(&kwargs, "https://files.example/flows/.blobs/sha256/ab");
        assert_eq!(
            blob,
            json!({
                "url": "https://files.example/flows/.blobs/sha256/ab",
                "headers": {"Authorization": "Bearer ${TOKEN}"},
                "params": {"v": "2"},
                "timeout": 5,
            })
        );
    }

    #[test]
    fn content_range_gives_the_first_byte() {
        assert_eq!(content_range_start("bytes 100-199/5000"), Some(100));
        assert_eq!(content_range_start(" bytes 0-0/*"), Some(0));
        for bad in [
            "bytes */5000",
            "bytes 9-3/10",
            "items 0-1/2",
            "bytes 0-1",
            "bytes a-1/2",
        ] {
            assert_eq!(content_range_start(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_url_mode_in_serialized_mode_holds_bundles() {
        let d = flowstore_core::envelope::sha256_digest(b"x");
        let url_mode = crate::WebhookBuilder::from_url("https://files.example/flows")
            .unwrap()
            .build()
            .unwrap();
        assert!(url_mode.holds_bundles());
        assert_eq!(
            url_mode.blobs(BlobArea::Live).blob_location(&d),
            format!(
                "https://files.example/flows/.blobs/sha256/{}",
                d.trim_start_matches("sha256:")
            )
        );
        let kwargs = json!({"url": "https://files.example/flows/etl"});
        let fixed = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get)
            .build()
            .unwrap();
        assert!(!fixed.holds_bundles());
        let err = fixed.blob_url(&d).unwrap_err();
        assert!(matches!(err, CoreError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("URL mode"), "{err}");
        let script = crate::WebhookBuilder::from_url("https://files.example/flows")
            .unwrap()
            .script("flow.py")
            .build()
            .unwrap();
        assert!(!script.holds_bundles());
    }
}
