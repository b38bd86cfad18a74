//! Bundle flows on `Git`: a directory of the repository at the resolved commit, served from the
//! clone cache's hash-verified objects.
//!
//! - Location (what the reference records for the flow): `bundle:<dir>//<entry>`, where `<dir>`
//!   is the bundle's directory relative to the repository root (`.` for the root) and `<entry>`
//!   the entry file relative to `<dir>` — `bundle:projects/etl//flows/etl.py`,
//!   `bundle:.//flow.py`. Neither part may hold an empty segment, so the first `//` splits them.
//! - The manifest is built from the tree of `<dir>` at the commit: every blob is read from the
//!   clone (libgit2 checks each object against its id) and hashed with sha256; mode `100755` is
//!   `0755`, `100644` is `0644`. Symlinks, submodules and names a bundle cannot hold are refused,
//!   naming the path. Ignore files are not applied: what is committed is the bundle.

use std::collections::BTreeMap;
use std::path::Path;

use flowstore_core::bundle::{
    check_path, BlobCache, FileMode, Manifest, ManifestFile, TransferReport, MAX_FILES,
    MAX_FILE_SIZE, MAX_TOTAL_SIZE,
};
use flowstore_core::{Error as CoreError, ProgressFn};
use git2::{ObjectType, Oid, Repository};

use super::transport::{object_failure, Cause, Failure};
use super::url::CloneTarget;

/// How a bundle flow's location begins.
const PREFIX: &str = "bundle:";
/// What separates the directory from the entry file in a location.
const SEPARATOR: &str = "//";

/// A bundle flow's directory and entry file (see the [module docs](self) for the format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BundleLocation {
    /// The directory, relative to the repository root, without `./` or a trailing `/`; `.` for
    /// the root.
    pub dir: String,
    /// The entry file, relative to `dir`.
    pub entry: String,
}

impl BundleLocation {
    /// The location of bundle flow `flow`: directory `dir` of the repository (`.` or empty for
    /// the root) with entry file `entry` (relative to `dir`).
    ///
    /// Errors with [`CoreError::Config`] naming the flow and the part that cannot be a path inside
    /// the repository (absolute, `..`, empty segments, not UTF-8, …).
    pub(crate) fn new(flow: &str, dir: &Path, entry: &str) -> Result<Self, CoreError> {
        let bad = |what: String| {
            CoreError::config(format!(
                "Bundle flow \"{flow}\": {what}. On a Git storage a bundle is a directory of the \
                 repository: give its path relative to the repository root (`.` for the root) and \
                 the entry file relative to that directory"
            ))
        };
        let Some(raw) = dir.to_str() else {
            return Err(bad(format!("the directory {} is not UTF-8", dir.display())));
        };
        if raw.starts_with('/') {
            return Err(bad(format!("the directory {raw:?} is absolute")));
        }
        let dir = normalize(raw);
        if dir != "." {
            check_path(&dir).map_err(|e| bad(format!("the directory's {e}")))?;
        }
        let entry = normalize(entry);
        check_path(&entry).map_err(|e| bad(format!("the entry file's {e}")))?;
        Ok(BundleLocation { dir, entry })
    }

    /// Reads a recorded location: `None` when it is not a bundle's (a script flow's file path),
    /// an error naming the flow when it looks like one but breaks the format.
    pub(crate) fn parse(flow: &str, location: &str) -> Option<Result<Self, CoreError>> {
        let (dir, entry) = location.strip_prefix(PREFIX)?.split_once(SEPARATOR)?;
        let valid = (dir == "." || check_path(dir).is_ok()) && check_path(entry).is_ok();
        Some(if valid {
            Ok(BundleLocation {
                dir: dir.to_string(),
                entry: entry.to_string(),
            })
        } else {
            Err(CoreError::invalid_reference(format!(
                "flow \"{flow}\": location {location:?} is not `bundle:<directory>//<entry file>` \
                 with relative paths"
            )))
        })
    }

    /// True if `location` has the shape of a bundle's (so it cannot name a script file).
    pub(crate) fn looks_like(location: &str) -> bool {
        location
            .strip_prefix(PREFIX)
            .is_some_and(|rest| rest.contains(SEPARATOR))
    }

    /// The location recorded for the flow.
    pub(crate) fn to_location(&self) -> String {
        format!("{PREFIX}{}{SEPARATOR}{}", self.dir, self.entry)
    }

    /// The repository path of `path` (relative to the bundle's directory).
    pub(crate) fn repo_path(&self, path: &str) -> String {
        if self.dir == "." {
            path.to_string()
        } else {
            format!("{}/{path}", self.dir)
        }
    }
}

