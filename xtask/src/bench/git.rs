//! Section 3: Git over `git daemon`: one flow from a repository of ~5,000 files and ~2,000
//! commits, first fetch, warm fetch and after one new commit, against Prefect 1's `Git` and
//! `git clone --depth 1`.

use anyhow::Result;

use super::sections::{settle, shallow_clone};
use super::{field as f, prefect, ratio, Bench, Table};

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
pub fn run(b: &Bench) -> Result<Table> {
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
    // The release driver, run directly (not through `cargo run`): its wall time is a whole
    // `flowstore`-like process, start and exit included.
    let st = std::process::Command::new("cargo")
        .args([
            "build",
            "-q",
            "--release",
            "-p",
            "flowstore-git",
            "--example",
            "bench_git",
        ])
        .current_dir(&b.root)
        .status()?;
    anyhow::ensure!(st.success(), "building the bench_git example failed");
    let exe = b.target.join("release/examples/bench_git");
    let phase = |name: &str| -> Result<Run> {
        let spawned = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let t = std::time::Instant::now();
        let out = std::process::Command::new(&exe)
            .args([
                host.as_str(),
                "bench/big",
                "flow.py",
                &cache.display().to_string(),
                name,
            ])
            .env("FLOWSTORE_BENCH_SPAWNED_AT_NS", spawned.to_string())
            .output()?;
        let wall = t.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            out.status.success(),
            "bench_git {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Run {
            wall,
            v: super::last_json(&out.stdout)?,
        })
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
        for _ in 0..WARM_RUNS {
            warm.push(phase("warm")?);
        }
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
    let after_md = breakdown(&[
        ("first fetch", &first),
        ("warm", &warm),
        ("after a commit", &after),
    ]);
    let wall = |runs: &[Run]| median_ms(runs.iter().map(|r| r.wall).collect());
    let (first, warm, after, floor) = (wall(&first), wall(&warm), wall(&after), median_ms(floor));
    let pfm = f(&pf, "ms");
    let ms = |v: f64| format!("{v:.0} ms");
    Ok(Table {
        after: after_md,
        title: "3. Git: one flow from a 5,000-file, 2,000-commit repository over git daemon".into(),
        note: format!(
            "flowstore: the release driver run as a process of its own, timed from spawn to exit \
             (process start included). First fetch: shallow single-branch fetch into its cache and \
             checkout of the commit. Warm: the ref is asked of the server (a git:// ref listing), \
             and the cached checkout of that commit is verified against its stamp (on another \
             thread, while the server answers), with no fetch. After one new commit: a fetch of \
             that commit and its checkout. Prefect 1.4.1 `Git`: a full temporary clone (dulwich, \
             depth 1) at every get_flow, then loading the flow file. Floor: `git clone --depth 1`. \
             Medians of 3 (warm: of {}).",
            3 * WARM_RUNS
        ),
        header: ["system", "fetch", "vs floor"].map(String::from).to_vec(),
        rows: vec![
            vec![
                "flowstore, first fetch (empty cache)".into(),
                ms(first),
                ratio(first, floor),
            ],
            vec![
                "flowstore, warm cache, unchanged ref".into(),
                ms(warm),
                ratio(warm, floor),
            ],
            vec![
                "flowstore, after one new commit".into(),
                ms(after),
                ratio(after, floor),
            ],
            vec![
                "Prefect 1.4.1 Git (every fetch)".into(),
                ms(pfm),
                ratio(pfm, floor),
            ],
            vec![
                "floor: git clone --depth 1".into(),
                ms(floor),
                "1.0×".into(),
            ],
        ],
    })
}

/// Warm fetches per repetition.
const WARM_RUNS: usize = 5;

/// One run of the driver: its wall time (spawn to exit) and what it printed.
struct Run {
    wall: f64,
    v: serde_json::Value,
}

/// Where the time of each phase goes (medians of each part, in ms), as a markdown table.
fn breakdown(phases: &[(&str, &[Run])]) -> String {
    let field = |r: &Run, k: &str| -> f64 {
        match k {
            "wall" => r.wall,
            // Spawn to exit, less spawn to `main` and `main` itself.
            "exit" => r.wall - f(&r.v, "process_start_ms") - f(&r.v, "main_ms"),
            _ => k
                .strip_prefix("phases.")
                .map_or_else(|| f(&r.v, k), |span| f(&r.v["phases"], span)),
        }
    };
    let mut spans: Vec<String> = Vec::new();
    for (_, runs) in phases {
        for r in runs.iter() {
            for name in r.v["phases"].as_object().into_iter().flat_map(|o| o.keys()) {
                if !spans.contains(name) {
                    spans.push(name.clone());
                }
            }
        }
    }
    let mut rows: Vec<(String, String)> = vec![
        (
            "process start (spawn to `main`)".into(),
            "process_start_ms".into(),
        ),
        ("runtime, storage, add_flow".into(), "setup_ms".into()),
        ("get_flow, in process".into(), "ms".into()),
    ];
    let described = |s: &str| match s {
        "lock_clone" => "lock the clone",
        "libgit2_init" => "libgit2 init (TLS: loads the CA certificates)",
        "open_clone" => "open the clone, clear stale locks",
        "ref_lookup" => "ref lookup (git:// ref listing)",
        "fetch" => "fetch (libgit2: ref listing and negotiation, pack)",
        "commit_check" => "read the commit and tree",
        "record_size" => "record the clone's size",
        "verify_checkout" => "verify the checkout against its stamp",
        "speculative_verify" => "verify the checkout, beside the ref lookup",
        "write_checkout" => "write the checkout and its stamp",
        "trim" => "trim the cache",
        "read_file" => "read and hash the flow file",
        _ => "",
    };
    for span in &spans {
        let what = described(span);
        let label = if what.is_empty() {
            format!("· `{span}`")
        } else {
            format!("· {what} (`{span}`)")
        };
        rows.push((label, format!("phases.{span}")));
    }
    rows.push(("· not in a span".into(), "other_ms".into()));
    rows.push(("process exit".into(), "exit".into()));
    rows.push(("**wall, spawn to exit**".into(), "wall".into()));
    let mut md = String::from("Where the time goes (ms, medians of each part; `·` parts are inside \
        get_flow, from flowstore-git's `debug` spans; the speculative verify overlaps the ref lookup):\n\n");
    md.push_str("| part |");
    for (name, _) in phases {
        md.push_str(&format!(" {name} |"));
    }
    md.push_str(&format!("\n|---|{}\n", "---|".repeat(phases.len())));
    for (label, key) in rows {
        md.push_str(&format!("| {label} |"));
        for (_, runs) in phases {
            let vals: Vec<f64> = runs
                .iter()
                .map(|r| field(r, &key))
                .filter(|v| v.is_finite())
                .collect();
            let cell = if vals.is_empty() {
                "-".to_string()
            } else {
                format!("{:.1}", median_ms(vals))
            };
            md.push_str(&format!(" {cell} |"));
        }
        md.push('\n');
    }
    md
}
