//! Bundles: a flow together with its code — a directory tree stored as content-addressed blobs
//! plus one [`Manifest`].
//!
//! Registering ([`FlowInput::bundle`](crate::FlowInput::bundle)) walks the tree ([`scan`]),
//! uploads the blobs the storage lacks ([`upload`], create-only, in parallel) and then stores the
//! manifest as the flow: the reference records its location and digest like any flow's. Small
//! files travel in *packs* (one blob holding a group of files, grouped by path so that an edit
//! changes one pack); large files are blobs of their own. A re-registration after a one-line
//! change uploads one pack and one manifest.
//!
//! Fetching ([`Storage::get_bundle`](crate::Storage::get_bundle), [`fetch`]) verifies the
//! manifest against the reference, downloads only the files missing from a shared local
//! [`BlobCache`] (a whole pack when much of it is needed, else byte ranges of it), verifies every
//! file against its own digest, and materializes the tree atomically: it appears whole at the
//! destination or not at all.
//!
//! Backends that store objects implement [`BlobStore`] (four operations and ranged reads) and
//! get registration and fetching from here; backends with content-addressed storage of their own (Git, Docker) serve
//! bundles their own way.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> flowstore_core::Result<()> {
//! use flowstore_core::bundle;
//! let project = tempfile::tempdir().unwrap();
//! std::fs::write(project.path().join("flow.py"), "import helpers\n").unwrap();
//! std::fs::write(project.path().join("helpers.py"), "X = 1\n").unwrap();
//! let scanned = bundle::scan(project.path(), "flow.py")?;
//! assert_eq!(scanned.manifest.files().len(), 2);
//! assert_eq!(scanned.manifest.entry(), "flow.py");
//! # Ok(()) }
//! ```

mod cache;
mod fetch;
mod manifest;
mod materialize;
mod scan;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::registry::{Progress, ProgressFn};

pub use cache::{BlobCache, BLOB_CACHE_ENV};
pub use fetch::{fetch, FetchOptions, FetchedBundle};
pub use manifest::{
    check_path, is_manifest, FileMode, Manifest, ManifestFile, MANIFEST_FORMAT, MARKER_FILE,
    MAX_FILES, MAX_FILE_SIZE, MAX_MANIFEST_BYTES, MAX_TOTAL_SIZE,
};
pub use scan::{scan, ScannedBundle, ScannedFile, ScannedPack, IGNORE_FILE, PACK_FILE_LIMIT};

/// Where blobs live inside a storage, relative to its prefix: `.blobs/sha256/<hex>`. The leading
/// dot keeps it apart from flow keys (a slug never contains a dot).
pub const BLOB_DIR: &str = ".blobs";

/// How many blobs move at once by default.
pub const DEFAULT_PARALLELISM: usize = 16;

/// The key of a blob relative to a storage's prefix: `.blobs/sha256/<hex>`.
///
/// ```
/// let d = flowstore_core::envelope::sha256_digest(b"x");
/// assert!(flowstore_core::bundle::blob_key(&d).starts_with(".blobs/sha256/2d71"));
/// ```
pub fn blob_key(digest: &str) -> String {
    BlobArea::Live.key(digest)
}

/// The two places a storage keeps blobs. Blobs that no stored version names any more go to the
/// trash first and are deleted from it only by a later sweep (see [`crate::prune::sweep()`]), so a
/// registration that found a blob stored a moment before it was swept still has it: fetches
/// look in the trash when a blob is missing, and the next sweep puts a blob that a version names
/// back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobArea {
    /// `.blobs/sha256/<hex>`: where registrations upload and fetches read.
    Live,
    /// `.blobs/trash/sha256/<hex>`: swept blobs, kept for one more grace period.
    Trash,
}

impl BlobArea {
    /// The key of blob `digest` in this area, relative to a storage's prefix.
    ///
    /// ```
    /// use flowstore_core::bundle::BlobArea;
    /// let d = flowstore_core::envelope::sha256_digest(b"x");
    /// assert!(BlobArea::Trash.key(&d).starts_with(".blobs/trash/sha256/2d71"));
    /// assert_eq!(BlobArea::Live.key(&d), flowstore_core::bundle::blob_key(&d));
    /// ```
    pub fn key(self, digest: &str) -> String {
        format!(
            "{}/{}",
            self.dir(),
            digest.split_once(':').map_or(digest, |(_, hex)| hex)
        )
    }