/// Drops `./` prefixes and trailing `/`; the root is `.`.
fn normalize(path: &str) -> String {
    let mut p = path.trim_end_matches('/');
    while let Some(rest) = p.strip_prefix("./") {
        p = rest.trim_start_matches('/');
    }
    if p.is_empty() || p == "." {
        ".".to_string()
    } else {
        p.to_string()
    }
}

/// Where the blobs of a bundle go while it is read, and who hears about it.
#[derive(Clone)]
pub(crate) struct BlobSink {
    /// The shared blob cache.
    pub cache: BlobCache,
    /// Told the bytes written to the cache so far.
    pub progress: Option<ProgressFn>,
}

/// A bundle read at a commit: its manifest, and what writing its blobs to a [`BlobSink`] moved.
pub(crate) struct ReadBundle {
    /// The manifest built from the directory's tree.
    pub manifest: Manifest,
    /// Blobs written to the cache (objects, bytes) and found there already (reused).
    pub transfer: TransferReport,
}

/// What messages name: the flow, the repository (label) and the commit.
struct Site<'a> {
    flow: &'a str,
    repo: &'a str,
    commit: String,
    remote: &'a CloneTarget,
    loc: &'a BundleLocation,
}

impl Site<'_> {
    /// `repo@commit:path` of a path inside the bundle (`""`: the directory).
    fn at(&self, path: &str) -> String {
        let p = if path.is_empty() {
            self.loc.dir.clone()
        } else {
            self.loc.repo_path(path)
        };
        format!("{}@{}:{p}", self.repo, self.commit)
    }

    /// A refusal that discarding the clone cannot cure.
    fn refuse(&self, path: &str, why: &str) -> Failure {
        final_failure(CoreError::config(format!(
            "Git: bundle flow \"{}\" cannot be served: {} (file {:?} of its directory {:?}) {why}",
            self.flow,
            self.at(path),
            path,
            self.loc.dir
        )))
    }
}

/// A [`Failure`] that no retry cures (the repository's content, the blob cache, the caller).
pub(crate) fn final_failure(error: CoreError) -> Failure {
    Failure {
        detail: error.to_string().into(),
        error,
        cause: Cause::Remote,
    }
}

/// One regular file of the bundle's directory.
struct GitFile {
    path: String,
    id: Oid,
    mode: FileMode,
    size: u64,
}

/// Reads bundle flow `flow` (at `loc`) at commit `oid` of the cached clone `repo`: lists the
/// directory's tree, reads and hashes each distinct blob once, writes it to `sink`'s cache unless
/// a verified copy is there, and builds the manifest. Blocking.
///
/// Errors ([`Cause::Remote`] unless noted): [`CoreError::NotFound`] for a missing directory
/// (`"directory"`) or entry file (`"file"`); [`CoreError::Config`] naming the path for a
/// symlink, a submodule, a name a bundle cannot hold, or a bundle beyond the manifest's bounds;
/// I/O writing the cache; [`Cause::Data`] for objects missing from the clone or failing git's
/// checks.
pub(crate) fn read(
    repo: &Repository,
    oid: Oid,
    remote: &CloneTarget,
    (flow, repo_label): (&str, &str),
    loc: &BundleLocation,
    sink: Option<&BlobSink>,
) -> Result<ReadBundle, Failure> {
    let site = Site {
        flow,
        repo: repo_label,
        commit: oid.to_string(),
        remote,
        loc,
    };
    let files = list(repo, oid, &site)?;
    if files
        .binary_search_by(|f| f.path.as_bytes().cmp(loc.entry.as_bytes()))
        .is_err()
    {
        return Err(final_failure(CoreError::not_found(
            "file",
            site.at(&loc.entry),
            format!(
                "Git: entry file {} of bundle flow \"{flow}\" not found in directory {} of repo \
                 {repo_label} at commit {oid} (the entry file is relative to the bundle's \
                 directory)",
                loc.entry, loc.dir
            ),
        )));
    }
    // Each distinct blob is read once: same id, same bytes, same digest.
    let mut digests: BTreeMap<Oid, String> = BTreeMap::new();
    let mut transfer = TransferReport::default();
    let mut written = 0u64;
    for file in &files {
        if digests.contains_key(&file.id) {
            continue;
        }
        let blob = repo.find_blob(file.id).map_err(|e| {
            object_failure(
                format!("reading {} from the cache of", site.at(&file.path)),
                remote,
                &e,
            )
        })?;
        let bytes = blob.content();
        let digest = flowstore_core::envelope::sha256_digest(bytes);
        if let Some(sink) = sink {
            let size = bytes.len() as u64;
            if sink.cache.verify(&digest, false) {
                transfer.reused_objects += 1;
                transfer.reused_bytes += size;
            } else {
                store(&sink.cache, &site, &file.path, &digest, bytes)?;
                transfer.objects += 1;
                transfer.bytes += size;
                written += size;
                if let Some(progress) = &sink.progress {
                    progress(flowstore_core::Progress {
                        what: "bundle bytes written to the blob cache",
                        done: written,
                        total: None,
                    });
                }
            }
        }
        digests.insert(file.id, digest);
    }
    let entries: Vec<ManifestFile> = files
        .into_iter()
        .map(|f| ManifestFile::new(f.path, f.size, f.mode, digests[&f.id].clone()))
        .collect();
    let manifest = Manifest::new(&loc.entry, entries).map_err(|e| {
        final_failure(CoreError::config(format!(
            "Git: bundle flow \"{flow}\" (directory {} of repo {repo_label} at commit {oid}): {e}",
            loc.dir
        )))
    })?;
    Ok(ReadBundle { manifest, transfer })
}

