//! Bitbucket Server and Cloud storage against a local server that answers as Bitbucket's REST API
//! documentation says (started by `cargo xtask test`; no real Bitbucket runs on a laptop).
//!
//! Cloud authenticates with an API token (the account email + the token, HTTP Basic) or an
//! access token (Bearer); the fake refuses app passwords, as Bitbucket Cloud has since June 2026.

mod fake_apis;

use std::sync::Arc;

use fake_apis::{assert_not_found, env, need_fake, registry, repo_name, Fake, SHA1, SHA2, SHA3};
use flowstore_core::{Error, FlowInput, Storage};
use flowstore_git::{Bitbucket, BitbucketBuilder};
use flowstore_secrets::MapSource;

fn secrets(token: &str, pass: &str) -> Arc<MapSource> {
    Arc::new(
        MapSource::new()
            .with("BBS_TOKEN", token)
            .with("BBC_USER", &env("FLOWSTORE_TEST_BBC_EMAIL"))
            .with("BBC_PASS", pass),
    )
}

fn with_ref(b: BitbucketBuilder, r: Option<&str>) -> BitbucketBuilder {
    // Cloud: the username + API token secrets (an access token secret, when set, would be used
    // first); Server: the token secret.
    let b = if b.config().workspace.is_some() {
        b.cloud_secrets("BBC_USER", "BBC_PASS")
    } else {
        b.access_token_secret("BBS_TOKEN")
    };
    match r {
        Some(r) => b.git_ref(r),
        None => b,
    }
}

fn server(fake: &Fake, repo: &str, path: &str, r: Option<&str>, token: &str) -> Bitbucket {
    let (project, slug) = repo.split_once('/').unwrap();
    with_ref(
        Bitbucket::server(format!("{}/bbs", fake.base), project, slug, path),
        r,
    )
    .secrets(secrets(token, ""))
    .build()
    .unwrap()
}

fn cloud(fake: &Fake, repo: &str, path: &str, r: Option<&str>, pass: &str) -> Bitbucket {
    let (ws, slug) = repo.split_once('/').unwrap();
    with_ref(Bitbucket::cloud(ws, slug, path), r)
        .host(format!("{}/bbc", fake.base))
        .secrets(secrets("", pass))
        .build()
        .unwrap()
}

async fn text(s: &mut Bitbucket) -> (String, String) {
    s.add_flow(FlowInput::script("B")).await.unwrap();
    let f = s.get_flow("B").await.unwrap_or_else(|e| panic!("{e}"));
    (
        String::from_utf8_lossy(f.bytes()).into_owned(),
        f.revision.unwrap(),
    )
}

async fn harness() -> flowstore_core::testkit::HarnessResult<fake_apis::ApiHarness<Bitbucket>> {
    Ok(fake_apis::ApiHarness::new(
        fake_apis::fake()?,
        |fake, repo, path, r| server(fake, repo, path, r, &env("FLOWSTORE_TEST_BBS_TOKEN")),
        secrets(&env("FLOWSTORE_TEST_BBS_TOKEN"), ""),
        "CONF",
    ))
}

/// The conformance suite against Bitbucket Cloud as well.
mod cloud_suite {
    use super::*;

    pub async fn harness(
    ) -> flowstore_core::testkit::HarnessResult<fake_apis::ApiHarness<Bitbucket>> {
        Ok(fake_apis::ApiHarness::new(
            fake_apis::fake()?,
            |fake, repo, path, r| cloud(fake, repo, path, r, &env("FLOWSTORE_TEST_BBC_API_TOKEN")),
            secrets("", &env("FLOWSTORE_TEST_BBC_API_TOKEN")),
            "WS",
        ))
    }

    flowstore_core::conformance_suite!(harness);
}

flowstore_core::conformance_suite!(harness);

