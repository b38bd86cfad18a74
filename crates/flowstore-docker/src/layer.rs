//! Building a gzipped layer (of image files, or of a bundle's tree) in one streaming pass, and
//! reading one file back out of a layer as it streams in.
//!
//! One writer, [`LayerWriter`], builds every layer: tar entries go through a SHA-256 (the
//! layer's `diff_id`), gzip, and a second SHA-256 and byte count (the blob digest and size) into
//! any [`Write`]: a `Vec` for small layers ([`build`], [`bundle`]), a temporary file for the
//! layers a daemonless build pushes ([`LayerFile`]), so a flow of any size is never held in
//! memory. Each file's bytes are read from their source as the entry is written.

use std::collections::BTreeSet;
use std::io::{self, Read, Seek, Write};

use bytes::Bytes;
use flowstore_core::bundle::ScannedBundle;
use flowstore_core::envelope::SealedFlow;
use flowstore_core::Error as CoreError;
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;

/// A layer held in memory: the gzipped tar and the digest of the uncompressed tar (its
/// `diff_id`).
pub struct Layer {
    /// The gzipped tar.
    pub gz: Bytes,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("gz_bytes", &self.gz.len())
            .field("diff_id", &self.diff_id)
            .finish()
    }
}

/// A layer written to an anonymous temporary file (removed when it is dropped): its digests and
/// size were computed while it was written, so it is pushed straight from the file.
#[derive(Debug)]
pub struct LayerFile {
    file: std::fs::File,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The digest of the gzipped tar (the blob's digest).
    pub digest: Digest,
    /// The gzipped tar's size in bytes.
    pub size: u64,
}

impl LayerFile {
    /// Builds a layer into a new temporary file (in [`std::env::temp_dir`], `TMPDIR`): `write`
    /// adds the entries.
    ///
    /// Errors when the temporary file cannot be made or written, and with whatever `write`
    /// returns.
    pub fn build<E: From<CoreError>>(
        write: impl FnOnce(&mut LayerWriter<io::BufWriter<std::fs::File>>) -> Result<(), E>,
    ) -> Result<LayerFile, E> {
        let temp = |e| {
            CoreError::io(
                format!(
                    "writing an image layer to a temporary file in {} (set TMPDIR to a directory with room for it)",
                    std::env::temp_dir().display()
                ),
                e,
            )
        };
        let file = tempfile::tempfile().map_err(temp)?;
        let mut layer = LayerWriter::new(io::BufWriter::with_capacity(1 << 16, file));
        write(&mut layer)?;
        let built = layer.finish().map_err(temp)?;
        let file = built.out.into_inner().map_err(|e| temp(e.into_error()))?;
        Ok(LayerFile {
            file,
            diff_id: built.diff_id,
            digest: built.digest,
            size: built.size,
        })
    }

