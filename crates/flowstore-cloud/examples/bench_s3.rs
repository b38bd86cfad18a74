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
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A request that takes this long waited on a stalled answer (about 40 ms on s3s-fs).
const STALL_MS: f64 = 30.0;

/// An `object_store` S3 client on the bench's server and credentials, as flowstore's is
/// configured (path style, signed payloads), with nothing of flowstore around it.
fn raw_s3(
    endpoint: &str,
    bucket: &str,
) -> Result<object_store::aws::AmazonS3, Box<dyn std::error::Error>> {
    Ok(object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_allow_http(true)
        .with_access_key_id("AKIABENCH")
        .with_secret_access_key("bench")
        .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
        .build()?)
}

/// `object_store` alone (one client, SigV4, create-only PUTs, plain GETs): flowstore's
/// envelopes put and got back without flowstore's storage, sealing or checks. Returns the
/// milliseconds per put and per get, and each put's own time.
async fn object_store_alone(
    endpoint: &str,
    bucket: &str,
    envelopes: &[bytes::Bytes],
) -> Result<(f64, f64, Vec<f64>), Box<dyn std::error::Error>> {
    use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
    let s3 = raw_s3(endpoint, bucket)?;
    let prefix = format!("object-store-alone-{}", std::process::id());
    let mut each = Vec::new();
    let t = Instant::now();
    for (i, e) in envelopes.iter().enumerate() {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let path = object_store::path::Path::from(format!("{prefix}/{i}"));
        let one = Instant::now();
        s3.put_opts(&path, e.clone().into(), opts).await?;
        each.push(one.elapsed().as_secs_f64() * 1000.0);
    }
    let put_ms = t.elapsed().as_secs_f64() * 1000.0 / envelopes.len() as f64;
    let t = Instant::now();
    for (i, e) in envelopes.iter().enumerate() {
        let path = object_store::path::Path::from(format!("{prefix}/{i}"));
        let got = s3.get(&path).await?.bytes().await?;
        assert_eq!(got.len(), e.len());
    }
    let get_ms = t.elapsed().as_secs_f64() * 1000.0 / envelopes.len() as f64;
    Ok((put_ms, get_ms, each))
}

