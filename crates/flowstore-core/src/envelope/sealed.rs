//! [`SealedFlow`]: a flow sealed into an envelope, held in memory or read from its file as it is
//! stored, so a flow of any size registers in constant memory.
//!
//! [`seal_file`] seals a large file in two passes over it: one to compute the envelope's inner
//! digest (which the envelope's first line records, so it must be known before the first byte
//! is written), one to compute the digest of the whole envelope (which the reference records).
//! A storage then reads the flow a third time as it writes it, through a [`SealedReader`] or
//! [`SealedFlow::stream`], which refuse to end cleanly if the file changed since it was sealed:
//! the write is abandoned and nothing half-written or different is stored.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream::BoxStream;
use sha2::{Digest as _, Sha256};

use super::{first_line, header_line, sha256_digest, AppInfo, Codec, MAGIC};

/// Files up to this size are sealed in memory (one read); larger ones stay in their file.
pub const IN_MEMORY_LIMIT: u64 = 8 * 1024 * 1024;
/// The chunk size of [`SealedFlow::stream`] and of the passes over a file.
const CHUNK: usize = 1 << 20;

/// A flow sealed into envelope bytes, ready for [`Storage::add_flow`](crate::Storage::add_flow).
///
/// Small flows are held in memory; [`seal_file`] keeps a large flow in its file and reads it
/// only while a storage writes it. Either way [`SealedFlow::digest`] is the digest of the whole
/// envelope, known before anything is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedFlow {
    /// The flow's name.
    pub name: String,
    body: Body,
    digest: String,
}

#[derive(Clone, PartialEq, Eq)]
enum Body {
    /// The whole envelope.
    Memory(Bytes),
    /// The envelope's first two lines, then `payload_len` bytes of the file at `path`.
    File {
        head: Bytes,
        path: PathBuf,
        payload_len: u64,
    },
}

impl std::fmt::Debug for SealedFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SealedFlow");
        d.field("name", &self.name).field("len", &self.len());
        if let Body::File { path, .. } = &self.body {
            d.field("file", path);
        }
        d.finish()
    }
}

impl SealedFlow {
    /// A sealed flow from whole envelope bytes (as [`seal`](super::seal) made them, or as read
    /// back from a storage). The bytes are not checked here: [`Envelope::open`](super::Envelope::open)
    /// checks them when the flow is fetched.
    ///
    /// ```
    /// use flowstore_core::envelope::{seal_bytes, AppInfo, SealedFlow};
    /// let sealed = seal_bytes("f", b"payload", &AppInfo::new("app", "1"));
    /// let again = SealedFlow::from_envelope("f", sealed.to_bytes().unwrap());
    /// assert_eq!(again, sealed);
    /// ```
    pub fn from_envelope(name: impl Into<String>, bytes: Bytes) -> Self {
        SealedFlow {
            name: name.into(),
            digest: sha256_digest(&bytes),
            body: Body::Memory(bytes),
        }
    }

    /// The digest of the whole envelope, as recorded in storage references (`sha256:<hex>`).
    pub fn digest(&self) -> String {
        self.digest.clone()
    }

    /// The envelope's length in bytes.
    pub fn len(&self) -> u64 {
        match &self.body {
            Body::Memory(b) => b.len() as u64,
            Body::File {
                head, payload_len, ..
            } => head.len() as u64 + payload_len,
        }
    }

    /// True for an envelope of no bytes (never: an envelope has at least its two header lines).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload's length in bytes (the flow itself, without the envelope's header).
    pub fn payload_len(&self) -> u64 {
        match &self.body {
            Body::Memory(b) => super::peek_header(b).map_or(0, |h| h.length),
            Body::File { payload_len, .. } => *payload_len,
        }
    }

