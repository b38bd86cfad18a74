//! Fetching a bundle: blobs from the cache or the storage, verified, then the tree materialized.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::registry::{Progress, ProgressFn};

use super::cache::BlobCache;
use super::manifest::Manifest;

use super::{BlobStore, TransferReport, DEFAULT_PARALLELISM};

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
    cache.sweep();
    // Distinct blobs: digest → (size, the first file with those bytes).
    let mut wanted: std::collections::BTreeMap<&str, (u64, &str)> = Default::default();
    for f in manifest.files() {
        wanted
            .entry(f.digest.as_str())
            .or_insert((f.size, f.path.as_str()));
    }
    let verify_cache = cache.clone();
    let digests: Vec<String> = wanted.keys().map(|d| d.to_string()).collect();
    let present: Vec<bool> = tokio::task::spawn_blocking(move || {
        // Re-hashing cached blobs is the warm fetch's main cost: spread it over a few threads.
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        let chunk = digests.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = digests
                .chunks(chunk)
                .map(|part| {
                    let cache = &verify_cache;
                    scope.spawn(move || {
                        part.iter()
                            .map(|d| cache.verify(d, false))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a verifying thread panicked"))
                .collect()
        })
    })
    .await
    .map_err(|e| Error::backend("flowstore", format!("checking the blob cache: {e}")))?;

    let mut report = TransferReport::default();
    let mut missing = Vec::new();
    for ((digest, (size, path)), here) in wanted.iter().zip(present) {
        if here {
            report.reused_objects += 1;
            report.reused_bytes += size;
        } else {
            missing.push((digest.to_string(), *size, path.to_string()));
        }
    }
    let total: u64 = missing.iter().map(|m| m.1).sum();
    tracing::debug!(
        flow,
        blobs = missing.len(),
        bytes = total,
        reused = report.reused_objects,
        "fetching bundle blobs"
    );
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let parallelism = options.parallelism.unwrap_or(DEFAULT_PARALLELISM).max(1);
    futures::stream::iter(missing.clone())
        .map(|(digest, size, path)| {
            let (cache, done, progress) = (cache.clone(), done.clone(), options.progress.clone());
            async move {
                download(store, &cache, flow, &digest, &path).await?;
                let so_far = done.fetch_add(size, std::sync::atomic::Ordering::Relaxed) + size;
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
    report.objects = missing.len() as u64;
    report.bytes = total;

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

/// Downloads one blob into the cache's temporary area, verifies it and moves it into the cache.
async fn download(
    store: &dyn BlobStore,
    cache: &BlobCache,
    flow: &str,
    digest: &str,
    path: &str,
) -> Result<()> {
    let location = store.blob_location(digest);
    let tmp = cache.temp_dir()?;
    let file = tmp.path().join("blob");
    store.get_blob(digest, &file).await.map_err(|e| {
        if e.is_not_found() {
            Error::FlowCorrupt {
                flow: flow.to_string(),
                location: location.clone(),
                reason: format!("the blob of its file {path:?} is missing from the storage"),
            }
        } else {
            e
        }
    })?;
    let (cache, digest, flow, path) = (
        cache.clone(),
        digest.to_string(),
        flow.to_string(),
        path.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let added = cache.add_verified(&file, &digest, &flow, &path, &location);
        drop(tmp);
        added
    })
    .await
    .map_err(|e| Error::backend("flowstore", format!("verifying a blob: {e}")))?
}