/// The server's side of a multipart upload, measured alone with `object_store`'s own calls
/// (no flowstore): `body` sent as parts of `part_size`, four at a time, then completed. Returns
/// the parts' throughput (MiB/s) and the completing request's time (ms): what the server does
/// to assemble the object.
async fn multipart_alone(
    endpoint: &str,
    bucket: &str,
    body: &[u8],
    part_size: usize,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    use futures::StreamExt;
    use object_store::multipart::MultipartStore;
    let s3 = raw_s3(endpoint, bucket)?;
    let path = object_store::path::Path::from(format!("multipart-alone-{}", std::process::id()));
    let t = Instant::now();
    let id = s3.create_multipart(&path).await?;
    let parts: Vec<object_store::multipart::PartId> =
        futures::stream::iter(body.chunks(part_size).enumerate())
            .map(|(i, chunk)| {
                let payload = object_store::PutPayload::from(bytes::Bytes::copy_from_slice(chunk));
                let (s3, path, id) = (&s3, &path, &id);
                async move { s3.put_part(path, id, i, payload).await }
            })
            .buffered(4)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
    let parts_mib_s = (body.len() as f64 / (1 << 20) as f64) / t.elapsed().as_secs_f64();
    let t = Instant::now();
    s3.complete_multipart(&path, &id, parts).await?;
    Ok((parts_mib_s, t.elapsed().as_secs_f64() * 1000.0))
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
    // Every registration's and every floor PUT's own time, over all reps: stalls and medians.
    let (mut fs_put_each, mut floor_put_each) = (vec![], vec![]);
    for rep in 0..reps {
        // flowstore: one registration (add_flow + build) per flow, then a fetch per flow.
        let prefix = format!("bench-{}-{rep}", std::process::id());
        let t = Instant::now();
        let mut refs = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let one = Instant::now();
            let mut s = store(prefix.clone()).build()?;
            s.add_flow(seal_bytes(&format!("flow-{i}"), p, &app).into())
                .await?;
            s.persist().await?;
            refs.push(s);
            fs_put_each.push(one.elapsed().as_secs_f64() * 1000.0);
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
            let one = Instant::now();
            let r = http
                .put(format!("{floor_endpoint}/{bucket}/floor-{prefix}/{i}"))
                .header("x-amz-acl", "public-read")
                .body(p.clone())
                .send()
                .await?;
            assert!(r.status().is_success(), "{}", r.status());
            floor_put_each.push(one.elapsed().as_secs_f64() * 1000.0);
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
    // What a registration does on the client besides the request, measured alone: sealing
    // (two SHA-256 passes) and one more SHA-256 pass of the same size (SigV4's payload hash).
    let t = Instant::now();
    for (i, p) in payloads.iter().enumerate() {
        std::hint::black_box(seal_bytes(&format!("flow-{i}"), p, &app));
    }
    let seal_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    for p in &payloads {
        std::hint::black_box(flowstore_core::envelope::sha256_digest(p));
    }
    let hash_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let envelopes: Vec<bytes::Bytes> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| seal_bytes(&format!("flow-{i}"), p, &app).to_bytes())
        .collect::<Result<_, _>>()?;
    let (os_put_ms, os_get_ms, os_put_each) =
        object_store_alone(&endpoint, &bucket, &envelopes).await?;
    let put_stalls = |v: &[f64]| v.iter().filter(|ms| **ms >= STALL_MS).count();
    let put_unstalled = |v: &[f64]| median(v.iter().copied().filter(|ms| *ms < STALL_MS).collect());
    let puts = serde_json::json!({
        "flowstore": [put_stalls(&fs_put_each), fs_put_each.len(), put_unstalled(&fs_put_each)],
        "object_store": [put_stalls(&os_put_each), os_put_each.len(), put_unstalled(&os_put_each)],
        "floor": [put_stalls(&floor_put_each), floor_put_each.len(), put_unstalled(&floor_put_each)],
    });
    // Opening a storage (the builder, its shared client found again) and checking a fetched
    // envelope (the recorded digest, the header), each alone, per flow.
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(store(format!("open-{}", std::process::id())).build()?);
    }
    let build_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let verify_us = flowstore_core::testkit::bench::verify_only(&envelopes)?;
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
    // plain GETs of the same objects' bytes on one kept-alive connection. Timed talking to the
    // server directly, as the floor does; the connections are counted in one more pass with
    // the references pointed at the proxy.
    let prefix = format!("agent-{}", std::process::id());
    let mut references = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let mut s = store(prefix.clone()).build()?;
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
    // Every request's time, over all reps: medians and stalls.
    let (mut agent_each, mut floor_each) = (vec![], vec![]);
    for _ in 0..reps {
        let t = Instant::now();
        for (i, json) in references.iter().enumerate() {
            let one = Instant::now();
            let storage = registry.open_json(json)?;
            let f = storage.get_flow(&format!("flow-{i}")).await?;
            assert_eq!(f.bytes().len(), size);
            agent_each.push(one.elapsed().as_secs_f64() * 1000.0);
        }
        agent_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let one_connection = reqwest::Client::new();
        let t = Instant::now();
        for i in 0..n {
            let one = Instant::now();
            let b = one_connection
                .get(format!(
                    "{floor_endpoint}/{bucket}/floor-{prefix}-agent/{i}"
                ))
                .send()
                .await?
                .bytes()
                .await?;
            assert!(!b.is_empty() || size == 0);
            floor_each.push(one.elapsed().as_secs_f64() * 1000.0);
        }
        agent_floor_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let stalls = |v: &[f64]| v.iter().filter(|ms| **ms >= STALL_MS).count();
    let (agent_stalls, floor_stalls) = (stalls(&agent_each), stalls(&floor_each));
    let unstalled = |v: Vec<f64>| median(v.into_iter().filter(|ms| *ms < STALL_MS).collect());
    let (agent_each_ms, floor_each_ms) = (unstalled(agent_each), unstalled(floor_each));
    let _ = proxy.take();
    for (i, json) in references.iter().enumerate() {
        let storage = registry.open_json(&json.replace(&endpoint, &proxy.url()))?;
        storage.get_flow(&format!("flow-{i}")).await?;
    }
    let agent_counts: Counts = proxy.take();
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
    let (parts_mib_s, complete_ms) =
        multipart_alone(&endpoint, &bucket, &b, flowstore_cloud::PART_SIZE).await?;
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
            "agent_each_ms": agent_each_ms, "agent_floor_each_ms": floor_each_ms,
            "agent_stalls": agent_stalls, "agent_floor_stalls": floor_stalls,
            "agent_fetches": n * reps,
            "big_parts_mib_s": parts_mib_s, "big_complete_ms": complete_ms,
            "seal_us": seal_us, "hash_us": hash_us,
            "os_put_ms": os_put_ms, "os_get_ms": os_get_ms,
            "build_us": build_us, "verify_us": verify_us,
            "puts": puts,
            "agent_requests": agent_counts.summary(),
        })
    );
    Ok(())
}
