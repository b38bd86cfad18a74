//! Writing a commit's tree to a directory from git's (hash-verified) objects, and hashing files
//! the way git does, to stamp and verify what was written.

use std::path::Path;

use flowstore_core::cache::FileKind;
use flowstore_core::Error as CoreError;
use git2::{ObjectType, Oid, Repository};

/// The git blob id of a file in a checkout (of a symlink: of its target), as a
/// [`flowstore_core::cache::TreeStamp`] hasher.
pub(crate) fn blob_id(path: &Path, kind: FileKind) -> std::io::Result<String> {
    let oid = match kind {
        FileKind::File => Oid::hash_file(ObjectType::Blob, path),
        FileKind::Symlink => {
            let target = std::fs::read_link(path)?;
            Oid::hash_object(ObjectType::Blob, target.as_os_str().as_encoded_bytes())
        }
    };
    oid.map(|o| o.to_string())
        .map_err(|e| std::io::Error::other(e.message().to_string()))
}

/// True if `path` (a file, or a directory when `dir`) is inside the sparse set, or a directory
/// on the way to it. An empty set means everything.
fn wanted(sparse: &[String], path: &str, dir: bool) -> bool {
    sparse.is_empty()
        || sparse.iter().any(|s| {
            let s = s.trim_end_matches('/');
            path == s
                || path.starts_with(&format!("{s}/"))
                || (dir && s.starts_with(&format!("{path}/")))
        })
}

/// Why writing a tree failed: reading git's objects, or writing files.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// An object is missing or fails git's checks.
    Object(git2::Error),
    /// The filesystem refused.
    Io(std::io::Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// Writes a tree's blobs (files, executables, symlinks) under `dir`, read from git's
/// hash-verified objects. Gitlinks (submodules) are left to the caller.
pub(crate) fn write_tree(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    dir: &Path,
    prefix: &str,
    sparse: &[String],
) -> Result<(), WriteError> {
    use std::os::unix::fs::PermissionsExt;
    let io = WriteError::Object;
    for entry in tree.iter() {
        let Some(name) = entry.name().ok() else {
            continue;
        };
        if name == ".git" || name.contains('/') || name == ".." || name == "." {
            continue;
        }
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let target = dir.join(name);
        match entry.kind() {
            Some(git2::ObjectType::Tree) => {
                if !wanted(sparse, &path, true) {
                    continue;
                }
                std::fs::create_dir_all(&target)?;
                let sub = repo.find_tree(entry.id()).map_err(io)?;
                write_tree(repo, &sub, &target, &path, sparse)?;
            }
            Some(git2::ObjectType::Blob) => {
                if !wanted(sparse, &path, false) {
                    continue;
                }
                let blob = repo.find_blob(entry.id()).map_err(io)?;
                if entry.filemode() == 0o120000 {
                    let link = String::from_utf8_lossy(blob.content()).into_owned();
                    std::os::unix::fs::symlink(link, &target)?;
                } else {
                    std::fs::write(&target, blob.content())?;
                    if entry.filemode() == 0o100755 {
                        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `../other.git` relative to the parent's URL; absolute URLs as they are.
pub(crate) fn resolve_relative(parent: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_string();
    }
    let mut base: Vec<&str> = parent.trim_end_matches('/').split('/').collect();
    for part in url.split('/') {
        match part {
            "." => {}
            ".." => {
                base.pop();
            }
            p => base.push(p),
        }
    }
    base.join("/")
}

/// Copies a submodule's checkout into its parent's (files, executables' modes, symlinks as
/// symlinks).
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<(), CoreError> {
    std::fs::create_dir_all(to)
        .map_err(|e| CoreError::io(format!("creating {}", to.display()), e))?;
    for entry in std::fs::read_dir(from)
        .map_err(|e| CoreError::io(format!("reading {}", from.display()), e))?
    {
        let entry = entry.map_err(|e| CoreError::io(format!("reading {}", from.display()), e))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| CoreError::io(format!("reading {}", entry.path().display()), e))?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            // A link stays a link: following it could copy a file from outside the checkout.
            std::fs::read_link(entry.path())
                .and_then(|link| std::os::unix::fs::symlink(link, &target))
                .map_err(|e| CoreError::io(format!("copying link to {}", target.display()), e))?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| CoreError::io(format!("copying to {}", target.display()), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn relative_submodule_urls_resolve_against_the_parent() {
        assert_eq!(
            super::resolve_relative("git://h/org/app.git", "../lib.git"),
            "git://h/org/lib.git"
        );
        assert_eq!(
            super::resolve_relative("git://h/org/app.git", "https://x/y.git"),
            "https://x/y.git"
        );
    }
}
