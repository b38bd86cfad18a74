//! Git storage against real git servers on 127.0.0.1, started by `cargo xtask test`: `git daemon`
//! (`FLOWSTORE_TEST_GIT_DAEMON`) and smart HTTP through `git http-backend` behind nginx with basic
//! auth (`FLOWSTORE_TEST_GIT_HTTP`, user/token in `FLOWSTORE_TEST_GIT_USER`/`_TOKEN`), serving the
//! bare repositories the tests create under `FLOWSTORE_TEST_GIT_ROOT`.

#[macro_use]
mod git_support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::bundle::{FetchOptions, FileMode};
use flowstore_core::testkit::{skip, Harness, HarnessResult, Skip};
use flowstore_core::{
    Error, FlowContent, FlowInput, OpenContext, Registry, Storage, StorageReference,
};
use flowstore_git::git::{Git, GitBuilder, Progress};
use flowstore_secrets::test_support::{assert_secret_absent, capture_logs};
use flowstore_secrets::MapSource;
use git_support::{env, git, source, Env, TestRepo};

fn registry(secrets: Arc<MapSource>) -> Registry {
    let mut r = Registry::new().with_secrets(secrets);
    flowstore_git::register(&mut r);
    r
}

async fn fetch_text(storage: &dyn Storage, name: &str) -> (String, String) {
    let f = storage
        .get_flow(name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (
        String::from_utf8_lossy(f.bytes()).into_owned(),
        f.revision.unwrap(),
    )
}

struct GitHarness {
    env: Env,
    cache: tempfile::TempDir,
    repos: std::sync::Mutex<Vec<TestRepo>>,
}

impl GitHarness {
    /// The repository a reference reads (by its `repo` field).
    fn repo_of(&self, reference: &StorageReference) -> Option<std::path::PathBuf> {
        let name = reference.fields["repo"].as_str()?;
        let repos = self.repos.lock().unwrap();
        repos
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.bare(&self.env))
    }
}

#[flowstore_core::async_trait]
impl Harness for GitHarness {
    async fn storage(&self) -> Option<Box<dyn Storage>> {
        None
    }

    async fn script_storage(&self, _flow: &str, source: &[u8]) -> Option<Box<dyn Storage>> {
        let repo = TestRepo::new(
            &self.env,
            &[("flows/flow.py", std::str::from_utf8(source).unwrap())],
        );
        let storage = repo
            .daemon(&self.env, "flows/flow.py", self.cache.path())
            .build()
            .unwrap();
        self.repos.lock().unwrap().push(repo);
        Some(Box::new(storage))
    }

    /// A fresh repository with each script committed at `flows/<index>.py` (names never become
    /// paths), a storage on branch `main` with `pin`, each flow added at its file and persisted:
    /// the commit and every file's digest are recorded.
    async fn script_flows(&self, flows: &[(&str, &[u8])]) -> Option<Box<dyn Storage>> {
        let paths: Vec<String> = (0..flows.len()).map(|i| format!("flows/{i}.py")).collect();
        let repo = TestRepo::new(&self.env, &[("README", "flows\n")]);
        let files: Vec<(&str, &[u8])> = paths
            .iter()
            .zip(flows)
            .map(|(p, (_, source))| (p.as_str(), *source))
            .collect();
        repo.commit_bytes(&files, "the flows");
        let mut storage = repo
            .daemon(&self.env, "flows/0.py", self.cache.path())
            .branch("main")
            .pin(true)
            .build()
            .unwrap();
        for ((name, _), path) in flows.iter().zip(&paths) {
            storage.add_flow_at(name, path).unwrap();
        }
        storage.persist().await.unwrap();
        self.repos.lock().unwrap().push(repo);
        Some(Box::new(storage))
    }

    /// A pinned registration is immune to new commits on its branch (that is what `pin` is for;
    /// see `a_pushed_edit_reaches_unpinned_fetches_but_not_pinned_ones`), so the script is
    /// changed where a pinned fetch still reads it: the server's copy of the file's blob is
    /// replaced with the new source, under the old object id (content addressing lets no honest
    /// git server do this). The agent's clone cache has never held this repository, so it
    /// fetches the altered object, and flowstore must refuse it.
    async fn alter_script(&self, reference: &StorageReference, flow: &str, source: &[u8]) -> bool {
        let (Some(bare), Some(path), Some(commit)) = (
            self.repo_of(reference),
            reference.flows.get(flow),
            reference.fields["commit"].as_str(),
        ) else {
            return false;
        };
        let blob = git(&bare, &["rev-parse", &format!("{commit}:{path}")]);
        let scratch = tempfile::tempdir().unwrap();
        git(scratch.path(), &["init", "-q"]);
        std::fs::write(scratch.path().join("new"), source).unwrap();
        let new = git(scratch.path(), &["hash-object", "-w", "new"]);
        let from = scratch
            .path()
            .join(".git/objects")
            .join(&new[..2])
            .join(&new[2..]);
        let object = bare.join("objects").join(&blob[..2]).join(&blob[2..]);
        if !object.exists() {
            return false; // packed: not altered in place here
        }
        std::fs::remove_file(&object).unwrap();
        std::fs::copy(from, &object).unwrap();
        true
    }

