//! The conformance suite every backend runs (feature `testkit`).
//!
//! A backend implements [`Harness`] (how to make a fresh storage, how to alter stored bytes behind
//! flowstore's back) and expands [`conformance_suite!`](crate::conformance_suite) in a test file:
//!
//! ```text
//! async fn harness() -> Result<MyHarness, flowstore_core::testkit::Skip> { ... }
//! flowstore_core::conformance_suite!(harness);
//! ```
//!
//! Each check becomes its own `#[tokio::test]` in a `conformance` module, so a failure names the
//! check. Checks choose themselves by what the storage declares ([`Storage::capabilities`]) and
//! what the harness offers: writable serialized storages run the round trip, conflict, tamper,
//! overwrite, many-flows, large-flow, unicode, `get_flow_to_file` and `list_versions` checks;
//! read-only script storages (Git, the provider APIs) run round trip, unknown flow, reference
//! round trip, altered-pinned-script and unicode checks through [`Harness::script_flows`]. A
//! check that does not apply says so visibly (`flowstore-not-applicable: …`). A harness that cannot run (its server is not started) returns [`Skip`]: the test prints
//! `flowstore-skip: <test>: <reason>` straight to stderr (visible even under libtest's capture) —
//! or fails, when `FLOWSTORE_REQUIRE_SERVERS=1` (set by `cargo xtask test`, which starts them).

pub mod bench;
mod bundle;
pub mod counting;
pub mod proxy;
mod prune;
pub mod recording;

pub use bundle::{
    bundle_concurrency, bundle_interrupted_fetch, bundle_one_change, bundle_round_trip,
    bundle_tamper_refused,
};
pub use prune::{
    prune_concurrent_registration, prune_delete_version, prune_policy, prune_sweep,
    prune_trash_fallback,
};

use std::io::Write as _;

use async_trait::async_trait;
use bytes::Bytes;

use crate::envelope::{seal, seal_bytes, AppInfo};
use crate::error::Error;
use crate::flow::{FlowContent, FlowInput};
use crate::reference::StorageReference;
use crate::registry::Registry;
use crate::storage::Storage;

/// Why a test could not run (e.g. `S3 server not started: set FLOWSTORE_TEST_S3_ENDPOINT`).
#[derive(Debug, Clone)]
pub struct Skip(pub String);

impl<S: Into<String>> From<S> for Skip {
    fn from(s: S) -> Self {
        Skip(s.into())
    }
}

/// Environment variable that turns skips into failures (set by `cargo xtask test`).
pub const REQUIRE_SERVERS_ENV: &str = "FLOWSTORE_REQUIRE_SERVERS";

/// Reports a skipped test visibly, or panics when servers are required.
pub fn skip(test: &str, reason: &Skip) {
    if std::env::var(REQUIRE_SERVERS_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: required server is not available: {}", reason.0);
    }
    note(&format!("flowstore-skip: {test}: {}", reason.0));
}

/// Reports a check that does not apply to this backend (never a failure, always visible).
pub fn not_applicable(test: &str, reason: &str) {
    note(&format!("flowstore-not-applicable: {test}: {reason}"));
}

/// Writes a marker line to the real stderr (not through `eprintln!`, so libtest's capture does
/// not hide it) in one write, on a line of its own: libtest may be half-way through a
/// `test name ... ok` line of another test, and `cargo xtask test` reads both streams together.
fn note(line: &str) {
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("\n{line}\n").as_bytes());
}

/// The result of a harness constructor: the harness, or why the tests must skip.
pub type HarnessResult<H> = Result<H, Skip>;

