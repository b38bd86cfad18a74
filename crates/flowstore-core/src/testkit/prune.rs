//! Retention checks of the conformance suite: they run on every storage that declares
//! [`Capabilities::delete_versions`](crate::Capabilities::delete_versions); the blob sweep checks
//! on those that also hold bundles as blobs.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::bundle::{self, BlobArea, FetchOptions};
use crate::error::Error;
use crate::flow::FlowInput;
use crate::prune::{self, blob_sweep, PruneOptions, Reason, RetentionPolicy};
use crate::storage::{Storage, StoredVersion};

use super::{app, not_applicable, reopen, sample_value, seal, tempfile_dir, Harness};

const NO_DELETE: &str = "the storage declares it cannot delete versions";
const NO_SWEEP: &str = "the storage holds no bundle blobs with a trash";

/// Registers serialized flow `name` once more in `storage`'s namespace; returns the storage
/// that holds it (its reference names that version).
async fn register(h: &dyn Harness, storage: &dyn Storage, name: &str) -> Box<dyn Storage> {
    let mut s = h.same_namespace(storage).await;
    let sealed = seal(name, &sample_value(name), &app()).expect("seal");
    s.add_flow(sealed.into()).await.expect("add_flow");
    s.persist().await.expect("persist");
    s
}

async fn versions_of(storage: &dyn Storage, name: &str) -> Vec<StoredVersion> {
    storage.list_versions(Some(name)).await.expect("list")
}

async fn fetches(h: &dyn Harness, storage: &dyn Storage, name: &str) -> bool {
    let agent = reopen(h, storage);
    match agent.get_flow(name).await {
        Ok(f) => {
            let v: serde_json::Value = f.decode(&app()).expect("decode");
            assert_eq!(v, sample_value(name));
            true
        }
        Err(e) if e.is_not_found() || matches!(e, Error::FlowNotFound { .. }) => false,
        Err(e) => panic!("fetching {name}: {e}"),
    }
}

/// `delete_version` deletes one listed version (and is quiet about one already gone), and
/// refuses every location that is not a flowstore version of the storage, deleting nothing.
pub async fn prune_delete_version(h: &dyn Harness) {
    let Some(first) = h.storage().await else {
        return not_applicable("prune_delete_version", super::NO_SERIALIZED);
    };
    let name = "prune me";
    let v1 = register(h, &*first, name).await;
    let v2 = register(h, &*first, name).await;
    let v3 = register(h, &*first, name).await;
    if !first.capabilities().delete_versions {
        if first.capabilities().list_versions {
            let listed = versions_of(&*first, name).await;
            let err = first.delete_version(&listed[0]).await.unwrap_err();
            assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        }
        return not_applicable("prune_delete_version", NO_DELETE);
    }
    let listed = versions_of(&*first, name).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    let newest = &listed[0];
    let (parent, stamp) = newest.location.rsplit_once('/').expect("a key with a /");
    let (root, slug) = parent.rsplit_once('/').unwrap_or(("", parent));
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            format!("{a}/{b}")
        }
    };
    let hex = "ab".repeat(32);
    let foreign = [
        join(root, &format!(".blobs/sha256/{hex}")),
        join(root, &format!("{slug}/not-a-version.txt")),
        join(root, &format!("{slug}/../../elsewhere/{stamp}")),
        join(root, &format!("{slug}/{stamp}/deeper")),
        format!("/elsewhere/{slug}/{stamp}"),
        join(root, stamp),
    ];
    for location in &foreign {
        let bad = StoredVersion {
            location: location.clone(),
            ..newest.clone()
        };
        let err = first
            .delete_version(&bad)
            .await
            .expect_err(&format!("deleting {location} must be refused"));
        assert!(
            matches!(err, Error::Config { .. } | Error::OutsideStorage { .. }),
            "{location}: {err:?}"
        );
    }
    assert_eq!(versions_of(&*first, name).await.len(), 3);
    // The oldest goes; the others still fetch; deleting it again is quiet.
    let oldest = listed.last().unwrap();
    first.delete_version(oldest).await.expect("delete");
    let after = versions_of(&*first, name).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().all(|v| v.location != oldest.location));
    first
        .delete_version(oldest)
        .await
        .expect("a version already gone is not an error");
    assert!(
        !fetches(h, &*v1, name).await,
        "the deleted version still fetches"
    );
    assert!(fetches(h, &*v2, name).await);
    assert!(fetches(h, &*v3, name).await);
}

