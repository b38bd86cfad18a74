//! A `flowstore fetch` killed at the worst moment never wedges the git clone cache: the next
//! plain fetch succeeds, returns the committed flow byte for byte, and leaves nothing stale.
//!
//! Random kills almost never land in the microseconds libgit2 holds one of its `O_EXCL` lock
//! files, so these tests kill the real `flowstore` binary at the exact syscall with strace's
//! fault injection (`-P <path> -e inject=<syscalls>:signal=KILL`):
//!
//! - `shallow.lock`, `refs/flowstore/heads/main.lock` and `FETCH_HEAD.lock` when a fetch of a
//!   new commit renames them into place;
//! - `config.lock` (each of its three renames) and `HEAD.lock` (its `link` into place, and its
//!   `unlink` afterwards) while a fresh bare clone is created;
//! - publishing a finished checkout from `.tmp/`: killed at the last syscall before the rename
//!   onto the entry (the check that the entry's path is free), since `-P` matches only the
//!   *first* path of `rename(2)`; the abandoned temporary must be swept by the next fetch.
//!
//! Each trial proves it hit the window (the process died of SIGKILL *and* the lock file or the
//! temporary was left behind) before checking that the next fetch heals. The git daemon and the
//! repositories' root come from `cargo xtask test` (`FLOWSTORE_TEST_GIT_DAEMON`,
//! `FLOWSTORE_TEST_GIT_ROOT`); without them, or without a working `strace`
//! (`.ci/install.d/strace.sh`), the tests skip visibly. `FLOWSTORE_KILL_TRIALS` sets the trials
//! per kill point (default 3; 20 under `cargo xtask stress`).
#![cfg(all(feature = "git", unix))]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use flowstore_core::testkit::{skip, Skip};

/// How long any one `flowstore` (or strace) run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The syscalls that rename a finished lock file into place (`?`: `rename` does not exist on
/// every architecture).
const RENAMES: &str = "?rename,renameat,renameat2";

/// The git servers `cargo xtask test` starts.
struct Servers {
    /// The directory of bare repositories the daemon serves.
    root: PathBuf,
    /// The daemon's `host:port`.
    daemon: String,
}

fn servers() -> Result<Servers, Skip> {
    let get = |k: &str| {
        std::env::var(k).map_err(|_| {
            Skip(format!(
                "{k} is not set: the git servers are not running (cargo xtask test starts them)"
            ))
        })
    };
    Ok(Servers {
        root: PathBuf::from(get("FLOWSTORE_TEST_GIT_ROOT")?),
        daemon: get("FLOWSTORE_TEST_GIT_DAEMON")?,
    })
}

