//! S3 storage against `s3s-fs`, an S3 server that checks every request's SigV4 signature
//! (started by `cargo xtask test`: `FLOWSTORE_TEST_S3S_ENDPOINT`, `FLOWSTORE_TEST_S3S_BUCKET`,
//! `FLOWSTORE_TEST_S3S_ACCESS_KEY`, `FLOWSTORE_TEST_S3S_SECRET_KEY`). moto (`tests/s3.rs`)
//! accepts any credentials; here the conformance suite and the shared cloud tests pass only if
//! flowstore signs each request right, and a wrong secret key is refused.

mod support;

use std::sync::Arc;

use flowstore_cloud::S3;
use flowstore_core::envelope::seal;
use flowstore_core::testkit::Skip;
use flowstore_core::{Error, Storage};
use flowstore_secrets::MapSource;
use support::{app, fast_retry, unique, Case};

/// The server and the credentials it checks.
struct Server {
    endpoint: String,
    bucket: String,
    access_key: String,
    secret_key: String,
}

fn server() -> Result<Server, Skip> {
    let var = |name: &str| {
        std::env::var(name).map_err(|_| {
            Skip(format!(
                "{name} is not set: the SigV4-checking S3 server (s3s-fs) is not running \
                 (cargo xtask test starts it)"
            ))
        })
    };
    Ok(Server {
        endpoint: var("FLOWSTORE_TEST_S3S_ENDPOINT")?,
        bucket: var("FLOWSTORE_TEST_S3S_BUCKET")?,
        access_key: var("FLOWSTORE_TEST_S3S_ACCESS_KEY")?,
        secret_key: var("FLOWSTORE_TEST_S3S_SECRET_KEY")?,
    })
}

/// The `AWS_CREDENTIALS` secret (Prefect 1's form) holding `key` and `secret`.
fn credentials(key: &str, secret: &str) -> Arc<MapSource> {
    let json = serde_json::json!({"ACCESS_KEY": key, "SECRET_ACCESS_KEY": secret});
    Arc::new(MapSource::new().with("AWS_CREDENTIALS", &json.to_string()))
}

fn case() -> Result<Case<S3>, Skip> {
    let Server {
        endpoint,
        bucket,
        access_key,
        secret_key,
    } = server()?;
    Ok(support::s3_case(
        &endpoint,
        &bucket,
        credentials(&access_key, &secret_key),
        &secret_key,
    ))
}

cloud_tests!(
    fixed_key_is_honoured_and_never_overwritten,
    large_upload_to_a_taken_fixed_key_is_refused,
    large_upload_is_create_only_where_it_completes,
    key_taken_during_a_large_upload_is_not_replaced,
    script_mode_with_a_key_only,
    missing_object_is_not_found,
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

/// Not here: s3s-fs 0.14.1 checks `If-None-Match: *` on CompleteMultipartUpload when the
/// request arrives, then concatenates the parts (seconds, for large objects) before it moves the object into
/// place (`complete_multipart_upload` in its `src/s3.rs`), so two completions arriving together
/// both pass the check and the later replaces the earlier. S3 (and moto, `tests/s3.rs`) check and
/// commit at once. That the condition is sent and honoured here is shown by
/// `key_taken_during_a_large_upload_is_not_replaced` and
/// `large_upload_is_create_only_where_it_completes`.
#[test]
fn racing_large_uploads_to_one_fixed_key_store_one() {
    flowstore_core::testkit::not_applicable(
        "racing_large_uploads_to_one_fixed_key_store_one",
        "s3s-fs checks If-None-Match on CompleteMultipartUpload before it concatenates the parts, not atomically with the commit (key_taken_during_a_large_upload_is_not_replaced covers the condition)",
    );
}

/// Not here: s3s-fs creates a missing bucket's directory on the first PUT into it, where S3
/// (and moto, `tests/s3.rs`) answers `NoSuchBucket`.
#[test]
fn wrong_bucket_is_named() {
    flowstore_core::testkit::not_applicable(
        "wrong_bucket_is_named",
        "s3s-fs creates a bucket on the first PUT into it (tests/s3.rs checks this on moto)",
    );
}

/// Not here: s3s-fs answers `NoSuchKey` for an object of a missing bucket, where S3 (and
/// moto, `tests/s3.rs`) answers `NoSuchBucket`.
#[test]
fn missing_bucket_is_not_found() {
    flowstore_core::testkit::not_applicable(
        "missing_bucket_is_not_found",
        "s3s-fs answers NoSuchKey for a missing bucket (tests/s3.rs checks this on moto)",
    );
}

/// A wrong secret key (the right access key id): the server refuses the signature, and the
/// error is `PermissionDenied` naming the bucket, with neither the wrong nor the right secret
/// in its text or `Debug` — for a write at `persist` and for a read by an agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_key_is_refused_without_echoing_it() {
    const TEST: &str = "a_wrong_secret_key_is_refused_without_echoing_it";
    let c = match case() {
        Ok(c) => c,
        Err(reason) => return flowstore_core::testkit::skip(TEST, &reason),
    };
    let Server {
        endpoint,
        bucket,
        access_key,
        secret_key,
    } = server().unwrap();
    let wrong = "wrong-s3cr3t-c4n4ry/NotTheServersKey";
    let wrong_secrets = credentials(&access_key, wrong);

    // The right credentials work (so the refusal below is the signature's doing).
    let prefix = unique("wrong-secret");
    let mut good = (c.storage)(&prefix);
    good.add_flow(seal("F", &1, &app()).unwrap().into())
        .await
        .unwrap();
    good.persist().await.unwrap();

    let mut writer = S3::builder(&bucket)
        .endpoint(&endpoint)
        .prefix(&prefix)
        .secrets(wrong_secrets.clone())
        .retry(fast_retry())
        .build()
        .unwrap();
    writer
        .add_flow(seal("G", &2, &app()).unwrap().into())
        .await
        .unwrap();
    let write_err = writer.persist().await.unwrap_err();

    let mut agents = flowstore_core::Registry::new().with_secrets(wrong_secrets);
    flowstore_cloud::register(&mut agents);
    let read_err = agents
        .open(&good.reference().unwrap())
        .unwrap()
        .get_flow("F")
        .await
        .unwrap_err();

    for (what, err) in [("persist", write_err), ("get_flow", read_err)] {
        assert!(
            matches!(err, Error::PermissionDenied { .. }),
            "{what}: a refused signature is permission denied: {err:?}"
        );
        assert!(std::error::Error::source(&err).is_some(), "{what}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&bucket), "{what}: names the bucket: {msg}");
        for secret in [wrong, secret_key.as_str()] {
            flowstore_secrets::test_support::assert_secret_absent(secret, &msg, what);
            flowstore_secrets::test_support::assert_secret_absent(
                secret,
                &format!("{err:?}"),
                what,
            );
        }
    }
}
