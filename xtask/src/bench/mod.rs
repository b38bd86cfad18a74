//! `cargo xtask bench`: flowstore against Prefect 1 and against the floor, side by side, in one
//! run, on the same servers; writes `BENCHMARKS.md`.
//!
//! Each section runs a release-built driver (an example of the backend's crate) and, where it
//! applies, the Prefect 1 baseline (`prefect==1.4.1` in a virtualenv the bench installs) and the
//! floor (plain protocol requests with no SDK logic). Figures are medians over repetitions.

mod bundles;
mod firstrun;
mod footprint;
mod git;
mod memory;
mod prefect;
mod s3;
mod sections;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Bench parameters (the options of `cargo xtask bench`).
#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Flows in the Local section.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub local_flows: usize,
    /// Bytes per small flow.
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub small_size: usize,
    /// Repetitions (the median is reported).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub reps: usize,
    /// Flows in the S3 section.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub s3_flows: usize,
    /// Size of the big S3 flow, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub s3_big_mib: usize,
    /// Size of the memory section's script, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub memory_mib: usize,
    /// Crates whose cold release build is timed: light (core, local, secrets), all or none.
    #[arg(long, value_name = "WHICH", default_value = "light")]
    pub footprint_builds: String,
    /// Files in the bundles section's generated project.
    #[arg(long, value_name = "N", default_value_t = 400)]
    pub bundle_files: usize,
    /// Total size of that project, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 20)]
    pub bundle_mib: usize,
    /// Run only these sections (repeatable: local, s3, git, memory, docker, footprint, bundles,
    /// firstrun);
    /// their tables replace the same sections of the existing `BENCHMARKS.md`.
    #[arg(long = "section", value_name = "NAME")]
    pub sections: Vec<String>,
}

/// One table of results.
#[derive(Debug, Default)]
pub struct Table {
    /// Section title.
    pub title: String,
    /// What was measured and how.
    pub note: String,
    /// Column headers.
    pub header: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
    /// Markdown printed after the table (a second table, a remark).
    pub after: String,
}

impl Table {
    fn markdown(&self) -> String {
        let mut s = format!("## {}\n\n{}\n\n", self.title, self.note);
        if self.header.is_empty() {
            return s;
        }
        s.push_str(&format!("| {} |\n", self.header.join(" | ")));
        s.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s.push('\n');
        if !self.after.is_empty() {
            s.push_str(self.after.trim_end());
            s.push_str("\n\n");
        }
        s
    }
}

/// Shared context of a bench run.
pub struct Bench {
    /// Workspace root.
    pub root: PathBuf,
    /// Cargo's target directory (where release builds land).
    pub target: PathBuf,
    /// Scratch directory (`<target>/bench`).
    pub scratch: PathBuf,
    /// Parameters.
    pub params: Params,
}

