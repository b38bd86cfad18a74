//! The `flowstore` binary end to end on Local storage (no server): register, list, fetch,
//! inspect, a tampered flow refused, exit codes, JSON output.

use std::path::Path;
use std::process::{Command, Output};

fn flowstore(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowstore"))
        .args(args)
        .env("FLOWSTORE_HOME", home)
        .env_remove("RUST_LOG")
        .output()
        .expect("run flowstore")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn register_list_fetch_inspect_and_refuse_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let flow = dir.path().join("etl.flow");
    std::fs::write(&flow, "extract -> transform -> load\n").unwrap();
    let reference = dir.path().join("ref.json");

    let out = flowstore(
        &home,
        &[
            "register",
            flow.to_str().unwrap(),
            "--name",
            "My ETL Flow",
            "--label",
            "prod",
            "--out",
            reference.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["type"], "Local");
    let location = printed["flows"]["My ETL Flow"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(location.contains("/flows/my-etl-flow/"), "{location}");
    assert!(printed["labels"]
        .as_array()
        .unwrap()
        .contains(&"prod".into()));
    assert!(text(&out.stderr).contains("Registered flow \"My ETL Flow\""));
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reference).unwrap()).unwrap();
    assert_eq!(on_disk, printed);

    let out = flowstore(&home, &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(
        listing.contains("My ETL Flow") && listing.contains(&location),
        "{listing}"
    );

    let out = flowstore(&home, &["fetch", reference.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "extract -> transform -> load\n");
    assert!(text(&out.stderr).contains("verified"));

    let out = flowstore(&home, &["inspect", reference.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("digest:   sha256:"));

    // One byte altered behind flowstore's back: refused with exit code 4, nothing printed on stdout.
    let mut bytes = std::fs::read(&location).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    let mut perms = std::fs::metadata(&location).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&location, perms).unwrap();
    std::fs::write(&location, bytes).unwrap();
    let out = flowstore(&home, &["fetch", reference.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("is corrupt or was altered") && err.contains(&location),
        "{err}"
    );
}

#[test]
fn exit_codes_and_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let flow = dir.path().join("f.flow");
    std::fs::write(&flow, "x").unwrap();
    let reference = dir.path().join("ref.json");
    let out = flowstore(
        &home,
        &[
            "--json",
            "register",
            flow.to_str().unwrap(),
            "--name",
            "F",
            "--out",
            reference.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));

    let out = flowstore(
        &home,
        &[
            "--json",
            "fetch",
            reference.to_str().unwrap(),
            "--flow",
            "missing",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let e: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(e["causes"][0]
        .as_str()
        .unwrap()
        .contains("Flow \"missing\" is not contained"));

    let out = flowstore(
        &home,
        &["fetch", dir.path().join("nope.json").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3));

    std::fs::write(dir.path().join("bad.json"), r#"{"type": "Nope"}"#).unwrap();
    let out = flowstore(
        &home,
        &["fetch", dir.path().join("bad.json").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("holds no flows"));
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"type": "Nope", "flows": {"a": "b"}}"#,
    )
    .unwrap();
    let out = flowstore(
        &home,
        &["fetch", dir.path().join("bad.json").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Unknown storage type \"Nope\""));

    let out = flowstore(
        &home,
        &[
            "register",
            flow.to_str().unwrap(),
            "--name",
            "F",
            "--storage",
            "ftp://x",
        ],
    );
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("Unknown storage URL scheme"));

    let out = flowstore(&home, &["register"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn script_flows_are_read_at_each_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let script = dir.path().join("flow.py");
    std::fs::write(&script, "v1").unwrap();
    let reference = dir.path().join("ref.json");
    let out = flowstore(
        &home,
        &[
            "register",
            script.to_str().unwrap(),
            "--name",
            "S",
            "--script",
            "--out",
            reference.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(&script, "v2").unwrap();
    let out = flowstore(&home, &["fetch", reference.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "v2");
}

#[test]
fn fetch_to_a_file_and_list_one_flow() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let flow = dir.path().join("f.flow");
    std::fs::write(&flow, "payload").unwrap();
    for name in ["A", "A", "B"] {
        let r = dir.path().join(format!("{name}.json"));
        let out = flowstore(
            &home,
            &[
                "register",
                flow.to_str().unwrap(),
                "--name",
                name,
                "--out",
                r.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = flowstore(&home, &["--json", "list", "--flow", "A"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let target = dir.path().join("out.bin");
    let out = flowstore(
        &home,
        &[
            "fetch",
            dir.path().join("B.json").to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&target).unwrap(), b"payload");
}

#[test]
fn declared_secrets_are_resolved_before_fetching() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let flow = dir.path().join("f.flow");
    std::fs::write(&flow, "x").unwrap();
    let reference = dir.path().join("ref.json");
    let out = flowstore(
        &home,
        &[
            "register",
            flow.to_str().unwrap(),
            "--name",
            "F",
            "--out",
            reference.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reference).unwrap()).unwrap();
    r["secrets"] = serde_json::json!(["FLOWSTORE_TEST_DECLARED_SECRET"]);
    std::fs::write(&reference, r.to_string()).unwrap();

    let out = flowstore(&home, &["fetch", reference.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(6));
    let err = text(&out.stderr);
    assert!(
        err.contains("Secret \"FLOWSTORE_TEST_DECLARED_SECRET\" was not found"),
        "{err}"
    );

    // Found in a secrets directory configured through FLOWSTORE_SECRETS_DIR.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("FLOWSTORE_TEST_DECLARED_SECRET"), "value").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowstore"))
        .args(["fetch", reference.to_str().unwrap()])
        .env("FLOWSTORE_HOME", &home)
        .env("FLOWSTORE_SECRETS_DIR", &secrets)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("value"));
}

#[test]
fn register_and_fetch_through_a_webhook_url() {
    let Ok(base) = std::env::var("FLOWSTORE_TEST_WEBHOOK_URL") else {
        flowstore_core::testkit::skip(
            "register_and_fetch_through_a_webhook_url",
            &flowstore_core::testkit::Skip(
                "FLOWSTORE_TEST_WEBHOOK_URL is not set: nginx is not running".into(),
            ),
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let flow = dir.path().join("f.flow");
    std::fs::write(&flow, "over http").unwrap();
    let reference = dir.path().join("ref.json");
    let url = format!("{base}/cli-test");
    let out = flowstore(
        &home,
        &[
            "register",
            flow.to_str().unwrap(),
            "--name",
            "Web Flow",
            "--storage",
            &url,
            "--out",
            reference.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["type"], "Webhook");
    assert!(r["flows"]["Web Flow"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{url}/web-flow/")));
    let out = flowstore(&home, &["fetch", reference.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "over http");
}

#[test]
fn register_list_and_fetch_through_s3() {
    let Ok(endpoint) = std::env::var("FLOWSTORE_TEST_S3_ENDPOINT") else {
        flowstore_core::testkit::skip(
            "register_list_and_fetch_through_s3",
            &flowstore_core::testkit::Skip(
                "FLOWSTORE_TEST_S3_ENDPOINT is not set: the S3 server is not running".into(),
            ),
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let flow = dir.path().join("f.flow");
    std::fs::write(&flow, "in a bucket").unwrap();
    let reference = dir.path().join("ref.json");
    let prefix = format!("cli-{}", std::process::id());
    let url = format!("s3://flowstore-test/{prefix}");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flowstore"))
            .args(args)
            .env("FLOWSTORE_HOME", &home)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "AKIAFLOWSTORECLI")
            .env("AWS_SECRET_ACCESS_KEY", "cli-secret-value")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let out = run(&[
            "register",
            flow.to_str().unwrap(),
            "--name",
            "S3 Flow",
            "--storage",
            &url,
            "--out",
            reference.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(!text(&out.stdout).contains("cli-secret-value"));
    }
    let out = run(&["--json", "list", "--storage", &url, "--flow", "S3 Flow"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let versions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let out = run(&["fetch", reference.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "in a bucket");
}

#[test]
fn register_and_fetch_a_git_flow_printing_the_commit() {
    let (Ok(root), Ok(daemon)) = (
        std::env::var("FLOWSTORE_TEST_GIT_ROOT"),
        std::env::var("FLOWSTORE_TEST_GIT_DAEMON"),
    ) else {
        flowstore_core::testkit::skip(
            "register_and_fetch_a_git_flow_printing_the_commit",
            &flowstore_core::testkit::Skip(
                "FLOWSTORE_TEST_GIT_ROOT is not set: the git servers are not running".into(),
            ),
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let git = |cwd: &std::path::Path, args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.email=t@t", "-c", "user.name=t"])
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    let name = format!("cli/repo-{}", std::process::id());
    let bare = std::path::Path::new(&root).join(format!("{name}.git"));
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("flows")).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(
        work.join("flows/etl.py"),
        "with Flow(\"Git ETL\") as flow: pass\n",
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "flow"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);

    let home = dir.path().join("home");
    let reference = dir.path().join("ref.json");
    let url = format!("git://{daemon}/{name}.git#branch=main&pin=true");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flowstore"))
            .args(args)
            .env("FLOWSTORE_HOME", &home)
            .env("FLOWSTORE_GIT_CACHE", dir.path().join("cache"))
            .output()
            .unwrap()
    };
    let out = run(&[
        "register",
        "flows/etl.py",
        "--name",
        "Git ETL",
        "--script",
        "--storage",
        &url,
        "--out",
        reference.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["type"].as_str(), r["commit"].as_str()),
        (Some("Git"), Some(sha.as_str()))
    );
    let out = run(&["fetch", reference.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("at {sha}")),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("Git ETL"));
}

/// `docker://` registration through the binary: a daemonless build pushed to the real registry
/// started by `cargo xtask test`, fetched back from outside the image (just the flow's layer, by
/// digest), in serialized and script mode.
#[cfg(feature = "docker")]
#[test]
fn register_and_fetch_through_a_docker_registry() {
    let Ok(registry) = std::env::var("FLOWSTORE_TEST_REGISTRY") else {
        flowstore_core::testkit::skip(
            "register_and_fetch_through_a_docker_registry",
            &flowstore_core::testkit::Skip(
                "FLOWSTORE_TEST_REGISTRY is not set: the registry is not running".into(),
            ),
        );
        return;
    };
    // A base image made of one file, pushed without any daemon.
    let base = format!("{registry}/cli-base:1");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(
            flowstore_docker::registry::Registry::new(&registry, None).push_files_image(
                "cli-base",
                "1",
                &[("/etc/motd".into(), b"base".to_vec(), 0o644)],
                flowstore_docker::oci::ContainerConfig {
                    env: Some(vec!["PATH=/bin".into()]),
                    ..Default::default()
                },
            ),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let url = format!(
        "docker://{registry}/cli-{}?mode=daemonless&base_image={base}",
        std::process::id()
    );
    let flow = dir.path().join("f.flow");
    std::fs::write(&flow, "in an image").unwrap();
    let script = dir.path().join("etl.py");
    std::fs::write(&script, "with Flow(\"Docker Script\") as flow: pass\n").unwrap();
    for (file, name, script_mode, expected) in [
        (&flow, "Docker Flow", false, "in an image"),
        (
            &script,
            "Docker Script",
            true,
            "with Flow(\"Docker Script\") as flow: pass\n",
        ),
    ] {
        let reference = dir.path().join(format!("{name}.json"));
        let mut args = vec![
            "register",
            file.to_str().unwrap(),
            "--name",
            name,
            "--storage",
            &url,
            "--out",
            reference.to_str().unwrap(),
        ];
        if script_mode {
            args.push("--script");
        }
        let out = flowstore(&home, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["type"], "Docker");
        assert_eq!(r["stored_as_script"], script_mode);
        assert!(r["image_digest"].as_str().unwrap().starts_with("sha256:"));
        let out = flowstore(&home, &["fetch", reference.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), expected);
    }
    let bad = format!("docker://{registry}/cli?colour=red");
    let out = flowstore(
        &home,
        &[
            "register",
            flow.to_str().unwrap(),
            "--name",
            "x",
            "--storage",
            &bad,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown option \"colour\""),
        "{}",
        text(&out.stderr)
    );
}

#[cfg(feature = "git")]
#[test]
fn cache_status_and_gc_show_and_trim_the_git_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("git-cache");
    // An entry left by an older flowstore (the previous layout: one directory per remote) and a
    // checkout half-written by a process that is gone (no pid is this large).
    std::fs::create_dir_all(cache.join("0123456789abcdef01234567/repo.git")).unwrap();
    std::fs::write(
        cache.join("0123456789abcdef01234567/repo.git/pack"),
        vec![0u8; 4096],
    )
    .unwrap();
    std::fs::create_dir_all(cache.join(".tmp/4294967294-0-0/tree")).unwrap();
    std::fs::write(cache.join(".tmp/4294967294-0-0/tree/f"), vec![0u8; 1000]).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flowstore"))
            .args(args)
            .env("FLOWSTORE_GIT_CACHE", &cache)
            .env_remove("FLOWSTORE_GIT_CACHE_MAX_SIZE")
            .env_remove("FLOWSTORE_GIT_CACHE_MAX_AGE")
            .output()
            .expect("run flowstore");
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        out
    };

    let status: serde_json::Value =
        serde_json::from_slice(&run(&["cache", "status", "--json"]).stdout).unwrap();
    assert_eq!(status["total_size"], 4096, "{status}");
    assert_eq!(status["entries"][0]["kind"], "other", "{status}");
    let human = run(&["cache", "status"]);
    assert!(
        text(&human.stderr).contains("1 entry, 4.0 KiB"),
        "{}",
        text(&human.stderr)
    );
    assert!(
        text(&human.stdout).starts_with("KIND"),
        "{}",
        text(&human.stdout)
    );

    // Within the default limits nothing goes but the abandoned temporary.
    let report: serde_json::Value =
        serde_json::from_slice(&run(&["cache", "gc", "--json"]).stdout).unwrap();
    assert_eq!(report["temporaries_removed"], 1, "{report}");
    assert_eq!(report["evicted"].as_array().unwrap().len(), 0, "{report}");
    assert!(!cache.join(".tmp/4294967294-0-0").exists());
    // An age limit of zero takes the rest.
    let out = run(&["cache", "gc", "--max-age", "0", "--keep-recent", "0"]);
    assert!(
        text(&out.stderr).contains("Removed 1 entry"),
        "{}",
        text(&out.stderr)
    );
    assert!(!cache.join("0123456789abcdef01234567").exists());
}

#[test]
fn storage_options_are_set_on_the_command_line_and_unknown_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let flow = dir.path().join("f.flow");
    std::fs::write(&flow, "options").unwrap();
    let url = format!("file://{}", dir.path().join("flows").display());
    let out = flowstore(
        &home,
        &[
            "register",
            flow.to_str().unwrap(),
            "--name",
            "Optioned",
            "--storage",
            &url,
            "--set",
            "label=eu",
            "--set",
            "add_default_labels=false",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["labels"], serde_json::json!(["eu"]));

    let out = flowstore(
        &home,
        &[
            "register",
            flow.to_str().unwrap(),
            "--name",
            "Optioned",
            "--storage",
            &url,
            "--set",
            "diretory=/tmp",
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Unknown Local option \"diretory\""),
        "{}",
        text(&out.stderr)
    );
    let out = flowstore(&home, &["register", "x", "--name", "n", "--set", "novalue"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// The endpoint comes from `--set` and is recorded in the reference, so the agent that fetches
/// needs nothing but credentials from its environment.
#[test]
fn an_s3_endpoint_given_as_an_option_is_recorded_for_the_agent() {
    let Ok(endpoint) = std::env::var("FLOWSTORE_TEST_S3_ENDPOINT") else {
        flowstore_core::testkit::skip(
            "an_s3_endpoint_given_as_an_option_is_recorded_for_the_agent",
            &flowstore_core::testkit::Skip(
                "FLOWSTORE_TEST_S3_ENDPOINT is not set: the S3 server is not running".into(),
            ),
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("f.flow");
    std::fs::write(&flow, "endpoint from an option").unwrap();
    let reference = dir.path().join("ref.json");
    let url = format!("s3://flowstore-test/cli-opt-{}", std::process::id());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flowstore"))
            .args(args)
            .env("FLOWSTORE_HOME", dir.path().join("home"))
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT")
            .env("AWS_ACCESS_KEY_ID", "AKIAFLOWSTORECLI")
            .env("AWS_SECRET_ACCESS_KEY", "cli-secret-value")
            .output()
            .unwrap()
    };
    let set_endpoint = format!("endpoint_url={endpoint}");
    let out = run(&[
        "register",
        flow.to_str().unwrap(),
        "--name",
        "Opt Flow",
        "--storage",
        &url,
        "--set",
        &set_endpoint,
        "--set",
        "region=us-east-1",
        "--out",
        reference.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reference).unwrap()).unwrap();
    assert_eq!(
        recorded["client_options"]["endpoint_url"],
        endpoint.as_str()
    );
    let out = run(&["fetch", reference.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "endpoint from an option");
}

#[test]
fn register_and_fetch_a_bundle_moving_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (home, cache) = (dir.path().join("home"), dir.path().join("cache"));
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("flows")).unwrap();
    std::fs::write(project.join("flows/etl.py"), "import helpers\n").unwrap();
    std::fs::write(project.join("helpers.py"), "X = 1\n").unwrap();
    std::fs::write(project.join(".flowstoreignore"), "*.log\n").unwrap();
    std::fs::write(project.join("debug.log"), "not bundled\n").unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flowstore"))
            .args(args)
            .env("FLOWSTORE_HOME", &home)
            .env("FLOWSTORE_BLOB_CACHE", &cache)
            .env_remove("RUST_LOG")
            .output()
            .expect("run flowstore")
    };
    let register = |name: &str| {
        let out = run(&[
            "--json",
            "register",
            "--bundle",
            project.to_str().unwrap(),
            "--entry",
            "flows/etl.py",
            "--name",
            name,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // Small files travel in packs: count what the tree is stored in.
    let stored = || {
        flowstore_core::bundle::scan(&project, "flows/etl.py")
            .unwrap()
            .manifest
            .blobs()
            .len() as u64
    };
    let first = register("ETL");
    assert_eq!(first["form"], "bundle");
    let blobs_v1 = stored();
    assert_eq!(
        first["transfer"]["objects"],
        blobs_v1 + 1,
        "packs and the manifest: {first}"
    );
    std::fs::write(project.join("helpers.py"), "X = 2\n").unwrap();
    let second = register("ETL v2");
    let blobs_v2 = stored();
    assert_eq!(
        second["transfer"]["objects"], 2,
        "one pack and the manifest: {second}"
    );
    assert_eq!(
        second["transfer"]["reused_objects"],
        blobs_v2 - 1,
        "{second}"
    );

    let write_ref = |v: &serde_json::Value, file: &str| {
        let p = dir.path().join(file);
        std::fs::write(&p, v["reference"].to_string()).unwrap();
        p
    };
    let (r1, r2) = (write_ref(&first, "r1.json"), write_ref(&second, "r2.json"));
    let tree = dir.path().join("tree");
    let fetch = |r: &Path| {
        let out = run(&[
            "--json",
            "fetch",
            r.to_str().unwrap(),
            "--bundle-dir",
            tree.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let one = fetch(&r1);
    assert_eq!(one["transfer"]["objects"], blobs_v1, "{one}");
    assert_eq!(
        std::fs::read_to_string(tree.join("helpers.py")).unwrap(),
        "X = 1\n"
    );
    assert!(!tree.join("debug.log").exists());
    let two = fetch(&r2);
    // Only the changed file: its range of its pack (or the pack, when the file is most of it).
    assert_eq!(two["transfer"]["objects"], 1, "{two}");
    let moved = two["transfer"]["bytes"].as_u64().unwrap();
    let v2 = flowstore_core::bundle::scan(&project, "flows/etl.py")
        .unwrap()
        .manifest;
    let helpers = v2.files().iter().find(|f| f.path == "helpers.py").unwrap();
    let pack_size = v2
        .blobs()
        .into_iter()
        .find(|(b, _)| *b == helpers.source().0)
        .unwrap()
        .1;
    assert!(
        moved == 6 || (moved == pack_size && 2 * 6 >= pack_size),
        "{two}: its pack is {pack_size} B"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("helpers.py")).unwrap(),
        "X = 2\n"
    );
    assert_eq!(two["entry"], tree.join("flows/etl.py").to_str().unwrap());

    // A directory of the user's own is never written into (exit 6: configuration).
    let mine = dir.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep").unwrap();
    let out = run(&[
        "fetch",
        r1.to_str().unwrap(),
        "--bundle-dir",
        mine.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep"
    );
}
