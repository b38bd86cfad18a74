//! [`Manifest`]: the list of a bundle's files, in one deterministic JSON document.
//!
//! ```json
//! {"flowstore_bundle":1,"entry":"flows/etl.py","files":[
//!   {"path":"flows/etl.py","size":812,"mode":"0644","digest":"sha256:…","pack":"sha256:…","offset":0},
//!   {"path":"data/model.bin","size":52428800,"mode":"0644","digest":"sha256:…"}, …]}
//! ```
//!
//! Small files travel in *packs*: a pack is the concatenation of a group of files' bytes, stored
//! as one blob named by its own digest, and `pack`/`offset` say where a file's bytes are in it.
//! Files go into packs by path (see [`crate::bundle::scan`]), so a pack depends only on its own
//! files and an edit to one file changes one pack. Large files are blobs of their own (no
//! `pack`). Every file is still verified by its own `digest`.
//!
//! Paths are sorted by their bytes and written without whitespace, so the same tree and entry
//! always give the same manifest bytes (and digest). Parsing refuses anything a materialized
//! tree must never contain: `..`, absolute paths, empty or `.` segments, duplicate or
//! overlapping paths, modes other than regular `0644`/`0755`, unknown fields (a symlink or
//! device entry written by a future or hostile tool), and sizes beyond the bounds below.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The format version written in `flowstore_bundle`.
pub const MANIFEST_FORMAT: u32 = 1;
/// The most files one bundle may hold.
pub const MAX_FILES: usize = 100_000;
/// The largest file a bundle may hold (4 GiB).
pub const MAX_FILE_SIZE: u64 = 4 << 30;
/// The largest total size of a bundle's files (16 GiB).
pub const MAX_TOTAL_SIZE: u64 = 16 << 30;
/// The largest manifest document parsed (32 MiB).
pub const MAX_MANIFEST_BYTES: usize = 32 << 20;
/// The longest path, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest path segment, in bytes (the usual file-name limit).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// The file a materialized tree carries at its root: the manifest it was built from. Its presence
/// tells a later fetch into the same directory that the directory is a bundle it may replace; no
/// bundle may hold a file of that name at its root.
pub const MARKER_FILE: &str = ".flowstore-bundle.json";

/// How a manifest begins; [`is_manifest`] checks for it.
const MAGIC: &[u8] = b"{\"flowstore_bundle\":";

/// A regular file's permissions, as bundles record them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileMode {
    /// `0644`: a regular file.
    #[serde(rename = "0644")]
    Regular,
    /// `0755`: an executable file.
    #[serde(rename = "0755")]
    Executable,
}

impl FileMode {
    /// The mode a file with these unix permission bits is recorded with (any execute bit:
    /// executable).
    pub fn from_permissions(bits: u32) -> Self {
        if bits & 0o111 != 0 {
            FileMode::Executable
        } else {
            FileMode::Regular
        }
    }

    /// `0o644` or `0o755`.
    pub fn bits(self) -> u32 {
        match self {
            FileMode::Regular => 0o644,
            FileMode::Executable => 0o755,
        }
    }
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Its path inside the tree, `/`-separated, relative.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its permissions.
    pub mode: FileMode,
    /// `sha256:<hex>` of its bytes: the name of its blob when it is not in a pack.
    pub digest: String,
    /// The pack holding its bytes (`sha256:<hex>` of the pack), if it travels in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// Where its bytes start in `pack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl ManifestFile {
    /// A file stored as a blob of its own.
    pub fn new(
        path: impl Into<String>,
        size: u64,
        mode: FileMode,
        digest: impl Into<String>,
    ) -> Self {
        ManifestFile {
            path: path.into(),
            size,
            mode,
            digest: digest.into(),
            pack: None,
            offset: None,
        }
    }

