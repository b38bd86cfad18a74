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

/// Files smaller than this travel in packs; larger ones are blobs of their own.
pub const PACK_FILE_LIMIT: u64 = 1 << 20;

/// A pack ends after a file whose path's SHA-256 begins with a byte divisible by this: about one
/// file in 32, so a pack holds about 32 small files, and where packs end depends on paths only.
const PACK_SPREAD: u8 = 32;

/// A pack of a scanned bundle: its digest, size, and its distinct files in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedPack {
    /// `sha256:<hex>` of the pack's bytes.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Indexes into [`ScannedBundle::files`] of the files whose bytes make up the pack, in order.
    pub members: Vec<usize>,
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
    /// The packs the small files travel in.
    pub packs: Vec<ScannedPack>,
}

impl ScannedBundle {
    /// The files stored as blobs of their own: one source per distinct digest, with its size.
    pub fn single_blobs(&self) -> Vec<(&str, &Path, u64)> {
        let mut seen = std::collections::BTreeMap::new();
        for f in self.files.iter().filter(|f| f.file.pack.is_none()) {
            seen.entry(f.file.digest.as_str())
                .or_insert((f.source.as_path(), f.file.size));
        }
        seen.into_iter().map(|(d, (p, s))| (d, p, s)).collect()
    }
}

/// How files are grouped for storage: alone, or in a pack (indexes into the sorted files).
enum Group {
    Single(usize),
    Pack(Vec<usize>),
}

/// Groups sorted files: large ones alone; small ones in runs that end after a file whose path
/// hashes to a multiple of [`PACK_SPREAD`].
fn group(found: &[(String, PathBuf, std::fs::Metadata)]) -> Vec<Group> {
    use sha2::Digest as _;
    let mut groups = Vec::new();
    let mut current = Vec::new();
    for (i, (rel, _, meta)) in found.iter().enumerate() {
        if meta.len() >= PACK_FILE_LIMIT {
            groups.push(Group::Single(i));
            continue;
        }
        current.push(i);
        if sha2::Sha256::digest(rel.as_bytes())[0] % PACK_SPREAD == 0 {
            groups.push(Group::Pack(std::mem::take(&mut current)));
        }
    }
    if !current.is_empty() {
        groups.push(Group::Pack(current));
    }
    groups
}

/// Where a hashed file's bytes are: its digest and size, and its pack and offset if in one.
#[derive(Clone)]
struct Slot {
    digest: String,
    size: u64,
    pack: Option<(String, u64)>,
}

/// What hashing a group found: per file (digest, size, offset in its pack), and the pack.
struct Hashed {
    files: Vec<(usize, String, u64, Option<u64>)>,
    pack: Option<(String, u64, Vec<usize>)>,
}

