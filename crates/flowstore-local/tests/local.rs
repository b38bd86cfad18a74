//! Local storage: the conformance suite plus Local's own behaviour (atomic writes, containment,
//! script mode, labels, Prefect 1 references, listing).

use bytes::Bytes;
use flowstore_core::envelope::{seal, seal_bytes, AppInfo};
use flowstore_core::testkit::{Harness, HarnessResult};
use flowstore_core::{
    Error, FlowContent, FlowInput, OpenContext, Registry, Storage, StorageReference, StoredVersion,
};
use flowstore_local::{Local, LocalBuilder, LocalConfig};

struct LocalHarness {
    root: tempfile::TempDir,
}

#[flowstore_core::async_trait]
impl Harness for LocalHarness {
    async fn storage(&self) -> Option<Box<dyn Storage>> {
        let dir = tempfile::tempdir_in(self.root.path()).unwrap().keep();
        Some(Box::new(Local::builder().directory(dir).build().unwrap()))
    }

    async fn script_storage(&self, _flow: &str, source: &[u8]) -> Option<Box<dyn Storage>> {
        let path = self
            .root
            .path()
            .join(format!("script-{}.py", rand_suffix()));
        std::fs::write(&path, source).unwrap();
        Some(Box::new(Local::builder().script(path).build().unwrap()))
    }

    fn registry(&self) -> Registry {
        let mut r = Registry::new();
        flowstore_local::register(&mut r);
        r
    }

    async fn tamper(&self, reference: &StorageReference, flow: &str, bytes: Bytes) -> bool {
        let path = &reference.flows[flow];
        std::fs::write(path, bytes).unwrap();
        true
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn harness() -> HarnessResult<LocalHarness> {
    Ok(LocalHarness {
        root: tempfile::tempdir().unwrap(),
    })
}

flowstore_core::conformance_suite!(harness);

fn app() -> AppInfo {
    AppInfo::new("local-tests", "1.0.0")
}

fn registry() -> Registry {
    let mut r = Registry::new();
    flowstore_local::register(&mut r);
    r
}

#[tokio::test]
async fn serialized_flows_land_at_slug_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Local::builder().directory(dir.path()).build().unwrap();
    let loc = s
        .add_flow(seal("My ETL Flow", &1, &app()).unwrap().into())
        .await
        .unwrap();
    let rel = std::path::Path::new(&loc).strip_prefix(dir.path()).unwrap();
    let rel = rel.to_str().unwrap();
    let (slug, ts) = rel.split_once('/').unwrap();
    assert_eq!(slug, "my-etl-flow");
    // e.g. 2026-11-24t02-51-19-123456-00-00
    assert_eq!(ts.len(), "2026-11-24t02-51-19-123456-00-00".len(), "{ts}");
    assert!(
        ts.ends_with("-00-00") && ts.chars().nth(10) == Some('t'),
        "{ts}"
    );
}

#[tokio::test]
async fn files_that_are_not_versions_are_neither_listed_nor_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Local::builder().directory(dir.path()).build().unwrap();
    for _ in 0..2 {
        s.index_mut().flows.clear();
        s.add_flow(seal("Kept Flow", &1, &app()).unwrap().into())
            .await
            .unwrap();
    }
    let strays = [
        "kept-flow/README.md",
        "kept-flow/2026-draft~",
        "kept-flow/.hidden",
    ];
    for stray in strays {
        std::fs::write(dir.path().join(stray), "mine").unwrap();
    }
    let listed = s.list_versions(None).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let mut options =
        flowstore_core::prune::PruneOptions::new(flowstore_core::prune::RetentionPolicy {
            keep_last: Some(1),
            older_than: None,
        });
    options.grace = std::time::Duration::ZERO;
    let plan = flowstore_core::prune::plan(&s, &options).await.unwrap();
    let report = flowstore_core::prune::execute(&s, &plan, &options, None)
        .await
        .unwrap();
    assert_eq!(report.versions_deleted, 1);
    for stray in strays {
        assert!(dir.path().join(stray).exists(), "{stray} was deleted");
    }
    // Deleting a stray by naming it is refused.
    let stray = StoredVersion {
        location: dir.path().join(strays[0]).display().to_string(),
        ..listed[0].clone()
    };
    let err = s.delete_version(&stray).await.unwrap_err();
    assert!(err.to_string().contains("README.md"), "{err}");
    assert!(dir.path().join(strays[0]).exists());
}

