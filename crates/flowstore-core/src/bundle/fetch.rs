//! Fetching a bundle: blobs from the cache or the storage, verified, then the tree materialized.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::registry::{Progress, ProgressFn};

use super::cache::BlobCache;
use super::manifest::{Manifest, ManifestFile};

use super::{BlobArea, BlobStore, TransferReport, DEFAULT_PARALLELISM};

/// How a bundle is fetched.
#[derive(Clone, Default)]
pub struct FetchOptions {
    /// The blob cache (default: [`BlobCache::from_env`]).
    pub cache: Option<BlobCache>,
    /// Blobs downloaded at once (default [`DEFAULT_PARALLELISM`]).
    pub parallelism: Option<usize>,
    /// Told how many bytes of blobs were downloaded.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchOptions")
            .field("cache", &self.cache)
            .field("parallelism", &self.parallelism)
            .finish()
    }
}

impl FetchOptions {
    /// Options using the blob cache at `dir` (default bounds).
    pub fn with_cache_dir(dir: impl Into<PathBuf>) -> Self {
        FetchOptions {
            cache: Some(BlobCache::new(dir, crate::cache::CachePolicy::default())),
            ..FetchOptions::default()
        }
    }
}

/// A bundle materialized on this machine.
#[derive(Debug, Clone)]
pub struct FetchedBundle {
    /// The flow's name.
    pub name: String,
    /// The tree's root (the destination asked for).
    pub root: PathBuf,
    /// The entry file's path on this machine.
    pub entry: PathBuf,
    /// The verified manifest.
    pub manifest: Manifest,
    /// What was downloaded and what came from the cache.
    pub transfer: TransferReport,
}