    /// The envelope bytes when they are held in memory; `None` for a flow sealed from a large
    /// file (read it with [`SealedFlow::reader`] or [`SealedFlow::stream`]).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.body {
            Body::Memory(b) => Some(b),
            Body::File { .. } => None,
        }
    }

    /// The whole envelope in memory: a cheap clone when it is held there, else the file read
    /// whole (for storages that must hold a flow, such as compiled-in modules).
    ///
    /// Errors: the file cannot be read, or it changed since it was sealed.
    pub fn to_bytes(&self) -> io::Result<Bytes> {
        match &self.body {
            Body::Memory(b) => Ok(b.clone()),
            Body::File { .. } => {
                let mut out = Vec::with_capacity(self.len() as usize);
                self.reader()?.read_to_end(&mut out)?;
                Ok(Bytes::from(out))
            }
        }
    }

    /// A reader of the whole envelope. At its end it checks that what it read has the sealed
    /// length and digest, and fails with an error naming the file if not: copy from it into a
    /// temporary object and publish that only once the copy succeeded.
    ///
    /// Errors: the file cannot be opened.
    ///
    /// ```
    /// use std::io::Read;
    /// use flowstore_core::envelope::{seal_bytes, AppInfo};
    /// let sealed = seal_bytes("f", b"payload", &AppInfo::new("app", "1"));
    /// let mut all = Vec::new();
    /// sealed.reader().unwrap().read_to_end(&mut all).unwrap();
    /// assert_eq!(all, sealed.to_bytes().unwrap());
    /// ```
    pub fn reader(&self) -> io::Result<SealedReader> {
        let (head, file) = match &self.body {
            Body::Memory(b) => (b.clone(), None),
            Body::File {
                head,
                path,
                payload_len,
            } => (
                head.clone(),
                Some(FilePart {
                    file: File::open(path)?,
                    path: path.clone(),
                    left: *payload_len,
                }),
            ),
        };
        let verify = file.is_some().then(|| (Sha256::new(), self.digest.clone()));
        Ok(SealedReader {
            head,
            at: 0,
            file,
            verify,
        })
    }

    /// The whole envelope as a stream of chunks of at most 1 MiB, read on the blocking thread
    /// pool; the last item is an error if the file changed since it was sealed (see
    /// [`SealedFlow::reader`]). For uploads: stop and abandon the upload at the first error.
    pub fn stream(&self) -> BoxStream<'static, io::Result<Bytes>> {
        use futures::StreamExt;
        if let Body::Memory(b) = &self.body {
            let chunks: Vec<io::Result<Bytes>> = (0..b.len())
                .step_by(CHUNK)
                .map(|at| Ok(b.slice(at..(at + CHUNK).min(b.len()))))
                .collect();
            return futures::stream::iter(chunks).boxed();
        }
        let reader = self.reader();
        futures::stream::unfold(Some(reader), |state| async move {
            let mut reader = match state? {
                Ok(r) => r,
                Err(e) => return Some((Err(e), None)),
            };
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    match reader.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return (Err(e), reader),
                    }
                }
                buf.truncate(filled);
                (Ok(Bytes::from(buf)), reader)
            })
            .await;
            match read {
                Ok((Ok(chunk), _)) if chunk.is_empty() => None,
                Ok((Ok(chunk), reader)) => Some((Ok(chunk), Some(Ok(reader)))),
                Ok((Err(e), _)) => Some((Err(e), None)),
                Err(e) => Some((
                    Err(io::Error::other(format!("reader task failed: {e}"))),
                    None,
                )),
            }
        })
        .boxed()
    }
}

/// The file part of a [`SealedReader`].
struct FilePart {
    file: File,
    path: PathBuf,
    left: u64,
}

/// Reads a [`SealedFlow`]'s envelope (see [`SealedFlow::reader`]).
pub struct SealedReader {
    head: Bytes,
    at: usize,
    file: Option<FilePart>,
    /// For a file-backed flow: the digest of what was read so far, and the sealed digest.
    verify: Option<(Sha256, String)>,
}