/// What a backend provides to run the conformance suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A fresh, empty storage in serialized mode, in its own namespace (a new directory, bucket
    /// prefix…). `None` for backends that cannot store serialized flows (read-only backends).
    async fn storage(&self) -> Option<Box<dyn Storage>>;

    /// A fresh storage in script mode whose script (one file) holds `source`, registered under
    /// `flow_name`. `None` for backends without script mode.
    async fn script_storage(&self, flow_name: &str, source: &[u8]) -> Option<Box<dyn Storage>>;

    /// A registry that opens this backend's references.
    fn registry(&self) -> Registry;

    /// Replaces the bytes stored for `flow` (as located by `reference`) behind flowstore's back.
    /// Returns false if the backend cannot be altered from outside (the check is then skipped).
    async fn tamper(&self, reference: &StorageReference, flow: &str, bytes: Bytes) -> bool;

    /// A storage whose script flows `flows` (name, source) are already in place, each added with
    /// `add_flow` and persisted, with their digests recorded (Git: `pin`), as a read-only backend
    /// serves them: files committed to a fresh repository, files in the fake provider API.
    /// `None` (the default) where the backend writes its own scripts (see
    /// [`Harness::script_storage`]).
    async fn script_flows(&self, flows: &[(&str, &[u8])]) -> Option<Box<dyn Storage>> {
        let _ = flows;
        None
    }

    /// Changes the source of script flow `flow` behind flowstore's back (a new commit on the
    /// branch, a changed file in the fake API). Returns false (the default) if it cannot.
    async fn alter_script(&self, reference: &StorageReference, flow: &str, source: &[u8]) -> bool {
        let _ = (reference, flow, source);
        false
    }

    /// A storage serving the directory `tree` as bundle flow `name` with entry file `entry`, as
    /// a read-only backend serves bundles (the tree committed to a repository). `None` (the
    /// default) where bundles are registered with `add_flow` on [`Harness::storage`].
    async fn bundle_flows(
        &self,
        name: &str,
        tree: &std::path::Path,
        entry: &str,
    ) -> Option<Box<dyn Storage>> {
        let _ = (name, tree, entry);
        None
    }

    /// A storage in the same namespace as `storage` with nothing registered in this session:
    /// what a new registering process opens. The default reopens `storage`'s reference and
    /// forgets its flows; a backend whose reopened storages cannot register (Docker: a
    /// reference describes a built image) gives a fresh storage writing to the same place.
    async fn same_namespace(&self, storage: &dyn Storage) -> Box<dyn Storage> {
        let json = storage.reference().expect("reference").to_json();
        let mut again = self.registry().open_json(&json).expect("open reference");
        let index = again.index_mut();
        index.flows.clear();
        index.digests.clear();
        again
    }

    /// Size of the "large flow" check (default 24 MiB).
    fn large_flow_size(&self) -> usize {
        24 * 1024 * 1024
    }
}

const NO_SERIALIZED: &str = "the backend does not store serialized flows (read-only)";

fn app() -> AppInfo {
    AppInfo::new("flowstore-testkit", "1.0.0")
}

/// The value the serialized checks store.
fn sample_value(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "tasks": ["extract", "transform", "load"], "retries": 3})
}

async fn build_one(storage: &mut Box<dyn Storage>, name: &str) -> String {
    let sealed = seal(name, &sample_value(name), &app()).expect("seal");
    let location = storage.add_flow(sealed.into()).await.expect("add_flow");
    storage.persist().await.expect("build");
    location
}

fn reopen(h: &dyn Harness, storage: &dyn Storage) -> Box<dyn Storage> {
    let json = storage.reference().expect("reference").to_json();
    h.registry().open_json(&json).expect("open reference")
}

/// Serialized round trip: add → build → get_flow decodes the same value; contains/flows agree.
pub async fn round_trip_serialized(h: &dyn Harness) {
    let Some(mut storage) = h.storage().await else {
        return not_applicable("round_trip_serialized", NO_SERIALIZED);
    };
    let location = build_one(&mut storage, "My ETL Flow").await;
    assert!(storage.contains("My ETL Flow"));
    assert!(!storage.contains("my-etl-flow"));
    assert_eq!(storage.flows().get("My ETL Flow"), Some(&location));
    let fetched = storage.get_flow("My ETL Flow").await.expect("get_flow");
    assert_eq!(fetched.name, "My ETL Flow");
    let value: serde_json::Value = fetched.decode(&app()).expect("decode");
    assert_eq!(value, sample_value("My ETL Flow"));
}

