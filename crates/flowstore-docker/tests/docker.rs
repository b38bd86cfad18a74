//! Docker storage against a real Docker Engine and real registries on 127.0.0.1, started by
//! `cargo xtask test` (`FLOWSTORE_TEST_DOCKER_HOST`, `FLOWSTORE_TEST_REGISTRY`, and
//! `FLOWSTORE_TEST_REGISTRY_AUTH` with htpasswd auth). No image is pulled from the internet: the
//! tests build a busybox base image from Debian's busybox-static and push it themselves.

use std::collections::BTreeMap;
use std::sync::Arc;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, LogsOptionsBuilder, WaitContainerOptions,
};
use bytes::Bytes;
use flowstore_core::envelope::{seal, seal_bytes, AppInfo};
use flowstore_core::testkit::{skip, Harness, HarnessResult, Skip};
use flowstore_core::{Registry as Types, Storage, StorageReference};
use flowstore_docker::registry::{self, Registry};
use flowstore_docker::{layer, BuildConfig, BuildMode, Docker, BUILD_FAILED};
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
async fn base_image(
    registry_host: &str,
    auth: Option<(String, flowstore_core::secret::SecretString)>,
) -> String {
    busybox_image(registry_host, auth, "base/busybox").await
}

/// [`base_image`] in repository `repo`, tag `1`.
async fn busybox_image(
    registry_host: &str,
    auth: Option<(String, flowstore_core::secret::SecretString)>,
    repo: &str,
) -> String {
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
            json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}),
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

fn daemonless(e: &Env, base: &str) -> Docker {
    Docker::new(
        Some(&e.registry),
        BuildConfig {
            mode: BuildMode::Daemonless,
            base_image: Some(base.to_string()),
            ..Default::default()
        },
    )
}

struct DockerHarness {
    env: Env,
    base: String,
    /// Host copies of the scripts baked into script-mode images.
    scripts: tempfile::TempDir,
    /// The open registry's filesystem store (`FLOWSTORE_TEST_REGISTRY_DATA`).
    registry_data: Option<std::path::PathBuf>,
}

