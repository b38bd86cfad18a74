//! Reading a flow's file out of the pushed image as its layers stream in from the registry:
//! each layer blob is hashed as it arrives (and refused at its end unless it matches its
//! digest), gunzipped and untarred on the blocking pool, and the flow's entry handed on as it is
//! read: into memory for `get_flow`, into a [`FlowFileSink`] for `get_flow_to_file`. The
//! compressed layer is never held whole.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::raw::sink::FlowFileSink;
use flowstore_core::raw::FlowIndex;
use flowstore_core::{Error as CoreError, FetchedFlow, Result};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::error::Error;
use crate::layer;
use crate::oci::Digest;
use crate::registry::Registry;
use crate::storage::Docker;

/// How many response chunks may wait between the download and the reader.
const QUEUE: usize = 8;
/// The buffer a flow's entry is read with.
const CHUNK: usize = 1 << 20;

/// A layer blob read from the registry's answer as it arrives, hashed; at its end it fails with
/// an [`Error::DigestMismatch`] (inside the io error) unless the bytes match the digest.
struct BlobReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
    hasher: Sha256,
    /// The error to give if the bytes do not match (its `actual` filled in then).
    registry: Registry,
    repository: String,
    expected: Digest,
    done: bool,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = buf.len().min(self.chunk.len());
                let part = self.chunk.split_to(n);
                buf[..n].copy_from_slice(&part);
                self.hasher.update(&part);
                return Ok(n);
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
                None => {
                    self.done = true;
                    let hasher = std::mem::take(&mut self.hasher);
                    let actual: Digest = format!("sha256:{}", hex::encode(hasher.finalize()))
                        .parse()
                        .expect("a sha256 digest parses");
                    if actual != self.expected {
                        return Err(io::Error::other(self.registry.digest_mismatch(
                            &self.repository,
                            &self.expected,
                            &actual,
                        )));
                    }
                    return Ok(0);
                }
            }
        }
    }
}

/// What a blocking read of one layer failed with.
enum Failed {
    /// Reading the layer (its transfer, its gzip or tar, its digest).
    Io(io::Error),
    /// Writing the flow (the sink's checks, the destination).
    Core(CoreError),
}

impl From<io::Error> for Failed {
    fn from(e: io::Error) -> Self {
        Failed::Io(e)
    }
}

impl From<CoreError> for Failed {
    fn from(e: CoreError) -> Self {
        Failed::Core(e)
    }
}

impl Failed {
    /// As a core error: a layer that does not match its digest is a corrupt flow (altered in
    /// the registry), a transfer error keeps the registry error, anything else is an I/O error
    /// naming the layer.
    fn into_core(self, name: &str, location: &str, layer_at: &str) -> CoreError {
        let e = match self {
            Failed::Core(e) => return e,
            Failed::Io(e) => e,
        };
        match e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
            Some(Error::DigestMismatch { .. }) => {
                let reason = e.to_string();
                CoreError::FlowCorrupt {
                    flow: name.to_string(),
                    location: location.to_string(),
                    reason: format!("the image layer {layer_at} was altered in the registry: {reason}"),
                }
            }
            Some(Error::Registry { .. }) => {
                let inner = e
                    .into_inner()
                    .expect("checked above")
                    .downcast::<Error>()
                    .expect("checked above");
                (*inner).into()
            }
            _ => CoreError::io(
                format!(
                    "reading flow \"{name}\" ({location}) from image layer {layer_at} (is it a gzipped tar?)"
                ),
                e,
            ),
        }
    }
}

