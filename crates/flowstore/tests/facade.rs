//! The facade as a user meets it: one dependency, `open`/`open_json`/`open_url`, every compiled-in
//! backend installed. The S3 test runs the README's example against the real S3 server that
//! `cargo xtask test` starts (moto); without it, it skips visibly.

use flowstore::{seal, Error};
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
    // The agent's standard AWS chain (moto takes any key); this binary has no other test that
    // reads the environment concurrently.
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

#[tokio::test]
async fn open_url_applies_options_and_refuses_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let mut storage =
        flowstore::open_url(&url, [("label", "prod"), ("add_default_labels", "false")]).unwrap();
    assert_eq!(storage.labels(), ["prod"]);
    let app = flowstore::app_info!();
    storage
        .add_flow(seal("f", &1, &app).unwrap().into())
        .await
        .unwrap();
    storage.persist().await.unwrap();
    let reference = storage.reference().unwrap();
    assert_eq!(reference.labels, ["prod"]);
    let value: i32 = flowstore::open(&reference)
        .unwrap()
        .get_flow("f")
        .await
        .unwrap()
        .decode(&app)
        .unwrap();
    assert_eq!(value, 1);

    let err = flowstore::open_url(&url, [("diretory", "/x")]).unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("\"diretory\""), "{err}");
}

#[test]
fn a_missing_declared_secret_is_reported_before_anything_opens() {
    let json = r#"{"type": "Local", "directory": "/nonexistent", "flows": {},
                   "secrets": ["FLOWSTORE_FACADE_TEST_SECRET_THAT_IS_NOT_SET"]}"#;
    let err = flowstore::open_json(json).unwrap_err();
    assert!(matches!(err, Error::SecretNotFound { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("FLOWSTORE_FACADE_TEST_SECRET_THAT_IS_NOT_SET"),
        "{err}"
    );
}

#[test]
fn every_compiled_in_backend_is_installed() {
    let mut registry = flowstore::Registry::new();
    flowstore::install_backends(&mut registry);
    let types = registry.types();
    assert!(
        types.contains(&"Local") && types.contains(&"Module"),
        "{types:?}"
    );
    assert_eq!(types.contains(&"S3"), cfg!(feature = "s3"), "{types:?}");
    assert_eq!(types.contains(&"Git"), cfg!(feature = "git"), "{types:?}");
    assert_eq!(
        types.contains(&"GitHub"),
        cfg!(feature = "github"),
        "{types:?}"
    );
    assert_eq!(
        types.contains(&"Docker"),
        cfg!(feature = "docker"),
        "{types:?}"
    );
    assert_eq!(
        types.contains(&"Webhook"),
        cfg!(feature = "webhook"),
        "{types:?}"
    );
    assert_eq!(
        registry.schemes().contains(&"s3"),
        cfg!(feature = "s3"),
        "{:?}",
        registry.schemes()
    );
}

#[test]
fn errors_say_what_kind_of_failure_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"type": "Local", "directory": "{}", "flows": {{"gone": "{}/gone/v1"}}}}"#,
        dir.path().display(),
        dir.path().display()
    );
    let storage = flowstore::open_json(&json).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(storage.get_flow("gone")).unwrap_err();
    assert!(err.is_not_found() && !err.is_temporary(), "{err:?}");
    let err = rt
        .block_on(storage.get_flow("never registered"))
        .unwrap_err();
    assert!(matches!(err, Error::FlowNotFound { .. }), "{err:?}");
}
