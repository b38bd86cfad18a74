//! References flowstore writes for S3, Azure and GCS stay loadable by Prefect 1.4.1.
//!
//! Prefect 1 loads a reference with its marshmallow `StorageSchema`, which drops top-level
//! fields it does not declare and passes the declared ones to the storage's constructor; S3's
//! `client_options` then go to `boto3.client(**client_options)`, which refuses any key boto3
//! does not know. So flowstore's own settings must be top-level fields Prefect 1 does not
//! declare, never inside one it does. Checked on the JSON here, and with Prefect 1.4.1 itself in
//! the Python named by `FLOWSTORE_TEST_PREFECT1_PYTHON` (`cargo xtask test` makes that venv:
//! prefect==1.4.1, marshmallow<4, boto3), which skips visibly when it is not set. The field
//! lists below are Prefect 1.4.1's `prefect/serialization/storage.py`.

use std::process::Command;
use std::sync::Arc;

use flowstore_cloud::{Azure, Gcs, S3};
use flowstore_core::{OpenContext, Storage, StorageReference};
use flowstore_secrets::MapSource;
use serde_json::{json, Value};

const PYTHON_ENV: &str = "FLOWSTORE_TEST_PREFECT1_PYTHON";

/// The fields Prefect 1.4.1's schema declares for a storage type (its `BaseStorageSchema`'s
/// `flows` and `secrets` included), with the JSON each must hold.
fn prefect_fields(type_name: &str) -> &'static [(&'static str, Kind)] {
    use Kind::*;
    match type_name {
        "S3" => &[
            ("flows", Flows),
            ("secrets", StrList),
            ("bucket", Str),
            ("key", StrOrNull),
            ("stored_as_script", BoolOrNull),
            ("client_options", BotoOptions),
        ],
        "Azure" => &[
            ("flows", Flows),
            ("secrets", StrList),
            ("container", Str),
            ("connection_string_secret", StrOrNull),
            ("blob_name", StrOrNull),
            ("stored_as_script", BoolOrNull),
        ],
        "GCS" => &[
            ("flows", Flows),
            ("secrets", StrList),
            ("bucket", Str),
            ("key", StrOrNull),
            ("project", StrOrNull),
            ("stored_as_script", BoolOrNull),
        ],
        other => panic!("no Prefect 1 field list for {other}"),
    }
}

/// What a declared field may hold.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    StrOrNull,
    BoolOrNull,
    StrList,
    /// Flow name → location.
    Flows,
    /// `boto3.client` keyword arguments.
    BotoOptions,
}

/// The keyword arguments of `boto3.client()` (boto3's `Session.client`), but the credentials,
/// which flowstore never writes.
const BOTO3_CLIENT_ARGS: &[&str] = &[
    "region_name",
    "api_version",
    "use_ssl",
    "verify",
    "endpoint_url",
    "config",
    "aws_account_id",
];

/// Every reference field Prefect 1 declares holds what it declares: `Err` names the field.
fn check_prefect_fields(reference: &Value) -> Result<(), String> {
    let type_name = reference["type"].as_str().unwrap_or_default();
    for (field, kind) in prefect_fields(type_name) {
        let Some(value) = reference.get(*field) else {
            continue;
        };
        let fits = match kind {
            Kind::Str => value.is_string(),
            Kind::StrOrNull => value.is_string() || value.is_null(),
            Kind::BoolOrNull => value.is_boolean() || value.is_null(),
            Kind::StrList => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
            Kind::Flows => value
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string)),
            Kind::BotoOptions => {
                value.is_null()
                    || value
                        .as_object()
                        .is_some_and(|m| m.keys().all(|k| BOTO3_CLIENT_ARGS.contains(&k.as_str())))
            }
        };
        if !fits {
            return Err(format!(
                "{type_name} field {field} = {value} is not what Prefect 1 takes ({kind:?})"
            ));
        }
    }
    Ok(())
}

/// A plausible Azurite connection string (the emulator's published development account key).
const AZURE_CONN: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

/// A reference with one flow in it, as JSON.
fn with_flow(mut reference: StorageReference) -> Value {
    reference.flows.insert(
        "My ETL Flow".into(),
        "team/flows/my-etl-flow/2026-11-24t03-18-11-800187-00-00".into(),
    );
    serde_json::from_str(&reference.to_json()).unwrap()
}