#[tokio::test]
async fn script_mode_requires_path_with_reference_error() {
    let json = r#"{"type":"Local","directory":"/tmp","stored_as_script":true,"flows":{}}"#;
    let err = registry().open_json(json).unwrap_err().to_string();
    assert_eq!(
        err,
        "A `path` must be provided to show where flow `.py` file is stored."
    );
}

#[tokio::test]
async fn script_edits_are_seen_without_re_registering() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("flow.py");
    std::fs::write(&script, "v1").unwrap();
    let mut s = Local::builder().script(&script).build().unwrap();
    let loc = s.add_flow(FlowInput::script("F")).await.unwrap();
    assert_eq!(loc, script.display().to_string());
    std::fs::write(&script, "v2").unwrap();
    let agent = registry().open(&s.reference().unwrap()).unwrap();
    let fetched = agent.get_flow("F").await.unwrap();
    match fetched.content {
        FlowContent::Script { source, path } => {
            assert_eq!(&source[..], b"v2");
            assert_eq!(path.unwrap(), script);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn serialized_storage_refuses_script_flows() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Local::builder().directory(dir.path()).build().unwrap();
    let err = s
        .add_flow(FlowInput::script("F"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Flow \"F\" is a script flow"), "{err}");
}

#[tokio::test]
async fn locations_outside_the_directory_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("flows");
    std::fs::create_dir_all(dir.join("f")).unwrap();
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, "do not read").unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("f").join("link")).unwrap();
    for location in [
        "../secret.txt".to_string(),
        secret.display().to_string(),
        "f/link".to_string(),
        dir.join("f/../../secret.txt").display().to_string(),
        dir.display().to_string(),
    ] {
        let reference = serde_json::json!({
            "type": "Local", "directory": dir, "flows": {"evil": location}
        });
        let agent = registry().open_json(&reference.to_string()).unwrap();
        let err = agent.get_flow("evil").await.unwrap_err();
        assert!(
            matches!(err, Error::OutsideStorage { .. }),
            "{location}: {err:?}"
        );
        assert!(err.to_string().contains("outside the storage"), "{err}");
    }
}

/// A fetch opens the flow file in one checked call (Linux 5.6+: `openat2` refusing links and
/// escapes), else with its last name not followed. A link that stays inside the directory, as
/// the flow file or as its flow's directory, still opens (through the general path, which
/// resolves it and checks where it leads); a FIFO planted as a flow file is refused at once,
/// not waited on.
#[tokio::test]
async fn links_inside_the_directory_open_and_fifos_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("flows");
    let mut storage = Local::builder().directory(&dir).build().unwrap();
    let location = storage
        .add_flow(seal("F", &"linked", &app()).unwrap().into())
        .await
        .unwrap();
    storage.persist().await.unwrap();
    let json = storage.reference().unwrap().to_json();
    let fetch = || async { registry().open_json(&json).unwrap().get_flow("F").await };
    let file = std::path::PathBuf::from(&location);
    let flow_dir = file.parent().unwrap().to_path_buf();

    // The flow file is a link to a file elsewhere inside the directory.
    std::fs::create_dir(dir.join("elsewhere")).unwrap();
    let moved = dir.join("elsewhere/flow");
    std::fs::rename(&file, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &file).unwrap();
    let value: String = fetch().await.unwrap().decode(&app()).unwrap();
    assert_eq!(value, "linked");
    std::fs::remove_file(&file).unwrap();
    std::fs::rename(&moved, &file).unwrap();

    // The flow's directory is a link to a directory inside.
    let real_dir = dir.join("real-flow-dir");
    std::fs::rename(&flow_dir, &real_dir).unwrap();
    std::os::unix::fs::symlink(&real_dir, &flow_dir).unwrap();
    let value: String = fetch().await.unwrap().decode(&app()).unwrap();
    assert_eq!(value, "linked");
    std::fs::remove_file(&flow_dir).unwrap();
    std::fs::rename(&real_dir, &flow_dir).unwrap();

    // A FIFO where the flow file was: refused without waiting for a writer.
    std::fs::remove_file(&file).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), fetch())
        .await
        .expect("the fetch waited on a FIFO")
        .unwrap_err();
    assert!(
        matches!(err, Error::FlowCorrupt { .. }) && err.to_string().contains("not a regular file"),
        "{err:?}"
    );
}

