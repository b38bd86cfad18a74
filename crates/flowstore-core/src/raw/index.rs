//! [`FlowIndex`]: the bookkeeping every backend shares (flow locations, digests, secrets, labels).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::flow::{FetchedFlow, FlowContent};
use crate::reference::StorageReference;
use crate::storage::validate_flow_name;

/// The bookkeeping every backend shares; backends embed one and hand it out through
/// [`Storage::index`](crate::Storage::index).
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
    /// Whether [`Storage::default_labels`](crate::Storage::default_labels) are added (default true).
    pub add_default_labels: bool,
    /// Flow name → what persisting its bundle moved (not part of the reference).
    pub transfers: BTreeMap<String, crate::bundle::TransferReport>,
}

impl Default for FlowIndex {
    fn default() -> Self {
        FlowIndex {
            flows: BTreeMap::new(),
            digests: BTreeMap::new(),
            secrets: Vec::new(),
            labels: Vec::new(),
            add_default_labels: true,
            transfers: BTreeMap::new(),
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
            transfers: BTreeMap::new(),
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
        let content = if self.digests.contains_key(name) && crate::envelope::is_envelope(&bytes) {
            // The bytes hash to the digest recorded when this envelope was sealed and checked:
            // the envelope's own digest can only agree, so only its header is checked.
            crate::envelope::Envelope::open_digest_checked(name, location, bytes)
                .map(FlowContent::Serialized)?
        } else {
            crate::flow::decode_stored(name, location, bytes)?
        };
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
