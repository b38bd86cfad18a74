//! flowstore-secrets: every source, the chain order, resolution, templates, redaction, and
//! property tests that no secret value reaches `Debug` output, errors or logs.

use std::sync::Arc;

use flowstore_secrets::test_support::{assert_secret_absent, capture_logs};
use flowstore_secrets::{
    redact, render, resolve, resolve_json, ChainSource, DirSource, EnvSource, Error, ExposeSecret,
    FileSource, MapSource, Redactor, SecretSource, SecretString, SecretsConfig,
};
use proptest::prelude::*;
use serde_json::json;

fn get(source: &dyn SecretSource, name: &str) -> Option<String> {
    source
        .get(name)
        .unwrap()
        .map(|s| s.expose_secret().to_string())
}

#[test]
fn env_source_reads_variables_and_ignores_impossible_names() {
    std::env::set_var("FLOWSTORE_TEST_ENV_SECRET_A", "from-env");
    let env = EnvSource::new();
    assert_eq!(
        get(&env, "FLOWSTORE_TEST_ENV_SECRET_A").as_deref(),
        Some("from-env")
    );
    assert_eq!(get(&env, "FLOWSTORE_TEST_ENV_SECRET_MISSING"), None);
    assert_eq!(get(&env, ""), None);
    assert_eq!(get(&env, "A=B"), None);
    assert_eq!(env.describe(), "environment");
}

#[test]
fn dir_source_reads_one_file_per_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("DB_PASSWORD"), "hunter2\n").unwrap();
    std::fs::write(dir.path().join("CRLF"), "v\r\n").unwrap();
    std::fs::write(dir.path().join("TWO_LINES"), "a\nb\n\n").unwrap();
    std::fs::create_dir(dir.path().join("subdir")).unwrap();
    std::fs::write(dir.path().parent().unwrap().join("outside-secret"), "nope").unwrap();
    let src = DirSource::new(dir.path());
    assert_eq!(get(&src, "DB_PASSWORD").as_deref(), Some("hunter2"));
    assert_eq!(get(&src, "CRLF").as_deref(), Some("v"));
    assert_eq!(get(&src, "TWO_LINES").as_deref(), Some("a\nb\n"));
    assert_eq!(get(&src, "MISSING"), None);
    assert_eq!(get(&src, "subdir"), None);
    for hostile in ["../outside-secret", "..", ".", "a/b", "a\0b", "/etc/passwd"] {
        assert_eq!(get(&src, hostile), None, "{hostile:?}");
    }
    assert!(src.describe().contains(&dir.path().display().to_string()));
}

#[test]
fn dir_source_reports_unreadable_files_without_content() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("BIN"), [0xff, 0xfe, 0x00]).unwrap();
    let err = DirSource::new(dir.path())
        .get("BIN")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Secret \"BIN\"") && err.contains("not UTF-8"),
        "{err}"
    );
}

#[test]
fn file_source_reads_toml_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("secrets.toml");
    std::fs::write(
        &toml_path,
        "GITHUB_ACCESS_TOKEN = \"ghp_toml\"\n[AWS_CREDENTIALS]\nACCESS_KEY = \"AKIA\"\nSECRET_ACCESS_KEY = \"shh\"\n",
    )
    .unwrap();
    let src = FileSource::load(&toml_path).unwrap();
    assert_eq!(
        get(&src, "GITHUB_ACCESS_TOKEN").as_deref(),
        Some("ghp_toml")
    );
    let creds = resolve_json("AWS_CREDENTIALS", &src).unwrap();
    assert_eq!(creds.expose_secret()["SECRET_ACCESS_KEY"], "shh");
    assert!(!format!("{src:?}").contains("ghp_toml"));

    let json_path = dir.path().join("secrets.json");
    std::fs::write(&json_path, r#"{"TOKEN": "j", "N": 3}"#).unwrap();
    let src = FileSource::load(&json_path).unwrap();
    assert_eq!(get(&src, "TOKEN").as_deref(), Some("j"));
    assert_eq!(get(&src, "N").as_deref(), Some("3"));
}

#[test]
fn file_source_syntax_errors_never_quote_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "TOKEN = \"sup3r-secret-value\nBROKEN").unwrap();
    let err = FileSource::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("bad.toml") && err.contains("not valid"),
        "{err}"
    );
    assert_secret_absent("sup3r-secret-value", &err, "the parse error");
    let path = dir.path().join("list.json");
    std::fs::write(&path, r#"["sup3r-secret-value"]"#).unwrap();
    let err = FileSource::load(&path).unwrap_err().to_string();
    assert!(err.contains("not a table"), "{err}");
    assert_secret_absent("sup3r-secret-value", &err, "the parse error");
}

