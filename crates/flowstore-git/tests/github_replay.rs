//! GitHub storage against real api.github.com answers: the exchanges PyGithub recorded against
//! the real API and ships in its sdist (PyGithub 2.5.0 on PyPI, `tests/ReplayData/*.txt`),
//! replayed verbatim by the loopback server `cargo xtask test` starts
//! (`xtask/src/servers/replay.rs`, which downloads the sdist into `target/replay-data/`).
//!
//! Each test defines a scenario: the recordings it answers from, and routes that serve one
//! recorded answer (named by recording file and exchange number, from 0) at the request
//! flowstore makes where that request itself was not recorded (PyGithub asked for a file without
//! `?ref=`, flowstore always reads at a commit). Every answer is a real one; only its address
//! is chosen.

use flowstore_core::testkit::Skip;
use flowstore_core::{Error, FlowInput, Storage};
use flowstore_git::GitHub;
use serde_json::{json, Value};

/// The replay server's address, or why the tests skip.
fn replay() -> Result<String, Skip> {
    std::env::var("FLOWSTORE_TEST_GITHUB_REPLAY").map_err(|_| {
        Skip(
            "FLOWSTORE_TEST_GITHUB_REPLAY is not set: the replay server is not running \
             (cargo xtask test starts it)"
                .into(),
        )
    })
}

macro_rules! need_replay {
    ($name:literal) => {
        match replay() {
            Ok(base) => base,
            Err(reason) => return flowstore_core::testkit::skip($name, &reason),
        }
    };
}

/// Defines scenario `name` and returns the `base_url` that reaches it.
async fn scenario(base: &str, name: &str, recordings: &[&str], routes: Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/_replay/scenario"))
        .json(&json!({"name": name, "recordings": recordings, "routes": routes}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "defining scenario {name}: {}",
        r.status()
    );
    format!("{base}/{name}")
}

/// An anonymous storage for `path` in `repo` at `git_ref`, against `base_url`.
fn storage(base_url: &str, repo: &str, path: &str, git_ref: Option<&str>) -> GitHub {
    let mut b = GitHub::builder(repo, path)
        .base_url(base_url)
        .access_token_secret("FLOWSTORE_REPLAY_NO_TOKEN");
    if let Some(r) = git_ref {
        b = b.git_ref(r);
    }
    b.build().unwrap()
}

/// The commit of jacquev6/PyGithub that `Commit.setUp.txt` recorded.
const PYGITHUB_COMMIT: &str = "1292bf0e22c796e91cc3d6e24b544aece8c21f2a";

#[tokio::test]
async fn a_recorded_file_decodes_and_matches_its_blob_sha() {
    let base = need_replay!("a_recorded_file_decodes_and_matches_its_blob_sha");
    // Repository.testGetContents.txt, exchange 1: contents/doc/ReferenceOfClasses.md (28122
    // bytes, base64 with GitHub's line breaks, blob b82d109e…), recorded without `?ref=`.
    let url = scenario(
        &base,
        "file",
        &[],
        json!([{
            "path": format!("/repos/jacquev6/PyGithub/contents/doc/ReferenceOfClasses.md?ref={PYGITHUB_COMMIT}"),
            "recording": "Repository.testGetContents", "index": 1,
        }]),
    )
    .await;
    let mut s = storage(
        &url,
        "jacquev6/PyGithub",
        "doc/ReferenceOfClasses.md",
        Some(PYGITHUB_COMMIT),
    );
    s.add_flow(FlowInput::script("Doc")).await.unwrap();
    // The content is checked against the recorded blob SHA inside the fetch.
    s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    let f = s.get_flow("Doc").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.bytes().len(), 28122);
    assert!(f
        .bytes()
        .starts_with(b"You don't normaly create instances of any class but `Github`."));
    assert_eq!(f.revision.as_deref(), Some(PYGITHUB_COMMIT));
}

#[tokio::test]
async fn a_recorded_commit_resolves_a_branch() {
    let base = need_replay!("a_recorded_commit_resolves_a_branch");
    // Commit.setUp.txt, exchange 2: the JSON of commit 1292bf0e… (flowstore asks for the bare
    // SHA; an answer in the commit's JSON form is read too), served for branch `master`.
    // ExposeAllAttributes.testAllClasses.txt, exchange 28: contents/README.rst (blob 7b03e11c…).
    let url = scenario(
        &base,
        "branch",
        &[],
        json!([
            {"path": "/repos/jacquev6/PyGithub/commits/master", "recording": "Commit.setUp", "index": 2},
            {
                "path": format!("/repos/jacquev6/PyGithub/contents/README.rst?ref={PYGITHUB_COMMIT}"),
                "recording": "ExposeAllAttributes.testAllClasses", "index": 28,
            },
        ]),
    )
    .await;
    let mut s = storage(&url, "jacquev6/PyGithub", "README.rst", Some("master"));
    s.add_flow(FlowInput::script("Readme")).await.unwrap();
    let f = s.get_flow("Readme").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.revision.as_deref(), Some(PYGITHUB_COMMIT));
    assert!(String::from_utf8_lossy(f.bytes()).contains("PyGithub"));
}