    /// The file, positioned at its start, for reading the layer (a handle sharing its position
    /// with this one).
    ///
    /// Errors when the file cannot be duplicated or rewound.
    pub fn reader(&self) -> io::Result<std::fs::File> {
        let mut file = self.file.try_clone()?;
        file.rewind()?;
        Ok(file)
    }
}

/// A finished [`LayerWriter`]: where the gzipped tar went, with its digests and size.
#[derive(Debug)]
pub struct Built<W> {
    /// The writer the gzipped tar was written to.
    pub out: W,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The digest of the gzipped tar.
    pub digest: Digest,
    /// The gzipped tar's size in bytes.
    pub size: u64,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn digest_of(hasher: Sha256) -> Digest {
    sha256_digest(hasher)
        .parse()
        .expect("a sha256 digest parses")
}

fn sha256_digest(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// A reader that must give exactly `size` bytes before its end: the tar entry's header was
/// written with that size. It reads its inner reader to the end (so a [`SealedFlow`]'s reader
/// runs its final check), and fails on a byte more or a byte less.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("it ended {} bytes before its recorded size", self.left),
            ));
        }
        if n as u64 > self.left {
            return Err(io::Error::other(
                "it is longer than its recorded size (it changed while the layer was written)",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A ustar header with nothing that varies: mtime 0, uid and gid 0, no user or group name.
fn fixed_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Writes a deterministic tar: fixed headers (`fixed_header`), GNU long-name entries for paths
/// longer than ustar holds. Used on its own for an Engine build context, and inside every
/// [`LayerWriter`].
pub struct TarWriter<W: Write> {
    tar: tar::Builder<W>,
}

impl<W: Write> TarWriter<W> {
    /// A tar written to `out`.
    pub fn new(out: W) -> Self {
        let tar = tar::Builder::new(out);
        TarWriter { tar }
    }

    /// A directory entry (`path` without a trailing `/`; mode `0755`).
    ///
    /// Errors when the writer fails.
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let mut h = fixed_header(tar::EntryType::Directory, 0o755, 0);
        self.tar
            .append_data(&mut h, format!("{}/", path.trim_matches('/')), io::empty())
    }

    /// A regular file of `size` bytes read from `content` (to its end: it must give exactly
    /// `size` bytes).
    ///
    /// Errors with `content`'s own error (kept as is, so its message and source survive) or when
    /// it gives more or fewer than `size` bytes, and when the writer fails.
    pub fn file(&mut self, path: &str, mode: u32, size: u64, content: impl Read) -> io::Result<()> {
        let mut h = fixed_header(tar::EntryType::Regular, mode, size);
        let mut exact = Exact {
            inner: content,
            left: size,
        };
        self.tar
            .append_data(&mut h, path.trim_start_matches('/'), &mut exact)
    }

    /// Writes the tar's end and returns the writer.
    ///
    /// Errors when the writer fails.
    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}

/// Writes a gzipped layer in one pass, computing its `diff_id` (SHA-256 of the tar), its blob
/// digest (SHA-256 of the gzipped tar) and its size as it goes; gzip at the default level with
/// no timestamp or file name, so the same entries give the same bytes.
pub struct LayerWriter<W: Write> {
    tar: TarWriter<Hashing<flate2::write::GzEncoder<Hashing<W>>>>,
}

impl<W: Write> LayerWriter<W> {
    /// A layer written to `out`.
    pub fn new(out: W) -> Self {
        let gz = flate2::write::GzEncoder::new(Hashing::new(out), flate2::Compression::default());
        LayerWriter {
            tar: TarWriter::new(Hashing::new(gz)),
        }
    }

    /// The tar being written.
    pub fn tar(&mut self) -> &mut TarWriter<impl Write> {
        &mut self.tar
    }

    /// Ends the tar and the gzip stream; returns the writer with the digests and size.
    ///
    /// Errors when the writer fails.
    pub fn finish(self) -> io::Result<Built<W>> {
        let tar = self.tar.finish()?;
        let diff_id = digest_of(tar.hasher);
        let mut gz = tar.inner.finish()?;
        gz.flush()?;
        Ok(Built {
            digest: digest_of(gz.hasher),
            size: gz.written,
            out: gz.inner,
            diff_id,
        })
    }
}

/// What an image file holds, read only as its entry is written.
#[derive(Clone)]
pub(crate) enum Content {
    /// Bytes in memory (host files, the checklist).
    Bytes(Bytes),
    /// A sealed flow: in memory or in its file, read through [`SealedFlow::reader`] (which fails
    /// at its end if the file changed since it was sealed).
    Sealed(SealedFlow),
}

impl Content {
    /// The size in bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Sealed(s) => s.len(),
        }
    }

    /// The hex SHA-256 of the contents (a sealed flow's is its digest: nothing is read).
    pub(crate) fn sha256_hex(&self) -> String {
        match self {
            Content::Bytes(b) => hex::encode(Sha256::digest(b)),
            Content::Sealed(s) => {
                let d = s.digest();
                d.strip_prefix("sha256:").unwrap_or(&d).to_string()
            }
        }
    }

    /// A reader of the contents.
    ///
    /// Errors when a sealed flow's file cannot be opened.
    pub(crate) fn reader(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match self {
            Content::Bytes(b) => Box::new(&b[..]),
            Content::Sealed(s) => Box::new(s.reader()?),
        })
    }
}