#[test]
fn chain_asks_sources_in_order() {
    let first = MapSource::new().with("A", "first").with("ONLY_FIRST", "1");
    let second = MapSource::new()
        .with("A", "second")
        .with("ONLY_SECOND", "2");
    let chain = ChainSource::new(vec![Arc::new(first), Arc::new(second)]);
    assert_eq!(get(&chain, "A").as_deref(), Some("first"));
    assert_eq!(get(&chain, "ONLY_SECOND").as_deref(), Some("2"));
    assert_eq!(get(&chain, "NONE"), None);
    assert_eq!(
        chain.describe(),
        "in-memory secrets, then in-memory secrets"
    );
    assert_eq!(ChainSource::default().describe(), "no secret sources");
}

#[test]
fn resolve_uses_sources_then_environment_and_names_every_place() {
    std::env::set_var("FLOWSTORE_TEST_RESOLVE_B", "env-b");
    let sources = MapSource::new()
        .with("FLOWSTORE_TEST_RESOLVE_B", "secret-b")
        .with("C", "c");
    assert_eq!(
        resolve("FLOWSTORE_TEST_RESOLVE_B", &sources)
            .unwrap()
            .expose_secret(),
        "secret-b"
    );
    assert_eq!(
        resolve("FLOWSTORE_TEST_RESOLVE_B", &MapSource::new())
            .unwrap()
            .expose_secret(),
        "env-b"
    );
    let dir = tempfile::tempdir().unwrap();
    let chain = ChainSource::new(vec![
        Arc::new(DirSource::new(dir.path())),
        Arc::new(MapSource::new()),
    ]);
    let err = resolve("NOT_ANYWHERE", &chain).unwrap_err().to_string();
    assert!(
        err.contains("Secret \"NOT_ANYWHERE\" was not found"),
        "{err}"
    );
    assert!(
        err.contains("files in")
            && err.contains("in-memory secrets")
            && err.contains("environment variable NOT_ANYWHERE"),
        "{err}"
    );
}

#[test]
fn resolve_json_refuses_non_json_without_quoting_it() {
    let sources = MapSource::new().with("GCP_CREDENTIALS", "not-json-s3cr3t");
    let err = resolve_json("GCP_CREDENTIALS", &sources).unwrap_err();
    assert!(matches!(err, Error::NotJson { .. }));
    assert_secret_absent("not-json-s3cr3t", &err.to_string(), "the error");
    assert_secret_absent("not-json-s3cr3t", &format!("{err:?}"), "the error's Debug");
}

#[test]
fn config_builds_file_then_dir_chain() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(&file, "X = \"from-file\"\n").unwrap();
    let secrets_dir = dir.path().join("d");
    std::fs::create_dir(&secrets_dir).unwrap();
    std::fs::write(secrets_dir.join("X"), "from-dir").unwrap();
    std::fs::write(secrets_dir.join("Y"), "y-from-dir").unwrap();
    let config = SecretsConfig {
        secrets_file: Some(file.clone()),
        secrets_dir: Some(secrets_dir.clone()),
    };
    let chain = config.sources().unwrap();
    assert_eq!(get(&chain, "X").as_deref(), Some("from-file"));
    assert_eq!(get(&chain, "Y").as_deref(), Some("y-from-dir"));

    // Only this test sets the FLOWSTORE_SECRETS_* variables.
    std::env::set_var("FLOWSTORE_SECRETS_DIR", &secrets_dir);
    std::env::set_var("FLOWSTORE_SECRETS_FILE", &file);
    let from_env = SecretsConfig::from_env().unwrap();
    std::env::remove_var("FLOWSTORE_SECRETS_DIR");
    std::env::remove_var("FLOWSTORE_SECRETS_FILE");
    assert_eq!(from_env, config);
}

