//! moto's S3-compatible server for the S3 backend, with the test bucket created.

use std::process::Command;

use anyhow::{bail, Result};

use super::Servers;

/// The bucket the tests use.
pub const BUCKET: &str = "flowstore-test";

/// Starts moto's server and exports `FLOWSTORE_TEST_S3_ENDPOINT` and `FLOWSTORE_TEST_S3_BUCKET`.
pub fn start(s: &mut Servers) -> Result<()> {
    let port = s.free_port()?;
    // `python3 -m moto.server` needs no console-script shim on PATH.
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]);
    s.spawn("moto", cmd)?;
    s.wait_for_port(port)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    // moto accepts any credentials; the bucket is created with a plain (unsigned) PUT.
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys,urllib.request as u; u.urlopen(u.Request(sys.argv[1], method='PUT')).read()",
            &format!("{endpoint}/{BUCKET}"),
        ])
        .status()?;
    if !status.success() {
        bail!("creating bucket {BUCKET} on moto failed");
    }
    s.set_env("FLOWSTORE_TEST_S3_ENDPOINT", endpoint);
    s.set_env("FLOWSTORE_TEST_S3_BUCKET", BUCKET);
    Ok(())
}