#[tokio::test]
async fn hostname_label_is_default_and_switchable() {
    let host = hostname::get().unwrap().into_string().unwrap();
    let s = Local::builder().label("prod").build().unwrap();
    assert_eq!(s.labels(), vec!["prod".to_string(), host.clone()]);
    let s = Local::builder()
        .label("prod")
        .add_default_labels(false)
        .build()
        .unwrap();
    assert_eq!(s.labels(), vec!["prod".to_string()]);
    assert_eq!(s.reference().unwrap().labels, vec!["prod".to_string()]);
}

#[tokio::test]
async fn flowstore_home_moves_the_default_directory() {
    // Only this test touches FLOWSTORE_HOME.
    std::env::set_var("FLOWSTORE_HOME", "/srv/flowstore-home");
    let d = flowstore_local::default_directory();
    let from_env = LocalBuilder::from_env().unwrap().build().unwrap();
    let plain = Local::builder().build().unwrap();
    std::env::remove_var("FLOWSTORE_HOME");
    assert_eq!(d, std::path::PathBuf::from("/srv/flowstore-home/flows"));
    // from_env reads it and the reference records it; build() alone never reads it.
    assert_eq!(
        from_env.config().directory.as_deref(),
        Some("/srv/flowstore-home/flows")
    );
    assert_eq!(
        from_env.reference().unwrap().fields["directory"],
        "/srv/flowstore-home/flows"
    );
    assert!(plain
        .config()
        .directory
        .as_deref()
        .unwrap()
        .ends_with(".flowstore/flows"));
}

#[tokio::test]
async fn prefect1_references_open_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    // A pickled flow as Prefect 1.4 writes it, and a script flow.
    let flow_dir = dir.path().join("my-etl-flow");
    std::fs::create_dir_all(&flow_dir).unwrap();
    let pickled = flow_dir.join("2026-11-24t03-18-11-798890-00-00");
    std::fs::write(
        &pickled,
        br#"{"flow": "gASVAAAAAAAAAAA=", "versions": {"cloudpickle": "2.2.1", "prefect": "1.4.1", "python": "3.11.7"}}"#,
    )
    .unwrap();
    let reference = serde_json::json!({
        "__version__": "1.4.1", "type": "Local", "directory": dir.path(), "path": null,
        "stored_as_script": false, "secrets": [],
        "flows": {"My ETL Flow": pickled},
    });
    let agent = registry().open_json(&reference.to_string()).unwrap();
    let fetched = agent.get_flow("My ETL Flow").await.unwrap();
    match &fetched.content {
        FlowContent::Prefect1Pickle { pickle, versions } => {
            assert_eq!(pickle[0], 0x80);
            assert_eq!(versions["prefect"], "1.4.1");
        }
        other => panic!("{other:?}"),
    }
    let err = fetched
        .decode::<serde_json::Value>(&app())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot unpickle"), "{err}");

    let script = dir.path().join("flow.py");
    std::fs::write(&script, "with Flow('x') as flow: pass").unwrap();
    let reference = serde_json::json!({
        "__version__": "1.4.1", "type": "Local", "directory": "~/.prefect/flows",
        "path": script, "stored_as_script": true, "secrets": [], "flows": {"x": script},
    });
    let agent = registry().open_json(&reference.to_string()).unwrap();
    let fetched = agent.get_flow("x").await.unwrap();
    assert_eq!(&fetched.bytes()[..], b"with Flow('x') as flow: pass");
}

#[tokio::test]
async fn list_versions_newest_first_with_names() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let mut s = Local::builder().directory(dir.path()).build().unwrap();
        s.add_flow(seal_bytes("Flow A", format!("v{i}").as_bytes(), &app()).into())
            .await
            .unwrap();
    }
    let mut s = Local::builder().directory(dir.path()).build().unwrap();
    s.add_flow(seal_bytes("Flow B", b"b", &app()).into())
        .await
        .unwrap();
    // A temp file left by a crashed writer is never listed.
    std::fs::write(dir.path().join("flow-a/.tmp-1-2-3"), b"partial").unwrap();

    let versions = s.list_versions(Some("Flow A")).await.unwrap();
    assert_eq!(versions.len(), 3);
    assert!(versions.windows(2).all(|w| w[0].location > w[1].location));
    assert!(versions.iter().all(|v| v.flow.as_deref() == Some("Flow A")));
    let all = s.list_versions(None).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].flow.as_deref(), Some("Flow B"));
}

