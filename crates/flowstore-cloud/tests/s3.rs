//! S3 storage against moto's S3 server on 127.0.0.1 (started by `cargo xtask test`:
//! `FLOWSTORE_TEST_S3_ENDPOINT`, `FLOWSTORE_TEST_S3_BUCKET`). moto accepts any credentials, so
//! wrong credentials cannot be tested here; Azure's tests cover that path.

mod support;

use std::sync::Arc;

use flowstore_cloud::{S3Builder, S3};
use flowstore_core::envelope::seal;
use flowstore_core::testkit::Skip;
use flowstore_core::{OpenContext, Storage};
use flowstore_secrets::MapSource;
use support::{app, closed_port, fast_retry, unique, Case};

const CREDS: &str =
    r#"{"ACCESS_KEY": "AKIAFLOWSTORETEST", "SECRET_ACCESS_KEY": "s3-s3cr3t-c4n4ry"}"#;

fn case() -> Result<Case<S3>, Skip> {
    let endpoint = std::env::var("FLOWSTORE_TEST_S3_ENDPOINT")
        .map_err(|_| Skip("FLOWSTORE_TEST_S3_ENDPOINT is not set: the S3 server is not running (cargo xtask test starts it)".into()))?;
    let bucket =
        std::env::var("FLOWSTORE_TEST_S3_BUCKET").unwrap_or_else(|_| "flowstore-test".into());
    let secrets = Arc::new(MapSource::new().with("AWS_CREDENTIALS", CREDS));
    let base = {
        let (endpoint, bucket, secrets) = (endpoint.clone(), bucket.clone(), secrets.clone());
        move || {
            S3::builder(&bucket)
                .endpoint(&endpoint)
                .allow_http(true)
                .secrets(secrets.clone())
                .retry(fast_retry())
        }
    };
    let b1 = base.clone();
    let b2 = base.clone();
    let b3 = base.clone();
    let b4 = base.clone();
    let b5 = base.clone();
    let e2 = endpoint.clone();
    let (s2, s3) = (secrets.clone(), secrets.clone());
    Ok(Case {
        storage: Box::new(move |p| b1().prefix(p).build().unwrap()),
        script: Box::new(move |p, path| b2().prefix(p).script(path).build().unwrap()),
        fixed_key: Box::new(move |k| b3().key(k).build().unwrap()),
        script_key: Box::new(move |k| {
            let s = b4().stored_as_script(true);
            match k {
                Some(k) => s.key(k).build(),
                None => s.build(),
            }
        }),
        wrong_bucket: Box::new(move || {
            S3::builder("flowstore-no-such-bucket")
                .endpoint(&e2)
                .allow_http(true)
                .secrets(s2.clone())
                .retry(fast_retry())
                .build()
                .unwrap()
        }),
        server_down: Box::new(move || {
            S3::builder("flowstore-test")
                .secrets(s3.clone())
                .endpoint(format!("http://127.0.0.1:{}", closed_port()))
                .allow_http(true)
                .retry(fast_retry())
                .build()
                .unwrap()
        }),
        upstream: endpoint.clone(),
        via: Box::new(move |p, e| b5().prefix(p).endpoint(e).build().unwrap()),
        credential: Some("s3-s3cr3t-c4n4ry".into()),
        secrets,
    })
}

cloud_tests!(
    fixed_key_is_honoured_and_never_overwritten,
    script_mode_with_a_key_only,
    wrong_bucket_is_named,
    missing_object_is_not_found,
    missing_bucket_is_not_found,
    server_down_fails_after_bounded_retries,
    hundred_mib_script_streams,
    listing_is_newest_first,
    bundle_reregistration_uploads_one_blob_and_the_manifest,
    bundle_warm_fetch_reads_one_range,
    bundles_need_default_keys_and_serialized_mode,
    credentials_never_leak,
);