/// Script round trip: the script's source comes back byte for byte.
pub async fn round_trip_script(h: &dyn Harness) {
    // A script names the flow it defines (backends that check the file defines it rely on that).
    let source =
        b"with Flow(\"Script Flow\") as flow:\n    print('hello from a script flow')\n".to_vec();
    let Some(mut storage) = h.script_storage("Script Flow", &source).await else {
        return not_applicable("round_trip_script", "the backend has no script mode");
    };
    storage
        .add_flow(FlowInput::script("Script Flow"))
        .await
        .expect("add script flow");
    storage.persist().await.expect("build");
    let fetched = reopen(h, &*storage)
        .get_flow("Script Flow")
        .await
        .expect("get_flow");
    match &fetched.content {
        FlowContent::Script { source: got, .. } => assert_eq!(got.as_ref(), &source[..]),
        other => panic!("expected a script flow, got {other:?}"),
    }
}

/// A second flow with the same name is refused with the reference system's message.
pub async fn name_conflict(h: &dyn Harness) {
    let Some(mut storage) = h.storage().await else {
        return not_applicable("name_conflict", NO_SERIALIZED);
    };
    if !storage.capabilities().many_flows {
        return not_applicable(
            "name_conflict",
            "the storage holds one flow; a second add_flow replaces it",
        );
    }
    let first = seal_bytes("dup", b"one", &app());
    storage.add_flow(first.into()).await.expect("first add");
    let second = seal_bytes("dup", b"two", &app());
    let err = storage.add_flow(second.into()).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Name conflict: Flow with the name \"dup\" is already present in this storage."
    );
}

/// An unknown name is a clear error naming the flow, before and after a reference round trip.
pub async fn unknown_flow(h: &dyn Harness) {
    let Some(mut storage) = h.storage().await else {
        return not_applicable("unknown_flow", NO_SERIALIZED);
    };
    build_one(&mut storage, "known").await;
    for s in [reopen(h, &*storage), storage] {
        let err = s.get_flow("missing flow").await.unwrap_err();
        assert!(matches!(err, Error::FlowNotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("Flow \"missing flow\" is not contained in this storage"),
            "{msg}"
        );
        assert!(msg.contains("\"known\""), "{msg}");
        assert!(!s.contains("missing flow"));
    }
}

/// build → reference → JSON → registry → get_flow, with the digest and secrets carried along.
pub async fn reference_round_trip(h: &dyn Harness) {
    let Some(mut storage) = h.storage().await else {
        return not_applicable("reference_round_trip", NO_SERIALIZED);
    };
    build_one(&mut storage, "ref flow").await;
    let reference = storage.reference().expect("reference");
    assert_eq!(reference.type_name, storage.type_name());
    assert!(
        reference.flow_digests.contains_key("ref flow"),
        "no digest in {reference:?}"
    );
    let json = reference.to_json_pretty();
    let parsed = StorageReference::from_json(&json).expect("parse");
    assert_eq!(parsed, reference);
    let agent = h.registry().open(&parsed).expect("open");
    assert_eq!(agent.flows(), storage.flows());
    let value: serde_json::Value = agent
        .get_flow("ref flow")
        .await
        .expect("agent get_flow")
        .decode(&app())
        .expect("decode");
    assert_eq!(value, sample_value("ref flow"));
}

/// Stored bytes altered by one byte, truncated, or swapped for another flow are refused.
pub async fn digest_refusal(h: &dyn Harness) {
    let Some(mut storage) = h.storage().await else {
        return not_applicable("digest_refusal", NO_SERIALIZED);
    };
    build_one(&mut storage, "victim").await;
    let other = seal("intruder", &sample_value("intruder"), &app()).unwrap();
    let reference = storage.reference().unwrap();
    // Sealing is deterministic: these are the bytes the storage holds.
    let original_bytes = seal("victim", &sample_value("victim"), &app())
        .unwrap()
        .to_bytes()
        .expect("in memory")
        .to_vec();
    let mut flipped = original_bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x20;
    let truncated = original_bytes[..original_bytes.len() / 2].to_vec();
    for (what, bytes) in [
        ("one byte altered", flipped),
        ("truncated", truncated),
        (
            "swapped for another flow",
            other.to_bytes().expect("in memory").to_vec(),
        ),
    ] {
        if !h.tamper(&reference, "victim", Bytes::from(bytes)).await {
            return not_applicable(
                "digest_refusal",
                "stored flows are content-addressed and cannot be altered in place",
            );
        }
        let agent = h.registry().open(&reference).unwrap();
        let err = agent.get_flow("victim").await.unwrap_err();
        assert!(matches!(err, Error::FlowCorrupt { .. }), "{what}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("\"victim\""), "{what}: {msg}");
        assert!(msg.contains(&reference.flows["victim"]), "{what}: {msg}");
    }
}