#[tokio::test]
async fn concurrent_registrations_get_distinct_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut handles = Vec::new();
    for i in 0..32 {
        let d = dir.path().to_path_buf();
        handles.push(tokio::spawn(async move {
            let mut s = Local::builder().directory(d).build().unwrap();
            let loc = s
                .add_flow(seal("same", &i, &app()).unwrap().into())
                .await
                .unwrap();
            (loc, s.reference().unwrap())
        }));
    }
    let mut locations = Vec::new();
    for h in handles {
        let (loc, reference) = h.await.unwrap();
        let agent = registry().open(&reference).unwrap();
        agent.get_flow("same").await.unwrap();
        locations.push(loc);
    }
    locations.sort();
    locations.dedup();
    assert_eq!(locations.len(), 32);
}

#[tokio::test]
async fn fetch_to_file_never_replaces_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Local::builder()
        .directory(dir.path().join("flows"))
        .build()
        .unwrap();
    s.add_flow(seal_bytes("F", b"payload", &app()).into())
        .await
        .unwrap();
    let out = dir.path().join("out.bin");
    s.get_flow_to_file("F", &out).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), b"payload");
    let err = s.get_flow_to_file("F", &out).await.unwrap_err().to_string();
    assert!(err.contains("never replaced"), "{err}");
}

#[tokio::test]
async fn streamed_fetch_of_a_tampered_flow_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Local::builder()
        .directory(dir.path().join("flows"))
        .build()
        .unwrap();
    let payload = vec![3u8; 3 * 1024 * 1024];
    let loc = s
        .add_flow(seal_bytes("F", &payload, &app()).into())
        .await
        .unwrap();
    let out = dir.path().join("good.bin");
    let fetched = s.get_flow_to_file("F", &out).await.unwrap();
    assert_eq!(fetched.size(), payload.len() as u64);
    assert!(matches!(
        fetched.content,
        FlowContent::File {
            header: Some(_),
            ..
        }
    ));
    assert_eq!(std::fs::read(&out).unwrap(), payload);

    let mut bytes = std::fs::read(&loc).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let mut perms = std::fs::metadata(&loc).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&loc, perms).unwrap();
    std::fs::write(&loc, bytes).unwrap();
    let bad = dir.path().join("bad.bin");
    let err = s.get_flow_to_file("F", &bad).await.unwrap_err();
    assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
    assert!(!bad.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().starts_with(".tmp")),
        "{leftovers:?}"
    );
}

#[tokio::test]
async fn stored_flows_are_read_only_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Local::builder().directory(dir.path()).build().unwrap();
    let loc = s
        .add_flow(seal_bytes("F", b"x", &app()).into())
        .await
        .unwrap();
    assert!(std::fs::metadata(loc).unwrap().permissions().readonly());
}

#[test]
fn url_typed_and_reference_configs_are_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("my flows");
    let url = format!(
        "file://{}/my%20flows/?label=prod,eu&add_default_labels=false&secret=DB_PASSWORD",
        dir.path().display()
    );
    let ctx = OpenContext {
        options: vec![("label".into(), "team-a".into())],
        ..OpenContext::default()
    };
    let from_url = Local::from_url(&url, &ctx).unwrap();
    let typed = Local::builder()
        .directory(&flows)
        .labels(["prod", "eu", "team-a"])
        .add_default_labels(false)
        .secret("DB_PASSWORD")
        .build()
        .unwrap();
    let paired = LocalBuilder::new()
        .with_configs([
            ("directory", flows.to_str().unwrap()),
            ("label", "prod"),
            ("label", "eu,team-a"),
            ("add_default_labels", "false"),
            ("secret", "DB_PASSWORD"),
        ])
        .unwrap()
        .build()
        .unwrap();
    let reopened = Local::from_reference(&from_url.reference().unwrap(), &ctx).unwrap();
    assert_eq!(
        from_url.config(),
        &LocalConfig {
            directory: Some(flows.display().to_string()),
            path: None,
            stored_as_script: false,
        }
    );
    for other in [&typed, &paired, &reopened] {
        assert_eq!(from_url.config(), other.config());
        assert_eq!(from_url.labels(), other.labels());
        assert_eq!(from_url.secrets(), other.secrets());
    }
    assert_eq!(from_url.labels(), ["prod", "eu", "team-a"]);
    assert_eq!(
        from_url.reference().unwrap(),
        reopened.reference().unwrap(),
        "a reopened storage writes the same reference"
    );

    // Script mode from URL options records the same as the typed setter.
    let script = dir.path().join("flow.py");
    let url = format!(
        "file://{}?stored_as_script=true&path={}",
        dir.path().display(),
        script.display()
    );
    let by_url = LocalBuilder::from_url(&url).unwrap().build().unwrap();
    let typed = Local::builder()
        .directory(dir.path())
        .script(&script)
        .build()
        .unwrap();
    assert_eq!(by_url.config(), typed.config());
    assert!(by_url.capabilities().script && !by_url.capabilities().serialized);
}

