//! GitLab storage against a local server that answers as GitLab's v4 REST API documentation
//! says (started by `cargo xtask test`; no real GitLab server runs on a laptop).

mod fake_apis;

use std::sync::Arc;

use fake_apis::{env, need_fake, registry, repo_name, Fake, SHA1, SHA2, SHA3};
use flowstore_core::{FlowInput, Storage};
use flowstore_git::api::gitlab::{GitLab, GitLabFields};
use flowstore_secrets::MapSource;

fn storage(fake: &Fake, repo: &str, path: &str, git_ref: Option<&str>, token: &str) -> GitLab {
    GitLab::new(GitLabFields {
        repo: repo.into(),
        path: path.into(),
        host: Some(format!("{}/gitlab", fake.base)),
        git_ref: git_ref.map(str::to_string),
        access_token_secret: Some("GL_TOKEN".into()),
    })
    .secrets(Arc::new(MapSource::new().with("GL_TOKEN", token)))
}

async fn harness() -> flowstore_core::testkit::HarnessResult<fake_apis::ApiHarness<GitLab>> {
    Ok(fake_apis::ApiHarness {
        fake: fake_apis::fake()?,
        make: |fake, repo, path| {
            storage(fake, repo, path, None, &env("FLOWSTORE_TEST_GITLAB_TOKEN"))
        },
        secrets: Arc::new(MapSource::new().with("GL_TOKEN", &env("FLOWSTORE_TEST_GITLAB_TOKEN"))),
        repo_prefix: "conformance",
    })
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
    assert!(!format!("{err:?}").contains("c4n4ry"));
    let mut s = storage(
        &fake,
        &repo,
        "missing.py",
        Some("main"),
        &env("FLOWSTORE_TEST_GITLAB_TOKEN"),
    );
    s.add_flow(FlowInput::script("G")).await.unwrap();
    let msg = s.get_flow("G").await.unwrap_err().to_string();
    assert!(msg.contains(&format!("Error retrieving file contents at missing.py in {repo}@main. Ensure the project and file exist.")), "{msg}");
}
