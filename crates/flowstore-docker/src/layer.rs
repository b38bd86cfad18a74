//! Building a gzipped layer of files (or of a bundle's tree), and reading one file back out of a
//! layer.

use std::collections::BTreeSet;
use std::io::{Read, Write};

use bytes::Bytes;
use flowstore_core::bundle::ScannedBundle;
use flowstore_core::Error as CoreError;
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;

/// A layer: the gzipped tar and the digest of the uncompressed tar (its `diff_id`).
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

/// A layer holding `files` (absolute image path → contents, mode). Directories are created;
/// entries have mtime 0, so the same files make the same layer.
///
/// Errors only when the tar or gzip writer fails.
pub fn build(files: &[(String, Vec<u8>, u32)]) -> std::io::Result<Layer> {
    let mut tar_bytes = Vec::new();
    {
        let mut t = tar::Builder::new(&mut tar_bytes);
        let mut dirs = std::collections::BTreeSet::new();
        for (path, _, _) in files {
            let p = std::path::Path::new(path.trim_start_matches('/'));
            let mut acc = std::path::PathBuf::new();
            for c in p.parent().into_iter().flat_map(|d| d.components()) {
                acc.push(c);
                dirs.insert(acc.clone());
            }
        }
        for d in dirs {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            h.set_cksum();
            t.append_data(&mut h, format!("{}/", d.display()), std::io::empty())?;
        }
        for (path, content, mode) in files {
            let mut h = tar::Header::new_ustar();
            h.set_mode(*mode);
            h.set_size(content.len() as u64);
            h.set_mtime(0);
            h.set_cksum();
            t.append_data(&mut h, path.trim_start_matches('/'), content.as_slice())?;
        }
        t.finish()?;
    }
    let diff_id = Digest::of(&tar_bytes);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar_bytes)?;
    Ok(Layer {
        gz: Bytes::from(gz.finish()?),
        diff_id,
    })
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what it reads.
struct Counting<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

fn sha256_digest(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
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

/// A deterministic layer holding a bundle's tree under `dir` (an absolute image path such as
/// `/opt/flowstore/flows/etl.bundle`; `""` for an archive of the tree alone). The same tree gives
/// the same bytes, so the same layer digest, and a registry that has the layer is not sent it again:
///
/// - every directory on the way (`dir`'s ancestors, `dir`, the tree's own directories) first,
///   sorted, mode `0755`; then the files in manifest order (sorted by path bytes), each with the
///   manifest's mode (`0644`/`0755`);
/// - ustar headers with mtime 0, uid/gid 0 and no user or group names; GNU long-name entries for
///   paths longer than ustar holds;
/// - gzip at the default level with no timestamp or file name.
///
/// Each file is read from disk as the layer is written (only the compressed layer is held in
/// memory) and checked against the digest and size the scan recorded.
///
/// Errors with [`CoreError::Config`] naming a file that changed since the scan (register the flow
/// again), and [`CoreError::Io`] naming a file that cannot be read.
pub fn bundle(dir: &str, bundle: &ScannedBundle) -> flowstore_core::Result<Layer> {
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
    let writer = Hashing {
        inner: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()),
        hasher: Sha256::new(),
    };
    let mut t = tar::Builder::new(writer);
    for d in &dirs {
        let mut h = fixed_header(tar::EntryType::Directory, 0o755, 0);
        t.append_data(&mut h, format!("{d}/"), std::io::empty())
            .map_err(failed)?;
    }
    for f in &bundle.files {
        let source = std::fs::File::open(&f.source)
            .map_err(|e| CoreError::io(format!("reading {}", f.source.display()), e))?;
        let mut reader = Counting {
            inner: source.take(f.file.size),
            hasher: Sha256::new(),
            read: 0,
        };
        let mut h = fixed_header(tar::EntryType::Regular, f.file.mode.bits(), f.file.size);
        t.append_data(&mut h, join(&f.file.path), &mut reader)
            .map_err(|e| CoreError::io(format!("reading {}", f.source.display()), e))?;
        if reader.read != f.file.size || sha256_digest(reader.hasher) != f.file.digest {
            return Err(CoreError::config(format!(
                "Cannot build the layer of bundle {}: its file {:?} changed after it was scanned. Add the flow again once the tree is stable.",
                bundle.root.display(),
                f.file.path
            )));
        }
    }
    let hashing = t.into_inner().map_err(failed)?;
    let diff_id = sha256_digest(hashing.hasher)
        .parse()
        .expect("a sha256 digest parses");
    let gz = hashing.inner.finish().map_err(failed)?;
    Ok(Layer {
        gz: Bytes::from(gz),
        diff_id,
    })
}

/// The contents of `path` (absolute image path) in a gzipped layer, if present.
///
/// Errors when the layer is not a gzipped tar.
pub fn read_file(gz: &[u8], path: &str) -> std::io::Result<Option<Vec<u8>>> {
    let want = path.trim_start_matches('/');
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_string_lossy().trim_start_matches("./") == want {
            let mut out = Vec::new();
            entry.read_to_end(&mut out)?;
            return Ok(Some(out));
        }
    }
    Ok(None)
}
