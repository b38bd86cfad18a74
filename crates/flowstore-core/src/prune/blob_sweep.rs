//! The bundle blob sweep: blobs no stored version names go to the trash, and leave it for good
//! one grace period later.
//!
//! Why a trash: a registration checks which blobs the storage already holds, uploads the rest,
//! then stores its manifest. A blob it found stored may have been named only by versions a
//! prune just deleted. Were the sweep to delete it outright, the new manifest would name a blob
//! that is gone. So a sweep *moves* such a blob to `.blobs/trash/`; fetches read a blob missing
//! from the live area from the trash; the next sweep moves a trashed blob that a version names
//! back, and deletes from the trash only what no version names and was trashed more than a grace
//! period ago. A registration that lasts longer than [`crate::bundle::RECHECK_AFTER`] checks its
//! blobs again before it stores its manifest, so the grace period must exceed that.
//!
//! Every step is a copy before a delete: a sweep killed at any point leaves every blob that a
//! remaining version names readable, live or in the trash.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::bundle::{BlobArea, BlobInfo, BlobStore, Manifest, DEFAULT_PARALLELISM};
use crate::error::{Error, Result};
use crate::storage::{Storage, StoredVersion};

/// What a sweep does (planned) or did (reported) to a storage's blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlobSweep {
    /// Blobs in the live area.
    pub live: usize,
    /// Distinct blobs the remaining versions name.
    pub referenced: usize,
    /// Live blobs no version names but younger than the grace period (a registration in
    /// flight may be about to name them): left alone.
    pub young: usize,
    /// Live blobs no version names, older than the grace period: moved to the trash.
    pub to_trash: Vec<BlobInfo>,
    /// Trashed blobs a version names (a registration reused them as they were swept): moved
    /// back.
    pub to_restore: Vec<BlobInfo>,
    /// Trashed blobs no version names, trashed more than a grace period ago: deleted.
    pub to_delete: Vec<BlobInfo>,
}

impl BlobSweep {
    /// Bytes moved to the trash (freed by a later sweep).
    pub fn bytes_to_trash(&self) -> u64 {
        self.to_trash.iter().map(|b| b.size).sum()
    }

    /// Bytes deleted for good.
    pub fn bytes_to_delete(&self) -> u64 {
        self.to_delete.iter().map(|b| b.size).sum()
    }
}

/// The digests of every blob the bundle versions among `versions` name, reading their
/// manifests. A version gone meanwhile names nothing.
///
/// Errors: a manifest that cannot be read or parsed (then nothing may be swept: its blobs are
/// unknown), naming the version.
pub async fn referenced_blobs(
    storage: &dyn Storage,
    versions: &[StoredVersion],
) -> Result<BTreeSet<String>> {
    let sets: Vec<Vec<String>> = futures::stream::iter(versions.iter().filter(|v| v.bundle))
        .map(|v| async move {
            let bytes = match storage.read_version(v).await {
                Ok(b) => b,
                Err(e) if e.is_not_found() => return Ok(Vec::new()),
                Err(e) => return Err(unreadable(v, e)),
            };
            let name = v.flow.as_deref().unwrap_or(&v.slug);
            let manifest =
                Manifest::parse(name, &v.location, &bytes).map_err(|e| unreadable(v, e))?;
            Ok(manifest
                .blobs()
                .into_iter()
                .map(|(d, _)| d.to_string())
                .collect())
        })
        .buffer_unordered(DEFAULT_PARALLELISM)
        .try_collect()
        .await?;
    Ok(sets.into_iter().flatten().collect())
}

fn unreadable(v: &StoredVersion, e: Error) -> Error {
    Error::config(format!(
        "cannot read the bundle manifest {} ({e}); no blob was swept, since the blobs it names \
         are unknown. Repair or delete that version, then prune again",
        v.location
    ))
}