/// A file of an image layer: absolute image path, mode, contents, and what it is (`flow "ETL"`,
/// `host file /etc/hosts`) for errors.
#[derive(Clone)]
pub(crate) struct ImageFile {
    pub(crate) path: String,
    pub(crate) mode: u32,
    pub(crate) content: Content,
    pub(crate) what: String,
}

/// Writes `files` into `tar` (a layer of `image`, for errors): first every directory on the way
/// to them (sorted), then the files ([`write_entries`]).
///
/// Errors as [`write_entries`] does.
pub(crate) fn write_files<W: Write>(
    tar: &mut TarWriter<W>,
    files: &[ImageFile],
    image: &str,
) -> flowstore_core::Result<()> {
    let mut dirs = BTreeSet::new();
    for f in files {
        let p = std::path::Path::new(f.path.trim_start_matches('/'));
        let mut acc = std::path::PathBuf::new();
        for c in p.parent().into_iter().flat_map(|d| d.components()) {
            acc.push(c);
            dirs.insert(acc.to_string_lossy().into_owned());
        }
    }
    for d in dirs {
        tar.dir(&d)
            .map_err(|e| CoreError::io(format!("writing {image}"), e))?;
    }
    write_entries(tar, files, image)
}

/// Writes each of `files` into `tar` (a layer or build context of `image`, for errors), in
/// order, read from its source as it is written.
///
/// Errors with [`CoreError::Io`] naming the file (`what`) whose source failed, the io error kept
/// as the source (a sealed flow whose file changed says "after it was sealed").
pub(crate) fn write_entries<W: Write>(
    tar: &mut TarWriter<W>,
    files: &[ImageFile],
    image: &str,
) -> flowstore_core::Result<()> {
    for f in files {
        let failed = |e| {
            CoreError::io(
                format!(
                    "writing {} into {image} at {}; nothing was pushed",
                    f.what, f.path
                ),
                e,
            )
        };
        let reader = f.content.reader().map_err(failed)?;
        tar.file(&f.path, f.mode, f.content.len(), reader)
            .map_err(failed)?;
    }
    Ok(())
}

/// A file read as a stream of chunks of up to 256 KiB (the body of a streamed upload).
pub(crate) fn file_stream(
    file: std::fs::File,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold(tokio::fs::File::from_std(file), |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = bytes::BytesMut::with_capacity(256 * 1024);
        while buf.len() < buf.capacity() {
            if file.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        Ok((!buf.is_empty()).then(|| (buf.freeze(), file)))
    })
}

/// A layer holding `files` (absolute image path → contents, mode), built in memory. Directories
/// are created; entries have mtime 0, so the same files make the same layer.
///
/// Errors only when the tar or gzip writer fails.
pub fn build(files: &[(String, Vec<u8>, u32)]) -> io::Result<Layer> {
    let files: Vec<ImageFile> = files
        .iter()
        .map(|(path, content, mode)| ImageFile {
            path: path.clone(),
            mode: *mode,
            content: Content::Bytes(Bytes::copy_from_slice(content)),
            what: format!("file {path}"),
        })
        .collect();
    let mut layer = LayerWriter::new(Vec::new());
    write_files(layer.tar(), &files, "the layer").map_err(io::Error::other)?;
    let built = layer.finish()?;
    Ok(Layer {
        gz: Bytes::from(built.out),
        diff_id: built.diff_id,
    })
}

