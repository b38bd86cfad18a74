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
use support::{app, unique, Case};

const CREDS: &str =
    r#"{"ACCESS_KEY": "AKIAFLOWSTORETEST", "SECRET_ACCESS_KEY": "s3-s3cr3t-c4n4ry"}"#;

fn case() -> Result<Case<S3>, Skip> {
    let endpoint = std::env::var("FLOWSTORE_TEST_S3_ENDPOINT")
        .map_err(|_| Skip("FLOWSTORE_TEST_S3_ENDPOINT is not set: the S3 server is not running (cargo xtask test starts it)".into()))?;
    let bucket =
        std::env::var("FLOWSTORE_TEST_S3_BUCKET").unwrap_or_else(|_| "flowstore-test".into());
    let secrets = Arc::new(MapSource::new().with("AWS_CREDENTIALS", CREDS));
    Ok(support::s3_case(
        &endpoint,
        &bucket,
        secrets,
        "s3-s3cr3t-c4n4ry",
    ))
}

cloud_tests!(
    fixed_key_is_honoured_and_never_overwritten,
    large_upload_to_a_taken_fixed_key_is_refused,
    large_upload_is_create_only_where_it_completes,
    key_taken_during_a_large_upload_is_not_replaced,
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
    reopened_references_share_one_connection,
    a_fetch_is_one_get,
);

/// Not on moto: moto 5 checks `If-None-Match: *` on CompleteMultipartUpload, then assembles the
/// parts before it stores the object (`complete_multipart_upload` in `moto/s3/responses.py`
/// and `models.py`), so two completions arriving together can both pass the check, and the
/// later replaces the earlier. AWS S3 checks and commits at once ("the first write to finish
/// succeeds"). `key_taken_during_a_large_upload_is_not_replaced` shows the condition is sent and
/// honoured once the other object is there.
#[test]
fn racing_large_uploads_to_one_fixed_key_store_one() {
    flowstore_core::testkit::not_applicable(
        "racing_large_uploads_to_one_fixed_key_store_one",
        "moto checks If-None-Match on CompleteMultipartUpload before it assembles the parts, not atomically with storing the object (key_taken_during_a_large_upload_is_not_replaced covers the condition)",
    );
}

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
    assert_eq!(s.config().allow_http, Some(true));
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

