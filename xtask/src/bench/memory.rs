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
    Ok(b.root.join("target/release/flowstore"))
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

/// Measures register and fetch of a `memory_mib` script on Local and S3.
pub fn run(b: &Bench) -> Result<Table> {
    let cli = release_cli(b)?;
    let dir = b.scratch.join("memory");
    let _ = std::fs::remove_dir_all(dir.join("home"));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("big-script.py");
    make_file(&script, b.params.memory_mib)?;
    let reference = dir.join("ref.json");
    let out = dir.join("fetched.py");
    let _ = std::fs::remove_file(&reference);
    let _ = std::fs::remove_file(&out);
    let home = dir.join("home").display().to_string();
    let env = [("FLOWSTORE_HOME", home.as_str())];
    let cli = cli.display().to_string();
    let (s, r, o) = (
        script.display().to_string(),
        reference.display().to_string(),
        out.display().to_string(),
    );
    let register = peak_rss_kib(
        &[
            &cli, "--json", "register", &s, "--name", "Big", "--script", "--out", &r,
        ],
        &env,
    )?;
    let fetch = peak_rss_kib(&[&cli, "--json", "fetch", &r, "-o", &o], &env)?;
    let serialized_ref = dir.join("ser.json");
    let _ = std::fs::remove_file(&serialized_ref);
    let sr = serialized_ref.display().to_string();
    let out2 = dir.join("fetched.bin");
    let _ = std::fs::remove_file(&out2);
    let o2 = out2.display().to_string();
    let ser_register = peak_rss_kib(
        &[
            &cli, "--json", "register", &s, "--name", "Big", "--out", &sr,
        ],
        &env,
    )?;
    let ser_fetch = peak_rss_kib(&[&cli, "--json", "fetch", &sr, "-o", &o2], &env)?;
    // S3 (moto): the script streamed up with multipart and down to a file.
    let mut servers = crate::servers::Servers::new(&b.scratch.join("servers-memory"))?;
    crate::servers::moto::start(&mut servers)?;
    let endpoint = servers.env()["FLOWSTORE_TEST_S3_ENDPOINT"].clone();
    let s3_env = [
        ("FLOWSTORE_HOME", home.as_str()),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "AKIABENCH"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_REGION", "us-east-1"),
    ];
    let s3_ref = dir.join("s3.json");
    let s3_out = dir.join("s3-fetched.py");
    let _ = std::fs::remove_file(&s3_ref);
    let _ = std::fs::remove_file(&s3_out);
    let (sr3, so3) = (s3_ref.display().to_string(), s3_out.display().to_string());
    let s3_register = peak_rss_kib(
        &[
            &cli,
            "--json",
            "register",
            &s,
            "--name",
            "Big",
            "--script",
            "--storage",
            "s3://flowstore-test/memory",
            "--out",
            &sr3,
        ],
        &s3_env,
    )?;
    let s3_fetch = peak_rss_kib(&[&cli, "--json", "fetch", &sr3, "-o", &so3], &s3_env)?;
    servers.stop_all();
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    Ok(Table {
        title: format!("4. Memory: a {} MiB flow through the CLI", b.params.memory_mib),
        note: "Peak RSS of one `flowstore` process (release build), from getrusage. Script mode records the \
               script's path and `fetch -o` streams it to disk, verifying as it copies; serialized mode seals \
               the file into an envelope in memory at register and streams the verified payload at fetch."
            .into(),
        header: ["storage", "register peak RSS", "fetch -o peak RSS"].map(String::from).to_vec(),
        rows: vec![
            vec!["Local, script".into(), mib(register), mib(fetch)],
            vec!["Local, serialized".into(), mib(ser_register), mib(ser_fetch)],
            vec!["S3 (moto), script".into(), mib(s3_register), mib(s3_fetch)],
        ],
    })
}
