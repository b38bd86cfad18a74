//! The Prefect 1 baseline: a virtualenv with `prefect==1.4.1` and `boto3`, made by the bench.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Bench;

/// The virtualenv's python, installing it on first use.
pub fn python(bench: &Bench) -> Result<PathBuf> {
    let venv = bench.root.join("target/bench-venv");
    let py = venv.join("bin/python");
    let ready = Command::new(&py)
        .args([
            "-c",
            "import prefect, boto3, dulwich; assert prefect.__version__ == '1.4.1'",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if ready {
        return Ok(py);
    }
    eprintln!(
        "xtask bench: installing prefect==1.4.1 and boto3 into {}",
        venv.display()
    );
    let status = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()?;
    if !status.success() {
        bail!(
            "python3 -m venv {} failed (is python3-venv installed?)",
            venv.display()
        );
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "prefect==1.4.1", "boto3", "dulwich"])
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install prefect==1.4.1 boto3 failed");
    }
    Ok(py)
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
