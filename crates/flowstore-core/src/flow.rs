//! What goes into a storage ([`FlowInput`]) and what comes back out ([`FetchedFlow`]).
//!
//! A flow is stored in one of two forms, as in Prefect 1: *serialized* (the flow value frozen
//! into an [`Envelope`] at registration) or *script* (its source
//! file, loaded again at every run so the script can be edited without re-registering).

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::bundle::{is_manifest, BundleInput, Manifest};
use crate::envelope::{is_envelope, AppInfo, Envelope, SealedFlow};
use crate::error::{Error, Result};

/// A flow handed to [`Storage::add_flow`](crate::Storage::add_flow).
#[derive(Debug, Clone)]
pub enum FlowInput {
    /// A flow frozen into envelope bytes (see [`seal`](crate::envelope::seal)).
    Serialized(SealedFlow),
    /// A flow defined by a script: the storage is configured with where the script lives
    /// (`path`, `local_script_path`, a repository file), so only the name is needed.
    Script {
        /// The flow's name.
        name: String,
    },
    /// A flow defined by a directory of code (see [`crate::bundle`]).
    Bundle(BundleInput),
}

impl FlowInput {
    /// A script flow with this name.
    pub fn script(name: impl Into<String>) -> Self {
        FlowInput::Script { name: name.into() }
    }

    /// A bundle flow named `name`: the tree at `dir`, whose entry file is `entry` (relative to
    /// `dir`). The tree is read when the flow is added.
    ///
    /// ```
    /// let flow = flowstore_core::FlowInput::bundle("ETL", "./project", "flows/etl.py");
    /// assert_eq!(flow.name(), "ETL");
    /// ```
    pub fn bundle(
        name: impl Into<String>,
        dir: impl Into<PathBuf>,
        entry: impl Into<String>,
    ) -> Self {
        FlowInput::Bundle(BundleInput {
            name: name.into(),
            dir: dir.into(),
            entry: entry.into(),
            progress: None,
        })
    }

    /// The flow's name.
    pub fn name(&self) -> &str {
        match self {
            FlowInput::Serialized(s) => &s.name,
            FlowInput::Script { name } => name,
            FlowInput::Bundle(b) => &b.name,
        }
    }
}

impl From<SealedFlow> for FlowInput {
    fn from(s: SealedFlow) -> Self {
        FlowInput::Serialized(s)
    }
}

/// A flow fetched from a storage and verified.
#[derive(Debug, Clone)]
pub struct FetchedFlow {
    /// The flow's name.
    pub name: String,
    /// Where it was read from (a path, an object key, `repo@commit:path`, an image reference).
    pub location: String,
    /// The revision read where the backend has one (a commit SHA, an ETag, an image digest).
    pub revision: Option<String>,
    /// The flow itself.
    pub content: FlowContent,
}

/// The body of a fetched flow.
#[derive(Debug, Clone)]
pub enum FlowContent {
    /// A serialized flow whose envelope digest and name were verified.
    Serialized(Envelope),
    /// A script's source, to be loaded by the application.
    Script {
        /// The script's source bytes.
        source: Bytes,
        /// Where the script is on this machine, when it is a file here (Local, Git checkout).
        path: Option<PathBuf>,
    },
    /// A flow streamed to a file on this machine and verified there
    /// ([`Storage::get_flow_to_file`](crate::Storage::get_flow_to_file) of large flows); its bytes
    /// are not held in memory.
    File {
        /// Where the flow's bytes are (the payload for a serialized flow, else the script).
        path: PathBuf,
        /// How many bytes were written.
        size: u64,
        /// The envelope header, for a serialized flow.
        header: Option<crate::envelope::EnvelopeHeader>,
    },
    /// A bundle's verified manifest (fetch its tree with
    /// [`Storage::get_bundle`](crate::Storage::get_bundle)).
    Bundle(Manifest),
    /// A flow pickled by Prefect 1 (a migrated reference). flowstore cannot unpickle Python
    /// objects: the bytes are handed back as they are, with the versions Prefect recorded.
    Prefect1Pickle {
        /// The cloudpickle bytes.
        pickle: Bytes,
        /// The versions Prefect recorded (`cloudpickle`, `prefect`, `python`), if any.
        versions: BTreeMap<String, String>,
    },
}