/// References flowstore writes, with every flowstore-only setting each backend has.
fn references() -> Vec<(&'static str, Value)> {
    let s3 = S3::builder("flowstore-test")
        .endpoint("http://127.0.0.1:9")
        .region("eu-west-1")
        .allow_http(true)
        .prefix("team/flows")
        .with_configs([("label", "prod"), ("secret", "AWS_CREDENTIALS")])
        .unwrap()
        .access_key_id("AKIAPREFECTREFS")
        .secret_access_key("prefect-refs-s3cr3t")
        .build()
        .unwrap();
    let s3_from_url = S3::from_url(
        "s3://flowstore-test/p?endpoint_url=https://s3.example.invalid&region=us-east-1&allow_http=false",
        &OpenContext::default(),
    )
    .unwrap();
    // A reference flowstore wrote before, with allow_http inside client_options, reopened and
    // written again.
    let older = StorageReference::from_json(
        &json!({
            "type": "S3", "bucket": "flowstore-test", "flows": {}, "prefix": "team/flows",
            "client_options": {"endpoint_url": "http://127.0.0.1:9", "allow_http": true},
        })
        .to_string(),
    )
    .unwrap();
    let rewritten = S3::from_reference(&older, &OpenContext::default()).unwrap();
    let azure = Azure::builder("flowstore-test")
        .connection_string_secret("FLOWSTORE_AZURE_CONN")
        .secrets(Arc::new(
            MapSource::new().with("FLOWSTORE_AZURE_CONN", AZURE_CONN),
        ))
        .prefix("team/flows")
        .with_configs([("overwrite", "true"), ("label", "prod")])
        .unwrap()
        .build()
        .unwrap();
    let gcs = Gcs::builder("flowstore-test")
        .project("flowstore-project")
        .emulator("http://127.0.0.1:4443")
        .prefix("team/flows")
        .with_configs([("label", "prod")])
        .unwrap()
        .build()
        .unwrap();
    vec![
        ("S3 with every option", with_flow(s3.reference().unwrap())),
        ("S3 from a URL", with_flow(s3_from_url.reference().unwrap())),
        (
            "S3 reopened from an older reference",
            with_flow(rewritten.reference().unwrap()),
        ),
        (
            "Azure with every option",
            with_flow(azure.reference().unwrap()),
        ),
        ("GCS with every option", with_flow(gcs.reference().unwrap())),
    ]
}

#[test]
fn flowstore_settings_stay_out_of_prefect_fields() {
    for (what, reference) in references() {
        check_prefect_fields(&reference).unwrap_or_else(|e| panic!("{what}: {e}\n{reference}"));
    }
    // What flowstore wrote before this check existed fails it.
    let older = json!({"type": "S3", "bucket": "b", "client_options": {"allow_http": true}});
    let err = check_prefect_fields(&older).unwrap_err();
    assert!(err.contains("client_options"), "{err}");
}

/// Loads each reference with Prefect 1.4.1's `StorageSchema`, then makes what Prefect makes
/// before its first request: for S3 the boto3 client from `client_options`.
const LOADER: &str = r#"
import json, sys
from prefect.serialization.storage import StorageSchema
for line in sys.stdin:
    reference = json.loads(line)
    try:
        storage = StorageSchema().load(reference)
        detail = type(storage).__name__ + ' ' + json.dumps(storage.flows, sort_keys=True)
        if detail.startswith('S3 '):
            client = storage._boto3_client
            detail += ' boto3 client for ' + client.meta.endpoint_url
        print(json.dumps({'ok': detail}))
    except Exception as e:
        print(json.dumps({'error': type(e).__name__ + ': ' + str(e)}))
"#;

#[test]
fn prefect1_loads_flowstore_references() {
    let Some(python) = std::env::var_os(PYTHON_ENV).filter(|p| !p.is_empty()) else {
        return flowstore_core::testkit::skip(
            "prefect1_loads_flowstore_references",
            &flowstore_core::testkit::Skip(format!(
                "{PYTHON_ENV} is not set: no Python with prefect==1.4.1 (cargo xtask test makes one)"
            )),
        );
    };
    let references = references();
    let input: String = references.iter().map(|(_, r)| format!("{r}\n")).collect();
    let mut child = Command::new(&python)
        .args(["-c", LOADER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python:?} ({PYTHON_ENV}): {e}"));
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{python:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), references.len());
    for ((what, reference), result) in references.iter().zip(&results) {
        let Some(ok) = result["ok"].as_str() else {
            panic!(
                "Prefect 1.4.1 cannot load the {what} reference: {}\n{reference}",
                result["error"]
            );
        };
        let type_name = reference["type"].as_str().unwrap();
        assert!(
            ok.starts_with(type_name) && ok.contains("my-etl-flow/2026-11-24t03-18-11-800187"),
            "{what}: {ok}"
        );
        if type_name == "S3" {
            let endpoint = reference["client_options"]["endpoint_url"]
                .as_str()
                .unwrap();
            assert!(
                ok.ends_with(&format!("boto3 client for {endpoint}")),
                "{what}: {ok}"
            );
        }
        eprintln!("Prefect 1.4.1 loads the {what} reference: {ok}");
    }
}