#[tokio::test]
async fn server_default_branch_refs_and_errors() {
    let fake = need_fake!("server_default_branch_refs_and_errors");
    let repo = repo_name("PROJ");
    fake.seed(&repo, "trunk", &[("flows/b flow.py", "B")], &[])
        .await;
    let token = env("FLOWSTORE_TEST_BBS_TOKEN");
    let (t, _) = text(&mut server(&fake, &repo, "flows/b flow.py", None, &token)).await;
    assert!(t.contains("# main"), "the default branch, not master: {t}");
    let (t, _) = text(&mut server(
        &fake,
        &repo,
        "flows/b flow.py",
        Some("feature/x"),
        &token,
    ))
    .await;
    assert!(t.contains("# feature"));
    let mut s = server(&fake, &repo, "flows/b flow.py", None, "bbs-wrong-c4n4ry");
    s.add_flow(FlowInput::script("B")).await.unwrap();
    let err = s.get_flow("B").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("Access denied to repository. Please check credentials."),
        "{err}"
    );
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(!format!("{err:?}").contains("c4n4ry"));
    let mut s = server(&fake, "NOPE/none", "f.py", Some("main"), &token);
    s.add_flow(FlowInput::script("B")).await.unwrap();
    let err = s.get_flow("B").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Invalid address. Check that host, project, and repository are correct."),
        "{msg}"
    );
    assert_not_found(&err, "project");
    let mut s = server(&fake, &repo, "missing.py", Some("v1"), &token);
    s.add_flow(FlowInput::script("B")).await.unwrap();
    assert_not_found(&s.get_flow("B").await.unwrap_err(), "file");
    // This repository has no branch `main` (its default is `trunk`).
    let mut s = server(&fake, &repo, "flows/b flow.py", Some("main"), &token);
    s.add_flow(FlowInput::script("B")).await.unwrap();
    assert_not_found(&s.get_flow("B").await.unwrap_err(), "ref");
    // A typed token, never shown.
    let b = Bitbucket::server(
        format!("{}/bbs", fake.base),
        repo.split_once('/').unwrap().0,
        repo.split_once('/').unwrap().1,
        "flows/b flow.py",
    )
    .access_token(token.clone().into());
    assert!(!format!("{b:?}").contains(&token));
    let mut s = b.build().unwrap();
    let (t, _) = text(&mut s).await;
    assert!(t.contains("# main"));
    assert!(!s.reference().unwrap().to_json().contains(&token));
}

/// Injects `count` answers of `status` for requests on `repo` whose path ends with `suffix`.
async fn fault(fake: &Fake, site: &str, repo: &str, status: u16, count: usize, suffix: &str) {
    let path = match site {
        "cloud" => "/bbc/2.0/_fake/faults",
        _ => "/bbs/rest/api/1.0/_fake/faults",
    };
    fake.post(
        path,
        serde_json::json!({"repo": repo, "status": status, "count": count, "path": suffix}),
    )
    .await;
}

async fn fetch_err(mut s: Bitbucket) -> Error {
    s.add_flow(FlowInput::script("B")).await.unwrap();
    s.get_flow("B").await.unwrap_err()
}

#[tokio::test]
async fn cloud_resolves_branches_and_tags_directly_and_retries_429() {
    let fake = need_fake!("cloud_resolves_branches_and_tags_directly_and_retries_429");
    let repo = repo_name("ws");
    let extra: Vec<(String, &str)> = (0..5).map(|i| (format!("zz-branch-{i}"), SHA1)).collect();
    let extra_refs: Vec<(&str, &str)> = extra.iter().map(|(b, s)| (b.as_str(), *s)).collect();
    fake.seed(&repo, "main", &[("f.py", "B")], &extra_refs)
        .await;
    // The list endpoints answer 400: a ref must be resolved by name, never by paging.
    fault(&fake, "cloud", &repo, 400, 1000, "refs/branches").await;
    fault(&fake, "cloud", &repo, 400, 1000, "refs/tags").await;
    let pass = env("FLOWSTORE_TEST_BBC_API_TOKEN");
    let (t, sha) = text(&mut cloud(&fake, &repo, "f.py", Some("zz-branch-4"), &pass)).await;
    assert!(t.contains("# v1") && sha == SHA1, "{t} {sha}");
    let (t, sha) = text(&mut cloud(&fake, &repo, "f.py", Some("feature/x"), &pass)).await;
    assert!(
        t.contains("# feature") && sha == SHA3,
        "a name with a slash: {t} {sha}"
    );
    let (_, sha) = text(&mut cloud(&fake, &repo, "f.py", Some("v1"), &pass)).await;
    assert_eq!(sha, SHA1, "a tag");
    let (t, sha) = text(&mut cloud(&fake, &repo, "f.py", None, &pass)).await;
    assert!(t.contains("# main") && sha == SHA2);
    let (_, sha) = text(&mut cloud(&fake, &repo, "f.py", Some(SHA3), &pass)).await;
    assert_eq!(sha, SHA3, "a SHA is used as is");
    // Two 429s on this repository, then the answer.
    fault(&fake, "cloud", &repo, 429, 2, "").await;
    let (t, _) = text(&mut cloud(&fake, &repo, "f.py", Some("feature/x"), &pass)).await;
    assert!(t.contains("# feature"));
    let err = fetch_err(cloud(&fake, &repo, "f.py", Some("no-such-ref"), &pass)).await;
    assert!(
        err.to_string().contains("Ref no-such-ref not found"),
        "{err}"
    );
    assert_not_found(&err, "ref");
}