/// Whether strace is installed and may trace here (ptrace can be forbidden in containers).
fn strace_works() -> Result<(), Skip> {
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .output()
        .map_err(|e| {
            Skip(format!(
                "strace is not installed ({e}): see .ci/install.d/strace.sh"
            ))
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Skip(format!(
            "strace cannot trace in this environment ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Trials per kill point: `FLOWSTORE_KILL_TRIALS`, else 20 under `cargo xtask stress`
/// (`FLOWSTORE_STRESS=1`), else 3.
fn trials() -> usize {
    match std::env::var("FLOWSTORE_KILL_TRIALS") {
        Ok(v) => match v.trim().parse() {
            Ok(n) if n > 0 => n,
            _ => panic!("FLOWSTORE_KILL_TRIALS must be a positive number, not {v:?}"),
        },
        Err(_) if std::env::var("FLOWSTORE_STRESS").is_ok_and(|v| v == "1") => 20,
        Err(_) => 3,
    }
}

/// The flow file of the `n`th commit: CRLF, trailing blanks, non-ASCII and no final newline, so
/// any re-encoding would show.
fn flow_source(n: usize) -> Vec<u8> {
    format!("with Flow(\"Killed\") as flow:\r\n    pass  \n# commit {n}: générique ✓\n\t# end")
        .into_bytes()
}

/// How one run of a process ended.
struct Run {
    status: ExitStatus,
    stderr: String,
}

/// Runs `cmd` with its output in files under `logs` (no pipe can fill up), killing it after
/// [`RUN_LIMIT`].
fn run(cmd: &mut Command, logs: &Path, what: &str) -> Run {
    let stderr_path = logs.join(format!("{what}.stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(logs.join(format!("{what}.stdout"))).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {RUN_LIMIT:?} (the cache is wedged?); stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// Where strace kills the fetch: the first (or `when`th) of `syscalls` on `path`.
struct Injection {
    path: PathBuf,
    syscalls: &'static str,
    when: Option<usize>,
}

/// A repository served by the git daemon, a registered reference to its flow on branch `main`,
/// and a private cache, home and work tree for the `flowstore` processes.
struct Fixture {
    dir: tempfile::TempDir,
    /// The cache (canonical: strace's `-P` compares resolved paths).
    cache: PathBuf,
    home: PathBuf,
    work: PathBuf,
    bare: PathBuf,
    reference: PathBuf,
    /// The flow file as last committed and pushed.
    flow: Vec<u8>,
    /// The branch's head commit.
    head: String,
    commits: usize,
    runs: usize,
    /// The remote's clone entry (`<cache>/clone-<hash>`).
    clone: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bare);
    }
}

impl Fixture {
    /// A new repository with one commit, registered and fetched once (which fills the cache).
    fn new(servers: &Servers, tag: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let (cache, home, work) = (base.join("cache"), base.join("home"), base.join("work"));
        for d in [&cache, &home, &work] {
            std::fs::create_dir_all(d).unwrap();
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("kills/{tag}-{}-{nanos}", std::process::id());
        let bare = servers.root.join(format!("{name}.git"));
        let _ = std::fs::remove_dir_all(&bare);
        std::fs::create_dir_all(&bare).unwrap();
        let mut fx = Fixture {
            reference: base.join("ref.json"),
            dir,
            cache,
            home,
            work,
            bare,
            flow: Vec::new(),
            head: String::new(),
            commits: 0,
            runs: 0,
            clone: PathBuf::new(),
        };
        fx.git(&fx.bare, &["init", "-q", "--bare", "-b", "main"]);
        fx.git(&fx.work, &["init", "-q", "-b", "main"]);
        fx.commit();

        let url = format!("git://{}/{name}.git#branch=main", servers.daemon);
        let out = fx
            .flowstore()
            .args(["register", "flow.py", "--name", "Killed", "--script"])
            .args(["--storage", &url, "--out"])
            .arg(&fx.reference)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "registering {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fx.fetch_heals("the first fetch", &[]);
        let status = fx.status();
        let clones: Vec<&serde_json::Value> = status["entries"]
            .as_array()
            .expect("cache status lists entries")
            .iter()
            .filter(|e| e["kind"] == "clone")
            .collect();
        assert_eq!(clones.len(), 1, "one clone after one fetch: {status:#}");
        fx.clone = PathBuf::from(clones[0]["path"].as_str().expect("a clone has a path"));
        assert!(
            fx.clone.join("repo.git").is_dir(),
            "{} holds no repo.git",
            fx.clone.display()
        );
        fx
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.email=t@flowstore.test", "-c", "user.name=t"])
            .args(["-c", "core.autocrlf=false", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(cwd)
            .env("HOME", &self.home)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Commits a new version of the flow file and pushes it to `main`.
    fn commit(&mut self) {
        self.commits += 1;
        self.flow = flow_source(self.commits);
        std::fs::write(self.work.join("flow.py"), &self.flow).unwrap();
        self.git(&self.work, &["add", "-A"]);
        let msg = format!("commit {}", self.commits);
        self.git(&self.work, &["commit", "-q", "-m", &msg]);
        let bare = self.bare.to_str().unwrap().to_string();
        self.git(&self.work, &["push", "-q", &bare, "main"]);
        self.head = self.git(&self.work, &["rev-parse", "HEAD"]);
    }

    /// `flowstore` with this fixture's cache and home (nothing touches the real `~`).
    fn flowstore(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowstore"));
        self.isolate(&mut cmd);
        cmd
    }

    fn isolate(&self, cmd: &mut Command) {
        cmd.current_dir(self.dir.path())
            .env("FLOWSTORE_GIT_CACHE", &self.cache)
            .env("HOME", &self.home)
            .env("FLOWSTORE_HOME", self.home.join("flowstore"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_CONFIG_HOME", self.home.join(".config"));
    }

    /// `flowstore cache status --json`.
    fn status(&self) -> serde_json::Value {
        let out = self
            .flowstore()
            .args(["cache", "status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cache status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("cache status --json prints JSON")
    }

    /// The checkout entry of the head commit.
    fn head_checkout(&self) -> PathBuf {
        let status = self.status();
        let entry = status["entries"]
            .as_array()
            .expect("cache status lists entries")
            .iter()
            .find(|e| e["kind"] == "checkout" && e["commit"] == self.head.as_str())
            .unwrap_or_else(|| panic!("no checkout of {} in {status:#}", self.head));
        PathBuf::from(entry["path"].as_str().expect("a checkout has a path"))
    }

    /// The temporaries in `<cache>/.tmp/`.
    fn temporaries(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.cache.join(".tmp")) {
            Ok(list) => list.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn next_run(&mut self, what: &str) -> (String, PathBuf) {
        self.runs += 1;
        let name = format!("{}-{what}", self.runs);
        let output = self.dir.path().join(format!("{name}.flow"));
        (name, output)
    }

    /// Fetches under strace, which kills the process at `inj`; asserts it died of SIGKILL and
    /// returns strace's log.
    fn killed_fetch(&mut self, inj: &Injection, what: &str) -> String {
        let (name, output) = self.next_run("killed");
        let log = self.dir.path().join(format!("{name}.strace"));
        let mut inject = format!("inject={}:signal=KILL", inj.syscalls);
        if let Some(n) = inj.when {
            inject.push_str(&format!(":when={n}"));
        }
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-q", "-o"])
            .arg(&log)
            .arg("-P")
            .arg(&inj.path)
            .args(["-e", &format!("trace={}", inj.syscalls), "-e", &inject])
            .arg(env!("CARGO_BIN_EXE_flowstore"))
            .arg("fetch")
            .arg(&self.reference)
            .arg("-o")
            .arg(&output);
        self.isolate(&mut cmd);
        let shown = format!("{cmd:?}");
        let r = run(&mut cmd, self.dir.path(), &name);
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        let by_sigkill = r.status.signal() == Some(9) || r.status.code() == Some(137);
        assert!(
            by_sigkill && log_text.contains("+++ killed by SIGKILL +++"),
            "{what}: the fetch was not killed at {} ({}): the injection never fired, so the \
             trial proves nothing.\ncommand: {shown}\nstrace log:\n{log_text}\nstderr:\n{}",
            inj.path.display(),
            r.status,
            r.stderr
        );
        log_text
    }

    /// A plain fetch: must succeed within [`RUN_LIMIT`] with the committed flow, byte for byte,
    /// and leave none of `stale` behind.
    fn fetch_heals(&mut self, what: &str, stale: &[PathBuf]) {
        let (name, output) = self.next_run("fetch");
        let mut cmd = self.flowstore();
        cmd.arg("fetch").arg(&self.reference).arg("-o").arg(&output);
        let r = run(&mut cmd, self.dir.path(), &name);
        assert!(
            r.status.success(),
            "{what}: the fetch after the kill failed ({}): the cache did not heal.\nstderr:\n{}",
            r.status,
            r.stderr
        );
        let got = std::fs::read(&output)
            .unwrap_or_else(|e| panic!("{what}: no flow written to {}: {e}", output.display()));
        assert!(
            got == self.flow,
            "{what}: fetched {:?}, committed {:?} (head {})\nstderr:\n{}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&self.flow),
            self.head,
            r.stderr
        );
        assert!(
            r.stderr.contains(&self.head),
            "{what}: the fetch did not report the head commit {}:\n{}",
            self.head,
            r.stderr
        );
        for path in stale {
            assert!(
                path.symlink_metadata().is_err(),
                "{what}: {} is still there after a successful fetch",
                path.display()
            );
        }
    }
}

/// The servers and strace, or a visible skip.
fn setup(test: &str, tag: &str) -> Option<Fixture> {
    let servers = match servers().and_then(|s| strace_works().map(|()| s)) {
        Ok(s) => s,
        Err(reason) => {
            skip(test, &reason);
            return None;
        }
    };
    Some(Fixture::new(&servers, tag))
}

/// Runs the trials of one lock point: `arrange` prepares the next fetch to take the lock and
/// says where to kill it; the lock file must be left behind, then a plain fetch must heal.
fn lock_trials(test: &str, lock: &str, mut arrange: impl FnMut(&mut Fixture, usize) -> Injection) {
    let Some(mut fx) = setup(test, lock.rsplit('/').next().unwrap_or(lock)) else {
        return;
    };
    let trials = trials();
    let (mut killed, mut healed) = (0, 0);
    for trial in 1..=trials {
        let what = format!("{lock}, trial {trial}/{trials}");
        let inj = arrange(&mut fx, trial);
        let log = fx.killed_fetch(&inj, &what);
        killed += 1;
        assert!(
            inj.path.exists(),
            "{what}: the fetch was killed but {} was not left behind: the kill missed the lock's \
             window, so the trial proves nothing.\nstrace log:\n{log}",
            inj.path.display()
        );
        fx.fetch_heals(&what, std::slice::from_ref(&inj.path));
        healed += 1;
    }
    eprintln!("kill trials at {lock}: {killed} killed, {healed} healed");
}

/// A lock file of the bare clone.
fn in_repo(fx: &Fixture, rel: &str) -> PathBuf {
    fx.clone.join("repo.git").join(rel)
}

/// Killed as libgit2 renames `shallow.lock` over `shallow` (a new commit moves the shallow
/// boundary of the depth-1 clone).
#[test]
fn a_fetch_killed_holding_shallow_lock_heals() {
    lock_trials(
        "a_fetch_killed_holding_shallow_lock_heals",
        "shallow.lock",
        |fx, _| {
            fx.commit();
            Injection {
                path: in_repo(fx, "shallow.lock"),
                syscalls: RENAMES,
                when: None,
            }
        },
    );
}

/// Killed as libgit2 renames the lock of the branch's local ref into place.
#[test]
fn a_fetch_killed_holding_the_branch_ref_lock_heals() {
    lock_trials(
        "a_fetch_killed_holding_the_branch_ref_lock_heals",
        "refs/flowstore/heads/main.lock",
        |fx, _| {
            fx.commit();
            Injection {
                path: in_repo(fx, "refs/flowstore/heads/main.lock"),
                syscalls: RENAMES,
                when: None,
            }
        },
    );
}

/// Killed as libgit2 renames `FETCH_HEAD.lock` into place (written by every fetch).
#[test]
fn a_fetch_killed_holding_fetch_head_lock_heals() {
    lock_trials(
        "a_fetch_killed_holding_fetch_head_lock_heals",
        "FETCH_HEAD.lock",
        |fx, _| {
            fx.commit();
            Injection {
                path: in_repo(fx, "FETCH_HEAD.lock"),
                syscalls: RENAMES,
                when: None,
            }
        },
    );
}

/// Killed while a fresh bare clone is created, at each of the three renames of `config.lock`
/// in turn (the clone is deleted first, so the fetch creates it again).
#[test]
fn a_fetch_killed_holding_config_lock_heals() {
    lock_trials(
        "a_fetch_killed_holding_config_lock_heals",
        "config.lock",
        |fx, trial| {
            fx.commit();
            std::fs::remove_dir_all(&fx.clone).unwrap();
            Injection {
                path: in_repo(fx, "config.lock"),
                syscalls: RENAMES,
                when: Some((trial - 1) % 3 + 1),
            }
        },
    );
}

/// Killed while a fresh bare clone is created, holding `HEAD.lock`: libgit2 `link`s it to
/// `HEAD` (a new ref) and then `unlink`s it. Odd trials kill at the link (no `HEAD` yet), even
/// trials at the unlink (`HEAD` written, its lock still there).
#[test]
fn a_fetch_killed_holding_head_lock_heals() {
    lock_trials(
        "a_fetch_killed_holding_head_lock_heals",
        "HEAD.lock",
        |fx, trial| {
            fx.commit();
            std::fs::remove_dir_all(&fx.clone).unwrap();
            Injection {
                path: in_repo(fx, "HEAD.lock"),
                syscalls: if trial % 2 == 1 {
                    "?link,linkat"
                } else {
                    "?unlink,unlinkat"
                },
                when: None,
            }
        },
    );
}

/// Killed as a finished checkout (files, stamp, commit) is about to be renamed from `.tmp/` onto
/// its entry: the temporary is left behind, and the next fetch writes the checkout again and
/// sweeps it.
///
/// strace's `-P` matches only the first path of `rename(2)` (the temporary, whose name is not
/// known beforehand), so the kill comes at the syscall just before it: the `stat` of the entry's
/// path that publishing makes to clear the way. The trial checks the kill landed there: the
/// temporary is complete and the entry absent.
#[test]
fn a_fetch_killed_publishing_a_checkout_heals() {
    let test = "a_fetch_killed_publishing_a_checkout_heals";
    let Some(mut fx) = setup(test, "checkout") else {
        return;
    };
    let trials = trials();
    let (mut killed, mut healed) = (0, 0);
    for trial in 1..=trials {
        let what = format!("checkout publish, trial {trial}/{trials}");
        let checkout = fx.head_checkout();
        std::fs::remove_dir_all(&checkout).unwrap();
        let before = fx.temporaries();
        let inj = Injection {
            path: checkout.clone(),
            syscalls: "%%stat",
            when: Some(1),
        };
        let log = fx.killed_fetch(&inj, &what);
        killed += 1;
        let left: Vec<PathBuf> = fx
            .temporaries()
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        let complete = |t: &PathBuf| {
            t.join("tree/flow.py").is_file()
                && t.join("stamp.json").is_file()
                && t.join("remote").is_file()
                && std::fs::read_to_string(t.join("commit")).is_ok_and(|c| c.trim() == fx.head)
        };
        assert!(
            left.len() == 1 && complete(&left[0]) && !checkout.exists(),
            "{what}: the fetch was killed but did not leave exactly one finished, unpublished \
             checkout of {} in .tmp/ (left: {left:?}; entry present: {}): the kill missed the \
             publish, so the trial proves nothing.\nstrace log:\n{log}",
            fx.head,
            checkout.exists()
        );
        fx.fetch_heals(&what, &left);
        assert!(
            checkout.join("stamp.json").is_file(),
            "{what}: the fetch did not write the checkout {} again",
            checkout.display()
        );
        healed += 1;
    }
    eprintln!("kill trials at checkout publish: {killed} killed, {healed} healed");
}
