//! `cargo xtask fuzz [SECONDS]`: runs every cargo-fuzz target in `fuzz/` for a set time and
//! reports executions; fails on any crash, panic or hang (libFuzzer's timeout).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

const TARGETS: [&str; 5] = [
    "reference",
    "envelope",
    "slugify",
    "template",
    "storage_url",
];

/// Runs each target for `seconds`.
pub fn run(root: &Path, seconds: u64) -> Result<()> {
    ensure_cargo_fuzz()?;
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for target in TARGETS {
        eprintln!("xtask fuzz: {target} for {seconds} s");
        let out = Command::new("cargo")
            .args([
                "fuzz",
                "run",
                target,
                "--",
                &format!("-max_total_time={seconds}"),
                "-timeout=10",
                "-rss_limit_mb=4096",
            ])
            .current_dir(root.join("fuzz"))
            // cargo-fuzz passes unstable flags to rustc; this lets the stable toolchain accept them.
            .env("RUSTC_BOOTSTRAP", "1")
            .output()
            .context("running cargo fuzz")?;
        let text = String::from_utf8_lossy(&out.stderr);
        let runs = text
            .lines()
            .rev()
            .find_map(|l| {
                l.strip_prefix("Done ")
                    .and_then(|r| r.split_whitespace().next())
            })
            .unwrap_or("?")
            .to_string();
        if !out.status.success() {
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            failed.push(target);
        }
        report.push((target, runs, out.status.success()));
    }
    println!("| fuzz target | seconds | executions | result |\n|---|---|---|---|");
    for (t, runs, ok) in &report {
        println!(
            "| {t} | {seconds} | {runs} | {} |",
            if *ok {
                "no crash"
            } else {
                "CRASH (see fuzz/artifacts)"
            }
        );
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        eprintln!("xtask fuzz: installing cargo-fuzz");
        let status = Command::new("cargo")
            .args(["install", "-q", "cargo-fuzz"])
            .status()?;
        if !status.success() {
            bail!("cargo install cargo-fuzz failed");
        }
    }
    Ok(())
}
