//! Benchmark driver for `cargo xtask bench` (Git section): fetch one flow from a repository
//! served by `git daemon` — first fetch (empty cache), fetch with a warm cache on an unchanged
//! ref, and fetch after one new commit (the caller pushes it between the phases). Prints JSON:
//! the phase, `ms` (`get_flow` alone), the commit, and a breakdown in milliseconds:
//!
//! - `process_start_ms`: from the caller spawning this process (`FLOWSTORE_BENCH_SPAWNED_AT_NS`,
//!   nanoseconds since the Unix epoch, when set) to `main`;
//! - `setup_ms`: `main` up to `get_flow` (tokio runtime, building the storage, `add_flow`);
//! - `phases`: what flowstore-git's `debug` spans measured inside `get_flow` (name → ms, summed
//!   over the spans of one name; they may overlap, as a checkout is verified while the remote
//!   is asked for its ref), and `other_ms`: what of `get_flow` no span covers on its thread;
//! - `main_ms`: all of `main` (the caller's wall time minus this and `process_start_ms` is the
//!   process exit).
//!
//! `bench_git HOST REPO FLOW_PATH CACHE_DIR PHASE` (run the release build directly to time it as
//! a whole process).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use flowstore_core::{FlowInput, Storage};
use flowstore_git::git::Git;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Times flowstore-git's spans: creation to close, summed per span name.
#[derive(Default)]
struct SpanTimes {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, (&'static str, Instant)>>,
    totals: Mutex<BTreeMap<&'static str, f64>>,
}

impl Subscriber for &'static SpanTimes {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.is_span() && m.target().starts_with("flowstore_git")
    }
    fn new_span(&self, a: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let name = a.metadata().name();
        self.open.lock().unwrap().insert(id, (name, Instant::now()));
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
    fn try_close(&self, id: Id) -> bool {
        if let Some((name, t)) = self.open.lock().unwrap().remove(&id.into_u64()) {
            *self.totals.lock().unwrap().entry(name).or_default() += ms(t);
        }
        true
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let entered = Instant::now();
    let process_start_ms = std::env::var("FLOWSTORE_BENCH_SPAWNED_AT_NS")
        .ok()
        .and_then(|v| v.parse::<u128>().ok())
        .and_then(|spawned| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()?
                .as_nanos();
            Some(now.saturating_sub(spawned) as f64 / 1e6)
        });
    let times: &'static SpanTimes = Box::leak(Box::default());
    tracing::subscriber::set_global_default(times)?;
    let a: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (fetch_ms, setup_ms, commit) = rt.block_on(async {
        let mut s = Git::builder(&a[2], &a[3])
            .host(&a[1])
            .scheme("git")
            .branch("main")
            .cache_dir(&a[4])
            .build()?;
        s.add_flow(FlowInput::script("bench")).await?;
        let setup_ms = ms(entered);
        let t = Instant::now();
        let f = s.get_flow("bench").await?;
        Ok::<_, Box<dyn std::error::Error>>((ms(t), setup_ms, f.revision))
    })?;
    drop(rt);
    let phases = times.totals.lock().unwrap().clone();
    // Spans on the checkout's own thread, not overlapping ones (see `phases`).
    let serial: f64 = phases
        .iter()
        .filter(|(name, _)| !name.starts_with("speculative"))
        .map(|(_, v)| v)
        .sum();
    println!(
        "{}",
        serde_json::json!({
            "phase": a[5],
            "ms": fetch_ms,
            "commit": commit,
            "process_start_ms": process_start_ms,
            "setup_ms": setup_ms,
            "phases": phases,
            "other_ms": (fetch_ms - serial).max(0.0),
            "main_ms": ms(entered),
        })
    );
    Ok(())
}
