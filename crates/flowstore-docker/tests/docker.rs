//! Docker storage against a real Docker Engine and real registries on 127.0.0.1, started by
//! `cargo xtask test` (`FLOWSTORE_TEST_DOCKER_HOST`, `FLOWSTORE_TEST_REGISTRY`, and
//! `FLOWSTORE_TEST_REGISTRY_AUTH` with htpasswd auth). No image is pulled from the internet: the
//! tests build a busybox base image from Debian's busybox-static and push it themselves.

use std::sync::Arc;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, LogsOptionsBuilder, WaitContainerOptions,
};
use bytes::Bytes;
use flowstore_core::bundle::{FetchOptions, TransferReport};
use flowstore_core::envelope::{seal, seal_bytes, AppInfo};
use flowstore_core::testkit::{skip, Harness, HarnessResult, Skip};
use flowstore_core::{
    Error as CoreError, FlowContent, FlowInput, Registry as Types, Storage, StorageReference,
};
use flowstore_docker::oci::{self, ContainerConfig, Descriptor, ImageIndex, Platform};
use flowstore_docker::registry::Registry;
use flowstore_docker::{
    layer, BuildConfig, BuildMode, Credentials, Docker, DockerBuilder, BUILD_FAILED,
};
use flowstore_secrets::MapSource;
use futures::StreamExt;
use serde_json::json;

struct Env {
    registry: String,
    registry_auth: String,
    /// A registry in token mode (`auth: token`) with its token server.
    registry_token: String,
    user: String,
    password: String,
    docker_host: String,
}

fn env() -> Result<Env, Skip> {
    let get = |k: &str| {
        std::env::var(k).map_err(|_| Skip(format!("{k} is not set: the Docker Engine and registries are not running (cargo xtask test starts them)")))
    };
    Ok(Env {
        registry: get("FLOWSTORE_TEST_REGISTRY")?,
        registry_auth: get("FLOWSTORE_TEST_REGISTRY_AUTH")?,
        registry_token: get("FLOWSTORE_TEST_REGISTRY_TOKEN")?,
        user: get("FLOWSTORE_TEST_REGISTRY_USER")?,
        password: get("FLOWSTORE_TEST_REGISTRY_PASSWORD")?,
        docker_host: get("FLOWSTORE_TEST_DOCKER_HOST")?,
    })
}

macro_rules! need {
    ($name:literal) => {
        match env() {
            Ok(e) => e,
            Err(reason) => return skip($name, &reason),
        }
    };
}

fn app() -> AppInfo {
    AppInfo::new("docker-tests", "1")
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        flowstore_core::key::new_flow_key("i").replace('/', "-")
    )
}

/// Pushes a one-layer busybox image (`sh`, `cat`, `sha256sum`, `false` as copies of the static
/// busybox, which dispatches on its name) to `registry` as `base/busybox:1`; returns its reference.
async fn base_image(registry_host: &str, auth: Option<Credentials>) -> String {
    busybox_image(registry_host, auth, "base/busybox").await
}

/// [`base_image`] in repository `repo`, tag `1`.
async fn busybox_image(registry_host: &str, auth: Option<Credentials>, repo: &str) -> String {
    let busybox = std::fs::read("/bin/busybox")
        .expect("busybox-static is installed (.ci/install.d/docker.sh)");
    let files: Vec<(String, Vec<u8>, u32)> = ["sh", "cat", "sha256sum", "false", "ls"]
        .iter()
        .map(|n| (format!("/bin/{n}"), busybox.clone(), 0o755))
        .collect();
    Registry::new(registry_host, auth)
        .push_files_image(
            repo,
            "1",
            &files,
            ContainerConfig {
                env: Some(vec!["PATH=/bin".into()]),
                cmd: Some(vec!["/bin/sh".into()]),
                ..ContainerConfig::default()
            },
        )
        .await
        .unwrap();
    format!("{registry_host}/{repo}:1")
}

fn types() -> Types {
    let mut r = Types::new();
    flowstore_docker::register(&mut r);
    r
}

