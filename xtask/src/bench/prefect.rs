//! The Prefect 1 baseline: the same Prefect 1.4.1 virtualenv the interop tests use
//! ([`crate::servers::prefect1`]: `prefect==1.4.1`, `marshmallow<4`, boto3, dulwich).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Bench;

/// The virtualenv's python, installing it on first use (see
/// [`crate::servers::prefect1::ensure_venv`] for what it errors on).
pub fn python(bench: &Bench) -> Result<PathBuf> {
    crate::servers::prefect1::ensure_venv(&bench.root)
}

/// Runs one of `xtask/bench/*.py` with the baseline's python and parses its JSON line.
pub fn run_script(
    bench: &Bench,
    script: &str,
    args: &[String],
    envs: &[(String, String)],
) -> Result<serde_json::Value> {
    let py = python(bench)?;
    let out = Command::new(py)
        .arg(bench.root.join("xtask/bench").join(script))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .with_context(|| format!("running {script}"))?;
    if !out.status.success() {
        bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    super::last_json(&out.stdout)
}
