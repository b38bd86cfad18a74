//! The real Prefect 1.4.1 from PyPI, the peer of the interop tests
//! (`crates/flowstore-cli/tests/prefect1_interop.rs`) and the baseline of `cargo xtask bench`:
//! a virtualenv under the target directory with [`REQUIREMENTS`], made once and reused while it
//! is complete. Nothing is served; the tests run its python (`FLOWSTORE_TEST_PREFECT1_PYTHON`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Servers;

/// What the virtualenv holds. `marshmallow<4`: marshmallow 4 removed APIs Prefect 1's
/// serializers use, and `prefect==1.4.1` does not cap it, so a plain install breaks on import.
/// boto3 for S3 storage, dulwich for Git storage.
pub const REQUIREMENTS: &[&str] = &["prefect==1.4.1", "marshmallow<4", "boto3", "dulwich"];

/// The virtualenv's directory under the workspace's target directory.
pub const VENV_DIR: &str = "target/prefect1-venv";

/// The file written once the install finished, holding [`REQUIREMENTS`]: a virtualenv without it
/// (an install killed half-way) or with other requirements is made again.
const READY_MARKER: &str = "flowstore-requirements.txt";

/// The import check a complete virtualenv passes.
const CHECK: &str = "import importlib.metadata as m, prefect, boto3, dulwich, marshmallow; \
    assert prefect.__version__ == '1.4.1', prefect.__version__; \
    assert int(m.version('marshmallow').split('.')[0]) < 4, m.version('marshmallow')";

/// Makes sure the virtualenv exists (see [`ensure_venv`]) and exports its python as
/// `FLOWSTORE_TEST_PREFECT1_PYTHON`.
pub fn start(s: &mut Servers) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?;
    let python = ensure_venv(root)?;
    s.set_env(
        "FLOWSTORE_TEST_PREFECT1_PYTHON",
        python.display().to_string(),
    );
    Ok(())
}

/// The python of the Prefect 1.4.1 virtualenv under `root` ([`VENV_DIR`]), creating it with
/// `python3 -m venv` and pip on first use, or again when it is incomplete or outdated.
///
/// Errors when `python3 -m venv` fails (python3-venv missing: `.ci/install.d/prefect1.sh`
/// installs it), when pip cannot install [`REQUIREMENTS`] (no network, no wheel for this
/// Python), or when the result fails the import check.
pub fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join(VENV_DIR);
    let python = venv.join("bin/python");
    let marker = venv.join(READY_MARKER);
    let wanted = REQUIREMENTS.join("\n");
    let marked = std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted);
    if marked && check(&python).is_ok() {
        return Ok(python);
    }

    eprintln!(
        "xtask: installing {} into {}",
        REQUIREMENTS.join(" "),
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .with_context(|| format!("removing the incomplete virtualenv {}", venv.display()))?;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv (is python3 installed?)")?;
    if !status.success() {
        bail!(
            "python3 -m venv {} failed ({status}); install python3-venv (.ci/install.d/prefect1.sh does)",
            venv.display()
        );
    }
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(REQUIREMENTS)
        .status()
        .with_context(|| format!("running {} -m pip", python.display()))?;
    if !status.success() {
        bail!(
            "pip install {} into {} failed ({status}); see pip's output above",
            REQUIREMENTS.join(" "),
            venv.display()
        );
    }
    check(&python).with_context(|| format!("the new virtualenv {}", venv.display()))?;
    std::fs::write(&marker, wanted).with_context(|| format!("writing {}", marker.display()))?;
    Ok(python)
}

/// Runs [`CHECK`] with `python`.
fn check(python: &Path) -> Result<()> {
    let out = Command::new(python)
        .args(["-c", CHECK])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} cannot import Prefect 1.4.1 with marshmallow<4, boto3 and dulwich: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_pin_prefect_and_cap_marshmallow() {
        assert!(REQUIREMENTS.contains(&"prefect==1.4.1"));
        assert!(REQUIREMENTS.contains(&"marshmallow<4"));
        assert!(CHECK.contains("'1.4.1'") && CHECK.contains("< 4"));
    }

    /// Makes (or reuses) the real virtualenv: needs python3-venv and PyPI, so only on request
    /// (`cargo test -p xtask -- --ignored`).
    #[test]
    #[ignore = "installs Prefect 1.4.1 from PyPI into target/prefect1-venv"]
    fn the_venv_is_made_then_reused() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let python = ensure_venv(root).unwrap();
        assert!(python.ends_with("prefect1-venv/bin/python"));
        let marker = root.join(VENV_DIR).join(READY_MARKER);
        let made = std::fs::metadata(&marker).unwrap().modified().unwrap();
        assert_eq!(ensure_venv(root).unwrap(), python);
        assert_eq!(
            std::fs::metadata(&marker).unwrap().modified().unwrap(),
            made
        );
    }

    #[test]
    fn a_venv_without_a_working_python_fails_the_check_naming_it() {
        let missing = std::env::temp_dir().join(format!(
            "flowstore-xtask-{}-no-such-venv/bin/python",
            std::process::id()
        ));
        let err = format!("{:#}", check(&missing).unwrap_err());
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }
}
