//! CodeCommit storage judged by botocore, the AWS SDK core for Python (under boto3 and the AWS
//! CLI): `cargo xtask test` starts `xtask/src/servers/botocore_judge.py`, which checks every
//! request flowstore sends against botocore's own CodeCommit service model (operation, content
//! type, input shape with `botocore.validate.validate_parameters`) and recomputes its SigV4
//! signature with `botocore.auth.SigV4Auth`. botocore is the judge here, not code of ours: a
//! request it accepts is re-signed by botocore and answered by the fake CodeCommit API (which
//! holds the seeded repositories); a request it refuses gets AWS's error with botocore's reason.

mod fake_apis;

use std::sync::Arc;

use fake_apis::{env, need_fake, repo_name, Fake, SHA1, SHA2, SHA3};
use flowstore_core::testkit::Skip;
use flowstore_core::{Error, FlowInput, Storage};
use flowstore_git::{CodeCommit, CodeCommitBuilder};
use flowstore_secrets::MapSource;
use serde_json::Value;

/// The judge's base URL, or a reason to skip.
fn judge() -> Result<String, Skip> {
    std::env::var("FLOWSTORE_TEST_BOTOCORE_JUDGE").map_err(|_| {
        Skip("FLOWSTORE_TEST_BOTOCORE_JUDGE is not set: the botocore judge is not running (cargo xtask test starts it)".into())
    })
}

macro_rules! need_judge {
    ($name:literal) => {{
        let fake = need_fake!($name);
        match judge() {
            Ok(j) => (fake, j),
            Err(reason) => return flowstore_core::testkit::skip($name, &reason),
        }
    }};
}

fn creds(secret: &str, token: Option<&str>) -> Arc<MapSource> {
    let mut c = serde_json::json!({"ACCESS_KEY": env("FLOWSTORE_TEST_AWS_KEY"), "SECRET_ACCESS_KEY": secret});
    if let Some(t) = token {
        c["SESSION_TOKEN"] = Value::String(t.into());
    }
    Arc::new(MapSource::new().with("AWS_CREDENTIALS", &c.to_string()))
}

fn builder(judge: &str, repo: &str, path: &str, region: &str) -> CodeCommitBuilder {
    CodeCommit::builder(repo, path)
        .endpoint_url(format!("{judge}/"))
        .region(region)
}

