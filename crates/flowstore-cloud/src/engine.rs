//! The object-store engine S3, Azure and GCS share: staging at `add_flow`, create-only uploads
//! at `persist`, verified downloads, streaming to disk, and listing versions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use flowstore_core::bundle::{self, BundleInput, ScannedBundle};
use flowstore_core::envelope::SealedFlow;
use flowstore_core::raw::sink::{file_digest, FlowFileSink};
use flowstore_core::raw::FlowIndex;
use flowstore_core::{key, Error as CoreError, FetchedFlow, FlowInput, Result, StoredVersion};
use futures::{StreamExt, TryStreamExt};

use crate::blobs::{BlobMeta, Blobs, PutError, Source};
use crate::error::bucket_word;

/// Fresh keys tried when a default key is already taken.
const KEY_ATTEMPTS: usize = 8;
/// The largest flow `get_flow` holds in memory.
pub const MAX_IN_MEMORY: u64 = 2 << 30;
/// How many versions' first bytes `list_versions` reads at once.
pub(crate) const HEAD_READS: usize = 16;

/// What `add_flow` staged for `persist`.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// A serialized flow, in memory or in its file (streamed at `persist`).
    Sealed(SealedFlow),
    /// A local script.
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
            (Some(Body::Sealed(sealed)), key)
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
            Body::Bundle { scanned, input } => Some(
                bundle::upload(
                    &self.blob_area(bundle::BlobArea::Live),
                    scanned,
                    input.progress.as_ref(),
                )
                .await?,
            ),
            _ => None,
        };
        let digest = match &item.body {
            Body::Sealed(sealed) => sealed.digest(),
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

    /// Uploads one staged body: a sealed flow or a script through [`crate::blobs::upload`] (one
    /// request when small, else streamed in constant memory), a bundle's manifest in one request.
    async fn put(&self, key: &str, body: &Body) -> Result<(), PutError> {
        let source = match body {
            Body::Bundle { scanned, .. } => {
                return self
                    .blobs
                    .put(key, scanned.manifest.bytes().clone(), self.overwrite)
                    .await
            }
            Body::Sealed(sealed) => Source::Sealed(sealed.clone()),
            Body::File(p) => Source::File(p.clone()),
        };
        crate::blobs::upload(self.blobs.as_ref(), key, &source, self.overwrite).await
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

    /// The prefix default keys sit under, without its trailing `/` (empty without a prefix):
    /// what listings strip and deletes check.
    fn version_base(&self) -> String {
        self.prefix
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string()
    }

    /// The object key of a listed version, if its location is `<prefix>/<flow slug>/<timestamp
    /// slug>` of this storage.
    ///
    /// Errors: [`CoreError::Config`] naming the location and what may be deleted otherwise.
    fn version_key<'v>(&self, version: &'v StoredVersion) -> Result<&'v str> {
        let base = self.version_base();
        let location = version.location.as_str();
        let not_ours = |why: &str| {
            CoreError::config(format!(
                "refusing {}: {why}. Only flow versions that `flowstore list` shows for this {} \
                 storage ({}/<flow slug>/<timestamp>) can be deleted or read; nothing was changed",
                self.url(location),
                self.backend,
                self.url(&base).trim_end_matches('/'),
            ))
        };
        let rel = if base.is_empty() {
            location
        } else {
            location
                .strip_prefix(base.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .ok_or_else(|| not_ours(&format!("it is not under the storage's prefix {base}/")))?
        };
        key::check_version_key(rel)
            .map_err(|why| not_ours(&format!("it is not a flow version ({why})")))?;
        Ok(location)
    }

    /// Deletes one listed version's object (one already gone is success), after checking it is
    /// a version of this storage.
    ///
    /// Errors: [`CoreError::Config`] for any other location (nothing is deleted); the service's
    /// refusal ([`CoreError::PermissionDenied`] naming the delete permission) or a missing
    /// bucket.
    pub async fn delete_version(&self, version: &StoredVersion) -> Result<()> {
        let key = self.version_key(version)?;
        self.blobs.delete(key).await?;
        tracing::debug!(location = %self.url(key), "deleted a stored version");
        Ok(())
    }

    /// Reads one listed version's stored bytes, unverified, after checking it is a version of
    /// this storage.
    ///
    /// Errors: [`CoreError::Config`] for any other location or one larger than
    /// [`MAX_IN_MEMORY`]; [`CoreError::NotFound`] when it is gone; the service's errors.
    pub async fn read_version(&self, version: &StoredVersion) -> Result<Bytes> {
        let key = self.version_key(version)?;
        let (meta, mut stream) = self.blobs.get(key).await?;
        if meta.size > MAX_IN_MEMORY {
            return Err(CoreError::config(format!(
                "stored version {} is {} bytes, more than the {MAX_IN_MEMORY} read into memory",
                self.url(key),
                meta.size
            )));
        }
        let mut buf = BytesMut::with_capacity(meta.size as usize);
        while let Some(chunk) = stream.try_next().await? {
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Lists stored versions under the prefix (all flows, or one flow's slug), newest first.
    ///
    /// Each version's first 4 KiB are read to tell its flow's name and whether it is a bundle
    /// manifest, [`HEAD_READS`] at a time.
    pub async fn list_versions(&self, flow: Option<&str>) -> Result<Vec<StoredVersion>> {
        let base = self.version_base();
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
        let mut candidates = Vec::new();
        for meta in metas {
            let rel = if base.is_empty() {
                meta.key.as_str()
            } else {
                match meta.key.strip_prefix(&format!("{base}/")) {
                    Some(rel) => rel,
                    None => continue,
                }
            };
            // Only `<flow slug>/<timestamp slug>` keys are versions (what `delete_version`
            // accepts): bundle blobs (`.blobs/…`), deeper keys and other programs' objects under
            // the prefix are not listed, so a prune never plans what it may not delete.
            if key::check_version_key(rel).is_err() {
                continue;
            }
            let Some((slug, _)) = rel.split_once('/') else {
                continue;
            };
            if wanted_slug.as_deref().is_some_and(|w| w != slug) {
                continue;
            }
            let slug = slug.to_string();
            candidates.push((meta, slug));
        }
        // One small ranged read per version, HEAD_READS at a time, in listing order.
        let mut versions: Vec<StoredVersion> = futures::stream::iter(candidates)
            .map(|(meta, slug)| async move {
                let head = self.blobs.head_bytes(&meta.key, meta.size.min(4096)).await;
                let bundle = head.as_deref().is_some_and(bundle::is_manifest);
                let flow = head
                    .and_then(|h| flowstore_core::envelope::peek_header(&h))
                    .map(|h| h.flow);
                StoredVersion {
                    flow,
                    slug,
                    location: meta.key,
                    size: Some(meta.size),
                    stored_at: Some(meta.last_modified),
                    bundle,
                }
            })
            .buffered(HEAD_READS)
            .collect()
            .await;
        versions.sort_by(|a, b| {
            let v = |s: &StoredVersion| s.location.rsplit('/').next().unwrap_or("").to_string();
            v(b).cmp(&v(a))
        });
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::blobs::{ChunkStream, ObjectStoreBlobs};
    use flowstore_core::envelope::{seal, AppInfo};

    fn memory() -> ObjectStoreBlobs {
        ObjectStoreBlobs {
            backend: "S3",
            display: "s3://b".into(),
            client: crate::blobs::ObjectStoreClient::in_memory(),
        }
    }

    fn engine(blobs: Arc<dyn Blobs>, prefix: &str) -> Engine {
        let mut e = Engine::new("S3", "s3://b".into(), blobs, "no key");
        e.prefix = Some(prefix.to_string());
        e
    }

    fn sealed(name: &str) -> Bytes {
        seal(name, &name, &AppInfo::new("cloud-unit", "1"))
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    #[tokio::test]
    async fn deletes_and_reads_take_only_versions_of_this_storage() {
        let blobs: Arc<dyn Blobs> = Arc::new(memory());
        let mut e = engine(blobs.clone(), "team/flows/");
        e.add_flow(
            seal("ETL", &1, &AppInfo::new("cloud-unit", "1"))
                .unwrap()
                .into(),
        )
        .await
        .unwrap();
        e.persist().await.unwrap();
        let listed = e.list_versions(Some("ETL")).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        let version = &listed[0];
        assert!(
            version.location.starts_with("team/flows/etl/"),
            "{version:?}"
        );
        let stamp = version.location.rsplit('/').next().unwrap();
        // Other objects a listing of the bucket would show; none may be deleted or read.
        let hex = "ab".repeat(32);
        let foreign = [
            format!("team/flows/.blobs/sha256/{hex}"),
            format!("team/flows/.blobs/trash/sha256/{hex}"),
            format!("team/other/etl/{stamp}"),
            format!("team/flows-2/etl/{stamp}"),
            format!("team/flows/etl/{stamp}/deeper"),
            format!("team/flows/etl/../{stamp}"),
            format!("team/flows/ETL/{stamp}"),
            "team/flows/etl/not-a-stamp".to_string(),
            format!("team/flows/{stamp}"),
            format!("/team/flows/etl/{stamp}"),
            format!("etl/{stamp}"),
        ];
        for location in &foreign {
            blobs
                .replace(location, Bytes::from_static(b"keep"))
                .await
                .unwrap();
            let bad = StoredVersion {
                location: location.clone(),
                ..version.clone()
            };
            for err in [
                e.delete_version(&bad).await.unwrap_err(),
                e.read_version(&bad).await.unwrap_err(),
            ] {
                assert!(
                    matches!(err, CoreError::Config { .. }),
                    "{location}: {err:?}"
                );
                assert!(
                    err.to_string().contains(&format!("s3://b/{location}")),
                    "{err}"
                );
            }
            assert!(
                blobs.exists(location).await.unwrap(),
                "{location} was deleted"
            );
        }
        assert_eq!(e.read_version(version).await.unwrap(), {
            let (_, s) = blobs.get(&version.location).await.unwrap();
            let chunks: Vec<Bytes> = s.try_collect().await.unwrap();
            chunks.concat()
        });
        e.delete_version(version).await.unwrap();
        assert!(!blobs.exists(&version.location).await.unwrap());
        e.delete_version(version)
            .await
            .expect("already gone is fine");
        assert!(e.read_version(version).await.unwrap_err().is_not_found());
        assert!(e.list_versions(Some("ETL")).await.unwrap().is_empty());

        // Without a prefix, a version is `<slug>/<stamp>` at the bucket's root.
        let root = Engine::new("S3", "s3://b".into(), blobs.clone(), "no key");
        let key = format!("etl/{stamp}");
        let at_root = StoredVersion {
            location: key.clone(),
            ..version.clone()
        };
        root.read_version(&at_root).await.unwrap();
        root.delete_version(&at_root).await.unwrap();
        assert!(!blobs.exists(&key).await.unwrap());
        let nested = StoredVersion {
            location: format!("team/flows/etl/{stamp}"),
            ..version.clone()
        };
        assert!(matches!(
            root.delete_version(&nested).await.unwrap_err(),
            CoreError::Config { .. }
        ));
    }

    /// A flow sealed from a file streams up in parts and comes back whole; one whose file
    /// changed after sealing is refused with the io error in the chain, its multipart upload
    /// abandoned (nothing at its key), and no digest recorded.
    #[tokio::test]
    async fn sealed_files_stream_in_parts_and_changed_ones_are_abandoned() {
        let blobs: Arc<dyn Blobs> = Arc::new(memory());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow.bin");
        let size = crate::blobs::PART_SIZE * 2 + 12_345;
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &payload).unwrap();
        let app = AppInfo::new("cloud-unit", "1");
        let sealed = flowstore_core::envelope::seal_file("Big", &path, &app).unwrap();
        assert!(sealed.as_bytes().is_none());
        let digest = sealed.digest();
        let mut e = engine(blobs.clone(), "p");
        let key = e.add_flow(sealed.into()).await.unwrap();
        e.persist().await.unwrap();
        assert_eq!(e.index.digests.get("Big"), Some(&digest));
        let fetched = e.get_flow("Big").await.unwrap();
        assert!(fetched.bytes().as_ref() == payload.as_slice());
        assert!(blobs.exists(&key).await.unwrap());

        let sealed = flowstore_core::envelope::seal_file("Changed", &path, &app).unwrap();
        let mut altered = payload.clone();
        altered[size - 3] ^= 1;
        std::fs::write(&path, &altered).unwrap();
        let mut e = engine(blobs.clone(), "p");
        let key = e.add_flow(sealed.into()).await.unwrap();
        let err = e.persist().await.unwrap_err();
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain = format!("{chain}: {s}");
            source = s.source();
        }
        assert!(chain.contains("after it was sealed"), "{chain}");
        assert!(chain.contains(&format!("s3://b/{key}")), "{chain}");
        assert!(!blobs.exists(&key).await.unwrap(), "{key} was stored");
        assert!(!e.index.digests.contains_key("Changed"));
    }

    /// [`Blobs`] over memory whose `head_bytes` takes a while and counts how many run at once.
    struct SlowHeads {
        inner: ObjectStoreBlobs,
        running: AtomicUsize,
        most: AtomicUsize,
        calls: AtomicUsize,
    }

    #[flowstore_core::async_trait]
    impl Blobs for SlowHeads {
        fn location(&self, key: &str) -> String {
            self.inner.location(key)
        }
        async fn put(&self, key: &str, bytes: Bytes, overwrite: bool) -> Result<(), PutError> {
            self.inner.put(key, bytes, overwrite).await
        }
        async fn put_stream(
            &self,
            key: &str,
            source: &Source,
            len: u64,
            overwrite: bool,
        ) -> Result<(), PutError> {
            self.inner.put_stream(key, source, len, overwrite).await
        }
        async fn get(&self, key: &str) -> Result<(BlobMeta, ChunkStream), CoreError> {
            self.inner.get(key).await
        }
        async fn exists(&self, key: &str) -> Result<bool, CoreError> {
            self.inner.exists(key).await
        }
        async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, CoreError> {
            self.inner.get_range(key, offset, len).await
        }
        async fn head_bytes(&self, key: &str, n: u64) -> Option<Bytes> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let call = self.calls.fetch_add(1, Ordering::SeqCst) as u64;
            // Later calls answer sooner, so answers come back out of order.
            let delay = 40 - (call % 8) * 5;
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.inner.head_bytes(key, n).await
        }
        async fn list(&self, prefix: Option<&str>) -> Result<Vec<BlobMeta>, CoreError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<(), CoreError> {
            self.inner.delete(key).await
        }
        async fn replace(&self, key: &str, bytes: Bytes) -> Result<(), CoreError> {
            self.inner.replace(key, bytes).await
        }
    }

    #[tokio::test]
    async fn listing_reads_heads_concurrently_and_keeps_the_order() {
        let slow = Arc::new(SlowHeads {
            inner: memory(),
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        });
        let e = engine(slow.clone(), "p");
        let start = chrono::Utc::now();
        let mut keys = Vec::new();
        for i in 0..60i64 {
            let name = format!("flow {}", i % 3);
            let at = start + chrono::Duration::milliseconds(i);
            let key = format!("p/{}", key::flow_key(&name, &at));
            slow.replace(&key, sealed(&name)).await.unwrap();
            keys.push((key, name));
        }
        slow.replace("p/.blobs/sha256/x", Bytes::from_static(b"blob"))
            .await
            .unwrap();
        let listed = e.list_versions(None).await.unwrap();
        assert_eq!(
            slow.calls.load(Ordering::SeqCst),
            60,
            "one read per version"
        );
        let most = slow.most.load(Ordering::SeqCst);
        assert!(most > 1 && most <= HEAD_READS, "{most} reads ran at once");
        keys.reverse();
        let got: Vec<(String, String)> = listed
            .iter()
            .map(|v| (v.location.clone(), v.flow.clone().unwrap()))
            .collect();
        assert_eq!(got, keys, "newest first, each with its own flow's name");
        assert!(listed.iter().all(|v| !v.bundle));
    }
}