/// A reader that hashes and counts what it reads.
struct Counting<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Writes a bundle's tree under `dir` into `tar` (see [`bundle`]).
fn write_bundle<W: Write>(
    tar: &mut TarWriter<W>,
    dir: &str,
    bundle: &ScannedBundle,
) -> flowstore_core::Result<()> {
    let prefix = dir.trim_matches('/');
    let join = |rel: &str| {
        if prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{prefix}/{rel}")
        }
    };
    let mut dirs = BTreeSet::new();
    let mut acc = String::new();
    for segment in prefix.split('/').filter(|s| !s.is_empty()) {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(segment);
        dirs.insert(acc.clone());
    }
    for f in &bundle.files {
        for (i, _) in f.file.path.match_indices('/') {
            dirs.insert(join(&f.file.path[..i]));
        }
    }
    let failed = |e| {
        CoreError::io(
            format!(
                "building the image layer of bundle {}",
                bundle.root.display()
            ),
            e,
        )
    };
    for d in &dirs {
        tar.dir(d).map_err(failed)?;
    }
    for f in &bundle.files {
        let source = std::fs::File::open(&f.source)
            .map_err(|e| CoreError::io(format!("reading {}", f.source.display()), e))?;
        let mut reader = Counting {
            inner: source.take(f.file.size),
            hasher: Sha256::new(),
            read: 0,
        };
        let written = tar.file(
            &join(&f.file.path),
            f.file.mode.bits(),
            f.file.size,
            &mut reader,
        );
        if reader.read != f.file.size || sha256_digest(reader.hasher) != f.file.digest {
            return Err(CoreError::config(format!(
                "Cannot build the layer of bundle {}: its file {:?} changed after it was scanned. Add the flow again once the tree is stable.",
                bundle.root.display(),
                f.file.path
            )));
        }
        written.map_err(|e| CoreError::io(format!("reading {}", f.source.display()), e))?;
    }
    Ok(())
}

/// A deterministic layer holding a bundle's tree under `dir` (an absolute image path such as
/// `/opt/flowstore/flows/etl.bundle`; `""` for an archive of the tree alone), built in memory.
/// The same tree gives the same bytes, so the same layer digest, and a registry that has the
/// layer is not sent it again:
///
/// - every directory on the way (`dir`'s ancestors, `dir`, the tree's own directories) first,
///   sorted, mode `0755`; then the files in manifest order (sorted by path bytes), each with the
///   manifest's mode (`0644`/`0755`);
/// - ustar headers with mtime 0, uid/gid 0 and no user or group names; GNU long-name entries for
///   paths longer than ustar holds;
/// - gzip at the default level with no timestamp or file name.
///
/// Each file is read from disk as the layer is written and checked against the digest and size
/// the scan recorded. [`bundle_file`] writes the same bytes to a temporary file instead.
///
/// Errors with [`CoreError::Config`] naming a file that changed since the scan (register the flow
/// again), and [`CoreError::Io`] naming a file that cannot be read.
pub fn bundle(dir: &str, bundle: &ScannedBundle) -> flowstore_core::Result<Layer> {
    let mut layer = LayerWriter::new(Vec::new());
    write_bundle(layer.tar(), dir, bundle)?;
    let built = layer.finish().map_err(|e| {
        CoreError::io(
            format!(
                "building the image layer of bundle {}",
                bundle.root.display()
            ),
            e,
        )
    })?;
    Ok(Layer {
        gz: Bytes::from(built.out),
        diff_id: built.diff_id,
    })
}

/// [`bundle`] written to a temporary file (nothing of the tree held in memory).
///
/// Errors as [`bundle`] does, and when the temporary file cannot be written.
pub fn bundle_file(dir: &str, scanned: &ScannedBundle) -> flowstore_core::Result<LayerFile> {
    LayerFile::build(|layer| write_bundle(layer.tar(), dir, scanned))
}

/// Reads a gzipped layer from `gz` to its end, and calls `found` with the entry at `path` (an
/// absolute image path) and its size when the layer holds it. Returns whether it did. `gz` is
/// read to its end either way (so a reader that checks a digest at its end gets to check it).
///
/// Errors when the layer is not a gzipped tar, and with what `found` returns.
pub fn find_file<R: Read, E: From<io::Error>>(
    mut gz: R,
    path: &str,
    found: impl FnOnce(&mut dyn Read, u64) -> Result<(), E>,
) -> Result<bool, E> {
    let want = path.trim_start_matches('/');
    let mut found = Some(found);
    {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&mut gz));
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.path()?.to_string_lossy().trim_start_matches("./") == want {
                let size = entry.size();
                (found.take().expect("called once"))(&mut entry, size)?;
                break;
            }
        }
    }
    io::copy(&mut gz, &mut io::sink())?;
    Ok(found.is_none())
}

