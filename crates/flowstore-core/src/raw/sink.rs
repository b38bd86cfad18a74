//! [`FlowFileSink`]: how every backend's `get_flow_to_file` writes a flow to disk as it arrives —
//! verifying the envelope and the registration digest on the way, never holding the flow in
//! memory, and making the destination appear only once every check passed.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use crate::envelope::{DigestBuilder, StreamCheck, MAGIC};
use crate::error::{Error, Result};
use crate::flow::{FetchedFlow, FlowContent};
use crate::raw::atomic::{self, NewFile};
use crate::raw::FlowIndex;

/// The largest non-envelope object (a Prefect 1 pickle) a sink buffers to decode it.
const MAX_BUFFERED: usize = 256 * 1024 * 1024;

/// Writes a flow read in chunks to a file (see the module docs).
///
/// ```
/// use flowstore_core::envelope::{seal_bytes, AppInfo};
/// use flowstore_core::raw::{sink::FlowFileSink, FlowIndex};
/// let sealed = seal_bytes("f", b"payload", &AppInfo::new("app", "1"));
/// let mut index = FlowIndex::default();
/// index.insert("f", "loc".into(), Some(sealed.digest())).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let dest = dir.path().join("out");
/// let mut sink = FlowFileSink::create(&index, "f", "loc", &dest, true).unwrap();
/// for chunk in sealed.to_bytes().unwrap().chunks(5) {
///     sink.push(chunk).unwrap();
/// }
/// let fetched = sink.finish(None).unwrap();
/// assert_eq!(std::fs::read(&dest).unwrap(), b"payload");
/// assert_eq!(fetched.size(), 7);
/// ```
pub struct FlowFileSink<'a> {
    index: &'a FlowIndex,
    name: String,
    location: String,
    dest: PathBuf,
    out: Option<NewFile>,
    whole: DigestBuilder,
    mode: Mode,
    size: u64,
}

enum Mode {
    /// Serialized, before the first chunk decided what it is.
    Undecided,
    /// A flowstore envelope: the payload goes to the file.
    Envelope(Box<StreamCheck>),
    /// Not an envelope (a Prefect 1 pickle): buffered and decoded at the end.
    Buffered(BytesMut),
    /// A script: every byte goes to the file.
    Script,
}

impl<'a> FlowFileSink<'a> {
    /// A sink writing flow `name` (stored at `location`, recorded in `index`) to `dest`.
    /// `serialized`: the storage stores envelopes (else scripts).
    ///
    /// Errors with [`Error::Io`] when `dest`'s directory cannot be written.
    pub fn create(
        index: &'a FlowIndex,
        name: &str,
        location: &str,
        dest: &Path,
        serialized: bool,
    ) -> Result<Self> {
        let out = NewFile::create(dest, true)
            .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        Ok(FlowFileSink {
            index,
            name: name.to_string(),
            location: location.to_string(),
            dest: dest.to_path_buf(),
            out: Some(out),
            whole: DigestBuilder::new(),
            mode: if serialized {
                Mode::Undecided
            } else {
                Mode::Script
            },
            size: 0,
        })
    }

