//! Workspace automation: `cargo xtask <command>` (`cargo xtask --help` lists the commands).
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
use clap::{Args, Parser, Subcommand};

/// Workspace automation for flowstore.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install and start the real servers, run every test against them, print the matrix.
    #[command(after_help = "Example: cargo xtask test --no-install -- -p flowstore-docker")]
    Test(TestArgs),
    /// Start every server and print its environment (for development); Enter or Ctrl-C stops them.
    Serve,
    /// Run .ci/install.d/*.sh (the servers and tools the tests need).
    Install,
    /// Benchmark flowstore vs Prefect 1 vs the floor; writes BENCHMARKS.md.
    Bench(bench::Params),
    /// Run every cargo-fuzz target for SECONDS each.
    Fuzz {
        /// How long each target runs, in seconds.
        #[arg(value_name = "SECONDS", default_value_t = 30)]
        seconds: u64,
    },
    /// Run the reliability suites with more trials (FLOWSTORE_STRESS=1) against the real servers.
    Stress(StressArgs),
    /// Regenerate schema/storage-reference.schema.json.
    Schema,
    /// Serve the fake GitHub, GitLab, Bitbucket and CodeCommit APIs on 127.0.0.1:PORT.
    FakeApis {
        /// The port to listen on.
        #[arg(value_name = "PORT")]
        port: u16,
    },
}

/// Options of `test`.
#[derive(Debug, Args)]
struct TestArgs {
    /// Skip .ci/install.d (the servers and tools are already installed).
    #[arg(long)]
    no_install: bool,
    /// Arguments for `cargo test` (after `--`); with `-p`, only those packages are tested.
    #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
    cargo_args: Vec<String>,
}

/// Options of `stress`.
#[derive(Debug, Args)]
struct StressArgs {
    /// Skip .ci/install.d (the servers and tools are already installed).
    #[arg(long)]
    no_install: bool,
    /// More arguments for `cargo test` (after `--`), added to those that select the suites.
    #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
    cargo_args: Vec<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Cmd::Test(args) => test(&root, &args),
        Cmd::Serve => serve(&root),
        Cmd::Install => install(&root),
        Cmd::Bench(params) => bench::run(&root, params),
        Cmd::Fuzz { seconds } => fuzz::run(&root, seconds),
        Cmd::Stress(args) => stress(&root, args),
        Cmd::Schema => schema(&root),
        Cmd::FakeApis { port } => servers::fake_apis::serve(port),
    }
}

/// Cargo's target directory for this workspace: `CARGO_TARGET_DIR` when set (relative to the
/// working directory, as cargo reads it), else what `cargo metadata` says (a
/// `build.target-dir` setting), else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return std::env::current_dir()
            .map(|cwd| cwd.join(&dir))
            .unwrap_or(dir);
    }
    Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|m| m["target_directory"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| root.join("target"))
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
    let mut servers = servers::Servers::new(&target_dir(root).join("xtask-serve"))?;
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
/// backend, more fault rounds), against the real servers. Cargo arguments after `--` are added.
fn stress(root: &Path, args: StressArgs) -> Result<()> {
    let mut cargo_args: Vec<String> = [
        "-p",
        "flowstore-cli",
        "--test",
        "reliability",
        "--test",
        "reliability_servers",
        "--test",
        "git_cache_kills",
    ]
    .map(String::from)
    .to_vec();
    cargo_args.extend(args.cargo_args);
    std::env::set_var("FLOWSTORE_STRESS", "1");
    test(
        root,
        &TestArgs {
            no_install: args.no_install,
            cargo_args,
        },
    )
}

fn test(root: &Path, args: &TestArgs) -> Result<()> {
    let cargo_args = &args.cargo_args;
    let scope: Vec<String> = if cargo_args.iter().any(|a| a == "-p") {
        Vec::new()
    } else {
        vec!["--workspace".to_string()]
    };
    if !args.no_install {
        install(root)?;
    }

    eprintln!("xtask: building the workspace and its tests");
    let status = Command::new("cargo")
        .args(["test", "--workspace", "--no-run", "--quiet"])
        .status()?;
    if !status.success() {
        bail!("the build failed");
    }

    let mut servers =
        servers::Servers::new(&servers::run_dir(&target_dir(root).join("xtask-servers")))?;
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
    let log_path = target_dir(root).join("xtask-test.log");
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
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_options_parse_with_their_defaults() {
        let Cmd::Bench(p) = parse(&["bench", "--reps", "3", "--footprint-builds", "all"])
            .unwrap()
            .command
        else {
            panic!("not bench");
        };
        assert_eq!(
            format!("{p:?}"),
            "Params { local_flows: 1000, small_size: 4096, reps: 3, s3_flows: 200, \
             s3_big_mib: 256, memory_mib: 1024, footprint_builds: \"all\", bundle_files: 400, \
             bundle_mib: 20, sections: [] }"
        );
        let Cmd::Bench(p) = parse(&["bench", "--section", "bundles", "--section", "local"])
            .unwrap()
            .command
        else {
            panic!("not bench");
        };
        assert_eq!(p.sections, ["bundles", "local"]);
        for help in [&["bench", "--help"][..], &["--help"], &["test", "-h"]] {
            let e = parse(help).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{help:?}");
            assert_eq!(e.exit_code(), 0);
        }
        for bad in [
            &["bench", "--reps"][..],
            &["bench", "--reps", "many"],
            &["bench", "--section"],
            &["bogus"],
            &[],
            &["fake-apis"],
            &["fuzz", "soon"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn test_stress_fuzz_and_fake_apis_arguments() {
        let Cmd::Test(t) = parse(&[
            "test",
            "--no-install",
            "--",
            "-p",
            "flowstore-docker",
            "--x",
        ])
        .unwrap()
        .command
        else {
            panic!("not test");
        };
        assert!(t.no_install);
        assert_eq!(t.cargo_args, ["-p", "flowstore-docker", "--x"]);
        let Cmd::Test(t) = parse(&["test"]).unwrap().command else {
            panic!("not test");
        };
        assert!(!t.no_install && t.cargo_args.is_empty());
        assert!(parse(&["test", "-p", "x"]).is_err());
        let Cmd::Stress(s) = parse(&["stress", "--no-install"]).unwrap().command else {
            panic!("not stress");
        };
        assert!(s.no_install && s.cargo_args.is_empty());
        assert!(matches!(
            parse(&["fuzz"]).unwrap().command,
            Cmd::Fuzz { seconds: 30 }
        ));
        assert!(matches!(
            parse(&["fuzz", "5"]).unwrap().command,
            Cmd::Fuzz { seconds: 5 }
        ));
        assert!(matches!(
            parse(&["fake-apis", "8080"]).unwrap().command,
            Cmd::FakeApis { port: 8080 }
        ));
    }

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
