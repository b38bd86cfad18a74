//! Checks against the real world that need no account: botocore as the judge of every CodeCommit
//! request ([`botocore_judge`](super::botocore_judge)), and the Bitbucket Cloud API answers that
//! pybitbucket's source distribution ships in its tests (captured from `api.bitbucket.org`), which
//! `tests/bitbucket_recorded.rs` replays. The answers are downloaded here (`pip download`, into
//! this run's scratch directory), never committed.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Servers;

/// The pybitbucket release whose `tests/*.json` are replayed.
pub const PYBITBUCKET: &str = "pybitbucket==0.12.0";

/// Starts the botocore judge, then downloads pybitbucket's recorded answers and exports
/// `FLOWSTORE_TEST_PYBITBUCKET_TESTS` (the directory holding `Branch.json`, `Tag.json`, …).
pub fn start(s: &mut Servers) -> Result<()> {
    super::botocore_judge::start(s)?;
    let dir = s.temp_dir("pybitbucket")?;
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-binary",
            ":all:",
            PYBITBUCKET,
            "-d",
        ])
        .arg(&dir)
        .output()
        .context("running pip download")?;
    if !out.status.success() {
        bail!(
            "pip download {PYBITBUCKET} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sdist = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .context("pip download left no .tar.gz")?;
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&sdist)
        .arg("-C")
        .arg(&dir)
        .status()?;
    if !status.success() {
        bail!("extracting {} failed", sdist.display());
    }
    let tests = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path().join("tests")))
        .find(|p| p.join("Branch.json").is_file())
        .context("the pybitbucket sdist has no tests/Branch.json")?;
    s.set_env(
        "FLOWSTORE_TEST_PYBITBUCKET_TESTS",
        tests.to_string_lossy().into_owned(),
    );
    Ok(())
}
