//! Runs `cargo test`, keeps its output, and folds it into a backend × (conformance, own tests)
//! matrix.
//!
//! Rows come from the test binaries: an integration test file `tests/<backend>.rs` is that
//! backend's row; a crate's unit tests and doctests make a `<crate> (unit+doc)` row. Tests whose
//! path contains `conformance::` count as conformance. Lines `flowstore-skip: …` and
//! `flowstore-not-applicable: …` (printed by the testkit) turn an `ok` into a skip / n/a.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// Counts for one cell of the matrix.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests skipped (no server) or ignored.
    pub skipped: usize,
    /// Checks that do not apply to the backend.
    pub not_applicable: usize,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.skipped += o.skipped;
        self.not_applicable += o.not_applicable;
    }
}

/// One matrix row.
#[derive(Debug, Default, Clone)]
pub struct Row {
    /// Conformance-suite checks.
    pub conformance: Counts,
    /// The backend's own tests.
    pub own: Counts,
}

/// Rows by name.
pub type Results = BTreeMap<String, Row>;

/// Runs `cmd` with stdout and stderr merged, echoing and logging every line; returns the parsed
/// matrix and whether the command succeeded.
pub fn run_and_collect(mut cmd: Command, log_path: &Path) -> Result<(Results, bool)> {
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    cmd.stdout(writer.try_clone()?).stderr(writer);
    let mut child = cmd.spawn().context("running cargo test")?;
    drop(cmd);
    let mut log = std::fs::File::create(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut parser = Parser::default();
    let stdout = std::io::stdout();
    for line in BufReader::new(reader).lines() {
        let line = line?;
        writeln!(log, "{line}")?;
        writeln!(stdout.lock(), "{line}")?;
        parser.line(&line);
    }
    let status = child.wait()?;
    Ok((parser.finish(), status.success()))
}

/// The words libtest ends a `test name ... ` line with.
const OUTCOMES: [&str; 3] = ["ok", "FAILED", "ignored"];

#[derive(Default)]
struct Parser {
    results: Results,
    current: Option<String>,
    /// A `test name ...` line whose outcome was pushed to a later line by another test's output.
    awaiting_outcome: Option<String>,
    /// Per current binary: conformance `ok`s to turn into n/a or skip.
    pending_na: usize,
    pending_skip_conformance: usize,
    pending_skip_own: usize,
}

impl Parser {
    fn line(&mut self, line: &str) {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Running ") {
            self.flush();
            self.current = Some(row_for_running(rest));
        } else if let Some(krate) = t.strip_prefix("Doc-tests ") {
            self.flush();
            self.current = Some(format!("{} (unit+doc)", short_crate(krate)));
        } else if let Some(rest) = t.strip_prefix("flowstore-not-applicable: ") {
            let _ = rest;
            self.pending_na += 1;
        } else if let Some(rest) = t.strip_prefix("flowstore-skip: ") {
            if rest.starts_with("conformance::") {
                self.pending_skip_conformance += 1;
            } else {
                self.pending_skip_own += 1;
            }
        } else if let Some(rest) = t.strip_prefix("test ") {
            let Some((name, outcome)) = rest.rsplit_once(" ...").map(|(n, o)| (n, o.trim())) else {
                return;
            };
            if outcome.is_empty() {
                self.awaiting_outcome = Some(name.to_string());
                return;
            }
            self.outcome(name, outcome);
        } else if OUTCOMES.contains(&t.split_whitespace().next().unwrap_or("")) {
            if let Some(name) = self.awaiting_outcome.take() {
                self.outcome(&name, t);
            }
        } else if let Some((name, outcome)) = displaced_test_line(t) {
            self.outcome(name, outcome);
        }
    }

    /// Counts one test's outcome (`ok`, `FAILED`, `ignored`) in the current binary's row.
    fn outcome(&mut self, name: &str, outcome: &str) {
        let Some(row_name) = &self.current else {
            return;
        };
        let row = self.results.entry(row_name.clone()).or_default();
        let cell = if name.contains("conformance::") {
            &mut row.conformance
        } else {
            &mut row.own
        };
        match outcome.split_whitespace().next().unwrap_or("") {
            "ok" => cell.passed += 1,
            "FAILED" => cell.failed += 1,
            "ignored" => cell.skipped += 1,
            _ => {}
        }
    }

    /// Moves the skip / n/a notes of the binary that just ended out of its `ok` counts.
    fn flush(&mut self) {
        if let Some(name) = &self.current {
            let row = self.results.entry(name.clone()).or_default();
            let moved = self.pending_na.min(row.conformance.passed);
            row.conformance.passed -= moved;
            row.conformance.not_applicable += moved;
            let moved = self.pending_skip_conformance.min(row.conformance.passed);
            row.conformance.passed -= moved;
            row.conformance.skipped += moved;
            let moved = self.pending_skip_own.min(row.own.passed);
            row.own.passed -= moved;
            row.own.skipped += moved;
        }
        self.pending_na = 0;
        self.pending_skip_conformance = 0;
        self.pending_skip_own = 0;
    }

    fn finish(mut self) -> Results {
        self.flush();
        self.results
    }
}

/// A `test NAME ... OUTCOME` that another message pushed off the start of its line (rustdoc
/// prints `Couldn't compile the test.` right before a doctest's `test … ... FAILED`).
fn displaced_test_line(t: &str) -> Option<(&str, &str)> {
    let rest = &t[t.find("test ")? + "test ".len()..];
    let (name, outcome) = rest.rsplit_once(" ...")?;
    let outcome = outcome.trim();
    OUTCOMES
        .contains(&outcome.split_whitespace().next().unwrap_or(""))
        .then_some((name, outcome))
}