fn hash_group(found: &[(String, PathBuf, std::fs::Metadata)], g: &Group) -> Result<Hashed> {
    match g {
        Group::Single(i) => {
            let (digest, size) = super::digest_file(&found[*i].1)?;
            Ok(Hashed {
                files: vec![(*i, digest, size, None)],
                pack: None,
            })
        }
        Group::Pack(members) => {
            use sha2::Digest as _;
            let mut pack = sha2::Sha256::new();
            let mut offsets: std::collections::HashMap<String, u64> = Default::default();
            let (mut len, mut files, mut distinct) = (0u64, Vec::new(), Vec::new());
            for &i in members {
                let source = &found[i].1;
                let bytes = std::fs::read(source)
                    .map_err(|e| Error::io(format!("reading {}", source.display()), e))?;
                let digest = crate::envelope::sha256_digest(&bytes);
                let offset = *offsets.entry(digest.clone()).or_insert_with(|| {
                    pack.update(&bytes);
                    distinct.push(i);
                    len += bytes.len() as u64;
                    len - bytes.len() as u64
                });
                files.push((i, digest, bytes.len() as u64, Some(offset)));
            }
            let digest = format!("sha256:{}", hex::encode(pack.finalize()));
            Ok(Hashed {
                files,
                pack: Some((digest, len, distinct)),
            })
        }
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
    let groups = group(&found);
    let hashed = hash_all(&found, &groups)?;
    let mut slots: Vec<Option<Slot>> = vec![None; found.len()];
    let mut packs = Vec::new();
    for h in hashed {
        let pack_digest = h.pack.as_ref().map(|(d, _, _)| d.clone());
        for (i, digest, size, offset) in h.files {
            slots[i] = Some(Slot {
                digest,
                size,
                pack: pack_digest.clone().zip(offset),
            });
        }
        if let Some((digest, size, members)) = h.pack {
            packs.push(ScannedPack {
                digest,
                size,
                members,
            });
        }
    }
    let files: Vec<ScannedFile> = found
        .into_iter()
        .zip(slots)
        .map(|((rel, source, meta), slot)| {
            let Slot { digest, size, pack } = slot.expect("every file is in one group");
            let mut file = ManifestFile::new(
                rel,
                size,
                FileMode::from_permissions(permission_bits(&meta)),
                digest,
            );
            if let Some((pack, offset)) = pack {
                file.pack = Some(pack);
                file.offset = Some(offset);
            }
            ScannedFile { source, file }
        })
        .collect();
    let manifest = Manifest::new(&entry, files.iter().map(|f| f.file.clone()).collect())
        .map_err(|e| bad(e.to_string()))?;
    Ok(ScannedBundle {
        root: canonical_root,
        manifest,
        files,
        packs,
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

/// Hashes the groups on a few threads (a pack's files in order, so its digest can be computed
/// as they are read). A file's size is the number of bytes hashed, so a file that changes while
/// it is read gets a consistent pair (the upload checks it again).
fn hash_all(
    found: &[(String, PathBuf, std::fs::Metadata)],
    groups: &[Group],
) -> Result<Vec<Hashed>> {
    super::map_on_threads(groups, |g| hash_group(found, g))
        .into_iter()
        .collect()
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
        assert_eq!(
            files[0].source(),
            files[1].source(),
            "equal contents are stored once"
        );
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
    fn small_files_travel_in_packs_and_an_edit_changes_one_pack() {
        let dir = tree();
        for i in 0..200 {
            std::fs::write(dir.path().join(format!("m{i}.py")), format!("x = {i}\n")).unwrap();
        }
        std::fs::write(
            dir.path().join("big.bin"),
            vec![7u8; PACK_FILE_LIMIT as usize],
        )
        .unwrap();
        let before = scan(dir.path(), "flow.py").unwrap();
        let big = before
            .manifest
            .files()
            .iter()
            .find(|f| f.path == "big.bin")
            .unwrap();
        assert_eq!(big.pack, None, "large files are blobs of their own");
        assert!(
            before.packs.len() > 1 && before.packs.len() < 40,
            "{}",
            before.packs.len()
        );
        // Every file's bytes are at its offset in its pack.
        for pack in &before.packs {
            let mut bytes = Vec::new();
            for &i in &pack.members {
                bytes.extend(std::fs::read(&before.files[i].source).unwrap());
            }
            assert_eq!(crate::envelope::sha256_digest(&bytes), pack.digest);
            assert_eq!(bytes.len() as u64, pack.size);
        }
        std::fs::write(dir.path().join("m77.py"), "x = 'changed'\n").unwrap();
        let after = scan(dir.path(), "flow.py").unwrap();
        let names = |s: &ScannedBundle| {
            s.manifest
                .blobs()
                .into_iter()
                .map(|(b, _)| b.to_string())
                .collect::<std::collections::BTreeSet<_>>()
        };
        let (old, new) = (names(&before), names(&after));
        assert_eq!(new.difference(&old).count(), 1, "one new pack");
        assert_eq!(old.difference(&new).count(), 1, "one pack no longer used");
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
