//! The git clone cache heals itself, against the real git daemon started by `cargo xtask test`:
//! lock files a killed libgit2 leaves behind, a broken clone, altered bytes in a checkout (the
//! flow file, a file beside it, an added file), a corrupt pack or index — each ends in the right
//! flow (or a clear refusal), never an altered flow, and a later fetch that heals. Objects the
//! *server* serves wrong are refused as corrupt, naming the server. The cache stays bounded under
//! concurrent fetches. (Kills at the exact lock points, with strace, are in the CLI's
//! `git_cache_kills` tests.)

#[macro_use]
mod git_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flowstore_core::testkit::skip;
use flowstore_core::{Error, FlowInput, Storage};
use flowstore_git::git::{CachePolicy, GcReport, Git, GitBuilder, GitCache};
use git_support::{env, git, source, Env, TestRepo};

/// A cache that is never trimmed while a test inspects it.
fn unbounded() -> CachePolicy {
    CachePolicy {
        max_size: None,
        max_age: None,
        keep_recent: Duration::ZERO,
    }
}

fn storage(repo: &TestRepo, e: &Env, flow_path: &str, cache: &Path) -> GitBuilder {
    repo.daemon(e, flow_path, cache).cache_policy(unbounded())
}

async fn fetch(s: &Git, name: &str) -> Result<String, Error> {
    let f = s.get_flow(name).await?;
    Ok(String::from_utf8(f.bytes().to_vec()).unwrap())
}

/// Trims the cache once no entry is in use, waiting up to 10 s for one to be released.
///
/// Every fetch of these tests has returned when this runs, so a lock still held is held by a
/// child process that another test of this binary started (`git` for a commit) between this
/// test opening a lock file and closing it: the child shares the open file, and its lock, until
/// it executes `git` a moment later. A lock held by flowstore itself would outlast the wait and
/// fail the test.
fn gc_once_idle(cache: &GitCache) -> GcReport {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.status().unwrap().iter().any(|e| e.entry.in_use)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    cache.gc().unwrap()
}

/// The paths of the cache's entries of a kind (`clone` or `checkout`).
fn entries(cache: &Path, kind: &str) -> Vec<PathBuf> {
    GitCache::new(cache)
        .status()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.entry.path)
        .collect()
}

/// The directory of a fetched script flow's file in the checkout.
fn flow_dir(f: &flowstore_core::FetchedFlow) -> PathBuf {
    match &f.content {
        flowstore_core::FlowContent::Script {
            path: Some(path), ..
        } => path.parent().unwrap().to_path_buf(),
        other => panic!("not a script in a checkout: {other:?}"),
    }
}

fn only(cache: &Path, kind: &str) -> PathBuf {
    let found = entries(cache, kind);
    assert_eq!(found.len(), 1, "{kind} entries: {found:?}");
    found.into_iter().next().unwrap()
}

/// A repository of `files`, a fresh cache, and the storage of flow `name` at `flow_path` on
/// branch `main`, fetched once (so the cache holds its clone and checkout).
struct Fetched {
    cache: tempfile::TempDir,
    repo: TestRepo,
    storage: Git,
}

