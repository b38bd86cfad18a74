//! Interop with the real Prefect 1.4.1, installed from PyPI (`prefect==1.4.1`, `marshmallow<4`)
//! into the virtualenv `cargo xtask test` makes (`xtask/src/servers/prefect1.rs`) and names in
//! `FLOWSTORE_TEST_PREFECT1_PYTHON`. Both directions, through the `flowstore` binary:
//!
//! - references Prefect writes (Local pickle and script, S3 pickle and script against moto, Git
//!   against the git daemon, GitHub against the fake GitHub API) open in flowstore and fetch
//!   exactly the bytes Prefect stored, at Prefect's location;
//! - script references flowstore writes (Local, S3) load and run in Prefect's own agent code;
//! - flowstore slugs flow names into keys as Prefect does;
//! - secrets as a Prefect agent has them (`PREFECT__CONTEXT__SECRETS__<NAME>`) work, and a missing
//!   one is named, as Prefect names it.
//!
//! The peer's side is in `tests/prefect1/*.py`. Without the virtualenv (or a server) a test
//! skips visibly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use flowstore_core::testkit::{skip, Skip};
use serde_json::{json, Value};

/// The variable naming the virtualenv's python.
const PEER_ENV: &str = "FLOWSTORE_TEST_PREFECT1_PYTHON";

/// Credentials for moto (it accepts any); made-up values, never a real key.
const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "AKIAPREFECT1INTEROP"),
    ("AWS_SECRET_ACCESS_KEY", "prefect1-interop-made-up"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
];

/// The real Prefect 1.4.1 in its virtualenv, and a scratch directory for one test.
struct Peer {
    python: PathBuf,
    dir: tempfile::TempDir,
}

/// The peer for `test`, or `None` after reporting the skip.
fn peer(test: &str) -> Option<Peer> {
    match std::env::var(PEER_ENV) {
        Ok(p) if !p.is_empty() => Some(Peer {
            python: PathBuf::from(p),
            dir: tempfile::tempdir().unwrap(),
        }),
        _ => {
            skip(
                test,
                &Skip(format!(
                    "{PEER_ENV} is not set: no Prefect 1.4.1 virtualenv (cargo xtask test makes it)"
                )),
            );
            None
        }
    }
}

/// The values of the server variables `names`, or `None` after reporting the skip.
fn servers(test: &str, names: &[&str]) -> Option<Vec<String>> {
    let mut values = Vec::new();
    for name in names {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => values.push(v),
            _ => {
                skip(
                    test,
                    &Skip(format!(
                        "{name} is not set: the server is not running (cargo xtask test starts it)"
                    )),
                );
                return None;
            }
        }
    }
    Some(values)
}

