//! Bitbucket Server and Cloud storage against a local server that answers as Bitbucket's REST API
//! documentation says (started by `cargo xtask test`; no real Bitbucket runs on a laptop).

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
            .with("BBC_USER", &env("FLOWSTORE_TEST_BBC_USER"))
            .with("BBC_PASS", pass),
    )
}

fn with_ref(b: BitbucketBuilder, r: Option<&str>) -> BitbucketBuilder {
    let b = b
        .access_token_secret("BBS_TOKEN")
        .cloud_secrets("BBC_USER", "BBC_PASS");
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
            |fake, repo, path, r| cloud(fake, repo, path, r, &env("FLOWSTORE_TEST_BBC_PASSWORD")),
            secrets("", &env("FLOWSTORE_TEST_BBC_PASSWORD")),
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
    assert_not_found(&err, "repository");
    let mut s = server(&fake, &repo, "missing.py", Some("main"), &token);
    s.add_flow(FlowInput::script("B")).await.unwrap();
    assert_not_found(&s.get_flow("B").await.unwrap_err(), "file");
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

#[tokio::test]
async fn cloud_resolves_refs_through_every_page_and_retries_429() {
    let fake = need_fake!("cloud_resolves_refs_through_every_page_and_retries_429");
    let repo = repo_name("ws");
    // Seven branches: the one asked for is on the last page (2 per page).
    let extra: Vec<(String, &str)> = (0..5).map(|i| (format!("zz-branch-{i}"), SHA1)).collect();
    let extra_refs: Vec<(&str, &str)> = extra.iter().map(|(b, s)| (b.as_str(), *s)).collect();
    fake.seed(&repo, "main", &[("f.py", "B")], &extra_refs)
        .await;
    let pass = env("FLOWSTORE_TEST_BBC_PASSWORD");
    let (t, sha) = text(&mut cloud(&fake, &repo, "f.py", Some("zz-branch-4"), &pass)).await;
    assert!(t.contains("# v1") && sha == SHA1, "{t} {sha}");
    let (_, sha) = text(&mut cloud(&fake, &repo, "f.py", Some("v1"), &pass)).await;
    assert_eq!(sha, SHA1, "a tag");
    let (t, sha) = text(&mut cloud(&fake, &repo, "f.py", None, &pass)).await;
    assert!(t.contains("# main") && sha == SHA2);
    let (_, sha) = text(&mut cloud(&fake, &repo, "f.py", Some(SHA3), &pass)).await;
    assert_eq!(sha, SHA3, "a SHA is used as is");
    // Two 429s, then the answer.
    fake.post("/_fake/throttle", serde_json::json!({})).await;
    fake.post("/_fake/throttle", serde_json::json!({})).await;
    let (t, _) = text(&mut cloud(&fake, &repo, "f.py", Some("feature/x"), &pass)).await;
    assert!(t.contains("# feature"));
    let mut s = cloud(&fake, &repo, "f.py", Some("no-such-ref"), &pass);
    s.add_flow(FlowInput::script("B")).await.unwrap();
    let err = s.get_flow("B").await.unwrap_err();
    assert!(
        err.to_string().contains("Ref no-such-ref not found"),
        "{err}"
    );
    assert!(
        matches!(err, Error::NotFound { what: "ref", .. }),
        "{err:?}"
    );
    let mut s = cloud(&fake, &repo, "missing.py", None, &pass);
    s.add_flow(FlowInput::script("B")).await.unwrap();
    assert_not_found(&s.get_flow("B").await.unwrap_err(), "file");
    let mut s = cloud(&fake, "ws/no-such-repo", "f.py", None, &pass);
    s.add_flow(FlowInput::script("B")).await.unwrap();
    assert_not_found(&s.get_flow("B").await.unwrap_err(), "repository");
    let mut s = cloud(&fake, &repo, "f.py", None, "wrong-c4n4ry");
    s.add_flow(FlowInput::script("B")).await.unwrap();
    let err = s.get_flow("B").await.unwrap_err();
    assert!(err.to_string().contains("Access denied"), "{err}");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    // Typed username and app password instead of the secrets.
    let (ws, slug) = repo.split_once('/').unwrap();
    let b = Bitbucket::cloud(ws, slug, "f.py")
        .host(format!("{}/bbc", fake.base))
        .app_password(env("FLOWSTORE_TEST_BBC_USER"), pass.clone().into());
    assert!(!format!("{b:?}").contains(&pass));
    let (t, _) = text(&mut b.build().unwrap()).await;
    assert!(t.contains("# main"));
}

#[tokio::test]
async fn urls_with_options_and_their_references_open_the_same_storage() {
    let fake = need_fake!("urls_with_options_and_their_references_open_the_same_storage");
    let host = fake.base.trim_start_matches("http://");
    let r = registry(secrets(
        &env("FLOWSTORE_TEST_BBS_TOKEN"),
        &env("FLOWSTORE_TEST_BBC_PASSWORD"),
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