#[tokio::test]
async fn cloud_missing_workspace_repository_commit_and_file_are_not_found() {
    let fake = need_fake!("cloud_missing_workspace_repository_commit_and_file_are_not_found");
    let repo = repo_name("ws");
    fake.seed(&repo, "main", &[("f.py", "B")], &[]).await;
    let pass = env("FLOWSTORE_TEST_BBC_API_TOKEN");
    let ws = repo.split_once('/').unwrap().0;
    let other = format!("{ws}/no-such-repo");
    let sha = "4".repeat(40);
    for (repo, path, r, what, needle) in [
        (
            repo.as_str(),
            "missing.py",
            None,
            "file",
            "File missing.py not found",
        ),
        (
            repo.as_str(),
            "f.py",
            Some(sha.as_str()),
            "ref",
            "Commit 4444",
        ),
        (
            other.as_str(),
            "f.py",
            None,
            "repository",
            "no-such-repo not found",
        ),
        (
            other.as_str(),
            "f.py",
            Some("main"),
            "repository",
            "no-such-repo not found",
        ),
        (
            "no-such-ws-x/r",
            "f.py",
            None,
            "workspace",
            "Workspace no-such-ws-x not found",
        ),
    ] {
        let err = fetch_err(cloud(&fake, repo, path, r, &pass)).await;
        assert!(err.to_string().contains(needle), "{needle}: {err}");
        assert_not_found(&err, what);
    }
}

#[tokio::test]
async fn cloud_directory_listing_is_not_a_flow() {
    let fake = need_fake!("cloud_directory_listing_is_not_a_flow");
    let repo = repo_name("ws");
    fake.seed(&repo, "main", &[("flows/a.py", "A")], &[]).await;
    let pass = env("FLOWSTORE_TEST_BBC_API_TOKEN");
    let err = fetch_err(cloud(&fake, &repo, "flows", Some("main"), &pass)).await;
    assert!(err.to_string().contains("flows in"), "{err}");
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert_not_found(&err, "file");
    // A JSON file shaped like a listing is still a file (its metadata says so).
    let listing_like = r#"{"pagelen": 10, "values": [{"type": "commit_file", "path": "x"}]}"#;
    fake.seed_source(&repo, "flows/listing.json", listing_like.as_bytes())
        .await;
    let mut s = cloud(&fake, &repo, "flows/listing.json", Some("main"), &pass);
    s.add_flow(FlowInput::script("B")).await.unwrap();
    let f = s.get_flow("B").await.unwrap();
    assert_eq!(f.bytes(), listing_like.as_bytes());
}

#[tokio::test]
async fn answers_other_than_the_file_are_errors_naming_repository_ref_and_path() {
    let fake = need_fake!("answers_other_than_the_file_are_errors_naming_repository_ref_and_path");
    let (pass, token) = (
        env("FLOWSTORE_TEST_BBC_API_TOKEN"),
        env("FLOWSTORE_TEST_BBS_TOKEN"),
    );
    // (site, repository owner, ref, a 5xx): Cloud and Server answer alike.
    for (site, owner, git_ref, unavailable) in
        [("cloud", "ws", "main", 502), ("server", "PROJ", "v1", 503)]
    {
        let repo = repo_name(owner);
        fake.seed(&repo, "main", &[("flows/e.py", "E")], &[]).await;
        let open = || match site {
            "cloud" => cloud(&fake, &repo, "flows/e.py", Some(git_ref), &pass),
            _ => server(&fake, &repo, "flows/e.py", Some(git_ref), &token),
        };
        // 400: a permanent error naming repository, ref and path.
        fault(&fake, site, &repo, 400, 1, "flows/e.py").await;
        let err = fetch_err(open()).await;
        let msg = err.to_string();
        assert!(
            msg.contains(&repo) && msg.contains(git_ref) && msg.contains("flows/e.py"),
            "{site}: {msg}"
        );
        assert!(
            matches!(
                err,
                Error::Backend {
                    temporary: false,
                    ..
                }
            ),
            "{site}: {err:?}"
        );
        // 5xx outlasting the retries: a temporary error, never the body as a flow.
        fault(&fake, site, &repo, unavailable, 10, "flows/e.py").await;
        let err = fetch_err(open()).await;
        assert!(
            err.is_temporary() && err.to_string().contains("flows/e.py"),
            "{site}: {err:?}"
        );
    }
}

