//! `s3s-fs`, a Rust S3 server on a directory that checks SigV4 signatures when given
//! credentials. For the tests ([`start_for_tests`]): moto accepts any credentials, so only a
//! server that verifies signatures shows that flowstore signs its requests right. For the
//! bench ([`start`]): it serves requests in parallel in well under a millisecond, so what a
//! client pays per request shows (moto spends several milliseconds of its own on each, one at
//! a time). Installed by `.ci/install.d/s3s_fs.sh`, or on first use, with
//! `cargo install s3s-fs@0.14.1 --features binary --locked`.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Servers;

/// The bucket the bench and the tests use (a directory under the server's root).
pub const BUCKET: &str = "flowstore-test";

/// Installs `s3s-fs` if it is not on `PATH` (nor in `~/.cargo/bin`), returning the program.
fn program() -> Result<String> {
    let home_bin = std::env::var("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin/s3s-fs"))
        .ok();
    let found = |p: &str| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found("s3s-fs") {
        return Ok("s3s-fs".into());
    }
    if let Some(p) = home_bin.as_ref().and_then(|p| p.to_str()) {
        if found(p) {
            return Ok(p.to_string());
        }
    }
    eprintln!("xtask: installing s3s-fs 0.14.1 (cargo install, a few minutes)");
    let st = Command::new("cargo")
        .args([
            "install",
            "s3s-fs@0.14.1",
            "--features",
            "binary",
            "--locked",
        ])
        .status()
        .context("running cargo install s3s-fs")?;
    if !st.success() {
        bail!("cargo install s3s-fs@0.14.1 --features binary --locked failed");
    }
    home_bin
        .and_then(|p| p.to_str().map(String::from))
        .context("no CARGO_HOME or HOME to find the installed s3s-fs")
}

/// The credentials the signing instance checks (SigV4).
pub const ACCESS_KEY: &str = "AKIABENCH";
/// The secret of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "bench";

/// Starts two `s3s-fs` instances on one fresh directory holding the bench bucket: one that checks
/// SigV4 signatures with [`ACCESS_KEY`]/[`SECRET_KEY`] (`FLOWSTORE_TEST_S3_ENDPOINT`, for
/// flowstore) and one without credentials, which refuses signed requests but serves plain
/// unsigned ones (`FLOWSTORE_TEST_S3_PLAIN_ENDPOINT`, for the floors' plain HTTP).
pub fn start(s: &mut Servers) -> Result<()> {
    let program = program()?;
    let root = s.temp_dir("s3s-fs-data")?;
    std::fs::create_dir_all(root.join(BUCKET))?;
    for (name, keys, var) in [
        ("s3s-fs", true, "FLOWSTORE_TEST_S3_ENDPOINT"),
        ("s3s-fs-plain", false, "FLOWSTORE_TEST_S3_PLAIN_ENDPOINT"),
    ] {
        let port = s.free_port()?;
        let mut cmd = Command::new(&program);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        if keys {
            cmd.args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]);
        }
        cmd.arg(&root);
        s.spawn(name, cmd)?;
        s.wait_for_port(port)?;
        s.set_env(var, format!("http://127.0.0.1:{port}"));
    }
    s.set_env("FLOWSTORE_TEST_S3_BUCKET", BUCKET);
    Ok(())
}

/// The access key id the test instance accepts.
pub const TEST_ACCESS_KEY: &str = "AKIAS3SFSFLOWSTORE";
/// The secret of [`TEST_ACCESS_KEY`] (a canary: `cargo xtask test` fails if any test prints it).
pub const TEST_SECRET_KEY: &str = "s3s-fs/flowstore-test-s3cr3t-c4n4ry";

/// Starts one `s3s-fs` that checks SigV4 signatures, on a fresh directory holding the test
/// bucket, and exports `FLOWSTORE_TEST_S3S_ENDPOINT`, `FLOWSTORE_TEST_S3S_BUCKET`,
/// `FLOWSTORE_TEST_S3S_ACCESS_KEY` and `FLOWSTORE_TEST_S3S_SECRET_KEY`
/// (`crates/flowstore-cloud/tests/s3_sigv4.rs`).
pub fn start_for_tests(s: &mut Servers) -> Result<()> {
    let program = program()?;
    let root = s.temp_dir("s3s-fs-tests")?;
    std::fs::create_dir_all(root.join(BUCKET))?;
    let port = s.free_port()?;
    let mut cmd = Command::new(&program);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--access-key",
            TEST_ACCESS_KEY,
            "--secret-key",
            TEST_SECRET_KEY,
        ])
        .arg(&root);
    s.spawn("s3s-fs-tests", cmd)?;
    s.wait_for_port(port)?;
    s.set_env(
        "FLOWSTORE_TEST_S3S_ENDPOINT",
        format!("http://127.0.0.1:{port}"),
    );
    s.set_env("FLOWSTORE_TEST_S3S_BUCKET", BUCKET);
    s.set_env("FLOWSTORE_TEST_S3S_ACCESS_KEY", TEST_ACCESS_KEY);
    s.set_env("FLOWSTORE_TEST_S3S_SECRET_KEY", TEST_SECRET_KEY);
    Ok(())
}
