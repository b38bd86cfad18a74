//! Listing, reading and deleting stored versions in URL mode, what `flowstore prune` needs.
//!
//! A plain HTTP server has no standard listing, so listing reads JSON directory listings, as
//! nginx serves them with `autoindex on; autoindex_format json;`: a `GET` of a directory URL
//! (trailing `/`) answers a JSON array of `{"name", "type": "file" | "directory", "mtime",
//! "size"}`. `<url>/` lists the flow slugs, `<url>/<slug>/` a flow's versions; the first 4 KiB
//! of each version (a ranged `GET`) tell its flow's name and whether it is a bundle manifest.
//! Deleting is an HTTP `DELETE` of the version's URL. Every request carries the get_flow
//! request's arguments (headers, params, auth, timeout; no body) and is retried by the
//! storage's [`Retry`](crate::Retry) policy.

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use flowstore_core::{key, Error as CoreError, Result, StoredVersion};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

use crate::error::{Error, LISTING, VERSION_DELETE, VERSION_READ};
use crate::method::HttpMethod;
use crate::request::{Body, Verb};
use crate::storage::{Webhook, MAX_IN_MEMORY, TYPE_NAME};

/// How many bytes of each listed version are read to tell its flow and whether it is a bundle.
pub(crate) const HEAD_BYTES: usize = 4096;

/// How many directory listings or version heads are read at once.
pub(crate) const PARALLEL_READS: usize = 16;

/// Listings and reads are `GET`s, whatever method the get_flow request uses.
const GET: Verb = Verb::Http(HttpMethod::Get);

/// What listing needs from the server, for error messages.
const LISTING_NEEDS: &str = "The server must serve JSON directory listings (nginx: `autoindex \
                             on; autoindex_format json;` in the location that serves the \
                             flows) for flowstore to list and prune this storage";

/// One entry of a JSON directory listing (nginx `autoindex_format json`); other fields are
/// ignored.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DirEntry {
    /// The file or directory name (no trailing `/`).
    pub name: String,
    /// `file`, `directory` or `other`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The last write, as an HTTP date (`Tue, 01 Dec 2026 07:24:27 GMT`).
    #[serde(default)]
    pub mtime: Option<String>,
    /// The size of a file, in bytes.
    #[serde(default)]
    pub size: Option<u64>,
}

