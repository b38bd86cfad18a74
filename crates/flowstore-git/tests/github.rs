//! GitHub storage against a local server that answers as GitHub's REST API documentation says
//! (started by `cargo xtask test`; no real GitHub server runs on a laptop).

mod fake_apis;

use std::sync::Arc;

use fake_apis::{assert_not_found, env, need_fake, registry, repo_name, Fake, SHA1, SHA2, SHA3};
use flowstore_core::{Error, FlowInput, Storage};
use flowstore_git::{GitHub, GitHubBuilder};
use flowstore_secrets::MapSource;

fn secrets() -> Arc<MapSource> {
    Arc::new(MapSource::new().with("GH_TOKEN", &env("FLOWSTORE_TEST_GITHUB_TOKEN")))
}

fn builder(fake: &Fake, repo: &str, path: &str, git_ref: Option<&str>) -> GitHubBuilder {
    let mut b = GitHub::builder(repo, path)
        .access_token_secret("GH_TOKEN")
        .base_url(format!("{}/github", fake.base))
        .secrets(secrets());
    if let Some(r) = git_ref {
        b = b.git_ref(r);
    }
    b
}

fn storage(fake: &Fake, repo: &str, path: &str, git_ref: Option<&str>) -> GitHub {
    builder(fake, repo, path, git_ref).build().unwrap()
}

async fn harness() -> flowstore_core::testkit::HarnessResult<fake_apis::ApiHarness<GitHub>> {
    Ok(fake_apis::ApiHarness::new(
        fake_apis::fake()?,
        storage,
        secrets(),
        "conformance",
    ))
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
            "repository",
            "Repo nobody/nothing not found",
        ),
        (
            storage(&fake, "nobody/nothing", "f.py", Some("main")),
            "ref",
            "Ref main not found in repo nobody/nothing",
        ),
        (
            storage(&fake, &repo, "f.py", Some("no-such-branch")),
            "ref",
            "Ref no-such-branch not found in repo",
        ),
        (
            storage(&fake, &repo, "missing.py", None),
            "file",
            "File missing.py not found in repo",
        ),
    ];
    for (mut s, what, needle) in cases {
        s.add_flow(FlowInput::script("E")).await.unwrap();
        let err = s.get_flow("E").await.unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
        assert_not_found(&err, what);
    }
    // Anonymous on a private repository: GitHub answers 404, reported with the credentials hint.
    let mut anon = GitHub::builder(repo.clone(), "f.py")
        .base_url(format!("{}/github", fake.base))
        .access_token_secret("FLOWSTORE_NO_SUCH_GH_SECRET")
        .build()
        .unwrap();
    anon.add_flow(FlowInput::script("E")).await.unwrap();
    let err = anon.get_flow("E").await.unwrap_err();
    assert!(err.to_string().contains("proper credentials"), "{err}");
    assert!(err.is_not_found());
    // A wrong token: 401, never echoed, the server's answer kept.
    let bad = Arc::new(MapSource::new().with("GH_TOKEN", "ghp_wrong_c4n4ry"));
    let mut s = builder(&fake, &repo, "f.py", None)
        .secrets(bad)
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("E")).await.unwrap();
    let err = s.get_flow("E").await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("401"), "{err}");
    let source = std::error::Error::source(&err).expect("the server's answer");
    assert!(source.to_string().contains("Bad credentials"), "{source}");
    assert!(!format!("{err} {err:?} {s:?}").contains("ghp_wrong_c4n4ry"));
    // The same wrong token given typed: refused the same way, never shown.
    let mut s = builder(&fake, &repo, "f.py", None)
        .access_token("ghp_typed_c4n4ry".to_string().into())
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("E")).await.unwrap();
    let err = s.get_flow("E").await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(!format!("{err} {err:?} {s:?}").contains("c4n4ry"));
}

#[tokio::test]
async fn a_typed_token_reads_and_is_never_recorded() {
    let fake = need_fake!("a_typed_token_reads_and_is_never_recorded");
    let repo = repo_name("gh-typed");
    fake.seed(&repo, "main", &[("f.py", "T")], &[]).await;
    let token = env("FLOWSTORE_TEST_GITHUB_TOKEN");
    let b = GitHub::builder(&repo, "f.py")
        .base_url(format!("{}/github", fake.base))
        .access_token_secret("NOT_SET_ANYWHERE")
        .access_token(token.clone().into());
    assert!(!format!("{b:?}").contains(&token), "{b:?}");
    let mut s = b.build().unwrap();
    s.add_flow(FlowInput::script("T")).await.unwrap();
    s.persist().await.unwrap();
    let (t, _) = text(&s, "T").await;
    assert!(t.contains("Flow(\"T\")"));
    let json = s.reference().unwrap().to_json();
    assert!(
        !json.contains(&token) && !format!("{s:?}").contains(&token),
        "{json}"
    );
}

#[tokio::test]
async fn a_url_with_options_and_its_reference_open_the_same_storage() {
    let fake = need_fake!("a_url_with_options_and_its_reference_open_the_same_storage");
    let repo = repo_name("gh-url");
    fake.seed(&repo, "main", &[("flows/u.py", "U")], &[]).await;
    let base = format!("{}/github", fake.base);
    let url = format!(
        "github://{repo}/flows/u.py?ref=main&access_token_secret=GH_TOKEN&base_url={base}&label=prod"
    );
    let r = registry(secrets());
    let mut s = r.open_url(&url).unwrap();
    s.add_flow(FlowInput::script("U")).await.unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    assert_eq!(reference.labels, ["prod"]);
    let reopened = GitHub::from_reference(&reference, &Default::default()).unwrap();
    let direct = GitHubBuilder::from_url(&url).unwrap().build().unwrap();
    assert_eq!(reopened.config(), direct.config());
    assert_eq!(direct.config().base_url.as_deref(), Some(base.as_str()));
    let f = r.open(&reference).unwrap().get_flow("U").await.unwrap();
    assert_eq!(f.revision.as_deref(), Some(SHA2));
    let err = r
        .open_url(&format!("{url}&reff=x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"reff\""), "{err}");
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
    let err = s.get_flow("R").await.map(|_| ()).unwrap_err();
    fake.post("/_fake/rate-limit", serde_json::json!({"repo": repo}))
        .await;
    assert!(err.is_temporary(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("rate limit exceeded") && msg.contains("2100-01-01"),
        "{msg}"
    );
}
