//! GitLab storage against a local server that answers as GitLab's v4 REST API documentation
//! says (started by `cargo xtask test`; no real GitLab server runs on a laptop).

mod fake_apis;

use std::sync::Arc;

use fake_apis::{assert_not_found, env, need_fake, registry, repo_name, Fake, SHA1, SHA2, SHA3};
use flowstore_core::{Error, FlowInput, Storage};
use flowstore_git::{GitLab, GitLabBuilder};
use flowstore_secrets::MapSource;

fn storage(fake: &Fake, repo: &str, path: &str, git_ref: Option<&str>, token: &str) -> GitLab {
    let mut b = GitLab::builder(repo, path)
        .host(format!("{}/gitlab", fake.base))
        .access_token_secret("GL_TOKEN")
        .secrets(Arc::new(MapSource::new().with("GL_TOKEN", token)));
    if let Some(r) = git_ref {
        b = b.git_ref(r);
    }
    b.build().unwrap()
}

async fn harness() -> flowstore_core::testkit::HarnessResult<fake_apis::ApiHarness<GitLab>> {
    Ok(fake_apis::ApiHarness::new(
        fake_apis::fake()?,
        |fake, repo, path, r| storage(fake, repo, path, r, &env("FLOWSTORE_TEST_GITLAB_TOKEN")),
        Arc::new(MapSource::new().with("GL_TOKEN", &env("FLOWSTORE_TEST_GITLAB_TOKEN"))),
        "conformance",
    ))
}

flowstore_core::conformance_suite!(harness);

#[tokio::test]
async fn default_branch_refs_and_encoded_paths_on_a_self_hosted_host() {
    let fake = need_fake!("default_branch_refs_and_encoded_paths_on_a_self_hosted_host");
    let repo = repo_name("group/sub");
    fake.seed(&repo, "develop", &[("dir/a flow é.py", "G")], &[])
        .await;
    let token = env("FLOWSTORE_TEST_GITLAB_TOKEN");
    for (r, want, sha) in [
        (None, "# main", SHA2),
        (Some("feature/x"), "# feature", SHA3),
        (Some("v1"), "# v1", SHA1),
    ] {
        let mut s = storage(&fake, &repo, "dir/a flow é.py", r, &token);
        s.add_flow(FlowInput::script("G")).await.unwrap();
        let f = s
            .get_flow("G")
            .await
            .unwrap_or_else(|e| panic!("{r:?}: {e}"));
        assert!(String::from_utf8_lossy(f.bytes()).contains(want));
        assert_eq!(f.revision.as_deref(), Some(sha));
    }
    let reference = storage(&fake, &repo, "dir/a flow é.py", None, &token)
        .reference()
        .unwrap();
    assert!(
        !reference.to_json().contains(&token),
        "a token reached the reference"
    );
    let _ = registry(Arc::new(MapSource::new()));
}

#[tokio::test]
async fn errors_are_the_reference_systems() {
    let fake = need_fake!("errors_are_the_reference_systems");
    let repo = repo_name("grp");
    fake.seed(&repo, "main", &[("f.py", "G")], &[]).await;
    let mut s = storage(&fake, &repo, "f.py", None, "glpat-wrong-c4n4ry");
    s.add_flow(FlowInput::script("G")).await.unwrap();
    let err = s.get_flow("G").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("Unable to authenticate GitLab account. Please check your credentials."),
        "{err}"
    );
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(!format!("{err:?}").contains("c4n4ry"));
    let token = env("FLOWSTORE_TEST_GITLAB_TOKEN");
    let mut s = storage(&fake, &repo, "missing.py", Some("main"), &token);
    s.add_flow(FlowInput::script("G")).await.unwrap();
    let err = s.get_flow("G").await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("Error retrieving file contents at missing.py in {repo}@main. Ensure the project and file exist.")), "{msg}");
    assert_not_found(&err, "file");
    // Anonymous on a private project: GitLab answers 404, a missing project with a token hint.
    let mut anon = GitLab::builder(repo.clone(), "f.py")
        .host(format!("{}/gitlab", fake.base))
        .access_token_secret("FLOWSTORE_NO_SUCH_GL_SECRET")
        .build()
        .unwrap();
    anon.add_flow(FlowInput::script("G")).await.unwrap();
    let err = anon.get_flow("G").await.unwrap_err();
    assert_not_found(&err, "repository");
    assert!(err.to_string().contains("no token was set"), "{err}");
    for (r, p, git_ref, what) in [
        ("nobody/nothing", "f.py", None, "repository"),
        ("nobody/nothing", "f.py", Some("main"), "repository"),
        (repo.as_str(), "f.py", Some("no-such-ref"), "ref"),
    ] {
        let mut s = storage(&fake, r, p, git_ref, &token);
        s.add_flow(FlowInput::script("G")).await.unwrap();
        let err = s.get_flow("G").await.unwrap_err();
        assert_not_found(&err, what);
    }
}

