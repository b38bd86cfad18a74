//! Every backend's "it is not there" ends the `flowstore` process with exit code 3 (not found)
//! and a message that names what is missing: a bucket, container, object, URL, repository,
//! project, ref or file. Each test registers a flow on a real server started by `cargo xtask test`
//! (the provider APIs: the local servers that answer as their public API docs say), then fetches
//! references that point one thing off: the flow itself must still fetch, each broken reference
//! must exit 3. Without the servers the tests skip visibly.

use std::path::{Path, PathBuf};
use std::process::Command;

use flowstore_core::testkit::{skip, Skip};
use serde_json::{json, Value};

/// A directory for one test's references and `flowstore` processes.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    env: Vec<(String, String)>,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        World {
            _dir: dir,
            root,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every process this world runs (a secret, a credential).
    fn with_env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    fn flowstore(&self, args: &[&str]) -> (i32, String, String) {
        self.flowstore_in(&self.root, args)
    }

    /// Runs `flowstore` with `args` in directory `cwd`.
    fn flowstore_in(&self, cwd: &Path, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_flowstore"))
            .args(args)
            .current_dir(cwd)
            .env("FLOWSTORE_HOME", self.root.join("home"))
            .env("FLOWSTORE_BLOB_CACHE", self.root.join("cache"))
            .env("FLOWSTORE_GIT_CACHE", self.root.join("git-cache"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("RUST_LOG")
            .output()
            .expect("run flowstore");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Registers `file` (a script with `--script`, its path relative to the working directory
    /// `cwd`) in the storage at `url`; returns the reference.
    fn register(&self, cwd: &Path, file: &Path, url: &str, script: bool) -> Value {
        let out = self.root.join("registered.json");
        let mut args = vec![
            "register",
            file.to_str().unwrap(),
            "--name",
            "Nf",
            "--storage",
            url,
            "--out",
            out.to_str().unwrap(),
        ];
        if script {
            args.push("--script");
        }
        let (code, _, err) = self.flowstore_in(cwd, &args);
        assert_eq!(code, 0, "registering in {url}: {err}");
        serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
    }

    /// Fetches `reference` written to a file; returns the exit code and stderr.
    fn fetch(&self, reference: &Value) -> (i32, String) {
        let path = self.root.join("fetched.json");
        std::fs::write(&path, serde_json::to_vec_pretty(reference).unwrap()).unwrap();
        let (code, _, err) = self.flowstore(&["fetch", path.to_str().unwrap()]);
        (code, err)
    }

    /// The reference fetches; each broken one exits 3 naming what is missing.
    fn check(&self, backend: &str, reference: &Value, broken: &[(&str, Value, &str)]) {
        let (code, err) = self.fetch(reference);
        assert_eq!(code, 0, "{backend}: the registered flow must fetch: {err}");
        for (what, r, named) in broken {
            let (code, err) = self.fetch(r);
            assert_eq!(
                code, 3,
                "{backend}, missing {what}: exit {code}, want 3 (not found): {err}"
            );
            assert!(
                err.contains(named),
                "{backend}, missing {what}: the message should name {named:?}: {err}"
            );
        }
    }
}

/// `reference` with the JSON pointer `at` set to `value`.
fn with(reference: &Value, at: &str, value: Value) -> Value {
    let mut r = reference.clone();
    *r.pointer_mut(at)
        .unwrap_or_else(|| panic!("no {at} in {reference:#}")) = value;
    r
}

/// `reference` with its top-level field `field` set (added if absent) to `value`.
fn set(reference: &Value, field: &str, value: Value) -> Value {
    let mut r = reference.clone();
    r.as_object_mut()
        .expect("a reference is a JSON object")
        .insert(field.into(), value);
    r
}

/// The location of flow `Nf` in `reference`.
fn location(reference: &Value) -> String {
    reference["flows"]["Nf"].as_str().unwrap().to_string()
}

/// `reference` whose flow `Nf` (and every field holding its location) names `other` instead.
fn elsewhere(reference: &Value, other: &str) -> Value {
    let old = location(reference);
    let text = serde_json::to_string(reference).unwrap();
    serde_json::from_str(&text.replace(&old, other)).unwrap()
}

fn var(k: &str) -> Result<String, Skip> {
    std::env::var(k).map_err(|_| {
        Skip(format!(
            "{k} is not set: the server is not running (cargo xtask test starts it)"
        ))
    })
}

macro_rules! need {
    ($test:literal, $($k:literal),+) => {
        match (|| Ok::<_, Skip>(($(var($k)?,)+)))() {
            Ok(v) => v,
            Err(reason) => return skip($test, &reason),
        }
    };
}

fn flow_file(w: &World) -> PathBuf {
    let f = w.root.join("nf.flow");
    std::fs::write(&f, "a flow\n").unwrap();
    f
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[test]
fn local_missing_file_and_directory() {
    let w = World::new();
    let dir = w.root.join("flows");
    let r = w.register(
        &w.root,
        &flow_file(&w),
        &format!("file://{}", dir.to_str().unwrap()),
        false,
    );
    let gone = format!("{}/nf/gone", dir.display());
    w.check(
        "Local",
        &r,
        &[
            ("file", elsewhere(&r, &gone), "gone"),
            (
                "directory",
                elsewhere(&r, &format!("{}/nf/x", w.root.join("no-dir").display())),
                "no-dir",
            ),
        ],
    );
}

#[cfg(feature = "cloud")]
#[test]
fn s3_missing_bucket_and_key() {
    let (endpoint, bucket) = need!(
        "s3_missing_bucket_and_key",
        "FLOWSTORE_TEST_S3_ENDPOINT",
        "FLOWSTORE_TEST_S3_BUCKET"
    );
    let w = World::new()
        .with_env("AWS_ACCESS_KEY_ID", "testing")
        .with_env("AWS_SECRET_ACCESS_KEY", "testing");
    let prefix = unique("nf");
    let r = w.register(
        &w.root,
        &flow_file(&w),
        &format!("s3://{bucket}/{prefix}?endpoint_url={endpoint}"),
        false,
    );
    let key = format!("{prefix}/nf/missing");
    w.check(
        "S3",
        &r,
        &[
            (
                "bucket",
                with(&r, "/bucket", json!("no-such-bucket-nf")),
                "no-such-bucket-nf",
            ),
            ("key", elsewhere(&r, &key), &key),
        ],
    );
}

#[cfg(feature = "cloud")]
#[test]
fn azure_missing_container_and_blob() {
    let (conn, container) = need!(
        "azure_missing_container_and_blob",
        "FLOWSTORE_TEST_AZURE_CONNECTION_STRING",
        "FLOWSTORE_TEST_AZURE_CONTAINER"
    );
    let w = World::new().with_env("AZURE_STORAGE_CONNECTION_STRING", &conn);
    let prefix = unique("nf");
    let r = w.register(
        &w.root,
        &flow_file(&w),
        &format!("az://{container}/{prefix}"),
        false,
    );
    let key = format!("{prefix}/nf/missing");
    w.check(
        "Azure",
        &r,
        &[
            (
                "container",
                with(&r, "/container", json!("no-such-container-nf")),
                "no-such-container-nf",
            ),
            ("blob", elsewhere(&r, &key), &key),
        ],
    );
}

#[cfg(feature = "cloud")]
#[test]
fn gcs_missing_bucket_and_object() {
    let (endpoint, bucket) = need!(
        "gcs_missing_bucket_and_object",
        "FLOWSTORE_TEST_GCS_ENDPOINT",
        "FLOWSTORE_TEST_GCS_BUCKET"
    );
    let w = World::new();
    let prefix = unique("nf");
    let host = endpoint.trim_start_matches("http://");
    let r = w.register(
        &w.root,
        &flow_file(&w),
        &format!("gs://{bucket}/{prefix}?emulator_host={host}"),
        false,
    );
    let key = format!("{prefix}/nf/missing");
    w.check(
        "GCS",
        &r,
        &[
            (
                "bucket",
                with(&r, "/bucket", json!("no-such-bucket-nf")),
                "no-such-bucket-nf",
            ),
            ("object", elsewhere(&r, &key), &key),
        ],
    );
}

#[cfg(feature = "webhook")]
#[test]
fn webhook_missing_url() {
    let (url,) = need!("webhook_missing_url", "FLOWSTORE_TEST_WEBHOOK_URL");
    let w = World::new();
    let r = w.register(
        &w.root,
        &flow_file(&w),
        &format!("{url}/{}/", unique("nf")),
        false,
    );
    let gone = format!("{url}/no-such-dir-nf/x");
    w.check("Webhook", &r, &[("object", elsewhere(&r, &gone), &gone)]);
}

#[cfg(feature = "git")]
#[test]
fn git_missing_repository_branch_and_file() {
    let (daemon, root) = need!(
        "git_missing_repository_branch_and_file",
        "FLOWSTORE_TEST_GIT_DAEMON",
        "FLOWSTORE_TEST_GIT_ROOT"
    );
    let w = World::new();
    let name = unique("nf");
    let work = w.root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("f.py"), "with Flow(\"Nf\") as flow: pass\n").unwrap();
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "flow"]);
    let bare = Path::new(&root).join(format!("{name}.git"));
    git(
        &work,
        &["clone", "-q", "--bare", ".", bare.to_str().unwrap()],
    );
    std::fs::write(bare.join("git-daemon-export-ok"), "").unwrap();
    let r = w.register(
        &work,
        Path::new("f.py"),
        &format!("git://{daemon}/{name}.git"),
        true,
    );
    let r = with(&r, "/flows/Nf", json!("f.py"));
    w.check(
        "Git",
        &r,
        &[
            (
                "repository",
                with(&r, "/repo", json!("no-such-repo-nf")),
                "no-such-repo-nf",
            ),
            (
                "branch",
                with(&r, "/branch_name", json!("no-such-branch")),
                "no-such-branch",
            ),
            (
                "file",
                with(
                    &with(&r, "/flows/Nf", json!("gone.py")),
                    "/flow_path",
                    json!("gone.py"),
                ),
                "gone.py",
            ),
        ],
    );
}

/// The fake provider APIs: seeds repository `repo` whose branch `main` holds `f.py`.
#[cfg(feature = "git")]
fn seed_fake(base: &str, repo: &str) {
    let sha = "2222222222222222222222222222222222222222";
    let body = json!({
        "repo": repo, "default_branch": "main", "branches": {"main": sha}, "tags": {},
        "commits": {sha: {"f.py": "with Flow(\"Nf\") as flow: pass\n"}},
    });
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{base}/_fake/seed"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "seeding the fake APIs: {r:?}");
    });
}

