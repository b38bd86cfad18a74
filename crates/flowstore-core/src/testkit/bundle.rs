//! Bundle checks of the conformance suite: they run on every storage that declares
//! [`Capabilities::bundles`](crate::Capabilities::bundles) (or whose harness serves bundles
//! through [`Harness::bundle_flows`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bundle::{self, BlobStore, FetchOptions, FetchedBundle};
use crate::error::{Error, Result};
use crate::flow::{FlowContent, FlowInput};
use crate::storage::Storage;

use super::{not_applicable, reopen, tempfile_dir, Harness};

const NO_BUNDLES: &str = "the storage does not hold bundles";

/// The sample project: path → (bytes, executable). Ignored files are written by [`write_tree`]
/// too, and must not come back.
fn sample_files(variant: &str) -> BTreeMap<String, (Vec<u8>, bool)> {
    let mut files = BTreeMap::new();
    let mut add = |p: &str, bytes: &[u8], exec: bool| {
        files.insert(p.to_string(), (bytes.to_vec(), exec));
    };
    add(
        "flows/etl.py",
        b"from pkg.helpers import extract\n\nwith Flow('bundled') as flow:\n    extract()\n",
        false,
    );
    add("pkg/__init__.py", b"", false);
    add(
        "pkg/helpers.py",
        format!("def extract():\n    return {variant:?}\n").as_bytes(),
        false,
    );
    add("sql/query.sql", b"select 1;\n", false);
    add("bin/run.sh", b"#!/bin/sh\nexec python flows/etl.py\n", true);
    add(
        "data/ünïcödé 名前.txt",
        "unicode names survive\n".as_bytes(),
        false,
    );
    add("same-a.txt", b"identical bytes\n", false);
    add("same-b.txt", b"identical bytes\n", false);
    add(".gitignore", b"*.pyc\nbuild/\n", false);
    add(".flowstoreignore", b"secrets.env\n", false);
    let big: Vec<u8> = (0..(300 * 1024u32)).map(|i| (i * 7 % 251) as u8).collect();
    add("data/big.bin", &big, false);
    files
}

/// Files written into the tree that the bundle must leave out.
const IGNORED: [&str; 4] = ["cache.pyc", "build/out.txt", "secrets.env", ".git/config"];

fn write_tree(dir: &Path, files: &BTreeMap<String, (Vec<u8>, bool)>) {
    for (path, (bytes, exec)) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = if *exec { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    for path in IGNORED {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"must not be bundled").unwrap();
    }
}

/// A fresh project tree of `variant`.
pub(super) fn project(variant: &str) -> (PathBuf, BTreeMap<String, (Vec<u8>, bool)>) {
    let dir = tempfile_dir().join("project");
    let files = sample_files(variant);
    write_tree(&dir, &files);
    (dir, files)
}

pub(super) const ENTRY: &str = "flows/etl.py";

/// How many blobs (packs and files of their own) the tree at `dir` is stored in.
fn stored_blobs(dir: &Path) -> u64 {
    bundle::scan(dir, ENTRY)
        .expect("scan")
        .manifest
        .blobs()
        .len() as u64
}

/// A storage holding bundle `name` of `tree`: the harness's own ([`Harness::bundle_flows`]), else
/// a fresh storage that declares bundles, with the bundle added and persisted.
async fn bundle_storage(h: &dyn Harness, name: &str, tree: &Path) -> Option<Box<dyn Storage>> {
    if let Some(s) = h.bundle_flows(name, tree, ENTRY).await {
        return Some(s);
    }
    let mut storage = h.storage().await?;
    if !storage.capabilities().bundles {
        return None;
    }
    storage
        .add_flow(FlowInput::bundle(name, tree, ENTRY))
        .await
        .expect("add bundle");
    storage.persist().await.expect("persist bundle");
    Some(storage)
}