/// Fetches the blobs of `manifest` (flow `flow`) that the cache lacks from `store`, verifies
/// every blob, and materializes the tree at `dest` (see
/// [`Storage::get_bundle`](crate::Storage::get_bundle)).
///
/// Errors: [`Error::FlowCorrupt`] naming the file when a blob is missing or does not match its
/// digest (nothing is materialized); [`Error::Config`] when `dest` is a non-empty directory that
/// no fetch made; I/O errors naming the path.
pub async fn fetch(
    store: &dyn BlobStore,
    flow: &str,
    manifest: &Manifest,
    dest: &Path,
    options: &FetchOptions,
) -> Result<FetchedBundle> {
    let cache = match &options.cache {
        Some(c) => c.clone(),
        None => BlobCache::from_env()?,
    };
    // Distinct file contents: digest → the first file with those bytes.
    let mut wanted: std::collections::BTreeMap<&str, &ManifestFile> = Default::default();
    for f in manifest.files() {
        wanted.entry(f.digest.as_str()).or_insert(f);
    }
    let verify_cache = cache.clone();
    let digests: Vec<String> = wanted.keys().map(|d| d.to_string()).collect();
    // Re-hashing cached blobs is the warm fetch's main cost: spread it over a few threads.
    let present: Vec<bool> = tokio::task::spawn_blocking(move || {
        super::map_on_threads(&digests, |d| verify_cache.verify(d, false))
    })
    .await
    .map_err(|e| Error::backend("flowstore", format!("checking the blob cache: {e}")))?;

    let mut report = TransferReport::default();
    let mut missing: Vec<ManifestFile> = Vec::new();
    for ((_, file), here) in wanted.iter().zip(present) {
        if here {
            report.reused_objects += 1;
            report.reused_bytes += file.size;
        } else {
            missing.push((*file).clone());
        }
    }
    let requests = plan(manifest, missing);
    let total: u64 = requests.iter().map(Request::bytes).sum();
    tracing::debug!(
        flow,
        requests = requests.len(),
        bytes = total,
        reused = report.reused_objects,
        "fetching bundle blobs"
    );
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let parallelism = options.parallelism.unwrap_or(DEFAULT_PARALLELISM).max(1);
    report.objects = requests.len() as u64;
    report.bytes = total;
    futures::stream::iter(requests)
        .map(|request| {
            let (cache, done, progress) = (cache.clone(), done.clone(), options.progress.clone());
            async move {
                let bytes = request.bytes();
                request.run(store, &cache, flow).await?;
                let so_far = done.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed) + bytes;
                if let Some(p) = progress {
                    p(Progress {
                        what: "bundle bytes downloaded",
                        done: so_far,
                        total: Some(total),
                    });
                }
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(parallelism)
        .try_collect::<Vec<()>>()
        .await?;

    let (manifest_owned, dest_owned, cache_owned) =
        (manifest.clone(), dest.to_path_buf(), cache.clone());
    tokio::task::spawn_blocking(move || {
        super::materialize_from_cache(&cache_owned, &manifest_owned, &dest_owned)
    })
    .await
    .map_err(|e| Error::backend("flowstore", format!("materializing the bundle: {e}")))??;
    Ok(FetchedBundle {
        name: flow.to_string(),
        root: dest.to_path_buf(),
        entry: dest.join(manifest.entry()),
        manifest: manifest.clone(),
        transfer: report,
    })
}

/// A pack is downloaded whole when at least this share of its bytes is needed, or more than
/// [`RANGES_PER_PACK`] of its files; otherwise each needed file is a ranged read.
const WHOLE_PACK_SHARE: f64 = 0.5;
/// See [`WHOLE_PACK_SHARE`].
const RANGES_PER_PACK: usize = 8;

/// One download: a whole blob (a file of its own, or a pack with the files needed from it), or
/// one file's range of a pack.
enum Request {
    Whole {
        blob: String,
        size: u64,
        files: Vec<ManifestFile>,
    },
    Range {
        blob: String,
        file: ManifestFile,
    },
}

impl Request {
    /// The bytes it downloads.
    fn bytes(&self) -> u64 {
        match self {
            Request::Whole { size, .. } => *size,
            Request::Range { file, .. } => file.size,
        }
    }

    /// Downloads, verifies every file it carries against its digest, and adds them to the cache.
    async fn run(self, store: &dyn BlobStore, cache: &BlobCache, flow: &str) -> Result<()> {
        let missing = |file: &ManifestFile, blob: &str| {
            let (path, location) = (file.path.clone(), store.blob_location(blob));
            move |e: Error| {
                if e.is_not_found() {
                    Error::FlowCorrupt {
                        flow: flow.to_string(),
                        location,
                        reason: format!(
                            "the blob holding its file {path:?} is missing from the storage"
                        ),
                    }
                } else {
                    e
                }
            }
        };
        let tmp = cache.temp_dir()?;
        match self {
            Request::Whole { blob, files, .. } if files.len() == 1 && files[0].pack.is_none() => {
                // A file of its own, possibly large: streamed to disk, then verified.
                let whole = tmp.path().join("blob");
                let file = &files[0];
                get_blob(store, &blob, &whole)
                    .await
                    .map_err(missing(file, &blob))?;
                let (cache, flow, location, path, digest) = (
                    cache.clone(),
                    flow.to_string(),
                    store.blob_location(&blob),
                    file.path.clone(),
                    file.digest.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    let added = cache.add_verified(&whole, &digest, &flow, &path, &location);
                    drop(tmp);
                    added
                })
                .await
                .map_err(|e| Error::backend("flowstore", format!("verifying a blob: {e}")))?
            }
            Request::Whole { blob, size, files } => {
                // A pack (small files, bounded): read in one request into memory, then each file
                // is verified and written to the cache once.
                let bytes = get_blob_range(store, &blob, 0, size)
                    .await
                    .map_err(missing(&files[0], &blob))?;
                let (cache, flow, location) =
                    (cache.clone(), flow.to_string(), store.blob_location(&blob));
                tokio::task::spawn_blocking(move || {
                    for file in &files {
                        let (_, offset) = file.source();
                        let range = usize::try_from(offset)
                            .ok()
                            .zip(usize::try_from(offset + file.size).ok())
                            .filter(|(_, end)| *end <= bytes.len());
                        let Some((start, end)) = range else {
                            return Err(Error::FlowCorrupt {
                                flow: flow.clone(),
                                location: location.clone(),
                                reason: format!(
                                    "its file {:?} lies beyond the end of its pack",
                                    file.path
                                ),
                            });
                        };
                        cache.add_bytes_verified(
                            &bytes[start..end],
                            &file.digest,
                            &flow,
                            &file.path,
                            &location,
                        )?;
                    }
                    drop(tmp);
                    Ok(())
                })
                .await
                .map_err(|e| Error::backend("flowstore", format!("verifying blobs: {e}")))?
            }
            Request::Range { blob, file } => {
                let (_, offset) = file.source();
                let bytes = get_blob_range(store, &blob, offset, file.size)
                    .await
                    .map_err(missing(&file, &blob))?;
                let (cache, flow, location) =
                    (cache.clone(), flow.to_string(), store.blob_location(&blob));
                tokio::task::spawn_blocking(move || {
                    drop(tmp);
                    cache.add_bytes_verified(&bytes, &file.digest, &flow, &file.path, &location)
                })
                .await
                .map_err(|e| Error::backend("flowstore", format!("verifying a blob: {e}")))?
            }
        }
    }
}

/// Downloads blob `digest` whole into `dest`; from the storage's trash when it is not live (a
/// sweep can trash a blob a moment after a registration found it stored; the next sweep puts
/// it back). A blob in neither place is the live area's [`Error::NotFound`].
async fn get_blob(store: &dyn BlobStore, digest: &str, dest: &Path) -> Result<u64> {
    match store.get_blob(digest, dest).await {
        Err(e) if e.is_not_found() => match store.area(BlobArea::Trash) {
            Some(trash) => {
                let got = trash.get_blob(digest, dest).await.map_err(|_| e)?;
                tracing::warn!(blob = digest, "read a swept blob back from the trash");
                Ok(got)
            }
            None => Err(e),
        },
        other => other,
    }
}

/// Reads `len` bytes of blob `digest` from `offset`, from the trash when it is not live (as
/// [`get_blob`]).
async fn get_blob_range(
    store: &dyn BlobStore,
    digest: &str,
    offset: u64,
    len: u64,
) -> Result<bytes::Bytes> {
    match store.get_blob_range(digest, offset, len).await {
        Err(e) if e.is_not_found() => match store.area(BlobArea::Trash) {
            Some(trash) => {
                let got = trash
                    .get_blob_range(digest, offset, len)
                    .await
                    .map_err(|_| e)?;
                tracing::warn!(blob = digest, "read a swept blob back from the trash");
                Ok(got)
            }
            None => Err(e),
        },
        other => other,
    }
}

/// Chooses the downloads that bring `missing` files (distinct contents) into the cache: files of
/// their own whole; from each pack, the whole pack when much of it is needed, else ranges.
fn plan(manifest: &Manifest, missing: Vec<ManifestFile>) -> Vec<Request> {
    let sizes: std::collections::BTreeMap<&str, u64> = manifest.blobs().into_iter().collect();
    let mut by_blob: std::collections::BTreeMap<String, Vec<ManifestFile>> = Default::default();
    for file in missing {
        by_blob
            .entry(file.source().0.to_string())
            .or_default()
            .push(file);
    }
    let mut requests = Vec::new();
    for (blob, files) in by_blob {
        let size = sizes.get(blob.as_str()).copied().unwrap_or(0);
        let needed: u64 = files.iter().map(|f| f.size).sum();
        let single = files.len() == 1 && files[0].pack.is_none();
        if single
            || files.len() > RANGES_PER_PACK
            || needed as f64 >= size as f64 * WHOLE_PACK_SHARE
        {
            requests.push(Request::Whole { blob, size, files });
        } else {
            for file in files {
                requests.push(Request::Range {
                    blob: blob.clone(),
                    file,
                });
            }
        }
    }
    requests
}