    /// The directory (key prefix) of this area's blobs: `.blobs/sha256` or
    /// `.blobs/trash/sha256`.
    pub fn dir(self) -> &'static str {
        match self {
            BlobArea::Live => ".blobs/sha256",
            BlobArea::Trash => ".blobs/trash/sha256",
        }
    }

    /// The digest (`sha256:<hex>`) of the blob whose file name (last key segment) is `name`,
    /// if it is one: 64 lowercase hex digits. Anything else in a blob directory is not a blob.
    pub fn digest_of(name: &str) -> Option<String> {
        (name.len() == 64
            && name
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| format!("sha256:{name}"))
    }
}

/// One stored blob, as [`BlobStore::list_blobs`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlobInfo {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written (for a trashed blob: when it was trashed).
    pub modified: chrono::DateTime<chrono::Utc>,
}

/// The error for a blob operation a backend does not implement.
fn blob_op_unsupported(what: &str) -> Error {
    Error::Unsupported {
        backend: "blob store".to_string(),
        what: what.to_string(),
    }
}

/// The error for a bundle flow given to a storage that cannot hold bundles (`backend` is its type
/// name).
pub fn unsupported(backend: &str, flow: &str) -> Error {
    Error::Unsupported {
        backend: backend.to_string(),
        what: format!(
            "storing bundle flow \"{flow}\": this storage does not hold bundles. Local, S3, Azure and GCS (serialized mode, no fixed key), Webhook (URL mode), Docker (serialized mode) and Git (a directory of the repository) do"
        ),
    }
}

/// A flow defined by a directory of code: what [`FlowInput::Bundle`](crate::FlowInput::Bundle)
/// holds.
#[derive(Clone)]
pub struct BundleInput {
    /// The flow's name.
    pub name: String,
    /// The directory to bundle.
    pub dir: PathBuf,
    /// The entry file, relative to `dir` (`flows/etl.py`).
    pub entry: String,
    /// Told how many bytes of blobs were uploaded (the CLI draws a bar with it).
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for BundleInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleInput")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("entry", &self.entry)
            .finish()
    }
}

impl BundleInput {
    /// Walks and hashes the directory (see [`scan`]).
    ///
    /// Errors: as [`scan`], with the flow's name added.
    pub fn scan(&self) -> Result<ScannedBundle> {
        scan(&self.dir, &self.entry).map_err(|e| match e {
            Error::Config { message, source } => Error::Config {
                message: format!("Flow \"{}\": {message}", self.name),
                source,
            },
            other => other,
        })
    }
}

/// Objects and bytes moved by one registration or fetch, and what was already in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransferReport {
    /// Objects uploaded or downloaded (blobs, and the manifest on registration).
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs already in place (in the storage on upload, in the local cache on fetch).
    pub reused_objects: u64,
    /// Their bytes.
    pub reused_bytes: u64,
}