impl std::fmt::Debug for SealedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedReader")
            .field("file", &self.file.as_ref().map(|p| &p.path))
            .finish()
    }
}

impl SealedReader {
    /// Called once the file part is read: the file must end here and hash as sealed.
    fn check_end(&mut self) -> io::Result<()> {
        let Some(part) = self.file.take() else {
            return Ok(());
        };
        let mut probe = [0u8; 1];
        let mut file = &part.file;
        if file.read(&mut probe)? != 0 {
            return Err(changed(&part.path, "grew"));
        }
        if let Some((hasher, sealed)) = self.verify.take() {
            let read = format!("sha256:{}", hex::encode(hasher.finalize()));
            if read != sealed {
                return Err(changed(&part.path, "was rewritten"));
            }
        }
        Ok(())
    }
}

fn changed(path: &Path, how: &str) -> io::Error {
    io::Error::other(format!(
        "{} {how} after it was sealed: nothing was stored; register it again once it is complete",
        path.display()
    ))
}

impl Read for SealedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = if self.at < self.head.len() {
            let n = buf.len().min(self.head.len() - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            n
        } else if let Some(part) = &mut self.file {
            if part.left == 0 {
                self.check_end()?;
                return Ok(0);
            }
            let want = buf.len().min(part.left.min(usize::MAX as u64) as usize);
            let n = part.file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(changed(&part.path, "shrank"));
            }
            part.left -= n as u64;
            n
        } else {
            return Ok(0);
        };
        if let Some((hasher, _)) = &mut self.verify {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Seals the contents of a file with the `raw` codec. A file up to [`IN_MEMORY_LIMIT`] is read
/// into the envelope in memory; a larger one stays in its file (two passes over it now to
/// compute the digests, a third when a storage writes it), so sealing and storing it takes
/// constant memory. The envelope is byte-for-byte what [`seal_bytes`](super::seal_bytes) gives
/// for the same contents.
///
/// Errors: the file cannot be read, or it changed size while it was read.
///
/// ```
/// use flowstore_core::envelope::{seal_bytes, seal_file, AppInfo};
/// let app = AppInfo::new("app", "1");
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("flow.bin");
/// std::fs::write(&path, b"payload").unwrap();
/// let sealed = seal_file("f", &path, &app).unwrap();
/// assert_eq!(sealed, seal_bytes("f", b"payload", &app));
/// ```
pub fn seal_file(name: &str, path: &Path, app: &AppInfo) -> io::Result<SealedFlow> {
    seal_file_with_limit(name, path, app, IN_MEMORY_LIMIT)
}

/// [`seal_file`] with the in-memory limit as a parameter (tests seal small files as large ones).
pub(crate) fn seal_file_with_limit(
    name: &str,
    path: &Path,
    app: &AppInfo,
    in_memory_limit: u64,
) -> io::Result<SealedFlow> {
    let file = File::open(path)?;
    let length = file.metadata()?.len();
    let header_line = header_line(name, Codec::Raw, length, app);
    if length <= in_memory_limit {
        let mut payload = Vec::with_capacity(length as usize);
        file.take(length + 1).read_to_end(&mut payload)?;
        if payload.len() as u64 != length {
            return Err(size_changed(path, length, payload.len() as u64));
        }
        return Ok(super::seal_payload(name, Codec::Raw, &payload, app));
    }
    // Pass 1: the envelope's inner digest, over the header line and the payload.
    let mut inner = Sha256::new();
    inner.update(&header_line);
    let read = hash_file(file, &mut inner)?;
    if read != length {
        return Err(size_changed(path, length, read));
    }
    let first_line = first_line(inner);
    let mut head = Vec::with_capacity(MAGIC.len() + first_line.len() + header_line.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(first_line.as_bytes());
    head.extend_from_slice(&header_line);
    // Pass 2: the digest of the whole envelope.
    let mut whole = Sha256::new();
    whole.update(&head);
    let read = hash_file(File::open(path)?, &mut whole)?;
    if read != length {
        return Err(size_changed(path, length, read));
    }
    Ok(SealedFlow {
        name: name.to_string(),
        digest: format!("sha256:{}", hex::encode(whole.finalize())),
        body: Body::File {
            head: Bytes::from(head),
            path: path.to_path_buf(),
            payload_len: length,
        },
    })
}

fn hash_file(mut file: File, hasher: &mut Sha256) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

fn size_changed(path: &Path, before: u64, after: u64) -> io::Error {
    io::Error::other(format!(
        "{} changed size while it was read ({before} bytes, then {after}): register it again once it is complete",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{seal_bytes, Envelope};
    use futures::TryStreamExt;

    fn app() -> AppInfo {
        AppInfo::new("my-app", "1.0.0")
    }

    fn contents(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn a_file_sealed_in_place_reads_as_the_same_envelope_as_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 4096, CHUNK + 7, 3 * CHUNK] {
            let path = dir.path().join(format!("f{len}"));
            let data = contents(len);
            std::fs::write(&path, &data).unwrap();
            let in_place = seal_file_with_limit("F", &path, &app(), 0).unwrap();
            let in_memory = seal_bytes("F", &data, &app());
            assert_eq!(
                in_place.as_bytes().is_none(),
                len > 0,
                "{len} B stay in their file"
            );
            assert_eq!(in_place.digest(), in_memory.digest());
            assert_eq!(in_place.len(), in_memory.len());
            assert_eq!(in_place.payload_len(), len as u64);
            let read = in_place.to_bytes().unwrap();
            assert_eq!(read, in_memory.to_bytes().unwrap());
            let env = Envelope::open("F", "loc", read).unwrap();
            assert_eq!(env.payload().as_ref(), &data[..]);
        }
    }

    #[tokio::test]
    async fn the_stream_yields_the_envelope_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = contents(2 * CHUNK + 5);
        std::fs::write(&path, &data).unwrap();
        for limit in [0, u64::MAX] {
            let sealed = seal_file_with_limit("F", &path, &app(), limit).unwrap();
            let chunks: Vec<Bytes> = sealed.stream().try_collect().await.unwrap();
            assert!(chunks.iter().all(|c| c.len() <= CHUNK && !c.is_empty()));
            assert_eq!(
                chunks.concat(),
                seal_bytes("F", &data, &app()).to_bytes().unwrap()
            );
        }
    }

    #[tokio::test]
    async fn a_file_changed_after_sealing_is_refused_at_the_end_of_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = contents(CHUNK + 100);
        let cases: [(&str, Vec<u8>); 3] = [
            ("was rewritten", {
                let mut d = data.clone();
                d[CHUNK / 2] ^= 1;
                d
            }),
            ("shrank", data[..data.len() - 1].to_vec()),
            ("grew", [&data[..], b"x"].concat()),
        ];
        for (how, changed) in cases {
            std::fs::write(&path, &data).unwrap();
            let sealed = seal_file_with_limit("F", &path, &app(), 0).unwrap();
            std::fs::write(&path, &changed).unwrap();
            let e = sealed.to_bytes().unwrap_err().to_string();
            assert!(
                e.contains(how) && e.contains(&path.display().to_string()),
                "{e}"
            );
            assert!(e.contains("nothing was stored"), "{e}");
            let streamed: io::Result<Vec<Bytes>> = sealed.stream().try_collect().await;
            let e = streamed.unwrap_err().to_string();
            assert!(e.contains(how), "{e}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let e = seal_file("F", &dir.path().join("missing"), &app()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn debug_shows_the_file_not_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"secret-looking payload").unwrap();
        let sealed = seal_file_with_limit("F", &path, &app(), 0).unwrap();
        let shown = format!("{sealed:?}");
        assert!(
            shown.contains("file") && !shown.contains("secret-looking"),
            "{shown}"
        );
    }
}
