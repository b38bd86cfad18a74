//! Benchmark driver for `cargo xtask bench`: registers then fetches N serialized flows on Local
//! storage, in-process, and prints one JSON object with the median rates over the repetitions.
//!
//! `cargo run --release -p flowstore-local --example bench_local -- N SIZE REPS DURABLE DIR`

use std::time::Instant;

use flowstore_core::envelope::{seal_bytes, AppInfo};
use flowstore_core::{Registry, Storage};
use flowstore_local::Local;

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> flowstore_core::Result<()> {
    let n: usize = arg(1, 1000);
    let size: usize = arg(2, 4096);
    let reps: usize = arg(3, 5);
    let durable: bool = arg(4, true);
    let root = std::path::PathBuf::from(arg(5, "target/bench-local".to_string()));
    let app = AppInfo::new("bench", "1");
    let mut registry = Registry::new();
    flowstore_local::register(&mut registry);

    let payloads: Vec<Vec<u8>> = (0..n)
        .map(|i| (0..size).map(|j| ((i * 31 + j * 7) % 251) as u8).collect())
        .collect();
    let (mut reg_rates, mut fetch_rates) = (Vec::new(), Vec::new());
    // Removed only after the timed work: on a filesystem mounted with `discard`, deleting
    // thousands of files between reps slows the next rep's writes (and the next run's).
    let mut dirs = Vec::new();
    for rep in 0..reps {
        let dir = root.join(format!("rep-{rep}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let start = Instant::now();
        let mut storage = Local::builder().directory(&dir).durable(durable).build()?;
        for (i, p) in payloads.iter().enumerate() {
            storage
                .add_flow(seal_bytes(&format!("flow-{i}"), p, &app).into())
                .await?;
        }
        storage.persist().await?;
        reg_rates.push(n as f64 / start.elapsed().as_secs_f64());

        let reference = storage.reference()?.to_json();
        let start = Instant::now();
        let agent = registry.open_json(&reference)?;
        for i in 0..n {
            let f = agent.get_flow(&format!("flow-{i}")).await?;
            assert_eq!(f.bytes().len(), size);
        }
        fetch_rates.push(n as f64 / start.elapsed().as_secs_f64());
        dirs.push(dir);
    }
    println!(
        "{}",
        serde_json::json!({
            "register_per_s": median(reg_rates.clone()),
            "fetch_per_s": median(fetch_rates.clone()),
            "register_reps": reg_rates,
            "fetch_reps": fetch_rates,
        })
    );
    // Stored flows are read-only files; removing their directory still works on Unix.
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}