impl DirEntry {
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.kind == "file"
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.kind == "directory"
    }

    /// The last write, when the listing gives one that parses (to the second).
    pub fn modified(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc2822(self.mtime.as_deref()?.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// The URL of the directory above `url` (`http://h/a/b` → `http://h/a`), or `None` at the host.
fn parent_url(url: &str) -> Option<&str> {
    let authority = url.find("://")? + 3;
    let path = authority + url[authority..].find('/')?;
    let last = url.rfind('/')?;
    (last >= path).then(|| &url[..last])
}

/// True if `name` can be a flow slug (the first segment of a version key).
fn is_flow_slug(name: &str) -> bool {
    key::check_version_key(&format!("{name}/0")).is_ok()
}

impl Webhook {
    /// The storage's base URL in URL mode (a template: safe to show), without a trailing `/`.
    pub(crate) fn url_base(&self) -> Option<&str> {
        self.config
            .key_base_url
            .as_deref()
            .map(|b| b.trim_end_matches('/'))
    }

    /// The error for listing or deleting outside URL mode.
    pub(crate) fn not_url_mode(&self, what: &str) -> CoreError {
        CoreError::Unsupported {
            backend: TYPE_NAME.to_string(),
            what: format!(
                "{what}: this Webhook storage sends its flow to the one url its build request \
                 names (Prefect 1's build and get_flow requests), so it keeps no versions to \
                 list or delete. Open it in URL mode (WebhookBuilder::from_url(\"https://files.\
                 example/flows\"), or an http(s):// storage URL) for `flowstore list` and \
                 `flowstore prune`"
            ),
        }
    }

    /// The error for a server that does not answer `GET <url>` with a JSON directory listing:
    /// `answered` says what it did instead, `note` is added at the end.
    fn no_listing(&self, purpose: &str, url: &str, answered: &str, note: &str) -> CoreError {
        let base = self.url_base().unwrap_or("(no key_base_url)");
        CoreError::Unsupported {
            backend: TYPE_NAME.to_string(),
            what: format!(
                "{purpose} at {base}: GET {url} answered {answered}. {LISTING_NEEDS}; otherwise \
                 prune with the server's own tools{note}"
            ),
        }
    }

    /// `GET <dir>/`, answered with a JSON directory listing: `Ok(None)` when the directory is
    /// missing (404, 410).
    ///
    /// Errors: [`CoreError::Unsupported`] naming the URL and what the server must do when the
    /// answer is not a JSON listing (403, 405, an HTML page, …); 401 is
    /// [`CoreError::PermissionDenied`]; timeouts, 408, 429 and 5xx are temporary.
    pub(crate) async fn list_dir(&self, dir: &str, purpose: &str) -> Result<Option<Vec<DirEntry>>> {
        let url = format!("{}/", dir.trim_end_matches('/'));
        let resp = match self
            .send_to(LISTING, &url, GET, false, &[], &Body::None)
            .await
        {
            Ok(resp) => resp,
            Err(Error::Status {
                code: 404 | 410, ..
            }) => return Ok(None),
            Err(e @ Error::Status { code: 401, .. }) => return Err(e.into()),
            Err(
                e @ Error::Status {
                    code: 408 | 429 | 500 | 502..=599,
                    ..
                },
            ) => return Err(e.into()),
            Err(Error::Status { status, .. }) => {
                let note = if status.starts_with("403") {
                    " (a 403 is also what a server answers when the credentials may not list: \
                     check them if it does serve listings)"
                } else {
                    ""
                };
                return Err(self.no_listing(
                    purpose,
                    &url,
                    &format!("{status}, not a JSON directory listing"),
                    note,
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no Content-Type")
            .to_string();
        let body = resp.bytes().await.map_err(|e| Error::Transport {
            what: LISTING,
            method: "GET".to_string(),
            url: url.clone(),
            attempts: 1,
            reason: format!("reading the body: {}", e.without_url()),
        })?;
        match serde_json::from_slice::<Vec<DirEntry>>(&body) {
            Ok(entries) => Ok(Some(entries)),
            Err(_) => Err(self.no_listing(
                purpose,
                &url,
                &format!("{status} with {content_type}, not a JSON directory listing"),
                "",
            )),
        }
    }

    /// Lists the storage's own directory (`<base>/`). A missing one holds nothing if the server
    /// lists the directories above it (nothing was stored yet); otherwise the server may not
    /// list at all, which is an error.
    pub(crate) async fn list_root(&self, base: &str, purpose: &str) -> Result<Vec<DirEntry>> {
        if let Some(entries) = self.list_dir(base, purpose).await? {
            return Ok(entries);
        }
        let mut dir = base;
        while let Some(parent) = parent_url(dir) {
            match self.list_dir(parent, purpose).await {
                Ok(Some(_)) => return Ok(Vec::new()),
                Ok(None) => dir = parent,
                Err(_) => break,
            }
        }
        Err(self.no_listing(
            purpose,
            &format!("{base}/"),
            "404 Not Found and no directory above it answered with a JSON directory listing \
             (nothing stored there yet, or the server does not list directories)",
            "",
        ))
    }

    /// Every version under `<base>/<flow slug>/` (one flow's slug, or every slug the base
    /// directory lists), newest first, each one's first [`HEAD_BYTES`] read for its flow's name
    /// and whether it is a bundle.
    pub(crate) async fn list_url_versions(&self, flow: Option<&str>) -> Result<Vec<StoredVersion>> {
        const PURPOSE: &str = "listing stored versions";
        let Some(base) = self.url_base() else {
            return Err(self.not_url_mode("listing stored versions"));
        };
        let slugs: Vec<String> = match flow {
            Some(name) => vec![key::flow_slug(name)],
            None => self
                .list_root(base, PURPOSE)
                .await?
                .into_iter()
                .filter(|e| e.is_dir() && !e.name.starts_with('.') && is_flow_slug(&e.name))
                .map(|e| e.name)
                .collect(),
        };
        let listed: Vec<(String, Option<Vec<DirEntry>>)> = futures::stream::iter(slugs)
            .map(|slug| async move {
                let entries = self.list_dir(&format!("{base}/{slug}"), PURPOSE).await?;
                Ok::<_, CoreError>((slug, entries))
            })
            .buffer_unordered(PARALLEL_READS)
            .try_collect()
            .await?;
        if flow.is_some() && listed.iter().all(|(_, entries)| entries.is_none()) {
            // The flow's directory is missing: no versions, provided the server lists at all.
            self.list_root(base, PURPOSE).await?;
        }
        let mut candidates: Vec<(String, DirEntry)> = Vec::new();
        for (slug, entries) in listed {
            for entry in entries.unwrap_or_default() {
                // Only `<flow slug>/<timestamp slug>` files are versions (what `delete_version`
                // accepts), so a prune never plans what it may not delete.
                if entry.is_file()
                    && key::check_version_key(&format!("{slug}/{}", entry.name)).is_ok()
                {
                    candidates.push((slug.clone(), entry));
                }
            }
        }
        let read: Vec<Option<StoredVersion>> = futures::stream::iter(candidates)
            .map(|(slug, entry)| async move {
                let location = format!("{base}/{slug}/{}", entry.name);
                let head = if entry.size == Some(0) {
                    Some(Bytes::new())
                } else {
                    self.read_head(&location).await?
                };
                // Gone since the listing (another prune): not a version any more.
                Ok::<_, CoreError>(head.map(|head| StoredVersion {
                    flow: flowstore_core::envelope::peek_header(&head).map(|h| h.flow),
                    bundle: flowstore_core::bundle::is_manifest(&head),
                    slug,
                    location,
                    size: entry.size,
                    stored_at: entry.modified(),
                }))
            })
            .buffer_unordered(PARALLEL_READS)
            .try_collect()
            .await?;
        let mut versions: Vec<StoredVersion> = read.into_iter().flatten().collect();
        versions.sort_by(|a, b| {
            let stamp = |v: &StoredVersion| v.location.rsplit('/').next().unwrap_or("").to_string();
            stamp(b).cmp(&stamp(a)).then_with(|| a.slug.cmp(&b.slug))
        });
        Ok(versions)
    }

    /// The first [`HEAD_BYTES`] of the file at `url` (`Range: bytes=0-4095`; a server that
    /// ignores `Range` is read no further); `None` when it is gone.
    async fn read_head(&self, url: &str) -> Result<Option<Bytes>> {
        let range = format!("bytes=0-{}", HEAD_BYTES - 1);
        let mut resp = match self
            .send_to(
                VERSION_READ,
                url,
                GET,
                false,
                &[("Range", &range)],
                &Body::None,
            )
            .await
        {
            Ok(resp) => resp,
            Err(Error::Status {
                code: 404 | 410, ..
            }) => return Ok(None),
            // An empty file has no first byte.
            Err(Error::Status { code: 416, .. }) => return Ok(Some(Bytes::new())),
            Err(e) => return Err(e.into()),
        };
        let mut head = BytesMut::with_capacity(HEAD_BYTES);
        while head.len() < HEAD_BYTES {
            match resp.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    return Err(Error::Transport {
                        what: VERSION_READ,
                        method: "GET".to_string(),
                        url: url.to_string(),
                        attempts: 1,
                        reason: format!("reading the body: {}", e.without_url()),
                    }
                    .into())
                }
            }
        }
        head.truncate(HEAD_BYTES);
        Ok(Some(head.freeze()))
    }

    /// The URL of a listed version, if it is `<base>/<flow slug>/<timestamp slug>` of this
    /// storage.
    ///
    /// Errors: [`CoreError::Unsupported`] outside URL mode; [`CoreError::Config`] naming the
    /// location and what may be deleted or read otherwise.
    fn version_url<'v>(&self, version: &'v StoredVersion, doing: &str) -> Result<&'v str> {
        let Some(base) = self.url_base() else {
            return Err(self.not_url_mode(&format!("{doing} stored version {}", version.location)));
        };
        let location = version.location.as_str();
        let not_ours = |why: &str| {
            CoreError::config(format!(
                "refusing {location}: {why}. Only flow versions that `flowstore list` shows for \
                 the Webhook storage at {base} ({base}/<flow slug>/<timestamp>) can be deleted or \
                 read here; nothing was sent"
            ))
        };
        let rel = location
            .strip_prefix(base)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| not_ours(&format!("it is not under the storage's URL {base}/")))?;
        key::check_version_key(rel)
            .map_err(|why| not_ours(&format!("it is not a flow version ({why})")))?;
        Ok(location)
    }

    /// `DELETE` of a listed version's URL (one already gone is success).
    pub(crate) async fn delete_url_version(&self, version: &StoredVersion) -> Result<()> {
        let url = self.version_url(version, "deleting")?;
        self.delete_url(VERSION_DELETE, url).await?;
        tracing::debug!(location = %url, "deleted a stored version");
        Ok(())
    }

    /// `GET` of a listed version's URL: its bytes, unverified.
    pub(crate) async fn read_url_version(&self, version: &StoredVersion) -> Result<Bytes> {
        let url = self.version_url(version, "reading")?;
        let resp = self
            .send_to(VERSION_READ, url, GET, false, &[], &Body::None)
            .await?;
        if let Some(n) = resp.content_length().filter(|n| *n > MAX_IN_MEMORY) {
            return Err(CoreError::config(format!(
                "stored version {url} is {n} bytes, more than the {MAX_IN_MEMORY} read into memory"
            )));
        }
        resp.bytes().await.map_err(|e| {
            Error::Transport {
                what: VERSION_READ,
                method: "GET".to_string(),
                url: url.to_string(),
                attempts: 1,
                reason: format!("reading the body: {}", e.without_url()),
            }
            .into()
        })
    }

    /// `DELETE <url>` with the get_flow request's arguments: 404 or 410 (already gone) is
    /// success.
    ///
    /// Errors: a server that does not allow `DELETE` (405, 501) is [`CoreError::Unsupported`]
    /// naming the storage's URL and what to do; 401/403 [`CoreError::PermissionDenied`]; other
    /// answers as for any request.
    pub(crate) async fn delete_url(&self, what: &'static str, url: &str) -> Result<()> {
        match self
            .send_to(what, url, Verb::Delete, false, &[], &Body::None)
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Status {
                code: 404 | 410, ..
            }) => Ok(()),
            Err(Error::Status {
                code: 405 | 501,
                status,
                ..
            }) => {
                let base = self.url_base().unwrap_or(url);
                Err(CoreError::Unsupported {
                    backend: TYPE_NAME.to_string(),
                    what: format!(
                        "deleting {url}: the server at {base} does not allow DELETE (DELETE \
                         answered {status}); allow it (nginx: `dav_methods PUT DELETE;`) or \
                         prune with the server's own tools. Nothing was deleted"
                    ),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_stop_at_the_host() {
        assert_eq!(parent_url("http://h:1/a/b"), Some("http://h:1/a"));
        assert_eq!(parent_url("http://h:1/a"), Some("http://h:1"));
        assert_eq!(parent_url("http://h:1"), None);
        assert_eq!(parent_url("no scheme/a"), None);
    }

    #[test]
    fn nginx_json_listings_parse() {
        let json = br#"[
{ "name":"my-flow", "type":"directory", "mtime":"Tue, 01 Dec 2026 07:24:27 GMT" },
{ "name":"2026-12-01t07-24-27-000001-00-00", "type":"file", "mtime":"Tue, 01 Dec 2026 07:24:28 GMT", "size":123 }
]"#;
        let entries: Vec<DirEntry> = serde_json::from_slice(json).unwrap();
        assert!(entries[0].is_dir() && !entries[0].is_file());
        assert!(entries[1].is_file() && entries[1].size == Some(123));
        assert_eq!(
            entries[1].modified().unwrap().to_rfc3339(),
            "2026-12-01T07:24:28+00:00"
        );
        assert!(is_flow_slug("my-flow") && !is_flow_slug(".blobs") && !is_flow_slug("A b"));
    }
}
