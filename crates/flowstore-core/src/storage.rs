//! The [`Storage`] trait every backend implements and the [`Capabilities`] each declares.
//!
//! Registration is `add_flow` for each flow, then `persist` once, then `reference()`; an agent
//! later opens the reference (`Registry::open`, or `flowstore::open` in the facade) and calls
//! `get_flow`.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::bundle::{BlobStore, FetchOptions, FetchedBundle, TransferReport};
use crate::error::{Error, Result};
use crate::flow::{FetchedFlow, FlowContent, FlowInput};
use crate::raw::FlowIndex;
use crate::reference::StorageReference;

/// A place flows are stored and fetched from.
///
/// Object-safe: use it as `Box<dyn Storage>`. Every method's errors name the flow, location or
/// setting that is wrong.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The backend's type name as written in references (`Local`, `S3`, …).
    fn type_name(&self) -> &'static str;

    /// What this storage can do; the conformance suite picks its checks from it.
    fn capabilities(&self) -> Capabilities;

    /// The flows, digests, secrets and labels of this storage (backend authors: see [`crate::raw`]).
    fn index(&self) -> &FlowIndex;

    /// The same, to change: [`Storage::set_labels`] and backends' `add_flow` write through it.
    fn index_mut(&mut self) -> &mut FlowIndex;

    /// Adds a flow and returns its location.
    ///
    /// Errors with [`Error::NameConflict`] when the storage already holds a flow of that name,
    /// and [`Error::Config`] when the flow's form does not fit the storage (a script flow for a
    /// storage that is not in script mode). Backends that write at `add_flow` (Local) never
    /// overwrite an existing object.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String>;

    /// Persists what `add_flow` staged (uploads, image builds); a no-op where `add_flow` already
    /// stored the flow. Never overwrites a stored flow ([`Error::AlreadyExists`]).
    ///
    /// Prefect 1 called this `build()`; in flowstore `build()` is what a builder does to make a
    /// storage, and `persist()` is what a storage does with staged flows.
    async fn persist(&mut self) -> Result<()>;

    /// Fetches a flow by name and verifies it against the digest recorded at registration.
    ///
    /// Errors with [`Error::FlowNotFound`] for a name the storage does not hold and
    /// [`Error::FlowCorrupt`] when the stored bytes were altered.
    async fn get_flow(&self, name: &str) -> Result<FetchedFlow>;

    /// The storage reference to keep (call after `persist`).
    fn reference(&self) -> Result<StorageReference>;

    /// True if the storage holds a flow of this name.
    fn contains(&self, name: &str) -> bool {
        self.index().flows.contains_key(name)
    }

    /// Flow name → location.
    fn flows(&self) -> &BTreeMap<String, String> {
        &self.index().flows
    }

    /// Names of the secrets an agent must resolve before fetching.
    fn secrets(&self) -> &[String] {
        &self.index().secrets
    }

    /// Labels the backend adds by default (Local: the hostname).
    fn default_labels(&self) -> Vec<String> {
        Vec::new()
    }

    /// Replaces the user's labels and says whether [`Storage::default_labels`] are added.
    ///
    /// Every backend takes labels this way (and its builder's `label`/`add_default_labels`); the
    /// reference records the result of [`Storage::labels`].
    fn set_labels(&mut self, labels: Vec<String>, add_default_labels: bool) {
        let index = self.index_mut();
        index.labels = labels;
        index.add_default_labels = add_default_labels;
    }

    /// The user's labels, plus [`Storage::default_labels`] unless `add_default_labels` is off.
    fn labels(&self) -> Vec<String> {
        let index = self.index();
        let mut labels = index.labels.clone();
        if index.add_default_labels {
            for l in self.default_labels() {
                if !labels.contains(&l) {
                    labels.push(l);
                }
            }
        }
        labels
    }

    /// Lists the stored versions of one flow (by name) or of every flow, newest first.
    ///
    /// Errors with [`Error::Unsupported`] for backends that cannot list.
    async fn list_versions(&self, flow: Option<&str>) -> Result<Vec<StoredVersion>> {
        let _ = flow;
        Err(Error::Unsupported {
            backend: self.type_name().to_string(),
            what: "listing stored versions".to_string(),
        })
    }

    /// Where [`Storage::list_versions`] lists the versions this storage's flows are stored in:
    /// their locations by default; a storage that keeps several flows in one version (Docker:
    /// one image) gives that version's location. `flowstore prune --protect` keeps these.
    fn version_locations(&self) -> Vec<String> {
        self.flows().values().cloned().collect()
    }

    /// Deletes one stored version, as [`Storage::list_versions`] listed it. Storages never
    /// overwrite, so this is the only way a stored flow goes away: it refuses (with
    /// [`Error::Config`], deleting nothing) any location that is not a flowstore version
    /// (`<flow slug>/<timestamp slug>`) under the storage's own prefix or directory. A version
    /// already gone is not an error. Bundle blobs stay: [`crate::prune::sweep`] removes the
    /// ones no version names any more.
    ///
    /// Errors: [`Error::Unsupported`] where the storage is read-only or cannot delete (the
    /// default); [`Error::Config`] for a location that is not a version of this storage; the
    /// backend's refusal ([`Error::PermissionDenied`], a server that does not allow deletes).
    async fn delete_version(&self, version: &StoredVersion) -> Result<()> {
        Err(Error::Unsupported {
            backend: self.type_name().to_string(),
            what: format!(
                "deleting stored version {}: this storage is read-only or cannot delete",
                version.location
            ),
        })
    }

    /// Reads the stored bytes of one listed version (for a bundle, its manifest) without
    /// verifying them: the caller parses and checks what it needs.
    ///
    /// Errors: [`Error::Unsupported`] (the default) where the storage cannot; [`Error::Config`]
    /// for a location that is not a version of this storage; [`Error::NotFound`] when it is
    /// gone.
    async fn read_version(&self, version: &StoredVersion) -> Result<bytes::Bytes> {
        Err(Error::Unsupported {
            backend: self.type_name().to_string(),
            what: format!("reading stored version {}", version.location),
        })
    }

    /// Fetches a flow and writes its bytes (payload, script or pickle) to `dest`.
    ///
    /// Backends that can stream override this so large flows never sit in memory whole.
    async fn get_flow_to_file(&self, name: &str, dest: &Path) -> Result<FetchedFlow> {
        let fetched = self.get_flow(name).await?;
        std::fs::write(dest, fetched.bytes())
            .map_err(|e| Error::io(format!("writing flow \"{name}\" to {}", dest.display()), e))?;
        Ok(fetched)
    }

    /// The storage's live bundle blobs, where it stores bundles as blobs (see
    /// [`crate::bundle`]); [`BlobStore::area`] on it gives the trash. A view built on each call
    /// (it borrows the storage). `None` (the default) where the storage cannot hold blobs, or
    /// serves bundles its own way.
    fn blob_store(&self) -> Option<Box<dyn BlobStore + '_>> {
        None
    }

    /// Fetches bundle flow `name` and materializes its tree at `dest` (a new or empty directory,
    /// or one an earlier fetch made, which is replaced atomically), downloading only the blobs
    /// missing from the local blob cache and verifying every one.
    ///
    /// Errors: [`Error::FlowNotFound`]; [`Error::Unsupported`] when the flow is not a bundle or
    /// the storage cannot hold bundles; [`Error::FlowCorrupt`] naming the file when the manifest
    /// or a blob was altered or is missing (then nothing is materialized).
    async fn get_bundle(
        &self,
        name: &str,
        dest: &Path,
        options: &FetchOptions,
    ) -> Result<FetchedBundle> {
        let Some(store) = self.blob_store() else {
            return Err(Error::Unsupported {
                backend: self.type_name().to_string(),
                what: format!("fetching bundle \"{name}\": this storage does not hold bundles"),
            });
        };
        let fetched = self.get_flow(name).await?;
        let FlowContent::Bundle(manifest) = &fetched.content else {
            return Err(not_a_bundle(name, &fetched));
        };
        crate::bundle::fetch(&*store, name, manifest, dest, options).await
    }

    /// What registering bundle flow `name` moved (blobs and manifest uploaded, blobs already
    /// stored), once [`Storage::persist`] stored it in this session; `None` otherwise.
    fn transfer_report(&self, name: &str) -> Option<TransferReport> {
        self.index().transfers.get(name).copied()
    }
}

