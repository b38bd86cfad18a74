//! GCS storage against fake-gcs-server on 127.0.0.1 (started by `cargo xtask test`:
//! `FLOWSTORE_TEST_GCS_ENDPOINT`, `FLOWSTORE_TEST_GCS_BUCKET`). The emulator does not check
//! credentials, so wrong credentials cannot be tested here; Azure's tests cover that path.

mod support;

use std::sync::Arc;

use flowstore_cloud::Gcs;
use flowstore_core::testkit::Skip;
use flowstore_secrets::MapSource;
use support::{fast_retry, Case};

fn case() -> Result<Case, Skip> {
    let endpoint = std::env::var("FLOWSTORE_TEST_GCS_ENDPOINT")
        .map_err(|_| Skip("FLOWSTORE_TEST_GCS_ENDPOINT is not set: fake-gcs-server is not running (cargo xtask test starts it)".into()))?;
    // The way Google's own clients find an emulator; flowstore reads it too (agents opening
    // references in these tests find the emulator through it).
    std::env::set_var(flowstore_cloud::gcs::EMULATOR_ENV, &endpoint);
    let bucket =
        std::env::var("FLOWSTORE_TEST_GCS_BUCKET").unwrap_or_else(|_| "flowstore-test".into());
    let base = {
        let bucket = bucket.clone();
        move || Gcs::new(&bucket).retry(fast_retry())
    };
    let (b1, b2, b3, b4) = (base.clone(), base.clone(), base.clone(), base.clone());
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
        wrong_bucket: Box::new(|| {
            Gcs::new("flowstore-no-such-bucket")
                .retry(fast_retry())
                .build()
                .unwrap()
        }),
        server_down: Box::new(|| {
            Gcs::new("flowstore-test")
                .emulator(format!("http://127.0.0.1:{}", support::closed_port()))
                .retry(fast_retry())
                .build()
                .unwrap()
        }),
        credential: None,
        secrets: Arc::new(MapSource::new()),
    })
}

cloud_tests!(
    fixed_key_is_honoured_and_never_overwritten,
    script_mode_with_a_key_only,
    wrong_bucket_is_named,
    server_down_fails_after_bounded_retries,
    hundred_mib_script_streams,
    listing_is_newest_first,
);
