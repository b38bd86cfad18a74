//! The facade as a user meets it: one dependency, `open`/`open_json`/`open_url`, every compiled-in
//! backend installed. (The README's S3 example runs in `readme_s3.rs`, a binary of its own.)

use flowstore::{seal, Error};

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