    /// A fresh repository with the files of `tree` that a bundle holds (what `bundle::scan`
    /// keeps: `git add` honouring the `.gitignore` and the `.flowstoreignore`) committed, with
    /// their modes, under `projects/app/`; a storage on branch `main` with `pin` (as
    /// `script_flows`), the bundle added as that directory and persisted: the commit and the
    /// manifest's digest are recorded.
    async fn bundle_flows(&self, name: &str, tree: &Path, entry: &str) -> Option<Box<dyn Storage>> {
        const DIR: &str = "projects/app";
        let scanned = flowstore_core::bundle::scan(tree, entry).expect("scan the tree");
        let files: Vec<(String, Vec<u8>, bool)> = scanned
            .files
            .iter()
            .map(|f| {
                (
                    format!("{DIR}/{}", f.file.path),
                    std::fs::read(&f.source).unwrap(),
                    f.file.mode == FileMode::Executable,
                )
            })
            .collect();
        let repo = TestRepo::new(&self.env, &[("README", "bundles\n")]);
        repo.commit_files(&files, "the bundle");
        let mut storage = repo
            .daemon(&self.env, &format!("{DIR}/{entry}"), self.cache.path())
            .branch("main")
            .pin(true)
            .build()
            .unwrap();
        storage
            .add_flow(FlowInput::bundle(name, DIR, entry))
            .await
            .unwrap();
        storage.persist().await.unwrap();
        self.repos.lock().unwrap().push(repo);
        Some(Box::new(storage))
    }

    fn registry(&self) -> Registry {
        registry(Arc::new(MapSource::new()))
    }

    /// A commit's content cannot be altered in place (content addressing).
    async fn tamper(&self, _reference: &StorageReference, _flow: &str, _bytes: Bytes) -> bool {
        false
    }
}

async fn harness() -> HarnessResult<GitHarness> {
    Ok(GitHarness {
        env: env()?,
        cache: tempfile::tempdir().unwrap(),
        repos: Default::default(),
    })
}