#[tokio::test]
async fn a_recorded_directory_listing_is_not_a_flow() {
    let base = need_replay!("a_recorded_directory_listing_is_not_a_flow");
    // Issue140.testGetDirContentsWithRef.txt, exchange 0: contents/js?ref=8c7f9c66… answered
    // with a JSON array (the directory's entries), requested exactly as flowstore does.
    let url = scenario(
        &base,
        "dir",
        &["Issue140.testGetDirContentsWithRef"],
        json!([]),
    )
    .await;
    let sha = "8c7f9c66a7d12f47f50618ef420868fe836d0c33";
    let mut s = storage(&url, "twitter/bootstrap", "js", Some(sha));
    s.add_flow(FlowInput::script("Js")).await.unwrap();
    let err = s.persist().await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "file", .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("directory") && msg.contains("twitter/bootstrap") && msg.contains(sha),
        "{msg}"
    );
    assert!(s.reference().unwrap().flow_digests.is_empty());
}

#[tokio::test]
async fn a_recorded_404_is_a_missing_repository() {
    let base = need_replay!("a_recorded_404_is_a_missing_repository");
    // Exceptions.testUnknownObject.txt, exchange 1: GET /repos/jacquev6/Xxx → 404 Not Found.
    let url = scenario(
        &base,
        "missing",
        &["Exceptions.testUnknownObject"],
        json!([]),
    )
    .await;
    let mut s = storage(&url, "jacquev6/Xxx", "flow.py", None);
    s.add_flow(FlowInput::script("X")).await.unwrap();
    let err = s.get_flow("X").await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotFound {
                what: "repository",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("Repo jacquev6/Xxx not found"),
        "{err}"
    );
}

#[tokio::test]
async fn a_recorded_primary_rate_limit_is_reported_as_one() {
    let base = need_replay!("a_recorded_primary_rate_limit_is_reported_as_one");
    // SpecificExceptions.testRateLimitExceeded.txt, exchange 4: 403 "API Rate Limit Exceeded"
    // with x-ratelimit-remaining: 0 (and no reset header), served for the repository.
    let url = scenario(
        &base,
        "limit",
        &[],
        json!([{"path": "/repos/jacquev6/PyGithub", "recording": "SpecificExceptions.testRateLimitExceeded", "index": 4}]),
    )
    .await;
    let mut s = storage(&url, "jacquev6/PyGithub", "flow.py", None);
    s.add_flow(FlowInput::script("L")).await.unwrap();
    let err = s.get_flow("L").await.unwrap_err();
    assert!(err.is_temporary() && !err.is_not_found(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("rate limit exceeded") && msg.contains("use a token"),
        "{msg}"
    );
}

#[tokio::test]
async fn recorded_server_errors_are_retried() {
    let base = need_replay!("recorded_server_errors_are_retried");
    // Retry.testReturnsRepoAfter3Retries.txt: GET /repos/PyGithub/PyGithub answered 502 three
    // times, then 200 (default_branch "master"). PullRequest.testCreateComment.txt, exchange 0:
    // the JSON of commit 8a4f306d…, served for `master`. Exceptions.testUnknownObject.txt,
    // exchange 1: a 404 Not Found, served for the file.
    let url = scenario(
        &base,
        "retry",
        &["Retry.testReturnsRepoAfter3Retries"],
        json!([
            {"path": "/repos/PyGithub/PyGithub/commits/master", "recording": "PullRequest.testCreateComment", "index": 0},
            {
                "path": "/repos/PyGithub/PyGithub/contents/flows/etl.py?ref=8a4f306d4b223682dd19410d4a9150636ebe4206",
                "recording": "Exceptions.testUnknownObject", "index": 1,
            },
        ]),
    )
    .await;
    let mut s = storage(&url, "PyGithub/PyGithub", "flows/etl.py", None);
    s.add_flow(FlowInput::script("E")).await.unwrap();
    let err = s.get_flow("E").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "file", .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("flows/etl.py") && msg.contains("PyGithub/PyGithub") && msg.contains("master"),
        "{msg}"
    );
}
