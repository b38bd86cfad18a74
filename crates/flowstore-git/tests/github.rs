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
        // A 404 for the ref of a repository that is itself missing names the repository.
        (
            storage(&fake, "nobody/nothing", "f.py", Some("main")),
            "repository",
            "Repo nobody/nothing not found",
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

/// Seeds `repo` with branch `main` at SHA2 holding `files` (exact contents).
async fn seed_exact(fake: &Fake, repo: &str, files: serde_json::Value) {
    fake.post(
        "/_fake/seed",
        serde_json::json!({
            "repo": repo, "default_branch": "main", "branches": {"main": SHA2}, "tags": {},
            "commits": {SHA2: files},
        }),
    )
    .await;
}

/// Makes the fake answer the next `times` requests for `repo` whose path contains `on` with
/// `status` (and `Retry-After: retry_after`).
async fn fault(fake: &Fake, repo: &str, on: &str, status: u16, times: u32, retry_after: u64) {
    fake.post(
        "/github/_fake/fault",
        serde_json::json!({"repo": repo, "on": on, "status": status, "times": times, "retry_after": retry_after}),
    )
    .await;
}

#[tokio::test]
async fn a_directory_is_not_found_and_a_large_file_is_read_whole() {
    let fake = need_fake!("a_directory_is_not_found_and_a_large_file_is_read_whole");
    let repo = repo_name("gh-big");
    // Over GitHub's 1 MB: the contents API answers `"encoding": "none"` and no content.
    let big = format!(
        "with Flow(\"B\") as flow:\n    pass\n{}",
        "# padding to pass 1 MB\n".repeat(50_000)
    );
    assert!(big.len() > 1024 * 1024);
    seed_exact(
        &fake,
        &repo,
        serde_json::json!({"flows/etl.py": "with Flow(\"D\") as flow:\n    pass\n", "big.py": big}),
    )
    .await;
    for git_ref in [None, Some(SHA2)] {
        let mut s = storage(&fake, &repo, "flows", git_ref);
        s.add_flow(FlowInput::script("D")).await.unwrap();
        // With a pinned commit, no digest of an empty flow may be recorded.
        let err = s.persist().await.unwrap_err();
        assert_not_found(&err, "file");
        let msg = err.to_string();
        assert!(
            msg.contains("directory") && msg.contains(&repo) && msg.contains("flows"),
            "{msg}"
        );
        let err = s.get_flow("D").await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
    }
    let mut s = storage(&fake, &repo, "big.py", Some(SHA2));
    s.add_flow(FlowInput::script("B")).await.unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    let f = registry(secrets())
        .open(&reference)
        .unwrap()
        .get_flow("B")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.bytes().len(), big.len());
    assert!(f.bytes() == big.as_bytes());
    assert_eq!(f.revision.as_deref(), Some(SHA2));
}

#[tokio::test]
async fn a_ref_that_cannot_be_resolved_never_falls_back_to_the_default_branch() {
    let fake = need_fake!("a_ref_that_cannot_be_resolved_never_falls_back_to_the_default_branch");
    let repo = repo_name("gh-nofallback");
    fake.seed(&repo, "main", &[("f.py", "N")], &[]).await;
    // A 200 that holds no SHA (a proxy's page, a wrong base_url): an error, not `?ref=`.
    fault(&fake, &repo, "commits/", 200, 1, 0).await;
    let mut s = storage(&fake, &repo, "f.py", Some("v1"));
    s.add_flow(FlowInput::script("N")).await.unwrap();
    let err = s.get_flow("N").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&repo) && msg.contains("v1") && msg.contains("no commit SHA"),
        "{msg}"
    );
    // Server errors that outlast the retries: a temporary error naming the repository and ref.
    fault(&fake, &repo, "commits/", 502, 10, 0).await;
    let err = s.get_flow("N").await.unwrap_err();
    fault(&fake, &repo, "commits/", 502, 0, 0).await;
    assert!(err.is_temporary(), "{err:?}");
    assert!(
        err.to_string().contains(&repo) && err.to_string().contains("v1"),
        "{err}"
    );
    // An empty repository (409): its ref is missing, said plainly.
    let empty = repo_name("gh-empty");
    fake.post(
        "/_fake/seed",
        serde_json::json!({"repo": empty, "default_branch": "main", "branches": {}, "tags": {}, "commits": {}}),
    )
    .await;
    for r in [None, Some("main")] {
        let mut s = storage(&fake, &empty, "f.py", r);
        s.add_flow(FlowInput::script("N")).await.unwrap();
        let err = s.get_flow("N").await.unwrap_err();
        assert_not_found(&err, "ref");
        assert!(err.to_string().contains("empty"), "{err}");
    }
}