#[test]
fn unknown_options_and_bad_urls_are_clear_errors() {
    let e = LocalBuilder::from_url("file:///tmp/flows?directry=/x")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Unknown Local option \"directry\"")
            && e.contains("directory")
            && e.contains("label"),
        "{e}"
    );
    let e = Local::builder()
        .with_config("stored_as_script", "maybe")
        .unwrap_err()
        .to_string();
    assert!(e.contains("stored_as_script=\"maybe\""), "{e}");
    for (url, expected) in [
        ("s3://bucket/x", "takes file://"),
        ("file://server/share", "absolute directory on this machine"),
        ("not a url", "cannot be parsed"),
    ] {
        let e = Local::from_url(url, &OpenContext::default()).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{url}: {e:?}");
        assert!(e.to_string().contains(expected), "{url}: {e}");
    }
    // localhost is this machine.
    let s = LocalBuilder::from_url("file://localhost/tmp/flows")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(s.config().directory.as_deref(), Some("/tmp/flows"));
    // Options given with the URL name the bad one too.
    let e = registry()
        .open_url_with("file:///tmp/flows", [("lable", "prod")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"lable\""), "{e}");
    let e = Local::builder().script("").build();
    assert!(e.is_ok(), "an empty path is still a path");
    let e = Local::builder()
        .with_config("stored_as_script", "true")
        .unwrap()
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("A `path` must be provided"), "{e}");
}

#[tokio::test]
async fn missing_files_and_directories_are_typed_not_found_with_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Local::builder().directory(dir.path()).build().unwrap();
    let loc = s
        .add_flow(seal_bytes("F", b"x", &app()).into())
        .await
        .unwrap();
    let reference = s.reference().unwrap();
    let mut perms = std::fs::metadata(&loc).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&loc, perms).unwrap();
    std::fs::remove_file(&loc).unwrap();
    for fetch in [
        registry().open(&reference).unwrap().get_flow("F").await,
        s.get_flow_to_file("F", &dir.path().join("out")).await,
    ] {
        let err = fetch.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(
            matches!(&err, Error::NotFound { what: "file", location, .. } if location == &loc),
            "{err:?}"
        );
        let source = std::error::Error::source(&err).expect("the I/O error is kept");
        let io = source.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(err.to_string().contains("Register the flow again"), "{err}");
    }

    // A whole directory that is not there (another machine).
    let mut moved = reference.clone();
    moved.fields["directory"] = serde_json::json!(dir.path().join("elsewhere"));
    let err = registry()
        .open(&moved)
        .unwrap()
        .get_flow("F")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "directory",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some());

    // A script that was removed.
    let script = dir.path().join("gone.py");
    let mut s = Local::builder().script(&script).build().unwrap();
    s.add_flow(FlowInput::script("S")).await.unwrap();
    let err = s.get_flow("S").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("its script"), "{err}");
}

#[test]
fn builders_and_storages_show_their_configuration() {
    let b = Local::builder().directory("/srv/flows").label("prod");
    assert_eq!(b.config().directory.as_deref(), Some("/srv/flows"));
    let debug = format!("{b:?}");
    assert!(
        debug.contains("/srv/flows") && debug.contains("prod"),
        "{debug}"
    );
    let s = b.durable(false).build().unwrap();
    assert_eq!(s.flow_directory(), std::path::Path::new("/srv/flows"));
    assert_eq!(s.type_name(), "Local");
    let caps = s.capabilities();
    assert!(caps.write && caps.many_flows && caps.serialized && caps.list_versions);
    assert!(!caps.script && caps.stream_to_file);
}

