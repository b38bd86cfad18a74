//! Workspace automation.
//!
//! - `cargo xtask test [--no-install] [-- <cargo test args>]`: installs what the servers need
//!   (`.ci/install.d/*.sh`, idempotent; skipped with `--no-install`), builds everything, starts every
//!   real server the backends need on 127.0.0.1, runs the whole suite with them, stops them, and
//!   prints a pass/fail matrix per backend.
//! - `cargo xtask bench [options]`: benchmarks against Prefect 1 and the floor; writes `BENCHMARKS.md`.
//! - `cargo xtask schema`: regenerates `schema/storage-reference.schema.json`.

mod bench;
mod fuzz;
mod matrix;
mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("schema") => schema(&root),
        Some("bench") => bench::run(&root, &args[1..]),
        Some("fuzz") => fuzz::run(&root, &args[1..]),
        Some("stress") => stress(&root, &args[1..]),
        Some("fake-apis") => {
            servers::fake_apis::serve(args.get(1).context("fake-apis PORT")?.parse()?)
        }
        Some("install") => install(&root),
        Some("serve") => serve(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test [--no-install] [-- ARGS]  install + start the real servers, run every test, print the matrix\n  \
                 serve                         start every server and print its environment (for development)\n  \
                 install                     run .ci/install.d/*.sh (servers and tools the tests need)\n  \
                 bench [--reps N ...]          flowstore vs Prefect 1 vs the floor; writes BENCHMARKS.md\n  \
                 fuzz [SECONDS]                run every cargo-fuzz target for SECONDS (default 30)\n  \
                 stress                        the reliability suites with more trials (FLOWSTORE_STRESS=1)\n  \
                 schema                      regenerate schema/storage-reference.schema.json"
            );
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs every `.ci/install.d/*.sh`, in name order.
fn install(root: &Path) -> Result<()> {
    let dir = root.join(".ci/install.d");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    for script in scripts {
        eprintln!("xtask: installing with {}", script.display());
        let status = Command::new("bash").arg(&script).status()?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
    }
    Ok(())
}

/// Starts every server, prints `export` lines for their environment, and waits for Ctrl-C (or
/// stdin to close) before stopping them: run the tests of one crate by hand against real servers.
fn serve(root: &Path) -> Result<()> {
    let mut servers = servers::Servers::new(&root.join("target/xtask-serve"))?;
    for spec in servers::SERVERS {
        (spec.start)(&mut servers).with_context(|| format!("starting {}", spec.name))?;
    }
    for (k, v) in servers.env() {
        println!("export {k}='{v}'");
    }
    println!("# servers are running; press Enter or Ctrl-C to stop them");
    let _ = std::io::stdin().read_line(&mut String::new());
    servers.stop_all();
    Ok(())
}

fn schema(root: &Path) -> Result<()> {
    let path = root.join("schema/storage-reference.schema.json");
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    std::fs::write(
        &path,
        format!("{}\n", flowstore_core::StorageReference::json_schema()),
    )?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// `cargo xtask stress`: the reliability suites with FLOWSTORE_STRESS=1 (50 SIGKILL trials per
/// backend, more fault rounds), against the real servers.
fn stress(root: &Path, args: &[String]) -> Result<()> {
    let mut full: Vec<String> = args.to_vec();
    full.push("--".into());
    for a in [
        "-p",
        "flowstore-cli",
        "--test",
        "reliability",
        "--test",
        "reliability_servers",
        "--test",
        "git_cache_kills",
    ] {
        full.push(a.into());
    }
    std::env::set_var("FLOWSTORE_STRESS", "1");
    test(root, &full)
}

fn test(root: &Path, args: &[String]) -> Result<()> {
    let (ours, cargo_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    if let Some(other) = ours.iter().find(|a| *a != "--no-install") {
        if other != "--help" && other != "-h" {
            eprintln!("xtask test: unknown option {other}");
        }
        eprintln!(
            "usage: cargo xtask test [--no-install] [-- ARGS]\n\n\
             Installs the servers (.ci/install.d, unless --no-install), starts them on 127.0.0.1,\n\
             runs `cargo test --workspace ARGS` against them and prints the matrix per backend.\n\
             Example: cargo xtask test --no-install -- -p flowstore-docker"
        );
        std::process::exit(if other == "--help" || other == "-h" {
            0
        } else {
            2
        });
    }
    let scope: Vec<String> = if cargo_args.iter().any(|a| a == "-p") {
        Vec::new()
    } else {
        vec!["--workspace".to_string()]
    };
    if !ours.iter().any(|a| a == "--no-install") {
        install(root)?;
    }

    eprintln!("xtask: building the workspace and its tests");
    let status = Command::new("cargo")
        .args(["test", "--workspace", "--no-run", "--quiet"])
        .status()?;
    if !status.success() {
        bail!("the build failed");
    }

    let mut servers = servers::Servers::new(&root.join("target/xtask-servers"))?;
    let mut server_failures = Vec::new();
    for spec in servers::SERVERS {
        eprintln!(
            "xtask: starting {} (for {})",
            spec.name,
            spec.backends.join(", ")
        );
        if let Err(e) = (spec.start)(&mut servers) {
            eprintln!("xtask: {} did not start: {e:#}", spec.name);
            server_failures.push((spec.name, format!("{e:#}")));
        }
    }

    eprintln!("xtask: running the suite");
    let log_path = root.join("target/xtask-test.log");
    let mut cmd = Command::new("cargo");
    cmd.arg("test")
        .args(&scope)
        .arg("--no-fail-fast")
        .args(cargo_args)
        // Every test's own output is shown, so the canary scan below sees it all.
        .args(["--", "--nocapture"])
        .env("FLOWSTORE_REQUIRE_SERVERS", "1")
        .envs(servers.env())
        .stdin(Stdio::null());
    let outcome = matrix::run_and_collect(cmd, &log_path);
    let server_secrets: Vec<(String, String)> = servers
        .env()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    servers.stop_all();
    let (results, success) = outcome?;

    println!();
    println!("{}", matrix::render(&results));
    for (name, err) in &server_failures {
        println!("server {name} failed to start: {err}");
    }
    let totals = matrix::totals(&results);
    let canaries = canary_hits(&log_path, servers_env_secrets(&server_secrets))?;
    println!("secret canaries found in the test output: {canaries}");
    println!("full log: {}", log_path.display());
    println!(
        "{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.skipped
    );
    if !success || totals.failed > 0 || !server_failures.is_empty() || canaries > 0 {
        bail!("the suite failed");
    }
    Ok(())
}

/// The secret values the servers were given (tokens, keys): canaries that must never show up in
/// anything the tests print.
fn servers_env_secrets(env: &[(String, String)]) -> Vec<String> {
    let mut values = Vec::new();
    for (k, v) in env {
        if k.contains("TOKEN") || k.ends_with("_KEY") || k.contains("SECRET") {
            values.push(v.clone());
        }
        if let Some(key) = v.split(';').find_map(|p| p.strip_prefix("AccountKey=")) {
            values.push(key.to_string());
        }
    }
    // The canary values the tests themselves plant (they all contain this marker).
    values.push("c4n4ry".to_string());
    values.retain(|v| v.len() >= 6);
    values
}

/// Counts lines of the test log that contain a canary, printing the first few (cut short).
fn canary_hits(log: &Path, canaries: Vec<String>) -> Result<usize> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let hits = canary_lines(&text, &canaries);
    for l in hits.iter().take(5) {
        println!(
            "canary hit (line shortened): {}",
            l.chars().take(80).collect::<String>()
        );
    }
    Ok(hits.len())
}

/// The lines of `text` that contain any canary.
fn canary_lines<'t>(text: &'t str, canaries: &[String]) -> Vec<&'t str> {
    text.lines()
        .filter(|l| canaries.iter().any(|c| l.contains(c.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_in_the_log_are_counted() {
        // Made-up values: this test's own output must never contain a real server secret.
        let text = "ok line\nerror: token example-t0ken-value leaked\nkey abc123example\n";
        let env = vec![
            (
                "FLOWSTORE_TEST_X_TOKEN".to_string(),
                "example-t0ken-value".to_string(),
            ),
            (
                "FLOWSTORE_TEST_Y_CONNECTION_STRING".to_string(),
                "AccountName=a;AccountKey=abc123example;".to_string(),
            ),
            (
                "FLOWSTORE_TEST_S3_ENDPOINT".to_string(),
                "http://127.0.0.1:1".to_string(),
            ),
        ];
        assert_eq!(canary_lines(text, &servers_env_secrets(&env)).len(), 2);
    }
}