#[tokio::test]
async fn secondary_rate_limits_are_waited_out_then_reported() {
    let fake = need_fake!("secondary_rate_limits_are_waited_out_then_reported");
    let repo = repo_name("gh-secondary");
    fake.seed(&repo, "main", &[("f.py", "S")], &[]).await;
    let mut s = storage(&fake, &repo, "f.py", None);
    s.add_flow(FlowInput::script("S")).await.unwrap();
    // 403 and 429 with `Retry-After: 1` (quota left): waited out, then read.
    fault(&fake, &repo, "", 403, 1, 1).await;
    fault(&fake, &repo, "contents/", 429, 1, 1).await;
    let (t, _) = text(&s, "S").await;
    assert!(t.contains("# main"), "{t}");
    // A wait longer than flowstore's bound: reported at once as a rate limit, not a refusal
    // and not a missing repository.
    for on in ["repos/", "commits/", "contents/"] {
        fault(&fake, &repo, on, 403, 1, 3600).await;
        let err = s.get_flow("S").await.unwrap_err();
        assert!(err.is_temporary() && !err.is_not_found(), "{on}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("secondary rate limit") && msg.contains(&repo) && msg.contains("3600 s"),
            "{on}: {msg}"
        );
    }
}

/// GitHub's published OpenAPI description (github/rest-api-description's `api.github.com.json`,
/// as npm's `@octokit/openapi` 23.0.2 ships it; `cargo xtask test` downloads it into
/// `target/replay-data/` and names it in `FLOWSTORE_TEST_GITHUB_OPENAPI`).
fn openapi() -> Result<serde_json::Value, flowstore_core::testkit::Skip> {
    let path = std::env::var("FLOWSTORE_TEST_GITHUB_OPENAPI").map_err(|_| {
        flowstore_core::testkit::Skip(
            "FLOWSTORE_TEST_GITHUB_OPENAPI is not set: GitHub's OpenAPI description was not \
             downloaded (cargo xtask test does)"
                .into(),
        )
    })?;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Ok(serde_json::from_str(&text).unwrap())
}

/// Follows a `{"$ref": "#/components/…"}` in the description.
fn deref<'a>(root: &'a serde_json::Value, v: &'a serde_json::Value) -> &'a serde_json::Value {
    match v["$ref"].as_str() {
        Some(r) => deref(root, root.pointer(r.trim_start_matches('#')).unwrap()),
        None => v,
    }
}

/// The JSON Schema subset the description uses for these answers: types (with `nullable`),
/// `enum`, `required` (when `required` is true), `properties`, `items`, `oneOf`. Returns what
/// does not fit, with its place.
fn violations(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    v: &serde_json::Value,
    at: &str,
    required: bool,
) -> Vec<String> {
    use serde_json::Value;
    let schema = deref(root, schema);
    if let Some(options) = schema["oneOf"].as_array() {
        // Fits one of them, or the closest one's misfits are reported.
        return options
            .iter()
            .map(|o| violations(root, o, v, at, required))
            .min_by_key(Vec::len)
            .unwrap_or_default();
    }
    if v.is_null() {
        return if schema["nullable"] == Value::Bool(true) || schema.get("type").is_none() {
            vec![]
        } else {
            vec![format!("{at}: null, not nullable")]
        };
    }
    let type_ok = match schema["type"].as_str() {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !type_ok {
        return vec![format!("{at}: {v} is not of type {}", schema["type"])];
    }
    let mut out = Vec::new();
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(v) {
            out.push(format!("{at}: {v} is not one of {allowed:?}"));
        }
    }
    if let (Some(obj), Some(props)) = (v.as_object(), schema["properties"].as_object()) {
        if required {
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                if !obj.contains_key(r) {
                    out.push(format!("{at}: required \"{r}\" is missing"));
                }
            }
        }
        for (k, value) in obj {
            match props.get(k) {
                Some(s) => out.extend(violations(root, s, value, &format!("{at}.{k}"), required)),
                None => out.push(format!("{at}: \"{k}\" is not in the description")),
            }
        }
    }
    if let (Some(items), Some(schema)) = (v.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            out.extend(violations(
                root,
                schema,
                item,
                &format!("{at}[{i}]"),
                required,
            ));
        }
    }
    out
}

