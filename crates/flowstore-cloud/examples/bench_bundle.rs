//! Benchmark driver for `cargo xtask bench` (bundles section): a generated project of FILES files
//! (about TOTAL_MIB MiB) registered as a bundle in S3, registered again after a one-file change,
//! fetched cold and then warm (the changed version into a cache holding the first); against two
//! floors on the same server: one archive of the whole tree (one PUT, one GET) and naive per-file
//! upload and download (plain unsigned HTTP). Prints one JSON object.
//!
//! `cargo run --release -p flowstore-cloud --example bench_bundle -- ENDPOINT BUCKET FILES TOTAL_MIB REPS DIR [FLOOR_ENDPOINT]`
//!
//! FLOOR_ENDPOINT (default ENDPOINT) serves the floors' unsigned requests on the same data (a
//! second instance of a server that checks signatures on its main endpoint).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use flowstore_cloud::S3;
use flowstore_core::bundle::{FetchOptions, TransferReport};
use flowstore_core::{FlowInput, Storage};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Deterministic project: sizes spread from a few hundred bytes to about 1 MiB (most files small,
/// as source trees are), bytes from a simple generator (not compressible by accident).
fn generate(dir: &Path, files: usize, total: usize) -> std::io::Result<Vec<(String, usize)>> {
    let weights: Vec<usize> = (0..files)
        .map(|i| 1 + (i * 37 % 17) * (i * 13 % 11))
        .collect();
    let sum: usize = weights.iter().sum();
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut out = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        let size = (total * w / sum).max(200);
        let rel = format!("pkg{}/mod{}/file{i}.py", i % 8, i % 5);
        let p = dir.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap())?;
        let bytes: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b' ' + (state % 90) as u8
            })
            .collect();
        std::fs::write(&p, bytes)?;
        out.push((rel, size));
    }
    std::fs::write(dir.join("flow.py"), b"import pkg0\n")?;
    out.push(("flow.py".into(), 12));
    Ok(out)
}