/// Plans a sweep of `store` given the blobs the remaining versions name.
///
/// Errors: the store has no trash ([`Error::Unsupported`]) or a listing fails.
pub async fn plan_sweep(
    store: &dyn BlobStore,
    referenced: &BTreeSet<String>,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<BlobSweep> {
    let trash = trash_of(store)?;
    let live = store.list_blobs().await?;
    let trashed = trash.list_blobs().await?;
    let cutoff = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let mut plan = BlobSweep {
        live: live.len(),
        referenced: referenced.len(),
        ..BlobSweep::default()
    };
    for blob in live {
        if referenced.contains(&blob.digest) {
            continue;
        }
        if blob.modified < cutoff {
            plan.to_trash.push(blob);
        } else {
            plan.young += 1;
        }
    }
    for blob in trashed {
        if referenced.contains(&blob.digest) {
            plan.to_restore.push(blob);
        } else if blob.modified < cutoff {
            plan.to_delete.push(blob);
        }
    }
    for list in [
        &mut plan.to_trash,
        &mut plan.to_restore,
        &mut plan.to_delete,
    ] {
        list.sort_by(|a, b| a.digest.cmp(&b.digest));
    }
    Ok(plan)
}

/// Carries out `plan` on `store`: restores, then trashes, then deletes, each a copy before a
/// delete, [`DEFAULT_PARALLELISM`] at a time. `on_blob` is told after each blob.
///
/// Errors: the first failed copy or delete, naming the blob (what was done so far stays done
/// and is safe).
pub async fn apply_sweep(
    store: &dyn BlobStore,
    plan: &BlobSweep,
    on_blob: &(dyn Fn() + Send + Sync),
) -> Result<()> {
    let trash = trash_of(store)?;
    let trash = trash.as_ref();
    for_each(&plan.to_restore, |b| async move {
        move_blob(trash, store, &b.digest, b.size).await?;
        on_blob();
        Ok(())
    })
    .await?;
    for_each(&plan.to_trash, |b| async move {
        move_blob(store, trash, &b.digest, b.size).await?;
        on_blob();
        Ok(())
    })
    .await?;
    for_each(&plan.to_delete, |b| async move {
        trash.delete_blob(&b.digest).await?;
        tracing::debug!(blob = %trash.blob_location(&b.digest), "deleted a trashed blob");
        on_blob();
        Ok(())
    })
    .await
}

async fn for_each<'a, F, Fut>(blobs: &'a [BlobInfo], f: F) -> Result<()>
where
    F: Fn(&'a BlobInfo) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    futures::stream::iter(blobs.iter().map(f))
        .buffer_unordered(DEFAULT_PARALLELISM)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

fn trash_of(store: &dyn BlobStore) -> Result<Box<dyn BlobStore + '_>> {
    store
        .area(BlobArea::Trash)
        .ok_or_else(|| Error::Unsupported {
            backend: "blob store".to_string(),
            what: "sweeping blobs: this storage keeps no trash for them".to_string(),
        })
}

/// Copies blob `digest` from `from` to `to` (create-only: a copy already there is kept), then
/// deletes it from `from`. A blob already gone from `from` (another sweep moved it) is done.
async fn move_blob(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    digest: &str,
    size: u64,
) -> Result<()> {
    let temp = crate::bundle::TempFile::new("sweep");
    let path = temp.0.as_path();
    match from.get_blob(digest, path).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    }
    let owned = path.to_path_buf();
    let (actual, got) = tokio::task::spawn_blocking(move || crate::bundle::digest_file(&owned))
        .await
        .map_err(|e| Error::backend("flowstore", format!("hashing a blob: {e}")))??;
    if actual != digest || got != size {
        // A blob whose bytes are not its name is left where it is, for a person to look at.
        return Err(Error::FlowCorrupt {
            flow: "(bundle blob)".to_string(),
            location: from.blob_location(digest),
            reason: format!("it hashes to {actual}, not to its name; not moved"),
        });
    }
    to.put_blob(digest, path, size).await?;
    from.delete_blob(digest).await
}