#[flowstore_core::async_trait]
impl Harness for DockerHarness {
    async fn storage(&self) -> Option<Box<dyn Storage>> {
        // One image name for every storage: each registration gets its own timestamp tag.
        Some(Box::new(
            daemonless(&self.env, &self.base).image("conformance", None),
        ))
    }
    /// The script is copied into the image by `files`; its digest is recorded at registration.
    async fn script_storage(&self, _flow: &str, source: &[u8]) -> Option<Box<dyn Storage>> {
        let host = self.scripts.path().join(format!("{}.py", unique("script")));
        std::fs::write(&host, source).unwrap();
        let image_path = "/opt/flowstore/flows/script.py";
        let build = BuildConfig {
            mode: BuildMode::Daemonless,
            base_image: Some(self.base.clone()),
            files: BTreeMap::from([(host.to_string_lossy().into_owned(), image_path.into())]),
            ..Default::default()
        };
        Some(Box::new(
            Docker::new(Some(&self.env.registry), build)
                .image("conformance-script", None)
                .script(image_path),
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
        let flow_layer = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let hex = flow_layer.trim_start_matches("sha256:");
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
        .with_progress(progress);
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
    let mut files = BTreeMap::new();
    files.insert(
        host_file.path().display().to_string(),
        "/opt/flowstore/person.txt".to_string(),
    );
    let mut env_vars = BTreeMap::new();
    env_vars.insert("GREETING".to_string(), "hello".to_string());
    let build = BuildConfig {
        mode: BuildMode::Engine,
        base_image: Some(base),
        files,
        env_vars,
        load_command: Some("cat /opt/flowstore/person.txt".into()),
        base_url: Some(e.docker_host.clone()),
        ..Default::default()
    };
    let sealed = seal_bytes("Engine Flow", b"engine payload", &app());
    let (progress, seen) = progress_recorder();
    let mut s = Docker::new(Some(&e.registry), build)
        .image(&unique("engine"), None)
        .with_progress(progress);
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
    assert_eq!(out.as_bytes(), sealed.bytes.as_ref());
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
    let mut s = Docker::new(Some(&e.registry), build).image(&unique("unhealthy"), None);
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
    let creds = Some((
        e.user.clone(),
        flowstore_core::secret::SecretString::from(e.password.clone()),
    ));
    let base = base_image(&e.registry_auth, creds).await;
    let secrets = Arc::new(
        MapSource::new()
            .with("REG_USER", &e.user)
            .with("REG_PASS", &e.password)
            .with("BAD_PASS", "wrong-c4n4ry"),
    );
    let make = |pass: &str| {
        Docker::new(
            Some(&e.registry_auth),
            BuildConfig {
                mode: BuildMode::Daemonless,
                base_image: Some(base.clone()),
                registry_credentials: Some(("REG_USER".into(), pass.into())),
                ..Default::default()
            },
        )
        .secrets(secrets.clone())
        .image(&unique("auth"), None)
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
        err.to_string().contains("401") && err.to_string().contains("credentials"),
        "{err}"
    );
    assert!(!format!("{err} {err:?} {bad:?}").contains("c4n4ry"));

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nowhere = Docker::new(
        Some(&format!("127.0.0.1:{closed}")),
        BuildConfig {
            mode: BuildMode::Daemonless,
            base_image: Some(format!("127.0.0.1:{closed}/base/busybox:1")),
            ..Default::default()
        },
    );
    nowhere
        .add_flow(seal_bytes("F", b"x", &app()).into())
        .await
        .unwrap();
    let msg = nowhere.persist().await.unwrap_err().to_string();
    assert!(msg.contains(&format!("127.0.0.1:{closed}")), "{msg}");

    let mut refused = Docker::new(
        Some(&e.registry),
        BuildConfig {
            mode: BuildMode::Daemonless,
            base_image: Some(base.clone()),
            extra_dockerfile_commands: vec!["RUN echo hi".into()],
            ..Default::default()
        },
    );
    refused
        .add_flow(seal_bytes("F", b"x", &app()).into())
        .await
        .unwrap();
    let msg = refused.persist().await.unwrap_err().to_string();
    assert!(
        msg.contains("extra_dockerfile_commands need a Docker Engine"),
        "{msg}"
    );
    let both = Docker::new(
        None,
        BuildConfig {
            base_image: Some("a".into()),
            dockerfile: Some("FROM b".into()),
            ..Default::default()
        },
    );
    let mut both = both;
    both.add_flow(seal_bytes("F", b"x", &app()).into())
        .await
        .unwrap();
    assert!(both
        .persist()
        .await
        .unwrap_err()
        .to_string()
        .contains("Only one of `base_image` and `dockerfile`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_credentials_from_the_docker_cli_config() {
    use base64::Engine as _;
    let e = need!("registry_credentials_from_the_docker_cli_config");
    let creds = Some((
        e.user.clone(),
        flowstore_core::secret::SecretString::from(e.password.clone()),
    ));
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
    let mut s = Docker::new(
        Some(&e.registry_auth),
        BuildConfig {
            mode: BuildMode::Daemonless,
            base_image: Some(base),
            ..Default::default()
        },
    )
    .image(&unique("config-auth"), None);
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
    let (single, digest) = reg.manifest("base/multi", "1").await.unwrap();
    let size = serde_json::to_vec(&single).unwrap().len();
    let arch = BuildConfig::default().platform;
    let entry = |a: &str| {
        json!({"mediaType": registry::MANIFEST, "digest": digest, "size": size,
               "platform": {"os": "linux", "architecture": a}})
    };
    let index = json!({"schemaVersion": 2, "mediaType": registry::INDEX,
                       "manifests": [entry("s390x"), entry(&arch)]});
    let index_digest = reg.push_manifest("base/multi", "1", &index).await.unwrap();
    let (back, _) = reg.manifest("base/multi", &index_digest).await.unwrap();
    assert!(back["manifests"].is_array(), "the registry holds an index");

    let base = format!("{}/base/multi:1", e.registry);
    let mut s = daemonless(&e, &base).image(&unique("multi"), None);
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
    assert_eq!(
        built["layers"].as_array().unwrap().len(),
        2,
        "the base variant's layer plus the flows layer"
    );
    let fetched = types()
        .open(&reference)
        .unwrap()
        .get_flow("Multi")
        .await
        .unwrap();
    assert_eq!(fetched.bytes().as_ref(), b"on any platform");

    let mut other = Docker::new(
        Some(&e.registry),
        BuildConfig {
            mode: BuildMode::Daemonless,
            base_image: Some(base.clone()),
            platform: "riscv64".into(),
            ..Default::default()
        },
    )
    .image(&unique("multi"), None);
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
    use flowstore_core::secret::SecretString;
    // No credentials: the token server refuses, and the error says where and what to check.
    let err = Registry::new(&e.registry_token, None)
        .manifest("base/busybox", "1")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("getting a token from http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("401") && err.contains("credentials"), "{err}");
    let wrong = Registry::new(
        &e.registry_token,
        Some((e.user.clone(), SecretString::from("wr0ng-t0ken-c4n4ry"))),
    )
    .manifest("base/busybox", "1")
    .await
    .unwrap_err();
    assert!(!format!("{wrong} {wrong:?}").contains("c4n4ry"), "{wrong}");

    let creds = Some((e.user.clone(), SecretString::from(e.password.clone())));
    let base = base_image(&e.registry_token, creds).await;
    let secrets = Arc::new(
        MapSource::new()
            .with("REG_USER", &e.user)
            .with("REG_PASS", &e.password),
    );
    let mut s = Docker::new(
        Some(&e.registry_token),
        BuildConfig {
            mode: BuildMode::Daemonless,
            base_image: Some(base),
            registry_credentials: Some(("REG_USER".into(), "REG_PASS".into())),
            ..Default::default()
        },
    )
    .secrets(secrets.clone())
    .image(&unique("token"), None);
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
    // Without the secrets the agent is told which one is missing.
    let err = types()
        .open(&reference)
        .unwrap()
        .get_flow("Token Flow")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("REG_USER"), "{err}");
}