/// Writes one blob into the cache: a temporary file in the cache's own temporary area, verified
/// and moved into place.
fn store(
    cache: &BlobCache,
    site: &Site<'_>,
    path: &str,
    digest: &str,
    bytes: &[u8],
) -> Result<(), Failure> {
    let tmp = cache.temp_dir().map_err(final_failure)?;
    let file = tmp.path().join("blob");
    std::fs::write(&file, bytes).map_err(|e| {
        final_failure(CoreError::io(
            format!(
                "writing {} to the bundle blob cache {}",
                site.at(path),
                cache.root().display()
            ),
            e,
        ))
    })?;
    cache
        .add_verified(&file, digest, site.flow, path, &site.at(path))
        .map_err(final_failure)
}

/// The regular files under the bundle's directory at commit `oid`, sorted by path bytes.
fn list(repo: &Repository, oid: Oid, site: &Site<'_>) -> Result<Vec<GitFile>, Failure> {
    let unreadable = |what: &str, e: &git2::Error| {
        object_failure(
            format!("reading {what} of {} from the cache of", site.at("")),
            site.remote,
            e,
        )
    };
    let root = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| unreadable("the commit", &e))?;
    let tree = if site.loc.dir == "." {
        root
    } else {
        let missing = || {
            final_failure(CoreError::not_found(
                "directory",
                site.at(""),
                format!(
                    "Git: directory {} of bundle flow \"{}\" not found in repo {} at commit {}. \
                     The bundle's directory is relative to the repository root (`.` for the root)",
                    site.loc.dir, site.flow, site.repo, site.commit
                ),
            ))
        };
        let entry = match root.get_path(Path::new(&site.loc.dir)) {
            Ok(entry) => entry,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Err(missing()),
            Err(e) => return Err(unreadable("the tree", &e)),
        };
        if entry.kind() != Some(ObjectType::Tree) {
            return Err(final_failure(CoreError::config(format!(
                "Git: bundle flow \"{}\": {} is not a directory. Give the bundle's directory (its \
                 entry file is named separately)",
                site.flow,
                site.at("")
            ))));
        }
        repo.find_tree(entry.id())
            .map_err(|e| unreadable("the tree", &e))?
    };
    let odb = repo.odb().map_err(|e| unreadable("the objects", &e))?;
    let mut files = Vec::new();
    let mut total = 0u64;
    walk(repo, &odb, &tree, "", site, &mut files, &mut total)?;
    files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(files)
}