/// 2,500 versions of one flow: moto's ListObjectsV2 answers 1,000 keys a page, so listing
/// pages three times, and the plan and the deletions cover every page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_versions_paged() {
    use flowstore_core::prune::{self, PruneOptions, Reason, RetentionPolicy};
    use flowstore_core::testkit::recording::RecordingProxy;
    use futures::StreamExt;
    use object_store::{path::Path as ObjectPath, ObjectStore, ObjectStoreExt, PutPayload};

    const VERSIONS: usize = 2_500;
    const KEEP: usize = 3;
    let c = match case() {
        Ok(c) => c,
        Err(reason) => {
            return flowstore_core::testkit::skip("thousands_of_versions_paged", &reason);
        }
    };
    let prefix = unique("paged");
    let name = "Paged Flow";
    let mut first = (c.storage)(&prefix);
    first
        .add_flow(seal(name, &"paged", &app()).unwrap().into())
        .await
        .unwrap();
    first.persist().await.unwrap();
    let registered = first.list_versions(Some(name)).await.unwrap();
    assert_eq!(registered.len(), 1, "{registered:?}");
    let bytes = first.read_version(&registered[0]).await.unwrap();

    // The other 2,499 versions are written with an object_store client of our own: a storage
    // only ever writes a fresh key stamped "now" at `persist`, one registration at a time, while
    // this test needs thousands of versions quickly (uploaded 32 at a time) and the newest three
    // known in advance. They are the real version's bytes (a sealed envelope) under the keys a
    // registration would have chosen, `<prefix>/<slug>/<timestamp slug>`, each later than the
    // one before.
    let direct = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(
            std::env::var("FLOWSTORE_TEST_S3_BUCKET").unwrap_or("flowstore-test".into()),
        )
        .with_endpoint(std::env::var("FLOWSTORE_TEST_S3_ENDPOINT").unwrap())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("AKIAFLOWSTORETEST")
        .with_secret_access_key("s3-s3cr3t-c4n4ry")
        .build()
        .unwrap();
    let slug = flowstore_core::key::flow_slug(name);
    let start = chrono::Utc::now();
    let keys: Vec<String> = (1..VERSIONS as i64)
        .map(|i| {
            let at = start + chrono::Duration::milliseconds(i);
            format!(
                "{prefix}/{slug}/{}",
                flowstore_core::key::timestamp_slug(&at)
            )
        })
        .collect();
    let put = |key: &String| {
        let (direct, bytes) = (&direct, bytes.clone());
        let path = ObjectPath::from(key.as_str());
        async move { direct.put(&path, PutPayload::from(bytes)).await.unwrap() }
    };
    let (older, newest) = keys.split_at(keys.len() - KEEP);
    futures::stream::iter(older.iter().map(put))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    // The newest three are also the last written, a second later: the plan orders a flow's
    // versions by the time the storage reports (moto's has millisecond or second precision).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for key in newest {
        put(key).await;
    }

    // Planned through a recording proxy, to see the listing's pages.
    let proxy = RecordingProxy::start_url(&c.upstream).await;
    let watched = (c.via)(&prefix, &proxy.url());
    let options = PruneOptions::new(RetentionPolicy {
        keep_last: Some(KEEP),
        older_than: None,
    });
    let timer = std::time::Instant::now();
    let plan = prune::plan(&watched, &options).await.unwrap();
    let planned_in = timer.elapsed();
    let lists: Vec<String> = proxy
        .take()
        .into_iter()
        .filter(|x| x.method == "GET" && x.target.contains("list-type=2"))
        .map(|x| x.target)
        .collect();
    let follow_ups = lists
        .iter()
        .filter(|t| t.contains("continuation-token"))
        .count();
    assert!(
        follow_ups >= 2,
        "{VERSIONS} keys take three pages of 1,000: {lists:#?}"
    );
    assert_eq!(plan.versions.len(), VERSIONS);
    assert!(
        plan.versions
            .iter()
            .all(|v| v.version.flow.as_deref() == Some(name) && v.version.slug == slug),
        "every version's header was read"
    );
    let deleting: Vec<&str> = plan.deleting().map(|v| v.location.as_str()).collect();
    assert_eq!(deleting.len(), VERSIONS - KEEP);
    assert!(deleting.contains(&registered[0].location.as_str()));
    let kept: Vec<(&str, Reason)> = plan
        .versions
        .iter()
        .filter(|v| v.reason.keeps())
        .map(|v| (v.version.location.as_str(), v.reason))
        .collect();
    let mut expected: Vec<&str> = newest.iter().map(String::as_str).collect();
    expected.reverse();
    assert_eq!(
        kept,
        [
            (expected[0], Reason::Newest),
            (expected[1], Reason::WithinKeepLast),
            (expected[2], Reason::WithinKeepLast)
        ]
    );

    let timer = std::time::Instant::now();
    let report = prune::execute(&first, &plan, &options, None).await.unwrap();
    eprintln!(
        "thousands_of_versions_paged: {VERSIONS} versions in {} list pages, planned in \
         {planned_in:.1?} (through the proxy), {} deleted in {:.1?}",
        follow_ups + 1,
        report.versions_deleted,
        timer.elapsed()
    );
    assert_eq!(report.versions_deleted, VERSIONS - KEEP);
    let left = first.list_versions(Some(name)).await.unwrap();
    let left: Vec<&str> = left.iter().map(|v| v.location.as_str()).collect();
    assert_eq!(left, expected);
    // Nothing else is left under the prefix either (no blobs were stored).
    let objects: Vec<_> = direct
        .list(Some(&ObjectPath::from(prefix.as_str())))
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    assert_eq!(objects.len(), KEEP, "{objects:?}");
}
