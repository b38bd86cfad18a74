//! The timed sections: each runs flowstore's driver and the baselines side by side.

use anyhow::Result;

use super::{num, prefect, ratio, Bench, Table};

fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// Lets the filesystem settle between timed runs: each run deletes thousands of files, and on a
/// disk mounted with `discard` (this VM's) that slows the next run's first writes.
fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(std::time::Duration::from_secs(5));
}

/// `git clone --depth 1 URL DEST` (DEST must not exist); returns how long it took, in ms.
fn shallow_clone(url: &str, dest: &std::path::Path) -> Result<f64> {
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
        ]
    };
    Ok(Table {
        title: format!("1. Local storage: {} serialized flows of {} B", p.local_flows, p.small_size),
        note: format!(
            "In-process, interpreter start-up excluded. flowstore seals each flow in a SHA-256 envelope, writes it \
             create-only (temp file + hard link) and verifies two digests on fetch; \"durable\" (the default) also makes \
             the registration durable at build with one syncfs. Prefect 1.4.1 `Local` pickles with cloudpickle and writes without fsync \
             (its stored flow was {} B). Flows per second; ratios are flowstore ÷ Prefect.",
            pf["stored_bytes"]
        ),
        header: ["system", "register/s", "fetch/s", "register vs Prefect", "fetch vs Prefect"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            row("flowstore (durable, default)", &durable),
            row("flowstore (no fsync)", &fast),
            vec!["Prefect 1.4.1 Local".into(), num(pr), num(pf_fetch), "1.0×".into(), "1.0×".into()],
        ],
    })
}

/// Section 2: S3 on the same moto server: flowstore vs Prefect 1's `S3` (boto3) vs plain HTTP.
pub fn s3(b: &Bench) -> Result<Table> {
    let p = &b.params;
    let mut servers = crate::servers::Servers::new(&b.scratch.join("servers-s3"))?;
    crate::servers::moto::start(&mut servers)?;
    let endpoint = servers.env()["FLOWSTORE_TEST_S3_ENDPOINT"].clone();
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
    let fs = b.run_example("flowstore-cloud", "bench_s3", &args, &[])?;
    let pf = prefect::run_script(b, "prefect_s3.py", &args, &[])?;
    servers.stop_all();
    let ms = |v: f64| format!("{v:.2} ms");
    let rate = |v: f64| format!("{v:.0} MiB/s");
    Ok(Table {
        title: format!("2. S3 (moto, same server): {} flows of 64 KiB and one {} MiB script", p.s3_flows, p.s3_big_mib),
        note: "Per small flow: one registration (add_flow + build: upload) and one fetch, latency per flow. \
               flowstore: sealed envelope, create-only PUT (If-None-Match), SigV4, two digests verified on fetch. \
               Prefect 1.4.1 S3: cloudpickle + boto3 PutObject/GetObject. Floor: plain unsigned HTTP PUT/GET of the \
               same bytes with reqwest (no SDK, no signing, no checks). Big script: flowstore multipart upload streamed \
               from disk and a streamed, verified download to a file; Prefect: boto3 upload_file / download_fileobj \
               (what its script mode calls); floor: one PUT and one GET of the whole file held in memory."
            .into(),
        header: ["system", "put / flow", "get / flow", "big upload", "big download"].map(String::from).to_vec(),
        rows: vec![
            vec!["flowstore".into(), ms(f(&fs, "put_ms")), ms(f(&fs, "get_ms")), rate(f(&fs, "big_put_mib_s")), rate(f(&fs, "big_get_mib_s"))],
            vec!["Prefect 1.4.1 S3".into(), ms(f(&pf, "put_ms")), ms(f(&pf, "get_ms")), rate(f(&pf, "big_put_mib_s")), rate(f(&pf, "big_get_mib_s"))],
            vec!["floor (plain HTTP)".into(), ms(f(&fs, "floor_put_ms")), ms(f(&fs, "floor_get_ms")), rate(f(&fs, "floor_big_put_mib_s")), rate(f(&fs, "floor_big_get_mib_s"))],
            vec![
                "flowstore ÷ Prefect (time)".into(),
                ratio(f(&fs, "put_ms"), f(&pf, "put_ms")),
                ratio(f(&fs, "get_ms"), f(&pf, "get_ms")),
                ratio(f(&pf, "big_put_mib_s"), f(&fs, "big_put_mib_s")),
                ratio(f(&pf, "big_get_mib_s"), f(&fs, "big_get_mib_s")),
            ],
            vec![
                "flowstore ÷ floor (time)".into(),
                ratio(f(&fs, "put_ms"), f(&fs, "floor_put_ms")),
                ratio(f(&fs, "get_ms"), f(&fs, "floor_get_ms")),
                ratio(f(&fs, "floor_big_put_mib_s"), f(&fs, "big_put_mib_s")),
                ratio(f(&fs, "floor_big_get_mib_s"), f(&fs, "big_get_mib_s")),
            ],
        ],
    })
}

