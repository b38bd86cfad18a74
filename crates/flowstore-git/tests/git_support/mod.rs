//! What the git test files share: the git servers started by `cargo xtask test` (`git daemon`
//! in `FLOWSTORE_TEST_GIT_DAEMON`, smart HTTP with basic auth in `FLOWSTORE_TEST_GIT_HTTP`,
//! user/token in `FLOWSTORE_TEST_GIT_USER`/`_TOKEN`) serving bare repositories the tests create
//! under `FLOWSTORE_TEST_GIT_ROOT`, and a work tree that pushes to them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use flowstore_core::testkit::Skip;
use flowstore_git::git::GitBuilder;

pub struct Env {
    pub root: PathBuf,
    pub daemon: String,
    pub http: String,
    pub user: String,
    pub token: String,
}

pub fn env() -> Result<Env, Skip> {
    // Storages opened from references use the default cache: keep it inside this test run.
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| tempfile::tempdir().unwrap());
    std::env::set_var(flowstore_git::git::CACHE_ENV, cache.path());
    let get = |k: &str| {
        std::env::var(k).map_err(|_| {
            Skip(format!(
                "{k} is not set: the git servers are not running (cargo xtask test starts them)"
            ))
        })
    };
    Ok(Env {
        root: PathBuf::from(get("FLOWSTORE_TEST_GIT_ROOT")?),
        daemon: get("FLOWSTORE_TEST_GIT_DAEMON")?,
        http: get("FLOWSTORE_TEST_GIT_HTTP")?,
        user: get("FLOWSTORE_TEST_GIT_USER")?,
        token: get("FLOWSTORE_TEST_GIT_TOKEN")?,
    })
}

macro_rules! need_servers {
    ($name:literal) => {
        match env() {
            Ok(e) => e,
            Err(reason) => return skip($name, &reason),
        }
    };
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.email=t@flowstore.test",
            "-c",
            "user.name=flowstore tests",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository served by both servers: a work tree that pushes to `<root>/<name>.git`.
pub struct TestRepo {
    pub name: String,
    pub work: tempfile::TempDir,
}

static N: AtomicUsize = AtomicUsize::new(0);

impl TestRepo {
    pub fn new(env: &Env, files: &[(&str, &str)]) -> TestRepo {
        let name = format!(
            "org/repo-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let bare = env.root.join(format!("{name}.git"));
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        let work = tempfile::tempdir().unwrap();
        git(work.path(), &["init", "-q", "-b", "main"]);
        git(
            work.path(),
            &["remote", "add", "origin", bare.to_str().unwrap()],
        );
        let repo = TestRepo { name, work };
        repo.commit(files, "first");
        repo
    }

    /// Commits files and pushes; returns the commit SHA.
    pub fn commit(&self, files: &[(&str, &str)], msg: &str) -> String {
        let bytes: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
        self.commit_bytes(&bytes, msg)
    }

    /// Commits files of any bytes and pushes; returns the commit SHA.
    pub fn commit_bytes(&self, files: &[(&str, &[u8])], msg: &str) -> String {
        for (path, content) in files {
            let p = self.work.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git(self.work.path(), &["add", "-A"]);
        git(self.work.path(), &["commit", "-q", "-m", msg]);
        let branch = git(self.work.path(), &["rev-parse", "--abbrev-ref", "HEAD"]);
        git(self.work.path(), &["push", "-q", "origin", &branch]);
        git(self.work.path(), &["rev-parse", "HEAD"])
    }

    /// Commits files with their modes (`true`: executable) and pushes; returns the commit SHA.
    pub fn commit_files(&self, files: &[(String, Vec<u8>, bool)], msg: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        for (path, content, executable) in files {
            let p = self.work.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            let mode = if *executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        self.commit_bytes(&[], msg)
    }

    /// The bare repository on the server's disk.
    pub fn bare(&self, env: &Env) -> PathBuf {
        env.root.join(format!("{}.git", self.name))
    }

    pub fn daemon(&self, env: &Env, flow_path: &str, cache: &Path) -> GitBuilder {
        GitBuilder::new(&self.name, flow_path)
            .host(&env.daemon)
            .scheme("git")
            .cache_dir(cache)
    }

    pub fn http(&self, env: &Env, flow_path: &str, cache: &Path, token_secret: &str) -> GitBuilder {
        GitBuilder::new(format!("git/{}", self.name), flow_path)
            .host(&env.http)
            .scheme("http")
            .git_token_secret_name(token_secret)
            .git_token_username(&env.user)
            .cache_dir(cache)
    }
}

pub fn source(name: &str) -> String {
    format!("with Flow(\"{name}\") as flow:\n    pass\n")
}