fn report_json(r: &TransferReport) -> serde_json::Value {
    serde_json::json!({"objects": r.objects, "bytes": r.bytes, "reused_objects": r.reused_objects})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let (endpoint, bucket) = (a[1].clone(), a[2].clone());
    let files: usize = a[3].parse()?;
    let total_mib: usize = a[4].parse()?;
    let reps: usize = a[5].parse()?;
    let dir = PathBuf::from(&a[6]);
    let floor = a.get(7).cloned().unwrap_or_else(|| endpoint.clone());
    let _ = std::fs::remove_dir_all(&dir);
    let project = dir.join("project");
    let listing = generate(&project, files, total_mib << 20)?;
    let total_bytes: usize = listing.iter().map(|(_, s)| s).sum();
    let changed = listing[7].0.clone();
    let original = std::fs::read(project.join(&changed))?;

    let creds = Arc::new(flowstore_secrets::MapSource::new().with(
        "AWS_CREDENTIALS",
        r#"{"ACCESS_KEY": "AKIABENCH", "SECRET_ACCESS_KEY": "bench"}"#,
    ));
    let store = |prefix: &str| {
        S3::builder(&bucket)
            .endpoint(&endpoint)
            .allow_http(true)
            .secrets(creds.clone())
            .prefix(prefix)
            .build()
    };
    let http = reqwest::Client::new();
    let mut t = std::collections::BTreeMap::<&str, Vec<f64>>::new();
    let mut reports = serde_json::Map::new();
    for rep in 0..reps {
        let prefix = format!("bundle-bench-{}-{rep}", std::process::id());
        let work = dir.join(format!("rep{rep}"));
        std::fs::write(project.join(&changed), &original)?;

        let start = Instant::now();
        let mut v1 = store(&prefix)?;
        v1.add_flow(FlowInput::bundle("project", &project, "flow.py"))
            .await?;
        v1.persist().await?;
        t.entry("first_register_ms").or_default().push(ms(start));
        let r_first = v1.transfer_report("project").unwrap_or_default();

        let mut edited = original.clone();
        edited.extend_from_slice(b"\n# one more line\n");
        std::fs::write(project.join(&changed), &edited)?;
        let start = Instant::now();
        let mut v2 = store(&prefix)?;
        v2.add_flow(FlowInput::bundle("project v2", &project, "flow.py"))
            .await?;
        v2.persist().await?;
        t.entry("second_register_ms").or_default().push(ms(start));
        let r_second = v2.transfer_report("project v2").unwrap_or_default();

        let cache = FetchOptions::with_cache_dir(work.join("cache"));
        let start = Instant::now();
        let cold = v1.get_bundle("project", &work.join("cold"), &cache).await?;
        t.entry("cold_fetch_ms").or_default().push(ms(start));
        let start = Instant::now();
        let warm = v2
            .get_bundle("project v2", &work.join("warm"), &cache)
            .await?;
        t.entry("warm_fetch_ms").or_default().push(ms(start));

        // Floor 1: one archive of the tree (files concatenated, one PUT, one GET, split back).
        let start = Instant::now();
        let mut archive = Vec::with_capacity(total_bytes);
        for (rel, _) in &listing {
            archive.extend_from_slice(&std::fs::read(project.join(rel))?);
        }
        let r = http
            .put(format!("{floor}/{bucket}/floor-{prefix}/tree.tar"))
            .header("x-amz-acl", "public-read")
            .body(archive)
            .send()
            .await?;
        assert!(r.status().is_success(), "{}", r.status());
        t.entry("tar_put_ms").or_default().push(ms(start));
        let start = Instant::now();
        let body = http
            .get(format!("{floor}/{bucket}/floor-{prefix}/tree.tar"))
            .send()
            .await?
            .bytes()
            .await?;
        let mut offset = 0;
        for (rel, _) in &listing {
            let size = std::fs::metadata(project.join(rel))?.len() as usize;
            let p = work.join("tar").join(rel);
            std::fs::create_dir_all(p.parent().unwrap())?;
            std::fs::write(&p, &body[offset..offset + size])?;
            offset += size;
        }
        t.entry("tar_get_ms").or_default().push(ms(start));

        // Floor 2: naive per-file upload and download, one request at a time.
        let start = Instant::now();
        for (rel, _) in &listing {
            let r = http
                .put(format!("{floor}/{bucket}/naive-{prefix}/{rel}"))
                .header("x-amz-acl", "public-read")
                .body(std::fs::read(project.join(rel))?)
                .send()
                .await?;
            assert!(r.status().is_success(), "{}", r.status());
        }
        t.entry("naive_put_ms").or_default().push(ms(start));
        let start = Instant::now();
        for (rel, _) in &listing {
            let b = http
                .get(format!("{floor}/{bucket}/naive-{prefix}/{rel}"))
                .send()
                .await?
                .bytes()
                .await?;
            let p = work.join("naive").join(rel);
            std::fs::create_dir_all(p.parent().unwrap())?;
            std::fs::write(&p, &b)?;
        }
        t.entry("naive_get_ms").or_default().push(ms(start));

        reports.insert("first_register".into(), report_json(&r_first));
        reports.insert("second_register".into(), report_json(&r_second));
        reports.insert("cold_fetch".into(), report_json(&cold.transfer));
        reports.insert("warm_fetch".into(), report_json(&warm.transfer));
        let _ = std::fs::remove_dir_all(&work);
    }
    std::fs::write(project.join(&changed), &original)?;
    let mut out = serde_json::Map::new();
    for (k, v) in t {
        out.insert(k.into(), serde_json::json!(median(v)));
    }
    out.insert("files".into(), serde_json::json!(listing.len()));
    out.insert("total_bytes".into(), serde_json::json!(total_bytes));
    out.insert(
        "changed_file_bytes".into(),
        serde_json::json!(original.len() + 17),
    );
    out.insert("transfers".into(), serde_json::Value::Object(reports));
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
