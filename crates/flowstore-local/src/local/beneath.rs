//! Opening a flow file below the storage's directory in one system call: Linux's `openat2`
//! with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` refuses, as it opens, a path that leaves the
//! directory or has a symbolic link anywhere on the way. No `lstat` per name first, and no
//! window between such a check and the open.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The storage's real directory, held open for `openat2`.
#[derive(Debug)]
pub(crate) struct Beneath {
    dir: OwnedFd,
}

impl Beneath {
    /// Opens `root` (the directory with every link resolved) for later opens below it; `None`
    /// when it cannot be opened or the kernel has no `openat2` (before Linux 5.6) or a sandbox
    /// refuses it: the caller then checks names itself.
    pub fn open(root: &Path) -> Option<Beneath> {
        let dir = File::open(root).ok()?;
        let beneath = Beneath { dir: dir.into() };
        // One open of the directory itself says whether the call is there at all.
        beneath
            .openat2(Path::new("."), libc::O_PATH | libc::O_DIRECTORY)
            .ok()
            .map(drop)?;
        Some(beneath)
    }

    /// Opens `relative` (plain names below the directory) for reading, never blocking on a
    /// FIFO. Errors: `ELOOP` for a symbolic link on the way, `EXDEV` for a path that would leave
    /// the directory, and what `open` answers (`ENOENT`…).
    pub fn open_file(&self, relative: &Path) -> io::Result<File> {
        self.openat2(relative, libc::O_RDONLY | libc::O_NONBLOCK)
    }

    fn openat2(&self, relative: &Path, flags: libc::c_int) -> io::Result<File> {
        let name = CString::new(relative.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `open_how` is plain data; all-zero is its empty value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
        // SAFETY: the directory descriptor is open for the call, `name` is a NUL-terminated
        // string that outlives it, and `how` is an `open_how` of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.dir.as_raw_fd(),
                name.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the call returned a new descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd as libc::c_int) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_plain_files_and_refuses_links_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("flow")).unwrap();
        std::fs::write(root.join("flow/v1"), b"stored").unwrap();
        let Some(beneath) = Beneath::open(&root) else {
            eprintln!("SKIP: this kernel has no openat2");
            return;
        };
        let mut text = String::new();
        use std::io::Read;
        beneath
            .open_file(Path::new("flow/v1"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "stored");
        // A link as the file, a link as the directory, and `..` are each refused.
        std::os::unix::fs::symlink(root.join("flow/v1"), root.join("flow/v2")).unwrap();
        std::os::unix::fs::symlink(root.join("flow"), root.join("linked")).unwrap();
        for (path, errno) in [
            ("flow/v2", libc::ELOOP),
            ("linked/v1", libc::ELOOP),
            ("../outside", libc::EXDEV),
        ] {
            let e = beneath.open_file(Path::new(path)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(errno), "{path}: {e}");
        }
        let e = beneath.open_file(Path::new("flow/none")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
