//! Reliability against the real servers `cargo xtask test` starts: 64 concurrent registrations of
//! one flow name on S3, Azure and GCS (threads and separate processes), SIGKILL during S3 uploads,
//! and network faults (resets, delays, truncated responses) between the client and the S3 server
//! and git smart-HTTP, injected by the testkit's TCP proxy. Every outcome is either the right flow
//! or a clear error — never a wrong or partial one.
//!
//! `FLOWSTORE_STRESS=1` (set by `cargo xtask stress`) raises the trial counts (see `common`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use flowstore_core::envelope::{seal_bytes, Envelope};
use flowstore_core::testkit::proxy::{Fault, FaultProxy};
use flowstore_core::testkit::{skip, Skip};
use flowstore_core::{FlowInput, Registry, Storage, StorageReference};

#[allow(dead_code)] // the shared module also serves the other process tests
mod common;
use common::{app, kill_window, stress, Jitter};

fn var(k: &str) -> Result<String, Skip> {
    std::env::var(k).map_err(|_| {
        Skip(format!(
            "{k} is not set: the servers are not running (cargo xtask test starts them)"
        ))
    })
}

/// Environment for `flowstore` processes and this process to reach the three clouds.
fn cloud_env() -> Result<Vec<(&'static str, String)>, Skip> {
    Ok(vec![
        ("AWS_ENDPOINT_URL", var("FLOWSTORE_TEST_S3_ENDPOINT")?),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "AKIARELIABILITY".into()),
        ("AWS_SECRET_ACCESS_KEY", "reliability-secret".into()),
        ("AWS_REGION", "us-east-1".into()),
        (
            "AZURE_STORAGE_CONNECTION_STRING",
            var("FLOWSTORE_TEST_AZURE_CONNECTION_STRING")?,
        ),
        ("STORAGE_EMULATOR_HOST", var("FLOWSTORE_TEST_GCS_ENDPOINT")?),
    ])
}

fn set_cloud_env(env: &[(&str, String)]) {
    for (k, v) in env {
        std::env::set_var(k, v);
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    flowstore_cloud::register(&mut r);
    flowstore_git::register(&mut r);
    r
}

fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}",
        flowstore_core::key::new_flow_key("r").replace('/', "-")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_registrations_per_cloud_from_tasks() {
    let env = match cloud_env() {
        Ok(e) => e,
        Err(r) => {
            return skip(
                "sixty_four_concurrent_registrations_per_cloud_from_tasks",
                &r,
            )
        }
    };
    set_cloud_env(&env);
    for base in [
        "s3://flowstore-test",
        "az://flowstore-test",
        "gs://flowstore-test",
    ] {
        let url = format!("{base}/{}", unique("threads"));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let url = url.clone();
                tokio::spawn(async move {
                    let mut s = registry().open_url(&url).unwrap();
                    let payload = format!("registration {i}");
                    s.add_flow(seal_bytes("Same Flow", payload.as_bytes(), &app()).into())
                        .await
                        .unwrap();
                    s.persist().await.unwrap();
                    (payload, s.reference().unwrap())
                })
            })
            .collect();
        let mut keys = BTreeSet::new();
        for t in tasks {
            let (payload, reference) = t.await.unwrap();
            keys.insert(reference.flows["Same Flow"].clone());
            let f = registry()
                .open(&reference)
                .unwrap()
                .get_flow("Same Flow")
                .await
                .unwrap();
            assert_eq!(
                f.bytes().as_ref(),
                payload.as_bytes(),
                "{base}: a registration fetched another's flow"
            );
        }
        assert_eq!(keys.len(), 64, "{base}: registrations shared keys");
    }
}

