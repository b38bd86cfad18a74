//! Reading a directory into a bundle: walking it (honouring `.gitignore` and `.flowstoreignore`),
//! refusing what a bundle cannot hold, and hashing every file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::manifest::{check_path, FileMode, Manifest, ManifestFile, MAX_FILES};

/// The ignore file read in every directory of a bundle, beside `.gitignore`.
pub const IGNORE_FILE: &str = ".flowstoreignore";

/// A file of a scanned bundle: where it is on this machine and what the manifest says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    /// Its path on this machine.
    pub source: PathBuf,
    /// Its manifest entry.
    pub file: ManifestFile,
}

/// A directory read into a bundle: its manifest and where each file's bytes are.
#[derive(Debug, Clone)]
pub struct ScannedBundle {
    /// The directory that was scanned.
    pub root: PathBuf,
    /// The manifest (sorted, deterministic).
    pub manifest: Manifest,
    /// Every file, in manifest order.
    pub files: Vec<ScannedFile>,
}

impl ScannedBundle {
    /// One source file per distinct digest (files with equal contents are one blob), with its size.
    pub fn blobs(&self) -> Vec<(&str, &Path, u64)> {
        let mut seen = std::collections::BTreeMap::new();
        for f in &self.files {
            seen.entry(f.file.digest.as_str())
                .or_insert((f.source.as_path(), f.file.size));
        }
        seen.into_iter().map(|(d, (p, s))| (d, p, s)).collect()
    }
}

/// Walks `root`, hashes every file it keeps, and builds the manifest with `entry` (a path
/// relative to `root`) as the entry file.
///
/// Kept: every regular file, hidden ones included, except `.git/` and what a `.gitignore` or
/// `.flowstoreignore` (in any directory of the tree) excludes. A symlink to a file inside the tree
/// is stored as a copy of that file.
///
/// Errors with [`Error::Config`] naming the path: `root` is not a directory, a symlink leaves the
/// tree or points at a directory, a device, FIFO or socket, a name that is not UTF-8 or breaks a
/// manifest rule, the entry is missing or ignored; [`Error::Io`] when a file cannot be read.
pub fn scan(root: &Path, entry: &str) -> Result<ScannedBundle> {
    let bad = |what: String| Error::config(format!("Cannot bundle {}: {what}", root.display()));
    let canonical_root = root.canonicalize().map_err(|e| {
        bad(format!(
            "{e}. Give the directory that holds the flow's code."
        ))
    })?;
    if !canonical_root.is_dir() {
        return Err(bad("it is not a directory".to_string()));
    }
    let entry = entry.trim_start_matches("./").to_string();
    check_path(&entry).map_err(|e| bad(format!("the entry file's {e}")))?;

    let walker = ignore::WalkBuilder::new(&canonical_root)
        .standard_filters(false)
        .hidden(false)
        .git_ignore(true)
        .require_git(false)
        .parents(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut found: Vec<(String, PathBuf, std::fs::Metadata)> = Vec::new();
    for item in walker {
        let item = item.map_err(|e| bad(format!("walking the tree failed: {e}")))?;
        let path = item.path();
        if path == canonical_root {
            continue;
        }
        let rel = relative(&canonical_root, path).map_err(bad)?;
        if rel == super::MARKER_FILE {
            // The marker of a tree materialized by a fetch: not part of the bundle.
            continue;
        }
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let ty = meta.file_type();
        if ty.is_dir() {
            continue;
        }
        let (source, meta) = if ty.is_symlink() {
            let target = path.canonicalize().map_err(|_| {
                bad(format!(
                    "{rel:?} is a symlink to nothing. Remove it or list it in {IGNORE_FILE}."
                ))
            })?;
            if !target.starts_with(&canonical_root) {
                return Err(bad(format!(
                    "{rel:?} is a symlink leaving the tree (to {}). Copy the file in, or list it in {IGNORE_FILE}.",
                    target.display()
                )));
            }
            let meta = std::fs::metadata(&target)
                .map_err(|e| Error::io(format!("reading {}", target.display()), e))?;
            if !meta.is_file() {
                return Err(bad(format!(
                    "{rel:?} is a symlink to a directory; bundles hold regular files. List it in {IGNORE_FILE}."
                )));
            }
            (target, meta)
        } else if ty.is_file() {
            (path.to_path_buf(), meta)
        } else {
            return Err(bad(format!(
                "{rel:?} is not a regular file (a device, FIFO or socket). List it in {IGNORE_FILE}."
            )));
        };
        check_path(&rel).map_err(bad)?;
        found.push((rel, source, meta));
        if found.len() > MAX_FILES {
            return Err(bad(format!("it holds more than {MAX_FILES} files")));
        }
    }
    found.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if found
        .binary_search_by(|f| f.0.as_bytes().cmp(entry.as_bytes()))
        .is_err()
    {
        return Err(bad(format!(
            "the entry file {entry:?} is not in the tree (or is ignored by .gitignore/{IGNORE_FILE})"
        )));
    }
    let digests = hash_all(&found)?;
    let files: Vec<ScannedFile> = found
        .into_iter()
        .zip(digests)
        .map(|((rel, source, meta), (digest, size))| ScannedFile {
            source,
            file: ManifestFile {
                path: rel,
                size,
                mode: FileMode::from_permissions(permission_bits(&meta)),
                digest,
            },
        })
        .collect();
    let manifest = Manifest::new(&entry, files.iter().map(|f| f.file.clone()).collect())
        .map_err(|e| bad(e.to_string()))?;
    Ok(ScannedBundle {
        root: canonical_root,
        manifest,
        files,
    })
}

fn relative(root: &Path, path: &Path) -> std::result::Result<String, String> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| format!("{} is outside the tree", path.display()))?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c.as_os_str().to_str() {
            Some(s) => parts.push(s),
            None => {
                return Err(format!(
                    "{} has a name that is not UTF-8; rename it or list it in {IGNORE_FILE}",
                    path.display()
                ))
            }
        }
    }
    Ok(parts.join("/"))
}

