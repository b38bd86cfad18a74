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

/// The conformance harness for an API storage: `make(fake, repo, path)` builds the storage.
pub struct ApiHarness<S: flowstore_core::Storage + 'static> {
    pub fake: Fake,
    pub make: fn(&Fake, &str, &str) -> S,
    pub secrets: Arc<MapSource>,
    pub repo_prefix: &'static str,
}

#[flowstore_core::async_trait]
impl<S: flowstore_core::Storage + 'static> flowstore_core::testkit::Harness for ApiHarness<S> {
    async fn storage(&self) -> Option<Box<dyn flowstore_core::Storage>> {
        None
    }
    async fn script_storage(
        &self,
        _flow: &str,
        source: &[u8],
    ) -> Option<Box<dyn flowstore_core::Storage>> {
        let repo = repo_name(self.repo_prefix);
        let repo = if self.repo_prefix.is_empty() {
            repo.trim_start_matches('/').replace('/', "-")
        } else {
            repo
        };
        self.fake.seed_source(&repo, "flows/flow.py", source).await;
        Some(Box::new((self.make)(&self.fake, &repo, "flows/flow.py")))
    }
    fn registry(&self) -> Registry {
        registry(self.secrets.clone())
    }
    /// A commit's content is fixed; changing the fake's bytes is covered by the pinned-digest tests.
    async fn tamper(
        &self,
        _r: &flowstore_core::StorageReference,
        _f: &str,
        _b: bytes::Bytes,
    ) -> bool {
        false
    }
}
