//! CodeCommit storage against a local server that answers as the CodeCommit `GetFile` API
//! documentation says and verifies SigV4 signatures (started by `cargo xtask test`; no real
//! CodeCommit runs on a laptop).

mod fake_apis;

use std::sync::Arc;

use fake_apis::{assert_not_found, env, need_fake, registry, repo_name, Fake, SHA1, SHA2, SHA3};
use flowstore_core::{Error, FlowInput, Storage};
use flowstore_git::{CodeCommit, CodeCommitBuilder};
use flowstore_secrets::MapSource;

fn creds(secret: &str) -> Arc<MapSource> {
    let creds = serde_json::json!({"ACCESS_KEY": env("FLOWSTORE_TEST_AWS_KEY"), "SECRET_ACCESS_KEY": secret}).to_string();
    Arc::new(MapSource::new().with("AWS_CREDENTIALS", &creds))
}

fn builder(fake: &Fake, repo: &str, path: &str, commit: Option<&str>) -> CodeCommitBuilder {
    let b = CodeCommit::builder(repo, path)
        .endpoint_url(format!("{}/codecommit/", fake.base))
        .region("us-east-1");
    match commit {
        Some(c) => b.commit(c),
        None => b,
    }
}

fn storage(fake: &Fake, repo: &str, path: &str, commit: Option<&str>, secret: &str) -> CodeCommit {
    builder(fake, repo, path, commit)
        .secrets(creds(secret))
        .build()
        .unwrap()
}

async fn harness() -> flowstore_core::testkit::HarnessResult<fake_apis::ApiHarness<CodeCommit>> {
    Ok(fake_apis::ApiHarness::new(
        fake_apis::fake()?,
        |fake, repo, path, c| storage(fake, repo, path, c, &env("FLOWSTORE_TEST_AWS_SECRET")),
        creds(&env("FLOWSTORE_TEST_AWS_SECRET")),
        "",
    ))
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
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(!format!("{err:?} {s:?}").contains("c4n4ry"));
    // Typed keys: used, never shown nor recorded.
    let key = env("FLOWSTORE_TEST_AWS_KEY");
    let b = builder(&fake, &repo, "c.py", None)
        .access_key_id(key.clone().into())
        .secret_access_key("typed-c4n4ry".to_string().into());
    assert!(!format!("{b:?}").contains("c4n4ry") && !format!("{b:?}").contains(&key));
    let mut s = b.build().unwrap();
    s.add_flow(FlowInput::script("C")).await.unwrap();
    let err = s.get_flow("C").await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    let good = builder(&fake, &repo, "c.py", None)
        .access_key_id(key.clone().into())
        .secret_access_key(env("FLOWSTORE_TEST_AWS_SECRET").into());
    let mut s = good.build().unwrap();
    s.add_flow(FlowInput::script("C")).await.unwrap();
    s.get_flow("C").await.unwrap();
    assert!(!s.reference().unwrap().to_json().contains(&key));
    let secret = env("FLOWSTORE_TEST_AWS_SECRET");
    for (repo, path, commit, what, needle) in [
        (
            "no-such-repo",
            "c.py",
            None,
            "repository",
            "Repository no-such-repo does not exist",
        ),
        (
            repo.as_str(),
            "missing.py",
            None,
            "file",
            "File missing.py not found",
        ),
        (
            repo.as_str(),
            "c.py",
            Some("nope"),
            "ref",
            "Commit nope not found",
        ),
    ] {
        let mut s = storage(&fake, repo, path, commit, &secret);
        s.add_flow(FlowInput::script("C")).await.unwrap();
        let err = s.get_flow("C").await.unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
        assert_not_found(&err, what);
    }
}

#[tokio::test]
async fn a_url_with_options_and_its_reference_open_the_same_storage() {
    let fake = need_fake!("a_url_with_options_and_its_reference_open_the_same_storage");
    let repo = repo_name("cc").replace('/', "-");
    fake.seed(&repo, "main", &[("flows/u.py", "U")], &[]).await;
    let url = format!(
        "codecommit://{repo}/flows/u.py?region=us-east-1&endpoint_url={}/codecommit/&ref=v1&label=x",
        fake.base
    );
    let r = registry(creds(&env("FLOWSTORE_TEST_AWS_SECRET")));
    let mut s = r.open_url(&url).unwrap();
    s.add_flow(FlowInput::script("U")).await.unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    let reopened = CodeCommit::from_reference(&reference, &Default::default()).unwrap();
    let direct = CodeCommitBuilder::from_url(&url).unwrap().build().unwrap();
    assert_eq!(reopened.config(), direct.config());
    assert_eq!(direct.config().commit.as_deref(), Some("v1"));
    let f = r.open(&reference).unwrap().get_flow("U").await.unwrap();
    assert_eq!(f.revision.as_deref(), Some(SHA1));
    let err = r
        .open_url(&format!("{url}&regoin=x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"regoin\""), "{err}");
    let err = CodeCommitBuilder::from_url(&format!("{url}&region=x"))
        .unwrap()
        .with_config("client_options", "{}")
        .unwrap_err();
    assert!(err.to_string().contains("client_options"), "{err}");
}