/// The object operations a backend provides so bundles work on it.
///
/// Blob names are `sha256:<hex>` digests; keys are the backend's business (usually
/// [`blob_key`] under the storage's prefix). Errors name the blob's location.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Where the blob lives, for messages (`s3://bucket/prefix/.blobs/sha256/…`).
    fn blob_location(&self, digest: &str) -> String;

    /// True if the storage holds the blob.
    async fn has_blob(&self, digest: &str) -> Result<bool>;

    /// The digests among `digests` the storage does not hold. The default asks
    /// [`BlobStore::has_blob`] for each, [`DEFAULT_PARALLELISM`] at a time; backends that can
    /// list cheaply may override it.
    async fn missing_blobs(&self, digests: &[String]) -> Result<Vec<String>> {
        let found: Vec<(String, bool)> = futures::stream::iter(digests.iter().cloned())
            .map(|d| async move {
                let has = self.has_blob(&d).await?;
                Ok::<_, Error>((d, has))
            })
            .buffer_unordered(DEFAULT_PARALLELISM)
            .try_collect()
            .await?;
        let mut missing: Vec<String> = found
            .into_iter()
            .filter_map(|(d, has)| (!has).then_some(d))
            .collect();
        missing.sort();
        Ok(missing)
    }

    /// Uploads the file at `source` (`size` bytes, hashing to `digest`) as a blob, create-only:
    /// a blob already there is left as it is and is not an error (same name, same bytes).
    async fn put_blob(&self, digest: &str, source: &Path, size: u64) -> Result<()>;

    /// Downloads the blob into the file `dest` (created or truncated), returning the bytes
    /// written. The caller verifies them. A missing blob is [`Error::NotFound`].
    async fn get_blob(&self, digest: &str, dest: &Path) -> Result<u64>;

    /// Reads `len` bytes of the blob from `offset` (one file out of a pack). The caller verifies
    /// them. The default downloads the whole blob to a temporary file and reads the range from
    /// it; backends override it with a ranged request.
    async fn get_blob_range(&self, digest: &str, offset: u64, len: u64) -> Result<bytes::Bytes> {
        let temp = TempFile::new("range");
        self.get_blob(digest, &temp.0).await?;
        read_range(&temp.0, offset, len)
    }

    /// The same storage's blobs in `area`, as a store of their own: `put_blob`, `get_blob`,
    /// `list_blobs` and `delete_blob` on it act on that area. `None` (the default) where the
    /// backend has no trash; such a storage cannot be swept.
    fn area(&self, area: BlobArea) -> Option<Box<dyn BlobStore + '_>> {
        let _ = area;
        None
    }

    /// Every blob stored in this store's area, in any order (paged as the service pages).
    ///
    /// Errors: [`Error::Unsupported`] (the default) where the backend cannot list; the
    /// service's answer.
    async fn list_blobs(&self) -> Result<Vec<BlobInfo>> {
        Err(blob_op_unsupported("listing blobs"))
    }

    /// Deletes blob `digest` from this store's area. A blob already gone is not an error.
    ///
    /// Errors: [`Error::Unsupported`] (the default) where the backend cannot delete; the
    /// service's answer.
    async fn delete_blob(&self, digest: &str) -> Result<()> {
        let _ = digest;
        Err(blob_op_unsupported("deleting blobs"))
    }

    /// Replaces a blob's bytes behind flowstore's back, for tests that prove altered blobs are
    /// refused. Returns false (the default) where the backend cannot. Not for production use.
    #[doc(hidden)]
    async fn replace_blob_for_tests(&self, digest: &str, bytes: &[u8]) -> Result<bool> {
        let _ = (digest, bytes);
        Ok(false)
    }
}

/// What one upload sends: a file as a blob of its own, or a pack built from files.
#[derive(Clone)]
enum Upload {
    Single(PathBuf),
    Pack(Vec<(PathBuf, String)>),
}