/// GitHub's, GitLab's and Bitbucket Server's references, each with a missing repository, ref and
/// file (the provider APIs: local servers that answer as their public API docs say).
#[cfg(feature = "git")]
#[test]
fn provider_apis_missing_repository_ref_and_file() {
    let (base, gh, gl, bbs) = need!(
        "provider_apis_missing_repository_ref_and_file",
        "FLOWSTORE_TEST_FAKE_APIS",
        "FLOWSTORE_TEST_GITHUB_TOKEN",
        "FLOWSTORE_TEST_GITLAB_TOKEN",
        "FLOWSTORE_TEST_BBS_TOKEN"
    );
    let w = World::new()
        .with_env("NF_GH", &gh)
        .with_env("NF_GL", &gl)
        .with_env("NF_BBS", &bbs);
    let repo = format!("nf/{}", unique("repo"));
    seed_fake(&base, &repo);
    let slug = repo.split('/').nth(1).unwrap();
    let references = [
        json!({"type": "GitHub", "flows": {"Nf": "f.py"}, "repo": repo, "path": "f.py",
               "base_url": format!("{base}/github"), "access_token_secret": "NF_GH"}),
        json!({"type": "GitLab", "flows": {"Nf": "f.py"}, "repo": repo, "path": "f.py",
               "host": format!("{base}/gitlab"), "access_token_secret": "NF_GL"}),
        json!({"type": "Bitbucket", "flows": {"Nf": "f.py"}, "project": "nf", "repo": slug,
               "path": "f.py", "host": format!("{base}/bbs"), "access_token_secret": "NF_BBS"}),
    ];
    for r in references {
        let backend = r["type"].as_str().unwrap().to_string();
        let other_repo = if backend == "Bitbucket" {
            "no-such-repo-nf".to_string()
        } else {
            "nf/no-such-repo-nf".to_string()
        };
        w.check(
            &backend,
            &r,
            &[
                (
                    "repository",
                    set(&r, "repo", json!(other_repo)),
                    "no-such-repo-nf",
                ),
                (
                    "ref",
                    set(&r, "ref", json!("no-such-ref-nf")),
                    "no-such-ref-nf",
                ),
                (
                    "file",
                    with(
                        &with(&r, "/flows/Nf", json!("gone.py")),
                        "/path",
                        json!("gone.py"),
                    ),
                    "gone.py",
                ),
            ],
        );
    }
}

