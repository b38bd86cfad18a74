//! GCS storage against fake-gcs-server on 127.0.0.1 (started by `cargo xtask test`:
//! `FLOWSTORE_TEST_GCS_ENDPOINT`, `FLOWSTORE_TEST_GCS_BUCKET`). The emulator does not check
//! credentials, so wrong credentials cannot be tested here; Azure's tests cover that path.

mod support;

use std::sync::Arc;

use flowstore_cloud::{Gcs, GcsBuilder};
use flowstore_core::envelope::seal;
use flowstore_core::testkit::Skip;
use flowstore_core::{OpenContext, Storage};
use flowstore_secrets::MapSource;
use support::{app, fast_retry, unique, Case};

fn endpoint() -> Result<String, Skip> {
    std::env::var("FLOWSTORE_TEST_GCS_ENDPOINT")
        .map_err(|_| Skip("FLOWSTORE_TEST_GCS_ENDPOINT is not set: fake-gcs-server is not running (cargo xtask test starts it)".into()))
}

fn case() -> Result<Case<Gcs>, Skip> {
    let endpoint = endpoint()?;
    let bucket =
        std::env::var("FLOWSTORE_TEST_GCS_BUCKET").unwrap_or_else(|_| "flowstore-test".into());
    // The emulator is part of the configuration: references record it, so agents opening them
    // find it without STORAGE_EMULATOR_HOST.
    let base = {
        let (bucket, endpoint) = (bucket.clone(), endpoint.clone());
        move || {
            Gcs::builder(&bucket)
                .emulator(&endpoint)
                .retry(fast_retry())
        }
    };
    let (b1, b2, b3, b4) = (base.clone(), base.clone(), base.clone(), base.clone());
    let b5 = base.clone();
    let e2 = endpoint.clone();
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
            Gcs::builder("flowstore-no-such-bucket")
                .emulator(&e2)
                .retry(fast_retry())
                .build()
                .unwrap()
        }),
        server_down: Box::new(|| {
            Gcs::builder("flowstore-test")
                .emulator(format!("http://127.0.0.1:{}", support::closed_port()))
                .retry(fast_retry())
                .build()
                .unwrap()
        }),
        upstream: endpoint.clone(),
        via: Box::new(move |p, e| b5().prefix(p).emulator(e).build().unwrap()),
        credential: None,
        secrets: Arc::new(MapSource::new()),
    })
}

cloud_tests!(
    fixed_key_is_honoured_and_never_overwritten,
    large_upload_to_a_taken_fixed_key_is_refused,
    racing_large_uploads_to_one_fixed_key_store_one,
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
    reopened_references_share_one_connection,
    a_fetch_is_one_get,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_options_and_its_reference_open_the_same_config() {
    let endpoint = match endpoint() {
        Ok(e) => e,
        Err(reason) => {
            return flowstore_core::testkit::skip(
                "a_url_with_options_and_its_reference_open_the_same_config",
                &reason,
            )
        }
    };
    let url = format!(
        "gs://flowstore-test/{}?emulator_host={endpoint}&project=demo&label=gpu&label=eu",
        unique("url")
    );
    let ctx = OpenContext::default();
    let mut s = Gcs::from_url(&url, &ctx).unwrap();
    assert_eq!(s.config().project.as_deref(), Some("demo"));
    assert_eq!(s.labels(), ["gpu", "eu"]);
    s.add_flow(seal("F", &1, &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reopened = Gcs::from_reference(&s.reference().unwrap(), &ctx).unwrap();
    assert_eq!(reopened.config(), s.config());
    assert_eq!(reopened.labels(), s.labels());
    let v: i32 = reopened
        .get_flow("F")
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    assert_eq!(v, 1);
    let err = GcsBuilder::from_url("gs://flowstore-test?emulatr_host=x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"emulatr_host\"") && err.contains("emulator_host"),
        "{err}"
    );
}

#[test]
fn a_typed_service_account_key_stays_out_of_references_and_debug() {
    let canary = r#"{"type":"service_account","private_key":"gcs-c4n4ry-private-key"}"#;
    let builder = Gcs::builder("b")
        .emulator("http://127.0.0.1:1")
        .service_account_key(canary);
    let debug = format!("{builder:?}");
    let storage = builder.build().unwrap();
    for (what, text) in [
        ("the builder's Debug", debug),
        ("the storage's Debug", format!("{storage:?}")),
        ("the reference", storage.reference().unwrap().to_json()),
    ] {
        flowstore_secrets::test_support::assert_secret_absent("gcs-c4n4ry", &text, what);
    }
}