#[tokio::test]
async fn a_url_with_options_and_its_reference_open_the_same_storage() {
    let fake = need_fake!("a_url_with_options_and_its_reference_open_the_same_storage");
    let repo = repo_name("group/sub");
    fake.seed(&repo, "main", &[("flows/u.py", "U")], &[]).await;
    let host = fake.base.trim_start_matches("http://");
    // gitlab+http://host/<project>/-/<path>: the fake's API lives under /gitlab, so `host` says so.
    let url = format!(
        "gitlab+http://{host}/{repo}/-/flows/u.py?ref=v1&access_token_secret=GL_TOKEN&host={}/gitlab&label=a,b",
        fake.base
    );
    let token = env("FLOWSTORE_TEST_GITLAB_TOKEN");
    let r = registry(Arc::new(MapSource::new().with("GL_TOKEN", &token)));
    let mut s = r.open_url(&url).unwrap();
    s.add_flow(FlowInput::script("U")).await.unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    assert_eq!(reference.labels, ["a", "b"]);
    let reopened = GitLab::from_reference(&reference, &Default::default()).unwrap();
    let direct = GitLabBuilder::from_url(&url).unwrap().build().unwrap();
    assert_eq!(reopened.config(), direct.config());
    assert_eq!(direct.config().repo, repo);
    let f = r.open(&reference).unwrap().get_flow("U").await.unwrap();
    assert_eq!(f.revision.as_deref(), Some(SHA1));
    assert!(String::from_utf8_lossy(f.bytes()).contains("# v1"));
    let err = GitLabBuilder::from_url(&format!("{url}&hots=x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"hots\""), "{err}");
}

#[tokio::test]
async fn an_empty_project_says_it_has_no_commits() {
    let fake = need_fake!("an_empty_project_says_it_has_no_commits");
    let repo = repo_name("grp-empty");
    // No branches, no commits: GitLab answers `"default_branch": null`.
    fake.post(
        "/_fake/seed",
        serde_json::json!({"repo": repo, "default_branch": "main", "branches": {}, "tags": {}, "commits": {}}),
    )
    .await;
    let mut s = storage(
        &fake,
        &repo,
        "f.py",
        None,
        &env("FLOWSTORE_TEST_GITLAB_TOKEN"),
    );
    s.add_flow(FlowInput::script("G")).await.unwrap();
    let err = s.get_flow("G").await.unwrap_err();
    assert_not_found(&err, "ref");
    let msg = err.to_string();
    assert!(
        msg.contains(&repo) && msg.contains("no default branch") && msg.contains("no commits"),
        "{msg}"
    );
}

#[tokio::test]
async fn forbidden_and_rate_limited_answers_have_their_own_messages() {
    let fake = need_fake!("forbidden_and_rate_limited_answers_have_their_own_messages");
    let repo = repo_name("grp-403");
    fake.seed(&repo, "main", &[("f.py", "G")], &[]).await;
    // A valid token without the read_api scope (the fake's second token): 403, not "authenticate".
    let mut s = storage(&fake, &repo, "f.py", None, "glpat-fake-no-scope-token");
    s.add_flow(FlowInput::script("G")).await.unwrap();
    let err = s.get_flow("G").await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("403") && msg.contains("read_api") && msg.contains(&repo),
        "{msg}"
    );
    assert!(!msg.contains("Unable to authenticate"), "{msg}");
    let token = env("FLOWSTORE_TEST_GITLAB_TOKEN");
    let mut s = storage(&fake, &repo, "f.py", Some("main"), &token);
    s.add_flow(FlowInput::script("G")).await.unwrap();
    // 429 asking for a wait longer than flowstore's bound: a rate-limit error at once.
    let throttle = |times: u32, retry_after: u64| {
        fake.post(
            "/gitlab/api/v4/_fake/throttle",
            serde_json::json!({"repo": repo, "times": times, "retry_after": retry_after}),
        )
    };
    throttle(1, 3600).await;
    let err = s.get_flow("G").await.unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("rate limit") && msg.contains("429") && msg.contains("3600 s"),
        "{msg}"
    );
    // Within the bound (Retry-After: 1, twice): waited out, then read.
    throttle(2, 1).await;
    let f = s.get_flow("G").await.unwrap_or_else(|e| panic!("{e}"));
    assert!(String::from_utf8_lossy(f.bytes()).contains("# main"));
}