/// CodeCommit's missing repository, commit and file (the local server checks SigV4 as AWS does).
#[cfg(feature = "git")]
#[test]
fn codecommit_missing_repository_commit_and_file() {
    let (base, key, secret) = need!(
        "codecommit_missing_repository_commit_and_file",
        "FLOWSTORE_TEST_FAKE_APIS",
        "FLOWSTORE_TEST_AWS_KEY",
        "FLOWSTORE_TEST_AWS_SECRET"
    );
    let w = World::new()
        .with_env("AWS_ACCESS_KEY_ID", &key)
        .with_env("AWS_SECRET_ACCESS_KEY", &secret);
    let repo = unique("nf-cc");
    seed_fake(&base, &repo);
    let r = json!({"type": "CodeCommit", "flows": {"Nf": "f.py"}, "repo": repo, "path": "f.py",
        "client_options": {"region_name": "us-east-1", "endpoint_url": format!("{base}/codecommit/")}});
    w.check(
        "CodeCommit",
        &r,
        &[
            (
                "repository",
                with(&r, "/repo", json!("no-such-repo-nf")),
                "no-such-repo-nf",
            ),
            (
                "commit",
                set(&r, "commit", json!("no-such-branch-nf")),
                "no-such-branch-nf",
            ),
            (
                "file",
                with(
                    &with(&r, "/flows/Nf", json!("gone.py")),
                    "/path",
                    json!("gone.py"),
                ),
                "gone.py",
            ),
        ],
    );
}

