//! The real servers `cargo xtask test` starts on 127.0.0.1, one module each.
//!
//! A server module exposes `pub fn start(s: &mut Servers) -> anyhow::Result<()>`: it picks free
//! ports, spawns its processes through [`Servers::spawn`] (so exactly those PIDs are stopped
//! afterwards), waits until they answer, and exports how tests reach them with
//! [`Servers::set_env`] (`FLOWSTORE_TEST_<NAME>`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod azurite;
pub mod botocore_judge;
pub mod docker;
pub mod fake_apis;
pub mod fake_gcs;
pub mod git;
pub mod moto;
pub mod nginx;
pub mod prefect1;
pub mod real_world;
pub mod replay;
pub mod s3s_fs;
pub mod sigv4;
pub mod sshd;

/// A server to start: its name, the backends that need it, and its start function.
pub struct ServerSpec {
    /// Short name (also the name of `.ci/install.d/<name>.sh`).
    pub name: &'static str,
    /// The backends (integration test file stems) that need it.
    pub backends: &'static [&'static str],
    /// Starts it.
    pub start: fn(&mut Servers) -> Result<()>,
}

/// Every server, in start order. One line per server module.
pub const SERVERS: &[ServerSpec] = &[
    ServerSpec {
        name: "nginx",
        backends: &["webhook"],
        start: nginx::start,
    },
    ServerSpec {
        name: "moto",
        backends: &["s3"],
        start: moto::start,
    },
    ServerSpec {
        name: "s3s_fs",
        backends: &["s3_sigv4"],
        start: s3s_fs::start_for_tests,
    },
    ServerSpec {
        name: "azurite",
        backends: &["azure"],
        start: azurite::start,
    },
    ServerSpec {
        name: "git",
        backends: &["git"],
        start: git::start,
    },
    ServerSpec {
        name: "sshd",
        backends: &["git"],
        start: sshd::start,
    },
    ServerSpec {
        name: "fake_apis",
        backends: &["github", "gitlab", "bitbucket", "codecommit"],
        start: start_fake_apis,
    },
    ServerSpec {
        name: "real_world",
        backends: &["codecommit_botocore", "bitbucket_recorded"],
        start: real_world::start,
    },
    ServerSpec {
        name: "replay",
        backends: &["github_replay"],
        start: replay::start,
    },
    ServerSpec {
        name: "docker",
        backends: &["docker"],
        start: docker::start,
    },
    ServerSpec {
        name: "fake_gcs",
        backends: &["gcs"],
        start: fake_gcs::start,
    },
    ServerSpec {
        name: "prefect1",
        backends: &["prefect1_interop"],
        start: prefect1::start,
    },
];

/// `base/<this process id>`, after removing the `base/<pid>` directories of processes that are
/// gone: two xtask runs at once (a test run and a bench) each get their own servers' directory.
pub fn run_dir(base: &Path) -> std::path::PathBuf {
    if let Ok(entries) = std::fs::read_dir(base) {
        for entry in entries.flatten() {
            let pid = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(pid) = pid {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    base.join(std::process::id().to_string())
}

/// A copy of this xtask binary in the servers' directory: a rebuild of xtask while the suite
/// runs replaces `target/debug/xtask`, and must not take the fake APIs' program away (on Linux
/// the running program stays readable through `/proc/self/exe` even then).
fn own_program_copy(s: &Servers) -> Result<std::path::PathBuf> {
    let from = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()?
    };
    let to = s.root.join("xtask-fake-apis");
    std::fs::copy(&from, &to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(to)
}

/// Starts this xtask binary's `fake-apis` server (GitHub, GitLab, Bitbucket, CodeCommit) and
/// exports its address and the credentials it accepts.
fn start_fake_apis(s: &mut Servers) -> Result<()> {
    let port = s.free_port()?;
    let mut cmd = Command::new(own_program_copy(s)?);
    cmd.args(["fake-apis", &port.to_string()]);
    s.spawn("fake-apis", cmd)?;
    s.wait_for_port(port)?;
    let base = format!("http://127.0.0.1:{port}");
    s.set_env("FLOWSTORE_TEST_FAKE_APIS", base);
    s.set_env("FLOWSTORE_TEST_GITHUB_TOKEN", fake_apis::GITHUB_TOKEN);
    s.set_env("FLOWSTORE_TEST_GITLAB_TOKEN", fake_apis::GITLAB_TOKEN);
    s.set_env("FLOWSTORE_TEST_BBS_TOKEN", fake_apis::BBS_TOKEN);
    s.set_env("FLOWSTORE_TEST_BBC_USER", fake_apis::BBC_USER);
    s.set_env("FLOWSTORE_TEST_BBC_PASSWORD", fake_apis::BBC_PASSWORD);
    s.set_env("FLOWSTORE_TEST_BBC_EMAIL", fake_apis::BBC_EMAIL);
    s.set_env("FLOWSTORE_TEST_BBC_API_TOKEN", fake_apis::BBC_API_TOKEN);
    s.set_env(
        "FLOWSTORE_TEST_BBC_ACCESS_TOKEN",
        fake_apis::BBC_ACCESS_TOKEN,
    );
    s.set_env("FLOWSTORE_TEST_BBS_USER", fake_apis::BBS_USER);
    s.set_env("FLOWSTORE_TEST_BBS_PASSWORD", fake_apis::BBS_PASSWORD);
    s.set_env("FLOWSTORE_TEST_AWS_KEY", fake_apis::AWS_KEY);
    s.set_env("FLOWSTORE_TEST_AWS_SECRET", fake_apis::AWS_SECRET);
    Ok(())
}

/// The processes started so far, their scratch directories, and the environment for the tests.
pub struct Servers {
    root: PathBuf,
    children: Vec<(String, Child)>,
    env: BTreeMap<String, String>,
}

impl Servers {
    /// A server set whose scratch directories live under `root` (emptied first).
    pub fn new(root: &Path) -> Result<Self> {
        let _ = std::fs::remove_dir_all(root);
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        Ok(Servers {
            root: root.to_path_buf(),
            children: Vec::new(),
            env: BTreeMap::new(),
        })
    }

    /// A free TCP port on 127.0.0.1 (bound then released).
    pub fn free_port(&self) -> Result<u16> {
        let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        Ok(l.local_addr()?.port())
    }

    /// A fresh, empty scratch directory for one server.
    pub fn temp_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Spawns a server process; its output goes to `<root>/<name>.log`. It is killed by [`Servers::stop_all`].
    pub fn spawn(&mut self, name: &str, mut cmd: Command) -> Result<u32> {
        let log = self.root.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| {
                format!("starting {name}: {cmd:?} (is it installed? see .ci/install.d/)")
            })?;
        let pid = child.id();
        self.children.push((name.to_string(), child));
        Ok(pid)
    }

    /// Waits (up to 60 s) until 127.0.0.1:`port` accepts connections.
    pub fn wait_for_port(&mut self, port: u16) -> Result<()> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            for (name, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{name} exited ({status}) before listening on {port}; see {}",
                        self.root.join(format!("{name}.log")).display()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("nothing listened on 127.0.0.1:{port} within 60 s")
    }

    /// Exports `key=value` to the test processes.
    pub fn set_env(&mut self, key: &str, value: impl Into<String>) {
        self.env.insert(key.to_string(), value.into());
    }

    /// The environment for the test processes.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// Stops exactly the processes this set started: SIGTERM so servers can stop their own
    /// children, then SIGKILL for any still running after 3 s.
    pub fn stop_all(&mut self) {
        for (_, child) in &self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop_all();
    }
}
