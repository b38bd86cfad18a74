//! Bundle blobs of a [`Local`] storage: files under `{directory}/.blobs/sha256/`, written
//! create-only like flows.

use std::path::{Path, PathBuf};

use flowstore_core::bundle::{self, BlobStore};
use flowstore_core::raw::atomic;
use flowstore_core::{async_trait, Error, Result};

use super::{Local, TYPE_NAME};

impl Local {
    fn blob_path(&self, digest: &str) -> PathBuf {
        self.flow_directory().join(bundle::blob_key(digest))
    }

    /// Uploads the bundle's missing blobs, makes them durable (one `syncfs`) when the storage is
    /// durable, so no manifest ever names a blob a crash could lose, then writes the manifest.
    pub(super) async fn add_bundle(&mut self, input: bundle::BundleInput) -> Result<String> {
        let scan_input = input.clone();
        let scanned = tokio::task::spawn_blocking(move || scan_input.scan())
            .await
            .map_err(|e| Error::backend(TYPE_NAME, format!("scan task failed: {e}")))??;
        let mut report = bundle::upload(&*self, &scanned, input.progress.as_ref()).await?;
        if self.durable && report.objects > 0 {
            let dir = self.flow_directory().to_path_buf();
            tokio::task::spawn_blocking(move || super::sync_all(&dir, &Default::default()))
                .await
                .map_err(|e| Error::backend(TYPE_NAME, format!("sync task failed: {e}")))??;
        }
        let manifest = scanned.manifest;
        let location = self
            .write_serialized(&input.name, manifest.bytes().clone())
            .await?;
        report.add_object(manifest.bytes().len() as u64);
        self.note_written(Path::new(&location));
        self.index
            .insert(&input.name, location.clone(), Some(manifest.digest()))?;
        self.index.transfers.insert(input.name.clone(), report);
        tracing::info!(flow = %input.name, files = manifest.files().len(), uploaded = report.objects, reused = report.reused_objects, "stored bundle");
        Ok(location)
    }
}

#[async_trait]
impl BlobStore for Local {
    fn blob_location(&self, digest: &str) -> String {
        self.blob_path(digest).display().to_string()
    }

    async fn has_blob(&self, digest: &str) -> Result<bool> {
        Ok(self.blob_path(digest).is_file())
    }

    /// Copies the file in under a temporary name and links it into place; a blob already there
    /// (another registration of the same bytes) is left alone.
    async fn put_blob(&self, digest: &str, source: &Path, _size: u64) -> Result<()> {
        let (dest, source) = (self.blob_path(digest), source.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(&source)
                .map_err(|e| Error::io(format!("reading {}", source.display()), e))?;
            match atomic::write_new_from(&dest, &mut file, false) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(Error::io(format!("writing blob {}", dest.display()), e)),
            }
        })
        .await
        .map_err(|e| Error::backend(TYPE_NAME, format!("blob writer failed: {e}")))?
    }

    async fn get_blob(&self, digest: &str, dest: &Path) -> Result<u64> {
        let path = self.blob_path(digest);
        match tokio::fs::copy(&path, dest).await {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::not_found(
                "blob",
                path.display().to_string(),
                format!("Blob {} is missing", path.display()),
            )),
            Err(e) => Err(Error::io(format!("reading blob {}", path.display()), e)),
        }
    }

    /// Reads the range straight from the blob file.
    async fn get_blob_range(&self, digest: &str, offset: u64, len: u64) -> Result<bytes::Bytes> {
        let path = self.blob_path(digest);
        if !path.is_file() {
            return Err(Error::not_found(
                "blob",
                path.display().to_string(),
                format!("Blob {} is missing", path.display()),
            ));
        }
        tokio::task::spawn_blocking(move || bundle::read_range(&path, offset, len))
            .await
            .map_err(|e| Error::backend(TYPE_NAME, format!("blob reader failed: {e}")))?
    }

    async fn replace_blob_for_tests(&self, digest: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.blob_path(digest);
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, bytes)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(true)
    }
}
