//! Retention: which stored versions a policy lets go, deleting them, and sweeping the bundle
//! blobs no remaining version names (`flowstore prune`).
//!
//! Storages never overwrite, so every registration adds a version. [`plan`] lists a storage's
//! versions and sorts them by a [`RetentionPolicy`]: the newest version of each flow always
//! stays, as does every version a protected reference names. [`execute`] deletes what the plan
//! lets go with [`Storage::delete_version`] (which refuses anything that is not a flowstore
//! version of that storage), then [`sweep()`]s the storage's bundle blobs (see [`blob_sweep`]
//! for why swept blobs pass through a trash).
//!
//! ```
//! use std::collections::BTreeSet;
//! use chrono::{Duration, Utc};
//! use flowstore_core::prune::{select, Reason, RetentionPolicy};
//! use flowstore_core::StoredVersion;
//! let now = Utc::now();
//! let versions: Vec<StoredVersion> = (0..3)
//!     .map(|days| {
//!         let at = now - Duration::days(days);
//!         StoredVersion {
//!             flow: Some("ETL".into()),
//!             slug: "etl".into(),
//!             location: flowstore_core::key::flow_key("ETL", &at),
//!             size: Some(100),
//!             stored_at: Some(at),
//!             bundle: false,
//!         }
//!     })
//!     .collect();
//! let policy = RetentionPolicy { keep_last: Some(2), older_than: None };
//! let verdicts = select(versions, &policy, &BTreeSet::new(), now);
//! let reasons: Vec<Reason> = verdicts.iter().map(|v| v.reason).collect();
//! assert_eq!(reasons, [Reason::Newest, Reason::WithinKeepLast, Reason::Expired]);
//! ```

pub mod blob_sweep;
mod select;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::bundle::DEFAULT_PARALLELISM;
use crate::error::{Error, Result};
use crate::registry::{Progress, ProgressFn};
use crate::storage::{Storage, StoredVersion};

pub use blob_sweep::BlobSweep;
pub use select::{select, Reason, Verdict};

/// How long a blob no version names stays before a sweep moves it to the trash, and how long it
/// then stays in the trash: one hour.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// Which versions may go. A version goes only when every rule given lets it go; the newest
/// version of each flow always stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionPolicy {
    /// Keep the newest N versions of each flow.
    pub keep_last: Option<usize>,
    /// Keep versions stored less than this long ago.
    #[serde(with = "secs")]
    pub older_than: Option<Duration>,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

impl RetentionPolicy {
    /// Checks that the policy says something: at least one rule, and `keep_last` ≥ 1.
    ///
    /// Errors: [`Error::Config`] saying what to give.
    pub fn check(&self) -> Result<()> {
        if self.keep_last.is_none() && self.older_than.is_none() {
            return Err(Error::config(
                "a retention policy needs --keep-last N or --older-than DURATION (or both)",
            ));
        }
        if self.keep_last == Some(0) {
            return Err(Error::config(
                "--keep-last 0 would delete every version; the newest of each flow always stays, \
                 so give 1 or more",
            ));
        }
        Ok(())
    }
}

/// What to prune and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneOptions {
    /// The policy.
    pub policy: RetentionPolicy,
    /// Only this flow's versions (by name; matched by its slug). Blobs are swept storage-wide
    /// either way.
    pub flow: Option<String>,
    /// Locations of versions that always stay (from protected references).
    pub protected: BTreeSet<String>,
    /// The blob sweep's grace period ([`DEFAULT_GRACE`]).
    pub grace: Duration,
}

impl PruneOptions {
    /// Options for `policy`: every flow, nothing protected, the default grace period.
    pub fn new(policy: RetentionPolicy) -> Self {
        PruneOptions {
            policy,
            flow: None,
            protected: BTreeSet::new(),
            grace: DEFAULT_GRACE,
        }
    }

    /// Protects every version `storage` (opened from a reference that must stay runnable)
    /// names ([`Storage::version_locations`]).
    pub fn protect(&mut self, storage: &dyn Storage) -> &mut Self {
        self.protected.extend(storage.version_locations());
        self
    }
}

/// What a prune will do: every listed version with its verdict, and the blob sweep.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrunePlan {
    /// The storage's type name.
    pub storage: String,
    /// When the plan was made (ages are measured from here).
    pub planned_at: DateTime<Utc>,
    /// The policy.
    pub policy: RetentionPolicy,
    /// Every listed version, grouped by flow, newest first.
    pub versions: Vec<Verdict>,
    /// The blob sweep after the deletions, where the storage holds bundle blobs.
    pub blobs: Option<BlobSweep>,
    /// The grace period, in seconds.
    pub grace_secs: u64,
}

impl PrunePlan {
    /// The versions the plan deletes.
    pub fn deleting(&self) -> impl Iterator<Item = &StoredVersion> {
        self.versions
            .iter()
            .filter(|v| !v.reason.keeps())
            .map(|v| &v.version)
    }

    /// The versions the plan keeps.
    pub fn keeping(&self) -> impl Iterator<Item = &StoredVersion> {
        self.versions
            .iter()
            .filter(|v| v.reason.keeps())
            .map(|v| &v.version)
    }

    /// Bytes the deleted versions hold (sizes the storage did not tell count as 0).
    pub fn version_bytes(&self) -> u64 {
        self.deleting().filter_map(|v| v.size).sum()
    }
}

/// What [`execute`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Versions deleted.
    pub versions_deleted: usize,
    /// Their bytes.
    pub version_bytes_freed: u64,
    /// The sweep that followed, as carried out (planned again after the deletions).
    pub blobs: Option<BlobSweep>,
}

