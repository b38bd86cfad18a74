//! The object-store engine S3, Azure and GCS share: staging at `add_flow`, create-only uploads
//! at `persist`, verified downloads, streaming to disk, and listing versions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use flowstore_core::bundle::{self, BundleInput, ScannedBundle};
use flowstore_core::raw::sink::{file_digest, FlowFileSink};
use flowstore_core::raw::FlowIndex;
use flowstore_core::{key, Error as CoreError, FetchedFlow, FlowInput, Result, StoredVersion};
use futures::TryStreamExt;

use crate::blobs::{BlobMeta, Blobs, PutError, MULTIPART_THRESHOLD};
use crate::error::bucket_word;

/// Fresh keys tried when a default key is already taken.
const KEY_ATTEMPTS: usize = 8;
/// The largest flow `get_flow` holds in memory.
pub const MAX_IN_MEMORY: u64 = 2 << 30;

/// What `add_flow` staged for `persist`.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Bytes(Bytes),
    File(PathBuf),
    /// A bundle: its blobs go first, then its manifest (the flow's bytes).
    Bundle {
        scanned: Arc<ScannedBundle>,
        input: BundleInput,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub name: String,
    pub body: Body,
}

/// Shared state of a cloud storage: where objects go and what was stored.
#[derive(Clone)]
pub(crate) struct Engine {
    /// Reference type name (`S3`, `Azure`, `GCS`).
    pub backend: &'static str,
    /// `s3://bucket`, `az://container`, `gs://bucket`: for logs and errors.
    pub display: String,
    pub blobs: Arc<dyn Blobs>,
    /// Prefix from a storage URL, prepended to default keys.
    pub prefix: Option<String>,
    /// A fixed key (S3/GCS `key`, Azure `blob_name`).
    pub fixed_key: Option<String>,
    pub stored_as_script: bool,
    pub local_script_path: Option<PathBuf>,
    /// Azure's `overwrite` switch; everywhere else false.
    pub overwrite: bool,
    /// Prefect 1's message for script mode without a key or a local script.
    pub script_key_error: &'static str,
    pub index: FlowIndex,
    pub(crate) staged: Vec<Staged>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.backend)
            .field("display", &self.display)
            .field("prefix", &self.prefix)
            .field("fixed_key", &self.fixed_key)
            .field("stored_as_script", &self.stored_as_script)
            .field("flows", &self.index.flows)
            .finish()
    }
}

impl Engine {
    pub fn new(
        backend: &'static str,
        display: String,
        blobs: Arc<dyn Blobs>,
        script_key_error: &'static str,
    ) -> Self {
        Engine {
            backend,
            display,
            blobs,
            prefix: None,
            fixed_key: None,
            stored_as_script: false,
            local_script_path: None,
            overwrite: false,
            script_key_error,
            index: FlowIndex::default(),
            staged: Vec::new(),
        }
    }

