//! GitHub storage against a local server that answers as GitHub's REST API documentation says
//! (started by `cargo xtask test`; no real GitHub server runs on a laptop).

mod fake_apis;

use std::sync::Arc;

use fake_apis::{env, need_fake, registry, repo_name, Fake, SHA1, SHA2, SHA3};
use flowstore_core::{Error, FlowInput, Storage};
use flowstore_git::api::github::{GitHub, GitHubFields};
use flowstore_secrets::MapSource;

fn secrets() -> Arc<MapSource> {
    Arc::new(MapSource::new().with("GH_TOKEN", &env("FLOWSTORE_TEST_GITHUB_TOKEN")))
}

fn storage(fake: &Fake, repo: &str, path: &str, git_ref: Option<&str>) -> GitHub {
    GitHub::new(GitHubFields {
        repo: repo.to_string(),
        path: path.to_string(),
        git_ref: git_ref.map(str::to_string),
        access_token_secret: Some("GH_TOKEN".into()),
        base_url: Some(format!("{}/github", fake.base)),
    })
    .secrets(secrets())
}

async fn harness() -> flowstore_core::testkit::HarnessResult<fake_apis::ApiHarness<GitHub>> {
    Ok(fake_apis::ApiHarness {
        fake: fake_apis::fake()?,
        make: |fake, repo, path| storage(fake, repo, path, None),
        secrets: secrets(),
        repo_prefix: "conformance",
    })
}

flowstore_core::conformance_suite!(harness);

async fn text(s: &GitHub, name: &str) -> (String, String) {
    let f = s.get_flow(name).await.unwrap_or_else(|e| panic!("{e}"));
    (
        String::from_utf8_lossy(f.bytes()).into_owned(),
        f.revision.unwrap(),
    )
}

#[tokio::test]
async fn default_branch_refs_with_slashes_tags_and_unicode_paths() {
    let fake = need_fake!("default_branch_refs_with_slashes_tags_and_unicode_paths");
    let repo = repo_name("gh");
    fake.seed(&repo, "trunk", &[("flows/my flow ü.py", "F")], &[])
        .await;
    for (r, want, sha) in [
        (None, "# main", SHA2),
        (Some("feature/x"), "# feature", SHA3),
        (Some("v1"), "# v1", SHA1),
        (Some(SHA1), "# v1", SHA1),
    ] {
        let mut s = storage(&fake, &repo, "flows/my flow ü.py", r);
        s.add_flow(FlowInput::script("F")).await.unwrap();
        let (t, rev) = text(&s, "F").await;
        assert!(t.contains(want), "{r:?}: {t}");
        assert_eq!(rev, sha);
    }
}

#[tokio::test]
async fn a_pinned_commit_is_digest_checked() {
    let fake = need_fake!("a_pinned_commit_is_digest_checked");
    let repo = repo_name("gh-pin");
    fake.seed(&repo, "main", &[("f.py", "P")], &[]).await;
    let mut s = storage(&fake, &repo, "f.py", Some(SHA1));
    s.add_flow(FlowInput::script("P")).await.unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    assert!(reference.flow_digests.contains_key("P"));
    fake.reseed_commit(
        &repo,
        SHA1,
        "f.py",
        "with Flow(\"P\") as flow:  # altered\n",
    )
    .await;
    let err = registry(secrets())
        .open(&reference)
        .unwrap()
        .get_flow("P")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
}

#[tokio::test]
async fn distinct_errors_for_repo_ref_and_file_and_auth() {
    let fake = need_fake!("distinct_errors_for_repo_ref_and_file_and_auth");
    let repo = repo_name("gh-err");
    fake.seed(&repo, "main", &[("f.py", "E")], &[]).await;
    let cases = [
        (
            storage(&fake, "nobody/nothing", "f.py", None),
            "Repo nobody/nothing not found",
        ),
        (
            storage(&fake, &repo, "f.py", Some("no-such-branch")),
            "Ref no-such-branch not found in repo",
        ),
        (
            storage(&fake, &repo, "missing.py", None),
            "File missing.py not found in repo",
        ),
    ];
    for (mut s, needle) in cases {
        s.add_flow(FlowInput::script("E")).await.unwrap();
        let msg = s.get_flow("E").await.unwrap_err().to_string();
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    // Anonymous on a private repository: GitHub answers 404, reported with the credentials hint.
    let mut anon = GitHub::github(repo.clone(), "f.py");
    let mut fields = anon.fields().clone();
    fields.base_url = Some(format!("{}/github", fake.base));
    fields.access_token_secret = Some("FLOWSTORE_NO_SUCH_GH_SECRET".into());
    anon = GitHub::new(fields);
    anon.add_flow(FlowInput::script("E")).await.unwrap();
    let msg = anon.get_flow("E").await.unwrap_err().to_string();
    assert!(msg.contains("proper credentials"), "{msg}");
    // A wrong token: 401, never echoed.
    let bad = Arc::new(MapSource::new().with("GH_TOKEN", "ghp_wrong_c4n4ry"));
    let mut s = storage(&fake, &repo, "f.py", None).secrets(bad);
    s.add_flow(FlowInput::script("E")).await.unwrap();
    let err = s.get_flow("E").await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!format!("{err} {err:?} {s:?}").contains("ghp_wrong_c4n4ry"));
}

#[tokio::test]
async fn rate_limits_say_when_they_reset() {
    let fake = need_fake!("rate_limits_say_when_they_reset");
    let repo = repo_name("gh-rate");
    fake.seed(&repo, "main", &[("f.py", "R")], &[]).await;
    let mut s = storage(&fake, &repo, "f.py", None);
    s.add_flow(FlowInput::script("R")).await.unwrap();
    // Only this test's repository is limited: the others run at the same time.
    fake.post("/_fake/rate-limit", serde_json::json!({"repo": repo}))
        .await;
    let msg = s.get_flow("R").await.map(|_| ()).unwrap_err().to_string();
    fake.post("/_fake/rate-limit", serde_json::json!({"repo": repo}))
        .await;
    assert!(
        msg.contains("rate limit exceeded") && msg.contains("2100-01-01"),
        "{msg}"
    );
}