/// The contents of `path` (absolute image path) in a gzipped layer, if present.
///
/// Errors when the layer is not a gzipped tar.
pub fn read_file(gz: &[u8], path: &str) -> io::Result<Option<Vec<u8>>> {
    let mut out = None;
    find_file(gz, path, |entry, size| {
        let mut content = Vec::with_capacity(size.min(1 << 30) as usize);
        entry.read_to_end(&mut content)?;
        out = Some(content);
        Ok::<(), io::Error>(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowstore_core::envelope::{seal_file, AppInfo};

    fn sealed_file(dir: &std::path::Path, len: usize) -> (std::path::PathBuf, SealedFlow) {
        let path = dir.join("flow.bin");
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let sealed = seal_file("F", &path, &AppInfo::new("a", "1")).unwrap();
        (path, sealed)
    }

    #[test]
    fn a_layer_file_has_the_bytes_and_digests_of_the_layer_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (_, sealed) = sealed_file(dir.path(), 9 * 1024 * 1024);
        assert!(sealed.as_bytes().is_none(), "kept in its file");
        let files = vec![ImageFile {
            path: "/opt/flowstore/flows/f.flow".into(),
            mode: 0o644,
            content: Content::Sealed(sealed.clone()),
            what: "flow \"F\"".into(),
        }];
        let built = LayerFile::build(|l| write_files(l.tar(), &files, "image x")).expect("built");
        let mut gz = Vec::new();
        built.reader().unwrap().read_to_end(&mut gz).unwrap();
        assert_eq!(built.size, gz.len() as u64);
        assert_eq!(built.digest, Digest::of(&gz));
        let in_memory = build(&[(
            "/opt/flowstore/flows/f.flow".into(),
            sealed.to_bytes().unwrap().to_vec(),
            0o644,
        )])
        .unwrap();
        assert_eq!(
            in_memory.gz.as_ref(),
            gz.as_slice(),
            "one builder, same bytes"
        );
        assert_eq!(in_memory.diff_id, built.diff_id);
        let back = read_file(&gz, "/opt/flowstore/flows/f.flow")
            .unwrap()
            .unwrap();
        assert!(back == sealed.to_bytes().unwrap().as_ref());
        assert_eq!(read_file(&gz, "/opt/other").unwrap(), None);
    }

    #[test]
    fn a_flow_changed_after_sealing_fails_the_layer_keeping_the_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, sealed) = sealed_file(dir.path(), 9 * 1024 * 1024);
        let mut data = std::fs::read(&path).unwrap();
        data[100] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let files = vec![ImageFile {
            path: "/opt/flowstore/flows/f.flow".into(),
            mode: 0o644,
            content: Content::Sealed(sealed),
            what: "flow \"F\"".into(),
        }];
        let err = LayerFile::build(|l| write_files(l.tar(), &files, "image x")).unwrap_err();
        assert!(err.to_string().contains("flow \"F\""), "{err}");
        assert!(err.to_string().contains("image x"), "{err}");
        let source = std::error::Error::source(&err).expect("the io error is kept");
        assert!(
            source.to_string().contains("after it was sealed"),
            "{source}"
        );
    }

    #[test]
    fn an_entry_of_another_size_than_its_header_is_refused() {
        let mut t = TarWriter::new(Vec::new());
        assert!(t.file("a", 0o644, 3, &b"ab"[..]).is_err());
        let mut t = TarWriter::new(Vec::new());
        assert!(t.file("a", 0o644, 1, &b"ab"[..]).is_err());
    }
}