/// What Prefect 1.4.1 wrote for `Local(path=f"{ROOT}/elsewhere/etl.flow",
/// directory=f"{ROOT}/flows")` with `add_flow(Flow("My ETL Flow"))` then `serialize()`
/// (`prefect==1.4.1`, cloudpickle 3.1.3, Python 3.11.7; the run's root replaced by `{ROOT}`):
/// the reference, and the file it wrote at `path`, outside `directory`.
const PREFECT_EXPLICIT_PATH_REFERENCE: &str = r#"{"flows": {"My ETL Flow": "{ROOT}/elsewhere/etl.flow"}, "secrets": [], "directory": "{ROOT}/flows", "path": "{ROOT}/elsewhere/etl.flow", "stored_as_script": false, "__version__": "1.4.1", "type": "Local"}"#;
const PREFECT_EXPLICIT_PATH_FLOW: &str = r#"{"flow": "gASVzwEAAAAAAACMEXByZWZlY3QuY29yZS5mbG93lIwERmxvd5STlCmBlH2UKIwGX2NhY2hllH2UjARuYW1llIwLTXkgRVRMIEZsb3eUjAZsb2dnZXKUjAdsb2dnaW5nlIwJZ2V0TG9nZ2VylJOUjBNwcmVmZWN0Lk15IEVUTCBGbG93lIWUUpSMCHNjaGVkdWxllE6MCGV4ZWN1dG9ylE6MCnJ1bl9jb25maWeUTowHc3RvcmFnZZROjAZyZXN1bHSUTowWdGVybWluYWxfc3RhdGVfaGFuZGxlcpROjAV0YXNrc5SPlIwFZWRnZXOUj5SMDl9zbHVnX2NvdW50ZXJzlIwLY29sbGVjdGlvbnOUjAtkZWZhdWx0ZGljdJSTlIwJZnVuY3Rvb2xzlIwHcGFydGlhbJSTlIwJaXRlcnRvb2xzlIwFY291bnSUk5SFlFKUKGgjSwGFlH2UTnSUYoWUUpSMBXNsdWdzlH2UjAljb25zdGFudHOUaB2MCGJ1aWx0aW5zlIwEZGljdJSTlIWUUpSMEF9yZWZlcmVuY2VfdGFza3OUj5SMEF9wcmVmZWN0X3ZlcnNpb26UjAUxLjQuMZSMDnN0YXRlX2hhbmRsZXJzlF2UdWIu", "versions": {"cloudpickle": "3.1.3", "prefect": "1.4.1", "python": "3.11.7"}}"#;

/// The Python of a Prefect 1.4.1 venv, if the interop tests have one.
fn prefect1_python(test: &str) -> Option<std::ffi::OsString> {
    let python = std::env::var_os("FLOWSTORE_TEST_PREFECT1_PYTHON");
    if python.is_none() {
        flowstore_core::testkit::skip(
            test,
            &"no Prefect 1 python: set FLOWSTORE_TEST_PREFECT1_PYTHON".into(),
        );
    }
    python
}

