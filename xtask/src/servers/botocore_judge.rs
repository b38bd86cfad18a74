//! A CodeCommit endpoint judged by botocore (the AWS CLI's and boto3's own library): every
//! request flowstore's CodeCommit storage sends is checked against botocore's CodeCommit service
//! model (operation, content type, input shape) and its SigV4 signature recomputed with
//! botocore's signer; accepted requests are re-signed by botocore and answered by the fake
//! CodeCommit API (`fake_apis`, which holds the seeded repositories). The judge is
//! `botocore_judge.py`, written next to its scratch directory and run with `python3`.

use std::process::Command;

use anyhow::{Context, Result};

use super::{fake_apis, Servers};

/// Starts the judge in front of the fake APIs (started before it) and exports
/// `FLOWSTORE_TEST_BOTOCORE_JUDGE` (its base URL; CodeCommit requests go to `…/`).
pub fn start(s: &mut Servers) -> Result<()> {
    let upstream = s
        .env()
        .get("FLOWSTORE_TEST_FAKE_APIS")
        .cloned()
        .context("the botocore judge answers through the fake APIs, which did not start")?;
    let check = Command::new("python3")
        .args([
            "-c",
            "import botocore.session, botocore.auth, botocore.validate",
        ])
        .status()
        .context("running python3 (see .ci/install.d/real_world.sh)")?;
    anyhow::ensure!(
        check.success(),
        "python3 cannot import botocore (see .ci/install.d/real_world.sh)"
    );
    let dir = s.temp_dir("botocore-judge")?;
    let script = dir.join("botocore_judge.py");
    std::fs::write(&script, include_str!("botocore_judge.py"))?;
    let port = s.free_port()?;
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(port.to_string())
        .arg(&upstream)
        .args([fake_apis::AWS_KEY, fake_apis::AWS_SECRET]);
    s.spawn("botocore-judge", cmd)?;
    s.wait_for_port(port)?;
    s.set_env(
        "FLOWSTORE_TEST_BOTOCORE_JUDGE",
        format!("http://127.0.0.1:{port}"),
    );
    Ok(())
}
