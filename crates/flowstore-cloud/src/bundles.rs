//! Bundles on S3, Azure and GCS: blobs at `<prefix>/.blobs/sha256/<hex>` beside the flows, the
//! manifest stored as the flow, and blobs a prune swept at `<prefix>/.blobs/trash/sha256/<hex>`.
//!
//! `add_flow` scans the tree and stages the manifest at a fresh default key; `persist` uploads the
//! blobs the storage lacks (packs of small files and large files; one listing of the blob prefix
//! finds them), create-only, then the manifest, create-only. Fetching reads a whole blob as a
//! stream, or one file out of a pack with one ranged request. Both areas are [`AreaBlobs`]:
//! the engine's own `BlobStore` is its live area.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::bundle::{self, BlobArea, BlobInfo, BlobStore, BundleInput};
use flowstore_core::{async_trait, Error as CoreError, Result};
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;

use crate::blobs::{upload, PutError, Source};
use crate::engine::{Body, Engine, Staged};

impl Engine {
    /// The key of blob `digest` in `area`: `<prefix>/.blobs/sha256/<hex>` (live) or
    /// `<prefix>/.blobs/trash/sha256/<hex>`, without `<prefix>/` when there is none.
    fn blob_key(&self, area: BlobArea, digest: &str) -> String {
        self.under_prefix(area.key(digest))
    }

    /// The prefix every blob key of `area` starts with (`<prefix>/.blobs/sha256/`), ending in
    /// `/` so that GCS's character-wise prefix match finds nothing else.
    fn blob_prefix(&self, area: BlobArea) -> String {
        self.under_prefix(format!("{}/", area.dir()))
    }

    fn under_prefix(&self, key: String) -> String {
        match self.prefix.as_deref().map(|p| p.trim_end_matches('/')) {
            Some(p) if !p.is_empty() => format!("{p}/{key}"),
            _ => key,
        }
    }

    /// The blobs of one area as a [`BlobStore`].
    pub(crate) fn blob_area(&self, area: BlobArea) -> AreaBlobs<'_> {
        AreaBlobs { engine: self, area }
    }

    /// Scans the bundle's tree (blocking, off the async threads) and stages its manifest at a
    /// fresh default key; the blobs and the manifest are uploaded at `persist`.
    ///
    /// Errors with [`flowstore_core::Error::Unsupported`] in script mode or with a fixed key,
    /// as `add_flow` does for a name that is taken, and as the scan does (naming the path).
    pub(crate) async fn add_bundle(&mut self, input: BundleInput) -> Result<String> {
        if !self.bundles() {
            return Err(bundle::unsupported(self.backend, &input.name));
        }
        self.index.ensure_new(&input.name)?;
        let scan_input = input.clone();
        let scanned = tokio::task::spawn_blocking(move || scan_input.scan())
            .await
            .map_err(|e| CoreError::backend(self.backend, format!("scan task failed: {e}")))??;
        let key = self.default_key(&input.name);
        self.index.insert(&input.name, key.clone(), None)?;
        tracing::debug!(
            flow = %input.name,
            files = scanned.manifest.files().len(),
            location = %self.url(&key),
            "staged bundle"
        );
        self.staged.push(Staged {
            name: input.name.clone(),
            body: Body::Bundle {
                scanned: Arc::new(scanned),
                input,
            },
        });
        Ok(key)
    }

    /// Names a missing object as a missing blob (what to do about it included); other errors
    /// pass unchanged.
    fn blob_missing(&self, e: CoreError) -> CoreError {
        match e {
            CoreError::NotFound {
                what: "object",
                location,
                source,
                ..
            } => CoreError::NotFound {
                what: "blob",
                message: format!(
                    "{}: blob {location} does not exist: it was deleted from the {}. Register the \
                     flow again to upload it.",
                    self.backend,
                    crate::error::bucket_word(self.backend)
                ),
                location,
                source,
            },
            other => other,
        }
    }
}

/// The blobs of one area (live or trash) of a cloud storage: every operation acts on keys
/// under that area's prefix.
pub(crate) struct AreaBlobs<'a> {
    engine: &'a Engine,
    area: BlobArea,
}

impl AreaBlobs<'_> {
    fn key(&self, digest: &str) -> String {
        self.engine.blob_key(self.area, digest)
    }
}