/// The error for [`Storage::get_bundle`] on a flow that is not a bundle.
pub fn not_a_bundle(name: &str, fetched: &FetchedFlow) -> Error {
    Error::Unsupported {
        backend: "flowstore".to_string(),
        what: format!(
            "fetching flow \"{name}\" as a bundle: it is a {} flow; fetch it with get_flow",
            fetched.form()
        ),
    }
}

/// The longest flow name flowstore accepts, in characters.
pub const MAX_FLOW_NAME_CHARS: usize = 1000;

/// Checks a flow name: non-empty, at most [`MAX_FLOW_NAME_CHARS`] characters, no control
/// characters (NUL, newlines, escapes). Any other text is fine: keys use its slug.
///
/// Errors with [`Error::Config`] naming the problem.
pub fn validate_flow_name(name: &str) -> Result<()> {
    let chars = name.chars().count();
    let problem = if name.trim().is_empty() {
        Some("it is empty".to_string())
    } else if chars > MAX_FLOW_NAME_CHARS {
        Some(format!(
            "it is {chars} characters long; at most {MAX_FLOW_NAME_CHARS} are allowed"
        ))
    } else {
        name.chars()
            .find(|c| c.is_control())
            .map(|c| format!("it contains the control character {c:?}"))
    };
    match problem {
        Some(p) => {
            let shown: String = name.chars().take(60).collect();
            Err(Error::config(format!(
                "Invalid flow name {shown:?}{}: {p}. Use printable text.",
                if chars > 60 { "…" } else { "" }
            )))
        }
        None => Ok(()),
    }
}