#[cfg(unix)]
fn permission_bits(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode()
}

#[cfg(not(unix))]
fn permission_bits(_meta: &std::fs::Metadata) -> u32 {
    0o644
}

/// Hashes the files on a few threads; returns (digest, size) in input order. The size is the
/// number of bytes hashed, so a file that changes while it is read gets a consistent pair.
fn hash_all(found: &[(String, PathBuf, std::fs::Metadata)]) -> Result<Vec<(String, u64)>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let chunk = found.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = found
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, source, _)| super::digest_file(source))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(found.len());
        for h in handles {
            out.extend(h.join().expect("a hashing thread panicked")?);
        }
        Ok(out)
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flow.py"), b"print(1)\n").unwrap();
        dir
    }

    #[test]
    fn a_symlink_leaving_the_tree_is_refused_naming_it() {
        let dir = tree();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("escape")).unwrap();
        let err = scan(dir.path(), "flow.py").unwrap_err().to_string();
        assert!(
            err.contains("\"escape\" is a symlink leaving the tree"),
            "{err}"
        );
    }

    #[test]
    fn a_symlink_inside_the_tree_is_stored_as_the_file() {
        let dir = tree();
        std::os::unix::fs::symlink("flow.py", dir.path().join("alias.py")).unwrap();
        let scanned = scan(dir.path(), "flow.py").unwrap();
        let files = scanned.manifest.files();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "alias.py");
        assert_eq!(files[0].digest, files[1].digest);
        assert_eq!(scanned.blobs().len(), 1, "equal contents are one blob");
    }

    #[test]
    fn fifos_and_dangling_links_are_refused() {
        let dir = tree();
        let fifo = dir.path().join("pipe");
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
        let err = scan(dir.path(), "flow.py").unwrap_err().to_string();
        assert!(err.contains("\"pipe\" is not a regular file"), "{err}");
        std::fs::remove_file(&fifo).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("dangling")).unwrap();
        let err = scan(dir.path(), "flow.py").unwrap_err().to_string();
        assert!(
            err.contains("\"dangling\" is a symlink to nothing"),
            "{err}"
        );
    }

    #[test]
    fn an_ignored_or_missing_entry_is_refused() {
        let dir = tree();
        std::fs::write(dir.path().join(IGNORE_FILE), b"flow.py\n").unwrap();
        let err = scan(dir.path(), "flow.py").unwrap_err().to_string();
        assert!(
            err.contains("entry file \"flow.py\" is not in the tree"),
            "{err}"
        );
        let err = scan(dir.path(), "../flow.py").unwrap_err().to_string();
        assert!(err.contains("`..`"), "{err}");
    }

    #[test]
    fn non_utf8_names_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tree();
        let name = std::ffi::OsStr::from_bytes(b"bad\xff.py");
        std::fs::write(dir.path().join(name), b"x").unwrap();
        let err = scan(dir.path(), "flow.py").unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
    }
}