/// Two storages registering the same flow name never overwrite each other.
pub async fn no_overwrite(h: &dyn Harness) {
    let (Some(mut a), Some(mut b)) = (h.storage().await, h.storage().await) else {
        return not_applicable("no_overwrite", NO_SERIALIZED);
    };
    // Point both at the same namespace by reopening `a`'s configuration without its flows, where
    // the backend can register through a reopened reference (otherwise `b` is a fresh storage
    // configured like `a`).
    let mut reference = a.reference().unwrap();
    reference.flows.clear();
    reference.flow_digests.clear();
    let one = seal("same name", &"first", &app()).unwrap();
    let two = seal("same name", &"second", &app()).unwrap();
    let loc_a = a.add_flow(one.into()).await.unwrap();
    let reopened = match h.registry().open(&reference) {
        Ok(mut fresh) => match fresh.add_flow(two.clone().into()).await {
            Ok(loc) => Some((fresh, loc)),
            Err(_) => None,
        },
        Err(_) => None,
    };
    let loc_b = match reopened {
        Some((fresh, loc)) => {
            b = fresh;
            loc
        }
        None => b.add_flow(two.into()).await.unwrap(),
    };
    a.persist().await.unwrap();
    b.persist().await.unwrap();
    // Distinct locations, or (Docker: the same path inside two images) distinct references.
    let (ref_a, ref_b) = (
        a.reference().unwrap().to_json(),
        b.reference().unwrap().to_json(),
    );
    assert_ne!(
        (&loc_a, &ref_a),
        (&loc_b, &ref_b),
        "two registrations were stored at the same place"
    );
    let va: String = a
        .get_flow("same name")
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    let vb: String = b
        .get_flow("same name")
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    assert_eq!((va.as_str(), vb.as_str()), ("first", "second"));
}

/// Fifty flows in one storage, all fetchable and each its own.
pub async fn many_flows(h: &dyn Harness) {
    let Some(mut storage) = h.storage().await else {
        return not_applicable("many_flows", NO_SERIALIZED);
    };
    if !storage.capabilities().many_flows {
        return not_applicable("many_flows", "the storage holds one flow");
    }
    let names: Vec<String> = (0..50).map(|i| format!("flow number {i}")).collect();
    for name in &names {
        let sealed = seal(name, &sample_value(name), &app()).unwrap();
        storage.add_flow(sealed.into()).await.unwrap();
    }
    storage.persist().await.unwrap();
    assert_eq!(storage.flows().len(), names.len());
    let agent = reopen(h, &*storage);
    for name in &names {
        let v: serde_json::Value = agent.get_flow(name).await.unwrap().decode(&app()).unwrap();
        assert_eq!(v, sample_value(name));
    }
}

