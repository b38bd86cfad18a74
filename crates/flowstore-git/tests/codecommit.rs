//! CodeCommit storage against a local server that answers as the CodeCommit `GetFile` API
//! documentation says and verifies SigV4 signatures (started by `cargo xtask test`; no real
//! CodeCommit runs on a laptop).

mod fake_apis;

use std::sync::Arc;

use fake_apis::{env, need_fake, repo_name, Fake, SHA1, SHA2, SHA3};
use flowstore_core::{FlowInput, Storage};
use flowstore_git::api::codecommit::{CodeCommit, CodeCommitFields};
use flowstore_secrets::MapSource;

fn storage(fake: &Fake, repo: &str, path: &str, commit: Option<&str>, secret: &str) -> CodeCommit {
    let mut opts = serde_json::Map::new();
    opts.insert(
        "endpoint_url".into(),
        format!("{}/codecommit/", fake.base).into(),
    );
    opts.insert("region_name".into(), "us-east-1".into());
    let creds = serde_json::json!({"ACCESS_KEY": env("FLOWSTORE_TEST_AWS_KEY"), "SECRET_ACCESS_KEY": secret}).to_string();
    CodeCommit::new(CodeCommitFields {
        repo: repo.into(),
        path: path.into(),
        commit: commit.map(str::to_string),
        client_options: opts,
    })
    .secrets(Arc::new(MapSource::new().with("AWS_CREDENTIALS", &creds)))
}

async fn harness() -> flowstore_core::testkit::HarnessResult<fake_apis::ApiHarness<CodeCommit>> {
    let creds = serde_json::json!({"ACCESS_KEY": env("FLOWSTORE_TEST_AWS_KEY"), "SECRET_ACCESS_KEY": env("FLOWSTORE_TEST_AWS_SECRET")}).to_string();
    Ok(fake_apis::ApiHarness {
        fake: fake_apis::fake()?,
        make: |fake, repo, path| storage(fake, repo, path, None, &env("FLOWSTORE_TEST_AWS_SECRET")),
        secrets: Arc::new(MapSource::new().with("AWS_CREDENTIALS", &creds)),
        repo_prefix: "",
    })
}

flowstore_core::conformance_suite!(harness);

#[tokio::test]
async fn get_file_by_sha_branch_tag_and_full_ref_with_sigv4() {
    let fake = need_fake!("get_file_by_sha_branch_tag_and_full_ref_with_sigv4");
    let repo = repo_name("cc").replace('/', "-");
    fake.seed(&repo, "main", &[("flows/c.py", "C")], &[]).await;
    let secret = env("FLOWSTORE_TEST_AWS_SECRET");
    for (c, want, sha) in [
        (None, "# main", SHA2),
        (Some("feature/x"), "# feature", SHA3),
        (Some("v1"), "# v1", SHA1),
        (Some("refs/heads/main"), "# main", SHA2),
        (Some(SHA1), "# v1", SHA1),
    ] {
        let mut s = storage(&fake, &repo, "flows/c.py", c, &secret);
        s.add_flow(FlowInput::script("C")).await.unwrap();
        s.persist().await.unwrap();
        let f = s
            .get_flow("C")
            .await
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert!(String::from_utf8_lossy(f.bytes()).contains(want));
        assert_eq!(f.revision.as_deref(), Some(sha));
    }
}

#[tokio::test]
async fn a_bad_signature_and_missing_things_are_clear_errors() {
    let fake = need_fake!("a_bad_signature_and_missing_things_are_clear_errors");
    let repo = repo_name("cc").replace('/', "-");
    fake.seed(&repo, "main", &[("c.py", "C")], &[]).await;
    let mut s = storage(&fake, &repo, "c.py", None, "wrong-secret-c4n4ry");
    s.add_flow(FlowInput::script("C")).await.unwrap();
    let err = s.get_flow("C").await.unwrap_err();
    assert!(err.to_string().contains("signature was refused"), "{err}");
    assert!(!format!("{err:?} {s:?}").contains("c4n4ry"));
    let secret = env("FLOWSTORE_TEST_AWS_SECRET");
    for (repo, path, commit, needle) in [
        (
            "no-such-repo",
            "c.py",
            None,
            "Repository no-such-repo does not exist",
        ),
        (
            repo.as_str(),
            "missing.py",
            None,
            "File missing.py not found",
        ),
        (repo.as_str(), "c.py", Some("nope"), "Commit nope not found"),
    ] {
        let mut s = storage(&fake, repo, path, commit, &secret);
        s.add_flow(FlowInput::script("C")).await.unwrap();
        let msg = s.get_flow("C").await.unwrap_err().to_string();
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
}
