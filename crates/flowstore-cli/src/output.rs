//! Human and JSON output, logging setup, and progress display.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Where the command's output goes: human text on stderr, data on stdout.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Output in JSON mode or human mode.
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// True in `--json` mode.
    pub fn json(&self) -> bool {
        self.json
    }

    /// A human status line on stderr (suppressed in JSON mode).
    pub fn status(&self, line: &str) {
        if !self.json {
            eprintln!("{line}");
        }
    }

    /// Data on stdout.
    pub fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }

    /// A JSON value on stdout.
    pub fn json_value(&self, value: &serde_json::Value) {
        self.data(&serde_json::to_string_pretty(value).expect("JSON values serialize"));
    }

    /// Reports an error on stderr with its causes (JSON object in JSON mode).
    pub fn error(&self, e: &anyhow::Error) {
        let causes = distinct_causes(e);
        if self.json {
            let v = serde_json::json!({"error": e.to_string(), "causes": causes});
            eprintln!("{v}");
        } else {
            eprintln!("error: {e}");
            for cause in causes {
                eprintln!("  caused by: {cause}");
            }
        }
    }

    /// A spinner for long work (hidden in JSON mode and when stderr is not a terminal).
    pub fn spinner(&self, message: &str) -> ProgressBar {
        let bar = if self.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }
}

/// Logs through `tracing` to stderr: warnings (and a Docker build's output) by default, `-v`
/// info, `-vv` debug; `RUST_LOG` wins.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,flowstore_docker::build=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a CI log or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Bytes as a short human size.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A progress callback drawing one bar on stderr (hidden when stderr is not a terminal, as
/// indicatif does); backends call it during clones and large transfers.
pub fn progress_reporter() -> flowstore::ProgressFn {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    std::sync::Arc::new(move |p: flowstore::Progress| {
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_message(p.what);
        bar.set_position(p.done);
        if p.total.is_some_and(|t| p.done >= t && t > 0) {
            bar.finish_and_clear();
        }
    })
}

/// How a table column is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Padded on the right.
    Left,
    /// Padded on the left (numbers, sizes).
    Right,
}

/// Lays out `rows` under `header` in columns two spaces apart; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>], align: &[Align]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| match (i == last, align[i]) {
                (true, _) => c.to_string(),
                (false, Align::Left) => format!("{c:<w$}", w = widths[i]),
                (false, Align::Right) => format!("{c:>w$}", w = widths[i]),
            })
            .collect();
        parts.join("  ")
    };
    let mut lines = vec![line(header.to_vec())];
    lines.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    lines.join("\n")
}

/// The causes of an error, without one that only repeats the message before it (a backend error
/// kept as the `source()` of a flowstore error with the same words).
fn distinct_causes(e: &anyhow::Error) -> Vec<String> {
    let mut previous = e.to_string();
    let mut causes = Vec::new();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !previous.contains(&text) {
            causes.push(text.clone());
        }
        previous = text;
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_that_repeats_its_parent_is_not_printed_twice() {
        let inner = std::io::Error::other("connection refused");
        let core = flowstore::Error::config("bad template X").with_source(inner);
        let repeated = flowstore::Error::config("bad template X")
            .with_source(flowstore::Error::config("bad template X"));
        let e = anyhow::Error::new(core).context("opening storage");
        assert_eq!(
            distinct_causes(&e),
            ["bad template X", "connection refused"]
        );
        let e = anyhow::Error::new(repeated);
        assert!(distinct_causes(&e).is_empty());
    }
}
