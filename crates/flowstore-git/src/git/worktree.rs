//! Writing a commit's tree to a directory from git's (hash-verified) objects, and hashing files
//! the way git does, to stamp and verify what was written.

use std::path::Path;

use flowstore_core::cache::FileKind;
use flowstore_core::Error as CoreError;
use git2::Repository;
use sha1::{Digest, Sha1};

/// The git blob id of a file in a checkout (of a symlink: of its target), as a
/// [`flowstore_core::cache::TreeStamp`] hasher. Computed here (SHA-1 of `blob <size>\0` and the
/// bytes, as git does), so verifying a checkout needs no libgit2.
pub(crate) fn blob_id(path: &Path, kind: FileKind) -> std::io::Result<String> {
    match kind {
        FileKind::File => {
            use std::io::Read;
            let mut file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            let mut hasher = Sha1::new();
            hasher.update(format!("blob {len}\0").as_bytes());
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = 0u64;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                read += n as u64;
                hasher.update(&buf[..n]);
            }
            if read != len {
                return Err(std::io::Error::other(format!(
                    "{} changed size while it was hashed",
                    path.display()
                )));
            }
            Ok(hex::encode(hasher.finalize()))
        }
        FileKind::Symlink => {
            let target = std::fs::read_link(path)?;
            Ok(blob_id_of(target.as_os_str().as_encoded_bytes()))
        }
    }
}

/// The git blob id of `bytes`.
pub(crate) fn blob_id_of(bytes: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    hex::encode(hasher.finalize())
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
    use flowstore_core::cache::FileKind;

    #[test]
    fn blob_ids_are_gits() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("empty", &b""[..]),
            ("text", b"hello\n"),
            ("big", &[7u8; 200_000][..]),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let git = git2::Oid::hash_object(git2::ObjectType::Blob, bytes)
                .unwrap()
                .to_string();
            assert_eq!(super::blob_id_of(bytes), git, "{name}");
            assert_eq!(
                super::blob_id(&path, FileKind::File).unwrap(),
                git,
                "{name}"
            );
        }
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("../x/y", &link).unwrap();
        let git = git2::Oid::hash_object(git2::ObjectType::Blob, b"../x/y")
            .unwrap()
            .to_string();
        assert_eq!(super::blob_id(&link, FileKind::Symlink).unwrap(), git);
    }

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