#[async_trait]
impl BlobStore for AreaBlobs<'_> {
    fn blob_location(&self, digest: &str) -> String {
        self.engine.url(&self.key(digest))
    }

    async fn has_blob(&self, digest: &str) -> Result<bool> {
        self.engine.blobs.exists(&self.key(digest)).await
    }

    /// One listing of the area's prefix instead of a request per blob.
    async fn missing_blobs(&self, digests: &[String]) -> Result<Vec<String>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let present: HashSet<String> = self
            .list_blobs()
            .await?
            .into_iter()
            .map(|b| b.digest)
            .collect();
        let mut missing: Vec<String> = digests
            .iter()
            .filter(|d| {
                let hex = d.split_once(':').map_or(d.as_str(), |(_, hex)| hex);
                !present.contains(&format!("sha256:{hex}"))
            })
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        Ok(missing)
    }

    /// Create-only: small blobs in one request, large ones streamed from disk
    /// ([`upload`]). A blob
    /// already there (same name, so same bytes) is success. Core's `bundle::upload` has checked
    /// the file against its digest just before (a sweep, against the blob's name).
    async fn put_blob(&self, digest: &str, source: &Path, size: u64) -> Result<()> {
        let key = self.key(digest);
        let blobs = &self.engine.blobs;
        let put = upload(
            blobs.as_ref(),
            &key,
            &Source::File(source.to_path_buf()),
            false,
        )
        .await;
        match put {
            Ok(()) => {
                tracing::debug!(blob = %self.engine.url(&key), size, "uploaded blob");
                Ok(())
            }
            Err(PutError::Exists) => Ok(()),
            Err(PutError::Other(e)) => Err(e),
        }
    }

    /// Streams the blob into `dest`; a missing blob is `NotFound` (`blob`) naming its location.
    async fn get_blob(&self, digest: &str, dest: &Path) -> Result<u64> {
        let key = self.key(digest);
        let (_, mut stream) = self
            .engine
            .blobs
            .get(&key)
            .await
            .map_err(|e| self.engine.blob_missing(e))?;
        let write_err = |e| CoreError::io(format!("writing {}", dest.display()), e);
        let mut file = tokio::fs::File::create(dest).await.map_err(write_err)?;
        let mut written = 0u64;
        while let Some(chunk) = stream.try_next().await? {
            file.write_all(&chunk).await.map_err(write_err)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(write_err)?;
        Ok(written)
    }

    /// One ranged request for the `len` bytes at `offset` (a file out of a pack): S3 and Azure
    /// through `object_store`'s ranged GET, GCS with a `Range` header on its `alt=media`
    /// download. A missing blob is `NotFound` (`blob`) naming its location; a blob shorter than
    /// the range is an error naming it.
    async fn get_blob_range(&self, digest: &str, offset: u64, len: u64) -> Result<Bytes> {
        let key = self.key(digest);
        let bytes = self
            .engine
            .blobs
            .get_range(&key, offset, len)
            .await
            .map_err(|e| self.engine.blob_missing(e))?;
        tracing::debug!(blob = %self.engine.url(&key), offset, len, "read a range of a blob");
        Ok(bytes)
    }

    fn area(&self, area: BlobArea) -> Option<Box<dyn BlobStore + '_>> {
        Some(Box::new(self.engine.blob_area(area)))
    }

    /// One listing of the area's prefix (`<prefix>/.blobs/sha256/` or
    /// `<prefix>/.blobs/trash/sha256/`, paged as the service pages). Objects whose name below
    /// it is not 64 hex digits (deeper keys, other files) are not blobs; `modified` is the
    /// object's last-modified time, when it was written (for a trashed blob: trashed).
    async fn list_blobs(&self) -> Result<Vec<BlobInfo>> {
        let prefix = self.engine.blob_prefix(self.area);
        let listed = self.engine.blobs.list(Some(&prefix)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let digest = m.key.strip_prefix(&prefix).and_then(BlobArea::digest_of)?;
                Some(BlobInfo {
                    digest,
                    size: m.size,
                    modified: m.last_modified,
                })
            })
            .collect())
    }

    /// Deletes the blob's object; one already gone is success.
    async fn delete_blob(&self, digest: &str) -> Result<()> {
        let key = self.key(digest);
        self.engine.blobs.delete(&key).await?;
        tracing::debug!(blob = %self.engine.url(&key), "deleted blob");
        Ok(())
    }

    async fn replace_blob_for_tests(&self, digest: &str, bytes: &[u8]) -> Result<bool> {
        self.engine
            .blobs
            .replace(&self.key(digest), Bytes::copy_from_slice(bytes))
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::ObjectStoreBlobs;
    use flowstore_core::envelope::sha256_digest;
    use flowstore_core::{FlowContent, FlowInput};

    /// An engine on an in-memory object store.
    fn engine(prefix: Option<&str>) -> Engine {
        let blobs = ObjectStoreBlobs {
            backend: "S3",
            display: "s3://b".into(),
            client: crate::blobs::ObjectStoreClient::in_memory(),
        };
        let mut e = Engine::new("S3", "s3://b".into(), Arc::new(blobs), "no key");
        e.prefix = prefix.map(str::to_string);
        e
    }

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn blob_keys_sit_under_the_prefix() {
        let d = sha256_digest(b"x");
        let hex = d.strip_prefix("sha256:").unwrap();
        let live = BlobArea::Live;
        assert_eq!(
            engine(Some("team/flows/")).blob_key(live, &d),
            format!("team/flows/.blobs/sha256/{hex}")
        );
        assert_eq!(
            engine(None).blob_key(live, &d),
            format!(".blobs/sha256/{hex}")
        );
        assert_eq!(engine(Some("p")).blob_prefix(live), "p/.blobs/sha256/");
        assert_eq!(engine(None).blob_prefix(live), ".blobs/sha256/");
        assert_eq!(
            engine(None).blob_area(live).blob_location(&d),
            format!("s3://b/.blobs/sha256/{hex}")
        );
        let trash = BlobArea::Trash;
        assert_eq!(
            engine(Some("p/")).blob_key(trash, &d),
            format!("p/.blobs/trash/sha256/{hex}")
        );
        assert_eq!(
            engine(Some("p")).blob_prefix(trash),
            "p/.blobs/trash/sha256/"
        );
        assert_eq!(
            engine(Some("p")).blob_area(trash).blob_location(&d),
            format!("s3://b/p/.blobs/trash/sha256/{hex}")
        );
    }

    /// Writes `bytes` to a temporary file and puts it as blob `digest` into `store`.
    async fn put(store: &dyn BlobStore, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        store
            .put_blob(&digest, file.path(), bytes.len() as u64)
            .await
            .unwrap();
        digest
    }

    #[tokio::test]
    async fn the_trash_is_an_area_of_its_own() {
        let e = engine(Some("p"));
        let live_area = e.blob_area(BlobArea::Live);
        let trash = live_area.area(BlobArea::Trash).unwrap();
        let before = chrono::Utc::now() - chrono::Duration::seconds(1);
        let (a, b) = (
            put(&live_area, b"live").await,
            put(&*trash, b"trashed").await,
        );
        // Neither area sees the other's blobs, nor junk in its directory.
        e.blobs
            .replace("p/.blobs/sha256/not-a-digest", Bytes::from_static(b"x"))
            .await
            .unwrap();
        e.blobs
            .replace(
                &format!("p/.blobs/sha256/{}/deeper", "ab".repeat(32)),
                Bytes::from_static(b"x"),
            )
            .await
            .unwrap();
        let live = live_area.list_blobs().await.unwrap();
        assert_eq!(
            live.iter().map(|b| b.digest.as_str()).collect::<Vec<_>>(),
            [a.as_str()]
        );
        assert_eq!(live[0].size, 4);
        assert!(live[0].modified >= before, "{live:?}");
        let trashed = trash.list_blobs().await.unwrap();
        assert_eq!(
            trashed
                .iter()
                .map(|b| b.digest.as_str())
                .collect::<Vec<_>>(),
            [b.as_str()]
        );
        let asked = std::slice::from_ref(&b);
        assert_eq!(live_area.missing_blobs(asked).await.unwrap(), asked);
        assert!(trash.missing_blobs(asked).await.unwrap().is_empty());
        // Reads act on the area's keys.
        let out = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(trash.get_blob(&b, out.path()).await.unwrap(), 7);
        assert_eq!(&trash.get_blob_range(&b, 1, 3).await.unwrap()[..], b"ras");
        let err = live_area.get_blob(&b, out.path()).await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        // Deleting is quiet about a blob already gone, and touches one area only.
        trash.delete_blob(&a).await.unwrap();
        assert_eq!(live_area.list_blobs().await.unwrap().len(), 1);
        trash.delete_blob(&b).await.unwrap();
        trash.delete_blob(&b).await.unwrap();
        assert!(trash.list_blobs().await.unwrap().is_empty());
        assert!(!trash.has_blob(&b).await.unwrap() && live_area.has_blob(&a).await.unwrap());
    }

    #[tokio::test]
    async fn blobs_go_up_at_persist_before_the_manifest_and_stay_out_of_listings() {
        let dir = project(&[
            ("flow.py", "import lib\n"),
            ("lib.py", "X = 1\n"),
            ("copy.py", "X = 1\n"),
        ]);
        let mut e = engine(Some("p"));
        let key = e
            .add_flow(FlowInput::bundle("B", dir.path(), "flow.py"))
            .await
            .unwrap();
        assert!(key.starts_with("p/b/"), "{key}");
        assert!(
            e.blobs.list(None).await.unwrap().is_empty(),
            "add_flow only stages"
        );
        e.persist().await.unwrap();
        // The three small files travel in one pack: copy.py's bytes, then flow.py's (lib.py
        // has copy.py's bytes, so it points at them).
        let scanned = bundle::scan(dir.path(), "flow.py").unwrap();
        let blobs = scanned.manifest.blobs();
        assert_eq!(blobs.len(), 1, "{blobs:?}");
        let (pack, size) = (blobs[0].0.to_string(), blobs[0].1);
        assert_eq!(pack, sha256_digest(b"X = 1\nimport lib\n"));
        assert_eq!(size, 17);
        let report = e.index.transfers["B"];
        assert_eq!(
            (report.objects, report.reused_objects),
            (2, 0),
            "the pack and the manifest: {report:?}"
        );

        let live = e.blob_area(BlobArea::Live);
        let lib_py = sha256_digest(b"X = 1\n");
        let unknown = sha256_digest(b"never stored");
        let asked = [pack.clone(), lib_py.clone(), unknown.clone()];
        assert_eq!(
            live.missing_blobs(&asked).await.unwrap(),
            vec![lib_py.clone(), unknown.clone()],
            "a file in a pack is no blob of its own"
        );
        assert!(live.has_blob(&pack).await.unwrap() && !live.has_blob(&unknown).await.unwrap());
        let out = dir.path().join("fetched");
        assert_eq!(live.get_blob(&pack, &out).await.unwrap(), 17);
        assert_eq!(std::fs::read(&out).unwrap(), b"X = 1\nimport lib\n");
        // Create-only, and an existing blob is success.
        live.put_blob(&pack, &out, 17).await.unwrap();
        // Each file's bytes are its range of the pack.
        for f in scanned.manifest.files() {
            let (blob, offset) = f.source();
            assert_eq!(blob, pack);
            let bytes = live.get_blob_range(blob, offset, f.size).await.unwrap();
            assert_eq!(sha256_digest(&bytes), f.digest, "{}", f.path);
        }
        assert!(live.get_blob_range(&pack, 17, 0).await.unwrap().is_empty());
        // A range running past the end is refused naming the blob and what it holds.
        let err = live
            .get_blob_range(&pack, 10, 8)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&live.blob_location(&pack)) && err.contains("only 7 came back"),
            "{err}"
        );
        for offset in [17, 100] {
            let err = live.get_blob_range(&pack, offset, 1).await.unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&live.blob_location(&pack)) && text.contains("it holds 17 bytes"),
                "{offset}: {err:?}"
            );
            assert!(std::error::Error::source(&err).is_some(), "{err:?}");
        }
        for err in [
            live.get_blob(&unknown, &out).await.unwrap_err(),
            live.get_blob_range(&unknown, 0, 1).await.unwrap_err(),
        ] {
            assert!(
                matches!(err, CoreError::NotFound { what: "blob", .. }),
                "{err:?}"
            );
            assert!(
                err.to_string().contains(&live.blob_location(&unknown)),
                "{err}"
            );
        }

        let flow = e.get_flow("B").await.unwrap();
        let FlowContent::Bundle(manifest) = &flow.content else {
            panic!("{:?}", flow.content)
        };
        assert_eq!(e.index.digests["B"], manifest.digest());
        let versions = e.list_versions(None).await.unwrap();
        assert_eq!(versions.len(), 1, "{versions:?}");
        assert_eq!(versions[0].location, key);
    }

    #[tokio::test]
    async fn a_file_changed_after_the_scan_is_not_uploaded() {
        let dir = project(&[("flow.py", "v1\n")]);
        let mut e = engine(None);
        e.add_flow(FlowInput::bundle("B", dir.path(), "flow.py"))
            .await
            .unwrap();
        std::fs::write(dir.path().join("flow.py"), "v2\n").unwrap();
        let err = e.persist().await.unwrap_err().to_string();
        assert!(err.contains("flow.py") && err.contains("changed"), "{err}");
        assert!(e.blobs.list(None).await.unwrap().is_empty());
        assert!(e.index.digests.is_empty() && e.index.transfers.is_empty());
    }

    #[tokio::test]
    async fn script_mode_and_fixed_keys_refuse_bundles() {
        let dir = project(&[("flow.py", "v1\n")]);
        let mut fixed = engine(None);
        fixed.fixed_key = Some("k".into());
        let mut script = engine(None);
        script.stored_as_script = true;
        for mut e in [fixed, script] {
            assert!(!e.bundles());
            let err = e
                .add_flow(FlowInput::bundle("B", dir.path(), "flow.py"))
                .await
                .unwrap_err();
            assert!(matches!(err, CoreError::Unsupported { .. }), "{err:?}");
            assert!(e.index.flows.is_empty() && e.staged.is_empty());
        }
    }
}
