//! The [`Storage`] trait every backend implements, and [`FlowIndex`], the bookkeeping every
//! backend shares (flow locations, digests, secrets, labels).
//!
//! Registration is `add_flow` for each flow, then `build` once, then `reference()`; an agent later
//! opens the reference through a [`Registry`](crate::Registry) and calls `get_flow`.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::flow::{FetchedFlow, FlowContent, FlowInput};
use crate::reference::StorageReference;

/// A place flows are stored and fetched from.
///
/// Object-safe: use it as `Box<dyn Storage>`. Every method's errors name the flow, location or
/// setting that is wrong.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The backend's type name as written in references (`Local`, `S3`, …).
    fn type_name(&self) -> &'static str;

    /// The flows, digests, secrets and labels of this storage.
    fn index(&self) -> &FlowIndex;

    /// Adds a flow and returns its location.
    ///
    /// Errors with [`Error::NameConflict`] when the storage already holds a flow of that name,
    /// and [`Error::Config`] when the flow's form does not fit the storage (a script flow for a
    /// storage that is not in script mode). Backends that write at `add_flow` (Local) never
    /// overwrite an existing object.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String>;

    /// Persists what `add_flow` staged (uploads, image builds); a no-op where `add_flow` already
    /// stored the flow. Never overwrites a stored flow ([`Error::AlreadyExists`]).
    async fn build(&mut self) -> Result<()>;

    /// Fetches a flow by name and verifies it against the digest recorded at registration.
    ///
    /// Errors with [`Error::FlowNotFound`] for a name the storage does not hold and
    /// [`Error::FlowCorrupt`] when the stored bytes were altered.
    async fn get_flow(&self, name: &str) -> Result<FetchedFlow>;

    /// The storage reference to persist (call after `build`).
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

    /// Fetches a flow and writes its bytes (payload, script or pickle) to `dest`.
    ///
    /// Backends that can stream override this so large flows never sit in memory whole.
    async fn get_flow_to_file(&self, name: &str, dest: &Path) -> Result<FetchedFlow> {
        let fetched = self.get_flow(name).await?;
        std::fs::write(dest, fetched.bytes())
            .map_err(|e| Error::io(format!("writing flow \"{name}\" to {}", dest.display()), e))?;
        Ok(fetched)
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
}

/// The bookkeeping every backend shares; backends embed one and hand it out through
/// [`Storage::index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowIndex {
    /// Flow name → location.
    pub flows: BTreeMap<String, String>,
    /// Flow name → `sha256:<hex>` of what was stored.
    pub digests: BTreeMap<String, String>,
    /// Secret names an agent must resolve before fetching.
    pub secrets: Vec<String>,
    /// The user's labels.
    pub labels: Vec<String>,
    /// Whether [`Storage::default_labels`] are added (default true).
    pub add_default_labels: bool,
}

impl Default for FlowIndex {
    fn default() -> Self {
        FlowIndex {
            flows: BTreeMap::new(),
            digests: BTreeMap::new(),
            secrets: Vec::new(),
            labels: Vec::new(),
            add_default_labels: true,
        }
    }
}

impl FlowIndex {
    /// The index recorded in a reference.
    pub fn from_reference(reference: &StorageReference) -> Self {
        FlowIndex {
            flows: reference.flows.clone(),
            digests: reference.flow_digests.clone(),
            secrets: reference.secrets.clone(),
            labels: reference.labels.clone(),
            add_default_labels: false,
        }
    }

    /// Fills a reference's shared fields from this index; `labels` are the storage's full labels.
    pub fn fill_reference(&self, reference: &mut StorageReference, labels: Vec<String>) {
        reference.flows = self.flows.clone();
        reference.flow_digests = self.digests.clone();
        reference.secrets = self.secrets.clone();
        reference.labels = labels;
    }

    /// Errors with [`Error::Config`] for a name that cannot be a flow's (see [`validate_flow_name`])
    /// and [`Error::NameConflict`] if `name` is already present.
    pub fn ensure_new(&self, name: &str) -> Result<()> {
        validate_flow_name(name)?;
        if self.flows.contains_key(name) {
            return Err(Error::NameConflict {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Records a flow's location (and digest, for serialized flows), refusing a duplicate name.
    pub fn insert(&mut self, name: &str, location: String, digest: Option<String>) -> Result<()> {
        self.ensure_new(name)?;
        self.flows.insert(name.to_string(), location);
        if let Some(d) = digest {
            self.digests.insert(name.to_string(), d);
        }
        Ok(())
    }

    /// The location of `name`, or [`Error::FlowNotFound`] listing the known names.
    pub fn location(&self, name: &str) -> Result<&str> {
        self.flows
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Error::flow_not_found(name, self.flows.keys()))
    }

    /// Checks stored bytes against the digest recorded for `name` (no digest recorded: accepted,
    /// as for references written by Prefect 1).
    pub fn verify_digest(&self, name: &str, location: &str, bytes: &[u8]) -> Result<()> {
        self.verify_computed(name, location, &crate::envelope::sha256_digest(bytes))
    }

    /// Checks an already-computed `sha256:<hex>` digest against the one recorded for `name`.
    pub fn verify_computed(&self, name: &str, location: &str, actual: &str) -> Result<()> {
        match self.digests.get(name) {
            Some(expected) if expected != actual => Err(Error::FlowCorrupt {
                flow: name.to_string(),
                location: location.to_string(),
                reason: format!("stored bytes have digest {actual}, but {expected} was recorded at registration"),
            }),
            _ => Ok(()),
        }
    }

    /// Verifies serialized-flow bytes read from `location` (recorded digest, then envelope) and
    /// turns them into a [`FetchedFlow`].
    pub fn open_serialized(
        &self,
        name: &str,
        location: &str,
        revision: Option<String>,
        bytes: bytes::Bytes,
    ) -> Result<FetchedFlow> {
        self.verify_digest(name, location, &bytes)?;
        let content = crate::flow::decode_stored(name, location, bytes)?;
        Ok(FetchedFlow {
            name: name.to_string(),
            location: location.to_string(),
            revision,
            content,
        })
    }

    /// A script [`FetchedFlow`], checking the recorded digest when one was recorded.
    pub fn open_script(
        &self,
        name: &str,
        location: &str,
        revision: Option<String>,
        source: bytes::Bytes,
        path: Option<std::path::PathBuf>,
    ) -> Result<FetchedFlow> {
        self.verify_digest(name, location, &source)?;
        Ok(FetchedFlow {
            name: name.to_string(),
            location: location.to_string(),
            revision,
            content: FlowContent::Script { source, path },
        })
    }
}
