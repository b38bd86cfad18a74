//! Azurite (Azure Blob emulator) for the Azure backend, with the test container created.

use std::process::Command;

use anyhow::{bail, Result};

use super::Servers;

/// The container the tests use.
pub const CONTAINER: &str = "flowstore-test";
/// Azurite's well-known development account key (public, documented by Microsoft).
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Starts `azurite-blob` and exports `FLOWSTORE_TEST_AZURE_CONNECTION_STRING` and
/// `FLOWSTORE_TEST_AZURE_CONTAINER`.
pub fn start(s: &mut Servers) -> Result<()> {
    let port = s.free_port()?;
    let dir = s.temp_dir("azurite")?;
    let mut cmd = Command::new("azurite-blob");
    cmd.args([
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port.to_string(),
        "--silent",
        "--loose",
        "--skipApiVersionCheck",
    ])
    .arg("--location")
    .arg(&dir);
    s.spawn("azurite", cmd)?;
    s.wait_for_port(port)?;
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    );
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys; from azure.storage.blob import BlobServiceClient as B; B.from_connection_string(sys.argv[1]).create_container(sys.argv[2])",
            &conn,
            CONTAINER,
        ])
        .status()?;
    if !status.success() {
        bail!("creating container {CONTAINER} on Azurite failed (is azure-storage-blob installed? see .ci/install.d/azurite.sh)");
    }
    s.set_env("FLOWSTORE_TEST_AZURE_CONNECTION_STRING", conn);
    s.set_env("FLOWSTORE_TEST_AZURE_CONTAINER", CONTAINER);
    Ok(())
}