#[test]
fn sixty_four_concurrent_registrations_per_cloud_from_processes() {
    let env = match cloud_env() {
        Ok(e) => e,
        Err(r) => {
            return skip(
                "sixty_four_concurrent_registrations_per_cloud_from_processes",
                &r,
            )
        }
    };
    let dir = tempfile::tempdir().unwrap();
    for base in [
        "s3://flowstore-test",
        "az://flowstore-test",
        "gs://flowstore-test",
    ] {
        let url = format!("{base}/{}", unique("processes"));
        let children: Vec<_> = (0..64)
            .map(|i| {
                let file = dir.path().join(format!("flow-{i}"));
                std::fs::write(&file, format!("process {i}")).unwrap();
                let reference = dir.path().join(format!("ref-{i}.json"));
                Command::new(env!("CARGO_BIN_EXE_flowstore"))
                    .args([
                        "register",
                        file.to_str().unwrap(),
                        "--name",
                        "Same Flow",
                        "--storage",
                        &url,
                        "--out",
                    ])
                    .arg(&reference)
                    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{base}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut keys = BTreeSet::new();
        for i in 0..64 {
            let reference = dir.path().join(format!("ref-{i}.json"));
            let r =
                StorageReference::from_json(&std::fs::read_to_string(&reference).unwrap()).unwrap();
            keys.insert(r.flows["Same Flow"].clone());
            let out = Command::new(env!("CARGO_BIN_EXE_flowstore"))
                .arg("fetch")
                .arg(&reference)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{base}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("process {i}"));
        }
        assert_eq!(keys.len(), 64, "{base}: two processes got the same key");
    }
}

#[test]
fn sigkill_during_s3_uploads_never_leaves_a_partial_flow() {
    let env = match cloud_env() {
        Ok(e) => e,
        Err(r) => return skip("sigkill_during_s3_uploads_never_leaves_a_partial_flow", &r),
    };
    let trials = if stress() { 50 } else { 10 };
    let dir = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..6u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let serialized = dir.path().join("big.flow");
    std::fs::write(&serialized, &payload).unwrap();
    let script = dir.path().join("big.py");
    std::fs::write(
        &script,
        [payload.as_slice(), payload.as_slice(), payload.as_slice()].concat(),
    )
    .unwrap();
    let url = format!("s3://flowstore-test/{}", unique("sigkill"));
    // The longer, multipart variant sets the kill window.
    let window = kill_window(
        Command::new(env!("CARGO_BIN_EXE_flowstore"))
            .args([
                "register",
                script.to_str().unwrap(),
                "--name",
                "Big Flow",
                "--script",
            ])
            .args(["--storage", &url])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
    );
    let mut killed = 0;
    let mut jitter = Jitter(0x5eed);
    for trial in 0..trials {
        // Alternate serialized (single PUT) and a 18 MiB script (multipart upload).
        let args: Vec<&str> = if trial % 2 == 0 {
            vec![
                "register",
                serialized.to_str().unwrap(),
                "--name",
                "Big Flow",
                "--storage",
                &url,
            ]
        } else {
            vec![
                "register",
                script.to_str().unwrap(),
                "--name",
                "Big Flow",
                "--script",
                "--storage",
                &url,
            ]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowstore"))
            .args(&args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(jitter.next(window)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        child.kill().ok();
        child.wait().unwrap();
    }
    assert!(
        killed > 0,
        "no upload was interrupted; the trials prove nothing"
    );
    set_cloud_env(&env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage = registry().open_url(&url).unwrap();
    let versions = rt
        .block_on(storage.list_versions(Some("Big Flow")))
        .unwrap();
    let script_bytes = std::fs::read(&script).unwrap();
    assert!(
        !versions.is_empty(),
        "the uninterrupted registration is listed"
    );
    for v in &versions {
        // Every listed version is a whole serialized flow or a whole script: never partial.
        let reference = serde_json::json!({
            "type": "S3", "bucket": "flowstore-test", "stored_as_script": true, "key": v.location,
            "client_options": {"endpoint_url": env[0].1, "allow_http": true}, "flows": {"Big Flow": v.location},
        });
        let f = rt
            .block_on(
                registry()
                    .open_json(&reference.to_string())
                    .unwrap()
                    .get_flow("Big Flow"),
            )
            .unwrap();
        let bytes = f.bytes().clone();
        let whole_script = bytes.as_ref() == script_bytes.as_slice();
        let whole_envelope = Envelope::open("Big Flow", &v.location, bytes)
            .is_ok_and(|e| e.payload().as_ref() == payload.as_slice());
        assert!(
            whole_script || whole_envelope,
            "listed version {} is partial or corrupt",
            v.location
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_flowstore"))
        .args([
            "register",
            serialized.to_str().unwrap(),
            "--name",
            "Big Flow",
            "--storage",
            &url,
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "s3 sigkill trials: {trials} (kill window {window} ms), interrupted: {killed}, complete versions listed: {} (all whole, incl. the uninterrupted one), partial versions listed: 0",
        versions.len()
    );
}

fn addr(endpoint: &str) -> SocketAddr {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_through_a_faulty_network_gets_the_right_flow_or_a_clear_error() {
    let endpoint = match var("FLOWSTORE_TEST_S3_ENDPOINT") {
        Ok(e) => e,
        Err(r) => {
            return skip(
                "s3_through_a_faulty_network_gets_the_right_flow_or_a_clear_error",
                &r,
            )
        }
    };
    let rounds = if stress() { 40 } else { 12 };
    let faults = [
        Fault::Reset,
        Fault::TruncateResponse(30),
        Fault::TruncateRequest(100),
        Fault::Delay(Duration::from_millis(300)),
        Fault::TruncateResponse(200),
    ];
    let mut injected = 0;
    let (mut ok, mut clear_errors) = (0, 0);
    for round in 0..rounds {
        let proxy = FaultProxy::start(addr(&endpoint), Vec::new()).await;
        let creds = Arc::new(flowstore_secrets::MapSource::new().with(
            "AWS_CREDENTIALS",
            r#"{"ACCESS_KEY": "AKIAFAULTS", "SECRET_ACCESS_KEY": "faults"}"#,
        ));
        let make = || {
            flowstore_cloud::S3::builder("flowstore-test")
                .endpoint(format!("http://{}", proxy.addr()))
                .allow_http(true)
                .prefix(format!("faults/{round}"))
                .secrets(creds.clone())
                .retry(flowstore_cloud::RetryPolicy {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(10),
                    request_timeout: Duration::from_secs(5),
                })
                .build()
                .unwrap()
        };
        let payload = format!("round {round} payload").repeat(500);
        let mut s = make();
        s.add_flow(seal_bytes("Faulty", payload.as_bytes(), &app()).into())
            .await
            .unwrap();
        proxy.push([
            faults[round % faults.len()].clone(),
            faults[(round + 2) % faults.len()].clone(),
        ]);
        let built = flowstore_core::Storage::persist(&mut s).await;
        proxy.push([faults[(round + 1) % faults.len()].clone()]);
        let fetched = flowstore_core::Storage::get_flow(&s, "Faulty").await;
        match (built, fetched) {
            (Ok(()), Ok(f)) => {
                assert_eq!(
                    f.bytes().as_ref(),
                    payload.as_bytes(),
                    "round {round}: a wrong flow came back"
                );
                ok += 1;
            }
            (b, f) => {
                for e in [b.err(), f.err()].into_iter().flatten() {
                    let msg = e.to_string();
                    assert!(
                        msg.contains("S3") || msg.contains("s3://"),
                        "round {round}: unclear error {msg}"
                    );
                    assert!(
                        !matches!(e, flowstore_core::Error::FlowCorrupt { .. })
                            || msg.contains("Faulty")
                    );
                }
                clear_errors += 1;
            }
        }
        injected += proxy.stats().faults_injected();
    }
    eprintln!("s3 faults: {rounds} rounds, {injected} faults injected, {ok} succeeded after retries, {clear_errors} clear errors");
    assert!(injected >= rounds, "faults were not injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_smart_http_through_a_faulty_network_gets_the_right_flow_or_a_clear_error() {
    let (root, http, user, token) = match (
        var("FLOWSTORE_TEST_GIT_ROOT"),
        var("FLOWSTORE_TEST_GIT_HTTP"),
        var("FLOWSTORE_TEST_GIT_USER"),
        var("FLOWSTORE_TEST_GIT_TOKEN"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        _ => {
            return skip(
                "git_smart_http_through_a_faulty_network_gets_the_right_flow_or_a_clear_error",
                &Skip("the git servers are not running".into()),
            )
        }
    };
    // A repository with a flow, served by git http-backend.
    let work = tempfile::tempdir().unwrap();
    let name = format!("faults/repo-{}", std::process::id());
    let bare = std::path::Path::new(&root).join(format!("{name}.git"));
    std::fs::create_dir_all(&bare).unwrap();
    let git = |cwd: &std::path::Path, args: &[&str]| {
        assert!(Command::new("git")
            .args(["-c", "user.email=t@t", "-c", "user.name=t"])
            .args(args)
            .current_dir(cwd)
            .status()
            .unwrap()
            .success());
    };
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    git(work.path(), &["init", "-q", "-b", "main"]);
    let content = format!(
        "with Flow(\"Net\") as flow:\n{}",
        "    # padding\n".repeat(2000)
    );
    std::fs::write(work.path().join("flow.py"), &content).unwrap();
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "flow"]);
    git(work.path(), &["push", "-q", bare.to_str().unwrap(), "main"]);

    let rounds = if stress() { 30 } else { 8 };
    let faults = [
        Fault::Reset,
        Fault::TruncateResponse(50),
        Fault::TruncateResponse(2000),
        Fault::Delay(Duration::from_millis(200)),
    ];
    let (mut ok, mut clear_errors, mut injected) = (0, 0, 0);
    for round in 0..rounds {
        let proxy = FaultProxy::start(
            http.parse().unwrap(),
            vec![faults[round % faults.len()].clone()],
        )
        .await;
        let cache = tempfile::tempdir().unwrap();
        let secrets = Arc::new(flowstore_secrets::MapSource::new().with("GIT_TOKEN", &token));
        let mut s = flowstore_git::git::Git::builder(format!("git/{name}"), "flow.py")
            .host(proxy.addr().to_string())
            .scheme("http")
            .git_token_secret_name("GIT_TOKEN")
            .git_token_username(&user)
            .secrets(secrets)
            .cache_dir(cache.path())
            .build()
            .unwrap();
        flowstore_core::Storage::add_flow(&mut s, FlowInput::script("Net"))
            .await
            .unwrap();
        match flowstore_core::Storage::get_flow(&s, "Net").await {
            Ok(f) => {
                assert_eq!(
                    f.bytes().as_ref(),
                    content.as_bytes(),
                    "round {round}: wrong flow"
                );
                ok += 1;
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with("Git:") && msg.contains("http://"),
                    "round {round}: unclear error {msg}"
                );
                assert!(
                    !msg.contains(&token),
                    "round {round}: the token leaked into the error"
                );
                clear_errors += 1;
            }
        }
        injected += proxy.stats().faults_injected();
    }
    eprintln!("git faults: {rounds} rounds, {injected} faults injected, {ok} succeeded, {clear_errors} clear errors");
    assert!(injected >= rounds);
}

#[test]
fn a_huge_object_in_local_storage_is_not_loaded_into_memory() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(flows.join("huge")).unwrap();
    let f = std::fs::File::create(flows.join("huge/v")).unwrap();
    f.set_len(3 << 30).unwrap(); // sparse: no disk used
    let reference =
        serde_json::json!({"type": "Local", "directory": flows, "flows": {"Huge": "huge/v"}});
    let mut r = Registry::new();
    flowstore_local::register(&mut r);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(
            r.open_json(&reference.to_string())
                .unwrap()
                .get_flow("Huge"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("fetch it to a file"), "{err}");
}
