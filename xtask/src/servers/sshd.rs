//! An OpenSSH server for the Git backend's ssh tests: its own host key, a test client key, and a
//! `known_hosts` file listing the host key, all in a scratch directory.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Servers;

fn keygen(path: &std::path::Path) -> Result<()> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .context("running ssh-keygen (see .ci/install.d/sshd.sh)")?;
    if !status.success() {
        bail!("ssh-keygen failed");
    }
    Ok(())
}

/// Starts `sshd` and exports `FLOWSTORE_TEST_GIT_SSH` (host:port), `FLOWSTORE_TEST_GIT_SSH_USER`,
/// `FLOWSTORE_TEST_GIT_SSH_KEY` (the client's private key) and `FLOWSTORE_TEST_GIT_KNOWN_HOSTS`.
pub fn start(s: &mut Servers) -> Result<()> {
    let dir = s.temp_dir("sshd")?;
    let (host_key, client_key) = (dir.join("host_ed25519"), dir.join("client_ed25519"));
    keygen(&host_key)?;
    keygen(&client_key)?;
    std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys"))?;
    std::fs::create_dir_all("/run/sshd").ok();
    let port = s.free_port()?;
    let d = dir.display();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        ),
    )?;
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .context("sshd is not installed (see .ci/install.d/sshd.sh)")?;
    let mut cmd = Command::new(sshd);
    cmd.arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(dir.join("sshd_config"));
    s.spawn("sshd", cmd)?;
    s.wait_for_port(port)?;
    let host_pub = std::fs::read_to_string(dir.join("host_ed25519.pub"))?;
    let mut parts = host_pub.split_whitespace();
    let (kind, blob) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    std::fs::write(
        dir.join("known_hosts"),
        format!("[127.0.0.1]:{port} {kind} {blob}\n"),
    )?;
    let user = std::env::var("USER").unwrap_or_else(|_| "root".to_string());
    s.set_env("FLOWSTORE_TEST_GIT_SSH", format!("127.0.0.1:{port}"));
    s.set_env("FLOWSTORE_TEST_GIT_SSH_USER", user);
    s.set_env(
        "FLOWSTORE_TEST_GIT_SSH_KEY",
        client_key.display().to_string(),
    );
    s.set_env(
        "FLOWSTORE_TEST_GIT_KNOWN_HOSTS",
        dir.join("known_hosts").display().to_string(),
    );
    Ok(())
}
