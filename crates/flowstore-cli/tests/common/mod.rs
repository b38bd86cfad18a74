//! Shared by the process test files: trial counts, a deterministic jitter, the kill window of
//! the SIGKILL trials, and a world of their own for `flowstore` processes.

use std::process::Command;

use flowstore_core::envelope::AppInfo;

/// `FLOWSTORE_STRESS=1` (set by `cargo xtask stress`) raises the trial counts.
pub fn stress() -> bool {
    std::env::var("FLOWSTORE_STRESS").is_ok_and(|v| v == "1")
}

/// The application the reliability tests seal flows as.
pub fn app() -> AppInfo {
    AppInfo::new("reliability", "1")
}

/// A small deterministic pseudo-random sequence (no dependency needed for jitter).
pub struct Jitter(pub u64);

impl Jitter {
    /// The next value in `0..below`.
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Runs one registration to the end (it must succeed: a complete version the trials' checks must
/// find intact) and returns the kill window for the SIGKILL trials, 1.5x its duration, so on a
/// fast or a slow machine some trials are killed mid-write and some finish.
pub fn kill_window(registration: &mut Command) -> u64 {
    let started = std::time::Instant::now();
    let out = registration.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (started.elapsed().as_millis() as u64 * 3 / 2).max(20)
}

/// A temporary directory for one test's `flowstore` processes: their home (default Local
/// storage) and blob cache live inside it.
pub struct World {
    _dir: tempfile::TempDir,
    /// The directory.
    pub root: std::path::PathBuf,
}

impl World {
    /// A fresh, empty world.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        World { _dir: dir, root }
    }

    /// The `flowstore` binary, with `FLOWSTORE_HOME` and `FLOWSTORE_BLOB_CACHE` inside the world
    /// and no `RUST_LOG`.
    pub fn flowstore(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flowstore"));
        c.env("FLOWSTORE_HOME", self.root.join("home"))
            .env("FLOWSTORE_BLOB_CACHE", self.root.join("cache"))
            .env_remove("RUST_LOG");
        c
    }
}