/// One stored version of a flow, as listed by [`Storage::list_versions`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredVersion {
    /// The flow's name, when the backend can tell it (from the envelope header or the index).
    pub flow: Option<String>,
    /// The flow's slug (the first key segment).
    pub slug: String,
    /// The location (key, path) of this version.
    pub location: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// When it was stored, when known.
    pub stored_at: Option<DateTime<Utc>>,
    /// True when the version is a bundle manifest (see [`crate::bundle`]): its blobs stay
    /// stored while it does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bundle: bool,
}

/// What a storage can do, declared by each backend ([`Storage::capabilities`]).
///
/// ```
/// use flowstore_core::Capabilities;
/// let read_only = Capabilities { script: true, ..Capabilities::default() };
/// assert!(!read_only.write && read_only.script);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// `add_flow` + `persist` store new flows (false: read-only, such as Git and the API storages).
    pub write: bool,
    /// One storage holds several flows (false: Prefect 1's script storages with one fixed key).
    pub many_flows: bool,
    /// Serialized flows (sealed envelopes) can be stored or fetched.
    pub serialized: bool,
    /// Script flows (source files) can be stored or fetched.
    pub script: bool,
    /// [`Storage::list_versions`] lists what is stored.
    pub list_versions: bool,
    /// [`Storage::get_flow_to_file`] streams to disk without holding the flow in memory.
    pub stream_to_file: bool,
    /// Bundle flows ([`FlowInput::Bundle`], [`Storage::get_bundle`]) can be stored and fetched.
    pub bundles: bool,
    /// [`Storage::delete_version`] deletes stored versions and [`Storage::read_version`] reads
    /// them, so `flowstore prune` ([`crate::prune`]) works here.
    pub delete_versions: bool,
}

impl Capabilities {
    /// The capabilities of a read-only storage that fetches script flows (Git, GitHub, …).
    pub const READ_ONLY_SCRIPTS: Capabilities = Capabilities {
        write: false,
        many_flows: true,
        serialized: false,
        script: true,
        list_versions: false,
        stream_to_file: false,
        bundles: false,
        delete_versions: false,
    };
}
