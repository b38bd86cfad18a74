//! Bundle blobs of a [`Local`] storage: files under `{directory}/.blobs/sha256/`, written
//! create-only like flows.

use std::path::{Path, PathBuf};

use flowstore_core::bundle::{self, BlobArea, BlobInfo, BlobStore};
use flowstore_core::raw::atomic;
use flowstore_core::{async_trait, Error, Result};

use super::{Local, TYPE_NAME};

impl Local {
    /// Uploads the bundle's missing blobs, makes them durable (one `syncfs`) when the storage is
    /// durable, so no manifest ever names a blob a crash could lose, then writes the manifest.
    pub(super) async fn add_bundle(&mut self, input: bundle::BundleInput) -> Result<String> {
        let scan_input = input.clone();
        let scanned = tokio::task::spawn_blocking(move || scan_input.scan())
            .await
            .map_err(|e| Error::backend(TYPE_NAME, format!("scan task failed: {e}")))??;
        let mut report = bundle::upload(
            &self.blobs(BlobArea::Live),
            &scanned,
            input.progress.as_ref(),
        )
        .await?;
        if self.durable && report.objects > 0 {
            let dir = self.flow_directory().to_path_buf();
            tokio::task::spawn_blocking(move || super::sync_all(&dir, &Default::default()))
                .await
                .map_err(|e| Error::backend(TYPE_NAME, format!("sync task failed: {e}")))??;
        }
        let manifest = scanned.manifest;
        let bytes = manifest.bytes().clone();
        let location = self
            .write_fresh(input.name.clone(), bytes.len() as u64, move |dest| {
                atomic::write_new(dest, &bytes, false)
            })
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

/// The blobs of one area (live or trash) of a Local storage's directory.
pub(crate) struct AreaBlobs {
    directory: PathBuf,
    area: BlobArea,
}

impl AreaBlobs {
    fn path(&self, digest: &str) -> PathBuf {
        self.directory.join(self.area.key(digest))
    }

    fn missing(path: &Path) -> Error {
        Error::not_found(
            "blob",
            path.display().to_string(),
            format!("Blob {} is missing", path.display()),
        )
    }
}

impl Local {
    /// The blobs of `area` in this storage's directory.
    pub(super) fn blobs(&self, area: BlobArea) -> AreaBlobs {
        AreaBlobs {
            directory: self.flow_directory().to_path_buf(),
            area,
        }
    }
}

#[async_trait]
impl BlobStore for AreaBlobs {
    fn blob_location(&self, digest: &str) -> String {
        self.path(digest).display().to_string()
    }

    async fn has_blob(&self, digest: &str) -> Result<bool> {
        Ok(self.path(digest).is_file())
    }

    /// Copies the file in under a temporary name and links it into place; a blob already there
    /// (another registration of the same bytes) is left alone. The new file's time is now.
    async fn put_blob(&self, digest: &str, source: &Path, _size: u64) -> Result<()> {
        let (dest, source) = (self.path(digest), source.to_path_buf());
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
        let path = self.path(digest);
        match tokio::fs::copy(&path, dest).await {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Self::missing(&path)),
            Err(e) => Err(Error::io(format!("reading blob {}", path.display()), e)),
        }
    }

    /// Reads the range straight from the blob file.
    async fn get_blob_range(&self, digest: &str, offset: u64, len: u64) -> Result<bytes::Bytes> {
        let path = self.path(digest);
        if !path.is_file() {
            return Err(Self::missing(&path));
        }
        tokio::task::spawn_blocking(move || bundle::read_range(&path, offset, len))
            .await
            .map_err(|e| Error::backend(TYPE_NAME, format!("blob reader failed: {e}")))?
    }

    fn area(&self, area: BlobArea) -> Option<Box<dyn BlobStore + '_>> {
        Some(Box::new(AreaBlobs {
            directory: self.directory.clone(),
            area,
        }))
    }

    /// Lists the area's directory (a missing directory holds no blobs); other files there
    /// (temporaries of a write in progress) are not blobs, and temporaries that killed writers
    /// left ([`atomic::is_abandoned_temp`]) are removed.
    async fn list_blobs(&self) -> Result<Vec<BlobInfo>> {
        let dir = self.directory.join(self.area.dir());
        tokio::task::spawn_blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
            };
            let mut blobs = Vec::new();
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name();
                let name = name.to_str().unwrap_or_default();
                if atomic::is_abandoned_temp(name, &entry.path()) {
                    let _ = std::fs::remove_file(entry.path());
                    tracing::debug!(path = %entry.path().display(), "removed a temporary a killed write left");
                    continue;
                }
                let Some(digest) = BlobArea::digest_of(name) else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else {
                    continue; // removed meanwhile
                };
                if !meta.is_file() {
                    continue;
                }
                blobs.push(BlobInfo {
                    digest,
                    size: meta.len(),
                    modified: meta
                        .modified()
                        .map(chrono::DateTime::<chrono::Utc>::from)
                        .unwrap_or_default(),
                });
            }
            Ok(blobs)
        })
        .await
        .map_err(|e| Error::backend(TYPE_NAME, format!("blob listing failed: {e}")))?
    }

    async fn replace_blob_for_tests(&self, digest: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.path(digest);
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, bytes)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(true)
    }

    async fn delete_blob(&self, digest: &str) -> Result<()> {
        let path = self.path(digest);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("deleting blob {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }
}
