//! Create-only, crash-safe file writes: a flow is either absent or complete, never half-written,
//! and an existing file is never replaced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `dest` only if `dest` does not exist: temp file in the same directory,
/// fsync, hard-link into place (fails with `AlreadyExists` instead of replacing), remove the temp
/// name, fsync the directory.
pub fn write_new(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    write_new_from(dest, &mut &bytes[..]).map(|_| ())
}

/// Like [`write_new`], streaming from `reader`; returns the number of bytes written.
pub fn write_new_from(dest: &Path, reader: &mut dyn Read) -> io::Result<u64> {
    let dir = dest
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "destination has no parent"))?;
    fs::create_dir_all(dir)?;
    let tmp = temp_path(dir);
    let result = (|| -> io::Result<u64> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let n = io::copy(reader, &mut file)?;
        file.flush()?;
        file.sync_all()?;
        // Stored flows are read-only: nothing in flowstore ever rewrites one.
        let mut perms = file.metadata()?.permissions();
        perms.set_readonly(true);
        file.set_permissions(perms)?;
        drop(file);
        fs::hard_link(&tmp, dest)?;
        Ok(n)
    })();
    let _ = fs::remove_file(&tmp);
    let n = result?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(n)
}

/// Temp files start with `.` so listings skip them.
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
    fn never_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b");
        write_new(&dest, b"first").unwrap();
        let err = write_new(&dest, b"second").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&dest).unwrap(), b"first");
        let names: Vec<_> = fs::read_dir(dir.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b")]);
    }
}