#[tokio::test]
async fn server_missing_project_repository_ref_and_file_are_not_found() {
    let fake = need_fake!("server_missing_project_repository_ref_and_file_are_not_found");
    let repo = repo_name("PROJ");
    fake.seed(&repo, "main", &[("f.py", "B")], &[]).await;
    let token = env("FLOWSTORE_TEST_BBS_TOKEN");
    let other = format!("{}/no-such-repo", repo.split_once('/').unwrap().0);
    for (repo, path, r, what) in [
        (repo.as_str(), "missing.py", Some("main"), "file"),
        (repo.as_str(), "f.py", Some("no-such-branch"), "ref"),
        (other.as_str(), "f.py", Some("main"), "repository"),
        ("NOSUCHPROJECT/r", "f.py", None, "project"),
    ] {
        let err = fetch_err(server(&fake, repo, path, r, &token)).await;
        assert_not_found(&err, what);
    }
}

#[tokio::test]
async fn cloud_takes_api_tokens_and_access_tokens_and_explains_refused_app_passwords() {
    let fake =
        need_fake!("cloud_takes_api_tokens_and_access_tokens_and_explains_refused_app_passwords");
    let repo = repo_name("ws");
    fake.seed(&repo, "main", &[("f.py", "B")], &[]).await;
    let (ws, slug) = repo.split_once('/').unwrap();
    let host = format!("{}/bbc", fake.base);
    let build = |b: BitbucketBuilder, secrets: MapSource| {
        b.host(&host).secrets(Arc::new(secrets)).build().unwrap()
    };
    // A username + app password (as Prefect 1 stored them): refused, with what to do instead.
    let legacy = MapSource::new()
        .with("BITBUCKET_CLOUD_USERNAME", &env("FLOWSTORE_TEST_BBC_USER"))
        .with(
            "BITBUCKET_CLOUD_APP_PASSWORD",
            &env("FLOWSTORE_TEST_BBC_PASSWORD"),
        );
    let err = fetch_err(build(Bitbucket::cloud(ws, slug, "f.py"), legacy)).await;
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [
        "API token",
        "BITBUCKET_CLOUD_USERNAME",
        "BITBUCKET_CLOUD_APP_PASSWORD",
        "email",
    ] {
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    assert!(!msg.contains(&env("FLOWSTORE_TEST_BBC_PASSWORD")));
    // The same default secrets holding the account email and an API token.
    let api = MapSource::new()
        .with("BITBUCKET_CLOUD_USERNAME", &env("FLOWSTORE_TEST_BBC_EMAIL"))
        .with(
            "BITBUCKET_CLOUD_APP_PASSWORD",
            &env("FLOWSTORE_TEST_BBC_API_TOKEN"),
        );
    let (t, _) = text(&mut build(Bitbucket::cloud(ws, slug, "f.py"), api)).await;
    assert!(t.contains("# main"));
    // An access token: in the named secret (used first), or the default BITBUCKET_ACCESS_TOKEN.
    let access = env("FLOWSTORE_TEST_BBC_ACCESS_TOKEN");
    let named = MapSource::new()
        .with("BB_ACCESS", &access)
        .with("BITBUCKET_CLOUD_USERNAME", "someone@example.com")
        .with("BITBUCKET_CLOUD_APP_PASSWORD", "wrong");
    let (t, _) = text(&mut build(
        Bitbucket::cloud(ws, slug, "f.py").access_token_secret("BB_ACCESS"),
        named,
    ))
    .await;
    assert!(t.contains("# main"));
    let default = MapSource::new().with("BITBUCKET_ACCESS_TOKEN", &access);
    let (t, _) = text(&mut build(Bitbucket::cloud(ws, slug, "f.py"), default)).await;
    assert!(t.contains("# main"));
    // Typed: an access token, an API token; never shown.
    let b = Bitbucket::cloud(ws, slug, "f.py").access_token(access.clone().into());
    assert!(!format!("{b:?}").contains(&access));
    let (t, _) = text(&mut build(b, MapSource::new())).await;
    assert!(t.contains("# main"));
    let token = env("FLOWSTORE_TEST_BBC_API_TOKEN");
    let b = Bitbucket::cloud(ws, slug, "f.py")
        .api_token(env("FLOWSTORE_TEST_BBC_EMAIL"), token.clone().into());
    assert!(!format!("{b:?}").contains(&token));
    let (t, _) = text(&mut build(b, MapSource::new())).await;
    assert!(t.contains("# main"));
    // A wrong access token: denied, naming the secret to check.
    let wrong = MapSource::new().with("BB_ACCESS", "wrong-c4n4ry");
    let err = fetch_err(build(
        Bitbucket::cloud(ws, slug, "f.py").access_token_secret("BB_ACCESS"),
        wrong,
    ))
    .await;
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("BB_ACCESS"), "{err}");
    assert!(!format!("{err:?}").contains("c4n4ry"));
    // Nothing set: the secrets to set, by name.
    let err = fetch_err(build(Bitbucket::cloud(ws, slug, "f.py"), MapSource::new())).await;
    assert!(matches!(err, Error::SecretNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("BITBUCKET_CLOUD_USERNAME") && msg.contains("BITBUCKET_ACCESS_TOKEN"),
        "{msg}"
    );
}

#[tokio::test]
async fn server_takes_a_username_and_password_when_no_token_is_set() {
    let fake = need_fake!("server_takes_a_username_and_password_when_no_token_is_set");
    let repo = repo_name("PROJ");
    fake.seed(&repo, "main", &[("f.py", "B")], &[]).await;
    let (project, slug) = repo.split_once('/').unwrap();
    let secrets = MapSource::new()
        .with("BBS_USER", &env("FLOWSTORE_TEST_BBS_USER"))
        .with("BBS_PASS", &env("FLOWSTORE_TEST_BBS_PASSWORD"));
    let mut s = Bitbucket::server(format!("{}/bbs", fake.base), project, slug, "f.py")
        .access_token_secret("NO_SUCH_TOKEN_SECRET")
        .cloud_secrets("BBS_USER", "BBS_PASS")
        .secrets(Arc::new(secrets))
        .build()
        .unwrap();
    let (t, _) = text(&mut s).await;
    assert!(t.contains("# main"), "{t}");
}

#[tokio::test]
async fn urls_with_options_and_their_references_open_the_same_storage() {
    let fake = need_fake!("urls_with_options_and_their_references_open_the_same_storage");
    let host = fake.base.trim_start_matches("http://");
    let r = registry(secrets(
        &env("FLOWSTORE_TEST_BBS_TOKEN"),
        &env("FLOWSTORE_TEST_BBC_API_TOKEN"),
    ));
    let server_repo = repo_name("PROJ");
    let cloud_repo = repo_name("ws");
    fake.seed(&server_repo, "main", &[("flows/u.py", "U")], &[])
        .await;
    fake.seed(&cloud_repo, "main", &[("flows/u.py", "U")], &[])
        .await;
    for url in [
        format!(
            "bitbucket+http://{host}/{server_repo}/flows/u.py?host={}/bbs&access_token_secret=BBS_TOKEN&ref=v1&label=x",
            fake.base
        ),
        format!(
            "bitbucket://bitbucket.org/{cloud_repo}/flows/u.py?host={}/bbc&cloud_username_secret=BBC_USER&cloud_app_password_secret=BBC_PASS&ref=v1",
            fake.base
        ),
    ] {
        let mut s = r.open_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        s.add_flow(FlowInput::script("U")).await.unwrap();
        s.persist().await.unwrap();
        let reference = s.reference().unwrap();
        let reopened = Bitbucket::from_reference(&reference, &Default::default()).unwrap();
        let direct = BitbucketBuilder::from_url(&url).unwrap().build().unwrap();
        assert_eq!(reopened.config(), direct.config(), "{url}");
        let f = r.open(&reference).unwrap().get_flow("U").await.unwrap();
        assert!(String::from_utf8_lossy(f.bytes()).contains("# v1"), "{url}");
        let err = r.open_url(&format!("{url}&wrkspace=x")).unwrap_err().to_string();
        assert!(err.contains("\"wrkspace\""), "{err}");
    }
    let _ = (SHA1, SHA2);
}
