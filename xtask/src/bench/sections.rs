//! The timed sections: each runs flowstore's driver and the baselines side by side.

use anyhow::Result;

use super::{field as f, num, prefect, ratio, Bench, Table};

/// Lets the filesystem settle between timed runs: each run deletes thousands of files, and on a
/// disk mounted with `discard` (this VM's) that slows the next run's first writes.
pub(super) fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(std::time::Duration::from_secs(5));
}

/// `git clone --depth 1 URL DEST` (DEST must not exist); returns how long it took, in ms.
pub(super) fn shallow_clone(url: &str, dest: &std::path::Path) -> Result<f64> {
    let t = std::time::Instant::now();
    let st = std::process::Command::new("git")
        .args(["clone", "-q", "--depth", "1", url])
        .arg(dest)
        .status()?;
    anyhow::ensure!(st.success(), "git clone --depth 1 {url} failed");
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// Section 1: Local storage, N small serialized flows, register then fetch, in-process.
pub fn local(b: &Bench) -> Result<Table> {
    let p = &b.params;
    let args = |durable: bool| {
        vec![
            p.local_flows.to_string(),
            p.small_size.to_string(),
            p.reps.to_string(),
            durable.to_string(),
            b.scratch.join("local").display().to_string(),
        ]
    };
    settle();
    let durable = b.run_example("flowstore-local", "bench_local", &args(true), &[])?;
    settle();
    let fast = b.run_example("flowstore-local", "bench_local", &args(false), &[])?;
    settle();
    let pf = prefect::run_script(
        b,
        "prefect_local.py",
        &[
            p.local_flows.to_string(),
            p.small_size.to_string(),
            p.reps.to_string(),
        ],
        &[],
    )?;
    let (pr, pf_fetch) = (f(&pf, "register_per_s"), f(&pf, "fetch_per_s"));
    let row = |name: &str, v: &serde_json::Value| {
        vec![
            name.to_string(),
            num(f(v, "register_per_s")),
            num(f(v, "fetch_per_s")),
            ratio(f(v, "register_per_s"), pr),
            ratio(f(v, "fetch_per_s"), pf_fetch),
            ratio(f(v, "register_per_s"), f(v, "floor_register_per_s")),
            ratio(f(v, "fetch_per_s"), f(v, "floor_fetch_per_s")),
        ]
    };
    let floor_row = |name: &str, v: &serde_json::Value| {
        let (r, g) = (f(v, "floor_register_per_s"), f(v, "floor_fetch_per_s"));
        vec![
            name.to_string(),
            num(r),
            num(g),
            ratio(r, pr),
            ratio(g, pf_fetch),
            "1.0×".into(),
            "1.0×".into(),
        ]
    };
    Ok(Table {
        after: String::new(),
        title: format!("1. Local storage: {} serialized flows of {} B", p.local_flows, p.small_size),
        note: format!(
            "In-process, interpreter start-up excluded. flowstore seals each flow in a SHA-256 envelope, writes it \
             create-only (temp file + hard link) and verifies it on fetch against the digest recorded at registration \
             (and the envelope's header, name and length); a fetch opens the file in one `openat2` call that \
             refuses symbolic links and paths leaving the directory (Linux 5.6+); \"durable\" (the default) also makes \
             the registration durable at build with one syncfs. Floor, measured in the same driver run: the same \
             envelope bytes written by plain code (create-only temporary file, hard link, temporary removed; one \
             syncfs when durable) and read back with `std::fs::read`, no flowstore. Goals: register ≥ 0.8× and \
             fetch ≥ 0.5× of the floor. Prefect 1.4.1 `Local` pickles with cloudpickle and writes without fsync \
             (its stored flow was {} B). Flows per second; ratios are of rates. Of a fetch's time, \
             checking the bytes once read (SHA-256 against the recorded digest, the header) takes \
             {:.1} µs per flow; the floor reads {:.1} µs per flow and checks nothing.",
            pf["stored_bytes"],
            f(&fast, "verify_us_per_flow"),
            1e6 / f(&fast, "floor_fetch_per_s"),
        ),
        header: [
            "system",
            "register/s",
            "fetch/s",
            "register vs Prefect",
            "fetch vs Prefect",
            "register vs floor",
            "fetch vs floor",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![
            row("flowstore (durable, default)", &durable),
            floor_row("floor (durable: one syncfs)", &durable),
            row("flowstore (no fsync)", &fast),
            floor_row("floor (no fsync)", &fast),
            vec![
                "Prefect 1.4.1 Local".into(),
                num(pr),
                num(pf_fetch),
                "1.0×".into(),
                "1.0×".into(),
                "-".into(),
                "-".into(),
            ],
        ],
    })
}

/// Section 5: Docker — one flow built and pushed to a local registry, daemonless vs Engine.
pub fn docker_build(b: &Bench) -> Result<Table> {
    let mut servers = crate::servers::Servers::new(&b.scratch.join("servers-docker"))?;
    crate::servers::docker::start(&mut servers)?;
    let registry = servers.env()["FLOWSTORE_TEST_REGISTRY"].clone();
    let host = servers.env()["FLOWSTORE_TEST_DOCKER_HOST"].clone();
    let v = b.run_example(
        "flowstore-docker",
        "bench_docker",
        &[registry, host, b.params.reps.min(3).to_string()],
        &[],
    );
    servers.stop_all();
    let v = v?;
    let (d, e) = (f(&v, "daemonless_ms"), f(&v, "engine_ms"));
    Ok(Table {
        after: String::new(),
        title: "5. Docker: one 64 KiB flow built into an image and pushed to a local registry".into(),
        note: "Daemonless: one layer of flows appended to a busybox base image and pushed through the OCI \
               distribution API. Engine: generated Dockerfile built by dockerd (vfs storage driver, no network), \
               its SHA-256 health-check step run, the image pushed and the local copy removed. Prefect 1 has only \
               the Engine path (docker-py); it is not run here. Medians of 3, release build."
            .into(),
        header: ["mode", "build + push", "vs daemonless"].map(String::from).to_vec(),
        rows: vec![
            vec!["daemonless".into(), format!("{d:.0} ms"), "1.0×".into()],
            vec!["Docker Engine".into(), format!("{e:.0} ms"), ratio(e, d)],
        ],
    })
}