#[test]
fn templates_render_nested_strings_only() {
    std::env::set_var("FLOWSTORE_TEST_TPL_HOST", "files.example");
    let sources = MapSource::new()
        .with("TOKEN", "t0k3n")
        .with("FLOWSTORE_TEST_TPL_HOST", "shadowed");
    let args = json!({
        "url": "https://${FLOWSTORE_TEST_TPL_HOST}/flows/$TOKEN/x",
        "headers": {"Authorization": "Bearer ${TOKEN}", "${TOKEN}": "keys are untouched"},
        "params": ["a", "${TOKEN}", 3, null, true],
        "price": "$$5 and $$$TOKEN",
        "timeout": 30,
    });
    let before = args.clone();
    let r = render(&args, &sources).unwrap();
    let v = r.expose_secret();
    assert_eq!(
        v["url"], "https://files.example/flows/t0k3n/x",
        "environment first"
    );
    assert_eq!(v["headers"]["Authorization"], "Bearer t0k3n");
    assert_eq!(v["headers"]["${TOKEN}"], "keys are untouched");
    assert_eq!(v["params"], json!(["a", "t0k3n", 3, null, true]));
    assert_eq!(v["price"], "$5 and $t0k3n");
    assert_eq!(v["timeout"], 30);
    assert_eq!(args, before, "the input was changed");
}

#[test]
fn render_with_redactor_knows_what_it_substituted() {
    let sources = MapSource::new().with("TOKEN", "t0k3n-value");
    let (_, redactor) =
        flowstore_secrets::render_with_redactor(&json!({"h": "Bearer ${TOKEN}"}), &sources)
            .unwrap();
    assert_eq!(
        redactor.redact("server said: bad token t0k3n-value"),
        "server said: bad token ***"
    );
}

#[test]
fn template_edge_cases() {
    let sources = MapSource::new()
        .with("A", "${B}")
        .with("B", "b")
        .with("DOLLAR", "$B");
    let r = |s: &str| {
        render(&json!(s), &sources).map(|v| v.expose_secret().as_str().unwrap().to_string())
    };
    // A rendered value is never rendered again.
    assert_eq!(r("${A}").unwrap(), "${B}");
    assert_eq!(r("$DOLLAR").unwrap(), "$B");
    // Not templates: left as they are.
    assert_eq!(r("${").unwrap(), "${");
    assert_eq!(r("${unterminated").unwrap(), "${unterminated");
    assert_eq!(r("${}").unwrap(), "${}");
    assert_eq!(r("${not valid}").unwrap(), "${not valid}");
    assert_eq!(r("cost: 5$").unwrap(), "cost: 5$");
    assert_eq!(r("$-x").unwrap(), "$-x");
    // Unknown names: the reference system's message.
    let err = r("${NOPE_FLOWSTORE}").unwrap_err().to_string();
    assert_eq!(
        err,
        "Template value 'NOPE_FLOWSTORE' does not refer to an environment variable or secret."
    );
    assert!(r("$NOPE_FLOWSTORE/x").is_err());
}

#[test]
fn redaction_scrubs_every_known_value() {
    let token = SecretString::from("ghp_abc123");
    let pass = SecretString::from("pa55");
    assert_eq!(
        redact(
            "https://u:ghp_abc123@host/pa55?x=ghp_abc123",
            &[&token, &pass]
        ),
        "https://u:***@host/***?x=***"
    );
    let mut r = Redactor::new();
    r.add(SecretString::from("s3cr3t"));
    r.add(SecretString::from(""));
    assert_eq!(r.redact("a s3cr3t b"), "a *** b");
    assert!(!format!("{r:?}").contains("s3cr3t"));
}

#[test]
fn capture_logs_sees_tracing_output() {
    let ((), logs) = capture_logs(|| tracing::info!(token = "visible-value", "an event"));
    assert!(
        logs.contains("an event") && logs.contains("visible-value"),
        "{logs}"
    );
    let result = std::panic::catch_unwind(|| assert_secret_absent("visible-value", &logs, "logs"));
    assert!(result.is_err(), "assert_secret_absent did not catch a leak");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_secret_value_reaches_debug_errors_or_logs(secret in "[A-Za-z0-9_+/=-]{8,40}") {
        let sources = MapSource::new().with("CANARY", &secret);
        let args = json!({"headers": {"Authorization": "Bearer ${CANARY}"}, "url": "https://h/$CANARY"});
        let (rendered, logs) = capture_logs(|| render(&args, &sources).unwrap());
        prop_assert_eq!(rendered.expose_secret()["url"].as_str().unwrap(), format!("https://h/{secret}"));
        let value = resolve("CANARY", &sources).unwrap();
        let missing = resolve("MISSING_CANARY_NAME", &sources).unwrap_err();
        for (what, text) in [
            ("Debug of the rendered value", format!("{rendered:?}")),
            ("Debug of the SecretString", format!("{value:?}")),
            ("Debug of the source", format!("{sources:?}")),
            ("a not-found error", missing.to_string()),
            ("a not-found error's Debug", format!("{missing:?}")),
            ("logs", logs),
        ] {
            prop_assert!(!text.contains(&secret), "secret leaked into {}", what);
        }
    }
}
