//! Benchmark driver for `cargo xtask bench` (Git section): fetch one flow from a repository
//! served by `git daemon` — first fetch (empty cache), fetch with a warm cache on an unchanged
//! ref, and fetch after one new commit (the caller pushes it between the phases). Prints JSON.
//!
//! `cargo run --release -p flowstore-git --example bench_git -- HOST REPO FLOW_PATH CACHE_DIR PHASE`

use std::time::Instant;

use flowstore_core::{FlowInput, Storage};
use flowstore_git::git::Git;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let mut s = Git::builder(&a[2], &a[3])
        .host(&a[1])
        .scheme("git")
        .branch("main")
        .cache_dir(&a[4])
        .build()?;
    s.add_flow(FlowInput::script("bench")).await?;
    let t = Instant::now();
    let f = s.get_flow("bench").await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::json!({"phase": a[5], "ms": ms, "commit": f.revision})
    );
    Ok(())
}