/// Lists `tree` (at `prefix` inside the bundle) into `out`, refusing what a bundle cannot hold.
fn walk(
    repo: &Repository,
    odb: &git2::Odb<'_>,
    tree: &git2::Tree<'_>,
    prefix: &str,
    site: &Site<'_>,
    out: &mut Vec<GitFile>,
    total: &mut u64,
) -> Result<(), Failure> {
    for entry in tree.iter() {
        let Ok(name) = entry.name() else {
            let shown = format!("{prefix}/{}", String::from_utf8_lossy(entry.name_bytes()));
            return Err(site.refuse(
                shown.trim_start_matches('/'),
                "has a name that is not UTF-8; bundle paths are UTF-8. Rename it",
            ));
        };
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        if let Err(reason) = check_path(&path) {
            return Err(site.refuse(&path, &format!("cannot be in a bundle: {reason}")));
        }
        if name == ".git" {
            return Err(site.refuse(
                &path,
                "is named .git, which no checkout may hold. Rename it",
            ));
        }
        let mode = match entry.filemode() {
            0o040000 => {
                let sub = repo.find_tree(entry.id()).map_err(|e| {
                    object_failure(
                        format!("reading {} from the cache of", site.at(&path)),
                        site.remote,
                        &e,
                    )
                })?;
                walk(repo, odb, &sub, &path, site, out, total)?;
                continue;
            }
            0o100644 => FileMode::Regular,
            0o100755 => FileMode::Executable,
            0o120000 => {
                return Err(site.refuse(
                    &path,
                    "is a symbolic link; bundles hold regular files only. Commit the file it \
                     points to in its place, or move the link out of the bundle's directory",
                ))
            }
            0o160000 => {
                return Err(site.refuse(
                    &path,
                    "is a submodule; bundles hold the repository's own files only. Copy the \
                     files the flow needs into the directory, or move the submodule out of it",
                ))
            }
            other => {
                return Err(site.refuse(
                    &path,
                    &format!("has git mode {other:o}, which is not a regular file"),
                ))
            }
        };
        if out.len() >= MAX_FILES {
            return Err(site.refuse(
                &path,
                &format!("is one file too many: a bundle holds at most {MAX_FILES} files"),
            ));
        }
        let (size, _) = odb.read_header(entry.id()).map_err(|e| {
            object_failure(
                format!("reading {} from the cache of", site.at(&path)),
                site.remote,
                &e,
            )
        })?;
        let size = size as u64;
        if size > MAX_FILE_SIZE {
            return Err(site.refuse(
                &path,
                &format!("is {size} bytes; a bundle's file may have at most {MAX_FILE_SIZE}"),
            ));
        }
        *total = total.saturating_add(size);
        if *total > MAX_TOTAL_SIZE {
            return Err(site.refuse(
                &path,
                &format!("brings the bundle past {MAX_TOTAL_SIZE} bytes, the most a bundle holds"),
            ));
        }
        out.push(GitFile {
            path,
            id: entry.id(),
            mode,
            size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_keep_the_directory_and_the_entry() {
        let loc = BundleLocation::new("F", Path::new("./projects/etl/"), "./flows/etl.py").unwrap();
        assert_eq!(loc.dir, "projects/etl");
        assert_eq!(loc.entry, "flows/etl.py");
        assert_eq!(loc.to_location(), "bundle:projects/etl//flows/etl.py");
        assert_eq!(
            BundleLocation::parse("F", &loc.to_location())
                .unwrap()
                .unwrap(),
            loc
        );
        assert_eq!(loc.repo_path("a.py"), "projects/etl/a.py");
        for root in ["", ".", "./", ".//"] {
            let root = BundleLocation::new("F", Path::new(root), "flow.py").unwrap();
            assert_eq!(root.to_location(), "bundle:.//flow.py");
            assert_eq!(root.repo_path("flow.py"), "flow.py");
        }
        let root = BundleLocation::new("F", Path::new("."), "flow.py").unwrap();
        assert_eq!(
            BundleLocation::parse("F", "bundle:.//flow.py")
                .unwrap()
                .unwrap(),
            root
        );
    }

    #[test]
    fn paths_outside_the_repository_are_refused_naming_the_flow() {
        for (dir, entry) in [
            ("../up", "f.py"),
            ("/etc", "f.py"),
            ("/", "f.py"),
            ("a//b", "f.py"),
            ("a/../b", "f.py"),
            ("a", "../f.py"),
            ("a", "/f.py"),
            ("a", ""),
        ] {
            let err = BundleLocation::new("My Bundle", Path::new(dir), entry).unwrap_err();
            assert!(
                matches!(err, CoreError::Config { .. }),
                "{dir} {entry}: {err:?}"
            );
            assert!(err.to_string().contains("\"My Bundle\""), "{err}");
        }
    }

    #[test]
    fn script_paths_are_not_bundle_locations() {
        assert!(BundleLocation::parse("F", "flows/etl.py").is_none());
        assert!(BundleLocation::parse("F", "bundle:etl.py").is_none());
        assert!(!BundleLocation::looks_like("bundle:etl.py"));
        assert!(BundleLocation::looks_like("bundle:a//b.py"));
        let broken = BundleLocation::parse("F", "bundle:../a//b.py").unwrap();
        assert!(broken.unwrap_err().to_string().contains("\"F\""));
    }
}