#[tokio::test]
async fn the_fake_answers_as_githubs_openapi_description_says() {
    let fake = need_fake!("the_fake_answers_as_githubs_openapi_description_says");
    let spec = match openapi() {
        Ok(s) => s,
        Err(reason) => {
            return flowstore_core::testkit::skip(
                "the_fake_answers_as_githubs_openapi_description_says",
                &reason,
            )
        }
    };
    let repo = repo_name("gh-openapi");
    seed_exact(
        &fake,
        &repo,
        serde_json::json!({"flows/a.py": "print('a')\n", "flows/sub/b.py": "b", "big.py": "#\n".repeat(600_000)}),
    )
    .await;
    let empty = repo_name("gh-openapi-empty");
    fake.post(
        "/_fake/seed",
        serde_json::json!({"repo": empty, "default_branch": "main", "branches": {}, "tags": {}, "commits": {}}),
    )
    .await;
    let paths = &spec["paths"];
    // The `{ref}` of commits and the `{path}` of contents are multi-segment: slashes are sent
    // as slashes (what flowstore does and the fake requires).
    let params = |p: &str| -> Vec<serde_json::Value> {
        paths[p]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| deref(&spec, x).clone())
            .collect()
    };
    assert!(params("/repos/{owner}/{repo}/commits/{ref}")
        .iter()
        .any(|p| p["name"] == "ref" && p["x-multi-segment"] == true));
    assert!(params("/repos/{owner}/{repo}/contents/{path}")
        .iter()
        .any(|p| p["name"] == "path" && p["x-multi-segment"] == true));
    // The media types flowstore asks for are the documented ones.
    let commit_doc = paths["/repos/{owner}/{repo}/commits/{ref}"]["get"]["description"]
        .as_str()
        .unwrap();
    assert!(commit_doc.contains("application/vnd.github.sha"));
    let blob_doc = paths["/repos/{owner}/{repo}/git/blobs/{file_sha}"]["get"]["description"]
        .as_str()
        .unwrap();
    assert!(blob_doc.contains("application/vnd.github.raw+json"));
    let client = reqwest::Client::new();
    let token = env("FLOWSTORE_TEST_GITHUB_TOKEN");
    let big_blob = {
        let r = client
            .get(format!(
                "{}/github/repos/{repo}/contents/big.py?ref=main",
                fake.base
            ))
            .bearer_auth(&token)
            .header("Accept", "application/vnd.github+json")
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            (v["encoding"].as_str(), v["content"].as_str()),
            (Some("none"), Some(""))
        );
        v["sha"].as_str().unwrap().to_string()
    };
    // (described path, request path, Accept, expected status, check required fields too)
    let cases = [
        (
            "/repos/{owner}/{repo}",
            format!("/repos/{repo}"),
            "application/vnd.github+json",
            200,
            false,
        ),
        (
            "/repos/{owner}/{repo}",
            "/repos/nobody/nothing".into(),
            "application/vnd.github+json",
            404,
            true,
        ),
        (
            "/repos/{owner}/{repo}/commits/{ref}",
            format!("/repos/{repo}/commits/main"),
            "application/vnd.github+json",
            200,
            false,
        ),
        (
            "/repos/{owner}/{repo}/commits/{ref}",
            format!("/repos/{repo}/commits/nope"),
            "application/vnd.github+json",
            422,
            false,
        ),
        (
            "/repos/{owner}/{repo}/commits/{ref}",
            format!("/repos/{empty}/commits/main"),
            "application/vnd.github+json",
            409,
            true,
        ),
        (
            "/repos/{owner}/{repo}/contents/{path}",
            format!("/repos/{repo}/contents/flows/a.py?ref=main"),
            "application/vnd.github+json",
            200,
            true,
        ),
        (
            "/repos/{owner}/{repo}/contents/{path}",
            format!("/repos/{repo}/contents/flows?ref=main"),
            "application/vnd.github+json",
            200,
            true,
        ),
        (
            "/repos/{owner}/{repo}/contents/{path}",
            format!("/repos/{repo}/contents/flows?ref=main"),
            "application/vnd.github.object+json",
            200,
            true,
        ),
        (
            "/repos/{owner}/{repo}/contents/{path}",
            format!("/repos/{repo}/contents/big.py?ref=main"),
            "application/vnd.github.object+json",
            200,
            true,
        ),
        (
            "/repos/{owner}/{repo}/contents/{path}",
            format!("/repos/{repo}/contents/big.py?ref=main"),
            "application/vnd.github+json",
            200,
            true,
        ),
        (
            "/repos/{owner}/{repo}/contents/{path}",
            format!("/repos/{repo}/contents/none.py?ref=main"),
            "application/vnd.github+json",
            404,
            true,
        ),
        (
            "/repos/{owner}/{repo}/git/blobs/{file_sha}",
            format!("/repos/{repo}/git/blobs/{big_blob}"),
            "application/vnd.github+json",
            200,
            true,
        ),
    ];
    for (described, path, accept, status, required) in cases {
        let r = client
            .get(format!("{}/github{path}", fake.base))
            .bearer_auth(&token)
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let responses = &paths[described]["get"]["responses"];
        let answer = deref(&spec, &responses[status.to_string()]);
        assert!(
            answer.is_object(),
            "{described}: {status} is not a documented answer"
        );
        // The description keys the object media type's schema without `+json`.
        let media = match accept {
            "application/vnd.github.object+json" => "application/vnd.github.object",
            _ => "application/json",
        };
        let schema = &answer["content"][media]["schema"];
        assert!(schema.is_object(), "{described} {status}: no JSON schema");
        let v: serde_json::Value = r.json().await.unwrap();
        let wrong = violations(&spec, schema, &v, path.as_str(), required);
        assert!(wrong.is_empty(), "{described} {status}: {wrong:#?}");
    }
    // The sha media type: the bare SHA; raw blobs: the bytes.
    let r = client
        .get(format!("{}/github/repos/{repo}/commits/main", fake.base))
        .bearer_auth(&token)
        .header("Accept", "application/vnd.github.sha")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), SHA2);
    let r = client
        .get(format!(
            "{}/github/repos/{repo}/git/blobs/{big_blob}",
            fake.base
        ))
        .bearer_auth(&token)
        .header("Accept", "application/vnd.github.raw+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 1_200_000);
}

