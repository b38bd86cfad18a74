//! Building a gzipped layer of files, and reading one file back out of a layer.

use std::io::{Read, Write};

use bytes::Bytes;

use crate::oci::Digest;

/// A layer: the gzipped tar and the digest of the uncompressed tar (its `diff_id`).
pub struct Layer {
    /// The gzipped tar.
    pub gz: Bytes,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
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