static N: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A flow script both sides can load: Prefect 1 runs it (task `add` returns 42), flowstore stores
/// its bytes. The name is written as a JSON string, which Python reads as the same string.
fn flow_script(name: &str) -> String {
    let literal = serde_json::to_string(name).unwrap();
    format!(
        "from prefect import Flow, task\n\n\n@task\ndef add(x, y):\n    return x + y\n\n\n\
         with Flow({literal}) as flow:\n    add(20, 22)\n"
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Peer {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `tests/prefect1/<script>` with the virtualenv's python; returns its output.
    fn output(&self, script: &str, args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/prefect1")
            .join(script);
        let mut child = Command::new(&self.python)
            .arg(&script)
            .args(args)
            // Prefect's own home (config, default flow directory) stays inside the test.
            .env("PREFECT__HOME_DIR", self.path("prefect-home"))
            .envs(AWS_ENV)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "running {} {}: {e}",
                    self.python.display(),
                    script.display()
                )
            });
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs a peer script that must succeed and returns the JSON of its last stdout line.
    fn json(&self, script: &str, args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Value {
        let out = self.output(script, args, envs, stdin);
        assert!(
            out.status.success(),
            "Prefect 1.4.1 ({script} {args:?}) failed:\n{}",
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
        serde_json::from_str(last.unwrap_or_default())
            .unwrap_or_else(|e| panic!("{script} printed no JSON line ({e}):\n{stdout}"))
    }

    /// Prefect registers a flow with storage `kind` (see `write_ref.py`); returns
    /// `{reference, location, versions}`. Stored bytes land in `<out_dir>/stored` and `/pickle`.
    fn write_ref(&self, kind: &str, mut config: Value) -> (Value, PathBuf) {
        let out_dir = self.path(&unique(kind));
        std::fs::create_dir_all(&out_dir).unwrap();
        config["out_dir"] = json!(out_dir);
        let written = self.json("write_ref.py", &[kind, &config.to_string()], &[], "");
        (written, out_dir)
    }

    /// Prefect's agent code runs `flow` from the reference file (or, with `--pickle`, from pickle
    /// bytes); returns its output, whose last line is `{storage, flow, success, results}`.
    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        self.output("run_ref.py", args, envs, "")
    }

    /// The `flowstore` binary, with its home and caches inside the test's directory.
    fn flowstore(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flowstore"));
        c.env("FLOWSTORE_HOME", self.path("flowstore-home"))
            .env("FLOWSTORE_BLOB_CACHE", self.path("blob-cache"))
            .env("FLOWSTORE_GIT_CACHE", self.path("git-cache"))
            .env_remove("RUST_LOG")
            .envs(AWS_ENV);
        c
    }

    /// `flowstore --json fetch` of `reference` (written to a file): its JSON report and the
    /// bytes it wrote, or the error it printed.
    fn fetch(
        &self,
        reference: &Value,
        flow: &str,
        envs: &[(&str, &str)],
    ) -> Result<(Value, Vec<u8>), String> {
        let id = unique("fetch");
        let ref_file = self.path(&format!("{id}.json"));
        std::fs::write(&ref_file, reference.to_string()).unwrap();
        let out_file = self.path(&format!("{id}.out"));
        let out = self
            .flowstore()
            .envs(envs.iter().copied())
            .args(["--json", "fetch"])
            .arg(&ref_file)
            .args(["--flow", flow, "--output"])
            .arg(&out_file)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!(
                "flowstore fetch of Prefect's reference {reference} failed ({}):\n{}",
                out.status,
                text(&out.stderr)
            ));
        }
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok((report, std::fs::read(&out_file).unwrap()))
    }

    /// `flowstore register --script FILE --name NAME [--storage URL]`; returns the reference file.
    fn register_script(&self, file: &Path, name: &str, storage: Option<&str>) -> PathBuf {
        let ref_file = self.path(&format!("{}.json", unique("flowstore-ref")));
        let mut cmd = self.flowstore();
        cmd.arg("register")
            .arg(file)
            .args(["--script", "--name", name, "--out"])
            .arg(&ref_file);
        if let Some(url) = storage {
            cmd.args(["--storage", url]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "flowstore register {name:?}: {}",
            text(&out.stderr)
        );
        ref_file
    }

    /// Writes `flow_script(name)` to a new file; returns its path.
    fn script(&self, file_name: &str, name: &str) -> PathBuf {
        let dir = self.path(&unique("scripts"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file_name);
        std::fs::write(&path, flow_script(name)).unwrap();
        path
    }
}

/// Asserts Prefect ran flow `name` successfully and its task `add` returned 42.
fn assert_ran(out: &Output, name: &str) {
    assert!(
        out.status.success(),
        "Prefect 1.4.1 could not run flow {name:?}:\n{}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let ran: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON from run_ref.py ({e}):\n{stdout}"));
    assert_eq!(ran["flow"], name, "{ran}");
    assert_eq!(ran["success"], true, "{ran}");
    assert_eq!(ran["results"]["add"], 42, "{ran}");
}