/// A plan keeps the newest of each flow, the protected versions and the newest N, deletes the
/// rest of the chosen flow only, and `execute` carries it out.
pub async fn prune_policy(h: &dyn Harness) {
    let Some(first) = h.storage().await else {
        return not_applicable("prune_policy", super::NO_SERIALIZED);
    };
    if !first.capabilities().delete_versions {
        let options = PruneOptions::new(RetentionPolicy {
            keep_last: Some(1),
            older_than: None,
        });
        let err = prune::plan(&*first, &options).await.unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        return not_applicable("prune_policy", NO_DELETE);
    }
    let name = "prune policy";
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(register(h, &*first, name).await);
    }
    let other = if first.capabilities().many_flows {
        Some(register(h, &*first, "prune bystander").await)
    } else {
        None
    };
    let mut options = PruneOptions::new(RetentionPolicy {
        keep_last: Some(2),
        older_than: None,
    });
    options.flow = Some(name.to_string());
    options.protect(&*held[0]);
    let plan = prune::plan(&*first, &options).await.expect("plan");
    let reasons: Vec<Reason> = plan.versions.iter().map(|v| v.reason).collect();
    assert_eq!(
        reasons,
        [
            Reason::Newest,
            Reason::WithinKeepLast,
            Reason::Expired,
            Reason::Expired,
            Reason::Protected
        ],
        "{plan:#?}"
    );
    // Planning changed nothing.
    assert_eq!(versions_of(&*first, name).await.len(), 5);
    let report = prune::execute(&*first, &plan, &options, None)
        .await
        .expect("execute");
    assert_eq!(report.versions_deleted, 2);
    assert_eq!(report.version_bytes_freed, plan.version_bytes());
    assert_eq!(versions_of(&*first, name).await.len(), 3);
    let fetched: Vec<bool> =
        futures::future::join_all(held.iter().map(|s| fetches(h, &**s, name))).await;
    assert_eq!(fetched, [true, false, false, true, true]);
    if let Some(other) = other {
        assert!(fetches(h, &*other, "prune bystander").await);
    }
    // An older-than policy under which everything is recent deletes nothing.
    options.policy = RetentionPolicy {
        keep_last: None,
        older_than: Some(Duration::from_secs(3600)),
    };
    let plan = prune::plan(&*first, &options).await.expect("plan");
    assert_eq!(plan.deleting().count(), 0, "{plan:#?}");
}

/// A storage that holds bundles as blobs and can sweep them, with bundle `name` of `tree`.
async fn sweepable(h: &dyn Harness, name: &str, tree: &Path) -> Option<Box<dyn Storage>> {
    let mut storage = h.storage().await?;
    let caps = storage.capabilities();
    if !(caps.bundles && caps.delete_versions) {
        return None;
    }
    storage.blob_store()?.area(BlobArea::Trash)?;
    storage
        .add_flow(FlowInput::bundle(name, tree, super::bundle::ENTRY))
        .await
        .expect("add bundle");
    storage.persist().await.expect("persist bundle");
    Some(storage)
}

async fn register_bundle(
    h: &dyn Harness,
    storage: &dyn Storage,
    name: &str,
    tree: &Path,
) -> Box<dyn Storage> {
    let mut s = h.same_namespace(storage).await;
    s.add_flow(FlowInput::bundle(name, tree, super::bundle::ENTRY))
        .await
        .expect("add bundle");
    s.persist().await.expect("persist bundle");
    s
}

/// Fetches bundle `name` through `storage`'s reference into a fresh directory with an empty
/// cache, so every blob comes from the storage.
async fn fetch_cold(h: &dyn Harness, storage: &dyn Storage, name: &str) -> crate::Result<Vec<u8>> {
    let work = tempfile_dir();
    let agent = reopen(h, storage);
    let fetched = agent
        .get_bundle(
            name,
            &work.join("tree"),
            &FetchOptions::with_cache_dir(work.join("cache")),
        )
        .await?;
    let helpers = std::fs::read(fetched.root.join("pkg/helpers.py")).expect("read");
    let _ = std::fs::remove_dir_all(&work);
    Ok(helpers)
}

fn digests(blobs: &[crate::bundle::BlobInfo]) -> BTreeSet<String> {
    blobs.iter().map(|b| b.digest.clone()).collect()
}