    pub(crate) fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.display)
    }

    /// Bundles need default keys (a bundle's blobs live beside the flows under the prefix) and
    /// serialized mode (the manifest is stored as the flow).
    pub fn bundles(&self) -> bool {
        !self.stored_as_script && self.fixed_key.is_none()
    }

    pub(crate) fn default_key(&self, name: &str) -> String {
        let key = key::new_flow_key(name);
        match &self.prefix {
            Some(p) if !p.is_empty() => format!("{}/{key}", p.trim_end_matches('/')),
            _ => key,
        }
    }

    /// Stages a flow; the location is final (the upload happens at `persist`). A bundle's tree
    /// is scanned now (see `add_bundle`).
    pub async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        let flow = match flow {
            FlowInput::Bundle(input) => return self.add_bundle(input).await,
            other => other,
        };
        self.index.ensure_new(flow.name())?;
        let name = flow.name().to_string();
        let (body, key) = if self.stored_as_script {
            match (&self.local_script_path, &self.fixed_key) {
                (Some(path), key) => (
                    Some(Body::File(path.clone())),
                    key.clone().unwrap_or_else(|| self.default_key(&name)),
                ),
                // A key naming an already-uploaded script: nothing to upload.
                (None, Some(key)) => (None, key.clone()),
                (None, None) => return Err(CoreError::config(self.script_key_error)),
            }
        } else {
            let FlowInput::Serialized(sealed) = flow else {
                return Err(CoreError::config(format!(
                    "Flow \"{name}\" is a script flow, but this {} storage stores serialized flows; \
                     set stored_as_script with a local script path or key",
                    self.backend
                )));
            };
            let key = self
                .fixed_key
                .clone()
                .unwrap_or_else(|| self.default_key(&name));
            (Some(Body::Bytes(sealed.bytes)), key)
        };
        self.index.insert(&name, key.clone(), None)?;
        if let Some(body) = body {
            self.staged.push(Staged { name, body });
        }
        Ok(key)
    }

    /// Uploads everything staged, create-only; records digests.
    pub async fn persist(&mut self) -> Result<()> {
        let staged = std::mem::take(&mut self.staged);
        for (i, item) in staged.iter().enumerate() {
            if let Err(e) = self.upload(item).await {
                // Keep what was not uploaded staged, so a retried persist picks it up.
                self.staged = staged[i..].to_vec();
                return Err(e);
            }
        }
        Ok(())
    }

    async fn upload(&mut self, item: &Staged) -> Result<()> {
        // A bundle's missing blobs are uploaded before its manifest, so no stored manifest ever
        // names a blob the storage lacks.
        let mut report = match &item.body {
            Body::Bundle { scanned, input } => {
                Some(bundle::upload(&*self, scanned, input.progress.as_ref()).await?)
            }
            _ => None,
        };
        let digest = match &item.body {
            Body::Bytes(b) => flowstore_core::envelope::sha256_digest(b),
            Body::Bundle { scanned, .. } => scanned.manifest.digest(),
            Body::File(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || file_digest(&p))
                    .await
                    .map_err(|e| {
                        CoreError::backend(self.backend, format!("digest task failed: {e}"))
                    })??
            }
        };
        let mut key = self.index.location(&item.name)?.to_string();
        for attempt in 1..=KEY_ATTEMPTS {
            match self.put(&key, &item.body).await {
                Ok(()) => break,
                Err(PutError::Exists) if self.fixed_key.is_none() && attempt < KEY_ATTEMPTS => {
                    // Another writer took this default key in the same microsecond: take a fresh one.
                    key = self.default_key(&item.name);
                    self.index.flows.insert(item.name.clone(), key.clone());
                }
                Err(PutError::Exists) => {
                    return Err(CoreError::AlreadyExists {
                        location: self.url(&key),
                    });
                }
                Err(PutError::Other(e)) => return Err(e),
            }
        }
        tracing::info!(flow = %item.name, location = %self.url(&key), "uploaded flow");
        self.index.digests.insert(item.name.clone(), digest);
        if let (Some(report), Body::Bundle { scanned, .. }) = (&mut report, &item.body) {
            report.add_object(scanned.manifest.bytes().len() as u64);
            tracing::info!(
                flow = %item.name,
                files = scanned.manifest.files().len(),
                uploaded = report.objects,
                reused = report.reused_objects,
                "stored bundle"
            );
            self.index.transfers.insert(item.name.clone(), *report);
        }
        Ok(())
    }

    async fn put(&self, key: &str, body: &Body) -> Result<(), PutError> {
        match body {
            Body::Bytes(b) => self.blobs.put(key, b.clone(), self.overwrite).await,
            Body::Bundle { scanned, .. } => {
                self.blobs
                    .put(key, scanned.manifest.bytes().clone(), self.overwrite)
                    .await
            }
            Body::File(p) => {
                let read_err = |e| {
                    PutError::Other(CoreError::io(format!("reading script {}", p.display()), e))
                };
                let len = tokio::fs::metadata(p).await.map_err(read_err)?.len();
                if len > MULTIPART_THRESHOLD {
                    return self.blobs.put_file(key, p, self.overwrite).await;
                }
                let bytes = tokio::fs::read(p).await.map_err(read_err)?;
                self.blobs
                    .put(key, Bytes::from(bytes), self.overwrite)
                    .await
            }
        }
    }

    fn log_download(&self, key: &str, meta: &BlobMeta) {
        tracing::info!(
            "Flow successfully downloaded. ETag: {}, LastModified: {}, VersionId: {}",
            meta.etag.as_deref().unwrap_or("-"),
            meta.last_modified.to_rfc3339(),
            meta.version.as_deref().unwrap_or("-"),
        );
        tracing::debug!(location = %self.url(key), size = meta.size, "downloaded");
    }

    async fn open(&self, name: &str) -> Result<(String, BlobMeta, crate::blobs::ChunkStream)> {
        let key = self.index.location(name)?.to_string();
        tracing::info!("Downloading flow from {}", self.url(&key));
        match self.blobs.get(&key).await {
            Ok((meta, stream)) => Ok((key, meta, stream)),
            Err(CoreError::NotFound {
                what: "object",
                location,
                source,
                ..
            }) => {
                let word = bucket_word(self.backend);
                Err(CoreError::NotFound {
                    what: "object",
                    message: format!(
                        "{}: flow \"{name}\" is not in the {word}: object {location} does not exist \
                         (it was deleted, or the reference points at another {word}). Register the flow again.",
                        self.backend
                    ),
                    location,
                    source,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Downloads and verifies a flow in memory.
    pub async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let (key, meta, mut stream) = self.open(name).await?;
        if meta.size > MAX_IN_MEMORY {
            return Err(CoreError::config(format!(
                "Flow \"{name}\" at {} is {} bytes; fetch it to a file (get_flow_to_file, or `flowstore fetch -o FILE`)",
                self.url(&key),
                meta.size
            )));
        }
        let mut buf = BytesMut::with_capacity(meta.size as usize);
        while let Some(chunk) = stream.try_next().await? {
            buf.extend_from_slice(&chunk);
        }
        let bytes = buf.freeze();
        self.log_download(&key, &meta);
        let revision = meta.etag.clone();
        if self.stored_as_script {
            self.index.open_script(name, &key, revision, bytes, None)
        } else {
            self.index.open_serialized(name, &key, revision, bytes)
        }
    }

    /// Streams a flow to `dest`, verifying as it goes; `dest` appears only when all checks pass.
    pub async fn get_flow_to_file(&self, name: &str, dest: &Path) -> Result<FetchedFlow> {
        let (key, meta, mut stream) = self.open(name).await?;
        let mut sink = FlowFileSink::create(&self.index, name, &key, dest, !self.stored_as_script)?;
        while let Some(chunk) = stream.try_next().await? {
            sink.push(&chunk)?;
        }
        let fetched = sink.finish(meta.etag.clone())?;
        self.log_download(&key, &meta);
        Ok(fetched)
    }

    /// Lists stored versions under the prefix (all flows, or one flow's slug), newest first.
    pub async fn list_versions(&self, flow: Option<&str>) -> Result<Vec<StoredVersion>> {
        let base = self.prefix.clone().unwrap_or_default();
        let base = base.trim_end_matches('/').to_string();
        let wanted_slug = flow.map(key::flow_slug);
        // Listed with a trailing `/`: GCS matches prefixes character by character, so
        // `team/etl` would also list `team/etl-2/…`.
        let prefix = match &wanted_slug {
            Some(slug) if base.is_empty() => Some(format!("{slug}/")),
            Some(slug) => Some(format!("{base}/{slug}/")),
            None if base.is_empty() => None,
            None => Some(format!("{base}/")),
        };
        let metas = self.blobs.list(prefix.as_deref()).await?;
        let mut versions = Vec::new();
        let mut names: BTreeMap<String, (Option<String>, bool)> = BTreeMap::new();
        for meta in metas {
            let location = meta.key.clone();
            let rel = if base.is_empty() {
                location.as_str()
            } else {
                match location.strip_prefix(&format!("{base}/")) {
                    Some(rel) => rel,
                    None => continue,
                }
            };
            let Some((slug, version)) = rel.split_once('/') else {
                continue;
            };
            // Bundle blobs (`.blobs/sha256/…`) are not flow versions.
            if slug == bundle::BLOB_DIR || slug.starts_with('.') {
                continue;
            }
            if version.contains('/') || version.starts_with('.') {
                continue;
            }
            if wanted_slug.as_deref().is_some_and(|w| w != slug) {
                continue;
            }
            let slug = slug.to_string();
            let (flow_name, is_bundle) = match names.get(&location) {
                Some(n) => n.clone(),
                None => {
                    let head = self.blobs.head_bytes(&meta.key, meta.size.min(4096)).await;
                    let is_bundle = head.as_deref().is_some_and(bundle::is_manifest);
                    let n = head
                        .and_then(|h| flowstore_core::envelope::peek_header(&h))
                        .map(|h| h.flow);
                    names.insert(location.clone(), (n.clone(), is_bundle));
                    (n, is_bundle)
                }
            };
            versions.push(StoredVersion {
                flow: flow_name,
                slug,
                location,
                size: Some(meta.size),
                stored_at: Some(meta.last_modified),
                bundle: is_bundle,
            });
        }
        versions.sort_by(|a, b| {
            let v = |s: &StoredVersion| s.location.rsplit('/').next().unwrap_or("").to_string();
            v(b).cmp(&v(a))
        });
        Ok(versions)
    }
}
