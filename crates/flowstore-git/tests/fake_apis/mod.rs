//! Support for the API storages' tests: the fake provider APIs are served by `cargo xtask test`
//! (`cargo xtask fake-apis`, written from the providers' public API docs; see
//! `xtask/src/servers/fake_apis.rs`). Tests seed repositories into it.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flowstore_core::testkit::Skip;
use flowstore_core::Registry;
use flowstore_secrets::MapSource;
use serde_json::{json, Value};

pub struct Fake {
    pub base: String,
}

pub fn fake() -> Result<Fake, Skip> {
    Ok(Fake {
        base: std::env::var("FLOWSTORE_TEST_FAKE_APIS")
            .map_err(|_| Skip("FLOWSTORE_TEST_FAKE_APIS is not set: the fake provider APIs are not running (cargo xtask test starts them)".into()))?,
    })
}

pub fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

static N: AtomicUsize = AtomicUsize::new(0);

/// A unique repository name `org/repo-N`.
pub fn repo_name(prefix: &str) -> String {
    format!(
        "{prefix}/repo-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub const SHA1: &str = "1111111111111111111111111111111111111111";
pub const SHA2: &str = "2222222222222222222222222222222222222222";
pub const SHA3: &str = "3333333333333333333333333333333333333333";

pub fn flow_source(name: &str, version: &str) -> String {
    format!("with Flow(\"{name}\") as flow:  # {version}\n    pass\n")
}

impl Fake {
    /// Seeds a repository: `main` (default) at SHA2, `feature/x` at SHA3, tag `v1` at SHA1, each
    /// commit holding `files` with the version in the content.
    pub async fn seed(
        &self,
        repo: &str,
        default_branch: &str,
        files: &[(&str, &str)],
        extra_branches: &[(&str, &str)],
    ) {
        let commit = |v: &str| -> Value {
            files
                .iter()
                .map(|(p, name)| (p.to_string(), json!(flow_source(name, v))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut branches = serde_json::Map::new();
        branches.insert(default_branch.to_string(), json!(SHA2));
        branches.insert("feature/x".into(), json!(SHA3));
        for (b, sha) in extra_branches {
            branches.insert(b.to_string(), json!(sha));
        }
        let seed = json!({
            "repo": repo, "default_branch": default_branch, "branches": branches, "tags": {"v1": SHA1},
            "commits": {SHA1: commit("v1"), SHA2: commit("main"), SHA3: commit("feature")},
        });
        self.post("/_fake/seed", seed).await;
    }

    /// Seeds a repository whose default branch `main` (at SHA2) holds one file.
    pub async fn seed_source(&self, repo: &str, path: &str, source: &[u8]) {
        let seed = json!({
            "repo": repo, "default_branch": "main", "branches": {"main": SHA2}, "tags": {},
            "commits": {SHA2: {path: String::from_utf8_lossy(source)}},
        });
        self.post("/_fake/seed", seed).await;
    }

    /// Replaces the content a commit holds (to prove a pinned fetch refuses changed bytes).
    pub async fn reseed_commit(&self, repo: &str, sha: &str, path: &str, content: &str) {
        let seed = json!({
            "repo": repo, "default_branch": "main", "branches": {"main": sha}, "tags": {},
            "commits": {sha: {path: content}},
        });
        self.post("/_fake/seed", seed).await;
    }

    pub async fn post(&self, path: &str, body: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "seeding the fake: {}", r.status());
    }
}

pub fn registry(secrets: Arc<MapSource>) -> Registry {
    let mut r = Registry::new().with_secrets(secrets);
    flowstore_git::register(&mut r);
    r
}

macro_rules! need_fake {
    ($name:literal) => {
        match fake_apis::fake() {
            Ok(f) => f,
            Err(reason) => return flowstore_core::testkit::skip($name, &reason),
        }
    };
}
pub(crate) use need_fake;

/// The API storages' `add_flow_at`, for the harness.
pub trait AddAt: flowstore_core::Storage + 'static {
    fn add_at(&mut self, name: &str, path: &str) -> flowstore_core::Result<String>;
}

macro_rules! add_at {
    ($($t:ty),*) => {$(
        impl AddAt for $t {
            fn add_at(&mut self, name: &str, path: &str) -> flowstore_core::Result<String> {
                self.add_flow_at(name, path)
            }
        }
    )*};
}
add_at!(
    flowstore_git::GitHub,
    flowstore_git::GitLab,
    flowstore_git::Bitbucket,
    flowstore_git::CodeCommit
);

/// What the harness seeded: the storage's reference fields, the repository and its files.
type Seeded = (
    serde_json::Map<String, Value>,
    String,
    serde_json::Map<String, Value>,
);

/// The conformance harness for an API storage: `make(fake, repo, path, ref)` builds the storage.
pub struct ApiHarness<S: AddAt> {
    pub fake: Fake,
    pub make: fn(&Fake, &str, &str, Option<&str>) -> S,
    pub secrets: Arc<MapSource>,
    pub repo_prefix: &'static str,
    pub seeded: std::sync::Mutex<Vec<Seeded>>,
}

impl<S: AddAt> ApiHarness<S> {
    pub fn new(
        fake: Fake,
        make: fn(&Fake, &str, &str, Option<&str>) -> S,
        secrets: Arc<MapSource>,
        repo_prefix: &'static str,
    ) -> Self {
        ApiHarness {
            fake,
            make,
            secrets,
            repo_prefix,
            seeded: Default::default(),
        }
    }

    /// A unique repository name (`prefix/repo-…`, or `repo-…` without a prefix).
    fn repo(&self) -> String {
        let repo = repo_name(self.repo_prefix);
        if self.repo_prefix.is_empty() {
            repo.trim_start_matches('/').replace('/', "-")
        } else {
            repo
        }
    }

    /// Seeds `repo` with one commit (SHA2, the tip of `main`) holding `files`.
    async fn seed_files(&self, repo: &str, files: &serde_json::Map<String, Value>) {
        let seed = json!({
            "repo": repo, "default_branch": "main", "branches": {"main": SHA2}, "tags": {},
            "commits": {SHA2: files},
        });
        self.fake.post("/_fake/seed", seed).await;
    }
}

#[flowstore_core::async_trait]
impl<S: AddAt> flowstore_core::testkit::Harness for ApiHarness<S> {
    async fn storage(&self) -> Option<Box<dyn flowstore_core::Storage>> {
        None
    }
    async fn script_storage(
        &self,
        _flow: &str,
        source: &[u8],
    ) -> Option<Box<dyn flowstore_core::Storage>> {
        let repo = self.repo();
        self.fake.seed_source(&repo, "flows/flow.py", source).await;
        Some(Box::new((self.make)(
            &self.fake,
            &repo,
            "flows/flow.py",
            None,
        )))
    }
    /// A fresh repository of the fake holding each script at `flows/<index>.py` in commit SHA2
    /// (the tip of `main`); the storage reads that commit (a fixed SHA: the digests recorded at
    /// `persist` are checked at every fetch), each flow added at its file.
    async fn script_flows(
        &self,
        flows: &[(&str, &[u8])],
    ) -> Option<Box<dyn flowstore_core::Storage>> {
        let repo = self.repo();
        let files: serde_json::Map<String, Value> = flows
            .iter()
            .enumerate()
            .map(|(i, (_, source))| {
                (
                    format!("flows/{i}.py"),
                    Value::String(String::from_utf8(source.to_vec()).expect("UTF-8 scripts")),
                )
            })
            .collect();
        self.seed_files(&repo, &files).await;
        let mut storage = (self.make)(&self.fake, &repo, "flows/0.py", Some(SHA2));
        for (i, (name, _)) in flows.iter().enumerate() {
            storage.add_at(name, &format!("flows/{i}.py")).unwrap();
        }
        storage.persist().await.unwrap();
        let fields = storage.reference().unwrap().fields;
        self.seeded.lock().unwrap().push((fields, repo, files));
        Some(Box::new(storage))
    }
    /// The fake serves what it is seeded with: the repository is seeded again with the script
    /// changed in the same commit (SHA2), as a server that rewrote history under the pinned SHA
    /// would answer.
    async fn alter_script(
        &self,
        reference: &flowstore_core::StorageReference,
        flow: &str,
        source: &[u8],
    ) -> bool {
        let Some(path) = reference.flows.get(flow) else {
            return false;
        };
        let found = {
            let seeded = self.seeded.lock().unwrap();
            seeded
                .iter()
                .find(|(fields, _, _)| *fields == reference.fields)
                .map(|(_, repo, files)| (repo.clone(), files.clone()))
        };
        let Some((repo, mut files)) = found else {
            return false;
        };
        files.insert(
            path.clone(),
            Value::String(String::from_utf8_lossy(source).into_owned()),
        );
        self.seed_files(&repo, &files).await;
        true
    }
    fn registry(&self) -> Registry {
        registry(self.secrets.clone())
    }
    /// No serialized flows to tamper with (read-only); scripts: see `alter_script`.
    async fn tamper(
        &self,
        _r: &flowstore_core::StorageReference,
        _f: &str,
        _b: bytes::Bytes,
    ) -> bool {
        false
    }
}

/// Asserts `err` is a `NotFound` of `what` with the server's answer kept as its source.
pub fn assert_not_found(err: &flowstore_core::Error, what: &str) {
    assert!(
        matches!(err, flowstore_core::Error::NotFound { what: w, .. } if *w == what),
        "expected a missing {what}: {err:?}"
    );
    assert!(err.is_not_found() && !err.is_temporary(), "{err:?}");
    let source = std::error::Error::source(err).unwrap_or_else(|| panic!("no source: {err:?}"));
    assert!(
        source.downcast_ref::<flowstore_git::HttpStatus>().is_some(),
        "{source:?}"
    );
}