#[tokio::test]
async fn credentials_in_client_options_are_refused() {
    let reference = serde_json::json!({
        "type": "S3", "bucket": "b", "flows": {},
        "client_options": {"aws_access_key_id": "AKIA", "aws_secret_access_key": "do-not-store"},
    });
    let err = support::registry()
        .open_json(&reference.to_string())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("client_options.aws_access_key_id") && err.contains("AWS_CREDENTIALS"),
        "{err}"
    );
    assert!(!err.contains("do-not-store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefect1_reference_opens_and_fetches() {
    let Ok(c) = case() else {
        return flowstore_core::testkit::skip(
            "prefect1_reference_opens_and_fetches",
            &Skip("no S3 server".into()),
        );
    };
    // A flow written the way Prefect 1.4 writes it (JSON with a base64 pickle) under its key.
    let key = support::unique("prefect").replace('/', "-")
        + "/my-etl-flow/2026-11-24t03-18-11-800187-00-00";
    let s = (c.fixed_key)(&key);
    s.replace_object_for_tests(
        &key,
        bytes::Bytes::from_static(
            br#"{"flow": "gASVAAAAAAAAAAA=", "versions": {"prefect": "1.4.1"}}"#,
        ),
    )
    .await
    .unwrap();
    let endpoint = std::env::var("FLOWSTORE_TEST_S3_ENDPOINT").unwrap();
    let reference = serde_json::json!({
        "__version__": "1.4.1", "type": "S3", "bucket": "flowstore-test", "key": null,
        "stored_as_script": false, "client_options": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        "secrets": [], "flows": {"My ETL Flow": key},
    });
    let f = c
        .registry()
        .open_json(&reference.to_string())
        .unwrap()
        .get_flow("My ETL Flow")
        .await
        .unwrap();
    assert_eq!(f.form(), "prefect1-pickle");
}

fn endpoint(test: &str) -> Option<String> {
    match std::env::var("FLOWSTORE_TEST_S3_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) => {
            flowstore_core::testkit::skip(test, &Skip("no S3 server".into()));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_credentials_work_and_never_leak() {
    let Some(endpoint) = endpoint("typed_credentials_work_and_never_leak") else {
        return;
    };
    let builder = S3::builder("flowstore-test")
        .endpoint(&endpoint)
        .prefix(unique("typed"))
        .access_key_id("AKIATYPEDTEST")
        .secret_access_key("typed-s3cr3t-c4n4ry")
        .session_token("typed-t0k3n-c4n4ry");
    let debug = format!("{builder:?}");
    let mut s = builder.build().unwrap();
    s.add_flow(seal("F", &"typed", &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let v: String = s.get_flow("F").await.unwrap().decode(&app()).unwrap();
    assert_eq!(v, "typed");
    for (what, text) in [
        ("the builder's Debug", debug),
        ("the storage's Debug", format!("{s:?}")),
        ("the reference", s.reference().unwrap().to_json()),
    ] {
        for canary in ["typed-s3cr3t-c4n4ry", "typed-t0k3n-c4n4ry", "AKIATYPEDTEST"] {
            flowstore_secrets::test_support::assert_secret_absent(canary, &text, what);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_options_and_its_reference_open_the_same_config() {
    let Some(endpoint) = endpoint("a_url_with_options_and_its_reference_open_the_same_config")
    else {
        return;
    };
    let url = format!(
        "s3://flowstore-test/{}?endpoint_url={endpoint}&region=eu-west-1&allow_http=true&label=prod",
        unique("url")
    );
    let ctx = OpenContext {
        options: vec![("label".into(), "eu".into())],
        secrets: Arc::new(MapSource::new().with("AWS_CREDENTIALS", CREDS)),
        ..OpenContext::default()
    };
    let mut s = S3::from_url(&url, &ctx).unwrap();
    let opts = &s.config().client_options;
    assert_eq!(opts.endpoint_url.as_deref(), Some(endpoint.as_str()));
    assert_eq!(opts.region_name.as_deref(), Some("eu-west-1"));
    assert_eq!(opts.allow_http, Some(true));
    assert_eq!(s.labels(), ["prod", "eu"]);
    s.add_flow(seal("F", &2, &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    assert_eq!(reference.labels, ["prod", "eu"]);
    let reopened = S3::from_reference(&reference, &ctx).unwrap();
    assert_eq!(reopened.config(), s.config());
    let v: i32 = reopened
        .get_flow("F")
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    assert_eq!(v, 2);
    let err = S3Builder::from_url("s3://flowstore-test?regin=eu-west-1")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Unknown S3 option \"regin\"") && err.contains("region"),
        "{err}"
    );
}
