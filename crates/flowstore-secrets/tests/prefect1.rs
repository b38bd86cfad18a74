//! Prefect 1's local secrets (`PREFECT__CONTEXT__SECRETS__*` variables and `[context.secrets]` of
//! Prefect's config files): found by the default sources, typed as Prefect 1.4.1 types them, and
//! listed when a secret is missing.

use std::collections::BTreeMap;
use std::path::Path;

use flowstore_secrets::test_support::assert_secret_absent;
use flowstore_secrets::{
    default_sources, resolve, resolve_json, ExposeSecret, PrefectContextSource, SecretSource,
};
use serde_json::{json, Value};

/// A user config with every kind of value Prefect types differently.
const USER_CONFIG: &str = r#"
[context.secrets]
PLAIN = "ghp_abc"
NUM = "007"
NUM2 = "123"
QUOTED = "'quoted'"
HOMEY = "~/x"
VAR = "$PROBE_VAR/y"
PYDICT = "{'ACCESS_KEY': 'a', 'SECRET_ACCESS_KEY': 'b'}"
JSONT = '{"a": true}'
OVERRIDDEN = "from-user-config"
[context.secrets.AWS_CREDENTIALS]
ACCESS_KEY = "file-a"
SECRET_ACCESS_KEY = "file-b"
"#;

const BACKEND_CONFIG: &str =
    "backend = \"server\"\n[context.secrets]\nOVERRIDDEN = \"from-backend\"\n";

/// The variables of the Prefect process (besides `HOME`).
const ENV: &[(&str, &str)] = &[
    ("PROBE_VAR", "pv"),
    ("PREFECT__CONTEXT__SECRETS__ENVTOK", "\"dq\""),
    ("PREFECT__CONTEXT__SECRETS__TWICE", "'\"42\"'"),
    ("PREFECT__context__secrets__lower", "low"),
    ("PREFECT__Context__Secrets__MIXED", "m"),
    (
        "PREFECT__CONTEXT__SECRETS__AWS_CREDENTIALS__ACCESS_KEY",
        "env-a",
    ),
    ("PREFECT__CONTEXT__SECRETS__BOOL", "TRUE"),
    ("PREFECT__CONTEXT__SECRETS__FL", "1e3"),
    ("PREFECT__CONTEXT__SECRETS__HEX", "0x10"),
    ("PREFECT__CONTEXT__SECRETS__NONE", "None"),
    ("PREFECT__CONTEXT__SECRETS__CaseKept", "ck"),
    (
        "PREFECT__CONTEXT__SECRETS__JSON_ENV",
        "{\"k\": [1, 2], \"t\": true}",
    ),
];

/// `prefect.context.secrets` as Prefect 1.4.1 built it for this HOME and ENV: the output of
/// `import prefect, json; print(json.dumps(dict(prefect.context.secrets)))` with `prefect==1.4.1`,
/// run with exactly these variables and files (HOME replaced by `{HOME}`).
const RECORDED: &str = r#"{"AWS_CREDENTIALS": {"ACCESS_KEY": "env-a", "SECRET_ACCESS_KEY": "file-b"}, "BOOL": true, "CaseKept": "ck", "ENVTOK": "dq", "FL": 1000.0, "HEX": 16, "HOMEY": "{HOME}/x", "JSONT": "{\"a\": true}", "JSON_ENV": "{\"k\": [1, 2], \"t\": true}", "NONE": null, "NUM": "007", "NUM2": 123, "OVERRIDDEN": "from-backend", "PLAIN": "ghp_abc", "PYDICT": {"ACCESS_KEY": "a", "SECRET_ACCESS_KEY": "b"}, "QUOTED": "quoted", "TWICE": "42", "VAR": "pv/y", "lower": "low"}"#;

fn prefect_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".prefect")).unwrap();
    std::fs::write(home.path().join(".prefect/config.toml"), USER_CONFIG).unwrap();
    std::fs::write(home.path().join(".prefect/backend.toml"), BACKEND_CONFIG).unwrap();
    home
}

fn vars(home: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.push(("HOME".into(), home.display().to_string()));
    v
}

/// Checks our source against Prefect's `context.secrets` (`expected`): strings are the text,
/// other values their JSON text, `None` not set.
fn assert_same_as_prefect(source: &PrefectContextSource, expected: &BTreeMap<String, Value>) {
    for (name, want) in expected {
        let got = source.get(name).unwrap();
        match want {
            Value::Null => assert!(got.is_none(), "{name}: Prefect has None"),
            Value::String(s) => {
                assert_eq!(got.expect(name).expose_secret(), s, "{name}")
            }
            other => {
                let got: Value = serde_json::from_str(got.expect(name).expose_secret()).unwrap();
                assert_eq!(&got, other, "{name}");
            }
        }
    }
    assert!(source.get("MIXED").unwrap().is_none(), "MIXED");
}

