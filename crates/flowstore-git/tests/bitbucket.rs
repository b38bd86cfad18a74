//! Bitbucket Server and Cloud storage against a local server that answers as Bitbucket's REST API
//! documentation says (started by `cargo xtask test`; no real Bitbucket runs on a laptop).

mod fake_apis;

use std::sync::Arc;

use fake_apis::{env, need_fake, repo_name, Fake, SHA1, SHA2, SHA3};
use flowstore_core::{FlowInput, Storage};
use flowstore_git::api::bitbucket::{Bitbucket, BitbucketFields};
use flowstore_secrets::MapSource;

fn fields(path: &str, git_ref: Option<&str>) -> BitbucketFields {
    BitbucketFields {
        project: None,
        repo: String::new(),
        workspace: None,
        host: None,
        path: path.into(),
        git_ref: git_ref.map(str::to_string),
        access_token_secret: Some("BBS_TOKEN".into()),
        cloud_username_secret: Some("BBC_USER".into()),
        cloud_app_password_secret: Some("BBC_PASS".into()),
    }
}

fn secrets(token: &str, pass: &str) -> Arc<MapSource> {
    Arc::new(
        MapSource::new()
            .with("BBS_TOKEN", token)
            .with("BBC_USER", &env("FLOWSTORE_TEST_BBC_USER"))
            .with("BBC_PASS", pass),
    )
}

fn server(fake: &Fake, repo: &str, path: &str, r: Option<&str>, token: &str) -> Bitbucket {
    let (project, slug) = repo.split_once('/').unwrap();
    let mut f = fields(path, r);
    f.project = Some(project.into());
    f.repo = slug.into();
    f.host = Some(format!("{}/bbs", fake.base));
    Bitbucket::new(f).secrets(secrets(token, ""))
}

fn cloud(fake: &Fake, repo: &str, path: &str, r: Option<&str>, pass: &str) -> Bitbucket {
    let (ws, slug) = repo.split_once('/').unwrap();
    let mut f = fields(path, r);
    f.workspace = Some(ws.into());
    f.repo = slug.into();
    f.host = Some(format!("{}/bbc", fake.base));
    Bitbucket::new(f).secrets(secrets("", pass))
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
    Ok(fake_apis::ApiHarness {
        fake: fake_apis::fake()?,
        make: |fake, repo, path| server(fake, repo, path, None, &env("FLOWSTORE_TEST_BBS_TOKEN")),
        secrets: secrets(&env("FLOWSTORE_TEST_BBS_TOKEN"), ""),
        repo_prefix: "CONF",
    })
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
    assert!(!format!("{err:?}").contains("c4n4ry"));
    let mut s = server(&fake, "NOPE/none", "f.py", Some("main"), &token);
    s.add_flow(FlowInput::script("B")).await.unwrap();
    let msg = s.get_flow("B").await.unwrap_err().to_string();
    assert!(
        msg.contains("Invalid address. Check that host, project, and repository are correct."),
        "{msg}"
    );
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
    assert!(s
        .get_flow("B")
        .await
        .unwrap_err()
        .to_string()
        .contains("Ref no-such-ref not found"));
    let mut s = cloud(&fake, &repo, "f.py", None, "wrong-c4n4ry");
    s.add_flow(FlowInput::script("B")).await.unwrap();
    let err = s.get_flow("B").await.unwrap_err();
    assert!(err.to_string().contains("Access denied"), "{err}");
}