/// `unittests src/lib.rs (target/debug/deps/flowstore_local-0123)` → `local (unit+doc)`;
/// `tests/s3.rs (target/debug/deps/s3-0123)` → `s3`.
fn row_for_running(rest: &str) -> String {
    let binary = rest
        .rsplit_once('(')
        .map(|(_, b)| b.trim_end_matches(')'))
        .unwrap_or(rest);
    let file = binary.rsplit('/').next().unwrap_or(binary);
    let stem = file.rsplit_once('-').map(|(s, _)| s).unwrap_or(file);
    if rest.starts_with("unittests src/main.rs") {
        // The `flowstore` binary's own unit tests (the facade library is also `flowstore`).
        "cli (unit+doc)".to_string()
    } else if rest.starts_with("unittests") {
        format!("{} (unit+doc)", short_crate(stem))
    } else {
        stem.to_string()
    }
}

fn short_crate(name: &str) -> String {
    let name = name.replace('-', "_");
    match name.strip_prefix("flowstore_") {
        Some(short) => short.to_string(),
        None if name == "flowstore" => "facade".to_string(),
        None => name,
    }
}

/// Sums every cell.
pub fn totals(results: &Results) -> Counts {
    let mut t = Counts::default();
    for row in results.values() {
        t.add(&row.conformance);
        t.add(&row.own);
    }
    t
}

fn cell(c: &Counts) -> String {
    if c.passed + c.failed + c.skipped + c.not_applicable == 0 {
        return "-".to_string();
    }
    let status = if c.failed > 0 {
        "FAIL"
    } else if c.passed == 0 && c.skipped > 0 {
        "SKIP"
    } else {
        "PASS"
    };
    let mut parts = vec![format!("{} pass", c.passed)];
    if c.failed > 0 {
        parts.push(format!("{} fail", c.failed));
    }
    if c.skipped > 0 {
        parts.push(format!("{} skip", c.skipped));
    }
    if c.not_applicable > 0 {
        parts.push(format!("{} n/a", c.not_applicable));
    }
    format!("{status} ({})", parts.join(", "))
}

/// The matrix as a text table.
pub fn render(results: &Results) -> String {
    let rows: Vec<[String; 3]> = results
        .iter()
        .map(|(name, row)| [name.clone(), cell(&row.conformance), cell(&row.own)])
        .collect();
    let header = ["backend", "conformance suite", "own tests"];
    let w: Vec<usize> = (0..3)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let fmt_row = |cells: [&str; 3]| {
        format!(
            "| {:<w0$} | {:<w1$} | {:<w2$} |\n",
            cells[0],
            cells[1],
            cells[2],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        )
    };
    out.push_str(&fmt_row(header));
    out.push_str(&format!(
        "|{}|{}|{}|\n",
        "-".repeat(w[0] + 2),
        "-".repeat(w[1] + 2),
        "-".repeat(w[2] + 2)
    ));
    for r in &rows {
        out.push_str(&fmt_row([&r[0], &r[1], &r[2]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_cargo_output_into_rows() {
        let mut p = Parser::default();
        for line in [
            "     Running unittests src/lib.rs (target/debug/deps/flowstore_local-8f7d)",
            "test atomic::tests::x ... ok",
            "     Running tests/s3.rs (target/debug/deps/s3-f3a8)",
            "test conformance::round_trip_script ... ok",
            "flowstore-not-applicable: round_trip_script: no script mode",
            "test conformance::large_flow ... FAILED",
            "test fixed_key ... ok",
            "flowstore-skip: fixed_key: no server",
            "   Doc-tests flowstore_local",
            "test crates/flowstore-local/src/lib.rs - (line 9) ... ok",
        ] {
            p.line(line);
        }
        let r = p.finish();
        assert_eq!(r["local (unit+doc)"].own.passed, 2);
        let s3 = &r["s3"];
        assert_eq!(
            (
                s3.conformance.passed,
                s3.conformance.not_applicable,
                s3.conformance.failed
            ),
            (0, 1, 1)
        );
        assert_eq!((s3.own.passed, s3.own.skipped), (0, 1));
        assert!(render(&r).contains("| s3 "));
    }

    #[test]
    fn a_doctest_that_does_not_compile_counts_as_failed() {
        let mut p = Parser::default();
        for line in [
            "   Doc-tests flowstore_git",
            "Couldn't compile the test.test crates/flowstore-git/src/git/cache.rs - git::cache::GitCache (line 65) ... FAILED",
            "test crates/flowstore-git/src/git/mod.rs - git::Git (line 37) ... ok",
        ] {
            p.line(line);
        }
        let r = p.finish();
        let git = &r["git (unit+doc)"].own;
        assert_eq!((git.passed, git.failed), (1, 1));
    }

    #[test]
    fn an_outcome_pushed_to_a_later_line_by_a_marker_still_counts() {
        let mut p = Parser::default();
        for line in [
            "     Running tests/gitlab.rs (target/debug/deps/gitlab-e4a8)",
            "test conformance::many_flows ... ",
            "flowstore-not-applicable: large_flow: read-only",
            "ok",
            "test conformance::large_flow ... ok",
        ] {
            p.line(line);
        }
        let r = p.finish();
        let c = &r["gitlab"].conformance;
        assert_eq!((c.passed, c.not_applicable), (1, 1));
    }
}