/// Adds bundle `name` of `tree` to a storage opened again from `storage`'s reference (the same
/// namespace: a re-registration), or asks the harness to serve it.
async fn register_again(
    h: &dyn Harness,
    storage: &dyn Storage,
    name: &str,
    tree: &Path,
) -> Box<dyn Storage> {
    if let Some(s) = h.bundle_flows(name, tree, ENTRY).await {
        return s;
    }
    let mut again = reopen(h, storage);
    again
        .add_flow(FlowInput::bundle(name, tree, ENTRY))
        .await
        .expect("add bundle again");
    again.persist().await.expect("persist bundle again");
    again
}

fn options(cache: &Path) -> FetchOptions {
    FetchOptions::with_cache_dir(cache)
}

fn assert_tree(fetched: &FetchedBundle, files: &BTreeMap<String, (Vec<u8>, bool)>) {
    for (path, (bytes, exec)) in files {
        let p = fetched.root.join(path);
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(&got, bytes, "{path}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o111 != 0, *exec, "{path}: mode {mode:o}");
        }
    }
    for path in IGNORED {
        assert!(!fetched.root.join(path).exists(), "{path} was bundled");
    }
    assert_eq!(fetched.entry, fetched.root.join(ENTRY));
    assert_eq!(fetched.manifest.files().len(), files.len());
}

/// Bundle round trip: the tree comes back file for file (modes, unicode names, ignores honoured)
/// through the reference; `get_flow` yields the manifest; a second fetch into the same directory
/// replaces it from the cache alone; the manifest is deterministic.
pub async fn bundle_round_trip(h: &dyn Harness) {
    let (tree, files) = project("v1");
    let Some(storage) = bundle_storage(h, "bundled flow", &tree).await else {
        return not_applicable("bundle_round_trip", NO_BUNDLES);
    };
    assert!(
        storage.capabilities().bundles,
        "{:?}",
        storage.capabilities()
    );
    let blobs = stored_blobs(&tree);
    if let Some(report) = storage.transfer_report("bundled flow") {
        assert_eq!(
            report.objects,
            blobs + 1,
            "every pack and blob, and the manifest: {report:?}"
        );
    }
    let first = bundle::scan(&tree, ENTRY).expect("scan");
    let second = bundle::scan(&tree, ENTRY).expect("scan again");
    assert_eq!(
        first.manifest.bytes(),
        second.manifest.bytes(),
        "deterministic manifest"
    );

    let agent = reopen(h, &*storage);
    let flow = agent.get_flow("bundled flow").await.expect("get_flow");
    assert_eq!(flow.form(), "bundle");
    let FlowContent::Bundle(manifest) = &flow.content else {
        panic!("expected a bundle, got {:?}", flow.content)
    };
    assert_eq!(manifest.entry(), ENTRY);
    assert!(flow.decode::<serde_json::Value>(&super::app()).is_err());

    let work = tempfile_dir();
    let (cache, dest) = (work.join("cache"), work.join("checkout"));
    let fetched = agent
        .get_bundle("bundled flow", &dest, &options(&cache))
        .await
        .expect("get_bundle");
    assert_tree(&fetched, &files);
    if agent.blob_store().is_some() {
        // Each pack or blob at most once (a pack holding only copies of bytes another pack
        // brings is not needed).
        let t = fetched.transfer;
        assert!(
            t.objects >= 1 && t.objects <= blobs,
            "{t:?} for {blobs} blobs"
        );
        assert_eq!(t.reused_objects, 0, "{t:?}");
    }
    // Again into the same directory: replaced whole, nothing downloaded.
    let again = agent
        .get_bundle("bundled flow", &dest, &options(&cache))
        .await
        .expect("get_bundle again");
    assert_tree(&again, &files);
    assert_eq!(again.transfer.objects, 0, "{:?}", again.transfer);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(tree.parent().unwrap());
}

