//! A Docker Engine (Debian's docker.io; vfs storage, no iptables, no bridge) and the CNCF
//! distribution registry (Debian's docker-registry) three times: open, with htpasswd auth, and
//! with the registry token flow (a small token server, `registry_token_server.py`).

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Servers;

/// The registry user and password of the authenticated registry.
pub const USER: &str = "flowstore";
/// See [`USER`].
pub const PASSWORD: &str = "flowstore-registry-password";

/// How a registry authenticates.
enum Auth {
    /// No authentication.
    Open,
    /// Basic auth against an htpasswd file.
    Htpasswd,
    /// The registry token flow: a token server at this realm URL, signing with the certificate
    /// at this path.
    Token {
        realm: String,
        cert: std::path::PathBuf,
    },
}

/// The token server's issuer and the token registry's service name.
const ISSUER: &str = "flowstore-token-server";
const SERVICE: &str = "flowstore-registry";

/// Starts `registry_token_server.py` with a fresh RSA key and self-signed certificate (openssl);
/// returns its realm URL and the certificate.
fn token_server(s: &mut Servers) -> Result<(String, std::path::PathBuf)> {
    let dir = s.temp_dir("registry-token-server")?;
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=flowstore-token-server", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("running openssl to make the token server's key")?;
    if !out.status.success() {
        bail!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let script = dir.join("registry_token_server.py");
    std::fs::write(&script, include_str!("registry_token_server.py"))?;
    let port = s.free_port()?;
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(port.to_string())
        .arg(&key)
        .arg(&cert)
        .args([USER, PASSWORD, ISSUER]);
    s.spawn("registry-token-server", cmd)?;
    s.wait_for_port(port)?;
    Ok((format!("http://127.0.0.1:{port}/token"), cert))
}

/// Starts a registry; returns its port and its filesystem store.
fn registry(s: &mut Servers, name: &str, auth: Auth) -> Result<(u16, std::path::PathBuf)> {
    let dir = s.temp_dir(name)?;
    let port = s.free_port()?;
    let mut conf = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.join("data").display()
    );
    if let Auth::Token { realm, cert } = &auth {
        conf.push_str(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            cert.display()
        ));
    }
    if let Auth::Htpasswd = auth {
        let out = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .context("running htpasswd (apache2-utils)")?;
        if !out.status.success() {
            bail!("htpasswd failed");
        }
        std::fs::write(dir.join("htpasswd"), out.stdout)?;
        conf.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: flowstore\n    path: {}\n",
            dir.join("htpasswd").display()
        ));
    }
    std::fs::write(dir.join("config.yml"), conf)?;
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(dir.join("config.yml"));
    s.spawn(name, cmd)?;
    s.wait_for_port(port)?;
    Ok((port, dir.join("data")))
}

/// Starts only the open registry (daemonless builds need nothing else); exports
/// `FLOWSTORE_TEST_REGISTRY`.
pub fn start_registry(s: &mut Servers) -> Result<()> {
    let (open, _) = registry(s, "registry", Auth::Open)?;
    s.set_env("FLOWSTORE_TEST_REGISTRY", format!("127.0.0.1:{open}"));
    Ok(())
}

/// Starts the registries (open, htpasswd, token flow with its token server) and dockerd; exports
/// `FLOWSTORE_TEST_REGISTRY`, `FLOWSTORE_TEST_REGISTRY_AUTH`, `FLOWSTORE_TEST_REGISTRY_TOKEN` (the
/// last two with `_USER`/`_PASSWORD`), `FLOWSTORE_TEST_REGISTRY_DATA` and
/// `FLOWSTORE_TEST_DOCKER_HOST`.
pub fn start(s: &mut Servers) -> Result<()> {
    let (open, open_data) = registry(s, "registry", Auth::Open)?;
    let (auth, _) = registry(s, "registry-auth", Auth::Htpasswd)?;
    let (realm, cert) = token_server(s)?;
    let (token, _) = registry(s, "registry-token", Auth::Token { realm, cert })?;
    s.set_env(
        "FLOWSTORE_TEST_REGISTRY_TOKEN",
        format!("127.0.0.1:{token}"),
    );
    s.set_env("FLOWSTORE_TEST_REGISTRY", format!("127.0.0.1:{open}"));
    // Its filesystem store, for tests that alter an image behind the registry's back.
    s.set_env(
        "FLOWSTORE_TEST_REGISTRY_DATA",
        open_data.display().to_string(),
    );
    s.set_env("FLOWSTORE_TEST_REGISTRY_AUTH", format!("127.0.0.1:{auth}"));
    s.set_env("FLOWSTORE_TEST_REGISTRY_USER", USER);
    s.set_env("FLOWSTORE_TEST_REGISTRY_PASSWORD", PASSWORD);

    // dockerd: short paths (unix socket length limit), everything in a scratch directory.
    // One directory per xtask process, so two runs at once do not share a pid file or socket
    // (a short path: unix socket paths are limited); those of finished runs are removed.
    let dir = super::run_dir(std::path::Path::new("/tmp/flowstore-dockerd"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let sock = dir.join("d.sock");
    let mut cmd = Command::new("dockerd");
    cmd.args([
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--storage-driver=vfs",
    ])
    .arg("--data-root")
    .arg(dir.join("data"))
    .arg("--exec-root")
    .arg(dir.join("exec"))
    .arg("--pidfile")
    .arg(dir.join("d.pid"))
    .arg("-H")
    .arg(format!("unix://{}", sock.display()));
    s.spawn("dockerd", cmd)?;
    for _ in 0..300 {
        if sock.exists() {
            s.set_env(
                "FLOWSTORE_TEST_DOCKER_HOST",
                format!("unix://{}", sock.display()),
            );
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bail!("dockerd did not create {} within 30 s", sock.display())
}