async fn run_in_image(e: &Env, image: &str, cmd: &[&str]) -> (i64, String) {
    let engine = flowstore_docker::engine::connect(Some(&e.docker_host))
        .await
        .unwrap();
    let (repo, tag) = image.rsplit_once(':').unwrap();
    let mut pull = engine.create_image(
        Some(
            CreateImageOptionsBuilder::new()
                .from_image(repo)
                .tag(tag)
                .build(),
        ),
        None,
        None,
    );
    while let Some(p) = pull.next().await {
        p.unwrap();
    }
    let container = engine
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(image.to_string()),
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                host_config: Some(HostConfig {
                    network_mode: Some("none".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    engine
        .start_container(
            &container.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    let mut wait = engine.wait_container(&container.id, None::<WaitContainerOptions>);
    let mut code = -1;
    while let Some(w) = wait.next().await {
        code = match w {
            Ok(r) => r.status_code,
            Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => code,
            Err(e) => panic!("{e}"),
        };
    }
    let mut logs = engine.logs(
        &container.id,
        Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
    );
    let mut out = String::new();
    while let Some(l) = logs.next().await {
        out.push_str(&l.unwrap().to_string());
    }
    let _ = engine
        .remove_container(
            &container.id,
            None::<bollard::query_parameters::RemoveContainerOptions>,
        )
        .await;
    (code, out)
}

/// A progress callback that records what it is told.
fn progress_recorder() -> (
    flowstore_core::ProgressFn,
    Arc<std::sync::Mutex<Vec<flowstore_core::Progress>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    (Arc::new(move |p| sink.lock().unwrap().push(p)), seen)
}

fn daemonless(e: &Env, base: &str) -> DockerBuilder {
    Docker::builder()
        .registry_url(&e.registry)
        .mode(BuildMode::Daemonless)
        .base_image(base)
}

struct DockerHarness {
    env: Env,
    base: String,
    /// Host copies of the scripts baked into script-mode images.
    scripts: tempfile::TempDir,
    /// The open registry's filesystem store (`FLOWSTORE_TEST_REGISTRY_DATA`).
    registry_data: Option<std::path::PathBuf>,
}

impl DockerHarness {
    /// A fresh daemonless storage pushing to repository `image`.
    fn storage_in(&self, image: &str) -> Box<dyn Storage> {
        // Layers are deterministic, and `tamper` rewrites a flow's layer in the registry's store
        // (which outlives the run): a nonce file makes each storage's layer its own, so a tampered
        // blob is never the one another storage (or a later run) pushes and finds present.
        let nonce = self.scripts.path().join(unique("nonce"));
        std::fs::write(&nonce, unique("nonce")).unwrap();
        Box::new(
            daemonless(&self.env, &self.base)
                .file(&nonce, "/opt/flowstore/nonce")
                .image(image, None)
                .build()
                .unwrap(),
        )
    }
}

#[flowstore_core::async_trait]
impl Harness for DockerHarness {
    /// Each storage pushes to a repository of its own (its versions are its tags), so the
    /// listing and prune checks see only their own versions, run after run.
    async fn storage(&self) -> Option<Box<dyn Storage>> {
        Some(self.storage_in(&unique("conformance")))
    }
    /// A reopened Docker reference describes a built image and cannot register: a second
    /// registration is a fresh build pushing to the same repository.
    async fn same_namespace(&self, storage: &dyn Storage) -> Box<dyn Storage> {
        let reference = storage.reference().unwrap();
        self.storage_in(reference.fields["image_name"].as_str().unwrap())
    }
    /// The script is copied into the image by `files`; its digest is recorded at registration.
    async fn script_storage(&self, _flow: &str, source: &[u8]) -> Option<Box<dyn Storage>> {
        let host = self.scripts.path().join(format!("{}.py", unique("script")));
        std::fs::write(&host, source).unwrap();
        let image_path = "/opt/flowstore/flows/script.py";
        Some(Box::new(
            daemonless(&self.env, &self.base)
                .file(&host, image_path)
                .image("conformance-script", None)
                .script(image_path)
                .build()
                .unwrap(),
        ))
    }
    fn registry(&self) -> Types {
        types()
    }
    /// Rewrites the flow's layer in the registry's own filesystem store (as someone with access
    /// to the registry's disk or bucket could): the manifest still names the old digest.
    async fn tamper(&self, r: &StorageReference, flow: &str, bytes: Bytes) -> bool {
        let Some(data) = &self.registry_data else {
            return false;
        };
        let image = r.fields["image_name"].as_str().unwrap();
        let digest = r.fields["image_digest"].as_str().unwrap();
        let (manifest, _) = Registry::new(&self.env.registry, None)
            .manifest(image, digest)
            .await
            .unwrap();
        let flow_layer = manifest
            .into_image()
            .unwrap()
            .layers
            .last()
            .unwrap()
            .digest
            .clone();
        let hex = flow_layer.encoded();
        let blob = data.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ));
        assert!(
            blob.is_file(),
            "the registry stores {flow_layer} at {}",
            blob.display()
        );
        let forged = layer::build(&[(r.flows[flow].clone(), bytes.to_vec(), 0o644)]).unwrap();
        std::fs::write(blob, &forged.gz).unwrap();
        true
    }
    fn large_flow_size(&self) -> usize {
        8 * 1024 * 1024
    }
    /// A Docker storage cannot register into a built image (each `persist` builds a new one, and
    /// a reopened reference describes the built image), so the bundle checks get each bundle
    /// from a fresh daemonless build, as an agent opens it: from its reference. That storage
    /// carries no transfer report (it registered nothing in this session): the checks'
    /// registration counts assume a blob per file, where Docker pushes a layer per bundle;
    /// `bundle_layers_are_reused_and_reported_honestly` checks Docker's own counts.
    async fn bundle_flows(
        &self,
        name: &str,
        tree: &std::path::Path,
        entry: &str,
    ) -> Option<Box<dyn Storage>> {
        let mut storage = self.storage().await?;
        storage
            .add_flow(FlowInput::bundle(name, tree, entry))
            .await
            .expect("add a bundle");
        storage.persist().await.expect("build the bundle's image");
        Some(types().open(&storage.reference().unwrap()).unwrap())
    }
}

async fn harness() -> HarnessResult<DockerHarness> {
    let env = env()?;
    let base = base_image(&env.registry, None).await;
    Ok(DockerHarness {
        env,
        base,
        scripts: tempfile::tempdir().unwrap(),
        registry_data: std::env::var_os("FLOWSTORE_TEST_REGISTRY_DATA").map(Into::into),
    })
}

flowstore_core::conformance_suite!(harness);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonless_build_runs_in_docker_and_fetches_outside_by_digest() {
    let e = need!("daemonless_build_runs_in_docker_and_fetches_outside_by_digest");
    let base = base_image(&e.registry, None).await;
    let (progress, seen) = progress_recorder();
    let mut s = daemonless(&e, &base)
        .image(&unique("daemonless"), Some("v1"))
        .progress(progress)
        .build()
        .unwrap();
    s.add_flow(
        seal("ETL", &vec!["extract", "load"], &app())
            .unwrap()
            .into(),
    )
    .await
    .unwrap();
    let t = std::time::Instant::now();
    s.persist().await.unwrap();
    eprintln!("daemonless build+push of one flow: {:?}", t.elapsed());
    // Progress: the base layer, the flows layer and the config, counted up to the known total.
    let blobs: Vec<(u64, Option<u64>)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.what == "blobs pushed")
        .map(|p| (p.done, p.total))
        .collect();
    assert_eq!(blobs, [(1, Some(3)), (2, Some(3)), (3, Some(3))]);
    let reference = s.reference().unwrap();
    let digest = reference.fields["image_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(digest.starts_with("sha256:"));
    let v: Vec<String> = types()
        .open(&reference)
        .unwrap()
        .get_flow("ETL")
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    assert_eq!(v, ["extract", "load"]);
    let (code, out) = run_in_image(
        &e,
        &s.image_ref().unwrap(),
        &["sha256sum", "-c", "/opt/flowstore/flows.sha256"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/opt/flowstore/flows/etl.flow: OK"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_build_pushes_and_the_container_reads_the_flow() {
    let e = need!("engine_build_pushes_and_the_container_reads_the_flow");
    let base = base_image(&e.registry, None).await;
    let host_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(host_file.path(), "Marvin").unwrap();
    let sealed = seal_bytes("Engine Flow", b"engine payload", &app());
    let (progress, seen) = progress_recorder();
    let mut s = Docker::builder()
        .registry_url(&e.registry)
        .mode(BuildMode::Engine)
        .base_image(base)
        .file(host_file.path(), "/opt/flowstore/person.txt")
        .env("GREETING", "hello")
        .load_command("cat /opt/flowstore/person.txt")
        .base_url(&e.docker_host)
        .image(&unique("engine"), None)
        .progress(progress)
        .build()
        .unwrap();
    s.add_flow(sealed.clone().into()).await.unwrap();
    let t = std::time::Instant::now();
    s.persist().await.unwrap_or_else(|err| panic!("{err}"));
    eprintln!("engine build+push of one flow: {:?}", t.elapsed());
    // Progress: every Dockerfile step as the daemon runs it, then the pushed layers.
    let seen = seen.lock().unwrap().clone();
    let steps: Vec<u64> = seen
        .iter()
        .filter(|p| p.what == "build steps")
        .map(|p| p.done)
        .collect();
    let total = seen
        .iter()
        .find(|p| p.what == "build steps")
        .and_then(|p| p.total)
        .expect("build steps reported");
    assert_eq!(steps, (1..=total).collect::<Vec<_>>());
    assert!(seen.iter().any(|p| p.what == "layers pushed"), "{seen:?}");
    let reference = s.reference().unwrap();
    let f = types()
        .open(&reference)
        .unwrap()
        .get_flow("Engine Flow")
        .await
        .unwrap();
    assert_eq!(f.bytes().as_ref(), b"engine payload");
    let (code, out) = run_in_image(
        &e,
        &s.image_ref().unwrap(),
        &["cat", "/opt/flowstore/flows/engine-flow.flow"],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(out.as_bytes(), sealed.to_bytes().unwrap().as_ref());
}

/// Writes `size` bytes that gzip cannot shrink much (an xorshift sequence) to `path`.
fn write_incompressible(path: &std::path::Path, size: usize) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = size;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let n = left.min(buf.len());
        out.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    out.flush().unwrap();
}

/// A 20 MiB flow sealed from its file (above the 8 MiB in-memory limit: it stays in its file)
/// registers daemonless (its layer built and pushed streamed) and comes back byte-exact through
/// `get_flow_to_file` (streamed from the layer) and `get_flow`; a destination that exists is
/// never replaced; the same file changed after sealing pushes nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_flow_sealed_from_its_file_round_trips_daemonless() {
    let e = need!("a_big_flow_sealed_from_its_file_round_trips_daemonless");
    let base = base_image(&e.registry, None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let size = 20 * 1024 * 1024;
    write_incompressible(&path, size);
    let sealed = flowstore_core::envelope::seal_file("Big Flow", &path, &app()).unwrap();
    assert!(
        sealed.as_bytes().is_none(),
        "a 20 MiB flow stays in its file"
    );
    let digest = sealed.digest();
    let image = unique("big");
    let mut s = daemonless(&e, &base).image(&image, None).build().unwrap();
    s.add_flow(sealed.into()).await.unwrap();
    let t = std::time::Instant::now();
    s.persist().await.unwrap_or_else(|err| panic!("{err}"));
    eprintln!("daemonless build+push of a 20 MiB flow: {:?}", t.elapsed());
    let reference = s.reference().unwrap();
    assert_eq!(reference.flow_digests.get("Big Flow"), Some(&digest));

    let agent = types().open(&reference).unwrap();
    assert!(agent.capabilities().stream_to_file);
    let dest = dir.path().join("fetched.bin");
    let t = std::time::Instant::now();
    let fetched = agent.get_flow_to_file("Big Flow", &dest).await.unwrap();
    eprintln!("get_flow_to_file of a 20 MiB flow: {:?}", t.elapsed());
    assert_eq!(fetched.size(), size as u64);
    let original = std::fs::read(&path).unwrap();
    assert!(
        std::fs::read(&dest).unwrap() == original,
        "the file came back different"
    );
    let again = agent.get_flow_to_file("Big Flow", &dest).await.unwrap_err();
    assert!(
        again.to_string().contains("never replaced"),
        "an existing file was replaced: {again}"
    );
    let in_memory = agent.get_flow("Big Flow").await.unwrap();
    assert!(
        in_memory.bytes().as_ref() == original.as_slice(),
        "get_flow came back different"
    );

    // The file changes between sealing and the build: refused, nothing pushed (not even the
    // base image's layers: the repository stays unknown to the registry).
    let sealed = flowstore_core::envelope::seal_file("Changing", &path, &app()).unwrap();
    let mut altered = original;
    altered[size / 2] ^= 0x40;
    std::fs::write(&path, &altered).unwrap();
    let changing = unique("big-changing");
    let mut s = daemonless(&e, &base)
        .image(&changing, Some("v1"))
        .build()
        .unwrap();
    s.add_flow(sealed.into()).await.unwrap();
    let err = s.persist().await.unwrap_err();
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        chain.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    assert!(chain.contains("after it was sealed"), "{chain}");
    assert!(
        chain.contains("Changing"),
        "the error names the flow: {chain}"
    );
    let tags = Registry::new(&e.registry, None)
        .tags(&changing, 100)
        .await
        .unwrap();
    assert!(tags.is_empty(), "a refused build pushed {tags:?}");
    assert!(s.reference().unwrap().fields["image_digest"].is_null());
}

/// The SHA-256 of a file, read in chunks.
fn file_sha256(path: &std::path::Path) -> String {
    flowstore_core::raw::sink::file_digest(path).unwrap()
}

/// This process's peak resident set size in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Peak memory of registering and fetching a big flow (`FLOWSTORE_BIG_FLOW_MIB`, default 1024):
/// run it alone (`cargo test -p flowstore-docker --test docker -- --ignored --exact
/// a_big_flow_registers_and_fetches_in_bounded_memory`, with the servers of `cargo xtask serve`),
/// so the process's peak RSS is this check's. Nothing here holds the flow: it is written, sealed
/// from its file, compared by digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a 1 GiB flow; run alone to measure peak memory"]
async fn a_big_flow_registers_and_fetches_in_bounded_memory() {
    let e = need!("a_big_flow_registers_and_fetches_in_bounded_memory");
    let mib: usize = std::env::var("FLOWSTORE_BIG_FLOW_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let base = base_image(&e.registry, None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    write_incompressible(&path, mib * 1024 * 1024);
    let sealed = flowstore_core::envelope::seal_file("Huge", &path, &app()).unwrap();
    let mut s = daemonless(&e, &base)
        .image(&unique("huge"), None)
        .build()
        .unwrap();
    s.add_flow(sealed.into()).await.unwrap();
    let t = std::time::Instant::now();
    s.persist().await.unwrap_or_else(|err| panic!("{err}"));
    let registered = t.elapsed();
    let after_register = peak_rss_kib();
    let agent = types().open(&s.reference().unwrap()).unwrap();
    let dest = dir.path().join("fetched.bin");
    let t = std::time::Instant::now();
    agent.get_flow_to_file("Huge", &dest).await.unwrap();
    let fetched = t.elapsed();
    let peak = peak_rss_kib();
    eprintln!(
        "{mib} MiB flow: register {registered:?} (peak RSS {} MiB), get_flow_to_file {fetched:?} (peak RSS {} MiB)",
        after_register / 1024,
        peak / 1024
    );
    assert_eq!(file_sha256(&dest), file_sha256(&path));
    assert!(peak <= 64 * 1024, "peak RSS {} MiB", peak / 1024);
}

/// An Engine build of a flow sealed from its file (9 MiB, kept in its file): the build context
/// is written to a temporary file and streamed to the daemon, the health check (`sha256sum -c`)
/// passes in the image, and the flow comes back through `get_flow_to_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_build_streams_a_flow_sealed_from_its_file() {
    let e = need!("engine_build_streams_a_flow_sealed_from_its_file");
    let base = base_image(&e.registry, None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.bin");
    write_incompressible(&path, 9 * 1024 * 1024);
    let sealed = flowstore_core::envelope::seal_file("Engine Big", &path, &app()).unwrap();
    assert!(sealed.as_bytes().is_none());
    let mut s = Docker::builder()
        .registry_url(&e.registry)
        .mode(BuildMode::Engine)
        .base_image(base)
        .base_url(&e.docker_host)
        .image(&unique("engine-big"), None)
        .build()
        .unwrap();
    s.add_flow(sealed.into()).await.unwrap();
    s.persist().await.unwrap_or_else(|err| panic!("{err}"));
    let agent = types().open(&s.reference().unwrap()).unwrap();
    let dest = dir.path().join("fetched.bin");
    agent.get_flow_to_file("Engine Big", &dest).await.unwrap();
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(&path).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_check_fails_the_build() {
    let e = need!("a_failing_health_check_fails_the_build");
    let base = base_image(&e.registry, None).await;
    let build = BuildConfig {
        mode: BuildMode::Engine,
        base_image: Some(base),
        load_command: Some("false".into()),
        base_url: Some(e.docker_host.clone()),
        ..Default::default()
    };
    let mut s = Docker::builder()
        .registry_url(&e.registry)
        .build_config(build)
        .image(&unique("unhealthy"), None)
        .build()
        .unwrap();
    s.add_flow(seal_bytes("F", b"x", &app()).into())
        .await
        .unwrap();
    let msg = s.persist().await.unwrap_err().to_string();
    assert!(msg.contains(BUILD_FAILED), "{msg}");
    assert!(s.reference().unwrap().fields["image_digest"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_credentials_wrong_registry_and_daemon_only_options() {
    let e = need!("registry_credentials_wrong_registry_and_daemon_only_options");
    let creds = Some(Credentials::new(&e.user, e.password.clone()));
    let base = base_image(&e.registry_auth, creds).await;
    let secrets = Arc::new(
        MapSource::new()
            .with("REG_USER", &e.user)
            .with("REG_PASS", &e.password)
            .with("BAD_PASS", "wrong-c4n4ry"),
    );
    let make = |pass: &str| {
        Docker::builder()
            .registry_url(&e.registry_auth)
            .mode(BuildMode::Daemonless)
            .base_image(&base)
            .registry_secrets("REG_USER", pass)
            .secrets(secrets.clone())
            .image(&unique("auth"), None)
            .build()
            .unwrap()
    };
    let mut ok = make("REG_PASS");
    ok.add_flow(seal_bytes("F", b"x", &app()).into())
        .await
        .unwrap();
    ok.persist().await.unwrap();
    let mut bad = make("BAD_PASS");
    bad.add_flow(seal_bytes("F", b"x", &app()).into())
        .await
        .unwrap();
    let err = bad.persist().await.unwrap_err();
    assert!(
        matches!(err, CoreError::PermissionDenied { .. }),
        "a refused password is PermissionDenied: {err:?}"
    );
    assert!(
        err.to_string().contains("401") && err.to_string().contains("credentials"),
        "{err}"
    );
    assert!(!format!("{err} {err:?} {bad:?}").contains("c4n4ry"));

    // Nothing listens there: a temporary error that keeps the transport error as its source.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nowhere = Docker::builder()
        .registry_url(format!("127.0.0.1:{closed}"))
        .mode(BuildMode::Daemonless)
        .base_image(format!("127.0.0.1:{closed}/base/busybox:1"))
        .build()
        .unwrap();
    nowhere
        .add_flow(seal_bytes("F", b"x", &app()).into())
        .await
        .unwrap();
    let err = nowhere.persist().await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{closed}")),
        "{err}"
    );
    assert!(err.is_temporary(), "{err:?}");
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");

    // Settings that cannot work are refused by build(), before any I/O.
    let msg = daemonless(&e, &base)
        .extra_command("RUN echo hi")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("extra_dockerfile_commands need a Docker Engine"),
        "{msg}"
    );
    let msg = Docker::builder()
        .base_image("a")
        .dockerfile("FROM b")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Only one of `base_image` and `dockerfile`"),
        "{msg}"
    );
    let msg = Docker::builder()
        .username("only-a-user")
        .build()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("go together"), "{msg}");
}

/// Credentials given to the builder: used for the build, never recorded, logged or shown; an
/// agent reads the image with the secrets the reference names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_registry_credentials_are_used_and_never_recorded() {
    let e = need!("typed_registry_credentials_are_used_and_never_recorded");
    let base = base_image(
        &e.registry_auth,
        Some(Credentials::new(&e.user, e.password.clone())),
    )
    .await;
    let builder = daemonless(&e, &base)
        .registry_url(&e.registry_auth)
        .username(&e.user)
        .password(e.password.clone())
        .registry_secrets("AGENT_USER", "AGENT_PASS")
        .image(&unique("typed"), None);
    let shown = format!("{builder:?}");
    assert!(!shown.contains(&e.password), "{shown}");
    let mut s = builder.build().unwrap();
    assert!(!format!("{s:?}").contains(&e.password));
    s.add_flow(seal_bytes("Typed", b"with typed credentials", &app()).into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    let json = reference.to_json();
    assert!(!json.contains(&e.password), "{json}");
    assert_eq!(reference.secrets, ["AGENT_USER", "AGENT_PASS"]);
    assert_eq!(reference.fields["registry_username_secret"], "AGENT_USER");

    let secrets = Arc::new(
        MapSource::new()
            .with("AGENT_USER", &e.user)
            .with("AGENT_PASS", &e.password),
    );
    let mut agent = Types::new().with_secrets(secrets);
    flowstore_docker::register(&mut agent);
    let fetched = agent
        .open(&reference)
        .unwrap()
        .get_flow("Typed")
        .await
        .unwrap();
    assert_eq!(fetched.bytes().as_ref(), b"with typed credentials");
}

/// A missing repository, tag or manifest is NotFound ("image"); a flow file missing from a
/// built image is NotFound ("file").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_images_and_files_are_not_found() {
    let e = need!("missing_images_and_files_are_not_found");
    let base = base_image(&e.registry, None).await;
    // A base image that does not exist: the build says which.
    let mut s = daemonless(&e, &format!("{}/no/such-base:1", e.registry))
        .image(&unique("missing-base"), None)
        .build()
        .unwrap();
    s.add_flow(seal_bytes("F", b"x", &app()).into())
        .await
        .unwrap();
    let err = s.persist().await.unwrap_err();
    assert!(
        matches!(err, CoreError::NotFound { what: "image", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no/such-base"), "{err}");

    let mut s = daemonless(&e, &base)
        .image(&unique("present"), None)
        .build()
        .unwrap();
    s.add_flow(seal_bytes("Here", b"here", &app()).into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    // A repository that does not exist.
    let mut gone = reference.clone();
    gone.fields
        .insert("image_name".into(), json!(unique("never-pushed")));
    let err = types()
        .open(&gone)
        .unwrap()
        .get_flow("Here")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(
        matches!(err, CoreError::NotFound { what: "image", .. }),
        "{err:?}"
    );
    // A manifest digest the repository does not hold.
    let mut other = reference.clone();
    other.fields.insert(
        "image_digest".into(),
        json!(oci::Digest::of(b"no such manifest").to_string()),
    );
    let err = types()
        .open(&other)
        .unwrap()
        .get_flow("Here")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    // The flow's file is not where the reference says.
    let mut elsewhere = reference.clone();
    elsewhere
        .flows
        .insert("Here".into(), "/opt/flowstore/flows/elsewhere.flow".into());
    let err = types()
        .open(&elsewhere)
        .unwrap()
        .get_flow("Here")
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::NotFound { what: "file", .. }),
        "{err:?}"
    );
}

/// A storage opened from a URL with options and the one reopened from its own reference after
/// the build have the same configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_storage_and_its_reference_agree_after_the_build() {
    let e = need!("a_url_storage_and_its_reference_agree_after_the_build");
    let base = base_image(&e.registry, None).await;
    let url = format!(
        "docker://{}/{}?mode=daemonless&base_image={base}&directory=/srv/flows&env=STAGE=test&label=url",
        e.registry,
        unique("from-url")
    );
    let mut s = types().open_url(&url).unwrap();
    s.add_flow(seal_bytes("From URL", b"from a url", &app()).into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    assert_eq!(reference.labels, ["url"]);
    let built = Docker::from_url(&url, &Default::default()).unwrap();
    let reopened = Docker::from_reference(&reference, &Default::default()).unwrap();
    assert_eq!(reopened.config().directory, "/srv/flows");
    assert_eq!(reopened.config().registry_url, built.config().registry_url);
    assert_eq!(
        reference.to_json(),
        reopened.reference().unwrap().to_json(),
        "the reopened storage records the same reference"
    );
    let fetched = types()
        .open(&reference)
        .unwrap()
        .get_flow("From URL")
        .await
        .unwrap();
    assert_eq!(fetched.bytes().as_ref(), b"from a url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_credentials_from_the_docker_cli_config() {
    use base64::Engine as _;
    let e = need!("registry_credentials_from_the_docker_cli_config");
    let creds = Some(Credentials::new(&e.user, e.password.clone()));
    let base = base_image(&e.registry_auth, creds).await;
    let dir = tempfile::tempdir().unwrap();
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", e.user, e.password));
    std::fs::write(
        dir.path().join("config.json"),
        json!({"auths": {e.registry_auth.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    // Only this test sets DOCKER_CONFIG; the other tests' registries have no entry in it.
    std::env::set_var("DOCKER_CONFIG", dir.path());
    let mut s = Docker::builder()
        .registry_url(&e.registry_auth)
        .mode(BuildMode::Daemonless)
        .base_image(base)
        .image(&unique("config-auth"), None)
        .build()
        .unwrap();
    s.add_flow(seal_bytes("F", b"via docker config", &app()).into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let f = types()
        .open(&s.reference().unwrap())
        .unwrap()
        .get_flow("F")
        .await
        .unwrap();
    assert_eq!(f.bytes().as_ref(), b"via docker config");

    // A credential helper named for the registry wins over a (wrong) inline entry: the Docker
    // credential-helper protocol, with a helper program on PATH that answers for this registry only.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-flowstoretest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = \"{}\" ] || exit 3\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{}\",\"Secret\":\"{}\"}}' \"$server\"\n",
            e.registry_auth, e.user, e.password
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{}:wrong", e.user));
    std::fs::write(
        dir.path().join("config.json"),
        json!({"auths": {e.registry_auth.clone(): {"auth": wrong}},
               "credHelpers": {e.registry_auth.clone(): "flowstoretest"}})
        .to_string(),
    )
    .unwrap();
    // Prepending a directory leaves every other program where it was for the other tests.
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::set_var("PATH", format!("{}:{path}", bin.display()));
    let f = types()
        .open(&s.reference().unwrap())
        .unwrap()
        .get_flow("F")
        .await
        .unwrap();
    assert_eq!(f.bytes().as_ref(), b"via docker config");
}

/// A multi-platform base image (an OCI index, as most public base images are): the daemonless
/// build picks this machine's variant, and names the variants when none matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonless_build_on_a_multi_platform_base_picks_the_platform() {
    let e = need!("daemonless_build_on_a_multi_platform_base_picks_the_platform");
    // The single-platform image goes into the index's repository first (tag 1, replaced below).
    busybox_image(&e.registry, None, "base/multi").await;
    let reg = Registry::new(&e.registry, None);
    let (_, single) = reg.manifest("base/multi", "1").await.unwrap();
    let arch = BuildConfig::default().platform;
    let entry = |a: &str| Descriptor {
        platform: Some(Platform {
            architecture: a.to_string(),
            os: "linux".to_string(),
            variant: None,
            other: Default::default(),
        }),
        ..single.clone()
    };
    let index = ImageIndex::new(vec![entry("s390x"), entry(&arch)]);
    let index_digest = reg
        .push_manifest("base/multi", "1", &index.into())
        .await
        .unwrap();
    let (back, _) = reg
        .manifest("base/multi", index_digest.as_str())
        .await
        .unwrap();
    assert!(back.into_index().is_some(), "the registry holds an index");

    let base = format!("{}/base/multi:1", e.registry);
    let mut s = daemonless(&e, &base)
        .image(&unique("multi"), None)
        .build()
        .unwrap();
    s.add_flow(seal_bytes("Multi", b"on any platform", &app()).into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    let (built, _) = reg
        .manifest(
            reference.fields["image_name"].as_str().unwrap(),
            reference.fields["image_digest"].as_str().unwrap(),
        )
        .await
        .unwrap();
    let built = built.into_image().unwrap();
    assert_eq!(
        built.layers.len(),
        2,
        "the base variant's layer plus the flows layer"
    );
    assert_eq!(built.media_type.as_deref(), Some(oci::MANIFEST));
    let fetched = types()
        .open(&reference)
        .unwrap()
        .get_flow("Multi")
        .await
        .unwrap();
    assert_eq!(fetched.bytes().as_ref(), b"on any platform");

    let mut other = daemonless(&e, &base)
        .platform("riscv64")
        .image(&unique("multi"), None)
        .build()
        .unwrap();
    other
        .add_flow(seal_bytes("Multi", b"x", &app()).into())
        .await
        .unwrap();
    let err = other.persist().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "has no linux/riscv64 variant (it has: linux/s390x, linux/{arch})"
        )),
        "{err}"
    );
}

/// A registry that authenticates with the registry token flow (as Docker Hub and GHCR do): the
/// client gets a token from the token server with the credentials, then pushes and pulls with it.
/// An agent holding only the reference and its own secret sources fetches the flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_flow_registry_through_its_token_server() {
    let e = need!("a_token_flow_registry_through_its_token_server");
    // No credentials: the token server refuses, and the error says where and what to check.
    let err = Registry::new(&e.registry_token, None)
        .manifest("base/busybox", "1")
        .await
        .unwrap_err();
    let core: CoreError = err.into();
    assert!(
        matches!(core, CoreError::PermissionDenied { .. }),
        "{core:?}"
    );
    let err = core.to_string();
    assert!(
        err.contains("getting a token from http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("401") && err.contains("credentials"), "{err}");
    let wrong = Registry::new(
        &e.registry_token,
        Some(Credentials::new(&e.user, "wr0ng-t0ken-c4n4ry")),
    )
    .manifest("base/busybox", "1")
    .await
    .unwrap_err();
    assert!(!format!("{wrong} {wrong:?}").contains("c4n4ry"), "{wrong}");

    let creds = Some(Credentials::new(&e.user, e.password.clone()));
    let base = base_image(&e.registry_token, creds).await;
    let secrets = Arc::new(
        MapSource::new()
            .with("REG_USER", &e.user)
            .with("REG_PASS", &e.password),
    );
    let mut s = daemonless(&e, &base)
        .registry_url(&e.registry_token)
        .registry_secrets("REG_USER", "REG_PASS")
        .secrets(secrets.clone())
        .image(&unique("token"), None)
        .build()
        .unwrap();
    s.add_flow(seal_bytes("Token Flow", b"behind a token server", &app()).into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    assert_eq!(reference.secrets, ["REG_USER", "REG_PASS"]);
    assert!(!reference.to_json().contains(&e.password));

    let mut agent = Types::new().with_secrets(secrets);
    flowstore_docker::register(&mut agent);
    let fetched = agent
        .open(&reference)
        .unwrap()
        .get_flow("Token Flow")
        .await
        .unwrap();
    assert_eq!(fetched.bytes().as_ref(), b"behind a token server");
    // Without the secrets the agent is told which one is missing, when it opens the reference.
    let err = types().open(&reference).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("REG_USER"), "{err}");
}

/// A bundle test's files: path, bytes, executable.
type TreeFiles = Vec<(&'static str, Vec<u8>, bool)>;

/// A project tree for the bundle tests: nested directories, an executable, a unicode name, two
/// files with the same bytes, and `marker` in one file so each test's layer is its own.
fn bundle_tree(marker: &str) -> (tempfile::TempDir, TreeFiles) {
    let dir = tempfile::tempdir().unwrap();
    let files: TreeFiles = vec![
        (
            "flows/etl.py",
            b"from pkg.helpers import extract\n".to_vec(),
            false,
        ),
        ("pkg/__init__.py", Vec::new(), false),
        (
            "pkg/helpers.py",
            format!("MARKER = {marker:?}\n").into_bytes(),
            false,
        ),
        ("bin/run.sh", b"#!/bin/sh\necho run\n".to_vec(), true),
        ("data/n\u{e4}me \u{540d}.txt", b"unicode\n".to_vec(), false),
        ("same-a.txt", b"same bytes\n".to_vec(), false),
        ("same-b.txt", b"same bytes\n".to_vec(), false),
    ];
    for (path, bytes, exec) in &files {
        write_file(dir.path(), path, bytes, *exec);
    }
    (dir, files)
}

fn write_file(root: &std::path::Path, path: &str, bytes: &[u8], exec: bool) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    let mode = if exec { 0o755 } else { 0o644 };
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_bundle(root: &std::path::Path, files: &[(&str, Vec<u8>, bool)]) {
    use std::os::unix::fs::PermissionsExt;
    for (path, bytes, exec) in files {
        let p = root.join(path);
        assert_eq!(&std::fs::read(&p).unwrap(), bytes, "{path}");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o111 != 0, *exec, "{path}: {mode:o}");
    }
}

/// The layers of the image a reference names.
async fn image_layers(e: &Env, reference: &StorageReference) -> Vec<Descriptor> {
    let (manifest, _) = Registry::new(&e.registry, None)
        .manifest(
            reference.fields["image_name"].as_str().unwrap(),
            reference.fields["image_digest"].as_str().unwrap(),
        )
        .await
        .unwrap();
    manifest.into_image().unwrap().layers
}

fn bundle_layer(reference: &StorageReference, flow: &str) -> String {
    reference.fields["bundle_layers"][flow]
        .as_str()
        .unwrap_or_else(|| panic!("no bundle layer recorded: {}", reference.to_json()))
        .to_string()
}

/// Daemonless: the tree is one layer (below the flows layer) and the reference records its digest;
/// registering the unchanged tree again (also twice at once) finds the layer in the registry and
/// pushes only the manifest; a one-file change pushes a new layer, whole. The reports say so, and
/// an agent downloads one layer per fetch, nothing when its cache holds every file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_layers_are_reused_and_reported_honestly() {
    let e = need!("bundle_layers_are_reused_and_reported_honestly");
    let base = base_image(&e.registry, None).await;
    let (tree, files) = bundle_tree(&unique("reuse"));
    let image = unique("bundles");
    let register = |tag: &str| {
        let builder = daemonless(&e, &base).image(&image, Some(tag));
        let tree = tree.path().to_path_buf();
        async move {
            let mut s = builder.build().unwrap();
            s.add_flow(FlowInput::bundle("Bundled ETL", &tree, "flows/etl.py"))
                .await
                .unwrap();
            s.persist().await.unwrap();
            let report = s
                .transfer_report("Bundled ETL")
                .expect("a daemonless build reports");
            (s.reference().unwrap(), report)
        }
    };
    let (v1, first) = register("v1").await;
    let layer = bundle_layer(&v1, "Bundled ETL");
    let layers = image_layers(&e, &v1).await;
    assert_eq!(layers.len(), 3, "base, bundle, flows: {layers:?}");
    assert_eq!(
        layers[1].digest.as_str(),
        layer,
        "the bundle's layer sits below the flows layer"
    );
    let layer_size = layers[1].size;
    let agent = types().open(&v1).unwrap();
    let FlowContent::Bundle(manifest) = agent.get_flow("Bundled ETL").await.unwrap().content else {
        panic!("not a bundle")
    };
    let manifest_size = manifest.bytes().len() as u64;
    assert_eq!(
        first,
        TransferReport {
            objects: 2,
            bytes: layer_size + manifest_size,
            reused_objects: 0,
            reused_bytes: 0
        },
        "the layer and the manifest were pushed"
    );

    // The same tree again: the registry has the layer, so only the manifest goes.
    let (v2, again) = register("v2").await;
    assert_eq!(
        bundle_layer(&v2, "Bundled ETL"),
        layer,
        "same tree, same layer"
    );
    let unchanged = TransferReport {
        objects: 1,
        bytes: manifest_size,
        reused_objects: 1,
        reused_bytes: layer_size,
    };
    assert_eq!(again, unchanged, "no new layer pushed");
    // Twice at once: both find the layer.
    let (a, b) = futures::join!(register("v2a"), register("v2b"));
    for (reference, report) in [a, b] {
        assert_eq!(bundle_layer(&reference, "Bundled ETL"), layer);
        assert_eq!(report, unchanged);
    }

    // One file changed: a new layer, pushed whole, and the manifest.
    let changed = b"MARKER = 'changed'\n".to_vec();
    write_file(tree.path(), "pkg/helpers.py", &changed, false);
    let (v3, third) = register("v3").await;
    let new_layer = bundle_layer(&v3, "Bundled ETL");
    assert_ne!(new_layer, layer);
    let new_size = image_layers(&e, &v3).await[1].size;
    let agent_v3 = types().open(&v3).unwrap();
    let new_manifest_size = agent_v3
        .get_flow("Bundled ETL")
        .await
        .unwrap()
        .bytes()
        .len() as u64;
    assert_eq!(
        third,
        TransferReport {
            objects: 2,
            bytes: new_size + new_manifest_size,
            reused_objects: 0,
            reused_bytes: 0
        },
        "the whole new layer and the manifest"
    );

    // An agent: one layer per version, then nothing when the cache holds every file.
    let work = tempfile::tempdir().unwrap();
    let opts = FetchOptions::with_cache_dir(work.path().join("cache"));
    let one = agent
        .get_bundle("Bundled ETL", &work.path().join("v1"), &opts)
        .await
        .unwrap();
    assert_bundle(&one.root, &files);
    assert_eq!((one.transfer.objects, one.transfer.bytes), (1, layer_size));
    let mut files_v3 = files.clone();
    files_v3[2].1 = changed;
    let three = agent_v3
        .get_bundle("Bundled ETL", &work.path().join("v3"), &opts)
        .await
        .unwrap();
    assert_bundle(&three.root, &files_v3);
    assert_eq!(
        (three.transfer.objects, three.transfer.bytes),
        (1, new_size),
        "a changed file means the whole new layer"
    );
    let cached = agent_v3
        .get_bundle("Bundled ETL", &work.path().join("v3"), &opts)
        .await
        .unwrap();
    assert_bundle(&cached.root, &files_v3);
    assert_eq!(cached.transfer.objects, 0, "{:?}", cached.transfer);
    assert_eq!(cached.transfer.reused_objects, 1, "{:?}", cached.transfer);
    assert_bundle(&one.root, &files);

    // The image runs it: the tree is at its directory, checked by the image's checklist.
    let (code, out) = run_in_image(
        &e,
        &format!("{}/{image}:v1", e.registry),
        &["sh", "-c", "sha256sum -c /opt/flowstore/flows.sha256 && ls -l /opt/flowstore/flows/bundled-etl.bundle/bin/run.sh"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("/opt/flowstore/flows/bundled-etl.bundle/pkg/helpers.py: OK"),
        "{out}"
    );
    assert!(out.contains("-rwxr-xr-x"), "{out}");
}

/// A gzipped tar of `entries` (path, contents) written as they are, `..` included, as a hostile
/// tool could (the `tar` crate's builder refuses such paths).
fn raw_tar_gz(entries: &[(String, Vec<u8>)]) -> Bytes {
    use std::io::Write;
    let mut tar_bytes = Vec::new();
    for (path, bytes) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        h.set_cksum();
        tar_bytes.extend_from_slice(h.as_bytes());
        tar_bytes.extend_from_slice(bytes);
        tar_bytes.resize(tar_bytes.len().div_ceil(512) * 512, 0);
    }
    tar_bytes.resize(tar_bytes.len() + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar_bytes).unwrap();
    Bytes::from(gz.finish().unwrap())
}

/// A layer in the registry that holds more than the manifest lists (an extra file, a `..` path)
/// is refused as a whole, naming the entry, and nothing is materialized; a bundle layer altered
/// in the registry's store no longer matches its digest and is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_layer_with_entries_beyond_the_manifest_is_refused() {
    let e = need!("a_bundle_layer_with_entries_beyond_the_manifest_is_refused");
    let base = base_image(&e.registry, None).await;
    let (tree, files) = bundle_tree(&unique("refused"));
    let image = unique("bundle-refused");
    let mut s = daemonless(&e, &base).image(&image, None).build().unwrap();
    s.add_flow(FlowInput::bundle("Refused", tree.path(), "flows/etl.py"))
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    let dir = "opt/flowstore/flows/refused.bundle";
    let genuine: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(p, b, _)| (format!("{dir}/{p}"), b.clone()))
        .collect();
    let reg = Registry::new(&e.registry, None);
    let work = tempfile::tempdir().unwrap();
    let cases = [
        (
            format!("{dir}/evil.sh"),
            "which is not a file of the bundle's manifest",
        ),
        (
            format!("{dir}/../../../../../tmp/flowstore-escaped"),
            "`..` segment",
        ),
    ];
    for (i, (extra, expected)) in cases.iter().enumerate() {
        let mut entries = genuine.clone();
        entries.push((extra.clone(), b"#!/bin/sh\nrm -rf ~\n".to_vec()));
        let forged = reg
            .push_blob(&image, oci::LAYER, raw_tar_gz(&entries))
            .await
            .unwrap();
        // The reference now names the forged layer (its digest checks out).
        let mut pointed = reference.clone();
        pointed.fields["bundle_layers"]["Refused"] = json!(forged.digest.to_string());
        let dest = work.path().join(format!("dest{i}"));
        let err = types()
            .open(&pointed)
            .unwrap()
            .get_bundle(
                "Refused",
                &dest,
                &FetchOptions::with_cache_dir(work.path().join(format!("cache{i}"))),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CoreError::FlowCorrupt { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(expected) && text.contains(extra.as_str()),
            "{text}"
        );
        assert!(
            text.contains(forged.digest.as_str()),
            "names the layer: {text}"
        );
        assert!(!dest.exists(), "a refused bundle was materialized");
        assert!(!std::path::Path::new("/tmp/flowstore-escaped").exists());
    }

    // The genuine layer still serves the bundle.
    let agent = types().open(&reference).unwrap();
    let fetched = agent
        .get_bundle(
            "Refused",
            &work.path().join("genuine"),
            &FetchOptions::with_cache_dir(work.path().join("cache-genuine")),
        )
        .await
        .unwrap();
    assert_bundle(&fetched.root, &files);

    // Altered in the registry's own store (this tree's layer is this test's alone).
    let Some(data) = std::env::var_os("FLOWSTORE_TEST_REGISTRY_DATA") else {
        return;
    };
    let layer: oci::Digest = bundle_layer(&reference, "Refused").parse().unwrap();
    let hex = layer.encoded();
    let blob = std::path::Path::new(&data).join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut altered = genuine.clone();
    altered[0].1 = b"import os; os.system('evil')\n".to_vec();
    std::fs::write(&blob, raw_tar_gz(&altered)).unwrap();
    let dest = work.path().join("altered");
    let err = agent
        .get_bundle(
            "Refused",
            &dest,
            &FetchOptions::with_cache_dir(work.path().join("cache-altered")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::FlowCorrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("altered in the registry"), "{err}");
    assert!(!dest.exists());
}

/// An Engine build carries the bundle's tree as a layer of its own too: the daemon's health check
/// verifies every file, the reference records the pushed layer, and an agent fetches the bundle
/// from that layer alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_build_carries_the_bundle_layer() {
    let e = need!("engine_build_carries_the_bundle_layer");
    let base = base_image(&e.registry, None).await;
    let (tree, files) = bundle_tree(&unique("engine"));
    let mut s = Docker::builder()
        .registry_url(&e.registry)
        .mode(BuildMode::Engine)
        .base_image(base)
        .base_url(&e.docker_host)
        .load_command("/opt/flowstore/flows/engine-bundle.bundle/bin/run.sh")
        .image(&unique("engine-bundle"), None)
        .build()
        .unwrap();
    s.add_flow(FlowInput::bundle(
        "Engine Bundle",
        tree.path(),
        "flows/etl.py",
    ))
    .await
    .unwrap();
    s.add_flow(seal_bytes("Beside", b"a serialized flow beside it", &app()).into())
        .await
        .unwrap();
    s.persist().await.unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        s.transfer_report("Engine Bundle"),
        None,
        "the daemon pushes and does not say what the registry had"
    );
    let reference = s.reference().unwrap();
    let layer = bundle_layer(&reference, "Engine Bundle");
    let layers = image_layers(&e, &reference).await;
    assert!(
        layers.iter().any(|l| l.digest.as_str() == layer),
        "{layer} is one of {layers:?}"
    );
    let agent = types().open(&reference).unwrap();
    let work = tempfile::tempdir().unwrap();
    let opts = FetchOptions::with_cache_dir(work.path().join("cache"));
    let fetched = agent
        .get_bundle("Engine Bundle", &work.path().join("tree"), &opts)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_bundle(&fetched.root, &files);
    assert_eq!(fetched.transfer.objects, 1);
    let beside = agent.get_flow("Beside").await.unwrap();
    assert_eq!(beside.bytes().as_ref(), b"a serialized flow beside it");
    let (code, out) = run_in_image(
        &e,
        &s.image_ref().unwrap(),
        &[
            "cat",
            "/opt/flowstore/flows/engine-bundle.bundle/flows/etl.py",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.as_bytes(), files[0].1.as_slice());
}

/// Script mode stores scripts only: a bundle is refused at `add_flow`, before any I/O.
#[tokio::test]
async fn script_mode_refuses_bundles() {
    let mut s = Docker::builder()
        .script("/opt/flowstore/flows/flow.py")
        .build()
        .unwrap();
    assert!(!s.capabilities().bundles);
    let tree = tempfile::tempdir().unwrap();
    let err = s
        .add_flow(FlowInput::bundle("B", tree.path(), "flow.py"))
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::Unsupported { .. }), "{err:?}");
    assert!(s.flows().is_empty());
}