/// Checks a fetch of a Prefect pickled flow: flowstore returns exactly the pickle inside Prefect's
/// payload, at Prefect's location, and Prefect runs the flow from flowstore's bytes.
fn check_pickle(
    peer: &Peer,
    written: &Value,
    out_dir: &Path,
    name: &str,
    fetched: (Value, Vec<u8>),
) {
    let (report, bytes) = fetched;
    assert_eq!(report["form"], "prefect1-pickle", "{report}");
    assert_eq!(report["location"], written["location"], "{report}");
    assert_eq!(report["verified"], "no digest recorded", "{report}");
    let pickle = std::fs::read(out_dir.join("pickle")).unwrap();
    assert!(
        bytes == pickle,
        "flowstore's bytes for {name:?} differ from the pickle Prefect stored"
    );
    assert_eq!(written["versions"]["prefect"], "1.4.1");
    let file = out_dir.join("from-flowstore.pickle");
    std::fs::write(&file, &bytes).unwrap();
    assert_ran(
        &peer.run(&["--pickle", file.to_str().unwrap(), name], &[]),
        name,
    );
}

/// Checks a fetch of a script flow: flowstore returns exactly `expected`, at Prefect's location.
fn check_script(written: &Value, expected: &[u8], fetched: (Value, Vec<u8>)) {
    let (report, bytes) = fetched;
    assert_eq!(report["form"], "script", "{report}");
    assert_eq!(report["location"], written["location"], "{report}");
    assert!(
        bytes == expected,
        "flowstore's bytes differ from the script Prefect registered:\n{}",
        text(&bytes)
    );
}

#[test]
fn prefect_local_pickle_fetches_byte_exact() {
    // The peer is the real Prefect 1.4.1 from PyPI: it pickles the flow into Local storage.
    let Some(peer) = peer("prefect_local_pickle_fetches_byte_exact") else {
        return;
    };
    let name = "Café 🚀 日本 ETL";
    let directory = peer.path("prefect-flows");
    let (written, out_dir) = peer.write_ref(
        "local-pickle",
        json!({"name": name, "directory": directory}),
    );
    let location = written["location"].as_str().unwrap();
    assert!(
        location.starts_with(&format!("{}/cafe-ri-ben-etl/", directory.display())),
        "{location}"
    );
    let fetched = peer.fetch(&written["reference"], name, &[]).unwrap();
    check_pickle(&peer, &written, &out_dir, name, fetched);
}

#[test]
fn a_prefect_pickle_fetch_explains_itself_once_in_plain_text() {
    // The peer is the real Prefect 1.4.1 from PyPI. Fetching its pickle in human mode, with
    // stderr captured (a CI log, a pipe), flowstore says once that it returns the pickle bytes
    // and lists Prefect's versions, in plain text: no terminal colour codes in a log.
    let Some(peer) = peer("a_prefect_pickle_fetch_explains_itself_once_in_plain_text") else {
        return;
    };
    let name = "Logged Pickle";
    let (written, _) = peer.write_ref(
        "local-pickle",
        json!({"name": name, "directory": peer.path("prefect-flows")}),
    );
    let ref_file = peer.path("logged-ref.json");
    std::fs::write(&ref_file, written["reference"].to_string()).unwrap();
    let out = peer
        .flowstore()
        .arg("fetch")
        .arg(&ref_file)
        .arg("--output")
        .arg(peer.path("logged.pickle"))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("built with prefect 1.4.1"), "{err}");
    assert_eq!(
        err.matches("flowstore cannot unpickle it").count(),
        1,
        "the note should be printed once:\n{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "terminal escape codes in captured stderr:\n{err}"
    );
}