    /// Takes the next chunk. Errors with [`Error::FlowCorrupt`] as soon as the envelope is known
    /// to be wrong, and [`Error::Io`] when the file cannot be written.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.whole.update(chunk);
        if matches!(self.mode, Mode::Undecided) {
            let looks_like_envelope = chunk.starts_with(&MAGIC[..chunk.len().min(MAGIC.len())]);
            self.mode = if looks_like_envelope {
                Mode::Envelope(Box::new(StreamCheck::new(&self.name, &self.location)))
            } else {
                Mode::Buffered(BytesMut::new())
            };
        }
        let payload: &[u8] = match &mut self.mode {
            Mode::Envelope(check) => check.update(chunk)?,
            Mode::Buffered(buf) => {
                if buf.len() + chunk.len() > MAX_BUFFERED {
                    return Err(Error::FlowCorrupt {
                        flow: self.name.clone(),
                        location: self.location.clone(),
                        reason:
                            "it is not a flowstore envelope and too large to be a Prefect 1 flow"
                                .into(),
                    });
                }
                buf.extend_from_slice(chunk);
                return Ok(());
            }
            Mode::Script | Mode::Undecided => chunk,
        };
        let out = self.out.as_mut().expect("open until finish");
        out.file()
            .write_all(payload)
            .map_err(|e| Error::io(format!("writing {}", self.dest.display()), e))?;
        self.size += payload.len() as u64;
        Ok(())
    }

    /// Verifies the registration digest and the envelope, then makes the file appear at `dest`
    /// (never replacing an existing file). On any error nothing is left behind.
    pub fn finish(mut self, revision: Option<String>) -> Result<FetchedFlow> {
        self.index
            .verify_computed(&self.name, &self.location, &self.whole.clone().finish())?;
        let out = self.out.take().expect("open until finish");
        let never_replaced = |dest: &Path, e| {
            Error::io(
                format!(
                    "writing {} (an existing file is never replaced)",
                    dest.display()
                ),
                e,
            )
        };
        let mode = std::mem::replace(&mut self.mode, Mode::Script);
        let header = match mode {
            Mode::Envelope(check) => Some(check.finish()?.header),
            Mode::Buffered(buf) => {
                drop(out);
                let content =
                    crate::flow::decode_stored(&self.name, &self.location, Bytes::from(buf))?;
                let fetched = FetchedFlow {
                    name: self.name.clone(),
                    location: self.location.clone(),
                    revision,
                    content,
                };
                atomic::write_new(&self.dest, fetched.bytes(), true)
                    .map_err(|e| never_replaced(&self.dest, e))?;
                return Ok(fetched);
            }
            Mode::Undecided => {
                return Err(Error::FlowCorrupt {
                    flow: self.name.clone(),
                    location: self.location.clone(),
                    reason: "the stored object is empty".into(),
                })
            }
            Mode::Script => None,
        };
        out.commit(&self.dest)
            .map_err(|e| never_replaced(&self.dest, e))?;
        Ok(FetchedFlow {
            name: self.name,
            location: self.location,
            revision,
            content: FlowContent::File {
                path: self.dest,
                size: self.size,
                header,
            },
        })
    }
}

/// `sha256:<hex>` of a file, read in 1 MiB chunks (blocking: call it from a blocking context).
///
/// Errors with [`Error::Io`] naming the file.
pub fn file_digest(path: &Path) -> Result<String> {
    crate::bundle::digest_file(path).map(|(digest, _)| digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{seal_bytes, AppInfo};

    fn index(name: &str, digest: Option<String>) -> FlowIndex {
        let mut i = FlowIndex::default();
        i.insert(name, "loc".into(), digest).unwrap();
        i
    }

    #[test]
    fn a_prefect_pickle_is_decoded_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let idx = index("f", None);
        let mut sink = FlowFileSink::create(&idx, "f", "loc", &dest, true).unwrap();
        sink.push(br#"{"flow": "gASVAAAAAAAAAAA=", "#).unwrap();
        sink.push(br#""versions": {"prefect": "1.4.1"}}"#).unwrap();
        let fetched = sink.finish(None).unwrap();
        assert_eq!(fetched.form(), "prefect1-pickle");
        assert_eq!(std::fs::read(&dest).unwrap()[0], 0x80);
    }

    #[test]
    fn a_digest_mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let sealed = seal_bytes("f", b"payload", &AppInfo::new("a", "1"));
        let idx = index("f", Some("sha256:00".into()));
        let mut sink = FlowFileSink::create(&idx, "f", "loc", &dest, true).unwrap();
        sink.push(&sealed.to_bytes().unwrap()).unwrap();
        assert!(matches!(sink.finish(None), Err(Error::FlowCorrupt { .. })));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn scripts_are_copied_whole_and_empty_objects_refused() {
        let dir = tempfile::tempdir().unwrap();
        let idx = index("s", None);
        let mut sink =
            FlowFileSink::create(&idx, "s", "loc", &dir.path().join("s.py"), false).unwrap();
        sink.push(b"print(1)").unwrap();
        assert_eq!(sink.finish(None).unwrap().size(), 8);
        let sink = FlowFileSink::create(&idx, "s", "loc", &dir.path().join("e"), true).unwrap();
        assert!(sink.finish(None).unwrap_err().to_string().contains("empty"));
    }
}