/// A flow of tens of MiB round-trips intact.
pub async fn large_flow(h: &dyn Harness) {
    let Some(mut storage) = h.storage().await else {
        return not_applicable("large_flow", NO_SERIALIZED);
    };
    let size = h.large_flow_size();
    let payload: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sealed = seal_bytes("big flow", &payload, &app());
    storage.add_flow(sealed.into()).await.unwrap();
    storage.persist().await.unwrap();
    let fetched = reopen(h, &*storage).get_flow("big flow").await.unwrap();
    assert_eq!(fetched.bytes().len(), size);
    assert!(
        fetched.bytes().as_ref() == payload.as_slice(),
        "large flow came back different"
    );
}

/// A flow sealed from a file too large to hold in memory ([`crate::envelope::seal_file`] keeps
/// it in its file) stores and fetches byte-exact, with the digest sealed before it was stored;
/// one whose file changes between sealing and storing is refused and nothing of it is stored.
pub async fn sealed_from_file(h: &dyn Harness) {
    let Some(mut storage) = h.storage().await else {
        return not_applicable("sealed_from_file", NO_SERIALIZED);
    };
    let dir = tempfile_dir();
    let size = h.large_flow_size().max(2 * 1024 * 1024 + 3);
    let payload: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let path = dir.join("flow.bin");
    std::fs::write(&path, &payload).expect("write the flow file");
    let sealed = crate::envelope::sealed::seal_file_with_limit("from file", &path, &app(), 0)
        .expect("seal_file");
    assert!(sealed.as_bytes().is_none(), "the flow stays in its file");
    let digest = sealed.digest();
    storage.add_flow(sealed.into()).await.expect("add_flow");
    storage.persist().await.expect("persist");
    assert_eq!(
        storage.reference().unwrap().flow_digests.get("from file"),
        Some(&digest),
        "the reference records the digest sealed before the upload"
    );
    let agent = reopen(h, &*storage);
    let fetched = agent.get_flow("from file").await.expect("get_flow");
    assert!(
        fetched.bytes().as_ref() == payload.as_slice(),
        "the flow came back different"
    );
    let dest = dir.join("fetched.bin");
    agent
        .get_flow_to_file("from file", &dest)
        .await
        .expect("get_flow_to_file");
    assert!(
        std::fs::read(&dest).expect("read dest") == payload,
        "the file came back different"
    );

    // Changed between sealing and storing: refused, and nothing stored.
    let Some(mut second) = h.storage().await else {
        unreachable!("the harness made a storage above");
    };
    let changed_path = dir.join("changing.bin");
    std::fs::write(&changed_path, &payload).expect("write the flow file");
    let sealed =
        crate::envelope::sealed::seal_file_with_limit("changing", &changed_path, &app(), 0)
            .expect("seal_file");
    let mut altered = payload.clone();
    altered[size / 2] ^= 0x40;
    std::fs::write(&changed_path, &altered).expect("alter the flow file");
    let stored = match second.add_flow(sealed.into()).await {
        Ok(_) => second.persist().await,
        Err(e) => Err(e),
    };
    let err = stored.expect_err("a flow whose file changed after sealing was stored");
    let chain = error_chain(&err);
    assert!(chain.contains("after it was sealed"), "{chain}");
    if second.capabilities().list_versions {
        let listed = second
            .list_versions(Some("changing"))
            .await
            .unwrap_or_default();
        assert!(
            listed.is_empty(),
            "a refused flow left versions behind: {listed:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An error and its sources, as one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Unicode, symbol-only and path-like names store under safe keys and fetch by their exact name
/// (each in its own storage for one-flow backends).
pub async fn unicode_names(h: &dyn Harness) {
    let names = UNICODE_NAMES;
    let Some(probe) = h.storage().await else {
        return not_applicable("unicode_names", NO_SERIALIZED);
    };
    let groups: Vec<Vec<&str>> = if probe.capabilities().many_flows {
        vec![names.to_vec()]
    } else {
        names.iter().map(|n| vec![*n]).collect()
    };
    for group in groups {
        let Some(mut storage) = h.storage().await else {
            return not_applicable("unicode_names", NO_SERIALIZED);
        };
        for name in &group {
            let sealed = seal(name, &sample_value(name), &app()).unwrap();
            let location = storage.add_flow(sealed.into()).await.unwrap();
            assert!(!location.contains(".."), "{name} stored at {location}");
        }
        storage.persist().await.unwrap();
        let agent = reopen(h, &*storage);
        for name in &group {
            let v: serde_json::Value = agent.get_flow(name).await.unwrap().decode(&app()).unwrap();
            assert_eq!(v["name"], *name);
        }
    }
}

/// The capabilities a storage declares hold up: a storage from [`Harness::storage`] writes
/// serialized flows, one from [`Harness::script_storage`] or [`Harness::script_flows`] holds
/// scripts, a reopened reference declares the same, and a read-only storage refuses to store a
/// serialized flow with an error instead of pretending.
pub async fn capabilities_declared(h: &dyn Harness) {
    let mut checked = 0;
    if let Some(mut storage) = h.storage().await {
        let caps = storage.capabilities();
        assert!(caps.write && caps.serialized, "{caps:?}");
        assert!(
            !caps.delete_versions || caps.list_versions,
            "prune needs a listing to delete from: {caps:?}"
        );
        build_one(&mut storage, "caps flow").await;
        assert_eq!(
            reopen(h, &*storage).capabilities(),
            caps,
            "reopened reference"
        );
        checked += 1;
    }
    let source = b"print('caps')\n";
    if let Some(storage) = h.script_flows(&[("caps script", source)]).await {
        let caps = storage.capabilities();
        assert!(caps.script, "{caps:?}");
        assert_eq!(
            reopen(h, &*storage).capabilities(),
            caps,
            "reopened reference"
        );
        if !caps.write {
            assert!(
                !caps.delete_versions,
                "a read-only storage declares deletes: {caps:?}"
            );
            let mut reopened = reopen(h, &*storage);
            let sealed = seal_bytes("serialized into read-only", b"x", &app());
            let refused = match reopened.add_flow(sealed.into()).await {
                Err(_) => true,
                Ok(_) => reopened.persist().await.is_err(),
            };
            assert!(refused, "a read-only storage accepted a serialized flow");
        }
        checked += 1;
    } else if let Some(storage) = h.script_storage("caps script", source).await {
        assert!(
            storage.capabilities().script,
            "{:?}",
            storage.capabilities()
        );
        checked += 1;
    }
    if checked == 0 {
        not_applicable("capabilities_declared", "the harness offers no storage");
    }
}

/// `get_flow_to_file` writes exactly the flow's bytes (the payload of a serialized flow) and
/// refuses an altered flow without leaving a file behind.
pub async fn get_flow_to_file(h: &dyn Harness) {
    let Some(mut storage) = h.storage().await else {
        return not_applicable("get_flow_to_file", NO_SERIALIZED);
    };
    let payload = b"payload written to a file".repeat(1000);
    let sealed = seal_bytes("to file", &payload, &app());
    let original = sealed.to_bytes().expect("in memory");
    storage.add_flow(sealed.into()).await.expect("add_flow");
    storage.persist().await.expect("persist");
    let dir = tempfile_dir();
    let dest = dir.join("flow.out");
    let agent = reopen(h, &*storage);
    let fetched = agent
        .get_flow_to_file("to file", &dest)
        .await
        .expect("get_flow_to_file");
    assert_eq!(std::fs::read(&dest).expect("read dest"), payload);
    assert_eq!(fetched.name, "to file");
    let reference = storage.reference().unwrap();
    let mut flipped = original.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    if h.tamper(&reference, "to file", Bytes::from(flipped)).await {
        let dest2 = dir.join("altered.out");
        let err = h
            .registry()
            .open(&reference)
            .unwrap()
            .get_flow_to_file("to file", &dest2)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
        assert!(!dest2.exists(), "an altered flow left {dest2:?} behind");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `list_versions` lists what was stored (every flow, or one flow's versions) when the storage
/// declares it can, and is refused as unsupported when it declares it cannot.
pub async fn list_versions(h: &dyn Harness) {
    let Some(mut storage) = h.storage().await else {
        return not_applicable("list_versions", NO_SERIALIZED);
    };
    if !storage.capabilities().list_versions {
        let err = storage.list_versions(None).await.unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        return not_applicable("list_versions", "the storage declares it cannot list");
    }
    build_one(&mut storage, "listed a").await;
    // Both flows in one namespace where the storage holds many (registered by a second
    // storage there, as a second process would), so the filter has something to leave out.
    let mut second = if storage.capabilities().many_flows {
        h.same_namespace(&*storage).await
    } else {
        h.storage().await.expect("a second storage")
    };
    build_one(&mut second, "listed b").await;
    let (a, b) = (storage.version_locations(), second.version_locations());
    assert_eq!((a.len(), b.len()), (1, 1), "{a:?} {b:?}");
    let all = storage.list_versions(None).await.expect("list all");
    let locations: Vec<&str> = all.iter().map(|v| v.location.as_str()).collect();
    assert!(
        locations.contains(&a[0].as_str()),
        "{a:?} missing from {locations:?}"
    );
    if storage.capabilities().many_flows {
        assert!(
            locations.contains(&b[0].as_str()),
            "{b:?} missing from {locations:?}"
        );
    }
    let only_a = storage
        .list_versions(Some("listed a"))
        .await
        .expect("list one");
    assert!(
        only_a.iter().any(|v| v.location == a[0]),
        "{a:?} missing from {only_a:?}"
    );
    assert!(
        only_a
            .iter()
            .all(|v| v.slug == crate::key::flow_slug("listed a")),
        "{only_a:?}"
    );
    assert!(
        only_a.iter().all(|v| v.location != b[0]),
        "another flow's version was listed: {only_a:?}"
    );
}

const NO_READ_ONLY: &str =
    "the harness has no read-only script storage (the backend writes its own scripts)";

fn script_source(name: &str) -> Vec<u8> {
    format!(
        "with Flow({name:?}) as flow:\n    print('hello from {}')\n",
        name.len()
    )
    .into_bytes()
}

/// Read-only storages: every script in place comes back byte for byte, through a reopened
/// reference.
pub async fn read_only_round_trip(h: &dyn Harness) {
    let names = ["first script", "second script"];
    let sources: Vec<Vec<u8>> = names.iter().map(|n| script_source(n)).collect();
    let flows: Vec<(&str, &[u8])> = names
        .iter()
        .copied()
        .zip(sources.iter().map(|s| s.as_slice()))
        .collect();
    let Some(storage) = h.script_flows(&flows).await else {
        return not_applicable("read_only_round_trip", NO_READ_ONLY);
    };
    let agent = reopen(h, &*storage);
    for (name, source) in &flows {
        let fetched = agent.get_flow(name).await.expect("get_flow");
        match &fetched.content {
            FlowContent::Script { source: got, .. } => assert_eq!(got.as_ref(), *source, "{name}"),
            other => panic!("expected a script flow, got {other:?}"),
        }
    }
}

/// Read-only storages: an unknown flow is refused by name, before and after a reference round trip.
pub async fn read_only_unknown_flow(h: &dyn Harness) {
    let source = script_source("known script");
    let Some(storage) = h.script_flows(&[("known script", &source)]).await else {
        return not_applicable("read_only_unknown_flow", NO_READ_ONLY);
    };
    for s in [reopen(h, &*storage), storage] {
        let err = s.get_flow("missing flow").await.unwrap_err();
        assert!(matches!(err, Error::FlowNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("\"known script\""), "{err}");
    }
}

/// Read-only storages: the reference survives JSON and opens to a storage with the same flows,
/// digests and fields.
pub async fn read_only_reference_round_trip(h: &dyn Harness) {
    let source = script_source("ref script");
    let Some(storage) = h.script_flows(&[("ref script", &source)]).await else {
        return not_applicable("read_only_reference_round_trip", NO_READ_ONLY);
    };
    let reference = storage.reference().expect("reference");
    assert_eq!(reference.type_name, storage.type_name());
    assert!(
        reference.flow_digests.contains_key("ref script"),
        "a pinned script records its digest: {reference:?}"
    );
    let parsed = StorageReference::from_json(&reference.to_json_pretty()).expect("parse");
    assert_eq!(parsed, reference);
    let agent = h.registry().open(&parsed).expect("open");
    assert_eq!(agent.flows(), storage.flows());
    assert_eq!(agent.reference().expect("agent reference"), reference);
}

/// Read-only storages: a pinned script changed behind flowstore's back is refused, naming the flow.
pub async fn read_only_altered_refused(h: &dyn Harness) {
    let source = script_source("pinned script");
    let Some(storage) = h.script_flows(&[("pinned script", &source)]).await else {
        return not_applicable("read_only_altered_refused", NO_READ_ONLY);
    };
    let reference = storage.reference().expect("reference");
    let altered = b"print('not the script that was registered')\n";
    if !h.alter_script(&reference, "pinned script", altered).await {
        return not_applicable(
            "read_only_altered_refused",
            "the harness cannot change a script",
        );
    }
    let err = h
        .registry()
        .open(&reference)
        .expect("open")
        .get_flow("pinned script")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("\"pinned script\""), "{err}");
}

/// Read-only storages: unicode, symbol-only and path-like flow names fetch by their exact name.
pub async fn read_only_unicode_names(h: &dyn Harness) {
    let sources: Vec<Vec<u8>> = UNICODE_NAMES.iter().map(|n| script_source(n)).collect();
    let flows: Vec<(&str, &[u8])> = UNICODE_NAMES
        .iter()
        .copied()
        .zip(sources.iter().map(|s| s.as_slice()))
        .collect();
    let Some(storage) = h.script_flows(&flows).await else {
        return not_applicable("read_only_unicode_names", NO_READ_ONLY);
    };
    let agent = reopen(h, &*storage);
    for (name, source) in &flows {
        let fetched = agent.get_flow(name).await.expect("get_flow");
        assert_eq!(fetched.name, *name);
        assert_eq!(fetched.bytes().as_ref(), *source, "{name}");
    }
}

/// Flow names that stress key schemes: unicode, CJK, path-like, symbol-only, emoji.
const UNICODE_NAMES: [&str; 5] = [
    "Ünïcödé Straße",
    "影師嗎",
    "../../etc/passwd",
    "!!!",
    "emoji 🚀 flow",
];

/// A fresh temporary directory (removed by the check that made it).
fn tempfile_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "flowstore-testkit-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// Expands the conformance suite into one `#[tokio::test]` per check, in a `conformance` module.
///
/// `$harness` is the name of an `async fn() -> HarnessResult<impl Harness>` in the calling module.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ident) => {
        mod conformance {
            $crate::conformance_suite!(@tests $harness;
                round_trip_serialized, round_trip_script, name_conflict, unknown_flow,
                reference_round_trip, digest_refusal, no_overwrite, many_flows, large_flow,
                sealed_from_file,
                unicode_names, capabilities_declared, get_flow_to_file, list_versions,
                read_only_round_trip, read_only_unknown_flow, read_only_reference_round_trip,
                read_only_altered_refused, read_only_unicode_names, bundle_round_trip,
                bundle_one_change, bundle_tamper_refused, bundle_concurrency,
                bundle_interrupted_fetch, prune_delete_version, prune_policy, prune_sweep,
                prune_trash_fallback, prune_concurrent_registration);
        }
    };
    (@tests $harness:ident; $($check:ident),*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                match super::$harness().await {
                    Ok(h) => $crate::testkit::$check(&h).await,
                    Err(reason) => $crate::testkit::skip(concat!("conformance::", stringify!($check)), &reason),
                }
            }
        )*
    };
}