/// After a prune, the blobs only deleted versions named go to the trash (young ones stay), the
/// remaining versions fetch from a cold cache, and a later sweep deletes the trashed blobs.
pub async fn prune_sweep(h: &dyn Harness) {
    let (tree, _) = super::bundle::project("sweep-a");
    let name = "swept flow";
    let Some(v1) = sweepable(h, name, &tree).await else {
        return not_applicable("prune_sweep", NO_SWEEP);
    };
    let only_v1: BTreeSet<String> = {
        let a = bundle::scan(&tree, super::bundle::ENTRY)
            .expect("scan")
            .manifest;
        let changed = "def extract():\n    return 'sweep-b'\n";
        std::fs::write(tree.join("pkg/helpers.py"), changed).unwrap();
        let b = bundle::scan(&tree, super::bundle::ENTRY)
            .expect("scan")
            .manifest;
        let kept: BTreeSet<&str> = b.blobs().into_iter().map(|(d, _)| d).collect();
        a.blobs()
            .into_iter()
            .map(|(d, _)| d)
            .filter(|d| !kept.contains(d))
            .map(str::to_string)
            .collect()
    };
    assert!(!only_v1.is_empty());
    let v2 = register_bundle(h, &*v1, name, &tree).await;
    let mut options = PruneOptions::new(RetentionPolicy {
        keep_last: Some(1),
        older_than: None,
    });
    options.grace = Duration::ZERO;
    let plan = prune::plan(&*v1, &options).await.expect("plan");
    assert_eq!(plan.deleting().count(), 1, "{plan:#?}");
    let planned = plan.blobs.as_ref().expect("a blob plan");
    assert_eq!(digests(&planned.to_trash), only_v1, "{planned:#?}");
    let report = prune::execute(&*v1, &plan, &options, None)
        .await
        .expect("execute");
    let swept = report.blobs.expect("a sweep");
    assert_eq!(digests(&swept.to_trash), only_v1);
    let store = v1.blob_store().unwrap();
    let trash = store.area(BlobArea::Trash).unwrap();
    assert_eq!(digests(&trash.list_blobs().await.unwrap()), only_v1);
    let live = digests(&store.list_blobs().await.unwrap());
    assert!(live.is_disjoint(&only_v1), "{live:?}");
    assert_eq!(
        fetch_cold(h, &*v2, name)
            .await
            .expect("the kept version fetches"),
        b"def extract():\n    return 'sweep-b'\n"
    );
    let gone = fetch_cold(h, &*v1, name).await.unwrap_err();
    assert!(
        gone.is_not_found() || matches!(gone, Error::FlowNotFound { .. }),
        "{gone:?}"
    );
    // The next sweep (grace zero) empties the trash; the kept version still fetches.
    let second = prune::sweep(&*v1, Duration::ZERO, None)
        .await
        .expect("sweep");
    assert_eq!(digests(&second.to_delete), only_v1);
    assert!(
        second.to_trash.is_empty() && second.to_restore.is_empty(),
        "{second:#?}"
    );
    assert!(trash.list_blobs().await.unwrap().is_empty());
    fetch_cold(h, &*v2, name)
        .await
        .expect("the kept version fetches");
    // Blobs no version names but younger than the grace period stay live.
    std::fs::write(
        tree.join("pkg/helpers.py"),
        "def extract():\n    return 'young'\n",
    )
    .unwrap();
    let v3 = register_bundle(h, &*v1, "young flow", &tree).await;
    let young = versions_of(&*v3, "young flow").await;
    v3.delete_version(&young[0]).await.expect("delete");
    let third = prune::sweep(&*v1, prune::DEFAULT_GRACE, None)
        .await
        .expect("sweep");
    assert!(third.young >= 1 && third.to_trash.is_empty(), "{third:#?}");
    let _ = std::fs::remove_dir_all(tree.parent().unwrap());
}

/// A blob swept while a registration was naming it (the race the trash exists for) still
/// fetches, from the trash, and the next sweep puts it back.
pub async fn prune_trash_fallback(h: &dyn Harness) {
    let (tree, _) = super::bundle::project("raced");
    let name = "raced flow";
    let Some(storage) = sweepable(h, name, &tree).await else {
        return not_applicable("prune_trash_fallback", NO_SWEEP);
    };
    let store = storage.blob_store().unwrap();
    // A sweep that did not see the manifest (it was stored after the sweep listed versions).
    let unseen = blob_sweep::plan_sweep(
        &*store,
        &BTreeSet::new(),
        Duration::ZERO,
        chrono::Utc::now(),
    )
    .await
    .expect("plan");
    let named: BTreeSet<String> = bundle::scan(&tree, super::bundle::ENTRY)
        .expect("scan")
        .manifest
        .blobs()
        .into_iter()
        .map(|(d, _)| d.to_string())
        .collect();
    assert_eq!(digests(&unseen.to_trash), named);
    blob_sweep::apply_sweep(&*store, &unseen, &|| {})
        .await
        .expect("apply");
    assert!(store.list_blobs().await.unwrap().is_empty());
    let expected = b"def extract():\n    return \"raced\"\n".to_vec();
    assert_eq!(
        fetch_cold(h, &*storage, name)
            .await
            .expect("fetch from the trash"),
        expected
    );
    // A sweep that sees the manifest moves its blobs back.
    let healed = prune::sweep(&*storage, Duration::ZERO, None)
        .await
        .expect("sweep");
    assert_eq!(digests(&healed.to_restore), named);
    assert_eq!(digests(&store.list_blobs().await.unwrap()), named);
    assert!(store
        .area(BlobArea::Trash)
        .unwrap()
        .list_blobs()
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        fetch_cold(h, &*storage, name).await.expect("fetch"),
        expected
    );
    let _ = std::fs::remove_dir_all(tree.parent().unwrap());
}

