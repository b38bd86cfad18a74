//! Materializing a bundle's tree: built in a temporary sibling directory of the destination, then
//! renamed into place, so the destination holds the whole tree or is untouched.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::cache::BlobCache;
use super::manifest::{FileMode, Manifest, MARKER_FILE};

const TMP_TAG: &str = ".flowstore-tmp-";

/// A directory removed when dropped unless disarmed.
struct Building(PathBuf);

impl Drop for Building {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// What is at the destination now.
enum Destination {
    Absent,
    Empty,
    PreviousBundle,
}

fn inspect(dest: &Path) -> Result<Destination> {
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Destination::Absent),
        Err(e) => Err(Error::io(format!("inspecting {}", dest.display()), e)),
        Ok(m) if !m.is_dir() => Err(Error::config(format!(
            "Cannot materialize a bundle at {}: it exists and is not a directory. Choose a new or empty directory.",
            dest.display()
        ))),
        Ok(_) => {
            if dest.join(MARKER_FILE).is_file() {
                return Ok(Destination::PreviousBundle);
            }
            let mut entries = fs::read_dir(dest)
                .map_err(|e| Error::io(format!("listing {}", dest.display()), e))?;
            if entries.next().is_none() {
                Ok(Destination::Empty)
            } else {
                Err(Error::config(format!(
                    "Cannot materialize a bundle at {}: the directory is not empty and was not made by a bundle fetch (no {MARKER_FILE}). Choose a new or empty directory; nothing was changed.",
                    dest.display()
                )))
            }
        }
    }
}

/// Builds the tree of `manifest` at `dest` from blobs already verified in `cache` (hard links
/// where the filesystem allows, copies otherwise), replacing an empty directory or a tree an
/// earlier fetch materialized.
pub(crate) fn materialize(cache: &BlobCache, manifest: &Manifest, dest: &Path) -> Result<()> {
    let state = inspect(dest)?;
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            Error::config(format!(
                "Cannot materialize a bundle at {}: give a directory path that ends in a name",
                dest.display()
            ))
        })?
        .to_string();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    sweep_abandoned(&parent, &name);
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = parent.join(format!(
        ".{name}{TMP_TAG}{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    fs::create_dir(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    let building = Building(tmp.clone());
    let write_err = |path: &Path, e| Error::io(format!("writing {}", path.display()), e);
    for file in manifest.files() {
        let target = tmp.join(&file.path);
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
        }
        let executable = file.mode == FileMode::Executable;
        let blob = cache.blob_path(&file.digest, executable);
        if fs::hard_link(&blob, &target).is_err() {
            fs::copy(&blob, &target).map_err(|e| write_err(&target, e))?;
            set_mode(&target, file.mode).map_err(|e| write_err(&target, e))?;
        }
    }
    let marker = tmp.join(MARKER_FILE);
    fs::write(&marker, manifest.bytes()).map_err(|e| write_err(&marker, e))?;
    // Another fetch may put a tree at `dest` between the inspection and the rename: then
    // inspect again and swap with it (it is a fetched tree too), never merge into it.
    let mut state = state;
    for _ in 0..3 {
        match state {
            Destination::Absent | Destination::Empty => match fs::rename(&tmp, dest) {
                Ok(()) => {
                    // Renamed away: nothing left to clean.
                    std::mem::forget(building);
                    return Ok(());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
                    ) =>
                {
                    state = inspect(dest)?;
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("moving the bundle into place at {}", dest.display()),
                        e,
                    ))
                }
            },
            Destination::PreviousBundle => {
                // `building` now names the previous tree, removed when it drops.
                return exchange(&tmp, dest).map_err(|e| {
                    Error::io(format!("replacing the bundle at {}", dest.display()), e)
                });
            }
        }
    }
    Err(Error::io(
        format!("moving the bundle into place at {}", dest.display()),
        io::Error::other("the directory kept changing under concurrent fetches"),
    ))
}

/// Swaps two directories atomically where the kernel can (Linux `renameat2`); elsewhere moves
/// the old one aside first (a moment without a tree at `dest`, never a half tree).
fn exchange(new: &Path, dest: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let a = CString::new(new.as_os_str().as_bytes())?;
        let b = CString::new(dest.as_os_str().as_bytes())?;
        // SAFETY: both are valid NUL-terminated paths that live across the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) && err.raw_os_error() != Some(libc::ENOSYS) {
            return Err(err);
        }
    }
    let aside = new.with_extension("old");
    fs::rename(dest, &aside)?;
    fs::rename(new, dest)?;
    fs::rename(&aside, new)
}

/// Removes temporaries of earlier fetches into `name` whose process is gone.
fn sweep_abandoned(parent: &Path, name: &str) {
    let prefix = format!(".{name}{TMP_TAG}");
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let pid: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(crate::cache::process_alive);
        if !alive {
            tracing::info!(path = %entry.path().display(), "removing a bundle left half-built by a dead process");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: FileMode) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode.bits()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: FileMode) -> io::Result<()> {
    Ok(())
}