#[test]
fn prefect_local_pickle_at_an_explicit_path_fetches() {
    // The peer is the real Prefect 1.4.1 from PyPI. `Local(path=...)` in serialized mode writes the
    // pickle at that path, wherever it is, and records the path in the reference's `path` field.
    let Some(peer) = peer("prefect_local_pickle_at_an_explicit_path_fetches") else {
        return;
    };
    let name = "Pinned Path Flow";
    let path = peer.path("elsewhere/pinned.flow");
    let (written, out_dir) = peer.write_ref(
        "local-pickle",
        json!({"name": name, "directory": peer.path("prefect-flows"), "path": path}),
    );
    assert_eq!(written["location"], json!(path));
    let fetched = peer
        .fetch(&written["reference"], name, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    check_pickle(&peer, &written, &out_dir, name, fetched);
}

#[test]
fn prefect_local_script_fetches_byte_exact() {
    // The peer is the real Prefect 1.4.1 from PyPI: Local script storage records the path only.
    let Some(peer) = peer("prefect_local_script_fetches_byte_exact") else {
        return;
    };
    let name = "Script Flow ü";
    let script = peer.script("etl flow.py", name);
    let (written, out_dir) =
        peer.write_ref("local-script", json!({"name": name, "script": script}));
    assert_eq!(written["location"], json!(script));
    let fetched = peer.fetch(&written["reference"], name, &[]).unwrap();
    check_script(
        &written,
        &std::fs::read(out_dir.join("stored")).unwrap(),
        fetched,
    );
}

#[test]
fn prefect_s3_pickle_fetches_byte_exact() {
    // The peer is the real Prefect 1.4.1 from PyPI (boto3), against moto's S3 server.
    let Some(peer) = peer("prefect_s3_pickle_fetches_byte_exact") else {
        return;
    };
    let Some(s3) = servers(
        "prefect_s3_pickle_fetches_byte_exact",
        &["FLOWSTORE_TEST_S3_ENDPOINT", "FLOWSTORE_TEST_S3_BUCKET"],
    ) else {
        return;
    };
    let name = "Ünïcödé S3 Straße";
    let (written, out_dir) = peer.write_ref(
        "s3-pickle",
        json!({"name": name, "endpoint": s3[0], "bucket": s3[1]}),
    );
    assert!(
        written["location"]
            .as_str()
            .unwrap()
            .starts_with("unicode-s3-strasse/"),
        "{written}"
    );
    let fetched = peer.fetch(&written["reference"], name, &[]).unwrap();
    check_pickle(&peer, &written, &out_dir, name, fetched);
}

#[test]
fn prefect_s3_script_fetches_byte_exact() {
    // The peer is the real Prefect 1.4.1 from PyPI: S3 script mode uploads `local_script_path`.
    let Some(peer) = peer("prefect_s3_script_fetches_byte_exact") else {
        return;
    };
    let Some(s3) = servers(
        "prefect_s3_script_fetches_byte_exact",
        &["FLOWSTORE_TEST_S3_ENDPOINT", "FLOWSTORE_TEST_S3_BUCKET"],
    ) else {
        return;
    };
    let name = "S3 Script Flow";
    let script = peer.script("s3_flow.py", name);
    let (written, out_dir) = peer.write_ref(
        "s3-script",
        json!({"name": name, "endpoint": s3[0], "bucket": s3[1], "script": script}),
    );
    // The object Prefect uploaded, read back with boto3, is the script.
    let stored = std::fs::read(out_dir.join("stored")).unwrap();
    assert_eq!(stored, std::fs::read(&script).unwrap());
    let fetched = peer.fetch(&written["reference"], name, &[]).unwrap();
    check_script(&written, &stored, fetched);
}

/// A bare repository under the git servers' root holding `files` on `main`; returns its name
/// (`prefect1/interop-…`).
fn git_repo(root: &Path, files: &[(&str, &[u8])]) -> String {
    let name = format!("prefect1/{}", unique("interop"));
    let bare = root.join(format!("{name}.git"));
    std::fs::create_dir_all(&bare).unwrap();
    let work = tempfile::tempdir().unwrap();
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args([
                "-c",
                "user.email=t@flowstore.test",
                "-c",
                "user.name=flowstore tests",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    git(work.path(), &["init", "-q", "-b", "main"]);
    for (path, content) in files {
        let p = work.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "flows"]);
    git(work.path(), &["push", "-q", bare.to_str().unwrap(), "main"]);
    name
}

#[test]
fn prefect_git_reference_fetches_the_committed_file() {
    // The peer is the real Prefect 1.4.1 from PyPI: Git storage records a reference to a file
    // committed in the repository (here served by `git daemon`); Prefect itself (dulwich) runs
    // the flow from the same reference, so the reference is one Prefect really uses.
    let test = "prefect_git_reference_fetches_the_committed_file";
    let Some(peer) = peer(test) else {
        return;
    };
    let Some(git) = servers(
        test,
        &["FLOWSTORE_TEST_GIT_ROOT", "FLOWSTORE_TEST_GIT_DAEMON"],
    ) else {
        return;
    };
    let name = "Git Flow";
    let source = flow_script(name);
    let repo = git_repo(
        Path::new(&git[0]),
        &[("flows/git_flow.py", source.as_bytes())],
    );
    let secret = "PREFECT1_INTEROP_CLONE_URL";
    let clone_url = format!("git://{}/{repo}.git", git[1]);
    let (written, _) = peer.write_ref(
        "git",
        json!({"name": name, "flow_path": "flows/git_flow.py", "repo": repo,
               "clone_url_secret": secret, "branch": "main"}),
    );
    assert_eq!(written["reference"]["git_clone_url_secret_name"], secret);
    let prefect_env = format!("PREFECT__CONTEXT__SECRETS__{secret}");
    let ref_file = peer.path("prefect-git-ref.json");
    std::fs::write(&ref_file, written["reference"].to_string()).unwrap();
    assert_ran(
        &peer.run(
            &[ref_file.to_str().unwrap(), name],
            &[(&prefect_env, &clone_url)],
        ),
        name,
    );

    let fetched = peer
        .fetch(&written["reference"], name, &[(secret, &clone_url)])
        .unwrap();
    assert!(
        fetched.0["revision"]
            .as_str()
            .is_some_and(|r| r.len() == 40),
        "{}",
        fetched.0
    );
    check_script(&written, source.as_bytes(), fetched);
}

/// Seeds the fake GitHub API with one file on `main` at commit `sha`.
fn seed_github(peer: &Peer, base: &str, repo: &str, sha: &str, path: &str, content: &str) {
    let file = peer.path(&unique("seed"));
    std::fs::write(&file, content).unwrap();
    let seeded = peer.json(
        "seed_fake_github.py",
        &[base, repo, sha, path, file.to_str().unwrap()],
        &[],
        "",
    );
    assert_eq!(seeded["seeded"], repo);
}

#[test]
fn prefect_github_reference_fetches_from_the_api() {
    // The peer is the real Prefect 1.4.1 from PyPI: GitHub storage records a reference (repo,
    // path, `base_url` for GitHub Enterprise — here the fake GitHub API) to a committed file.
    let test = "prefect_github_reference_fetches_from_the_api";
    let Some(peer) = peer(test) else {
        return;
    };
    let Some(env) = servers(
        test,
        &["FLOWSTORE_TEST_FAKE_APIS", "FLOWSTORE_TEST_GITHUB_TOKEN"],
    ) else {
        return;
    };
    let name = "GitHub Flow";
    let source = flow_script(name);
    let repo = format!("prefect1/{}", unique("gh"));
    let sha = "4444444444444444444444444444444444444444";
    seed_github(&peer, &env[0], &repo, sha, "flows/gh flow é.py", &source);
    let secret = "PREFECT1_INTEROP_GH_TOKEN";
    let (written, _) = peer.write_ref(
        "github",
        json!({"name": name, "repo": repo, "path": "flows/gh flow é.py",
               "token_secret": secret, "base_url": format!("{}/github", env[0])}),
    );
    let fetched = peer
        .fetch(&written["reference"], name, &[(secret, &env[1])])
        .unwrap();
    assert_eq!(fetched.0["revision"], sha, "{}", fetched.0);
    check_script(&written, source.as_bytes(), fetched);
}

#[test]
fn a_missing_github_token_secret_is_named() {
    // The peer is the real Prefect 1.4.1 from PyPI. Its GitHub storage fails with "Local Secret
    // ... was not found" when the secret named in `access_token_secret` is missing; flowstore
    // must name that secret too, not fall back to an anonymous request and blame the repository.
    let test = "a_missing_github_token_secret_is_named";
    let Some(peer) = peer(test) else {
        return;
    };
    let Some(env) = servers(test, &["FLOWSTORE_TEST_FAKE_APIS"]) else {
        return;
    };
    let name = "GitHub Flow";
    let repo = format!("prefect1/{}", unique("gh-missing"));
    seed_github(
        &peer,
        &env[0],
        &repo,
        &"5".repeat(40),
        "f.py",
        &flow_script(name),
    );
    let secret = "PREFECT1_INTEROP_UNSET_GH_TOKEN";
    let (written, _) = peer.write_ref(
        "github",
        json!({"name": name, "repo": repo, "path": "f.py",
               "token_secret": secret, "base_url": format!("{}/github", env[0])}),
    );
    let err = peer
        .fetch(&written["reference"], name, &[])
        .expect_err("fetched a private repository without its token");
    assert!(
        err.contains(secret),
        "the error does not name the secret {secret}:\n{err}"
    );
}

#[test]
fn prefect_context_secrets_resolve_for_prefect_references() {
    // The peer is the real Prefect 1.4.1 from PyPI. Its agents read secrets from
    // `PREFECT__CONTEXT__SECRETS__<NAME>`; an agent environment set up for Prefect must work for
    // flowstore unchanged. Prefect runs its Git reference with the clone URL there, then flowstore
    // fetches the same reference in the same environment.
    let test = "prefect_context_secrets_resolve_for_prefect_references";
    let Some(peer) = peer(test) else {
        return;
    };
    let Some(git) = servers(
        test,
        &["FLOWSTORE_TEST_GIT_ROOT", "FLOWSTORE_TEST_GIT_DAEMON"],
    ) else {
        return;
    };
    let name = "Context Secret Flow";
    let source = flow_script(name);
    let repo = git_repo(Path::new(&git[0]), &[("flow.py", source.as_bytes())]);
    let secret = "PREFECT1_INTEROP_CONTEXT_CLONE_URL";
    let env_name = format!("PREFECT__CONTEXT__SECRETS__{secret}");
    let clone_url = format!("git://{}/{repo}.git", git[1]);
    let agent_env = [(env_name.as_str(), clone_url.as_str())];
    let (written, _) = peer.write_ref(
        "git",
        json!({"name": name, "flow_path": "flow.py", "repo": repo,
               "clone_url_secret": secret, "branch": "main"}),
    );
    let ref_file = peer.path("prefect-git-ref.json");
    std::fs::write(&ref_file, written["reference"].to_string()).unwrap();
    assert_ran(
        &peer.run(&[ref_file.to_str().unwrap(), name], &agent_env),
        name,
    );
    let fetched = peer
        .fetch(&written["reference"], name, &agent_env)
        .unwrap_or_else(|e| panic!("{e}"));
    check_script(&written, source.as_bytes(), fetched);
}

#[test]
fn flowstore_local_script_reference_runs_in_prefect() {
    // The peer is the real Prefect 1.4.1 from PyPI: its `StorageSchema` loads flowstore's
    // reference, `get_flow` reads the script, and the flow runs.
    let Some(peer) = peer("flowstore_local_script_reference_runs_in_prefect") else {
        return;
    };
    let name = "Flowstore Local Script";
    let script = peer.script("local_flow.py", name);
    let ref_file = peer.register_script(&script, name, None);
    let out = peer.run(&[ref_file.to_str().unwrap(), name], &[]);
    assert_ran(&out, name);
    assert!(text(&out.stdout).contains(r#""storage": "Local""#));
}

#[test]
fn flowstore_s3_script_reference_runs_in_prefect() {
    // The peer is the real Prefect 1.4.1 from PyPI (boto3), against moto: its `StorageSchema`
    // loads flowstore's S3 reference and passes `client_options` to `boto3.client`, so they must
    // hold only boto3's arguments.
    let test = "flowstore_s3_script_reference_runs_in_prefect";
    let Some(peer) = peer(test) else {
        return;
    };
    let Some(s3) = servers(
        test,
        &["FLOWSTORE_TEST_S3_ENDPOINT", "FLOWSTORE_TEST_S3_BUCKET"],
    ) else {
        return;
    };
    let name = "Flowstore S3 Script";
    let script = peer.script("s3_flow.py", name);
    // `allow_http=true`: the option flowstore's docs give for a plain-HTTP endpoint like moto's.
    let url = format!(
        "s3://{}/{}?endpoint_url={}&region=us-east-1&allow_http=true",
        s3[1],
        unique("prefect1-interop"),
        s3[0]
    );
    let ref_file = peer.register_script(&script, name, Some(&url));
    let out = peer.run(&[ref_file.to_str().unwrap(), name], &[]);
    assert_ran(&out, name);
    assert!(text(&out.stdout).contains(r#""storage": "S3""#));
}

/// Flow names for the key check: ASCII, punctuation, accents, emoji, CJK and other scripts.
const NAMES: &[&str] = &[
    "My ETL Flow",
    "WELL what do you know?!~? looks like a test!!!!",
    "!&& ~~ cool flow :shades:",
    "../../etc/passwd",
    "it's a flow",
    "1,000 rows",
    "Café Flow",
    "Ünïcödé Straße",
    "ﬁne ligature",
    "Привет мир",
    "Ελληνικά",
    "🚀 Launch 🚀",
    "Flow 🎉🎉 party",
    "日本語のフロー",
    "数据管道",
    "한국어 흐름",
    "  spaced   out  flow  ",
];

#[test]
fn flow_keys_agree_with_prefect() {
    // The peer is the real Prefect 1.4.1 from PyPI: its own `Local.add_flow` and `S3.add_flow`
    // compute the keys (python-slugify, as Prefect calls it). flowstore's slug (the library and
    // the keys the `flowstore` binary writes) must be the same; the one documented difference is
    // a name that slugs to nothing, which flowstore keys as `flow` (Prefect leaves it empty).
    let Some(peer) = peer("flow_keys_agree_with_prefect") else {
        return;
    };
    let mut names: Vec<&str> = NAMES.to_vec();
    names.push("🚀🎉");
    let prefect = peer.json(
        "slugs.py",
        &[peer.path("prefect-slugs").to_str().unwrap()],
        &[],
        &serde_json::to_string(&names).unwrap(),
    );
    // Python drops the fraction when the microseconds are zero (25 characters instead of 32).
    let stamp = |seg: &str| {
        (seg.len() == 32 || seg.len() == 25)
            && seg
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == 't')
            && seg.ends_with("-00-00")
    };
    let flow_file = peer.path("tiny.flow");
    std::fs::write(&flow_file, "tiny").unwrap();
    let mut differences = Vec::new();
    for name in &names {
        let keys = &prefect[*name];
        let (s3_slug, s3_stamp) = keys["s3"].as_str().unwrap().split_once('/').unwrap();
        let local = keys["local"].as_str().unwrap();
        let expected = if s3_slug.is_empty() {
            assert!(stamp(local), "{name:?}: Prefect's Local key {local}");
            "flow"
        } else {
            assert_eq!(local.split_once('/').unwrap().0, s3_slug, "{name:?}");
            s3_slug
        };
        assert!(stamp(s3_stamp), "{name:?}: Prefect's timestamp {s3_stamp}");
        let library = flowstore_core::key::flow_slug(name);
        if library != expected {
            differences.push(format!(
                "{name:?}: Prefect 1.4.1 keys it {expected:?}, flowstore_core::key::flow_slug {library:?}"
            ));
        }

        let out = peer
            .flowstore()
            .args(["--json", "register"])
            .arg(&flow_file)
            .args(["--name", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name:?}: {}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let location = report["location"].as_str().unwrap();
        let mut segments = location.rsplit('/');
        let (written_stamp, written_slug) = (segments.next().unwrap(), segments.next().unwrap());
        assert!(stamp(written_stamp), "{name:?}: flowstore wrote {location}");
        if written_slug != expected {
            differences.push(format!(
                "{name:?}: Prefect 1.4.1 keys it {expected:?}, `flowstore register` wrote {location}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "flowstore's keys differ from Prefect 1.4.1's:\n{}",
        differences.join("\n")
    );
}
