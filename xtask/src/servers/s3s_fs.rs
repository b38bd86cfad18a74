//! `s3s-fs`, a Rust S3 server on a directory, for the bench: it serves requests in parallel in
//! well under a millisecond, so what a client pays per request shows (moto spends several
//! milliseconds of its own on each, one at a time). Installed on first use with
//! `cargo install s3s-fs@0.14.1 --features binary --locked`.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Servers;

/// The bucket the bench uses (a directory under the server's root).
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
