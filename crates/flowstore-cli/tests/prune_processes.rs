//! `flowstore prune` through real processes on Local storage (no server needed): the plan, then
//! `--yes`, `--json`, `--protect` and `--flow`; read-only storages refused; and a prune killed with
//! SIGKILL in the middle of its blob sweep, after which every remaining version still fetches.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

#[allow(dead_code)] // the shared module also serves the other process tests
mod common;
use common::World;

impl World {
    fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    fn storage_url(&self) -> String {
        format!("file://{}", self.store().display())
    }

    /// Runs flowstore with `args`; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.flowstore().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Registers a serialized flow `name` (its file holds `text`); returns the reference path.
    fn register_file(&self, name: &str, text: &str, tag: &str) -> PathBuf {
        let file = self.root.join(format!("{tag}.bin"));
        std::fs::write(&file, text).unwrap();
        let reference = self.root.join(format!("{tag}.json"));
        let url = self.storage_url();
        let (code, _, err) = self.run(&[
            "register",
            "--storage",
            &url,
            "--name",
            name,
            file.to_str().unwrap(),
            "--out",
            reference.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        reference
    }

    /// Registers bundle `name` of `project`; returns the reference path.
    fn register_bundle(&self, name: &str, project: &Path, tag: &str) -> PathBuf {
        let reference = self.root.join(format!("{tag}.json"));
        let url = self.storage_url();
        let (code, _, err) = self.run(&[
            "register",
            "--storage",
            &url,
            "--name",
            name,
            "--bundle",
            project.to_str().unwrap(),
            "--entry",
            "flow.py",
            "--out",
            reference.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        reference
    }

    /// Fetches bundle `reference` into a fresh directory with an empty cache (every blob from
    /// the storage); returns the exit code and, on success, the marker file's text.
    fn fetch_bundle_cold(&self, reference: &Path, tag: &str) -> (i32, Option<String>) {
        let dest = self.root.join(format!("fetched-{tag}"));
        let cache = self.root.join(format!("cache-{tag}"));
        let out = self
            .flowstore()
            .env("FLOWSTORE_BLOB_CACHE", &cache)
            .arg("fetch")
            .arg(reference)
            .arg("--bundle-dir")
            .arg(&dest)
            .output()
            .unwrap();
        let marker = std::fs::read_to_string(dest.join("marker.txt")).ok();
        let _ = std::fs::remove_dir_all(&dest);
        let _ = std::fs::remove_dir_all(&cache);
        (out.status.code().unwrap_or(-1), marker)
    }

    fn listed_locations(&self) -> Vec<String> {
        let url = self.storage_url();
        let (code, out, err) = self.run(&["--json", "list", "--storage", &url]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|v| v["location"].as_str().unwrap().to_string())
            .collect()
    }
}

fn location_of(reference: &Path) -> String {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(reference).unwrap()).unwrap();
    v["flows"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// A project whose files are all unique to `version` (so each version has blobs of its own),
/// with `marker.txt` naming the version.
fn write_project(dir: &Path, version: usize, files: usize) {
    let _ = std::fs::remove_dir_all(dir);
    for i in 0..files {
        let p = dir.join(format!("pkg{}/m{i}.py", i % 9));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            p,
            format!("# version {version}, module {i}\nVALUE = {}\n", i * version),
        )
        .unwrap();
    }
    std::fs::write(dir.join("flow.py"), "import pkg0\n").unwrap();
    std::fs::write(dir.join("marker.txt"), format!("version {version}")).unwrap();
}

#[test]
fn plan_then_yes_with_json_protection_and_flow() {
    let w = World::new();
    let etl: Vec<PathBuf> = (0..4)
        .map(|i| w.register_file("Nightly ETL", &format!("etl {i}"), &format!("etl{i}")))
        .collect();
    let report = w.register_file("Report", "report", "report");
    let url = w.storage_url();

    // The plan alone changes nothing, and says so.
    let (code, out, err) = w.run(&["prune", "--storage", &url, "--keep-last", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("5 versions: 2 stay, 3 go"), "{err}");
    assert!(err.contains("Plan only: nothing was deleted"), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("delete ")).count(),
        3,
        "{out}"
    );
    assert_eq!(w.listed_locations().len(), 5);

    // JSON plan: every version with its verdict.
    let (code, out, err) = w.run(&["--json", "prune", "--storage", &url, "--keep-last", "1"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deleted"], false);
    assert!(v["report"].is_null());
    let reasons: Vec<&str> = v["plan"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["newest", "expired", "expired", "expired", "newest"]
    );

    // Keep two of one flow, protect the oldest, delete with --yes.
    let (code, out, err) = w.run(&[
        "--json",
        "prune",
        "--storage",
        &url,
        "--flow",
        "Nightly ETL",
        "--keep-last",
        "2",
        "--protect",
        etl[0].to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deleted"], true);
    assert_eq!(v["report"]["versions_deleted"], 1);
    let listed = w.listed_locations();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(!listed.contains(&location_of(&etl[1])));
    for kept in [&etl[0], &etl[2], &etl[3], &report] {
        let (code, _, err) = w.run(&["fetch", kept.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {err}", kept.display());
    }
    // The deleted version is not found (exit 3), naming its file.
    let (code, _, err) = w.run(&["fetch", etl[1].to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&location_of(&etl[1])), "{err}");

    // A protect file that names nothing here is pointed out.
    let foreign = w.root.join("foreign.json");
    std::fs::write(
        &foreign,
        r#"{"type":"Local","directory":"/elsewhere","flows":{"x":"/elsewhere/x/2020-01-01t00-00-00-000000-00-00"}}"#,
    )
    .unwrap();
    let (code, _, err) = w.run(&[
        "prune",
        "--storage",
        &url,
        "--keep-last",
        "1",
        "--protect",
        foreign.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("protects nothing here"), "{err}");
}

#[test]
fn bad_policies_and_read_only_storages_are_refused() {
    let w = World::new();
    w.register_file("Kept", "kept", "kept");
    let url = w.storage_url();
    let (code, _, err) = w.run(&["prune", "--storage", &url]);
    assert_eq!(code, 2, "a policy is required: {err}");
    let (code, _, err) = w.run(&["prune", "--storage", &url, "--keep-last", "0"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("--keep-last 0"), "{err}");
    let (code, _, err) = w.run(&["prune", "--storage", &url, "--older-than", "3 weeks"]);
    assert_eq!(code, 2, "{err}");
    for read_only in [
        "git+https://git.example/org/flows.git?flow_path=flow.py",
        "github://org/flows/flow.py?ref=main",
    ] {
        let (code, _, err) = w.run(&["prune", "--storage", read_only, "--keep-last", "1", "--yes"]);
        assert_eq!(code, 6, "{read_only}: {err}");
        assert!(err.contains("read-only"), "{read_only}: {err}");
    }
    assert_eq!(w.listed_locations().len(), 1);
}

/// How many entries a directory has (0 when missing).
fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_prune_killed_mid_sweep_leaves_every_remaining_version_fetchable() {
    const VERSIONS: usize = 24;
    let w = World::new();
    let project = w.root.join("project");
    let mut refs = Vec::new();
    for v in 0..VERSIONS {
        write_project(&project, v, 160);
        refs.push(w.register_bundle("Big Bundle", &project, &format!("v{v}")));
    }
    let protected = refs[VERSIONS / 2].clone();
    let (live, trash) = (
        w.store().join(".blobs/sha256"),
        w.store().join(".blobs/trash/sha256"),
    );
    let blobs_before = count(&live);
    assert!(blobs_before > 3 * VERSIONS, "{blobs_before} blobs");
    let url = w.storage_url();
    let prune_args = [
        "prune",
        "--storage",
        url.as_str(),
        "--keep-last",
        "1",
        "--protect",
        protected.to_str().unwrap(),
        "--grace",
        "0s",
        "--yes",
    ];
    let check_remaining = |round: &str| {
        let listed = w.listed_locations();
        assert!(listed.len() >= 2, "{round}: {listed:?}");
        for (v, reference) in refs.iter().enumerate() {
            if !listed.contains(&location_of(reference)) {
                continue;
            }
            let (code, marker) = w.fetch_bundle_cold(reference, &format!("{round}-{v}"));
            assert_eq!(code, 0, "{round}: version {v} is listed but does not fetch");
            assert_eq!(
                marker.as_deref(),
                Some(format!("version {v}").as_str()),
                "{round}"
            );
        }
    };

    // Kill each prune as soon as its sweep has moved a blob to the trash, while live blobs of
    // deleted versions are still waiting: mid-sweep.
    let mut killed_mid_sweep = 0;
    for round in 0..3 {
        let mut child = w
            .flowstore()
            .args(prune_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let trashed_before = count(&trash);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if count(&trash) > trashed_before {
                let _ = child.kill();
                let _ = child.wait();
                if count(&live) > 2 * 8 {
                    killed_mid_sweep += 1;
                }
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "prune hangs");
            std::thread::sleep(Duration::from_micros(300));
        }
        check_remaining(&format!("after kill {round}"));
    }
    assert!(
        killed_mid_sweep >= 1,
        "no prune was caught mid-sweep (the sweep finished before the first blob was seen in the trash)"
    );

    // Run to the end, then once more to empty the trash: only the kept versions remain, whole.
    let (code, _, err) = w.run(&prune_args);
    assert_eq!(code, 0, "{err}");
    check_remaining("completed");
    let (code, _, err) = w.run(&prune_args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(count(&trash), 0, "the second sweep empties the trash");
    assert_eq!(w.listed_locations().len(), 2);
    assert!(
        count(&live) < blobs_before / 4,
        "{} blobs left",
        count(&live)
    );
    check_remaining("swept");
}