/// Lists the storage's versions and plans a prune: the verdict on each version, and (for a
/// storage that holds bundle blobs) what the sweep after the deletions would do. Changes
/// nothing.
///
/// Errors: [`Error::Config`] for an empty policy; [`Error::Unsupported`] naming the storage when
/// it cannot list or delete versions (Git and the API storages are read-only); listing or
/// manifest-reading failures.
pub async fn plan(storage: &dyn Storage, options: &PruneOptions) -> Result<PrunePlan> {
    options.policy.check()?;
    check_capable(storage)?;
    let planned_at = Utc::now();
    let versions = storage.list_versions(options.flow.as_deref()).await?;
    let verdicts = select(versions, &options.policy, &options.protected, planned_at);
    let blobs = match storage.blob_store() {
        Some(store) if storage.capabilities().bundles => {
            // Blobs are shared by every flow: what stays is every version but the deleted ones.
            let deleted: BTreeSet<&str> = verdicts
                .iter()
                .filter(|v| !v.reason.keeps())
                .map(|v| v.version.location.as_str())
                .collect();
            let all = match &options.flow {
                Some(_) => storage.list_versions(None).await?,
                None => verdicts.iter().map(|v| v.version.clone()).collect(),
            };
            let remaining: Vec<StoredVersion> = all
                .into_iter()
                .filter(|v| !deleted.contains(v.location.as_str()))
                .collect();
            let referenced = blob_sweep::referenced_blobs(storage, &remaining).await?;
            Some(blob_sweep::plan_sweep(&*store, &referenced, options.grace, planned_at).await?)
        }
        _ => None,
    };
    Ok(PrunePlan {
        storage: storage.type_name().to_string(),
        planned_at,
        policy: options.policy.clone(),
        versions: verdicts,
        blobs,
        grace_secs: options.grace.as_secs(),
    })
}

/// Deletes the versions `plan` lets go ([`DEFAULT_PARALLELISM`] at a time; one already gone
/// counts as deleted), then sweeps the storage's bundle blobs afresh ([`sweep()`]). `progress` is
/// told the versions deleted, then the blobs swept.
///
/// Errors: the first failed deletion (the rest are not attempted; the sweep does not run), or
/// the sweep's error. What was deleted stays deleted; every remaining version still fetches.
pub async fn execute(
    storage: &dyn Storage,
    plan: &PrunePlan,
    options: &PruneOptions,
    progress: Option<&ProgressFn>,
) -> Result<PruneReport> {
    check_capable(storage)?;
    let doomed: Vec<&StoredVersion> = plan.deleting().collect();
    let total = doomed.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    futures::stream::iter(doomed.iter().map(|v| {
        let done = &done;
        async move {
            match storage.delete_version(v).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            tracing::info!(location = %v.location, "deleted a stored version");
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if let Some(p) = progress {
                p(Progress {
                    what: "versions deleted",
                    done: n,
                    total: Some(total),
                });
            }
            Ok(())
        }
    }))
    .buffer_unordered(DEFAULT_PARALLELISM)
    .try_collect::<Vec<()>>()
    .await?;
    let blobs = if storage.blob_store().is_some() && storage.capabilities().bundles {
        Some(sweep(storage, options.grace, progress).await?)
    } else {
        None
    };
    Ok(PruneReport {
        versions_deleted: doomed.len(),
        version_bytes_freed: plan.version_bytes(),
        blobs,
    })
}

/// Sweeps the storage's bundle blobs: lists every version and reads the bundle manifests, moves
/// live blobs no version names and older than `grace` to the trash, moves trashed blobs a
/// version names back, and deletes trashed blobs no version names that were trashed more than
/// `grace` ago. Returns what it did.
///
/// Errors: [`Error::Unsupported`] where the storage holds no blobs or keeps no trash; a
/// manifest that cannot be read (nothing is swept then); listing, copy or delete failures.
pub async fn sweep(
    storage: &dyn Storage,
    grace: Duration,
    progress: Option<&ProgressFn>,
) -> Result<BlobSweep> {
    let Some(store) = storage.blob_store() else {
        return Err(Error::Unsupported {
            backend: storage.type_name().to_string(),
            what: "sweeping bundle blobs: this storage holds none".to_string(),
        });
    };
    let versions = storage.list_versions(None).await?;
    let referenced = blob_sweep::referenced_blobs(storage, &versions).await?;
    let plan = blob_sweep::plan_sweep(&*store, &referenced, grace, Utc::now()).await?;
    let total = (plan.to_restore.len() + plan.to_trash.len() + plan.to_delete.len()) as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let on_blob = || {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if let Some(p) = progress {
            p(Progress {
                what: "blobs swept",
                done: n,
                total: Some(total),
            });
        }
    };
    blob_sweep::apply_sweep(&*store, &plan, &on_blob).await?;
    tracing::info!(
        trashed = plan.to_trash.len(),
        restored = plan.to_restore.len(),
        deleted = plan.to_delete.len(),
        "swept bundle blobs"
    );
    Ok(plan)
}

fn check_capable(storage: &dyn Storage) -> Result<()> {
    let caps = storage.capabilities();
    if caps.list_versions && caps.delete_versions {
        return Ok(());
    }
    let why = if !caps.write {
        "it is read-only, so flowstore never deletes from it (remove old flows where they live, e.g. with a commit)"
    } else if !caps.list_versions {
        "it cannot list its stored versions"
    } else {
        "it cannot delete stored versions"
    };
    Err(Error::Unsupported {
        backend: storage.type_name().to_string(),
        what: format!("pruning: {why}"),
    })
}
