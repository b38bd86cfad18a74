//! git servers for the Git backend, sharing one directory of bare repositories that the tests
//! create: `git daemon` (git://) and smart HTTP (`git http-backend` behind nginx + fcgiwrap,
//! basic auth with a token).

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Servers;

/// The basic-auth user and token the smart-HTTP server accepts.
pub const USER: &str = "flowstore";
/// See [`USER`].
pub const TOKEN: &str = "flowstore-git-test-token";

/// Starts both servers and exports `FLOWSTORE_TEST_GIT_ROOT` (where tests create bare repos),
/// `FLOWSTORE_TEST_GIT_DAEMON` and `FLOWSTORE_TEST_GIT_HTTP` (host:port), and
/// `FLOWSTORE_TEST_GIT_USER` / `FLOWSTORE_TEST_GIT_TOKEN`.
pub fn start(s: &mut Servers) -> Result<()> {
    let dir = s.temp_dir("git")?;
    let repos = dir.join("repos");
    std::fs::create_dir_all(&repos)?;

    let daemon_port = s.free_port()?;
    let mut daemon = Command::new("git");
    daemon
        .args([
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={daemon_port}"))
        .arg(format!("--base-path={}", repos.display()))
        .arg(&repos);
    s.spawn("git-daemon", daemon)?;
    s.wait_for_port(daemon_port)?;

    let exec_path = Command::new("git")
        .arg("--exec-path")
        .output()
        .context("running git --exec-path")?;
    let backend = format!(
        "{}/git-http-backend",
        String::from_utf8_lossy(&exec_path.stdout).trim()
    );
    if !std::path::Path::new(&backend).exists() {
        bail!("{backend} not found");
    }
    let fcgiwrap = ["/usr/sbin/fcgiwrap", "/usr/bin/fcgiwrap"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .context("fcgiwrap is not installed (see .ci/install.d/git_http.sh)")?;
    let sock = dir.join("fcgi.sock");
    let mut fcgi = Command::new(fcgiwrap);
    fcgi.arg("-s").arg(format!("unix:{}", sock.display()));
    s.spawn("fcgiwrap", fcgi)?;
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    std::fs::write(dir.join("htpasswd"), format!("{USER}:{{PLAIN}}{TOKEN}\n"))?;
    let http_port = s.free_port()?;
    let d = dir.display();
    let r = repos.display();
    let sk = sock.display();
    let server = format!(
        r#"  server {{
    listen 127.0.0.1:{http_port};
    location ~ ^/git(/.*)$ {{
      auth_basic "git";
      auth_basic_user_file {d}/htpasswd;
      fastcgi_pass unix:{sk};
      fastcgi_param SCRIPT_FILENAME {backend};
      fastcgi_param GIT_PROJECT_ROOT {r};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $1;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_param QUERY_STRING $query_string;
      fastcgi_param REQUEST_METHOD $request_method;
      fastcgi_param CONTENT_TYPE $content_type;
      fastcgi_param CONTENT_LENGTH $content_length;
      fastcgi_param GIT_PROTOCOL $http_git_protocol;
    }}
  }}
"#
    );
    super::nginx::spawn(s, "git-http-nginx", &dir.join("nginx"), &server)?;
    s.wait_for_port(http_port)?;

    s.set_env("FLOWSTORE_TEST_GIT_ROOT", repos.display().to_string());
    s.set_env(
        "FLOWSTORE_TEST_GIT_DAEMON",
        format!("127.0.0.1:{daemon_port}"),
    );
    s.set_env("FLOWSTORE_TEST_GIT_HTTP", format!("127.0.0.1:{http_port}"));
    s.set_env("FLOWSTORE_TEST_GIT_USER", USER);
    s.set_env("FLOWSTORE_TEST_GIT_TOKEN", TOKEN);
    Ok(())
}
