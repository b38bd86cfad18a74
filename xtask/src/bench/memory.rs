//! Section 4: peak RSS of `flowstore register` and `flowstore fetch` for a large script.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{Bench, Table};

/// Peak RSS (KiB) of a command, measured by a fresh python parent with `getrusage(RUSAGE_CHILDREN)`.
pub fn peak_rss_kib(cmd: &[&str], envs: &[(&str, &str)]) -> Result<u64> {
    let script = "import resource,subprocess,sys\n\
                  r=subprocess.run(sys.argv[1:])\n\
                  print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                  sys.exit(r.returncode)";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(cmd)
        .envs(envs.iter().copied())
        .output()
        .context("running python3 to measure peak RSS")?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .context("no RSS figure")
}

fn release_cli(b: &Bench) -> Result<std::path::PathBuf> {
    let status = Command::new("cargo")
        .args(["build", "-q", "--release", "-p", "flowstore-cli"])
        .status()?;
    if !status.success() {
        bail!("building the flowstore CLI failed");
    }
    Ok(b.target.join("release/flowstore"))
}

fn make_file(path: &Path, mib: usize) -> Result<()> {
    use std::io::Write;
    if std::fs::metadata(path).is_ok_and(|m| m.len() == (mib as u64) << 20) {
        return Ok(());
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for _ in 0..mib {
        f.write_all(&block)?;
    }
    f.flush()?;
    Ok(())
}

/// One storage the memory section registers into and fetches from.
struct Case {
    /// Row label.
    label: &'static str,
    /// `--storage` URL (`None`: the default Local storage under `FLOWSTORE_HOME`).
    url: Option<String>,
    /// Environment for both processes (credentials).
    env: Vec<(String, String)>,
}

/// Peak RSS (KiB) of `register` and of `fetch -o` of `file` through `case`.
fn register_and_fetch(
    cli: &str,
    dir: &Path,
    case: &Case,
    file: &str,
    script: bool,
) -> Result<(u64, u64)> {
    let tag = format!(
        "{}-{}",
        case.label.to_lowercase().replace(' ', "-"),
        if script { "script" } else { "serialized" }
    );
    let reference = dir.join(format!("{tag}.json"));
    let out = dir.join(format!("{tag}.out"));
    let _ = std::fs::remove_file(&reference);
    let _ = std::fs::remove_file(&out);
    let (r, o) = (reference.display().to_string(), out.display().to_string());
    let mut args = vec![
        cli, "--json", "register", file, "--name", "Big", "--out", &r,
    ];
    if script {
        args.push("--script");
    }
    if let Some(url) = &case.url {
        args.extend(["--storage", url.as_str()]);
    }
    let env: Vec<(&str, &str)> = case
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let register =
        peak_rss_kib(&args, &env).with_context(|| format!("registering in {}", case.label))?;
    let fetch = peak_rss_kib(&[cli, "--json", "fetch", &r, "-o", &o], &env)
        .with_context(|| format!("fetching from {}", case.label))?;
    let fetched = std::fs::metadata(&out)?.len();
    let expected = std::fs::metadata(file)?.len();
    anyhow::ensure!(
        fetched == expected,
        "{}: fetched {fetched} bytes, registered {expected}",
        case.label
    );
    let _ = std::fs::remove_file(&out);
    Ok((register, fetch))
}

/// Pushes a base image for daemonless builds to the registry at `host` (`bench/base:1`: one
/// empty layer), through the OCI distribution API with curl.
fn push_base_image(host: &str, dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let digest = |b: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(b)));
    let layer = vec![0u8; 1024]; // an empty tar archive
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
    })
    .to_string()
    .into_bytes();
    let upload = |bytes: &[u8]| -> Result<()> {
        let file = dir.join("blob");
        std::fs::write(&file, bytes)?;
        // Start an upload session, then PUT the whole blob to its location with its digest.
        let start = format!("http://{host}/v2/bench/base/blobs/uploads/");
        let headers = curl(&["-X", "POST", "-D", "-", "-o", "/dev/null", &start])?;
        let location = headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("location")
                    .then(|| v.trim().to_string())
            })
            .context("the registry gave no upload location")?;
        let location = if location.starts_with('/') {
            format!("http://{host}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        curl(&[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("{location}{sep}digest={}", digest(bytes)),
        ])
        .map(|_| ())
    };
    upload(&layer)?;
    upload(&config)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(&layer), "size": layer.len()}],
    })
    .to_string();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &manifest,
        &format!("http://{host}/v2/bench/base/manifests/1"),
    ])?;
    Ok(format!("{host}/bench/base:1"))
}