async fn get(judge: &str, path: &str) -> Value {
    reqwest::get(format!("{judge}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// botocore's verdicts on the requests made for `repo`.
async fn verdicts(judge: &str, repo: &str) -> Vec<Value> {
    get(judge, &format!("/_judge/verdicts?repo={repo}"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn fetch(s: &mut CodeCommit) -> flowstore_core::Result<(String, String)> {
    s.add_flow(FlowInput::script("C")).await?;
    s.persist().await?;
    let f = s.get_flow("C").await?;
    Ok((
        String::from_utf8_lossy(f.bytes()).into_owned(),
        f.revision.unwrap_or_default(),
    ))
}

async fn seed(fake: &Fake, path: &str) -> String {
    let repo = repo_name("cc").replace('/', "-");
    fake.seed(&repo, "main", &[(path, "C")], &[]).await;
    repo
}

#[tokio::test]
async fn botocore_accepts_every_get_file_flowstore_sends() {
    let (fake, judge) = need_judge!("botocore_accepts_every_get_file_flowstore_sends");
    let path = "flows/my flow ü+1.py";
    let repo = seed(&fake, path).await;
    let secret = env("FLOWSTORE_TEST_AWS_SECRET");
    let cases = [
        (None, "# main", SHA2, None),
        (Some("feature/x"), "# feature", SHA3, None),
        (
            Some("v1"),
            "# v1",
            SHA1,
            Some("session-token/with+odd=chars"),
        ),
        (Some("refs/heads/main"), "# main", SHA2, None),
        (Some(SHA1), "# v1", SHA1, None),
    ];
    for (region, (commit, want, sha, token)) in [
        "us-east-1",
        "eu-west-1",
        "cn-north-1",
        "ap-southeast-2",
        "us-gov-west-1",
    ]
    .iter()
    .zip(cases)
    {
        let mut b = builder(&judge, &repo, path, region).secrets(creds(&secret, token));
        if let Some(c) = commit {
            b = b.commit(c);
        }
        let (text, revision) = fetch(&mut b.build().unwrap())
            .await
            .unwrap_or_else(|e| panic!("{commit:?} in {region}: {e}"));
        assert!(text.contains(want), "{commit:?}: {text}");
        assert_eq!(revision, sha);
    }
    let seen = verdicts(&judge, &repo).await;
    // persist + get_flow for each case.
    assert_eq!(seen.len(), 10, "{seen:#?}");
    for v in &seen {
        assert_eq!(v["signature"], true, "{v}");
        assert_eq!(v["params"], true, "{v}");
        assert_eq!(v["operation"], "GetFile", "{v}");
        assert_eq!(v["upstream_status"], 200, "{v}");
        assert_eq!(v["input"]["filePath"], path, "{v}");
    }
}

#[tokio::test]
async fn botocore_refuses_a_wrong_signature_and_a_malformed_request() {
    let (fake, judge) = need_judge!("botocore_refuses_a_wrong_signature_and_a_malformed_request");
    let repo = seed(&fake, "c.py").await;
    let mut s = builder(&judge, &repo, "c.py", "us-east-1")
        .secrets(creds("wrong-secret-c4n4ry", None))
        .build()
        .unwrap();
    let err = fetch(&mut s).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(!format!("{err:?}").contains("c4n4ry"));
    let seen = verdicts(&judge, &repo).await;
    assert!(
        seen.iter().all(|v| v["signature"] == false
            && v["refused"]
                .as_str()
                .unwrap_or_default()
                .contains("does not match")),
        "{seen:#?}"
    );
    // The judge really validates against botocore's model: requests sent by hand, with a
    // member missing, then an unknown one.
    for (body, needle) in [
        (
            serde_json::json!({"repositoryName": repo}),
            "Missing required parameter in input: \"filePath\"",
        ),
        (
            serde_json::json!({"repositoryName": repo, "filePath": "c.py", "ref": "main"}),
            "Unknown parameter in input: \"ref\"",
        ),
    ] {
        let r = reqwest::Client::new()
            .post(format!("{judge}/"))
            .header("x-amz-target", "CodeCommit_20150413.GetFile")
            .header("content-type", "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["__type"], "ValidationException", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn throttled_calls_are_signed_afresh_and_accepted_each_time() {
    let (fake, judge) = need_judge!("throttled_calls_are_signed_afresh_and_accepted_each_time");
    let repo = seed(&fake, "c.py").await;
    let r = reqwest::Client::new()
        .post(format!("{}/codecommit/", fake.base))
        .header("x-amz-target", "FlowstoreFake.InjectFault")
        .json(&serde_json::json!({"repositoryName": repo, "type": "ThrottlingException", "status": 400, "count": 2}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let mut s = builder(&judge, &repo, "c.py", "us-east-1")
        .secrets(creds(&env("FLOWSTORE_TEST_AWS_SECRET"), None))
        .build()
        .unwrap();
    s.add_flow(FlowInput::script("C")).await.unwrap();
    let f = s.get_flow("C").await.unwrap();
    assert!(String::from_utf8_lossy(f.bytes()).contains("# main"));
    let seen = verdicts(&judge, &repo).await;
    let statuses: Vec<&Value> = seen.iter().map(|v| &v["upstream_status"]).collect();
    assert_eq!(statuses, [400, 400, 200], "{seen:#?}");
    assert!(seen
        .iter()
        .all(|v| v["signature"] == true && v["params"] == true));
}

#[tokio::test]
async fn default_endpoints_are_the_ones_botocore_resolves() {
    let (_fake, judge) = need_judge!("default_endpoints_are_the_ones_botocore_resolves");
    for region in [
        "us-east-1",
        "eu-central-1",
        "cn-north-1",
        "cn-northwest-1",
        "us-gov-west-1",
    ] {
        let ours = CodeCommit::builder("r", "f.py")
            .region(region)
            .build()
            .unwrap()
            .config()
            .endpoint();
        let botocore = get(&judge, &format!("/_judge/endpoint?region={region}")).await;
        assert_eq!(
            ours.trim_end_matches('/'),
            botocore["endpoint_url"].as_str().unwrap(),
            "{region}"
        );
    }
}