/// Runs `script` with the Prefect 1 python in `cwd` and returns its stdout.
fn run_prefect1(python: &std::ffi::OsStr, cwd: &std::path::Path, script: &str) -> String {
    let out = std::process::Command::new(python)
        .current_dir(cwd)
        .env("HOME", cwd)
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Opens `reference` (a Prefect 1 explicit-path reference whose flow is at `path`) and checks
/// the flow loads from there, by `get_flow` and by `get_flow_to_file`, while every other location
/// outside the directory is still refused.
async fn explicit_path_opens_and_nothing_else_escapes(
    reference: &str,
    root: &std::path::Path,
    path: &std::path::Path,
) {
    let agent = registry().open_json(reference).unwrap();
    for fetched in [
        agent.get_flow("My ETL Flow").await.unwrap(),
        agent
            .get_flow_to_file("My ETL Flow", &root.join("copy"))
            .await
            .unwrap(),
    ] {
        match &fetched.content {
            FlowContent::Prefect1Pickle { versions, .. } => {
                assert_eq!(versions["prefect"], "1.4.1")
            }
            other => panic!("{other:?}"),
        }
    }

    let dir = root.join("flows");
    std::fs::create_dir_all(dir.join("f")).unwrap();
    let other = path.with_file_name("other.flow");
    std::fs::copy(path, &other).unwrap();
    std::os::unix::fs::symlink(path, dir.join("f/link")).unwrap();
    let elsewhere = path.parent().unwrap();
    let mut value: serde_json::Value = serde_json::from_str(reference).unwrap();
    for location in [
        other.display().to_string(),
        format!("{}/x/../etl.flow", elsewhere.display()),
        format!(
            "../{}/etl.flow",
            elsewhere.file_name().unwrap().to_str().unwrap()
        ),
        "f/link".to_string(),
        dir.display().to_string(),
    ] {
        value["flows"]["evil"] = location.clone().into();
        let agent = registry().open_json(&value.to_string()).unwrap();
        let err = agent.get_flow("evil").await.unwrap_err();
        assert!(
            matches!(err, Error::OutsideStorage { .. }),
            "{location}: {err:?}"
        );
    }
}

#[tokio::test]
async fn prefect1_flow_at_an_explicit_path_outside_the_directory_opens() {
    let root = tempfile::tempdir().unwrap();
    let root_str = root.path().display().to_string();
    let path = root.path().join("elsewhere/etl.flow");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::create_dir_all(root.path().join("flows")).unwrap(); // Prefect's Local() makes it
    std::fs::write(&path, PREFECT_EXPLICIT_PATH_FLOW).unwrap();
    let reference = PREFECT_EXPLICIT_PATH_REFERENCE.replace("{ROOT}", &root_str);
    explicit_path_opens_and_nothing_else_escapes(&reference, root.path(), &path).await;
}

/// The same with the reference and file a live Prefect 1.4.1 writes now.
#[tokio::test]
async fn prefect1_explicit_path_written_by_a_live_prefect_opens() {
    let Some(python) = prefect1_python("prefect1_explicit_path_written_by_a_live_prefect_opens")
    else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("elsewhere/etl.flow");
    let reference = run_prefect1(
        &python,
        root.path(),
        &format!(
            "import json; from prefect import Flow; from prefect.storage import Local\n\
             s = Local(path={path:?}, directory={dir:?})\n\
             s.add_flow(Flow('My ETL Flow'))\n\
             print(json.dumps(s.serialize()))",
            path = path.display().to_string(),
            dir = root.path().join("flows").display().to_string(),
        ),
    );
    explicit_path_opens_and_nothing_else_escapes(&reference, root.path(), &path).await;
}

/// What Prefect 1.4.1 wrote for `Local(path="flows.etl", stored_as_script=True,
/// directory=f"{ROOT}/flows")` with `add_flow(Flow("ETL"))` then `serialize()` (the run's root
/// replaced by `{ROOT}`): the location is the module path itself.
const PREFECT_MODULE_PATH_REFERENCE: &str = r#"{"flows": {"ETL": "flows.etl"}, "secrets": [], "directory": "{ROOT}/flows", "path": "flows.etl", "stored_as_script": true, "__version__": "1.4.1", "type": "Local"}"#;

#[tokio::test]
async fn prefect1_script_module_paths_are_found_as_python_imports_them() {
    // Only this test sets PYTHONPATH. The working directory (this crate) has no `flows` package,
    // so the module is found through the PYTHONPATH entries, in order.
    assert!(!std::path::Path::new("flows").exists());
    let root = tempfile::tempdir().unwrap();
    let (first, second) = (root.path().join("first"), root.path().join("second"));
    std::fs::create_dir_all(first.join("flows")).unwrap(); // a namespace part without etl
    std::fs::create_dir_all(second.join("flows")).unwrap();
    let module = second.join("flows/etl.py");
    let source = "from prefect import Flow\nwith Flow('ETL') as flow:\n    pass\n";
    std::fs::write(&module, source).unwrap();
    let reference =
        PREFECT_MODULE_PATH_REFERENCE.replace("{ROOT}", &root.path().display().to_string());

    std::env::set_var(
        "PYTHONPATH",
        std::env::join_paths([&first, &second]).unwrap(),
    );
    let agent = registry().open_json(&reference).unwrap();
    let fetched = agent.get_flow("ETL").await;
    let to_file = agent
        .get_flow_to_file("ETL", &root.path().join("copy.py"))
        .await;
    std::env::set_var("PYTHONPATH", &first);
    let missing = agent.get_flow("ETL").await;
    std::env::remove_var("PYTHONPATH");

    let source_text = source;
    let fetched = fetched.unwrap();
    assert_eq!(fetched.location, "flows.etl");
    match &fetched.content {
        FlowContent::Script { source, path } => {
            assert_eq!(&source[..], source_text.as_bytes());
            assert_eq!(path.as_deref(), Some(module.as_path()));
        }
        other => panic!("{other:?}"),
    }
    to_file.unwrap();
    assert_eq!(
        std::fs::read(root.path().join("copy.py")).unwrap(),
        source_text.as_bytes()
    );
    // The reference keeps the module path as Prefect wrote it.
    assert_eq!(agent.reference().unwrap().fields["path"], "flows.etl");

    let err = missing.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let msg = err.to_string();
    for part in [
        "Flow \"ETL\"",
        "`flows.etl` is a Python module path",
        "flows/etl.py",
        "flows/etl/__init__.py",
        "PYTHONPATH",
        &first.display().to_string(),
    ] {
        assert!(msg.contains(part), "{part:?} not in: {msg}");
    }

    // A live Prefect 1.4.1 agent, given the same reference and search path (an empty working
    // directory, then PYTHONPATH), loads the flow from the same file.
    let Some(python) =
        prefect1_python("prefect1_script_module_paths_are_found_as_python_imports_them")
    else {
        return;
    };
    let cwd = root.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let out = std::process::Command::new(python)
        .current_dir(&cwd)
        .env("HOME", &cwd)
        .env(
            "PYTHONPATH",
            std::env::join_paths([&first, &second]).unwrap(),
        )
        .args([
            "-c",
            &format!(
                "import json, sys\n\
                 from prefect.serialization.storage import StorageSchema\n\
                 flow = StorageSchema().load(json.loads({reference:?})).get_flow('ETL')\n\
                 print(flow.name, sys.modules['flows.etl'].__file__)"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("ETL {}", module.display())
    );
}

/// Local references flowstore writes load in Prefect 1.4.1 as they are: Prefect's own schema
/// reads them into a `Local` storage with the same directory, path, mode and flows.
#[tokio::test]
async fn flowstore_local_references_load_in_prefect1() {
    let Some(python) = prefect1_python("flowstore_local_references_load_in_prefect1") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let mut serialized = Local::builder()
        .directory(root.path().join("flows"))
        .label("prod")
        .secret("DB_PASSWORD")
        .build()
        .unwrap();
    serialized
        .add_flow(seal("My ETL Flow", &["extract"], &app()).unwrap().into())
        .await
        .unwrap();
    let script = root.path().join("flow.py");
    std::fs::write(&script, "").unwrap();
    let mut script_storage = Local::builder().script(&script).build().unwrap();
    script_storage
        .add_flow(FlowInput::script("S"))
        .await
        .unwrap();
    for storage in [&serialized, &script_storage] {
        let reference = storage.reference().unwrap();
        let json = reference.to_json();
        let loaded = run_prefect1(
            &python,
            root.path(),
            &format!(
                "import json\n\
                 from prefect.serialization.storage import StorageSchema\n\
                 s = StorageSchema().load(json.loads({json:?}))\n\
                 print(json.dumps({{'type': type(s).__name__, 'directory': s.directory, \
                 'path': s.path, 'stored_as_script': s.stored_as_script, 'flows': s.flows, \
                 'secrets': s.secrets}}))"
            ),
        );
        let loaded: serde_json::Value = serde_json::from_str(&loaded).unwrap();
        let fields = &reference.fields;
        assert_eq!(loaded["type"], "Local", "{json}");
        assert_eq!(loaded["directory"], fields["directory"], "{json}");
        assert_eq!(loaded["path"], fields["path"], "{json}");
        assert_eq!(
            loaded["stored_as_script"], fields["stored_as_script"],
            "{json}"
        );
        assert_eq!(
            loaded["flows"],
            serde_json::to_value(&reference.flows).unwrap(),
            "{json}"
        );
        assert_eq!(
            loaded["secrets"],
            serde_json::to_value(&reference.secrets).unwrap(),
            "{json}"
        );
    }
}
