//! Create-only, crash-safe file writes for every backend that writes files (Local's flows, any
//! backend's `get_flow_to_file`): a file is either absent or complete, never half-written, and an
//! existing file is never replaced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A file being written under a temporary name (starting with `.`, so listings skip it) in its
/// destination's directory. [`NewFile::commit`] links it into place; dropping it uncommitted
/// removes it.
#[derive(Debug)]
pub struct NewFile {
    tmp: PathBuf,
    file: Option<File>,
    durable: bool,
}

impl NewFile {
    /// Starts a file that will become `dest` (creating `dest`'s directory).
    pub fn create(dest: &Path, durable: bool) -> io::Result<Self> {
        let dir = dest.parent().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "destination has no parent")
        })?;
        fs::create_dir_all(dir)?;
        let tmp = temp_path(dir);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        // Stored files are read-only: created so (the open descriptor still writes), which
        // saves a stat and a chmod per file at commit.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o444);
        let file = options.open(&tmp)?;
        Ok(NewFile {
            tmp,
            file: Some(file),
            durable,
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until commit")
    }

    /// Flushes (and fsyncs when durable), makes the file read-only, and hard-links it to `dest`:
    /// fails with `AlreadyExists` rather than replace anything. The directory entry itself is made
    /// durable by a later `sync_filesystem` (Linux) or `sync_path` (callers batch that: Local does it once per directory at `build`).
    pub fn commit(mut self, dest: &Path) -> io::Result<()> {
        let mut file = self.file.take().expect("open until commit");
        file.flush()?;
        if self.durable {
            file.sync_all()?;
        }
        // Non-durable files are made durable later in one batch (see `sync_filesystem`).
        // Stored flows are read-only: nothing in flowstore ever rewrites one (on Unix the file
        // was created read-only).
        #[cfg(not(unix))]
        {
            let mut perms = file.metadata()?.permissions();
            perms.set_readonly(true);
            file.set_permissions(perms)?;
        }
        drop(file);
        fs::hard_link(&self.tmp, dest)?;
        let _ = fs::remove_file(&self.tmp);
        Ok(())
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Fsyncs a file or directory.
#[cfg(not(target_os = "linux"))]
pub fn sync_path(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Makes everything written to `dir`'s filesystem durable with one `syncfs(2)` call: far cheaper
/// than one fsync per file when a registration writes many flows.
#[cfg(target_os = "linux")]
pub fn sync_filesystem(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir)?;
    // SAFETY: syncfs takes an open file descriptor, which `d` keeps open for the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `bytes` to `dest` only if `dest` does not exist (see [`NewFile`]); the directory entry
/// is not fsynced (see `sync_filesystem`).
///
/// Without `durable` a crash can lose a flow that was just written, but never leaves a partial one
/// under its final name.
pub fn write_new(dest: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    write_new_from(dest, &mut &bytes[..], durable).map(|_| ())
}

/// Like [`write_new`], streaming from `reader`; returns the number of bytes written.
pub fn write_new_from(dest: &Path, reader: &mut dyn Read, durable: bool) -> io::Result<u64> {
    let mut new = NewFile::create(dest, durable)?;
    let n = io::copy(reader, new.file())?;
    new.commit(dest)?;
    Ok(n)
}

/// True if `name` is a temporary file name of these writes (`.tmp-<pid>-…`) whose writer is gone:
/// its process has exited (Linux: by `/proc`), or the file at `path` is over a day old. A write
/// killed between creating its temporary file and linking it leaves one behind; a directory's
/// owner may remove such files.
pub fn is_abandoned_temp(name: &str, path: &Path) -> bool {
    let Some(pid) = name
        .strip_prefix(".tmp-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    let old = std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(86400));
    old || (pid != std::process::id() && !crate::cache::process_alive(pid))
}

fn temp_path(dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dir.join(format!(".tmp-{}-{n}-{nanos}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_of_dead_writers_are_abandoned_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let mine = temp_path(dir.path());
        std::fs::write(&mine, b"x").unwrap();
        let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            !is_abandoned_temp(&name(&mine), &mine),
            "this process is alive"
        );
        // No process has this pid (above the kernel's pid_max).
        let dead = dir.path().join(".tmp-4294967294-0-1");
        std::fs::write(&dead, b"x").unwrap();
        assert!(is_abandoned_temp(".tmp-4294967294-0-1", &dead));
        let blob = dir.path().join("ab".repeat(32));
        assert!(!is_abandoned_temp(&name(&blob), &blob));
        assert!(!is_abandoned_temp(".tmp-notapid", &dead));
    }

    #[test]
    fn never_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b");
        write_new(&dest, b"first", true).unwrap();
        let err = write_new(&dest, b"second", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&dest).unwrap(), b"first");
        let names: Vec<_> = fs::read_dir(dir.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b")]);
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x");
        let mut f = NewFile::create(&dest, false).unwrap();
        f.file().write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