/// Runs curl (failing on an HTTP error); returns what it printed.
fn curl(args: &[&str]) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body"])
        .args(args)
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!(
            "curl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Measures register and fetch of a `memory_mib` flow on every backend that stores files.
pub fn run(b: &Bench) -> Result<Table> {
    let cli = release_cli(b)?.display().to_string();
    let dir = b.scratch.join("memory");
    let _ = std::fs::remove_dir_all(dir.join("home"));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("big-flow.py");
    make_file(&file, b.params.memory_mib)?;
    let file = file.display().to_string();
    let home = (
        "FLOWSTORE_HOME".to_string(),
        dir.join("home").display().to_string(),
    );

    let mut servers = crate::servers::Servers::new(&b.scratch.join("servers-memory"))?;
    let result = (|| -> Result<Vec<Vec<String>>> {
        crate::servers::s3s_fs::start(&mut servers)?;
        crate::servers::azurite::start(&mut servers)?;
        crate::servers::fake_gcs::start(&mut servers)?;
        crate::servers::nginx::start(&mut servers)?;
        crate::servers::docker::start_registry(&mut servers)?;
        let env = servers.env().clone();
        let unique = std::process::id();
        let registry = env["FLOWSTORE_TEST_REGISTRY"].clone();
        let base = push_base_image(&registry, &dir)?;
        let cases = [
            Case {
                label: "Local",
                url: None,
                env: vec![home.clone()],
            },
            Case {
                label: "S3 (s3s-fs)",
                url: Some(format!(
                    "s3://{}/memory-{unique}?endpoint_url={}",
                    env["FLOWSTORE_TEST_S3_BUCKET"], env["FLOWSTORE_TEST_S3_ENDPOINT"]
                )),
                env: vec![
                    home.clone(),
                    (
                        "AWS_ACCESS_KEY_ID".into(),
                        crate::servers::s3s_fs::ACCESS_KEY.into(),
                    ),
                    (
                        "AWS_SECRET_ACCESS_KEY".into(),
                        crate::servers::s3s_fs::SECRET_KEY.into(),
                    ),
                    ("AWS_REGION".into(), "us-east-1".into()),
                ],
            },
            Case {
                label: "Azure (Azurite)",
                url: Some(format!(
                    "az://{}/memory-{unique}",
                    env["FLOWSTORE_TEST_AZURE_CONTAINER"]
                )),
                env: vec![
                    home.clone(),
                    (
                        "AZURE_STORAGE_CONNECTION_STRING".into(),
                        env["FLOWSTORE_TEST_AZURE_CONNECTION_STRING"].clone(),
                    ),
                ],
            },
            Case {
                label: "GCS (fake-gcs-server)",
                url: Some(format!(
                    "gs://{}/memory-{unique}?emulator_host={}",
                    env["FLOWSTORE_TEST_GCS_BUCKET"],
                    env["FLOWSTORE_TEST_GCS_ENDPOINT"].trim_start_matches("http://")
                )),
                env: vec![home.clone()],
            },
            Case {
                label: "Webhook (nginx)",
                url: Some(format!(
                    "{}/memory-{unique}/",
                    env["FLOWSTORE_TEST_WEBHOOK_URL"]
                )),
                env: vec![home.clone()],
            },
            Case {
                label: "Docker (daemonless, registry)",
                url: Some(format!(
                    "docker://{registry}/bench/memory-{unique}?mode=daemonless&base_image={base}"
                )),
                env: vec![home.clone()],
            },
        ];
        let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        let mut rows = Vec::new();
        for case in &cases {
            eprintln!("xtask bench: memory: {}", case.label);
            let cell = |r: Result<(u64, u64)>| match r {
                Ok((register, fetch)) => [mib(register), mib(fetch)],
                Err(e) => {
                    eprintln!("xtask bench: memory: {}: {e:#}", case.label);
                    let short = format!("failed: {e:#}")
                        .chars()
                        .take(160)
                        .collect::<String>();
                    [short.replace('|', "/").replace('\n', " "), "-".into()]
                }
            };
            let [sr, sf] = cell(register_and_fetch(&cli, &dir, case, &file, false));
            let mut row = vec![case.label.to_string(), sr, sf];
            if matches!(case.label, "Local" | "S3 (s3s-fs)") {
                let [r, f] = cell(register_and_fetch(&cli, &dir, case, &file, true));
                row.extend([r, f]);
            } else {
                row.extend(["-".to_string(), "-".to_string()]);
            }
            rows.push(row);
        }
        Ok(rows)
    })();
    servers.stop_all();
    let rows = result?;
    Ok(Table {
        after: String::new(),
        title: format!("4. Memory: a {} MiB flow through the CLI", b.params.memory_mib),
        note: format!(
            "Peak RSS of one `flowstore` process (release build), from getrusage; goal ≤ 64 MiB. Serialized: \
             `register FILE` seals the file into an envelope (a file over {} MiB stays in its file: two passes \
             to compute the digests, a third streaming it to the storage, checked again as it goes) and \
             `fetch -o` streams the verified payload to disk. Script: `register --script` uploads the script \
             (S3) or records its path (Local), and `fetch -o` streams it to disk, verifying as it copies. \
             Every fetched file is checked to have the registered size.",
            flowstore_core::envelope::IN_MEMORY_LIMIT >> 20
        ),
        header: [
            "storage",
            "serialized: register",
            "serialized: fetch -o",
            "script: register",
            "script: fetch -o",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    })
}