flowstore_core::conformance_suite!(harness);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_tag_and_exact_commit() {
    let e = need_servers!("branch_tag_and_exact_commit");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("F v1"))]);
    let first = git(repo.work.path(), &["rev-parse", "HEAD"]);
    git(repo.work.path(), &["tag", "v1"]);
    git(repo.work.path(), &["push", "-q", "origin", "v1"]);
    let second = repo.commit(&[("flow.py", &source("F v2"))], "second");
    git(repo.work.path(), &["checkout", "-q", "-b", "release/2.0"]);
    let third = repo.commit(&[("flow.py", &source("F v3"))], "third");

    for (storage, want_text, want_sha) in [
        (repo.daemon(&e, "flow.py", cache.path()), "F v2", &second),
        (
            repo.daemon(&e, "flow.py", cache.path()).branch("main"),
            "F v2",
            &second,
        ),
        (
            repo.daemon(&e, "flow.py", cache.path())
                .branch("release/2.0"),
            "F v3",
            &third,
        ),
        (
            repo.daemon(&e, "flow.py", cache.path()).tag("v1"),
            "F v1",
            &first,
        ),
        (
            repo.daemon(&e, "flow.py", cache.path())
                .commit(first.clone()),
            "F v1",
            &first,
        ),
    ] {
        let mut s = storage.build().unwrap();
        s.add_flow(FlowInput::script("F")).await.unwrap();
        let (text, sha) = fetch_text(&s, "F").await;
        assert!(text.contains(want_text), "{want_text}: {text}");
        assert_eq!(&sha, want_sha);
    }
    let err = Git::builder("o/r", "f.py")
        .branch("a")
        .tag("b")
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Please provide only one of the following parameters: `branch_name`, `tag`, `commit`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_edit_reaches_unpinned_fetches_but_not_pinned_ones() {
    let e = need_servers!("a_pushed_edit_reaches_unpinned_fetches_but_not_pinned_ones");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("P"))]);
    let mut unpinned = repo
        .daemon(&e, "flow.py", cache.path())
        .branch("main")
        .build()
        .unwrap();
    unpinned.add_flow(FlowInput::script("P")).await.unwrap();
    unpinned.persist().await.unwrap();
    let mut pinned = repo
        .daemon(&e, "flow.py", cache.path())
        .branch("main")
        .pin(true)
        .build()
        .unwrap();
    pinned.add_flow(FlowInput::script("P")).await.unwrap();
    pinned.persist().await.unwrap();
    let pinned_ref = pinned.reference().unwrap();
    assert!(pinned_ref.fields["commit"].is_string() && pinned_ref.fields["pinned_from"] == "main");
    assert!(pinned_ref.flow_digests.contains_key("P"));

    repo.commit(
        &[("flow.py", &format!("{}# edited\n", source("P")))],
        "edit",
    );
    let r = registry(Arc::new(MapSource::new()));
    let (text, _) = fetch_text(&*r.open(&unpinned.reference().unwrap()).unwrap(), "P").await;
    assert!(text.contains("# edited"), "unpinned fetch missed the edit");
    let (text, sha) = fetch_text(&*r.open(&pinned_ref).unwrap(), "P").await;
    assert!(!text.contains("# edited"), "pinned fetch saw the edit");
    assert_eq!(sha, pinned_ref.fields["commit"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_can_read_files_beside_it() {
    let e = need_servers!("the_flow_can_read_files_beside_it");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(
        &e,
        &[
            ("flows/hello.py", &source("Hello")),
            ("flows/person.txt", "Marvin"),
        ],
    );
    let mut s = repo
        .daemon(&e, "flows/hello.py", cache.path())
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("Hello")).await.unwrap();
    let f = s.get_flow("Hello").await.unwrap();
    let FlowContent::Script {
        path: Some(path), ..
    } = &f.content
    else {
        panic!("{f:?}")
    };
    assert_eq!(
        std::fs::read_to_string(path.parent().unwrap().join("person.txt")).unwrap(),
        "Marvin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_over_smart_http_and_a_wrong_token_refused_without_echo() {
    let e = need_servers!("token_over_smart_http_and_a_wrong_token_refused_without_echo");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("H"))]);
    let good = Arc::new(MapSource::new().with("GIT_TEST_TOKEN", &e.token));
    let mut s = repo
        .http(&e, "flow.py", cache.path(), "GIT_TEST_TOKEN")
        .secrets(good.clone())
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("H")).await.unwrap();
    let reference = s.reference().unwrap();
    assert_secret_absent(&e.token, &reference.to_json(), "the reference");
    let (text, _) = fetch_text(&*registry(good).open(&reference).unwrap(), "H").await;
    assert!(text.contains("Flow(\"H\")"));

    let wrong = "wrong-t0ken-c4n4ry";
    let bad = Arc::new(MapSource::new().with("GIT_TEST_TOKEN", wrong));
    let agent = registry(bad).open(&reference).unwrap();
    let rt = tokio::runtime::Handle::current();
    let (result, logs) =
        capture_logs(|| tokio::task::block_in_place(|| rt.block_on(agent.get_flow("H"))));
    let err = result.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("authentication failed") || msg.contains("401"),
        "{msg}"
    );
    for (what, text) in [
        ("error", msg),
        ("Debug", format!("{err:?} {agent:?}")),
        ("logs", logs),
    ] {
        assert_secret_absent(wrong, &text, what);
    }
    // No token at all: a clear error, never `https://@host`.
    let mut none = Git::builder(format!("git/{}", repo.name), "flow.py")
        .host(&e.http)
        .scheme("http")
        .cache_dir(cache.path())
        .build()
        .unwrap();
    none.add_flow(FlowInput::script("H")).await.unwrap();
    let msg = none.get_flow("H").await.unwrap_err().to_string();
    assert!(msg.contains("none are configured"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_url_from_a_secret() {
    let e = need_servers!("clone_url_from_a_secret");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("U"))]);
    let url = format!(
        "http://{}:{}@{}/git/{}.git",
        e.user, e.token, e.http, repo.name
    );
    let secrets = Arc::new(MapSource::new().with("MY_REPO_CLONE_URL", &url));
    let mut s = GitBuilder::from_clone_url_secret("MY_REPO_CLONE_URL", "flow.py")
        .cache_dir(cache.path())
        .secrets(secrets)
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("U")).await.unwrap();
    let (text, _) = fetch_text(&s, "U").await;
    assert!(text.contains("\"U\""));
    assert_secret_absent(&e.token, &s.reference().unwrap().to_json(), "the reference");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hit_costs_no_transfer_and_a_new_commit_only_its_objects() {
    let e = need_servers!("cache_hit_costs_no_transfer_and_a_new_commit_only_its_objects");
    let cache = tempfile::tempdir().unwrap();
    let files: Vec<(String, String)> = (0..200)
        .map(|i| (format!("lib/m{i}.py"), format!("x = {i}\n")))
        .collect();
    let mut all: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let src = source("C");
    all.push(("flow.py", &src));
    let repo = TestRepo::new(&e, &all);
    let received = Arc::new(AtomicUsize::new(0));
    let r2 = received.clone();
    let hook: flowstore_git::git::ProgressHook =
        Arc::new(move |p: Progress| r2.store(p.received_objects, Ordering::SeqCst));
    let mut s = repo
        .daemon(&e, "flow.py", cache.path())
        .branch("main")
        .with_progress(hook)
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("C")).await.unwrap();

    s.get_flow("C").await.unwrap();
    let first = received.swap(0, Ordering::SeqCst);
    assert!(first > 200, "first fetch received {first} objects");
    s.get_flow("C").await.unwrap();
    let second = received.swap(0, Ordering::SeqCst);
    assert_eq!(second, 0, "an unchanged ref transferred {second} objects");
    repo.commit(&[("flow.py", &format!("{src}# v2\n"))], "v2");
    let (text, _) = fetch_text(&s, "C").await;
    assert!(text.contains("# v2"));
    let third = received.swap(0, Ordering::SeqCst);
    assert!(
        third > 0 && third < 10,
        "an incremental fetch received {third} objects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_fetches_of_one_repo_share_the_cache_safely() {
    let e = need_servers!("concurrent_fetches_of_one_repo_share_the_cache_safely");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("Z"))]);
    let mut s = repo.daemon(&e, "flow.py", cache.path()).build().unwrap();
    s.add_flow(FlowInput::script("Z")).await.unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get_flow("Z").await.map(|f| f.revision) })
        })
        .collect();
    let mut shas = Vec::new();
    for t in tasks {
        shas.push(t.await.unwrap().unwrap());
    }
    shas.dedup();
    assert_eq!(shas.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shallow_fetch_of_a_large_repository_skips_its_history() {
    let e = need_servers!("shallow_fetch_of_a_large_repository_skips_its_history");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("Big Repo"))]);
    // 3,000 files and 2,000 commits, generated with fast-import.
    let mut stream = String::new();
    for c in 0..2000 {
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter t <t@t> {} +0000\ndata 3\nc{:02}\n",
            1_700_000_000 + c,
            c % 100
        ));
        if c == 0 {
            stream.push_str("from refs/heads/main^0\n");
        }
        let files = if c == 0 { 3000 } else { 2 };
        for f in 0..files {
            let content = format!("v{c}-{f}\n");
            stream.push_str(&format!(
                "M 644 inline data/f{}.txt\ndata {}\n{content}\n",
                (f + c) % 3000,
                content.len()
            ));
        }
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(repo.work.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    git(repo.work.path(), &["push", "-q", "-f", "origin", "main"]);
    let total: usize = git(repo.work.path(), &["count-objects", "-v"])
        .lines()
        .filter_map(|l| {
            l.strip_prefix("in-pack: ")
                .or_else(|| l.strip_prefix("count: "))
        })
        .map(|n| n.parse::<usize>().unwrap())
        .sum();

    let received = Arc::new(AtomicUsize::new(0));
    let r2 = received.clone();
    let hook: flowstore_git::git::ProgressHook =
        Arc::new(move |p: Progress| r2.store(p.received_objects, Ordering::SeqCst));
    let mut s = repo
        .daemon(&e, "flow.py", cache.path())
        .with_progress(hook)
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("Big Repo")).await.unwrap();
    let t = std::time::Instant::now();
    s.get_flow("Big Repo").await.unwrap();
    let first = t.elapsed();
    let shallow = received.swap(0, Ordering::SeqCst);
    let t = std::time::Instant::now();
    s.get_flow("Big Repo").await.unwrap();
    let cached = t.elapsed();
    assert!(
        shallow < total / 2,
        "a depth-1 fetch received {shallow} of the repository's {total} objects"
    );
    eprintln!("large repo: {total} objects; first fetch {first:?} ({shallow} objects), cached fetch {cached:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_repo_ref_file_and_flow() {
    let e = need_servers!("errors_name_the_repo_ref_file_and_flow");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("E"))]);
    // (storage, flow, what is missing, text in the message, a lower error is kept)
    let cases: Vec<(GitBuilder, &str, &str, &str, bool)> = vec![
        (
            Git::builder("org/no-such-repo", "flow.py")
                .host(&e.daemon)
                .scheme("git")
                .cache_dir(cache.path()),
            "E",
            "repository",
            "no-such-repo",
            true,
        ),
        (
            Git::builder(
                format!("git/org/no-such-repo-{}", std::process::id()),
                "flow.py",
            )
            .host(&e.http)
            .scheme("http")
            .access_token(e.token.clone().into())
            .git_token_username(&e.user)
            .cache_dir(cache.path()),
            "E",
            "repository",
            "no-such-repo",
            true,
        ),
        (
            repo.daemon(&e, "flow.py", cache.path()).branch("nope"),
            "E",
            "ref",
            "Branch \"nope\" not found",
            false,
        ),
        (
            repo.daemon(&e, "flow.py", cache.path()).tag("v9"),
            "E",
            "ref",
            "Tag \"v9\" not found",
            false,
        ),
        (
            repo.daemon(&e, "missing.py", cache.path()),
            "E",
            "file",
            "File missing.py not found",
            true,
        ),
        (
            repo.daemon(&e, "flow.py", cache.path()),
            "Other Flow",
            "flow",
            "Flow \"Other Flow\" not found in file flow.py",
            false,
        ),
        (
            repo.daemon(&e, "flow.py", cache.path())
                .commit("0123456789012345678901234567890123456789"),
            "E",
            "ref",
            "Commit 0123456789012345678901234567890123456789 not found",
            false,
        ),
    ];
    for (s, name, what, needle, has_source) in cases {
        let mut s = s.build().unwrap();
        s.add_flow(FlowInput::script(name)).await.unwrap();
        let err = s.get_flow(name).await.unwrap_err();
        assert!(
            err.is_not_found() && !err.is_temporary(),
            "{needle}: {err:?}"
        );
        assert!(
            matches!(&err, Error::NotFound { what: w, .. } if *w == what),
            "{needle}: {err:?}"
        );
        assert!(err.to_string().contains(needle), "{needle}: {err}");
        if has_source {
            assert!(
                std::error::Error::source(&err).is_some(),
                "{needle}: no source in {err:?}"
            );
        }
    }
    // Refused credentials: PermissionDenied, the token never echoed, libgit2's error kept.
    let mut s = repo
        .http(&e, "flow.py", cache.path(), "T")
        .secrets(Arc::new(MapSource::new().with("T", "wrong-c4n4ry")))
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("E")).await.unwrap();
    let err = s.get_flow("E").await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    let source = std::error::Error::source(&err).expect("a lower error");
    assert!(source.downcast_ref::<flowstore_git::GitError>().is_some());
    assert_secret_absent(
        "wrong-c4n4ry",
        &format!("{err} {err:?} {source}"),
        "the error",
    );
    // Nobody listening: temporary.
    let mut s = Git::builder("org/x", "flow.py")
        .host("127.0.0.1:1")
        .scheme("git")
        .cache_dir(cache.path())
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("E")).await.unwrap();
    let err = s.get_flow("E").await.unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_storage_refuses_serialized_flows_and_holds_flows_of_several_files() {
    let e = need_servers!(
        "a_read_only_storage_refuses_serialized_flows_and_holds_flows_of_several_files"
    );
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(
        &e,
        &[("a/one.py", &source("One")), ("b/two.py", &source("Two"))],
    );
    let mut s = repo
        .daemon(&e, "a/one.py", cache.path())
        .pin(true)
        .build()
        .unwrap();
    let sealed = flowstore_core::envelope::seal_bytes(
        "serialized",
        b"x",
        &flowstore_core::AppInfo::new("t", "1"),
    );
    let err = s.add_flow(sealed.into()).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(!s.capabilities().write && s.capabilities().many_flows);
    s.add_flow(FlowInput::script("One")).await.unwrap();
    s.add_flow_at("Two", "b/two.py").unwrap();
    assert!(s.add_flow_at("Three", "../x.py").is_err());
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    assert_eq!(reference.flows["Two"], "b/two.py");
    assert_eq!(reference.flow_digests.len(), 2);
    let agent = registry(Arc::new(MapSource::new()))
        .open(&reference)
        .unwrap();
    for name in ["One", "Two"] {
        let (text, _) = fetch_text(&*agent, name).await;
        assert_eq!(text, source(name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_token_is_used_and_never_recorded() {
    let e = need_servers!("a_typed_token_is_used_and_never_recorded");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("K"))]);
    let builder = Git::builder(format!("git/{}", repo.name), "flow.py")
        .host(&e.http)
        .scheme("http")
        .git_token_username(&e.user)
        .access_token(e.token.clone().into())
        .cache_dir(cache.path());
    assert_secret_absent(&e.token, &format!("{builder:?}"), "the builder's Debug");
    let mut s = builder.build().unwrap();
    assert_secret_absent(&e.token, &format!("{s:?}"), "the storage's Debug");
    s.add_flow(FlowInput::script("K")).await.unwrap();
    let (text, _) = fetch_text(&s, "K").await;
    assert!(text.contains("\"K\""));
    assert_secret_absent(&e.token, &s.reference().unwrap().to_json(), "the reference");
    // The same in a URL's password.
    let url = format!(
        "git+http://{}:{}@{}/git/{}.git?label=x#branch=main",
        e.user, e.token, e.http, repo.name
    );
    let mut s = GitBuilder::from_url(&url)
        .unwrap()
        .flow_path("flow.py")
        .cache_dir(cache.path())
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("K")).await.unwrap();
    fetch_text(&s, "K").await;
    let json = s.reference().unwrap().to_json();
    assert_secret_absent(&e.token, &json, "the reference of a URL with a password");
    assert_eq!(
        s.config().git_token_username.as_deref(),
        Some(e.user.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_urls_open_through_the_registry() {
    let e = need_servers!("git_urls_open_through_the_registry");
    let repo = TestRepo::new(&e, &[("flows/x.py", &source("X"))]);
    let r = registry(Arc::new(MapSource::new()));
    let url = format!("git://{}/{}.git#branch=main&pin=true", e.daemon, repo.name);
    let mut s = r.open_url_script(&url, "flows/x.py").unwrap();
    s.add_flow(FlowInput::script("X")).await.unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    assert_eq!(reference.type_name, "Git");
    assert_eq!(reference.fields["repo_host"], e.daemon.as_str());
    let f = r.open(&reference).unwrap().get_flow("X").await.unwrap();
    assert_eq!(f.revision.as_deref(), reference.fields["commit"].as_str());
    assert!(r
        .open_url_script("git+https://h/o/r.git#nope=1", "f.py")
        .is_err());
    let _ = OpenContext::default();
}

struct Ssh {
    host: String,
    user: String,
    key: String,
    known_hosts: String,
}

fn ssh_env() -> Result<Ssh, Skip> {
    let get = |k: &str| {
        std::env::var(k).map_err(|_| {
            Skip(format!(
                "{k} is not set: sshd is not running (cargo xtask test starts it)"
            ))
        })
    };
    Ok(Ssh {
        host: get("FLOWSTORE_TEST_GIT_SSH")?,
        user: get("FLOWSTORE_TEST_GIT_SSH_USER")?,
        key: get("FLOWSTORE_TEST_GIT_SSH_KEY")?,
        known_hosts: get("FLOWSTORE_TEST_GIT_KNOWN_HOSTS")?,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_with_a_key_and_known_hosts_checking() {
    let (e, ssh) = match (env(), ssh_env()) {
        (Ok(e), Ok(s)) => (e, s),
        (Err(r), _) | (_, Err(r)) => return skip("ssh_with_a_key_and_known_hosts_checking", &r),
    };
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("S"))]);
    // ssh://user@host:port/<absolute path of the bare repository>.git
    let path = e.root.join(&repo.name);
    let repo_path = path.to_str().unwrap().trim_start_matches('/');
    let make = |known_hosts: &str| {
        Git::builder(repo_path, "flow.py")
            .host(&ssh.host)
            .ssh(
                &ssh.user,
                Some(ssh.key.clone()),
                Some(known_hosts.to_string()),
            )
            .cache_dir(cache.path())
    };
    let mut s = make(&ssh.known_hosts).build().unwrap();
    s.add_flow(FlowInput::script("S")).await.unwrap();
    let (text, _) = fetch_text(&s, "S").await;
    assert!(text.contains("Flow(\"S\")"));

    // A host missing from known_hosts is refused, unless the storage opts out.
    let empty = cache.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let fresh_cache = tempfile::tempdir().unwrap();
    let mut s = make(empty.to_str().unwrap())
        .cache_dir(fresh_cache.path())
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("S")).await.unwrap();
    let msg = s.get_flow("S").await.unwrap_err().to_string();
    assert!(
        msg.contains("is not in") && msg.contains("ssh-keyscan"),
        "{msg}"
    );
    let mut s = make(empty.to_str().unwrap())
        .cache_dir(fresh_cache.path())
        .ssh_accept_unknown_host(true)
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("S")).await.unwrap();
    s.get_flow("S").await.unwrap();

    // A changed key is refused even with the opt-out for unknown hosts.
    let other = cache.path().join("other_known_hosts");
    let port = ssh.host.rsplit(':').next().unwrap();
    std::fs::write(&other, format!("[127.0.0.1]:{port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBogusBogusBogusBogusBogusBogusBogusBogusBog\n")).unwrap();
    let mut s = make(other.to_str().unwrap())
        .cache_dir(tempfile::tempdir().unwrap().path())
        .ssh_accept_unknown_host(true)
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("S")).await.unwrap();
    let msg = s.get_flow("S").await.unwrap_err().to_string();
    assert!(msg.contains("does not match"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_checkout_writes_only_the_flow_directory_and_listed_paths() {
    let e = need_servers!("sparse_checkout_writes_only_the_flow_directory_and_listed_paths");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(
        &e,
        &[
            ("flows/f.py", &source("Sp")),
            ("flows/data.csv", "a,b"),
            ("shared/util.py", "u = 1"),
            ("big/blob.bin", "x"),
        ],
    );
    let mut s = repo
        .daemon(&e, "flows/f.py", cache.path())
        .sparse_paths(vec!["shared/".into()])
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("Sp")).await.unwrap();
    let f = s.get_flow("Sp").await.unwrap();
    let FlowContent::Script {
        path: Some(path), ..
    } = &f.content
    else {
        panic!()
    };
    let root = path.parent().unwrap().parent().unwrap();
    assert!(root.join("flows/data.csv").exists() && root.join("shared/util.py").exists());
    assert!(
        !root.join("big/blob.bin").exists(),
        "a path outside the sparse set was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submodules_on_request() {
    let e = need_servers!("submodules_on_request");
    let cache = tempfile::tempdir().unwrap();
    let lib = TestRepo::new(&e, &[("helpers.py", "def help(): pass\n")]);
    // A link out of the repository stays a link: its target's content is never copied in.
    std::os::unix::fs::symlink("/etc/hostname", lib.work.path().join("outside")).unwrap();
    lib.commit(&[], "a link out");
    let app = TestRepo::new(&e, &[("flow.py", &source("Sub"))]);
    let lib_url = format!("git://{}/{}.git", e.daemon, lib.name);
    add_submodule(&app, &lib_url, "vendor/lib");
    app.commit(&[], "add submodule");

    let mut without = app.daemon(&e, "flow.py", cache.path()).build().unwrap();
    without.add_flow(FlowInput::script("Sub")).await.unwrap();
    let f = without.get_flow("Sub").await.unwrap();
    let FlowContent::Script { path: Some(p), .. } = &f.content else {
        panic!()
    };
    assert!(!p.parent().unwrap().join("vendor/lib/helpers.py").exists());

    let mut with = app
        .daemon(&e, "flow.py", cache.path())
        .submodules(true)
        .build()
        .unwrap();
    with.add_flow(FlowInput::script("Sub")).await.unwrap();
    let f = with.get_flow("Sub").await.unwrap();
    let FlowContent::Script { path: Some(p), .. } = &f.content else {
        panic!()
    };
    assert_eq!(
        std::fs::read_to_string(p.parent().unwrap().join("vendor/lib/helpers.py")).unwrap(),
        "def help(): pass\n"
    );
    let link = p.parent().unwrap().join("vendor/lib/outside");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("/etc/hostname")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_path_that_links_out_of_the_checkout_is_refused() {
    let e = need_servers!("a_flow_path_that_links_out_of_the_checkout_is_refused");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("README", "x")]);
    std::os::unix::fs::symlink("/etc/hostname", repo.work.path().join("flow.py")).unwrap();
    repo.commit(&[], "a link out");
    let mut s = repo.daemon(&e, "flow.py", cache.path()).build().unwrap();
    s.add_flow(FlowInput::script("hostname")).await.unwrap();
    let err = s.get_flow("hostname").await.unwrap_err();
    assert!(matches!(err, Error::OutsideStorage { .. }), "{err:?}");
}

/// What a bundle's files should be: path → (bytes, executable).
type Files = std::collections::BTreeMap<String, (Vec<u8>, bool)>;

fn files(list: &[(&str, &str, bool)]) -> Files {
    list.iter()
        .map(|(p, c, x)| (p.to_string(), (c.as_bytes().to_vec(), *x)))
        .collect()
}

/// Commits `files` under `dir` (`""`: the root).
fn commit_under(repo: &TestRepo, dir: &str, files: &Files, msg: &str) -> String {
    let list: Vec<(String, Vec<u8>, bool)> = files
        .iter()
        .map(|(p, (c, x))| {
            let path = if dir.is_empty() {
                p.clone()
            } else {
                format!("{dir}/{p}")
            };
            (path, c.clone(), *x)
        })
        .collect();
    repo.commit_files(&list, msg)
}

/// The manifest lists exactly `files`, with their digests and modes.
fn assert_manifest(manifest: &flowstore_core::bundle::Manifest, files: &Files) {
    let listed: Vec<&str> = manifest.files().iter().map(|f| f.path.as_str()).collect();
    let wanted: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(listed, wanted);
    for f in manifest.files() {
        let (bytes, exec) = &files[&f.path];
        assert_eq!(
            f.digest,
            flowstore_core::envelope::sha256_digest(bytes),
            "{}",
            f.path
        );
        assert_eq!(f.size, bytes.len() as u64, "{}", f.path);
        let mode = if *exec {
            FileMode::Executable
        } else {
            FileMode::Regular
        };
        assert_eq!(f.mode, mode, "{}", f.path);
    }
}

/// The materialized tree holds exactly `files`, with their bytes and modes.
fn assert_tree(root: &Path, files: &Files) {
    use std::os::unix::fs::PermissionsExt;
    for (path, (bytes, exec)) in files {
        let p = root.join(path);
        assert_eq!(&std::fs::read(&p).unwrap(), bytes, "{path}");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o111 != 0, *exec, "{path}: {mode:o}");
    }
}

fn manifest_of(flow: &flowstore_core::FetchedFlow) -> &flowstore_core::bundle::Manifest {
    match &flow.content {
        FlowContent::Bundle(m) => m,
        other => panic!("expected a bundle, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_at_the_repository_root_follows_its_branch_and_reuses_the_blob_cache() {
    let e = need_servers!(
        "a_bundle_at_the_repository_root_follows_its_branch_and_reuses_the_blob_cache"
    );
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let blobs = FetchOptions::with_cache_dir(work.path().join("blobs"));
    let mut v1 = files(&[
        ("README", "root bundle\n", false),
        ("flow.py", &source("Root"), false),
        ("lib/helpers.py", "X = 1\n", false),
        ("lib/same.txt", "X = 1\n", false),
        ("bin/run.sh", "#!/bin/sh\nexec python flow.py\n", true),
    ]);
    let repo = TestRepo::new(&e, &[("README", "root bundle\n")]);
    commit_under(&repo, "", &v1, "the project");
    let mut s = repo
        .daemon(&e, "flow.py", cache.path())
        .branch("main")
        .build()
        .unwrap();
    let location = s
        .add_flow(FlowInput::bundle("Root", ".", "flow.py"))
        .await
        .unwrap();
    assert_eq!(location, "bundle:.//flow.py");
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    assert!(reference.flow_digests.is_empty(), "unpinned: no digest");
    let agent = registry(Arc::new(MapSource::new()))
        .open(&reference)
        .unwrap();
    assert!(agent.capabilities().bundles);

    let flow = agent.get_flow("Root").await.unwrap();
    assert_eq!(flow.form(), "bundle");
    assert_eq!(manifest_of(&flow).entry(), "flow.py");
    assert_manifest(manifest_of(&flow), &v1);
    let first_commit = flow.revision.clone().unwrap();

    let dest = work.path().join("checkout");
    let fetched = agent.get_bundle("Root", &dest, &blobs).await.unwrap();
    assert_tree(&dest, &v1);
    assert_eq!(fetched.entry, dest.join("flow.py"));
    // Five files, four distinct blobs (two files share their bytes).
    assert_eq!(
        (fetched.transfer.objects, fetched.transfer.reused_objects),
        (4, 0)
    );
    let again = agent.get_bundle("Root", &dest, &blobs).await.unwrap();
    assert_eq!(
        (again.transfer.objects, again.transfer.reused_objects),
        (0, 4)
    );
    assert_tree(&dest, &v1);

    // A push reaches the unpinned bundle; only the changed file is written to the blob cache.
    v1.insert("lib/helpers.py".into(), (b"X = 2\n".to_vec(), false));
    let second_commit = commit_under(&repo, "", &v1, "v2");
    let flow = agent.get_flow("Root").await.unwrap();
    assert_eq!(flow.revision.as_deref(), Some(second_commit.as_str()));
    assert_ne!(second_commit, first_commit);
    let newer = agent.get_bundle("Root", &dest, &blobs).await.unwrap();
    assert_eq!(newer.transfer.objects, 1, "{:?}", newer.transfer);
    assert_eq!(newer.transfer.bytes, 6, "{:?}", newer.transfer);
    assert_tree(&dest, &v1);
    assert_manifest(&newer.manifest, &v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_bundle_whose_tree_changed_on_its_branch_is_refused() {
    let e = need_servers!("a_pinned_bundle_whose_tree_changed_on_its_branch_is_refused");
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let v1 = files(&[
        ("flow.py", &source("Pinned"), false),
        ("lib.py", "VALUE = 'registered'\n", false),
    ]);
    let repo = TestRepo::new(&e, &[("README", "x\n")]);
    commit_under(&repo, "proj", &v1, "the project");
    let mut s = repo
        .daemon(&e, "proj/flow.py", cache.path())
        .branch("main")
        .pin(true)
        .build()
        .unwrap();
    s.add_flow(FlowInput::bundle("Pinned", "proj", "flow.py"))
        .await
        .unwrap();
    s.persist().await.unwrap();
    let pinned = s.reference().unwrap();
    assert_eq!(pinned.fields["pinned_from"], "main");
    let recorded = pinned.flow_digests["Pinned"].clone();

    let mut v2 = v1.clone();
    v2.insert("lib.py".into(), (b"VALUE = 'changed'\n".to_vec(), false));
    commit_under(&repo, "proj", &v2, "changed behind flowstore's back");

    // The pinned reference still gets the registered tree.
    let r = registry(Arc::new(MapSource::new()));
    let agent = r.open(&pinned).unwrap();
    let flow = agent.get_flow("Pinned").await.unwrap();
    assert_eq!(manifest_of(&flow).digest(), recorded);
    let fetched = agent
        .get_bundle(
            "Pinned",
            &work.path().join("pinned"),
            &FetchOptions::with_cache_dir(work.path().join("blobs")),
        )
        .await
        .unwrap();
    assert_tree(&fetched.root, &v1);

    // The same reference made to follow its branch again: the tree there is not the registered
    // one, and the recorded manifest digest refuses it.
    let mut following = pinned.clone();
    following.fields.remove("commit");
    following.fields.insert("branch_name".into(), "main".into());
    let agent = r.open(&following).unwrap();
    let err = agent.get_flow("Pinned").await.unwrap_err();
    assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("\"Pinned\""), "{err}");
    assert!(err.to_string().contains("proj"), "{err}");
    let dest = work.path().join("refused");
    let err = agent
        .get_bundle(
            "Pinned",
            &dest,
            &FetchOptions::with_cache_dir(work.path().join("blobs")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
    assert!(!dest.exists(), "a refused bundle was materialized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_bundle_whose_blob_the_server_altered_is_refused() {
    let e = need_servers!("a_pinned_bundle_whose_blob_the_server_altered_is_refused");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("README", "x\n")]);
    let v1 = files(&[
        ("flow.py", &source("Altered"), false),
        ("lib.py", "VALUE = 'registered'\n", false),
    ]);
    let commit = commit_under(&repo, "proj", &v1, "the project");
    let mut s = repo
        .daemon(&e, "proj/flow.py", cache.path())
        .pin(true)
        .build()
        .unwrap();
    s.add_flow(FlowInput::bundle("Altered", "proj", "flow.py"))
        .await
        .unwrap();
    s.persist().await.unwrap();
    // The server's copy of lib.py's blob replaced under its id (no honest server does this).
    let bare = repo.bare(&e);
    let blob = git(&bare, &["rev-parse", &format!("{commit}:proj/lib.py")]);
    let object = bare.join("objects").join(&blob[..2]).join(&blob[2..]);
    if !object.exists() {
        return eprintln!("the blob is packed on the server: nothing to alter in place");
    }
    let scratch = tempfile::tempdir().unwrap();
    git(scratch.path(), &["init", "-q"]);
    std::fs::write(scratch.path().join("new"), "import os; os.system('evil')\n").unwrap();
    let new = git(scratch.path(), &["hash-object", "-w", "new"]);
    std::fs::remove_file(&object).unwrap();
    std::fs::copy(
        scratch
            .path()
            .join(".git/objects")
            .join(&new[..2])
            .join(&new[2..]),
        &object,
    )
    .unwrap();
    // An agent whose clone cache (the process's default) never held the repository.
    let reference = s.reference().unwrap();
    assert_eq!(reference.fields["commit"], commit.as_str());
    let agent = registry(Arc::new(MapSource::new()))
        .open(&reference)
        .unwrap();
    let err = agent.get_flow("Altered").await.unwrap_err();
    assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("\"Altered\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_and_submodules_in_a_bundle_are_refused_naming_them() {
    let e = need_servers!("symlinks_and_submodules_in_a_bundle_are_refused_naming_them");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(
        &e,
        &[
            ("linked/flow.py", &source("Linked")),
            ("clean/flow.py", &source("Clean")),
        ],
    );
    std::os::unix::fs::symlink("flow.py", repo.work.path().join("linked/alias.py")).unwrap();
    // A link elsewhere in the repository does not concern a bundle of another directory.
    std::os::unix::fs::symlink("/etc/hostname", repo.work.path().join("outside")).unwrap();
    repo.commit(&[], "links");
    let lib = TestRepo::new(&e, &[("helpers.py", "def help(): pass\n")]);
    let lib_url = format!("git://{}/{}.git", e.daemon, lib.name);
    add_submodule(&repo, &lib_url, "vendored/vendor/lib");
    repo.commit(&[("vendored/flow.py", &source("Vendored"))], "a submodule");

    let mut s = repo
        .daemon(&e, "clean/flow.py", cache.path())
        .branch("main")
        .build()
        .unwrap();
    for (name, dir) in [
        ("Linked", "linked"),
        ("Vendored", "vendored"),
        ("Clean", "clean"),
    ] {
        s.add_flow(FlowInput::bundle(name, dir, "flow.py"))
            .await
            .unwrap();
    }
    let err = s.get_flow("Linked").await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        msg.contains("\"Linked\"") && msg.contains("linked/alias.py"),
        "{msg}"
    );
    assert!(msg.contains("symbolic link"), "{msg}");
    let err = s.get_flow("Vendored").await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        msg.contains("\"Vendored\"") && msg.contains("vendored/vendor/lib"),
        "{msg}"
    );
    assert!(msg.contains("submodule"), "{msg}");
    let dest = cache.path().join("never");
    let err = s
        .get_bundle(
            "Linked",
            &dest,
            &FetchOptions::with_cache_dir(cache.path().join("b")),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("linked/alias.py"), "{err}");
    assert!(!dest.exists());
    let clean = s.get_flow("Clean").await.unwrap();
    assert_manifest(
        manifest_of(&clean),
        &files(&[("flow.py", &source("Clean"), false)]),
    );

    // Pinning refuses them too, naming them.
    let mut pinned = repo
        .daemon(&e, "clean/flow.py", cache.path())
        .pin(true)
        .build()
        .unwrap();
    pinned
        .add_flow(FlowInput::bundle("Linked", "linked", "flow.py"))
        .await
        .unwrap();
    let err = pinned.persist().await.unwrap_err();
    assert!(err.to_string().contains("linked/alias.py"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_and_scripts_pin_one_commit_and_errors_name_the_directory_and_entry() {
    let e =
        need_servers!("bundles_and_scripts_pin_one_commit_and_errors_name_the_directory_and_entry");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(
        &e,
        &[
            ("scripts/etl.py", &source("Script")),
            ("app/main.py", &source("App")),
            ("app/README", "a file, not a directory\n"),
        ],
    );
    let mut s = repo
        .daemon(&e, "scripts/etl.py", cache.path())
        .branch("main")
        .pin(true)
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("Script")).await.unwrap();
    s.add_flow(FlowInput::bundle("App", "app", "main.py"))
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    assert_eq!(reference.flow_digests.len(), 2, "{reference:?}");
    let agent = registry(Arc::new(MapSource::new()))
        .open(&reference)
        .unwrap();
    let script = agent.get_flow("Script").await.unwrap();
    let app = agent.get_flow("App").await.unwrap();
    assert_eq!(script.revision, app.revision);
    assert_eq!(app.revision.as_deref(), reference.fields["commit"].as_str());
    let err = agent
        .get_bundle(
            "Script",
            &cache.path().join("x"),
            &FetchOptions::with_cache_dir(cache.path().join("b")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");

    for (name, dir, entry, what, needle) in [
        (
            "No dir",
            "nowhere",
            "main.py",
            "directory",
            "directory nowhere",
        ),
        (
            "No entry",
            "app",
            "missing.py",
            "file",
            "entry file missing.py",
        ),
    ] {
        let mut s = repo
            .daemon(&e, "scripts/etl.py", cache.path())
            .build()
            .unwrap();
        s.add_flow(FlowInput::bundle(name, dir, entry))
            .await
            .unwrap();
        let err = s.get_flow(name).await.unwrap_err();
        assert!(
            matches!(&err, Error::NotFound { what: w, .. } if *w == what),
            "{err:?}"
        );
        assert!(err.to_string().contains(needle), "{err}");
        assert!(err.to_string().contains(&format!("\"{name}\"")), "{err}");
    }
    let mut s = repo
        .daemon(&e, "scripts/etl.py", cache.path())
        .build()
        .unwrap();
    s.add_flow(FlowInput::bundle("Not a dir", "app/README", "x.py"))
        .await
        .unwrap();
    let err = s.get_flow("Not a dir").await.unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

/// `git submodule add` of `url` at `path` in `repo`'s work tree (file transport allowed).
fn add_submodule(repo: &TestRepo, url: &str, path: &str) {
    let out = Command::new("git")
        .args([
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            url,
            path,
        ])
        .current_dir(repo.work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