async fn fetched_once(e: &Env, files: &[(&str, &str)], flow_path: &str, name: &str) -> Fetched {
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(e, files);
    let mut storage = storage(&repo, e, flow_path, cache.path())
        .branch("main")
        .build()
        .unwrap();
    storage.add_flow(FlowInput::script(name)).await.unwrap();
    fetch(&storage, name).await.unwrap();
    Fetched {
        cache,
        repo,
        storage,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_files_left_by_a_killed_fetch_are_cleared() {
    let e = need_servers!("lock_files_left_by_a_killed_fetch_are_cleared");
    let Fetched {
        cache,
        repo,
        storage: s,
    } = fetched_once(&e, &[("flow.py", &source("L"))], "flow.py", "L").await;

    // What libgit2 leaves when killed holding its O_EXCL locks.
    let bare = only(cache.path(), "clone").join("repo.git");
    let locks = [
        "shallow.lock",
        "refs/flowstore/heads/main.lock",
        "config.lock",
        "HEAD.lock",
        "packed-refs.lock",
    ];
    for lock in locks {
        std::fs::write(bare.join(lock), "left by a killed fetch").unwrap();
    }
    // A new commit: the fetch must update the shallow file and the branch's ref.
    let v2 = format!("{}# v2\n", source("L"));
    repo.commit(&[("flow.py", &v2)], "v2");
    assert_eq!(fetch(&s, "L").await.unwrap(), v2);
    for lock in locks {
        assert!(!bare.join(lock).exists(), "{lock} is still there");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_clone_is_discarded_and_fetched_again() {
    let e = need_servers!("a_broken_clone_is_discarded_and_fetched_again");
    let Fetched {
        cache,
        repo,
        storage: s,
    } = fetched_once(&e, &[("flow.py", &source("B"))], "flow.py", "B").await;
    let bare = only(cache.path(), "clone").join("repo.git");

    // A ref that is not a ref, then a repository that is not a repository.
    let v2 = format!("{}# v2\n", source("B"));
    repo.commit(&[("flow.py", &v2)], "v2");
    std::fs::write(bare.join("refs/flowstore/heads/main"), "not a sha\n").unwrap();
    assert_eq!(fetch(&s, "B").await.unwrap(), v2);

    let v3 = format!("{}# v3\n", source("B"));
    repo.commit(&[("flow.py", &v3)], "v3");
    std::fs::write(bare.join("HEAD"), "garbage").unwrap();
    std::fs::remove_dir_all(bare.join("objects")).unwrap();
    assert_eq!(fetch(&s, "B").await.unwrap(), v3);
}

/// Alters the cached checkout with `tamper`, then checks the next fetch returns the commit's
/// flow and restores the checkout.
async fn checkout_tamper_case(name: &str, tamper: impl Fn(&Path)) {
    let e = match env() {
        Ok(e) => e,
        Err(reason) => return skip(name, &reason),
    };
    let flow = source("T");
    let files = [
        ("flows/flow.py", flow.as_str()),
        ("flows/sql/q.sql", "select 1;\n"),
    ];
    let Fetched {
        cache,
        repo,
        storage: s,
    } = fetched_once(&e, &files, "flows/flow.py", "T").await;
    let tree = only(cache.path(), "checkout").join("tree");

    tamper(&tree);
    let got = s
        .get_flow("T")
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        got.bytes(),
        flow.as_bytes(),
        "{name}: an altered flow was returned"
    );
    let dir = flow_dir(&got);
    assert_eq!(
        std::fs::read_to_string(dir.join("sql/q.sql")).unwrap(),
        "select 1;\n",
        "{name}: the file beside the flow was not restored"
    );
    assert!(
        !dir.join("planted.py").exists(),
        "{name}: an added file stayed"
    );
    // Pinning now records the commit's digest, not the altered file's.
    tamper(&tree);
    let mut pinned = storage(&repo, &e, "flows/flow.py", cache.path())
        .branch("main")
        .pin(true)
        .build()
        .unwrap();
    pinned.add_flow(FlowInput::script("T")).await.unwrap();
    pinned.persist().await.unwrap();
    let reference = pinned.reference().unwrap();
    assert_eq!(
        reference.flow_digests["T"],
        flowstore_core::envelope::sha256_digest(flow.as_bytes()),
        "{name}: pinning recorded an altered file"
    );
    assert_eq!(fetch(&pinned, "T").await.unwrap(), flow, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_flow_file_in_the_checkout_is_never_returned() {
    checkout_tamper_case(
        "an_altered_flow_file_in_the_checkout_is_never_returned",
        |tree| {
            let p = tree.join("flows/flow.py");
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[0] ^= 0x20; // same size, one byte
            std::fs::write(&p, bytes).unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_file_beside_the_flow_is_restored() {
    checkout_tamper_case("an_altered_file_beside_the_flow_is_restored", |tree| {
        std::fs::write(tree.join("flows/sql/q.sql"), "drop table users;\n").unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_added_to_or_removed_from_the_checkout_are_put_right() {
    checkout_tamper_case(
        "files_added_to_or_removed_from_the_checkout_are_put_right",
        |tree| {
            std::fs::write(tree.join("flows/planted.py"), "import os\n").unwrap();
            let _ = std::fs::remove_file(tree.join("flows/sql/q.sql"));
        },
    )
    .await;
}

/// Flips bytes in the middle of every file of the clone's pack directory ending in `ext`.
fn corrupt_packs(cache: &Path, ext: &str) -> usize {
    let pack_dir = only(cache, "clone").join("repo.git/objects/pack");
    let mut n = 0;
    for entry in std::fs::read_dir(pack_dir).unwrap().flatten() {
        let p = entry.path();
        if p.extension().and_then(|x| x.to_str()) != Some(ext) {
            continue;
        }
        let mut bytes = std::fs::read(&p).unwrap();
        let (mid, len) = (bytes.len() / 2, bytes.len());
        for b in &mut bytes[mid.saturating_sub(16)..(mid + 16).min(len)] {
            *b ^= 0xff;
        }
        let mut perms = std::fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&p, perms).unwrap();
        std::fs::write(&p, bytes).unwrap();
        n += 1;
    }
    n
}

async fn corrupt_clone_case(name: &str, ext: &str) {
    let e = match env() {
        Ok(e) => e,
        Err(reason) => return skip(name, &reason),
    };
    let files: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("lib/m{i}.py"),
                format!("value = {i} # {}\n", "x".repeat(200)),
            )
        })
        .collect();
    let mut all: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let flow = source("P");
    all.push(("flow.py", &flow));
    let Fetched {
        cache,
        repo,
        storage: s,
    } = fetched_once(&e, &all, "flow.py", "P").await;
    assert!(
        corrupt_packs(cache.path(), ext) > 0,
        "{name}: no {ext} file to corrupt"
    );
    // A new commit: its checkout is written from the corrupt clone's objects.
    let v2 = format!("{flow}# v2\n");
    repo.commit(&[("flow.py", &v2)], "v2");
    let got = fetch(&s, "P")
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got, v2, "{name}");
    let got = s.get_flow("P").await.unwrap();
    let root = flow_dir(&got);
    for (path, content) in &files {
        let on_disk = std::fs::read_to_string(root.join(path)).unwrap();
        assert_eq!(&on_disk, content, "{name}: {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_pack_in_the_cache_is_fetched_again() {
    corrupt_clone_case("a_corrupt_pack_in_the_cache_is_fetched_again", "pack").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_pack_index_in_the_cache_is_fetched_again() {
    corrupt_clone_case("a_corrupt_pack_index_in_the_cache_is_fetched_again", "idx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_the_server_serves_wrong_are_refused_as_corrupt_naming_the_server() {
    let e =
        need_servers!("objects_the_server_serves_wrong_are_refused_as_corrupt_naming_the_server");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("S")), ("data.txt", "right\n")]);
    // On the server, replace the loose object of data.txt with another blob's content under
    // the same name: git serves it as it is; its hash no longer matches the name the tree uses.
    let bare = e.root.join(format!("{}.git", repo.name));
    let id = git(&bare, &["rev-parse", "main:data.txt"]);
    let object = bare.join("objects").join(&id[..2]).join(&id[2..]);
    assert!(
        object.exists(),
        "the push left data.txt's blob loose at {}",
        object.display()
    );
    let wrong_dir = tempfile::tempdir().unwrap();
    git(wrong_dir.path(), &["init", "-q"]);
    std::fs::write(wrong_dir.path().join("w"), "wrong\n").unwrap();
    let wrong_id = git(wrong_dir.path(), &["hash-object", "-w", "w"]);
    let wrong = wrong_dir
        .path()
        .join(".git/objects")
        .join(&wrong_id[..2])
        .join(&wrong_id[2..]);
    std::fs::remove_file(&object).unwrap();
    std::fs::copy(&wrong, &object).unwrap();

    let mut s = storage(&repo, &e, "flow.py", cache.path()).build().unwrap();
    s.add_flow(FlowInput::script("S")).await.unwrap();
    let err = s.get_flow("S").await.unwrap_err();
    assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&e.daemon) && msg.contains("server"), "{msg}");
    assert!(
        entries(cache.path(), "checkout").is_empty(),
        "a checkout was kept: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cache_stays_bounded_under_concurrent_fetches() {
    let e = need_servers!("the_cache_stays_bounded_under_concurrent_fetches");
    let cache = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(&e, &[("flow.py", &source("V0"))]);
    let mut commits = Vec::new();
    for i in 0..8 {
        let text = format!("{}# version {i}\n", source("V"));
        commits.push((repo.commit(&[("flow.py", &text)], &format!("v{i}")), text));
    }
    // Every entry not in use is evicted after every fetch.
    let tiny = CachePolicy {
        max_size: Some(1),
        max_age: None,
        keep_recent: Duration::ZERO,
    };
    let commits = Arc::new(commits);
    let tasks: Vec<_> = (0..4)
        .map(|worker| {
            let (repo_name, daemon, cache, commits, tiny) = (
                repo.name.clone(),
                e.daemon.clone(),
                cache.path().to_path_buf(),
                commits.clone(),
                tiny.clone(),
            );
            tokio::spawn(async move {
                for round in 0..8 {
                    let (sha, text) = &commits[(worker * 3 + round) % commits.len()];
                    let mut s = Git::builder(&repo_name, "flow.py")
                        .host(&daemon)
                        .scheme("git")
                        .commit(sha)
                        .cache_dir(&cache)
                        .cache_policy(tiny.clone())
                        .build()
                        .unwrap();
                    s.add_flow(FlowInput::script("V")).await.unwrap();
                    let f = s
                        .get_flow("V")
                        .await
                        .unwrap_or_else(|e| panic!("{sha}: {e}"));
                    assert_eq!(f.bytes(), text.as_bytes(), "commit {sha}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let left = gc_once_idle(&GitCache::new(cache.path()).with_policy(tiny));
    assert!(left.kept.is_empty(), "entries left: {:?}", left.kept);
    assert!(!entries(cache.path(), "checkout").iter().any(|p| p.exists()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporaries_of_dead_processes_are_removed_and_old_entries_evicted() {
    let e = need_servers!("temporaries_of_dead_processes_are_removed_and_old_entries_evicted");
    let Fetched {
        cache,
        repo,
        storage: s,
    } = fetched_once(&e, &[("flow.py", &source("D"))], "flow.py", "D").await;
    // A checkout half-written by a process that is gone (no pid is this large).
    let abandoned = cache.path().join(".tmp/4294967294-7-0");
    std::fs::create_dir_all(abandoned.join("tree/lib")).unwrap();
    std::fs::write(abandoned.join("tree/lib/big.bin"), vec![0u8; 1 << 20]).unwrap();
    repo.commit(&[("flow.py", &format!("{}# v2\n", source("D")))], "v2");
    fetch(&s, "D").await.unwrap();
    assert!(
        !abandoned.exists(),
        "the abandoned temporary is still there"
    );

    // Two checkouts and a clone; an age limit of zero evicts all of them once not in use.
    assert_eq!(entries(cache.path(), "checkout").len(), 2);
    let report = gc_once_idle(&GitCache::new(cache.path()).with_policy(CachePolicy {
        max_size: None,
        max_age: Some(Duration::ZERO),
        keep_recent: Duration::ZERO,
    }));
    assert_eq!(report.evicted.len(), 3, "{report:?}");
    assert!(GitCache::new(cache.path()).status().unwrap().is_empty());
    // And the next fetch simply fetches again.
    assert!(fetch(&s, "D").await.unwrap().contains("# v2"));
}

/// When the clone last fetched (libgit2 rewrites `FETCH_HEAD` at every fetch), if it did.
fn last_fetch(cache: &Path) -> Option<std::time::SystemTime> {
    let clones = entries(cache, "clone");
    let clone = clones.first()?;
    std::fs::metadata(clone.join("repo.git/FETCH_HEAD"))
        .and_then(|m| m.modified())
        .ok()
}

/// Waits until the file system's clock has moved on, so a rewrite shows in an mtime.
fn tick() {
    std::thread::sleep(Duration::from_millis(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_ref_is_served_from_the_cache_without_a_fetch_and_a_new_commit_is_seen() {
    let e = need_servers!(
        "an_unchanged_ref_is_served_from_the_cache_without_a_fetch_and_a_new_commit_is_seen"
    );
    let flow = source("W");
    let Fetched {
        cache,
        repo,
        storage: s,
    } = fetched_once(&e, &[("flow.py", &flow)], "flow.py", "W").await;
    let fetched_at = last_fetch(cache.path()).expect("the first fetch fetched");
    tick();
    // Unchanged ref: the same commit, verified, and the clone left alone.
    for _ in 0..2 {
        let f = s.get_flow("W").await.unwrap();
        assert_eq!(f.bytes(), flow.as_bytes());
        assert!(flow_dir(&f).join("flow.py").exists());
    }
    assert_eq!(
        last_fetch(cache.path()),
        Some(fetched_at),
        "an unchanged ref was fetched"
    );
    // A new commit on the branch: seen at once, and fetched.
    let v2 = format!("{flow}# v2\n");
    let sha2 = repo.commit(&[("flow.py", &v2)], "v2");
    let f = s.get_flow("W").await.unwrap();
    assert_eq!(f.bytes(), v2.as_bytes());
    assert_eq!(f.revision.as_deref(), Some(sha2.as_str()));
    let refetched = last_fetch(cache.path()).unwrap();
    assert!(refetched > fetched_at, "the new commit was not fetched");
    tick();
    // And that commit, unchanged, is served from the cache in turn.
    assert_eq!(fetch(&s, "W").await.unwrap(), v2);
    assert_eq!(last_fetch(cache.path()), Some(refetched));
    // A branch moved back to an older commit whose checkout is cached: that commit, no fetch.
    git(repo.work.path(), &["reset", "-q", "--hard", "HEAD~1"]);
    git(repo.work.path(), &["push", "-q", "-f", "origin", "main"]);
    assert_eq!(fetch(&s, "W").await.unwrap(), flow);
    assert_eq!(last_fetch(cache.path()), Some(refetched));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_the_default_branch_are_served_from_the_cache_until_they_move() {
    let e = need_servers!("tags_and_the_default_branch_are_served_from_the_cache_until_they_move");
    let cache = tempfile::tempdir().unwrap();
    let v1 = source("G");
    let repo = TestRepo::new(&e, &[("flow.py", &v1)]);
    git(repo.work.path(), &["tag", "-a", "-m", "release", "rel"]);
    git(repo.work.path(), &["push", "-q", "origin", "rel"]);
    let mut tagged = storage(&repo, &e, "flow.py", cache.path())
        .tag("rel")
        .build()
        .unwrap();
    tagged.add_flow(FlowInput::script("G")).await.unwrap();
    let mut default = storage(&repo, &e, "flow.py", cache.path()).build().unwrap();
    default.add_flow(FlowInput::script("G")).await.unwrap();
    assert_eq!(fetch(&tagged, "G").await.unwrap(), v1);
    assert_eq!(fetch(&default, "G").await.unwrap(), v1);
    let fetched_at = last_fetch(cache.path()).unwrap();
    tick();
    assert_eq!(fetch(&tagged, "G").await.unwrap(), v1);
    assert_eq!(fetch(&default, "G").await.unwrap(), v1);
    assert_eq!(
        last_fetch(cache.path()),
        Some(fetched_at),
        "an unchanged tag or default branch was fetched"
    );
    // The default branch moves: seen; the tag stays.
    let v2 = format!("{v1}# v2\n");
    let sha2 = repo.commit(&[("flow.py", &v2)], "v2");
    assert_eq!(fetch(&default, "G").await.unwrap(), v2);
    assert_eq!(fetch(&tagged, "G").await.unwrap(), v1);
    // The tag is moved to the new commit: seen.
    git(
        repo.work.path(),
        &["tag", "-f", "-a", "-m", "again", "rel", &sha2],
    );
    git(repo.work.path(), &["push", "-q", "-f", "origin", "rel"]);
    let f = tagged.get_flow("G").await.unwrap();
    assert_eq!(f.bytes(), v2.as_bytes());
    assert_eq!(f.revision.as_deref(), Some(sha2.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_gone_after_the_first_fetch_is_reported_not_served_from_the_cache() {
    let e =
        need_servers!("a_remote_gone_after_the_first_fetch_is_reported_not_served_from_the_cache");
    let Fetched {
        cache: _cache,
        repo,
        storage: s,
    } = fetched_once(&e, &[("flow.py", &source("R"))], "flow.py", "R").await;
    std::fs::remove_dir_all(repo.bare(&e)).unwrap();
    let err = s.get_flow("R").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}
