//! The README's library example, run verbatim against the real S3 server that `cargo xtask test`
//! starts (moto); without it, the test skips visibly. Alone in its binary because it sets the
//! agent's AWS credentials in the process environment.

use flowstore::Error;
use flowstore_core::testkit::{skip, Skip};

/// The README's library example, line for line, against a real S3 server.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_example_registers_in_s3_and_fetches_back() {
    let (Ok(endpoint), Ok(bucket)) = (
        std::env::var("FLOWSTORE_TEST_S3_ENDPOINT"),
        std::env::var("FLOWSTORE_TEST_S3_BUCKET"),
    ) else {
        return skip(
            "readme_example_registers_in_s3_and_fetches_back",
            &Skip::from("S3 server not started: set FLOWSTORE_TEST_S3_ENDPOINT and FLOWSTORE_TEST_S3_BUCKET (cargo xtask test does)"),
        );
    };
    // The agent's standard AWS chain (moto takes any key). This is the only test in this binary,
    // so nothing reads the environment while it is changed.
    std::env::set_var("AWS_ACCESS_KEY_ID", "flowstore-facade-test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "flowstore-facade-test");
    let run = || async {
        // --- README, "Library" ---
        use flowstore::{seal, Storage, S3};
        let app = flowstore::app_info!();
        let mut storage = S3::builder(&bucket).endpoint(&endpoint).build()?;
        storage
            .add_flow(seal("My ETL Flow", &["extract", "load"], &app)?.into())
            .await?;
        storage.persist().await?;
        let reference = storage.reference()?.to_json(); // keep this in your database

        // On an agent, anywhere: the reference is all it needs.
        let agent = flowstore::open_json(&reference)?;
        let tasks: Vec<String> = agent.get_flow("My ETL Flow").await?.decode(&app)?;
        // --- end of the README's example ---
        Ok::<_, Error>((tasks, reference))
    };
    let (tasks, reference) = run().await.expect("the README example runs");
    assert_eq!(tasks, ["extract", "load"]);
    assert!(reference.contains("\"type\":\"S3\""), "{reference}");
    assert!(
        !reference.contains("flowstore-facade-test"),
        "a credential leaked: {reference}"
    );
}