/// Re-registering after a one-file change uploads one blob and one manifest; fetching the new
/// version after the old downloads only the changed file.
pub async fn bundle_one_change(h: &dyn Harness) {
    let (tree, files) = project("v1");
    let Some(storage) = bundle_storage(h, "changing flow", &tree).await else {
        return not_applicable("bundle_one_change", NO_BUNDLES);
    };
    let changed = format!("def extract():\n    return {:?}\n", "v2");
    std::fs::write(tree.join("pkg/helpers.py"), &changed).unwrap();
    let mut files_v2 = files.clone();
    files_v2.insert(
        "pkg/helpers.py".into(),
        (changed.clone().into_bytes(), false),
    );
    let v2 = register_again(h, &*storage, "changing flow v2", &tree).await;
    if let Some(report) = v2.transfer_report("changing flow v2") {
        assert_eq!(
            report.objects, 2,
            "the changed file's pack and the manifest: {report:?}"
        );
        assert_eq!(report.reused_objects, stored_blobs(&tree) - 1, "{report:?}");
    }
    let work = tempfile_dir();
    let cache = work.join("cache");
    let agent_v1 = reopen(h, &*storage);
    let one = agent_v1
        .get_bundle("changing flow", &work.join("v1"), &options(&cache))
        .await
        .expect("fetch v1");
    assert_tree(&one, &files);
    let agent_v2 = reopen(h, &*v2);
    let two = agent_v2
        .get_bundle("changing flow v2", &work.join("v2"), &options(&cache))
        .await
        .expect("fetch v2");
    assert_tree(&two, &files_v2);
    if agent_v2.blob_store().is_some() {
        // One request: the changed file's range of its pack, or the whole pack when the file is
        // at least half of it.
        let t = two.transfer;
        assert_eq!(t.objects, 1, "{t:?}");
        let file = two
            .manifest
            .files()
            .iter()
            .find(|f| f.path == "pkg/helpers.py")
            .unwrap();
        let pack_size = two
            .manifest
            .blobs()
            .into_iter()
            .find(|(b, _)| *b == file.source().0)
            .unwrap()
            .1;
        let changed_len = changed.len() as u64;
        assert!(
            t.bytes == changed_len || (t.bytes == pack_size && 2 * changed_len >= pack_size),
            "{t:?}: the changed file is {changed_len} B, its pack {pack_size} B"
        );
    }
    // The first version is untouched by the second.
    assert_tree(&one, &files);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(tree.parent().unwrap());
}