#[tokio::test]
async fn a_ref_is_resolved_to_its_bare_sha_with_its_slashes_sent_as_slashes() {
    let fake = need_fake!("a_ref_is_resolved_to_its_bare_sha_with_its_slashes_sent_as_slashes");
    let repo = repo_name("gh-shaonly");
    fake.seed(
        &repo,
        "main",
        &[("f.py", "Q")],
        &[("release/2026/q4", SHA1)],
    )
    .await;
    for (r, sha) in [("feature/x", SHA3), ("release/2026/q4", SHA1)] {
        let mut s = storage(&fake, &repo, "f.py", Some(r));
        s.add_flow(FlowInput::script("Q")).await.unwrap();
        let (_, rev) = text(&s, "Q").await;
        assert_eq!(rev, sha, "{r}");
    }
    let log: Vec<serde_json::Value> = reqwest::Client::new()
        .get(format!("{}/github/_fake/requests", fake.base))
        .query(&[("repo", &repo)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for r in ["feature/x", "release/2026/q4"] {
        let path = format!("/github/repos/{repo}/commits/{r}");
        let asked: Vec<&serde_json::Value> = log.iter().filter(|e| e["path"] == path).collect();
        assert_eq!(asked.len(), 1, "{path} in {log:#?}");
        // Only the SHA is asked for, not the commit's JSON (its files, stats and signature).
        assert_eq!(asked[0]["accept"], "application/vnd.github.sha", "{log:#?}");
    }
    assert!(
        !log.iter()
            .any(|e| e["path"].as_str().unwrap().contains("%2F")),
        "{log:#?}"
    );
}