/// Reads `layer` of `image` from `reg`, streamed: the download runs on this task, `read` on
/// the blocking pool with a reader of the blob (which fails at its end unless the blob matches
/// its digest). Returns what `read` returns.
async fn with_layer<T: Send + 'static>(
    reg: &Registry,
    image: &str,
    layer: &Digest,
    read: impl FnOnce(BlobReader) -> Result<T, Failed> + Send + 'static,
) -> Result<T, Failed> {
    let resp = reg
        .blob_response(image, layer)
        .await
        .map_err(|e| Failed::Io(io::Error::other(e)))?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let reader = BlobReader {
        rx,
        chunk: Bytes::new(),
        hasher: Sha256::new(),
        registry: reg.clone(),
        repository: image.to_string(),
        expected: layer.clone(),
        done: false,
    };
    let blocking = tokio::task::spawn_blocking(move || read(reader));
    let (pump_reg, pump_image, pump_layer) = (reg.clone(), image.to_string(), layer.clone());
    let pump = async move {
        let mut resp = resp;
        loop {
            let item = match resp.chunk().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => break,
                Err(e) => Err(io::Error::other(pump_reg.read_error(
                    &pump_image,
                    &pump_layer,
                    e,
                ))),
            };
            let failed = item.is_err();
            // The reader stopped (it failed, or the layer is not a tar): stop downloading.
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    };
    let (_, read) = tokio::join!(pump, blocking);
    read.map_err(|e| Failed::Io(io::Error::other(format!("the layer reader failed: {e}"))))?
}

/// What an outside fetch does with the flow's entry.
#[derive(Clone)]
enum Target {
    /// Reads it into memory (`get_flow`).
    Memory,
    /// Writes it to `dest` through a [`FlowFileSink`] (`get_flow_to_file`).
    File {
        index: Arc<FlowIndex>,
        dest: PathBuf,
        serialized: bool,
        revision: Option<String>,
    },
}

/// A flow read from a layer: its bytes, or the flow written to a file.
enum Found {
    Bytes(Bytes),
    File(Box<FetchedFlow>),
}

impl Docker {
    /// The registry, image name, manifest digest and layers (newest first) of the pushed image.
    async fn pushed_layers(
        &self,
        name: &str,
        location: &str,
    ) -> crate::Result<(Registry, String, String, Vec<Digest>)> {
        let (Some(registry_url), Some(image), Some(digest)) = (
            &self.config.registry_url,
            &self.config.image_name,
            &self.config.image_digest,
        ) else {
            return Err(Error::config(format!(
                "Flow \"{name}\" is in a local image that was not pushed; run it inside the image (its file is {location})"
            )));
        };
        let digest: Digest = digest.parse().map_err(|e| {
            Error::config(format!(
                "the reference's image_digest is not usable: {e}; register flow \"{name}\" again"
            ))
        })?;
        let reg = Registry::new(registry_url, self.registry_auth()?);
        let image_at = format!("{registry_url}/{image}@{digest}");
        let Some(manifest) = reg.manifest(image, digest.as_str()).await?.0.into_image() else {
            return Err(Error::config(format!(
                "{image_at} is a multi-platform index, not the image manifest flowstore pushed"
            )));
        };
        let layers = manifest
            .layers
            .into_iter()
            .rev()
            .map(|l| l.digest)
            .collect();
        Ok((reg, image.clone(), image_at, layers))
    }

    /// Reads flow `name` (its file at `location`) out of the pushed image: the manifest by
    /// digest, then the layers newest first, each streamed and verified, until one holds the
    /// file.
    async fn read_outside(&self, name: &str, location: &str, target: Target) -> Result<Found> {
        let (reg, image, image_at, layers) =
            self.pushed_layers(name, location)
                .await
                .map_err(|e| match e {
                    e @ Error::DigestMismatch { .. } => CoreError::FlowCorrupt {
                        flow: name.to_string(),
                        location: location.to_string(),
                        reason: e.to_string(),
                    },
                    other => other.into(),
                })?;
        for l in layers {
            let layer_at = format!("{image_at} (layer {l})");
            let (flow, path, target) = (name.to_string(), location.to_string(), target.clone());
            let found = with_layer(&reg, &image, &l, move |blob| {
                read_entry(blob, &flow, &path, target)
            })
            .await
            .map_err(|e| e.into_core(name, location, &layer_at))?;
            if let Some(found) = found {
                tracing::info!(flow = name, image = %image_at, layer = %l, "read flow from the registry");
                return Ok(found);
            }
        }
        Err(CoreError::not_found(
            "file",
            format!("{image_at}:{location}"),
            format!(
                "Flow file {location} of flow \"{name}\" is not in image {image_at}: check the reference's `directory` and `path`"
            ),
        ))
    }

