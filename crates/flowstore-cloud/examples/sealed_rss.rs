//! Registers one large flow sealed from a file (`seal_file`: it stays in its file) in an S3
//! bucket, Azure container or GCS bucket given by URL, then prints the process's peak resident
//! memory (Linux `VmHWM`) and the time taken: the upload streams the file, so the peak stays
//! near the multipart buffers (at most 40 MiB of parts) whatever the flow's size.
//!
//! `cargo run --release -p flowstore-cloud --example sealed_rss -- URL MIB [DIR]`
//!
//! URL is a storage URL with its options (`s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000`,
//! `gs://bucket/prefix?emulator_host=…`); credentials come from the environment. The flow's
//! file (MIB mebibytes) is written in DIR (default: the system's temporary directory) and
//! removed afterwards.

use std::io::Write;
use std::time::Instant;

use flowstore_core::envelope::{seal_file, AppInfo};
use flowstore_core::Registry;

/// The process's peak resident set size in KiB (`VmHWM` of `/proc/self/status`).
fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let (url, mib) = (a[1].clone(), a[2].parse::<usize>()?);
    let dir = a
        .get(3)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("sealed-rss-{}.bin", std::process::id()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let block: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for i in 0..mib {
            let mut b = block.clone();
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            f.write_all(&b)?;
        }
    }
    let before = peak_rss_kib();
    let app = AppInfo::new("sealed-rss", "1");
    let started = Instant::now();
    let sealed = seal_file("Large Flow", &path, &app)?;
    let sealed_in = started.elapsed();
    let mut registry = Registry::new();
    flowstore_cloud::register(&mut registry);
    let mut storage = registry.open_url(&url)?;
    let started = Instant::now();
    storage.add_flow(sealed.into()).await?;
    storage.persist().await?;
    let uploaded_in = started.elapsed();
    std::fs::remove_file(&path)?;
    println!(
        "{{\"mib\": {mib}, \"peak_rss_mib_before\": {:.1}, \"peak_rss_mib\": {:.1}, \"seal_s\": {:.2}, \"upload_s\": {:.2}, \"location\": {:?}}}",
        before.unwrap_or(0) as f64 / 1024.0,
        peak_rss_kib().unwrap_or(0) as f64 / 1024.0,
        sealed_in.as_secs_f64(),
        uploaded_in.as_secs_f64(),
        storage.reference()?.flows.get("Large Flow"),
    );
    Ok(())
}