/// Uploads the blobs of `bundle` that `store` lacks (its packs and its large files),
/// [`DEFAULT_PARALLELISM`] at a time, telling `progress` the bytes uploaded. Every file is checked
/// again against the digest the scan recorded (a pack is assembled in a temporary file from its
/// files as they are checked), so bytes that changed since the scan are not stored under an old
/// name; backends upload what they are given. The manifest is the
/// backend's to store afterwards (count it with [`TransferReport::add_object`]).
///
/// Errors: the first failed existence check or upload, naming the blob and its file;
/// [`Error::Config`] naming a file that changed since the scan.
pub async fn upload(
    store: &dyn BlobStore,
    bundle: &ScannedBundle,
    progress: Option<&ProgressFn>,
) -> Result<TransferReport> {
    let mut items: std::collections::BTreeMap<String, (Upload, u64)> = Default::default();
    for (digest, path, size) in bundle.single_blobs() {
        items.insert(
            digest.to_string(),
            (Upload::Single(path.to_path_buf()), size),
        );
    }
    for pack in &bundle.packs {
        let members = pack
            .members
            .iter()
            .map(|&i| {
                let f = &bundle.files[i];
                (f.source.clone(), f.file.digest.clone())
            })
            .collect();
        items.insert(pack.digest.clone(), (Upload::Pack(members), pack.size));
    }
    let all: Vec<String> = items.keys().cloned().collect();
    let checked_at = std::time::Instant::now();
    let missing = store.missing_blobs(&all).await?;
    let mut report = TransferReport::default();
    let mut to_send = Vec::new();
    for (digest, (what, size)) in &items {
        if missing.binary_search(digest).is_ok() {
            to_send.push((digest.clone(), what.clone(), *size));
        } else {
            report.reused_objects += 1;
            report.reused_bytes += size;
        }
    }
    let (count, total) = send(store, to_send, progress).await?;
    report.objects = count;
    report.bytes = total;
    if checked_at.elapsed() > RECHECK_AFTER {
        // A long upload: a blob found stored at the start may have been swept since (a sweep
        // moves only blobs older than its grace period, which must exceed RECHECK_AFTER).
        let again = store.missing_blobs(&all).await?;
        if !again.is_empty() {
            tracing::warn!(
                blobs = again.len(),
                "blobs stored when this registration began were swept meanwhile: uploading them again"
            );
            let resend = items
                .iter()
                .filter(|(d, _)| again.binary_search(d).is_ok())
                .map(|(d, (what, size))| (d.clone(), what.clone(), *size))
                .collect();
            let (count, total) = send(store, resend, progress).await?;
            report.objects += count;
            report.bytes += total;
        }
    }
    Ok(report)
}

