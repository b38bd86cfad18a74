//! Section 8: the README's first command on a fresh clone: the wall time from `git clone` to
//! the first successful `register` + `fetch`, cold debug build included, for the command as the
//! README writes it and for the same command building every backend.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{ratio, Bench, Table};

/// The first `cargo run` line of the README (the main job on the embedded default).
fn readme_command(root: &Path) -> Result<String> {
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    readme
        .lines()
        .find(|l| l.trim_start().starts_with("cargo run"))
        .map(|l| l.trim().to_string())
        .context("the README has no `cargo run` line")
}

/// Clones the workspace's HEAD into `dir` and runs `command` there with a fresh target
/// directory; returns the seconds from the start of the clone to the command's success.
fn fresh_clone_run(root: &Path, dir: &Path, command: &str) -> Result<f64> {
    let _ = std::fs::remove_dir_all(dir);
    let start = Instant::now();
    let status = Command::new("git")
        .args(["clone", "-q", "--no-local"])
        .arg(root)
        .arg(dir)
        .status()?;
    if !status.success() {
        bail!("git clone of {} failed", root.display());
    }
    let out = Command::new("bash")
        .args(["-c", command])
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env("FLOWSTORE_HOME", dir.join("home"))
        .output()?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "`{command}` failed on a fresh clone: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(secs)
}

/// Times the README's first command, and the same command with every backend, on fresh clones.
pub fn run(b: &Bench) -> Result<Table> {
    let readme = readme_command(&b.root)?;
    let lean = readme.contains("--no-default-features");
    let all_backends = readme.replace(" --no-default-features", "");
    let dir = b.scratch.join("firstrun");
    std::fs::create_dir_all(&dir)?;
    let readme_secs = fresh_clone_run(&b.root, &dir.join("readme"), &readme)?;
    let all_secs = if lean {
        fresh_clone_run(&b.root, &dir.join("all"), &all_backends)?
    } else {
        readme_secs
    };
    let _ = std::fs::remove_dir_all(&dir);
    let s = |v: f64| format!("{v:.0} s");
    Ok(Table {
        title: "8. The README's first command on a fresh clone".into(),
        note: format!(
            "Wall time from `git clone` of this commit to the end of the README's first command \
             (`register` then `fetch` of a Local flow), in a fresh target directory: the cold debug \
             build is most of it. Crates come from the machine's cargo registry cache (a machine \
             that never built Rust also downloads them first). The README's command: `{readme}`."
        ),
        header: ["command", "fresh clone to first register + fetch", "vs the README's"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            vec![
                if lean {
                    "README (Local only: --no-default-features)".into()
                } else {
                    "README (every backend)".into()
                },
                s(readme_secs),
                "1.0×".into(),
            ],
            vec![
                "the same with every backend (default features)".into(),
                s(all_secs),
                ratio(all_secs, readme_secs),
            ],
        ],
        after: String::new(),
    })
}
