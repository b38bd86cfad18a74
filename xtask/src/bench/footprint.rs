//! Section 6: what each crate costs a user — its normal dependency tree and a cold release build
//! of a program that uses only that crate.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{Bench, Table};

const CRATES: [&str; 7] = [
    "flowstore-core",
    "flowstore-local",
    "flowstore-secrets",
    "flowstore-webhook",
    "flowstore-cloud",
    "flowstore-git",
    "flowstore-docker",
];
const LIGHT: [&str; 3] = ["flowstore-core", "flowstore-local", "flowstore-secrets"];

/// Crates in `krate`'s normal (non-dev, non-build) dependency tree, itself included.
fn dependency_count(krate: &str) -> Result<usize> {
    let out = Command::new("cargo")
        .args([
            "tree", "-q", "-p", krate, "-e", "normal", "--prefix", "none",
        ])
        .output()?;
    if !out.status.success() {
        bail!(
            "cargo tree -p {krate}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let set: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some(format!("{} {}", parts.next()?, parts.next()?))
        })
        .collect();
    Ok(set.len())
}

/// Seconds for a cold `cargo build --release` of a program depending only on `krate`.
fn cold_build_seconds(b: &Bench, krate: &str) -> Result<f64> {
    let dir = b.scratch.join("footprint").join(krate);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src"))?;
    let path = b.root.join("crates").join(krate);
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"uses-{krate}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\n{krate} = {{ path = \"{}\" }}\n\n[workspace]\n",
            path.display()
        ),
    )?;
    std::fs::write(
        dir.join("src/main.rs"),
        format!("use {} as _;\nfn main() {{}}\n", krate.replace('-', "_")),
    )?;
    // The workspace lock file pins the same versions the project is tested with.
    std::fs::copy(b.root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    let start = Instant::now();
    let status = Command::new("cargo")
        .args(["build", "-q", "--release"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .status()
        .context("cargo build")?;
    if !status.success() {
        bail!("building a program that uses {krate} failed");
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(dir.join("target"));
    Ok(secs)
}

/// Runs the section.
pub fn run(b: &Bench) -> Result<Table> {
    let mut rows = Vec::new();
    for krate in CRATES {
        let deps = dependency_count(krate)?;
        let build = match b.params.footprint_builds.as_str() {
            "all" => true,
            "none" => false,
            _ => LIGHT.contains(&krate),
        };
        let secs = if build {
            format!("{:.0} s", cold_build_seconds(b, krate)?)
        } else {
            "(not built: --footprint-builds all)".to_string()
        };
        rows.push(vec![krate.to_string(), deps.to_string(), secs]);
    }
    Ok(Table {
        after: String::new(),
        title: "6. Footprint: what depending on one crate costs".into(),
        note: "Crates in each crate's normal dependency tree (itself included; `cargo tree -e normal`), and the \
               wall-clock time of a cold `cargo build --release` of a program that depends on that crate alone \
               (its own target directory, the workspace's Cargo.lock)."
            .into(),
        header: ["crate", "crates in dependency tree", "cold release build"].map(String::from).to_vec(),
        rows,
    })
}
