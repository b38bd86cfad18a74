//! Benchmark driver for `cargo xtask bench` (Docker section): one flow built into an image and
//! pushed to a local registry, daemonless vs Engine, medians of REPS. Prints one JSON object.
//!
//! `cargo run --release -p flowstore-docker --example bench_docker -- REGISTRY DOCKER_HOST REPS`

use std::time::Instant;

use flowstore_core::envelope::{seal_bytes, AppInfo};
use flowstore_core::Storage;
use flowstore_docker::oci::ContainerConfig;
use flowstore_docker::registry::Registry;
use flowstore_docker::{BuildMode, Docker};
use serde_json::json;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let (reg_host, docker_host, reps) = (a[1].clone(), a[2].clone(), a[3].parse::<usize>()?);
    // A busybox base image, pushed once.
    let busybox = std::fs::read("/bin/busybox")?;
    let files: Vec<(String, Vec<u8>, u32)> = ["sh", "cat", "sha256sum"]
        .iter()
        .map(|n| (format!("/bin/{n}"), busybox.clone(), 0o755))
        .collect();
    Registry::new(&reg_host, None)
        .push_files_image(
            "bench/base",
            "1",
            &files,
            ContainerConfig {
                env: Some(vec!["PATH=/bin".into()]),
                ..ContainerConfig::default()
            },
        )
        .await?;
    let base = format!("{reg_host}/bench/base:1");
    let app = AppInfo::new("bench", "1");
    let mut times = [Vec::new(), Vec::new()];
    for rep in 0..reps {
        for (i, mode) in [BuildMode::Daemonless, BuildMode::Engine]
            .into_iter()
            .enumerate()
        {
            let mut s = Docker::builder()
                .registry_url(&reg_host)
                .mode(mode)
                .base_image(&base)
                .base_url(&docker_host)
                .image(&format!("bench/flow-{i}-{rep}"), Some("v1"))
                .build()?;
            s.add_flow(seal_bytes("Bench Flow", &vec![7u8; 64 * 1024], &app).into())
                .await?;
            let t = Instant::now();
            s.persist().await?;
            times[i].push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let [d, e] = times;
    println!(
        "{}",
        json!({"daemonless_ms": median(d), "engine_ms": median(e)})
    );
    Ok(())
}