#[test]
fn prefect1_local_secrets_are_read_as_prefect_1_4_reads_them() {
    let home = prefect_home();
    let source = PrefectContextSource::from_vars(vars(home.path()));
    let recorded = RECORDED.replace("{HOME}", &home.path().display().to_string());
    let expected: BTreeMap<String, Value> = serde_json::from_str(&recorded).unwrap();
    assert_same_as_prefect(&source, &expected);
    // A table (from nested keys, or a Python dict literal) is a JSON credentials document.
    let creds = resolve_json("AWS_CREDENTIALS", &source).unwrap();
    assert_eq!(
        creds.expose_secret(),
        &json!({"ACCESS_KEY": "env-a", "SECRET_ACCESS_KEY": "file-b"})
    );
    assert_eq!(
        resolve_json("PYDICT", &source).unwrap().expose_secret()["SECRET_ACCESS_KEY"],
        "b"
    );
}

/// The same comparison against a live Prefect 1.4.1, when the interop venv is there.
#[test]
fn prefect1_local_secrets_match_a_live_prefect() {
    let Some(python) = std::env::var_os("FLOWSTORE_TEST_PREFECT1_PYTHON") else {
        flowstore_core::testkit::skip(
            "prefect1_local_secrets_match_a_live_prefect",
            &"no Prefect 1 python: set FLOWSTORE_TEST_PREFECT1_PYTHON".into(),
        );
        return;
    };
    let home = prefect_home();
    let vars = vars(home.path());
    let out = std::process::Command::new(python)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .args([
            "-c",
            "import json, prefect; print(json.dumps(dict(prefect.context.get('secrets', {}))))",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: BTreeMap<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(expected.len(), 19, "{expected:?}");
    assert_same_as_prefect(&PrefectContextSource::from_vars(vars), &expected);
}

#[test]
fn config_paths_follow_prefect_variables() {
    let home = tempfile::tempdir().unwrap();
    let custom = home.path().join("custom.toml");
    std::fs::write(&custom, "[context.secrets]\nFROM_CUSTOM = \"c\"\n").unwrap();
    let source = PrefectContextSource::from_vars([
        ("HOME", home.path().display().to_string()),
        ("CFG_DIR", home.path().display().to_string()),
        (
            "PREFECT__USER_CONFIG_PATH",
            "$CFG_DIR/custom.toml".to_string(),
        ),
    ]);
    assert_eq!(
        source.config_files(),
        [custom, home.path().join(".prefect/backend.toml")]
    );
    assert_eq!(
        source.get("FROM_CUSTOM").unwrap().unwrap().expose_secret(),
        "c"
    );
}

#[test]
fn default_sources_find_prefect1_secrets_after_flowstore_ones() {
    // Only this test sets these PREFECT__ variables (names unique to it).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[context.secrets]\nFLOWSTORE_TEST_P1_FROM_FILE = \"file-token\"\n",
    )
    .unwrap();
    std::env::set_var("PREFECT__USER_CONFIG_PATH", &config);
    std::env::set_var(
        "PREFECT__CONTEXT__SECRETS__FLOWSTORE_TEST_P1_FROM_ENV",
        "env-token",
    );
    let sources = default_sources().unwrap();
    std::env::remove_var("PREFECT__USER_CONFIG_PATH");
    let found = |name: &str| resolve(name, &sources).unwrap().expose_secret().to_string();
    assert_eq!(found("FLOWSTORE_TEST_P1_FROM_ENV"), "env-token");
    assert_eq!(found("FLOWSTORE_TEST_P1_FROM_FILE"), "file-token");

    // Missing: the error lists every place, in order, and never a value.
    let err = resolve("FLOWSTORE_TEST_P1_MISSING", &sources)
        .unwrap_err()
        .to_string();
    let places = [
        "environment variable PREFECT__CONTEXT__SECRETS__FLOWSTORE_TEST_P1_MISSING",
        &format!("[context.secrets] of {}", config.display()),
        "environment variable FLOWSTORE_TEST_P1_MISSING",
    ];
    let mut at = 0;
    for place in places {
        let i = err[at..]
            .find(place)
            .unwrap_or_else(|| panic!("{place:?} not in order in: {err}"));
        at += i + place.len();
    }
    assert!(err.contains("backend.toml"), "{err}");
    std::env::remove_var("PREFECT__CONTEXT__SECRETS__FLOWSTORE_TEST_P1_FROM_ENV");
    for text in [err, format!("{sources:?}")] {
        assert_secret_absent("env-token", &text, "the error or Debug");
        assert_secret_absent("file-token", &text, "the error or Debug");
    }
}

#[test]
fn broken_prefect_config_is_named_never_quoted() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".prefect")).unwrap();
    let file = home.path().join(".prefect/config.toml");
    std::fs::write(&file, "[context.secrets]\nTOKEN = \"sup3r-s3cret\nBROKEN").unwrap();
    let source = PrefectContextSource::from_vars([("HOME", home.path().display().to_string())]);
    let err = source.get("TOKEN").unwrap_err().to_string();
    assert!(
        err.contains(&file.display().to_string()) && err.contains("not valid TOML"),
        "{err}"
    );
    assert_secret_absent("sup3r-s3cret", &err, "the parse error");
    let fixed = PrefectContextSource::from_vars([("PREFECT__CONTEXT__SECRETS__X", "v4lue-x")]);
    assert_secret_absent("v4lue-x", &format!("{fixed:?}"), "Debug");
}
