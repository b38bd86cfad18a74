//! Reliability and hostile-input tests on Local storage, through the library and through real
//! `flowstore` processes: concurrent registrations never collide, a registering process killed
//! with SIGKILL never leaves a partial flow, and hostile names and references get clear errors.
//!
//! `FLOWSTORE_STRESS=1` (set by `cargo xtask stress`) raises the trial counts (see `common`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use flowstore_core::envelope::{seal_bytes, Envelope};
use flowstore_core::{Error, Registry, Storage};
use flowstore_local::Local;

#[allow(dead_code)] // the shared module also serves the other process tests
mod common;
use common::{app, kill_window, stress, Jitter};

fn registry() -> Registry {
    let mut r = Registry::new();
    flowstore_local::register(&mut r);
    r
}

fn flowstore(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flowstore"));
    c.env("FLOWSTORE_HOME", home).env_remove("RUST_LOG");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_registrations_from_threads() {
    let dir = tempfile::tempdir().unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let d = dir.path().to_path_buf();
            tokio::spawn(async move {
                let mut s = Local::builder()
                    .directory(d)
                    .durable(false)
                    .build()
                    .unwrap();
                let payload = format!("registration {i}");
                s.add_flow(seal_bytes("Same Flow", payload.as_bytes(), &app()).into())
                    .await
                    .unwrap();
                (payload, s.reference().unwrap())
            })
        })
        .collect();
    let mut locations = std::collections::BTreeSet::new();
    for t in tasks {
        let (payload, reference) = t.await.unwrap();
        locations.insert(reference.flows["Same Flow"].clone());
        let fetched = registry()
            .open(&reference)
            .unwrap()
            .get_flow("Same Flow")
            .await
            .unwrap();
        assert_eq!(fetched.bytes().as_ref(), payload.as_bytes());
    }
    assert_eq!(locations.len(), 64);
}

#[test]
fn sixty_four_concurrent_registrations_from_processes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let children: Vec<_> = (0..64)
        .map(|i| {
            let file = dir.path().join(format!("flow-{i}"));
            std::fs::write(&file, format!("process {i}")).unwrap();
            let reference = dir.path().join(format!("ref-{i}.json"));
            flowstore(&home)
                .args([
                    "register",
                    file.to_str().unwrap(),
                    "--name",
                    "Same Flow",
                    "--out",
                ])
                .arg(&reference)
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
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut locations = std::collections::BTreeSet::new();
    for i in 0..64 {
        let reference = dir.path().join(format!("ref-{i}.json"));
        let json = std::fs::read_to_string(&reference).unwrap();
        let r = flowstore_core::StorageReference::from_json(&json).unwrap();
        locations.insert(r.flows["Same Flow"].clone());
        let out = flowstore(&home)
            .arg("fetch")
            .arg(&reference)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("process {i}"));
    }
    assert_eq!(locations.len(), 64, "two processes got the same key");
}

#[test]
fn sigkill_during_registration_never_leaves_a_partial_flow() {
    let trials = if stress() { 50 } else { 12 };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let big = dir.path().join("big.flow");
    let payload: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&big, &payload).unwrap();
    let window = kill_window(flowstore(&home).args([
        "register",
        big.to_str().unwrap(),
        "--name",
        "Big Flow",
    ]));
    let mut jitter = Jitter(0x5eed);
    let mut killed = 0;
    for _ in 0..trials {
        let mut child = flowstore(&home)
            .args(["register", big.to_str().unwrap(), "--name", "Big Flow"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(jitter.next(window)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(
        killed > 0,
        "no registration was interrupted; the trial proves nothing"
    );

    // Every listed version is complete and intact; nothing partial is listed.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage = Local::builder()
        .directory(home.join("flows"))
        .build()
        .unwrap();
    let versions = rt
        .block_on(storage.list_versions(Some("Big Flow")))
        .unwrap();
    assert!(
        !versions.is_empty(),
        "the uninterrupted registration is listed"
    );
    for v in &versions {
        let bytes = std::fs::read(&v.location).unwrap();
        let env = Envelope::open("Big Flow", &v.location, bytes.into())
            .unwrap_or_else(|e| panic!("listed version {} is not intact: {e}", v.location));
        assert!(env.payload().as_ref() == payload.as_slice());
    }
    // Registering again succeeds.
    let out = flowstore(&home)
        .args(["register", big.to_str().unwrap(), "--name", "Big Flow"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "sigkill trials: {trials} (kill window {window} ms), interrupted: {killed}, complete versions listed: {} (all intact, incl. the uninterrupted one), partial versions listed: 0",
        versions.len()
    );
}

#[tokio::test]
async fn hostile_flow_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("flows");
    let mut s = Local::builder().directory(&root).build().unwrap();
    for name in [
        "a/b/c",
        "../../../escape",
        "..",
        "/etc/passwd",
        "!!!@@@###",
        "con",
        "名前",
    ] {
        let loc = s
            .add_flow(seal_bytes(name, b"x", &app()).into())
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let path = Path::new(&loc).canonicalize().unwrap();
        assert!(
            path.starts_with(root.canonicalize().unwrap()),
            "{name:?} escaped to {loc}"
        );
        assert_eq!(s.get_flow(name).await.unwrap().bytes().as_ref(), b"x");
    }
    for (name, needle) in [
        ("nul\0byte", "control character"),
        ("", "empty"),
        ("   ", "empty"),
        ("line\nbreak", "control character"),
    ] {
        let err = s
            .add_flow(seal_bytes(name, b"x", &app()).into())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{name:?}: {err:?}");
        assert!(err.to_string().contains(needle), "{name:?}: {err}");
    }
    let long = "x".repeat(10_000);
    let err = s
        .add_flow(seal_bytes(&long, b"x", &app()).into())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("10000 characters"), "{err}");
    // Nothing was written outside the storage directory.
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("flows")]);
}

#[tokio::test]
async fn hostile_references() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("flows");
    std::fs::create_dir_all(&root).unwrap();
    // A FIFO inside the storage is refused rather than blocking the reader.
    let fifo = root.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reference = serde_json::json!({"type": "Local", "directory": root, "flows": {"f": "fifo"}});
    let err = registry()
        .open_json(&reference.to_string())
        .unwrap()
        .get_flow("f")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    // Malformed and truncated references.
    let good =
        serde_json::json!({"type": "Local", "directory": root, "flows": {"f": "x/y"}}).to_string();
    for cut in [1, good.len() / 2, good.len() - 1] {
        let err = registry().open_json(&good[..cut]).unwrap_err();
        assert!(
            matches!(err, Error::InvalidReference { .. }),
            "{cut}: {err:?}"
        );
    }
    for bad in [
        r#"{"type": "Local", "flows": {"f": 3}}"#,
        r#"{"type": "Local", "flows": "nope"}"#,
        r#"{"type": "Local", "directory": 7}"#,
        r#"{"type": "Local", "stored_as_script": "yes"}"#,
    ] {
        assert!(registry().open_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn cli_reports_truncated_reference_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("ref.json");
    std::fs::write(&reference, r#"{"type": "Local", "flows": {"f": "#).unwrap();
    let out = flowstore(dir.path())
        .arg("fetch")
        .arg(&reference)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Invalid storage reference") && err.contains("ref.json"),
        "{err}"
    );
}