    /// The blob to fetch its bytes from and where in it: its pack at its offset, or its own blob.
    pub fn source(&self) -> (&str, u64) {
        match (&self.pack, self.offset) {
            (Some(pack), Some(offset)) => (pack, offset),
            _ => (&self.digest, 0),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    flowstore_bundle: u32,
    entry: String,
    files: Vec<ManifestFile>,
}

/// A bundle's manifest: its entry file and every file's path, size, mode and digest.
///
/// ```
/// use flowstore_core::bundle::{FileMode, Manifest, ManifestFile};
/// let digest = flowstore_core::envelope::sha256_digest(b"abc");
/// let file = ManifestFile::new("flow.py", 3, FileMode::Regular, digest);
/// let manifest = Manifest::new("flow.py", vec![file])?;
/// let again = Manifest::parse("My Flow", "memory", manifest.bytes())?;
/// assert_eq!(again, manifest);
/// # Ok::<(), flowstore_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    entry: String,
    files: Vec<ManifestFile>,
    bytes: bytes::Bytes,
}

impl Manifest {
    /// A manifest of `files` (sorted here) whose entry file is `entry`.
    ///
    /// Errors with [`Error::Config`] when a file breaks a rule of the module docs or the entry is
    /// not one of the files.
    pub fn new(entry: &str, mut files: Vec<ManifestFile>) -> Result<Self> {
        files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        validate(entry, &files)
            .map_err(|reason| Error::config(format!("Cannot make a bundle manifest: {reason}")))?;
        let document = Document {
            flowstore_bundle: MANIFEST_FORMAT,
            entry: entry.to_string(),
            files,
        };
        let bytes = serde_json::to_vec(&document)
            .map_err(|e| Error::config(format!("Cannot make a bundle manifest: {e}")))?;
        Ok(Manifest {
            entry: document.entry,
            files: document.files,
            bytes: bytes.into(),
        })
    }

    /// Parses and checks manifest bytes read for `flow` from `location`.
    ///
    /// Errors with [`Error::FlowCorrupt`] naming the flow, the location and the broken rule; a
    /// manifest from a newer flowstore says to upgrade.
    pub fn parse(flow: &str, location: &str, bytes: &[u8]) -> Result<Self> {
        let corrupt = |reason: String| Error::FlowCorrupt {
            flow: flow.to_string(),
            location: location.to_string(),
            reason,
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(corrupt(format!(
                "its bundle manifest is {} bytes; at most {MAX_MANIFEST_BYTES} are accepted",
                bytes.len()
            )));
        }
        let document: Document = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("its bundle manifest does not parse ({e})")))?;
        if document.flowstore_bundle != MANIFEST_FORMAT {
            return Err(corrupt(format!(
                "its bundle manifest has format {}; this flowstore reads format {MANIFEST_FORMAT} (upgrade flowstore)",
                document.flowstore_bundle
            )));
        }
        let sorted = document
            .files
            .windows(2)
            .all(|w| w[0].path.as_bytes() < w[1].path.as_bytes());
        if !sorted {
            return Err(corrupt(
                "its bundle manifest's paths are not sorted and unique".to_string(),
            ));
        }
        validate(&document.entry, &document.files)
            .map_err(|reason| corrupt(format!("its bundle manifest is refused: {reason}")))?;
        Ok(Manifest {
            entry: document.entry,
            files: document.files,
            bytes: bytes::Bytes::copy_from_slice(bytes),
        })
    }

    /// The entry file's path inside the tree.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// The files, sorted by path.
    pub fn files(&self) -> &[ManifestFile] {
        &self.files
    }

    /// The total size of the files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The manifest's bytes, as stored.
    pub fn bytes(&self) -> &bytes::Bytes {
        &self.bytes
    }

    /// Every blob the bundle's bytes are stored in (packs and files of their own), with its size,
    /// sorted by digest.
    pub fn blobs(&self) -> Vec<(&str, u64)> {
        let mut sizes: std::collections::BTreeMap<&str, u64> = Default::default();
        for f in &self.files {
            let (blob, offset) = f.source();
            let end = offset.saturating_add(f.size);
            let size = sizes.entry(blob).or_insert(0);
            *size = (*size).max(end);
        }
        sizes.into_iter().collect()
    }

    /// `sha256:<hex>` of the manifest's bytes (what a reference records for the flow).
    pub fn digest(&self) -> String {
        crate::envelope::sha256_digest(&self.bytes)
    }
}