/// The note attached to pickled Prefect 1 flows.
pub const PICKLE_NOTE: &str = "this flow was pickled by Prefect 1 (Python cloudpickle); flowstore cannot unpickle it and returns the pickle bytes as they are. Re-register it with flowstore, or load the bytes with Python's cloudpickle.";

impl FetchedFlow {
    /// Decodes a serialized flow into the application's type.
    ///
    /// Errors: [`Error::Decode`] when decoding fails (listing differing versions), and
    /// [`Error::Unsupported`] for a script flow or a Prefect 1 pickle, which are not values.
    pub fn decode<T: DeserializeOwned>(&self, app: &AppInfo) -> Result<T> {
        match &self.content {
            FlowContent::Serialized(env) => env.decode(app),
            FlowContent::Script { .. } | FlowContent::File { .. } | FlowContent::Bundle(_) => Err(Error::Unsupported {
                backend: "flowstore".into(),
                what: format!(
                    "decoding flow \"{}\": it is a script, a bundle or was streamed to a file; read its source (or fetch the bundle) instead",
                    self.name
                ),
            }),
            FlowContent::Prefect1Pickle { .. } => Err(Error::Unsupported {
                backend: "flowstore".into(),
                what: format!("decoding flow \"{}\": {PICKLE_NOTE}", self.name),
            }),
        }
    }

    /// The flow's bytes in memory: the envelope payload, the script source, the bundle's
    /// manifest, or the pickle.
    /// Empty for [`FlowContent::File`], whose bytes are in the file.
    pub fn bytes(&self) -> &Bytes {
        static EMPTY: Bytes = Bytes::new();
        match &self.content {
            FlowContent::Serialized(env) => env.payload(),
            FlowContent::Script { source, .. } => source,
            FlowContent::Prefect1Pickle { pickle, .. } => pickle,
            FlowContent::Bundle(manifest) => manifest.bytes(),
            FlowContent::File { .. } => &EMPTY,
        }
    }

    /// The flow's size in bytes (in memory or in its file).
    pub fn size(&self) -> u64 {
        match &self.content {
            FlowContent::File { size, .. } => *size,
            _ => self.bytes().len() as u64,
        }
    }

    /// `serialized`, `script`, `bundle` or `prefect1-pickle`.
    pub fn form(&self) -> &'static str {
        match &self.content {
            FlowContent::Serialized(_)
            | FlowContent::File {
                header: Some(_), ..
            } => "serialized",
            FlowContent::Script { .. } | FlowContent::File { header: None, .. } => "script",
            FlowContent::Prefect1Pickle { .. } => "prefect1-pickle",
            FlowContent::Bundle(_) => "bundle",
        }
    }
}

/// Interprets bytes read from a serialized-mode storage.
///
/// A flowstore envelope is opened and verified ([`Envelope::open`]); a bundle manifest is parsed
/// and checked ([`Manifest::parse`]); a Prefect 1 payload (JSON
/// `{"flow": base64, "versions": …}`, or a bare cloudpickle stream) becomes
/// [`FlowContent::Prefect1Pickle`]; anything else is [`Error::FlowCorrupt`].
pub fn decode_stored(flow: &str, location: &str, bytes: Bytes) -> Result<FlowContent> {
    if is_envelope(&bytes) {
        return Envelope::open(flow, location, bytes).map(FlowContent::Serialized);
    }
    if is_manifest(&bytes) {
        return Manifest::parse(flow, location, &bytes).map(FlowContent::Bundle);
    }
    if let Some(content) = crate::prefect1::parse_pickle_payload(&bytes) {
        // Info, not a warning: the caller gets a typed `Prefect1Pickle` and tells its user
        // (the CLI prints PICKLE_NOTE once); a warning here would say it twice.
        tracing::info!(
            flow,
            location,
            "a Prefect 1 pickle: returned as bytes, not unpickled"
        );
        return Ok(content);
    }
    Err(Error::FlowCorrupt {
        flow: flow.to_string(),
        location: location.to_string(),
        reason:
            "it is neither a flowstore envelope, a bundle manifest nor a Prefect 1 flow payload"
                .to_string(),
    })
}
