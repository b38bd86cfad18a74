//! Section 2: S3 on two servers (moto, and s3s-fs, which answers in well under a millisecond
//! and so shows the client's own overhead): flowstore against Prefect 1's `S3` (boto3) and
//! against plain HTTP, the requests each operation makes, and an agent opening many references.

use anyhow::Result;

use super::{field as f, prefect, ratio, Bench, Table};

/// One server's results: flowstore's driver and Prefect's script.
struct Run {
    server: &'static str,
    flowstore: serde_json::Value,
    prefect: serde_json::Value,
}

/// Runs the S3 driver and the Prefect baseline against a fresh moto and a fresh s3s-fs.
pub fn run(b: &Bench) -> Result<Table> {
    let runs = [
        on_server(b, "moto", crate::servers::moto::start)?,
        on_server(b, "s3s-fs", crate::servers::s3s_fs::start)?,
    ];
    let p = &b.params;
    let ms = |v: f64| format!("{v:.2} ms");
    let rate = |v: f64| format!("{v:.0} MiB/s");
    let mut rows = Vec::new();
    for Run {
        server,
        flowstore: fs,
        prefect: pf,
    } in &runs
    {
        let server = server.to_string();
        rows.push(vec![
            server.clone(),
            "flowstore".into(),
            ms(f(fs, "put_ms")),
            ms(f(fs, "get_ms")),
            rate(f(fs, "big_put_mib_s")),
            rate(f(fs, "big_get_mib_s")),
        ]);
        rows.push(vec![
            server.clone(),
            "Prefect 1.4.1 S3".into(),
            ms(f(pf, "put_ms")),
            ms(f(pf, "get_ms")),
            rate(f(pf, "big_put_mib_s")),
            rate(f(pf, "big_get_mib_s")),
        ]);
        rows.push(vec![
            server.clone(),
            "object_store alone (SigV4, create-only PUT)".into(),
            ms(f(fs, "os_put_ms")),
            ms(f(fs, "os_get_ms")),
            "-".into(),
            "-".into(),
        ]);
        rows.push(vec![
            server.clone(),
            "floor (plain HTTP)".into(),
            ms(f(fs, "floor_put_ms")),
            ms(f(fs, "floor_get_ms")),
            rate(f(fs, "floor_big_put_mib_s")),
            rate(f(fs, "floor_big_get_mib_s")),
        ]);
        rows.push(vec![
            server.clone(),
            "flowstore ÷ Prefect (time)".into(),
            ratio(f(fs, "put_ms"), f(pf, "put_ms")),
            ratio(f(fs, "get_ms"), f(pf, "get_ms")),
            ratio(f(pf, "big_put_mib_s"), f(fs, "big_put_mib_s")),
            ratio(f(pf, "big_get_mib_s"), f(fs, "big_get_mib_s")),
        ]);
        rows.push(vec![
            server,
            "flowstore ÷ floor (time)".into(),
            ratio(f(fs, "put_ms"), f(fs, "floor_put_ms")),
            ratio(f(fs, "get_ms"), f(fs, "floor_get_ms")),
            ratio(f(fs, "floor_big_put_mib_s"), f(fs, "big_put_mib_s")),
            ratio(f(fs, "floor_big_get_mib_s"), f(fs, "big_get_mib_s")),
        ]);
    }
    let local: Vec<String> = runs
        .iter()
        .map(|r| format!("{:.0} MiB/s", f(&r.flowstore, "local_verify_write_mib_s")))
        .collect();
    let mut after = format!(
        "What a verified download to a file does besides receiving, measured alone on the same \
         256 MiB with no network (SHA-256 of every byte and a write to a new file, in 1 MiB \
         chunks, one after the other as the download does them): {} (measured in the moto and the \
         s3s-fs runs). The floor's GET keeps the bytes in memory and checks nothing. s3s-fs \
         stalls some answers on a kept-alive connection by about 40 ms (small writes held by \
         Nagle's algorithm against the client's delayed ACK; a plain Python client sees 0.9 ms \
         and 43 ms GETs of the same 64 KiB object), so its per-flow GET rows and the agent row \
         on it measure those stalls for every client alike.\n\n",
        local.join(" and ")
    );
    let client: Vec<String> = runs
        .iter()
        .map(|r| {
            let v = |k: &str| f(&r.flowstore, k);
            format!(
                "| {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |\n",
                r.server,
                v("seal_us"),
                v("hash_us"),
                v("build_us"),
                v("verify_us")
            )
        })
        .collect();
    after.push_str(&format!(
        "What flowstore does on the client for one 64 KiB flow besides its request, each part \
         measured alone: sealing it (two SHA-256 passes: the payload's digest goes in the header, \
         then the envelope's is recorded), one more SHA-256 pass (what SigV4's payload hash \
         costs), opening a storage (the builder; its client is shared, so found again), and \
         checking a fetched envelope (the recorded digest, the header). A registration seals and \
         opens a storage; an agent's fetch opens one and checks. The floor does none of it, and \
         `object_store` alone only the payload hash.\n\n\
         | server | seal | SHA-256 pass | open a storage | check a fetched flow |\n\
         |---|---|---|---|---|\n{}\n",
        client.concat()
    ));
    after.push_str(
        "Each small PUT on its own (over all repetitions): how many took 30 ms or more (a stalled \
         answer), and the median of those that did not. The per-flow put column above is a mean, \
         so a few stalls move it.\n\n\
         | server | flowstore registrations | object_store alone | floor PUTs |\n\
         |---|---|---|---|\n",
    );
    for Run {
        server, flowstore, ..
    } in &runs
    {
        let cell = |who: &str| {
            let v = &flowstore["puts"][who];
            format!(
                "{} stalled of {}; {:.2} ms",
                v[0],
                v[1],
                v[2].as_f64().unwrap_or(f64::NAN)
            )
        };
        after.push_str(&format!(
            "| {server} | {} | {} | {} |\n",
            cell("flowstore"),
            cell("object_store"),
            cell("floor")
        ));
    }
    after.push('\n');
    after.push_str(
        "The big upload's parts and its completion, measured alone with `object_store`'s own \
         multipart calls (no flowstore; the same 6 MiB parts, four at a time): the completing \
         request is where the server assembles the object from its parts.\n\n\
         | server | parts sent | completing request | flowstore's whole upload | floor (one PUT) |\n\
         |---|---|---|---|---|\n",
    );
    for Run {
        server, flowstore, ..
    } in &runs
    {
        after.push_str(&format!(
            "| {server} | {} | {:.0} ms | {} | {} |\n",
            rate(f(flowstore, "big_parts_mib_s")),
            f(flowstore, "big_complete_ms"),
            rate(f(flowstore, "big_put_mib_s")),
            rate(f(flowstore, "floor_big_put_mib_s")),
        ));
    }
    after.push('\n');
    after.push_str(&format!(
        "Requests each operation makes, counted by a proxy in front of the server (one 64 KiB \
         flow), and an agent: {n} references opened from their JSON (`Registry::open_json`) and \
         one flow fetched from each, against {n} plain unsigned GETs of the same sizes on one \
         kept-alive connection (goal: ≤ 1.2×), both talking to the server directly (the agent's \
         connections are counted in one more pass through the proxy). A request of {STALL} ms or \
         more waited on a stalled answer; the per-request medians are of the requests that did not.\n\n\
         | server | one registration | one fetch | reference opened + one fetch | {n} references opened + fetched | {n} plain GETs, one connection | vs floor | connections opened by the agent | stalled requests (agent / floor) | median request that did not stall (agent / floor) | vs floor |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        STALL = 30,
        n = p.s3_flows
    ));
    for Run {
        server, flowstore, ..
    } in &runs
    {
        let text = |k: &str| flowstore[k].as_str().unwrap_or("-").to_string();
        after.push_str(&format!(
            "| {server} | {} | {} | {} ({} connection) | {:.0} ms | {:.0} ms | {} | {} ({}) | {} / {} of {} | {:.2} / {:.2} ms | {} |\n",
            text("register_requests"),
            text("fetch_requests"),
            text("open_fetch_requests"),
            flowstore["open_fetch_connections"],
            f(flowstore, "agent_ms"),
            f(flowstore, "agent_floor_ms"),
            ratio(f(flowstore, "agent_ms"), f(flowstore, "agent_floor_ms")),
            flowstore["agent_connections"],
            text("agent_requests"),
            flowstore["agent_stalls"],
            flowstore["agent_floor_stalls"],
            flowstore["agent_fetches"],
            f(flowstore, "agent_each_ms"),
            f(flowstore, "agent_floor_each_ms"),
            ratio(f(flowstore, "agent_each_ms"), f(flowstore, "agent_floor_each_ms")),
        ));
    }
    Ok(Table {
        title: format!(
            "2. S3 (moto and s3s-fs): {} flows of 64 KiB and one {} MiB script",
            p.s3_flows, p.s3_big_mib
        ),
        note: "Per small flow: one registration (add_flow + persist: upload) and one fetch, latency per flow. \
               flowstore: sealed envelope, create-only PUT (If-None-Match), SigV4, two digests verified on fetch. \
               Prefect 1.4.1 S3: cloudpickle + boto3 PutObject/GetObject. object_store alone: the same sealed \
               envelopes put (create-only, signed) and got by one `object_store` client, without flowstore's storage, \
               sealing or checks. Floor: plain unsigned HTTP PUT/GET of the \
               same bytes with reqwest (no SDK, no signing, no checks; on s3s-fs, a second instance without \
               credentials on the same directory). Big script: flowstore multipart upload streamed \
               from disk and a streamed, verified download to a file; Prefect: boto3 upload_file / download_fileobj \
               (what its script mode calls); floor: one PUT and one GET of the whole file held in memory. \
               moto spends a few milliseconds of its own on every request; s3s-fs (Rust, on a local directory) \
               well under one, so its rows show the client's own overhead."
            .into(),
        header: ["server", "system", "put / flow", "get / flow", "big upload", "big download"]
            .map(String::from)
            .to_vec(),
        rows,
        after: std::mem::take(&mut after),
    })
}

/// Runs flowstore's driver and Prefect's script against one freshly started server.
fn on_server(
    b: &Bench,
    server: &'static str,
    start: fn(&mut crate::servers::Servers) -> Result<()>,
) -> Result<Run> {
    let p = &b.params;
    let (mut servers, endpoint, floor_endpoint) =
        super::start_s3(b, &format!("s3-{server}"), start)?;
    let dir = b.scratch.join("s3");
    let args = vec![
        endpoint,
        "flowstore-test".to_string(),
        p.s3_flows.to_string(),
        "65536".to_string(),
        p.s3_big_mib.to_string(),
        p.reps.min(3).to_string(),
        dir.display().to_string(),
    ];
    let mut fs_args = args.clone();
    fs_args.push(floor_endpoint);
    let result = b
        .run_example("flowstore-cloud", "bench_s3", &fs_args, &[])
        .and_then(|flowstore| {
            let prefect = prefect::run_script(b, "prefect_s3.py", &args, &[])?;
            Ok(Run {
                server,
                flowstore,
                prefect,
            })
        });
    servers.stop_all();
    result
}