/// Sweeps racing registrations, many rounds: each round a registration that reuses every blob of
/// a version being deleted (the dangerous case: the blobs are old and about to be unnamed) runs
/// at the same moment as that deletion and a sweep with a one-second grace period. Every
/// completed registration fetches from a cold cache right after its round (from the trash if
/// the sweep took its blobs) and again after later sweeps have put everything back.
pub async fn prune_concurrent_registration(h: &dyn Harness) {
    const ROUNDS: usize = 6;
    let grace = Duration::from_secs(1);
    let (tree, _) = super::bundle::project("race-0");
    let Some(first) = sweepable(h, "race seed", &tree).await else {
        return not_applicable("prune_concurrent_registration", NO_SWEEP);
    };
    let mut completed: Vec<(Box<dyn Storage>, String, Vec<u8>)> = Vec::new();
    let (mut trashed, mut restored) = (0, 0);
    for round in 0..ROUNDS {
        let helpers = format!("def extract():\n    return {:?}\n", format!("race-{round}"));
        std::fs::write(tree.join("pkg/helpers.py"), &helpers).unwrap();
        let doomed = register_bundle(h, &*first, &format!("race doomed {round}"), &tree).await;
        // Old enough to sweep: every blob of this tree is older than the grace period.
        tokio::time::sleep(grace + Duration::from_millis(100)).await;
        let doomed_version = versions_of(&*doomed, &format!("race doomed {round}")).await;
        let racer_name = format!("race racer {round}");
        let racer = async {
            let mut s = h.same_namespace(&*first).await;
            s.add_flow(FlowInput::bundle(
                racer_name.as_str(),
                &tree,
                super::bundle::ENTRY,
            ))
            .await
            .expect("racing registration");
            s.persist().await.expect("racing persist");
            s
        };
        let sweeper = async {
            // Stagger the sweep across rounds so it lands before, during and after the racer.
            tokio::time::sleep(Duration::from_millis((round as u64 % 3) * 5)).await;
            first
                .delete_version(&doomed_version[0])
                .await
                .expect("delete");
            prune::sweep(&*first, grace, None).await.expect("sweep")
        };
        let (racer, swept) = tokio::join!(racer, sweeper);
        trashed += swept.to_trash.len();
        restored += swept.to_restore.len();
        assert_eq!(
            fetch_cold(h, &*racer, &racer_name)
                .await
                .unwrap_or_else(|e| panic!("round {round}: the racing registration: {e}")),
            helpers.as_bytes()
        );
        completed.push((racer, racer_name, helpers.into_bytes()));
    }
    // Later sweeps put back what a version names and empty the trash of the rest.
    tokio::time::sleep(grace + Duration::from_millis(100)).await;
    let healed = prune::sweep(&*first, grace, None).await.expect("sweep");
    restored += healed.to_restore.len();
    tokio::time::sleep(grace + Duration::from_millis(100)).await;
    prune::sweep(&*first, grace, None).await.expect("sweep");
    for (storage, name, helpers) in &completed {
        assert_eq!(
            &fetch_cold(h, &**storage, name)
                .await
                .expect("fetch after the sweeps"),
            helpers,
            "{name}"
        );
    }
    // Every blob a version names is live again.
    let store = first.blob_store().unwrap();
    let live = digests(&store.list_blobs().await.unwrap());
    let versions = first.list_versions(None).await.unwrap();
    let named = blob_sweep::referenced_blobs(&*first, &versions)
        .await
        .unwrap();
    assert!(
        named.is_subset(&live),
        "named but not live: {:?}",
        named.difference(&live)
    );
    eprintln!(
        "prune_concurrent_registration: {ROUNDS} rounds, {trashed} blobs trashed under a racing \
         registration, {restored} moved back"
    );
    let _ = std::fs::remove_dir_all(tree.parent().unwrap());
}