fn git_cmd(dir: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.email=bench@flowstore",
            "-c",
            "user.name=bench",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Section 3: Git over `git daemon`: a repository of ~5,000 files and ~2,000 commits.
pub fn git(b: &Bench) -> Result<Table> {
    use std::io::Write;
    let mut servers = crate::servers::Servers::new(&b.scratch.join("servers-git"))?;
    crate::servers::git::start(&mut servers)?;
    let root = std::path::PathBuf::from(&servers.env()["FLOWSTORE_TEST_GIT_ROOT"]);
    let host = servers.env()["FLOWSTORE_TEST_GIT_DAEMON"].clone();
    let bare = root.join("bench/big.git");
    std::fs::create_dir_all(&bare)?;
    git_cmd(&bare, &["init", "-q", "--bare", "-b", "main"])?;
    let work = b.scratch.join("git-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    git_cmd(&work, &["init", "-q", "-b", "main"])?;
    let mut stream = String::new();
    for c in 0..2000u32 {
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter b <b@b> {} +0000\ndata 4\nc{:03}\n",
            1_700_000_000 + c,
            c % 1000
        ));
        let files = if c == 0 { 5000 } else { 3 };
        for i in 0..files {
            let content = format!("row {c} {i}\n");
            stream.push_str(&format!(
                "M 644 inline data/f{}.txt\ndata {}\n{content}\n",
                (i + c) % 5000,
                content.len()
            ));
        }
        if c == 0 {
            let flow = "from prefect import Flow\nflow = Flow(\"bench\")\n";
            stream.push_str(&format!(
                "M 644 inline flow.py\ndata {}\n{flow}\n",
                flow.len()
            ));
        }
    }
    let mut child = std::process::Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&work)
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stream.as_bytes())?;
    anyhow::ensure!(child.wait()?.success(), "git fast-import failed");
    git_cmd(
        &work,
        &["push", "-q", bare.to_str().unwrap_or_default(), "main"],
    )?;
    git_cmd(&work, &["checkout", "-q", "main"])?;

    let cache = b.scratch.join("git-cache");
    let phase = |name: &str| -> Result<f64> {
        let v = b.run_example(
            "flowstore-git",
            "bench_git",
            &[
                host.clone(),
                "bench/big".into(),
                "flow.py".into(),
                cache.display().to_string(),
                name.into(),
            ],
            &[],
        )?;
        Ok(f(&v, "ms"))
    };
    let url = format!("git://{host}/bench/big.git");
    // One untimed clone first, so every system below meets a server with a warm page cache.
    let warmup = b.scratch.join("git-warmup");
    let _ = std::fs::remove_dir_all(&warmup);
    shallow_clone(&url, &warmup)?;
    let (mut first, mut warm, mut after) = (vec![], vec![], vec![]);
    for rep in 0..b.params.reps.min(3) {
        let _ = std::fs::remove_dir_all(&cache);
        settle();
        first.push(phase("first")?);
        warm.push(phase("warm")?);
        std::fs::write(
            work.join("flow.py"),
            format!("from prefect import Flow\nflow = Flow(\"bench\")\n# edit {rep}\n"),
        )?;
        git_cmd(&work, &["commit", "-q", "-am", "edit"])?;
        git_cmd(
            &work,
            &["push", "-q", bare.to_str().unwrap_or_default(), "main"],
        )?;
        after.push(phase("after")?);
    }
    settle();
    let pf = prefect::run_script(
        b,
        "prefect_git.py",
        &[url.clone(), "flow.py".into(), "3".into()],
        &[],
    )?;
    let mut floor = vec![];
    for _ in 0..3 {
        let dest = b.scratch.join("git-floor");
        let _ = std::fs::remove_dir_all(&dest);
        settle();
        floor.push(shallow_clone(&url, &dest)?);
    }
    servers.stop_all();
    let (first, warm, after, floor) = (
        median_ms(first),
        median_ms(warm),
        median_ms(after),
        median_ms(floor),
    );
    let pfm = f(&pf, "ms");
    let ms = |v: f64| format!("{v:.0} ms");
    Ok(Table {
        title: "3. Git: one flow from a 5,000-file, 2,000-commit repository over git daemon".into(),
        note: "flowstore: shallow single-branch fetch into its cache, checkout of the commit (release build, \
               process start included). Prefect 1.4.1 `Git`: a full temporary clone (dulwich, depth 1) at every \
               get_flow, then loading the flow file. Floor: `git clone --depth 1`. Medians of 3."
            .into(),
        header: ["system", "fetch", "vs floor"].map(String::from).to_vec(),
        rows: vec![
            vec!["flowstore, first fetch (empty cache)".into(), ms(first), ratio(first, floor)],
            vec!["flowstore, warm cache, unchanged ref".into(), ms(warm), ratio(warm, floor)],
            vec!["flowstore, after one new commit".into(), ms(after), ratio(after, floor)],
            vec!["Prefect 1.4.1 Git (every fetch)".into(), ms(pfm), ratio(pfm, floor)],
            vec!["floor: git clone --depth 1".into(), ms(floor), "1.0×".into()],
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
