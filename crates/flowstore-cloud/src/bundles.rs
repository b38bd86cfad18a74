//! Bundles on S3, Azure and GCS: blobs at `<prefix>/.blobs/sha256/<hex>` beside the flows, the
//! manifest stored as the flow.
//!
//! `add_flow` scans the tree and stages the manifest at a fresh default key; `persist` uploads the
//! blobs the storage lacks (packs of small files and large files; one listing of the blob prefix
//! finds them), create-only, then the manifest, create-only. Fetching reads a whole blob as a
//! stream, or one file out of a pack with one ranged request.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::bundle::{self, BlobStore, BundleInput};
use flowstore_core::{async_trait, Error as CoreError, Result};
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;

use crate::blobs::{PutError, MULTIPART_THRESHOLD};
use crate::engine::{Body, Engine, Staged};

impl Engine {
    /// The key of blob `digest`: `<prefix>/.blobs/sha256/<hex>`, or `.blobs/sha256/<hex>`
    /// without a prefix.
    fn blob_key(&self, digest: &str) -> String {
        let key = bundle::blob_key(digest);
        match self.prefix.as_deref().map(|p| p.trim_end_matches('/')) {
            Some(p) if !p.is_empty() => format!("{p}/{key}"),
            _ => key,
        }
    }

    /// The prefix every blob key starts with (`<prefix>/.blobs/sha256/`).
    fn blob_prefix(&self) -> String {
        let probe = self.blob_key("sha256:");
        probe.trim_end_matches('/').to_string() + "/"
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

#[async_trait]
impl BlobStore for Engine {
    fn blob_location(&self, digest: &str) -> String {
        self.url(&self.blob_key(digest))
    }

    async fn has_blob(&self, digest: &str) -> Result<bool> {
        self.blobs.exists(&self.blob_key(digest)).await
    }

    /// One listing of `<prefix>/.blobs/sha256/` instead of a request per blob.
    async fn missing_blobs(&self, digests: &[String]) -> Result<Vec<String>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = self.blob_prefix();
        let listed = self.blobs.list(Some(&prefix)).await?;
        let present: HashSet<&str> = listed
            .iter()
            .filter_map(|m| m.key.rsplit('/').next())
            .collect();
        let mut missing: Vec<String> = digests
            .iter()
            .filter(|d| {
                let hex = d.split_once(':').map_or(d.as_str(), |(_, hex)| hex);
                !present.contains(hex)
            })
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        Ok(missing)
    }

    /// Create-only: small blobs in one request, large ones streamed from disk in parts. A blob
    /// already there (same name, so same bytes) is success. Core's `bundle::upload` has checked
    /// the file against its digest just before.
    async fn put_blob(&self, digest: &str, source: &Path, size: u64) -> Result<()> {
        let key = self.blob_key(digest);
        let put = if size > MULTIPART_THRESHOLD {
            self.blobs.put_file(&key, source, false).await
        } else {
            let bytes = tokio::fs::read(source)
                .await
                .map_err(|e| CoreError::io(format!("reading {}", source.display()), e))?;
            self.blobs.put(&key, Bytes::from(bytes), false).await
        };
        match put {
            Ok(()) => {
                tracing::debug!(blob = %self.url(&key), size, "uploaded blob");
                Ok(())
            }
            Err(PutError::Exists) => Ok(()),
            Err(PutError::Other(e)) => Err(e),
        }
    }

    /// Streams the blob into `dest`; a missing blob is `NotFound` (`blob`) naming its location.
    async fn get_blob(&self, digest: &str, dest: &Path) -> Result<u64> {
        let key = self.blob_key(digest);
        let (_, mut stream) = self
            .blobs
            .get(&key)
            .await
            .map_err(|e| self.blob_missing(e))?;
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
        let key = self.blob_key(digest);
        let bytes = self
            .blobs
            .get_range(&key, offset, len)
            .await
            .map_err(|e| self.blob_missing(e))?;
        tracing::debug!(blob = %self.url(&key), offset, len, "read a range of a blob");
        Ok(bytes)
    }

    async fn replace_blob_for_tests(&self, digest: &str, bytes: &[u8]) -> Result<bool> {
        self.blobs
            .replace(&self.blob_key(digest), Bytes::copy_from_slice(bytes))
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
            store: Arc::new(object_store::memory::InMemory::new()),
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
        assert_eq!(
            engine(Some("team/flows/")).blob_key(&d),
            format!("team/flows/.blobs/sha256/{hex}")
        );
        assert_eq!(engine(None).blob_key(&d), format!(".blobs/sha256/{hex}"));
        assert_eq!(engine(Some("p")).blob_prefix(), "p/.blobs/sha256/");
        assert_eq!(engine(None).blob_prefix(), ".blobs/sha256/");
        assert_eq!(
            engine(None).blob_location(&d),
            format!("s3://b/.blobs/sha256/{hex}")
        );
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

        let lib_py = sha256_digest(b"X = 1\n");
        let unknown = sha256_digest(b"never stored");
        let asked = [pack.clone(), lib_py.clone(), unknown.clone()];
        assert_eq!(
            e.missing_blobs(&asked).await.unwrap(),
            vec![lib_py.clone(), unknown.clone()],
            "a file in a pack is no blob of its own"
        );
        assert!(e.has_blob(&pack).await.unwrap() && !e.has_blob(&unknown).await.unwrap());
        let out = dir.path().join("fetched");
        assert_eq!(e.get_blob(&pack, &out).await.unwrap(), 17);
        assert_eq!(std::fs::read(&out).unwrap(), b"X = 1\nimport lib\n");
        // Create-only, and an existing blob is success.
        e.put_blob(&pack, &out, 17).await.unwrap();
        // Each file's bytes are its range of the pack.
        for f in scanned.manifest.files() {
            let (blob, offset) = f.source();
            assert_eq!(blob, pack);
            let bytes = e.get_blob_range(blob, offset, f.size).await.unwrap();
            assert_eq!(sha256_digest(&bytes), f.digest, "{}", f.path);
        }
        assert!(e.get_blob_range(&pack, 17, 0).await.unwrap().is_empty());
        // A range running past the end is refused naming the blob and what it holds.
        let err = e
            .get_blob_range(&pack, 10, 8)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&e.blob_location(&pack)) && err.contains("only 7 came back"),
            "{err}"
        );
        for offset in [17, 100] {
            let err = e.get_blob_range(&pack, offset, 1).await.unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&e.blob_location(&pack)) && text.contains("it holds 17 bytes"),
                "{offset}: {err:?}"
            );
            assert!(std::error::Error::source(&err).is_some(), "{err:?}");
        }
        for err in [
            e.get_blob(&unknown, &out).await.unwrap_err(),
            e.get_blob_range(&unknown, 0, 1).await.unwrap_err(),
        ] {
            assert!(
                matches!(err, CoreError::NotFound { what: "blob", .. }),
                "{err:?}"
            );
            assert!(
                err.to_string().contains(&e.blob_location(&unknown)),
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