    /// Outside the image: the flow's bytes, read from its layer (the compressed layer is
    /// streamed, only the flow is held).
    ///
    /// Errors as [`Docker::read_outside`] does.
    pub(crate) async fn fetch_outside(&self, name: &str, location: &str) -> Result<Bytes> {
        match self.read_outside(name, location, Target::Memory).await? {
            Found::Bytes(b) => Ok(b),
            Found::File(_) => unreachable!("read into memory"),
        }
    }

    /// `get_flow_to_file`: inside the image the flow's file, outside it the flow's layer
    /// streamed from the registry, written to `dest` through a [`FlowFileSink`] (which checks
    /// the envelope and the recorded digest as it writes, and makes `dest` appear only when
    /// every check passed, the layer's own digest included).
    pub(crate) async fn flow_to_file(&self, name: &str, dest: &Path) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        let serialized = !self.config.stored_as_script;
        let revision = self.config.image_digest.clone();
        let index = Arc::new(self.index.clone());
        if Path::new(&location).is_file() {
            let (flow, dest) = (name.to_string(), dest.to_path_buf());
            return tokio::task::spawn_blocking(move || {
                let read_err =
                    |e| CoreError::io(format!("reading flow \"{flow}\" from {location}"), e);
                let file = std::fs::File::open(&location).map_err(read_err)?;
                let mut sink = FlowFileSink::create(&index, &flow, &location, &dest, serialized)?;
                copy_into(file, &mut sink).map_err(|e| match e {
                    Failed::Io(e) => read_err(e),
                    Failed::Core(e) => e,
                })?;
                sink.finish(revision)
            })
            .await
            .map_err(|e| {
                CoreError::backend(crate::TYPE_NAME, format!("reading flow \"{name}\": {e}"))
            })?;
        }
        let target = Target::File {
            index,
            dest: dest.to_path_buf(),
            serialized,
            revision,
        };
        match self.read_outside(name, &location, target).await? {
            Found::File(f) => Ok(*f),
            Found::Bytes(_) => unreachable!("written to a file"),
        }
    }
}

/// Copies `from` into `sink` in [`CHUNK`]s.
fn copy_into(mut from: impl Read, sink: &mut FlowFileSink<'_>) -> Result<(), Failed> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        sink.push(&buf[..n])?;
    }
}

/// Blocking: reads one layer to its end, handing the entry at `location` to `target`. A file
/// target is published only after the whole layer was read and matched its digest.
fn read_entry(
    blob: BlobReader,
    name: &str,
    location: &str,
    target: Target,
) -> Result<Option<Found>, Failed> {
    match target {
        Target::Memory => {
            let mut out = None;
            layer::find_file(blob, location, |entry, size| {
                let mut bytes = Vec::with_capacity(size.min(1 << 30) as usize);
                entry.read_to_end(&mut bytes)?;
                out = Some(Found::Bytes(Bytes::from(bytes)));
                Ok::<(), Failed>(())
            })?;
            Ok(out)
        }
        Target::File {
            index,
            dest,
            serialized,
            revision,
        } => {
            let mut sink = None;
            layer::find_file(blob, location, |entry, _| {
                let mut s = FlowFileSink::create(&index, name, location, &dest, serialized)?;
                copy_into(entry, &mut s)?;
                sink = Some(s);
                Ok::<(), Failed>(())
            })?;
            // Here the layer matched its digest: the sink checks the flow's own.
            match sink {
                Some(s) => Ok(Some(Found::File(Box::new(s.finish(revision)?)))),
                None => Ok(None),
            }
        }
    }
}
