//! Benchmark driver for `cargo xtask bench` (S3 section): N small flows put then get, and one big
//! script uploaded and fetched to a file, through flowstore; and the floor: plain unsigned HTTP
//! PUT/GET of the same bytes to the same server. Also: the requests one registration and one
//! fetch make (counted by a proxy in front of the server), and N references opened from their
//! JSON and fetched, as an agent does, against N plain GETs on one connection. Prints one JSON
//! object.
//!
//! `cargo run --release -p flowstore-cloud --example bench_s3 -- ENDPOINT BUCKET N SIZE BIG_MIB REPS DIR [FLOOR_ENDPOINT]`
//!
//! FLOOR_ENDPOINT (default ENDPOINT) serves the floors' unsigned requests on the same data (a
//! second instance of a server that checks signatures on its main endpoint).

use std::sync::Arc;
use std::time::Instant;

use flowstore_cloud::S3;
use flowstore_core::envelope::{seal_bytes, AppInfo};
use flowstore_core::testkit::counting::{CountingProxy, Counts};
use flowstore_core::{FlowInput, Registry, Storage};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let (endpoint, bucket) = (a[1].clone(), a[2].clone());
    let n: usize = a[3].parse()?;
    let size: usize = a[4].parse()?;
    let big_mib: usize = a[5].parse()?;
    let reps: usize = a[6].parse()?;
    let dir = std::path::PathBuf::from(&a[7]);
    let floor_endpoint = a.get(8).cloned().unwrap_or_else(|| endpoint.clone());
    std::fs::create_dir_all(&dir)?;
    let app = AppInfo::new("bench", "1");
    let creds = Arc::new(flowstore_secrets::MapSource::new().with(
        "AWS_CREDENTIALS",
        r#"{"ACCESS_KEY": "AKIABENCH", "SECRET_ACCESS_KEY": "bench"}"#,
    ));
    let store = |prefix: String| {
        S3::builder(&bucket)
            .endpoint(&endpoint)
            .allow_http(true)
            .secrets(creds.clone())
            .prefix(prefix)
    };
    let payloads: Vec<Vec<u8>> = (0..n)
        .map(|i| (0..size).map(|j| ((i * 7 + j) % 251) as u8).collect())
        .collect();
    let http = reqwest::Client::new();
    let (mut fs_put, mut fs_get, mut floor_put, mut floor_get) = (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        // flowstore: one registration (add_flow + build) per flow, then a fetch per flow.
        let prefix = format!("bench-{}-{rep}", std::process::id());
        let t = Instant::now();
        let mut refs = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let mut s = store(prefix.clone()).build()?;
            s.add_flow(seal_bytes(&format!("flow-{i}"), p, &app).into())
                .await?;
            s.persist().await?;
            refs.push(s);
        }
        fs_put.push(t.elapsed().as_secs_f64() * 1000.0 / n as f64);
        let t = Instant::now();
        for (i, s) in refs.iter().enumerate() {
            let f = s.get_flow(&format!("flow-{i}")).await?;
            assert_eq!(f.bytes().len(), size);
        }
        fs_get.push(t.elapsed().as_secs_f64() * 1000.0 / n as f64);
        // The floor: the same bytes, plain HTTP, no signing, no SDK.
        let t = Instant::now();
        for (i, p) in payloads.iter().enumerate() {
            // Public-read so the floor's GET needs no signature either.
            let r = http
                .put(format!("{floor_endpoint}/{bucket}/floor-{prefix}/{i}"))
                .header("x-amz-acl", "public-read")
                .body(p.clone())
                .send()
                .await?;
            assert!(r.status().is_success(), "{}", r.status());
        }
        floor_put.push(t.elapsed().as_secs_f64() * 1000.0 / n as f64);
        let t = Instant::now();
        for i in 0..n {
            let b = http
                .get(format!("{floor_endpoint}/{bucket}/floor-{prefix}/{i}"))
                .send()
                .await?
                .bytes()
                .await?;
            assert_eq!(b.len(), size);
        }
        floor_get.push(t.elapsed().as_secs_f64() * 1000.0 / n as f64);
    }
    // Requests per operation, counted by a proxy in front of the server.
    let upstream: std::net::SocketAddr = endpoint.trim_start_matches("http://").parse()?;
    let proxy = CountingProxy::start(upstream).await;
    let counted = |prefix: String| {
        S3::builder(&bucket)
            .endpoint(proxy.url())
            .allow_http(true)
            .secrets(creds.clone())
            .prefix(prefix)
    };
    let mut s = counted(format!("counted-{}", std::process::id())).build()?;
    let _ = proxy.take();
    s.add_flow(seal_bytes("counted", &payloads[0], &app).into())
        .await?;
    s.persist().await?;
    let register_counts = proxy.take();
    s.get_flow("counted").await?;
    let fetch_counts = proxy.take();
    let mut registry = Registry::new().with_secrets(creds.clone());
    flowstore_cloud::register(&mut registry);
    let json = s.reference()?.to_json();
    let agent = registry.open_json(&json)?;
    let _ = proxy.take();
    agent.get_flow("counted").await?;
    let open_fetch_counts = proxy.take();

    // An agent: N references opened from their JSON and fetched (one flow each), against N
    // plain GETs of the same objects' bytes on one kept-alive connection.
    let prefix = format!("agent-{}", std::process::id());
    let mut references = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let mut s = counted(prefix.clone()).build()?;
        s.add_flow(seal_bytes(&format!("flow-{i}"), p, &app).into())
            .await?;
        s.persist().await?;
        references.push(s.reference()?.to_json());
    }
    for (i, p) in payloads.iter().enumerate() {
        let r = http
            .put(format!(
                "{floor_endpoint}/{bucket}/floor-{prefix}-agent/{i}"
            ))
            .header("x-amz-acl", "public-read")
            .body(p.clone())
            .send()
            .await?;
        assert!(r.status().is_success(), "{}", r.status());
    }
    let (mut agent_ms, mut agent_floor_ms) = (vec![], vec![]);
    let mut agent_counts = Counts::default();
    for _ in 0..reps {
        let _ = proxy.take();
        let t = Instant::now();
        for (i, json) in references.iter().enumerate() {
            let storage = registry.open_json(json)?;
            let f = storage.get_flow(&format!("flow-{i}")).await?;
            assert_eq!(f.bytes().len(), size);
        }
        agent_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        agent_counts = proxy.take();
        let one_connection = reqwest::Client::new();
        let t = Instant::now();
        for i in 0..n {
            let b = one_connection
                .get(format!(
                    "{floor_endpoint}/{bucket}/floor-{prefix}-agent/{i}"
                ))
                .send()
                .await?
                .bytes()
                .await?;
            assert!(!b.is_empty() || size == 0);
        }
        agent_floor_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(proxy);

    // One big script: multipart upload streamed from disk, streamed verified download.
    let big = dir.join("big.py");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big)?);
        let block: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for _ in 0..big_mib {
            f.write_all(&block)?;
        }
    }
    let mib = big_mib as f64;
    let mut s = store(format!("big-{}", std::process::id()))
        .script(&big)
        .build()?;
    s.add_flow(FlowInput::script("Big")).await?;
    let t = Instant::now();
    s.persist().await?;
    let fs_big_put = mib / t.elapsed().as_secs_f64();
    let out = dir.join("big.out");
    let _ = std::fs::remove_file(&out);
    let t = Instant::now();
    s.get_flow_to_file("Big", &out).await?;
    let fs_big_get = mib / t.elapsed().as_secs_f64();
    let body = tokio::fs::read(&big).await?;
    // What a verified download does besides receiving, with no network: hash the bytes and
    // write them to a new file, in 1 MiB chunks, one after the other (as the download does).
    let local_out = dir.join("big.local");
    let _ = std::fs::remove_file(&local_out);
    let t = Instant::now();
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&local_out)?;
        let mut digest = flowstore_core::envelope::DigestBuilder::new();
        for chunk in body.chunks(1 << 20) {
            digest.update(chunk);
            file.write_all(chunk)?;
        }
        let _ = digest.finish();
    }
    let local_verify_write = mib / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&local_out);
    let t = Instant::now();
    http.put(format!(
        "{floor_endpoint}/{bucket}/floor-big-{}",
        std::process::id()
    ))
    .header("x-amz-acl", "public-read")
    .body(body)
    .send()
    .await?;
    let floor_big_put = mib / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let b = http
        .get(format!(
            "{floor_endpoint}/{bucket}/floor-big-{}",
            std::process::id()
        ))
        .send()
        .await?
        .bytes()
        .await?;
    assert_eq!(b.len(), big_mib << 20);
    let floor_big_get = mib / t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "put_ms": median(fs_put), "get_ms": median(fs_get),
            "floor_put_ms": median(floor_put), "floor_get_ms": median(floor_get),
            "big_put_mib_s": fs_big_put, "big_get_mib_s": fs_big_get,
            "floor_big_put_mib_s": floor_big_put, "floor_big_get_mib_s": floor_big_get,
            "local_verify_write_mib_s": local_verify_write,
            "register_requests": register_counts.summary(),
            "register_total": register_counts.total(),
            "fetch_requests": fetch_counts.summary(),
            "fetch_total": fetch_counts.total(),
            "open_fetch_requests": open_fetch_counts.summary(),
            "open_fetch_connections": open_fetch_counts.connections,
            "agent_ms": median(agent_ms), "agent_floor_ms": median(agent_floor_ms),
            "agent_connections": agent_counts.connections,
            "agent_requests": agent_counts.summary(),
        })
    );
    Ok(())
}
