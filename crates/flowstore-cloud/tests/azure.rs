//! Azure Blob storage against Azurite on 127.0.0.1 (started by `cargo xtask test`:
//! `FLOWSTORE_TEST_AZURE_CONNECTION_STRING`, `FLOWSTORE_TEST_AZURE_CONTAINER`).

mod support;

use std::sync::Arc;

use flowstore_cloud::{Azure, AzureBuilder};
use flowstore_core::envelope::seal;
use flowstore_core::testkit::Skip;
use flowstore_core::{Error, OpenContext, Storage};
use flowstore_secrets::MapSource;
use support::{app, closed_port, fast_retry, unique, Case};

const SECRET: &str = "AZURE_TEST_CONNECTION";

fn conn() -> Result<String, Skip> {
    std::env::var("FLOWSTORE_TEST_AZURE_CONNECTION_STRING")
        .map_err(|_| Skip("FLOWSTORE_TEST_AZURE_CONNECTION_STRING is not set: Azurite is not running (cargo xtask test starts it)".into()))
}

fn account_key(conn: &str) -> String {
    conn.split(';')
        .find_map(|p| p.strip_prefix("AccountKey="))
        .unwrap_or_default()
        .to_string()
}

fn case() -> Result<Case<Azure>, Skip> {
    let conn = conn()?;
    let container =
        std::env::var("FLOWSTORE_TEST_AZURE_CONTAINER").unwrap_or_else(|_| "flowstore-test".into());
    let down = conn.replace(
        conn.split("BlobEndpoint=")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .take(3)
            .collect::<Vec<_>>()
            .join("/")
            .as_str(),
        &format!("http://127.0.0.1:{}", closed_port()),
    );
    let secrets = Arc::new(
        MapSource::new()
            .with(SECRET, &conn)
            .with("AZURE_DOWN", &down),
    );
    let base = {
        let (container, secrets) = (container.clone(), secrets.clone());
        move || {
            Azure::builder(&container)
                .connection_string_secret(SECRET)
                .secrets(secrets.clone())
                .retry(fast_retry())
        }
    };
    let (b1, b2, b3, b4) = (base.clone(), base.clone(), base.clone(), base.clone());
    let b5 = base.clone();
    // Azurite's address and the account path after it (`http://host:port`, `/devstoreaccount1`).
    let blob_endpoint = conn
        .split(';')
        .find_map(|p| p.strip_prefix("BlobEndpoint="))
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    let upstream = blob_endpoint
        .split('/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/");
    let account_path = blob_endpoint[upstream.len()..].to_string();
    let (s1, s2) = (secrets.clone(), secrets.clone());
    Ok(Case {
        storage: Box::new(move |p| b1().prefix(p).build().unwrap()),
        script: Box::new(move |p, path| b2().prefix(p).script(path).build().unwrap()),
        fixed_key: Box::new(move |k| b3().blob_name(k).build().unwrap()),
        script_key: Box::new(move |k| {
            let s = b4().stored_as_script(true);
            match k {
                Some(k) => s.blob_name(k).build(),
                None => s.build(),
            }
        }),
        wrong_bucket: Box::new(move || {
            Azure::builder("flowstore-no-such-bucket")
                .connection_string_secret(SECRET)
                .secrets(s1.clone())
                .retry(fast_retry())
                .build()
                .unwrap()
        }),
        server_down: Box::new(move || {
            Azure::builder("flowstore-test")
                .connection_string_secret("AZURE_DOWN")
                .secrets(s2.clone())
                .retry(fast_retry())
                .build()
                .unwrap()
        }),
        upstream,
        via: Box::new(move |p, e| {
            b5().prefix(p)
                .endpoint(format!("{e}{account_path}"))
                .build()
                .unwrap()
        }),
        credential: Some(account_key(&conn)),
        secrets,
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
    credentials_never_leak,
    reopened_references_share_one_connection,
    a_fetch_is_one_get,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_switch_replaces_an_existing_blob() {
    let c = match case() {
        Ok(c) => c,
        Err(reason) => {
            return flowstore_core::testkit::skip(
                "overwrite_switch_replaces_an_existing_blob",
                &reason,
            )
        }
    };
    let key = unique("overwrite");
    let mut a = (c.fixed_key)(&key);
    a.add_flow(seal("F", &"first", &app()).unwrap().into())
        .await
        .unwrap();
    a.persist().await.unwrap();
    let conn = conn().unwrap();
    let secrets = Arc::new(MapSource::new().with(SECRET, &conn));
    let mut b = Azure::builder(
        std::env::var("FLOWSTORE_TEST_AZURE_CONTAINER").unwrap_or_else(|_| "flowstore-test".into()),
    )
    .connection_string_secret(SECRET)
    .secrets(secrets)
    .blob_name(&key)
    .overwrite(true)
    .build()
    .unwrap();
    b.add_flow(seal("F", &"second", &app()).unwrap().into())
        .await
        .unwrap();
    b.persist().await.unwrap();
    let v: String = c
        .registry()
        .open(&b.reference().unwrap())
        .unwrap()
        .get_flow("F")
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    assert_eq!(v, "second");
    // The first registration's digest no longer matches: refused, not loaded.
    let err = c
        .registry()
        .open(&a.reference().unwrap())
        .unwrap()
        .get_flow("F")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_account_key_is_refused_without_echoing_it() {
    let conn = match conn() {
        Ok(c) => c,
        Err(reason) => {
            return flowstore_core::testkit::skip(
                "a_wrong_account_key_is_refused_without_echoing_it",
                &reason,
            )
        }
    };
    let wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let bad = conn.replace(&account_key(&conn), wrong_key);
    let secrets = Arc::new(MapSource::new().with(SECRET, &bad));
    let mut s = Azure::builder("flowstore-test")
        .connection_string_secret(SECRET)
        .secrets(secrets)
        .retry(fast_retry())
        .build()
        .unwrap();
    s.add_flow(seal("F", &1, &app()).unwrap().into())
        .await
        .unwrap();
    let err = s.persist().await.unwrap_err();
    assert!(
        matches!(err, Error::PermissionDenied { .. }),
        "403 is permission denied: {err:?}"
    );
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("403")
            || msg.to_lowercase().contains("denied")
            || msg.contains("Authorization"),
        "{msg}"
    );
    flowstore_secrets::test_support::assert_secret_absent(wrong_key, &msg, "the error");
    flowstore_secrets::test_support::assert_secret_absent(
        wrong_key,
        &format!("{err:?}"),
        "the error's Debug",
    );
}

#[tokio::test]
async fn a_missing_connection_string_names_where_it_looked() {
    let err = Azure::builder("c")
        .connection_string_secret("FLOWSTORE_NO_SUCH_CONNECTION_SECRET")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Azure connection string not provided")
            && err.contains("FLOWSTORE_NO_SUCH_CONNECTION_SECRET"),
        "{err}"
    );
}

/// `Key=Value` from the connection string.
fn part(conn: &str, key: &str) -> String {
    conn.split(';')
        .find_map(|p| p.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_account_key_works_and_never_leaks() {
    let conn = match conn() {
        Ok(c) => c,
        Err(reason) => {
            return flowstore_core::testkit::skip(
                "a_typed_account_key_works_and_never_leaks",
                &reason,
            )
        }
    };
    let key = account_key(&conn);
    let builder = Azure::builder("flowstore-test")
        .account_name(part(&conn, "AccountName"))
        .endpoint(part(&conn, "BlobEndpoint"))
        .account_key(key.clone())
        .prefix(unique("typed"))
        .retry(fast_retry());
    let debug = format!("{builder:?}");
    let mut s = builder.build().unwrap();
    s.add_flow(seal("F", &"typed", &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let v: String = s.get_flow("F").await.unwrap().decode(&app()).unwrap();
    assert_eq!(v, "typed");
    let reference = s.reference().unwrap();
    for (what, text) in [
        ("the builder's Debug", debug),
        ("the storage's Debug", format!("{s:?}")),
        ("the reference", reference.to_json()),
    ] {
        flowstore_secrets::test_support::assert_secret_absent(&key, &text, what);
    }
    // The reference records the account and endpoint, not the key: an agent with the key in
    // AZURE_STORAGE_ACCOUNT_KEY-style ambient credentials would open it; one with none is
    // refused at fetch, not at open.
    assert_eq!(reference.fields["account_name"], part(&conn, "AccountName"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_options_and_its_reference_open_the_same_config() {
    let c = match case() {
        Ok(c) => c,
        Err(reason) => {
            return flowstore_core::testkit::skip(
                "a_url_with_options_and_its_reference_open_the_same_config",
                &reason,
            )
        }
    };
    let url = format!(
        "az://flowstore-test/{}?connection_string_secret={SECRET}&label=prod&add_default_labels=false",
        unique("url")
    );
    let ctx = OpenContext {
        secrets: c.secrets.clone(),
        ..OpenContext::default()
    };
    let mut s = Azure::from_url(&url, &ctx).unwrap();
    assert_eq!(s.config().connection_string_secret.as_deref(), Some(SECRET));
    s.add_flow(seal("F", &3, &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reopened = c.registry().open(&s.reference().unwrap()).unwrap();
    assert_eq!(
        reopened.reference().unwrap().fields,
        s.reference().unwrap().fields
    );
    let typed = Azure::from_reference(&s.reference().unwrap(), &ctx).unwrap();
    assert_eq!(typed.config(), s.config());
    assert_eq!(typed.labels(), ["prod"]);
    let v: i32 = reopened
        .get_flow("F")
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    assert_eq!(v, 3);
    let err = AzureBuilder::from_url("az://c?blobname=x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"blobname\"") && err.contains("blob_name"),
        "{err}"
    );
}

/// Credentials that may read but not delete (a SAS token with only `r`, which Azurite enforces
/// like Azure): `delete_version` is refused as permission denied, naming the version and the
/// permission pruning needs, and the version stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_without_the_delete_permission_is_refused_clearly() {
    use object_store::path::Path as ObjectPath;
    use object_store::signer::Signer;

    let c = match case() {
        Ok(c) => c,
        Err(reason) => {
            return flowstore_core::testkit::skip(
                "delete_without_the_delete_permission_is_refused_clearly",
                &reason,
            )
        }
    };
    let conn = conn().unwrap();
    let container =
        std::env::var("FLOWSTORE_TEST_AZURE_CONTAINER").unwrap_or_else(|_| "flowstore-test".into());
    let prefix = unique("no-delete");
    let mut full = (c.storage)(&prefix);
    full.add_flow(seal("Kept", &"kept", &app()).unwrap().into())
        .await
        .unwrap();
    full.persist().await.unwrap();
    let listed = full.list_versions(Some("Kept")).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let version = &listed[0];

    // A read-only SAS for that one blob, signed with the account key.
    let (account, endpoint) = (part(&conn, "AccountName"), part(&conn, "BlobEndpoint"));
    let signer = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(&account)
        .with_access_key(account_key(&conn))
        .with_container_name(&container)
        .with_endpoint(endpoint.trim_end_matches('/').to_string())
        .with_allow_http(true)
        .build()
        .unwrap();
    let url = signer
        .signed_url(
            reqwest::Method::GET,
            &ObjectPath::from(version.location.as_str()),
            std::time::Duration::from_secs(600),
        )
        .await
        .unwrap();
    let sas = url.query().unwrap().to_string();
    assert!(sas.contains("sp=r&") || sas.ends_with("sp=r"), "{sas}");
    let sig = url
        .query_pairs()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let read_only = Azure::builder(&container)
        .account_name(&account)
        .endpoint(&endpoint)
        .sas_token(sas)
        .prefix(&prefix)
        .retry(fast_retry())
        .build()
        .unwrap();
    // The token works: the version reads.
    let bytes = read_only.read_version(version).await.unwrap();
    assert_eq!(bytes, full.read_version(version).await.unwrap());
    let err = read_only.delete_version(version).await.unwrap_err();
    assert!(
        matches!(err, Error::PermissionDenied { .. }),
        "a refused delete is permission denied: {err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("deleting az://{container}/{}", version.location))
            && text.contains("403")
            && text.contains("delete permission"),
        "{text}"
    );
    flowstore_secrets::test_support::assert_secret_absent(&sig, &text, "the error");
    flowstore_secrets::test_support::assert_secret_absent(&sig, &format!("{err:?}"), "its Debug");
    assert_eq!(full.list_versions(Some("Kept")).await.unwrap(), listed);
}