/// True if `bytes` begin like a bundle manifest.
pub fn is_manifest(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Checks a path inside a bundle: relative, `/`-separated, no `.`/`..`/empty segments, no
/// backslashes or control characters, bounded lengths.
///
/// Errors with the reason, naming the path.
pub fn check_path(path: &str) -> std::result::Result<(), String> {
    let problem = if path.is_empty() {
        Some("it is empty")
    } else if path.len() > MAX_PATH_BYTES {
        Some("it is too long")
    } else if path.starts_with('/') {
        Some("it is absolute")
    } else if path.contains('\\') {
        Some("it contains a backslash")
    } else if path.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        Some("it has an empty, `.` or `..` segment")
    } else if path.split('/').any(|s| s.len() > MAX_SEGMENT_BYTES) {
        Some("a segment is longer than 255 bytes")
    } else {
        None
    };
    match problem {
        Some(p) => Err(format!("path {path:?}: {p}")),
        None => Ok(()),
    }
}

fn check_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn validate(entry: &str, files: &[ManifestFile]) -> std::result::Result<(), String> {
    if files.len() > MAX_FILES {
        return Err(format!(
            "it lists {} files; at most {MAX_FILES} are allowed",
            files.len()
        ));
    }
    let mut total: u64 = 0;
    for (i, file) in files.iter().enumerate() {
        check_path(&file.path)?;
        if file.path == MARKER_FILE {
            return Err(format!(
                "path {MARKER_FILE:?} is reserved for flowstore's own use"
            ));
        }
        if !check_digest(&file.digest) {
            return Err(format!(
                "file {:?}: digest {:?} is not sha256:<64 hex digits>",
                file.path, file.digest
            ));
        }
        match (&file.pack, file.offset) {
            (None, None) => {}
            (Some(pack), Some(offset)) => {
                if !check_digest(pack) {
                    return Err(format!(
                        "file {:?}: pack {pack:?} is not sha256:<64 hex digits>",
                        file.path
                    ));
                }
                if offset
                    .checked_add(file.size)
                    .is_none_or(|end| end > MAX_TOTAL_SIZE)
                {
                    return Err(format!(
                        "file {:?}: offset {offset} is out of bounds",
                        file.path
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "file {:?}: `pack` and `offset` go together",
                    file.path
                ))
            }
        }
        if file.size > MAX_FILE_SIZE {
            return Err(format!(
                "file {:?} is {} bytes; at most {MAX_FILE_SIZE} are allowed",
                file.path, file.size
            ));
        }
        total = total.saturating_add(file.size);
        // Sorted by bytes, a file that is also a directory of later paths comes right before
        // them ("a" < "a/b"), though other names may sit between ("a" < "a-b" < "a/b").
        if let Some(dir_user) = files[i + 1..]
            .iter()
            .take_while(|later| later.path.starts_with(&file.path))
            .find(|later| later.path.as_bytes().get(file.path.len()) == Some(&b'/'))
        {
            return Err(format!(
                "{:?} is both a file and the directory of {:?}",
                file.path, dir_user.path
            ));
        }
        if i > 0 && files[i - 1].path == file.path {
            return Err(format!("path {:?} is listed twice", file.path));
        }
    }
    if total > MAX_TOTAL_SIZE {
        return Err(format!(
            "its files total {total} bytes; at most {MAX_TOTAL_SIZE} are allowed"
        ));
    }
    if files
        .binary_search_by(|f| f.path.as_bytes().cmp(entry.as_bytes()))
        .is_err()
    {
        return Err(format!("its entry {entry:?} is not one of its files"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> ManifestFile {
        ManifestFile::new(
            path,
            1,
            FileMode::Regular,
            crate::envelope::sha256_digest(path.as_bytes()),
        )
    }

    #[test]
    fn same_files_in_any_order_give_the_same_bytes() {
        let a = Manifest::new("b.py", vec![file("b.py"), file("a/x.sql"), file("c")]).unwrap();
        let b = Manifest::new("b.py", vec![file("c"), file("b.py"), file("a/x.sql")]).unwrap();
        assert_eq!(a.bytes(), b.bytes());
        assert!(is_manifest(a.bytes()));
        assert_eq!(a.files()[0].path, "a/x.sql");
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "a//b",
            "./a",
            "a\\b",
            "a\nb",
            "",
        ] {
            let err = Manifest::new("ok", vec![file("ok"), file(bad)]).unwrap_err();
            assert!(err.to_string().contains("path"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_file_that_is_also_a_directory_is_refused() {
        let err = Manifest::new("a", vec![file("a"), file("a-b"), file("a/b")]).unwrap_err();
        assert!(
            err.to_string().contains("both a file and the directory"),
            "{err}"
        );
    }

    #[test]
    fn the_entry_must_be_a_file_of_the_bundle() {
        let err = Manifest::new("missing.py", vec![file("a.py")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"missing.py\" is not one of its files"),
            "{err}"
        );
    }

    fn parse_json(json: &str) -> Result<Manifest> {
        Manifest::parse("F", "loc", json.as_bytes())
    }

    #[test]
    fn parsing_refuses_unknown_entry_kinds_modes_sizes_and_order() {
        let d = crate::envelope::sha256_digest(b"x");
        let symlink = format!(
            r#"{{"flowstore_bundle":1,"entry":"a","files":[{{"path":"a","size":1,"mode":"0644","digest":"{d}","symlink":"/etc"}}]}}"#
        );
        let setuid = format!(
            r#"{{"flowstore_bundle":1,"entry":"a","files":[{{"path":"a","size":1,"mode":"4755","digest":"{d}"}}]}}"#
        );
        let huge = format!(
            r#"{{"flowstore_bundle":1,"entry":"a","files":[{{"path":"a","size":99999999999,"mode":"0644","digest":"{d}"}}]}}"#
        );
        let unsorted = format!(
            r#"{{"flowstore_bundle":1,"entry":"a","files":[{{"path":"b","size":1,"mode":"0644","digest":"{d}"}},{{"path":"a","size":1,"mode":"0644","digest":"{d}"}}]}}"#
        );
        let dup = format!(
            r#"{{"flowstore_bundle":1,"entry":"a","files":[{{"path":"a","size":1,"mode":"0644","digest":"{d}"}},{{"path":"a","size":1,"mode":"0644","digest":"{d}"}}]}}"#
        );
        let future = format!(
            r#"{{"flowstore_bundle":2,"entry":"a","files":[{{"path":"a","size":1,"mode":"0644","digest":"{d}"}}]}}"#
        );
        let bad_digest = r#"{"flowstore_bundle":1,"entry":"a","files":[{"path":"a","size":1,"mode":"0644","digest":"sha256:../../x"}]}"#;
        let half_pack = format!(
            r#"{{"flowstore_bundle":1,"entry":"a","files":[{{"path":"a","size":1,"mode":"0644","digest":"{d}","pack":"{d}"}}]}}"#
        );
        let far_offset = format!(
            r#"{{"flowstore_bundle":1,"entry":"a","files":[{{"path":"a","size":1,"mode":"0644","digest":"{d}","pack":"{d}","offset":18446744073709551615}}]}}"#
        );
        for (json, expect) in [
            (symlink.as_str(), "does not parse"),
            (setuid.as_str(), "does not parse"),
            (huge.as_str(), "at most"),
            (unsorted.as_str(), "not sorted"),
            (dup.as_str(), "not sorted and unique"),
            (future.as_str(), "upgrade flowstore"),
            (bad_digest, "not sha256"),
            (half_pack.as_str(), "go together"),
            (far_offset.as_str(), "out of bounds"),
        ] {
            let err = parse_json(json).unwrap_err();
            assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
            assert!(err.to_string().contains(expect), "{json}: {err}");
            assert!(err.to_string().contains("\"F\""), "{err}");
        }
    }
}