/// An altered blob refuses the whole bundle, naming the file, and materializes nothing; an
/// altered manifest is refused against the reference's digest; a non-empty directory that no
/// fetch made is never written into.
pub async fn bundle_tamper_refused(h: &dyn Harness) {
    let (tree, _files) = project("tamper");
    let Some(storage) = bundle_storage(h, "tampered flow", &tree).await else {
        return not_applicable("bundle_tamper_refused", NO_BUNDLES);
    };
    let agent = reopen(h, &*storage);
    let work = tempfile_dir();

    // A directory with the user's own files is refused, untouched.
    let occupied = work.join("occupied");
    std::fs::create_dir_all(&occupied).unwrap();
    std::fs::write(occupied.join("notes.txt"), b"mine").unwrap();
    let err = agent
        .get_bundle("tampered flow", &occupied, &options(&work.join("cache0")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(std::fs::read(occupied.join("notes.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&occupied).unwrap().count(), 1);

    let Some(store) = agent.blob_store() else {
        let _ = std::fs::remove_dir_all(&work);
        return not_applicable(
            "bundle_tamper_refused",
            "the storage keeps bundles in its own content-addressed store (verified by it)",
        );
    };
    // Alter exactly the bytes of pkg/helpers.py inside the blob (its pack) that holds them.
    let flow = agent.get_flow("tampered flow").await.expect("get_flow");
    let FlowContent::Bundle(manifest) = &flow.content else {
        panic!("not a bundle")
    };
    let file = manifest
        .files()
        .iter()
        .find(|f| f.path == "pkg/helpers.py")
        .unwrap();
    let (blob, offset) = file.source();
    let original = work.join("original");
    store
        .get_blob(blob, &original)
        .await
        .expect("read the blob");
    let mut altered = std::fs::read(&original).unwrap();
    for b in &mut altered[offset as usize..(offset + file.size) as usize] {
        *b = b'#';
    }
    if !store
        .replace_blob_for_tests(blob, &altered)
        .await
        .expect("replace blob")
    {
        let _ = std::fs::remove_dir_all(&work);
        return not_applicable("bundle_tamper_refused", "the harness cannot alter a blob");
    }
    let dest = work.join("checkout");
    let _ = std::fs::remove_file(&original);
    let err = agent
        .get_bundle("tampered flow", &dest, &options(&work.join("cache")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("pkg/helpers.py"), "{err}");
    assert!(err.to_string().contains("\"tampered flow\""), "{err}");
    assert!(!dest.exists(), "a refused bundle was materialized");
    assert_no_leftovers(&work);

    // An altered manifest: refused by the digest the reference recorded.
    let reference = storage.reference().expect("reference");
    let forged = bundle::scan(&tree, "sql/query.sql").expect("scan");
    if h.tamper(&reference, "tampered flow", forged.manifest.bytes().clone())
        .await
    {
        let err = agent
            .get_bundle("tampered flow", &dest, &options(&work.join("cache")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
        assert!(!dest.exists());
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(tree.parent().unwrap());
}

/// Nothing but the fetch's own temporaries' absence: no `.…flowstore-tmp-…` left in `dir`.
fn assert_no_leftovers(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        assert!(!name.contains(".flowstore-tmp-"), "left behind: {name}");
    }
}

/// Concurrent registrations of overlapping trees and concurrent fetches into one cache all
/// succeed and agree.
pub async fn bundle_concurrency(h: &dyn Harness) {
    let (tree, files) = project("shared");
    let Some(storage) = bundle_storage(h, "concurrent flow", &tree).await else {
        return not_applicable("bundle_concurrency", NO_BUNDLES);
    };
    let work = tempfile_dir();
    let cache = work.join("cache");
    let agent = reopen(h, &*storage);
    let fetches = (0..6).map(|i| {
        let (agent, dest, opts) = (&agent, work.join(format!("dest{i}")), options(&cache));
        async move { agent.get_bundle("concurrent flow", &dest, &opts).await }
    });
    for fetched in futures::future::join_all(fetches).await {
        assert_tree(&fetched.expect("concurrent fetch"), &files);
    }
    if h.bundle_flows("probe", &tree, ENTRY).await.is_none() && storage.capabilities().many_flows {
        // Overlapping trees registered at once into the same storage.
        let mut trees = Vec::new();
        for i in 0..4 {
            let (t, mut f) = project("shared");
            let extra = format!("extra {i}\n");
            std::fs::write(t.join("extra.txt"), &extra).unwrap();
            f.insert("extra.txt".into(), (extra.into_bytes(), false));
            trees.push((t, f));
        }
        let registrations = trees.iter().enumerate().map(|(i, (t, _))| {
            let mut s = reopen(h, &*storage);
            async move {
                s.add_flow(FlowInput::bundle(format!("overlap {i}"), t, ENTRY))
                    .await?;
                s.persist().await?;
                Ok::<_, Error>(s)
            }
        });
        let stored: Vec<Result<Box<dyn Storage>>> = futures::future::join_all(registrations).await;
        for (i, (s, (_, f))) in stored.into_iter().zip(&trees).enumerate() {
            let s = s.expect("concurrent registration");
            let fetched = reopen(h, &*s)
                .get_bundle(
                    &format!("overlap {i}"),
                    &work.join(format!("overlap{i}")),
                    &options(&work.join(format!("cache-{i}"))),
                )
                .await
                .expect("fetch a concurrent registration");
            assert_tree(&fetched, f);
        }
        for (t, _) in trees {
            let _ = std::fs::remove_dir_all(t.parent().unwrap());
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(tree.parent().unwrap());
}

/// A blob store that serves `allowed` blobs, then fails (or never answers) — a fetch that breaks
/// or is abandoned part-way.
struct Interrupted<'a> {
    inner: &'a dyn BlobStore,
    allowed: std::sync::atomic::AtomicUsize,
    hang: bool,
}

#[async_trait::async_trait]
impl BlobStore for Interrupted<'_> {
    fn blob_location(&self, digest: &str) -> String {
        self.inner.blob_location(digest)
    }
    async fn has_blob(&self, digest: &str) -> Result<bool> {
        self.inner.has_blob(digest).await
    }
    async fn put_blob(&self, digest: &str, source: &Path, size: u64) -> Result<()> {
        self.inner.put_blob(digest, source, size).await
    }
    async fn get_blob(&self, digest: &str, dest: &Path) -> Result<u64> {
        self.take_turn().await?;
        self.inner.get_blob(digest, dest).await
    }
    async fn get_blob_range(&self, digest: &str, offset: u64, len: u64) -> Result<bytes::Bytes> {
        self.take_turn().await?;
        self.inner.get_blob_range(digest, offset, len).await
    }
}

impl Interrupted<'_> {
    /// Lets a request through while any are allowed; then fails it, or never answers.
    async fn take_turn(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let left = self.allowed.fetch_sub(1, Ordering::SeqCst);
        if left == 0 || left > usize::MAX / 2 {
            if self.hang {
                std::future::pending::<()>().await;
            }
            return Err(Error::temporary("test", "connection reset mid-fetch"));
        }
        Ok(())
    }
}

/// A fetch that fails or is abandoned part-way leaves no tree, no temporaries beside the
/// destination, and only whole, verified blobs in the cache; the next fetch completes.
pub async fn bundle_interrupted_fetch(h: &dyn Harness) {
    let (tree, files) = project("interrupted");
    let Some(storage) = bundle_storage(h, "interrupted flow", &tree).await else {
        return not_applicable("bundle_interrupted_fetch", NO_BUNDLES);
    };
    let agent = reopen(h, &*storage);
    let Some(store) = agent.blob_store() else {
        let _ = std::fs::remove_dir_all(tree.parent().unwrap());
        return not_applicable(
            "bundle_interrupted_fetch",
            "the storage fetches bundles its own way (no blob store to interrupt)",
        );
    };
    let flow = agent.get_flow("interrupted flow").await.expect("get_flow");
    let FlowContent::Bundle(manifest) = &flow.content else {
        panic!("not a bundle")
    };
    let work = tempfile_dir();
    let dest = work.join("checkout");
    // Serve all but the last of the requests a cold fetch makes, then break (a cold cache each
    // round, so each round makes them all).
    let requests = manifest.blobs().len();
    let cache = work.join("cache");
    for hang in [false, true] {
        let _ = std::fs::remove_dir_all(&cache);
        let broken = Interrupted {
            inner: &*store,
            allowed: requests.saturating_sub(1).min(3).into(),
            hang,
        };
        let opts = FetchOptions {
            parallelism: Some(1),
            ..options(&cache)
        };
        let attempt = bundle::fetch(&broken, "interrupted flow", manifest, &dest, &opts);
        let limit = std::time::Duration::from_secs(if hang { 1 } else { 120 });
        match tokio::time::timeout(limit, attempt).await {
            Ok(result) => assert!(result.is_err() && !hang, "{result:?}"),
            Err(_elapsed) => assert!(hang, "the fetch did not finish"),
        }
        assert!(!dest.exists(), "an interrupted fetch left a tree");
        assert_no_leftovers(&work);
        let cached = std::fs::read_dir(cache.join("sha256"))
            .into_iter()
            .flatten();
        for entry in cached.flatten() {
            let (digest, _) = bundle::digest_file(&entry.path()).unwrap();
            assert_eq!(
                digest.strip_prefix("sha256:").unwrap(),
                entry.file_name().to_string_lossy().trim_end_matches(".x"),
                "a partial blob in the cache"
            );
        }
    }
    let fetched = agent
        .get_bundle("interrupted flow", &dest, &options(&cache))
        .await
        .expect("fetch after interruptions");
    assert_tree(&fetched, &files);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(tree.parent().unwrap());
}