/// Makes the fake answer the next `count` GetFile calls on `repo` with AWS error `kind`.
async fn inject(fake: &Fake, repo: &str, kind: &str, status: u16, count: usize) {
    let r = reqwest::Client::new()
        .post(format!("{}/codecommit/", fake.base))
        .header("x-amz-target", "FlowstoreFake.InjectFault")
        .json(&serde_json::json!({"repositoryName": repo, "type": kind, "status": status, "count": count}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "injecting {kind}: {}", r.status());
}

async fn fetch(fake: &Fake, repo: &str, path: &str) -> flowstore_core::Result<String> {
    let mut s = storage(fake, repo, path, None, &env("FLOWSTORE_TEST_AWS_SECRET"));
    s.add_flow(FlowInput::script("C")).await.unwrap();
    let f = s.get_flow("C").await?;
    Ok(String::from_utf8_lossy(f.bytes()).into_owned())
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_then_reported() {
    let fake = need_fake!("throttling_is_retried_with_backoff_then_reported");
    let repo = repo_name("cc").replace('/', "-");
    fake.seed(&repo, "main", &[("c.py", "C")], &[]).await;
    // AWS answers throttling with HTTP 400 and __type ThrottlingException: retried.
    inject(&fake, &repo, "ThrottlingException", 400, 2).await;
    assert!(fetch(&fake, &repo, "c.py")
        .await
        .unwrap()
        .contains("# main"));
    inject(&fake, &repo, "ServiceUnavailableException", 503, 1).await;
    inject(&fake, &repo, "ThrottlingException", 429, 1).await;
    assert!(fetch(&fake, &repo, "c.py")
        .await
        .unwrap()
        .contains("# main"));
    // Throttled past the attempts (5): a temporary error saying so.
    inject(&fake, &repo, "ThrottlingException", 400, 8).await;
    let err = fetch(&fake, &repo, "c.py").await.unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("ThrottlingException") && msg.contains(&repo) && msg.contains("c.py"),
        "{msg}"
    );
}

#[tokio::test]
async fn get_file_exceptions_have_their_own_messages() {
    let fake = need_fake!("get_file_exceptions_have_their_own_messages");
    let repo = repo_name("cc").replace('/', "-");
    fake.seed(&repo, "main", &[("c.py", "C"), ("flows/d.py", "D")], &[])
        .await;
    // GetFile's 6 MiB cap.
    let big = "#".repeat(6 * 1024 * 1024 + 1);
    fake.seed_source(&format!("{repo}-big"), "big.py", big.as_bytes())
        .await;
    let err = fetch(&fake, &format!("{repo}-big"), "big.py")
        .await
        .unwrap_err();
    let msg = err.to_string();
    for needle in ["6 MiB", "Git storage", "big.py", "FileTooLargeException"] {
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    assert!(!err.is_temporary() && !err.is_not_found(), "{err:?}");
    // An invalid path: a configuration error naming it.
    let err = fetch(&fake, &repo, "flows/").await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        err.to_string().contains("\"flows/\"") && err.to_string().contains(&repo),
        "{err}"
    );
    // The repository's KMS key.
    for (kind, needle) in [
        ("EncryptionKeyAccessDeniedException", "kms:Decrypt"),
        ("EncryptionKeyDisabledException", "is disabled"),
        ("EncryptionKeyNotFoundException", "was not found"),
        ("EncryptionKeyUnavailableException", "not available"),
    ] {
        inject(&fake, &repo, kind, 400, 1).await;
        let err = fetch(&fake, &repo, "c.py").await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(kind)
                && msg.contains(needle)
                && msg.contains(&repo)
                && msg.contains("c.py"),
            "{kind}: {msg}"
        );
        if kind == "EncryptionKeyAccessDeniedException" {
            assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        }
    }
    // A missing branch, however AWS names it, is a missing ref.
    inject(&fake, &repo, "BranchDoesNotExistException", 400, 1).await;
    assert_not_found(&fetch(&fake, &repo, "c.py").await.unwrap_err(), "ref");
}