/// How long a registration's upload may run before it checks again that the blobs it found
/// stored are still there. Sweeps must use a longer grace period (the default is an hour).
pub const RECHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// Uploads `to_send` ([`DEFAULT_PARALLELISM`] at a time), checking each file against its digest
/// and telling `progress`; returns the blobs and bytes sent.
async fn send(
    store: &dyn BlobStore,
    to_send: Vec<(String, Upload, u64)>,
    progress: Option<&ProgressFn>,
) -> Result<(u64, u64)> {
    let total: u64 = to_send.iter().map(|(_, _, s)| s).sum();
    let count = to_send.len() as u64;
    tracing::debug!(blobs = count, bytes = total, "uploading bundle blobs");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    futures::stream::iter(to_send)
        .map(|(digest, what, size)| {
            let (done, progress) = (done.clone(), progress.cloned());
            async move {
                let (source, _assembled) = match what {
                    Upload::Single(path) => {
                        let (checked, expected) = (path.clone(), digest.clone());
                        tokio::task::spawn_blocking(move || {
                            let (actual, _) = digest_file(&checked)?;
                            check_unchanged(&checked, &expected, &actual)
                        })
                        .await
                        .map_err(|e| Error::backend("flowstore", format!("digest task failed: {e}")))??;
                        (path, None)
                    }
                    Upload::Pack(members) => {
                        let file = tokio::task::spawn_blocking(move || assemble_pack(&members))
                            .await
                            .map_err(|e| Error::backend("flowstore", format!("pack task failed: {e}")))??;
                        (file.0.clone(), Some(file))
                    }
                };
                store.put_blob(&digest, &source, size).await.inspect_err(|_| {
                    tracing::warn!(file = %source.display(), blob = %store.blob_location(&digest), "blob upload failed");
                })?;
                let so_far = done.fetch_add(size, std::sync::atomic::Ordering::Relaxed) + size;
                if let Some(p) = progress {
                    p(Progress {
                        what: "bundle bytes uploaded",
                        done: so_far,
                        total: Some(total),
                    });
                }
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(DEFAULT_PARALLELISM)
        .try_collect::<Vec<()>>()
        .await?;
    Ok((count, total))
}

/// [`Error::Config`] naming a file that changed between the scan and the upload (uploading it
/// would store other bytes under the blob's name), unless `actual` is the `expected` digest.
fn check_unchanged(source: &Path, expected: &str, actual: &str) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    Err(Error::config(format!(
        "{} changed after the bundle was scanned (it was {expected}, it is now {actual}); it was \
         not uploaded. Register the flow again once the files stop changing.",
        source.display()
    )))
}

/// A temporary file removed when dropped.
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    /// A fresh path in the system's temporary directory (`flowstore-<what>-<pid>-<n>`), removed
    /// when dropped.
    pub(crate) fn new(what: &str) -> TempFile {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        TempFile(std::env::temp_dir().join(format!(
            "flowstore-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes a pack (its distinct files' bytes, in order) to a temporary file, checking each file
/// against the digest the scan recorded.
fn assemble_pack(members: &[(PathBuf, String)]) -> Result<TempFile> {
    use std::io::Write;
    let temp = TempFile::new("pack");
    let path = temp.0.clone();
    let write_err = |e| Error::io(format!("writing {}", path.display()), e);
    let mut out = std::fs::File::create(&path).map_err(write_err)?;
    for (source, digest) in members {
        let bytes = std::fs::read(source)
            .map_err(|e| Error::io(format!("reading {}", source.display()), e))?;
        check_unchanged(source, digest, &crate::envelope::sha256_digest(&bytes))?;
        out.write_all(&bytes).map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    Ok(temp)
}

impl TransferReport {
    /// Counts one more object of `bytes` moved (a manifest stored after its blobs).
    pub fn add_object(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

/// Materializes `manifest` at `dest` from blobs already in `cache` (blocking; see
/// [`Storage::get_bundle`](crate::Storage::get_bundle) for what `dest` may be), then evicts blobs
/// by the cache's policy, keeping this bundle's. For backends that fill the cache their own way
/// (with [`BlobCache::add_verified`]) before calling it.
///
/// Errors: a blob missing from the cache, `dest` refused, or I/O, naming the path.
pub fn materialize_from_cache(cache: &BlobCache, manifest: &Manifest, dest: &Path) -> Result<()> {
    let mut executable: Vec<&str> = manifest
        .files()
        .iter()
        .filter(|f| f.mode == FileMode::Executable)
        .map(|f| f.digest.as_str())
        .collect();
    executable.sort_unstable();
    executable.dedup();
    for d in executable {
        if !cache.verify(d, true) {
            cache.make_executable(d)?;
        }
    }
    materialize::materialize(cache, manifest, dest)?;
    let keep: Vec<&str> = manifest.files().iter().map(|f| f.digest.as_str()).collect();
    let (evicted, freed) = cache.evict(&keep);
    if evicted > 0 {
        tracing::info!(evicted, freed, "evicted least recently used bundle blobs");
    }
    Ok(())
}

/// Maps `f` over `items` on a few threads (the machine's cores, at most 8), keeping their order:
/// hashing is what scans and warm fetches spend their time on.
pub(crate) fn map_on_threads<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    })
}

/// Reads `len` bytes at `offset` of the file at `path` (blocking).
///
/// Errors with [`Error::Io`] naming the file (a file too short included).
pub fn read_range(path: &Path, offset: u64, len: u64) -> Result<bytes::Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let err = |e| {
        Error::io(
            format!("reading {len} bytes at {offset} of {}", path.display()),
            e,
        )
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    file.seek(SeekFrom::Start(offset)).map_err(err)?;
    let mut buf =
        vec![0u8; usize::try_from(len).map_err(|_| err(std::io::ErrorKind::InvalidInput.into()))?];
    file.read_exact(&mut buf).map_err(err)?;
    Ok(buf.into())
}

/// `sha256:<hex>` of a file and its size, read in 1 MiB chunks (blocking).
///
/// Errors with [`Error::Io`] naming the file.
pub fn digest_file(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let read_err = |e| Error::io(format!("reading {}", path.display()), e);
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut digest = crate::envelope::DigestBuilder::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            return Ok((digest.finish(), size));
        }
        size += n as u64;
        digest.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_changed_since_the_scan_is_named() {
        let e = check_unchanged(Path::new("/p/f.py"), "sha256:aa", "sha256:bb")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/p/f.py") && e.contains("sha256:aa"), "{e}");
        assert!(check_unchanged(Path::new("f"), "sha256:aa", "sha256:aa").is_ok());
    }
}
