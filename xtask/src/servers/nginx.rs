//! nginx with WebDAV `PUT`/`GET`/`DELETE` and JSON directory listings (`autoindex_format json`)
//! for the Webhook backend: one server open, one that demands a bearer token (401 otherwise), and
//! one that allows only `PUT` and `GET` (no deletes, no listings), as many file servers do.

use std::process::Command;

use anyhow::Result;

use super::Servers;

/// The token the authenticated server accepts.
pub const TOKEN: &str = "flowstore-test-token";

/// Starts nginx and exports `FLOWSTORE_TEST_WEBHOOK_URL`, `FLOWSTORE_TEST_WEBHOOK_AUTH_URL` and
/// `FLOWSTORE_TEST_WEBHOOK_TOKEN`.
pub fn start(s: &mut Servers) -> Result<()> {
    let dir = s.temp_dir("nginx")?;
    for sub in ["open", "auth", "plain", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let (open, auth, plain) = (s.free_port()?, s.free_port()?, s.free_port()?);
    let d = dir.display();
    let servers = format!(
        r#"  server {{
    listen 127.0.0.1:{open};
    root {d}/open;
    location / {{
      dav_methods PUT DELETE;
      create_full_put_path on;
      autoindex on;
      autoindex_format json;
    }}
  }}
  server {{
    listen 127.0.0.1:{auth};
    root {d}/auth;
    location / {{
      if ($http_authorization != "Bearer {TOKEN}") {{ return 401; }}
      dav_methods PUT DELETE;
      create_full_put_path on;
      autoindex on;
      autoindex_format json;
    }}
  }}
  server {{
    listen 127.0.0.1:{plain};
    root {d}/plain;
    location / {{
      dav_methods PUT;
      create_full_put_path on;
    }}
  }}
"#
    );
    spawn(s, "nginx", &dir, &servers)?;
    s.wait_for_port(open)?;
    s.wait_for_port(auth)?;
    s.wait_for_port(plain)?;
    s.set_env(
        "FLOWSTORE_TEST_WEBHOOK_URL",
        format!("http://127.0.0.1:{open}"),
    );
    s.set_env(
        "FLOWSTORE_TEST_WEBHOOK_AUTH_URL",
        format!("http://127.0.0.1:{auth}"),
    );
    s.set_env(
        "FLOWSTORE_TEST_WEBHOOK_PLAIN_URL",
        format!("http://127.0.0.1:{plain}"),
    );
    s.set_env("FLOWSTORE_TEST_WEBHOOK_TOKEN", TOKEN);
    Ok(())
}

/// Writes an nginx configuration around `server_blocks` (foreground, root, every temp path and
/// log inside `dir`) and starts nginx with it under `name`.
pub fn spawn(
    s: &mut Servers,
    name: &str,
    dir: &std::path::Path,
    server_blocks: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir.join("tmp"))?;
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  client_max_body_size 0;
{server_blocks}}}
"#
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"));
    s.spawn(name, cmd)?;
    Ok(())
}