/// Docker: a reference naming an image repository or tag the registry does not hold.
#[cfg(feature = "docker")]
#[test]
fn docker_missing_image_and_tag() {
    let (registry,) = need!("docker_missing_image_and_tag", "FLOWSTORE_TEST_REGISTRY");
    let base_repo = unique("nf-base");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(
            flowstore_docker::registry::Registry::new(&registry, None).push_files_image(
                &base_repo,
                "1",
                &[("/etc/motd".into(), b"base".to_vec(), 0o644)],
                flowstore_docker::oci::ContainerConfig::default(),
            ),
        )
        .unwrap();
    let w = World::new();
    let image = unique("nf-image");
    let r = w.register(
        &w.root,
        &flow_file(&w),
        &format!("docker://{registry}/{image}?mode=daemonless&base_image={registry}/{base_repo}:1"),
        false,
    );
    w.check(
        "Docker",
        &r,
        &[
            (
                "image",
                set(&r, "image_name", json!("no-such-image-nf")),
                "no-such-image-nf",
            ),
            // The reference reads the image by digest (a tag may move), so the tag does not
            // matter: a digest the registry does not hold does.
            (
                "manifest",
                set(
                    &r,
                    "image_digest",
                    json!(format!("sha256:{}", "0".repeat(64))),
                ),
                &image,
            ),
        ],
    );
}