impl Bench {
    /// Runs `cargo run --release -p <package> --example <example> -- <args>` and parses the JSON
    /// object it prints last.
    pub fn run_example(
        &self,
        package: &str,
        example: &str,
        args: &[String],
        envs: &[(String, String)],
    ) -> Result<serde_json::Value> {
        let out = Command::new("cargo")
            .args([
                "run",
                "-q",
                "--release",
                "-p",
                package,
                "--example",
                example,
                "--",
            ])
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .with_context(|| format!("running {package} example {example}"))?;
        if !out.status.success() {
            bail!(
                "{package} example {example} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        last_json(&out.stdout)
    }
}

/// The last line of `stdout` that parses as JSON.
pub fn last_json(stdout: &[u8]) -> Result<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("no JSON result line in the driver's output")
}

/// `cargo xtask bench [options]`.
pub fn run(root: &Path, params: Params) -> Result<()> {
    let target = crate::target_dir(root);
    let scratch = target.join("bench");
    std::fs::create_dir_all(&scratch)?;
    let bench = Bench {
        root: root.to_path_buf(),
        target,
        scratch,
        params,
    };
    let mut tables = Vec::new();
    let mut problems = Vec::new();
    type Section = fn(&Bench) -> Result<Table>;
    let all: [(&str, Section); 8] = [
        ("local", sections::local),
        ("s3", s3::run),
        ("git", git::run),
        ("memory", memory::run),
        ("docker", sections::docker_build),
        ("footprint", footprint::run),
        ("bundles", bundles::run),
        ("firstrun", firstrun::run),
    ];
    for wanted in &bench.params.sections {
        if !all.iter().any(|(name, _)| name == wanted) {
            bail!(
                "unknown bench section {wanted:?}; the sections are {}",
                all.map(|(n, _)| n).join(", ")
            );
        }
    }
    let chosen = |name: &str| {
        bench.params.sections.is_empty() || bench.params.sections.iter().any(|s| s == name)
    };
    for (name, section) in all.into_iter().filter(|(n, _)| chosen(n)) {
        eprintln!("xtask bench: {name}");
        match section(&bench) {
            Ok(t) => tables.push(t),
            Err(e) => {
                eprintln!("xtask bench: section {name} failed: {e:#}");
                problems.push(format!("- section `{name}` did not run: {e:#}"));
            }
        }
    }
    let path = root.join("BENCHMARKS.md");
    let md = if bench.params.sections.is_empty() {
        render(&bench, &tables, &problems)
    } else {
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let mut md = existing;
        for t in &tables {
            md = splice(&md, &t.markdown());
        }
        md
    };
    std::fs::write(&path, &md)?;
    println!("{md}");
    if !problems.is_empty() {
        bail!("{} bench section(s) failed", problems.len());
    }
    Ok(())
}

/// Replaces the section of `md` whose heading has the same number as `section`'s (`## 7.`), or
/// inserts `section` before "Not measured" (else at the end).
fn splice(md: &str, section: &str) -> String {
    let number = section
        .lines()
        .next()
        .and_then(|h| h.strip_prefix("## "))
        .and_then(|h| h.split_once(' '))
        .map(|(n, _)| format!("## {n} "))
        .unwrap_or_default();
    let mut blocks: Vec<String> = Vec::new();
    for line in md.lines() {
        if line.starts_with("## ") || blocks.is_empty() {
            blocks.push(String::new());
        }
        let last = blocks.last_mut().expect("a block was pushed");
        last.push_str(line);
        last.push('\n');
    }
    if let Some(b) = blocks.iter_mut().find(|b| b.starts_with(&number)) {
        *b = section.to_string();
    } else {
        let at = blocks
            .iter()
            .position(|b| b.starts_with("## Not measured"))
            .unwrap_or(blocks.len());
        blocks.insert(at, section.to_string());
    }
    blocks.concat()
}

fn render(bench: &Bench, tables: &[Table], problems: &[String]) -> String {
    let mut s = String::from("# flowstore benchmarks\n\n");
    s.push_str("Written by `cargo xtask bench` (rerun it to refresh). Every figure in a table was measured \
                side by side in the same run, on the same machine and the same servers; figures are \
                medians over the repetitions.\n\n");
    s.push_str(&format!("Machine: {}\n\n", machine()));
    s.push_str(&format!("Parameters: {:?}\n\n", bench.params));
    for t in tables {
        s.push_str(&t.markdown());
    }
    if !problems.is_empty() {
        s.push_str("## Not measured in this run\n\n");
        for p in problems {
            s.push_str(p);
            s.push('\n');
        }
    }
    s
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem} RAM, {}, {rustc}",
        std::env::consts::OS
    )
}

/// Starts one S3 server (moto, s3s-fs) in a fresh directory named after `label`; returns it,
/// its endpoint and the endpoint the floors' unsigned requests go to (the same one, unless the
/// server runs a second, credential-less instance for them).
pub fn start_s3(
    b: &Bench,
    label: &str,
    start: fn(&mut crate::servers::Servers) -> Result<()>,
) -> Result<(crate::servers::Servers, String, String)> {
    let mut servers = crate::servers::Servers::new(&b.scratch.join(format!("servers-{label}")))?;
    start(&mut servers)?;
    let endpoint = servers.env()["FLOWSTORE_TEST_S3_ENDPOINT"].clone();
    let floor_endpoint = servers
        .env()
        .get("FLOWSTORE_TEST_S3_PLAIN_ENDPOINT")
        .cloned()
        .unwrap_or_else(|| endpoint.clone());
    Ok((servers, endpoint, floor_endpoint))
}

/// The number at `key` of a driver's JSON result (NaN when it is missing).
pub fn field(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// `a / b` as `N.N×`.
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "-".into()
    } else {
        format!("{:.1}×", a / b)
    }
}

/// A number with thousands kept short.
pub fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::splice;

    #[test]
    fn a_section_run_alone_replaces_its_own_table_and_keeps_the_others() {
        let md = "# flowstore benchmarks\n\nintro\n\n## 1. Local: old\n\nold rows\n\n## 2. S3\n\ns3 rows\n";
        let replaced = splice(md, "## 1. Local: new\n\nnew rows\n\n");
        assert_eq!(
            replaced,
            "# flowstore benchmarks\n\nintro\n\n## 1. Local: new\n\nnew rows\n\n## 2. S3\n\ns3 rows\n"
        );
        let added = splice(md, "## 7. Bundles\n\nrows\n\n");
        assert!(
            added.ends_with("## 2. S3\n\ns3 rows\n## 7. Bundles\n\nrows\n\n"),
            "{added}"
        );
        let with_problems = format!("{md}## Not measured in this run\n\n- x\n");
        let inserted = splice(&with_problems, "## 7. Bundles\n\nrows\n\n");
        assert!(
            inserted.contains("## 7. Bundles\n\nrows\n\n## Not measured"),
            "{inserted}"
        );
    }
}
