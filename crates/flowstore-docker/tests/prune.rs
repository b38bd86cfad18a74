//! Versions of Docker storage in real registries (Distribution, started by `cargo xtask test`):
//! listing a repository's timestamp tags, deleting one image by digest, `flowstore prune`'s
//! plan and execution, and the refusals (foreign locations, a manifest another tag names, a
//! registry that does not allow deletes, a local image). No daemon is needed: images are built
//! daemonless on a tiny base pushed through the registry API.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use flowstore_core::envelope::{seal, AppInfo};
use flowstore_core::prune::{self, PruneOptions, Reason, RetentionPolicy};
use flowstore_core::testkit::{skip, Skip};
use flowstore_core::{key, Error as CoreError, Registry as Types, Storage, StoredVersion};
use flowstore_docker::oci::{self, ContainerConfig, ImageManifest, Manifest};
use flowstore_docker::registry::Registry;
use flowstore_docker::{BuildMode, Credentials, Docker};
use serde_json::json;

struct Env {
    registry: String,
    registry_auth: String,
    user: String,
    password: String,
}

fn env() -> Result<Env, Skip> {
    let get = |k: &str| {
        std::env::var(k).map_err(|_| {
            Skip(format!(
                "{k} is not set: the registries are not running (cargo xtask test starts them)"
            ))
        })
    };
    Ok(Env {
        registry: get("FLOWSTORE_TEST_REGISTRY")?,
        registry_auth: get("FLOWSTORE_TEST_REGISTRY_AUTH")?,
        user: get("FLOWSTORE_TEST_REGISTRY_USER")?,
        password: get("FLOWSTORE_TEST_REGISTRY_PASSWORD")?,
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
    AppInfo::new("docker-prune-tests", "1")
}

/// A repository name of its own for each test and run.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", key::new_flow_key("r").replace('/', "-"))
}

fn types() -> Types {
    let mut r = Types::new();
    flowstore_docker::register(&mut r);
    r
}

/// Pushes a one-file base image as `repo:1` to `registry`; returns its reference.
async fn base_image(registry: &str, auth: Option<Credentials>, repo: &str) -> String {
    Registry::new(registry, auth)
        .push_files_image(
            repo,
            "1",
            &[("/etc/base".to_string(), b"base".to_vec(), 0o644)],
            ContainerConfig::default(),
        )
        .await
        .unwrap();
    format!("{registry}/{repo}:1")
}

/// Registers flow `name` (its value: `value`) in a new daemonless image of `repo`, tagged with a
/// fresh timestamp; returns the storage that built it.
async fn register(
    registry: &str,
    base: &str,
    repo: &str,
    name: &str,
    value: &str,
    auth: Option<(&str, &str)>,
) -> Docker {
    let mut b = Docker::builder()
        .registry_url(registry)
        .mode(BuildMode::Daemonless)
        .base_image(base)
        .image(repo, None);
    if let Some((user, password)) = auth {
        b = b.username(user).password(password.to_string());
    }
    let mut s = b.build().unwrap();
    s.add_flow(
        seal(name, &json!({ "value": value }), &app())
            .unwrap()
            .into(),
    )
    .await
    .unwrap();
    s.persist().await.unwrap();
    s
}

/// A storage of repository `repo` in `registry` that builds nothing (for listing and deleting).
fn of_repository(registry: &str, repo: &str) -> Docker {
    Docker::builder()
        .registry_url(registry)
        .image(repo, None)
        .build()
        .unwrap()
}

/// The version `storage` built: where `list_versions` lists it.
fn location(storage: &Docker) -> String {
    storage.image_ref().unwrap()
}

/// Whether an agent fetches `name` through `storage`'s reference (false: the image is gone).
async fn fetches(storage: &Docker, name: &str) -> bool {
    let agent = types().open(&storage.reference().unwrap()).unwrap();
    match agent.get_flow(name).await {
        Ok(f) => {
            f.decode::<serde_json::Value>(&app()).unwrap();
            true
        }
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("fetching {name}: {e:?}"),
    }
}

/// Pushes a manifest of no layers, made distinct by `n`, under each of `tags`; returns its
/// digest.
async fn push_manifest(reg: &Registry, repo: &str, n: usize, tags: &[&str]) -> oci::Digest {
    let config = reg
        .push_blob(
            repo,
            oci::CONFIG,
            Bytes::from_static(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#),
        )
        .await
        .unwrap();
    let mut manifest = ImageManifest::new(config, Vec::new());
    manifest
        .other
        .insert("annotations".into(), json!({ "n": n.to_string() }));
    let manifest = Manifest::from(manifest);
    let mut digest = None;
    for tag in tags {
        digest = Some(reg.push_manifest(repo, tag, &manifest).await.unwrap());
    }
    digest.unwrap()
}

fn stamp() -> String {
    key::timestamp_slug(&key::unique_timestamp())
}

fn version(location: String) -> StoredVersion {
    StoredVersion {
        flow: None,
        slug: "x".into(),
        location,
        size: None,
        stored_at: None,
        bundle: false,
    }
}

fn tags_of(versions: &[StoredVersion]) -> Vec<String> {
    versions
        .iter()
        .map(|v| v.location.rsplit_once(':').unwrap().1.to_string())
        .collect()
}

/// Images pushed by `persist` are listed (newest first, one flow's slug each, sizes from their
/// manifests), foreign locations are refused with nothing deleted, one version is deleted (and
/// quietly again), and a prune plans and deletes by policy, leaving other flows and non-timestamp
/// tags alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_versions_are_listed_deleted_and_pruned() {
    let e = need!("image_versions_are_listed_deleted_and_pruned");
    let repo = unique("prune/flows");
    let base = base_image(&e.registry, None, &unique("prune/base")).await;
    // The same flow, unchanged, three times: each build is still its own manifest.
    let mut etl = Vec::new();
    for _ in 0..3 {
        etl.push(register(&e.registry, &base, &repo, "ETL", "same", None).await);
    }
    let other = register(&e.registry, &base, &repo, "Other flow", "o", None).await;
    // A tag that is not a timestamp: never a version.
    let reg = Registry::new(&e.registry, None);
    push_manifest(&reg, &repo, 0, &["latest"]).await;

    let storage = of_repository(&e.registry, &repo);
    let caps = storage.capabilities();
    assert!(caps.list_versions && caps.delete_versions, "{caps:?}");
    let all = storage.list_versions(None).await.unwrap();
    let mut expected: Vec<String> = etl.iter().chain([&other]).map(location).collect();
    expected.reverse();
    assert_eq!(
        all.iter().map(|v| v.location.clone()).collect::<Vec<_>>(),
        expected,
        "newest first"
    );
    for v in &all {
        let tag = v.location.rsplit_once(':').unwrap().1;
        let (manifest, _) = reg.manifest(&repo, tag).await.unwrap();
        let layers: u64 = manifest
            .into_image()
            .unwrap()
            .layers
            .iter()
            .map(|l| l.size)
            .sum();
        assert_eq!(v.size, Some(layers), "{v:?}");
        assert_eq!(key::timestamp_slug(&v.stored_at.unwrap()), tag, "{v:?}");
        assert!(!v.bundle);
    }
    let slugs: Vec<&str> = all.iter().map(|v| v.slug.as_str()).collect();
    assert_eq!(slugs, ["other-flow", "etl", "etl", "etl"]);
    let digests: BTreeSet<String> = etl
        .iter()
        .map(|s| s.config().image_digest.clone().unwrap())
        .collect();
    assert_eq!(digests.len(), 3, "unchanged rebuilds share a manifest");
    let listed = storage.list_versions(Some("ETL")).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");

    // Not versions of this storage: refused, nothing sent or deleted.
    let newest = &listed[0];
    let tag = newest.location.rsplit_once(':').unwrap().1.to_string();
    let foreign = [
        format!("{}/{repo}:{tag}", e.registry_auth),
        format!("{}/{repo}-other:{tag}", e.registry),
        format!("{}/{repo}:latest", e.registry),
        format!("{}/{repo}:{tag}/deeper", e.registry),
        format!(
            "{}/{repo}@{}",
            e.registry,
            etl[2].config().image_digest.clone().unwrap()
        ),
        format!("{}/{repo}/../x:{tag}", e.registry),
        format!("{repo}:{tag}"),
        tag.clone(),
        format!("{}/{repo}/{tag}", e.registry),
    ];
    for location in foreign {
        let err = storage
            .delete_version(&version(location.clone()))
            .await
            .expect_err(&location);
        assert!(
            matches!(err, CoreError::Config { .. }),
            "{location}: {err:?}"
        );
        assert!(err.to_string().contains(&location), "{err}");
    }
    assert_eq!(storage.list_versions(None).await.unwrap().len(), 4);
    assert!(reg
        .manifest_digest(&repo, "latest")
        .await
        .unwrap()
        .is_some());

    // The oldest goes (its image no longer fetches); again is quiet; the others still fetch.
    let oldest = listed.last().unwrap();
    assert_eq!(oldest.location, location(&etl[0]));
    storage.delete_version(oldest).await.unwrap();
    storage.delete_version(oldest).await.unwrap();
    let after = storage.list_versions(Some("ETL")).await.unwrap();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        !fetches(&etl[0], "ETL").await,
        "a deleted image still fetches"
    );
    assert!(fetches(&etl[1], "ETL").await);
    assert!(fetches(&etl[2], "ETL").await);

    // A prune of ETL, keeping the newest one, through a storage opened from a reference.
    let agent = types().open(&etl[2].reference().unwrap()).unwrap();
    let mut options = PruneOptions::new(RetentionPolicy {
        keep_last: Some(1),
        older_than: None,
    });
    options.flow = Some("ETL".into());
    let plan = prune::plan(&*agent, &options).await.unwrap();
    let reasons: Vec<Reason> = plan.versions.iter().map(|v| v.reason).collect();
    assert_eq!(reasons, [Reason::Newest, Reason::Expired], "{plan:#?}");
    assert!(plan.blobs.is_none(), "Docker has no blob sweep");
    assert!(plan.version_bytes() > 0);
    let report = prune::execute(&*agent, &plan, &options, None)
        .await
        .unwrap();
    assert_eq!(report.versions_deleted, 1);
    assert_eq!(
        tags_of(&storage.list_versions(None).await.unwrap()),
        tags_of(&[all[0].clone(), all[1].clone()])
    );
    assert!(!fetches(&etl[1], "ETL").await);
    assert!(fetches(&etl[2], "ETL").await);
    assert!(fetches(&other, "Other flow").await);
    assert!(reg
        .manifest_digest(&repo, "latest")
        .await
        .unwrap()
        .is_some());
    // Under an older-than policy everything here is recent: nothing goes.
    options.flow = None;
    options.policy = RetentionPolicy {
        keep_last: None,
        older_than: Some(Duration::from_secs(3600)),
    };
    let plan = prune::plan(&*agent, &options).await.unwrap();
    assert_eq!(plan.deleting().count(), 0, "{plan:#?}");
}

/// A repository with more tags than one page of the tag list: every timestamp tag is listed
/// (other tags are not), with its time, and deleting one leaves the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_repository_is_listed_whole() {
    let e = need!("a_large_repository_is_listed_whole");
    const TAGS: usize = 250;
    let repo = unique("prune/many");
    let reg = Registry::new(&e.registry, None);
    let mut pushed = BTreeSet::new();
    for n in 0..TAGS {
        let tag = stamp();
        push_manifest(&reg, &repo, n, &[&tag]).await;
        pushed.insert(tag);
    }
    push_manifest(&reg, &repo, TAGS, &["v1"]).await;
    push_manifest(&reg, &repo, TAGS + 1, &["1"]).await;
    // Whether this registry pages (Distribution 2.8 answers with every tag whatever `n` is).
    let first_page = reqwest::get(format!("{}/v2/{repo}/tags/list?n=100", reg.base()))
        .await
        .unwrap();
    let pages = first_page.headers().contains_key(reqwest::header::LINK);
    eprintln!(
        "a_large_repository_is_listed_whole: the registry {} the tag list",
        if pages { "pages" } else { "does not page" }
    );
    assert_eq!(
        reg.tags(&repo, 100).await.unwrap().len(),
        TAGS + 2,
        "every tag, followed across pages"
    );

    let storage = of_repository(&e.registry, &repo);
    let listed = storage.list_versions(None).await.unwrap();
    assert_eq!(listed.len(), TAGS);
    let tags: BTreeSet<String> = tags_of(&listed).into_iter().collect();
    assert_eq!(tags, pushed);
    // Newest first; no flow label: the slug is the image name's last segment.
    let newest: Vec<String> = pushed.iter().rev().cloned().collect();
    assert_eq!(tags_of(&listed), newest);
    let last_segment = repo.rsplit('/').next().unwrap();
    assert!(
        listed.iter().all(|v| v.slug == last_segment),
        "{:?}",
        listed[0]
    );
    assert!(listed
        .iter()
        .all(|v| key::timestamp_slug(&v.stored_at.unwrap())
            == v.location.rsplit_once(':').unwrap().1));
    storage.delete_version(&listed[TAGS / 2]).await.unwrap();
    let after = storage.list_versions(None).await.unwrap();
    assert_eq!(after.len(), TAGS - 1);
    assert!(after
        .iter()
        .all(|v| v.location != listed[TAGS / 2].location));
    assert_eq!(reg.tags(&repo, 100).await.unwrap().len(), TAGS + 1);
}

/// Deleting by digest would take every tag of the manifest along: a version whose manifest
/// another tag (a timestamp or `latest`) also names is refused, naming the tag, and nothing goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_another_tag_names_is_not_deleted() {
    let e = need!("a_manifest_another_tag_names_is_not_deleted");
    let repo = unique("prune/shared");
    let reg = Registry::new(&e.registry, None);
    let (t1, t2, t3, t4) = (stamp(), stamp(), stamp(), stamp());
    push_manifest(&reg, &repo, 1, &[&t1, &t2]).await;
    push_manifest(&reg, &repo, 2, &[&t3, "latest"]).await;
    push_manifest(&reg, &repo, 3, &[&t4]).await;
    let storage = of_repository(&e.registry, &repo);
    let listed = storage.list_versions(None).await.unwrap();
    assert_eq!(tags_of(&listed), [t4.as_str(), &t3, &t2, &t1]);
    for (tag, shared_with) in [(&t1, t2.as_str()), (&t2, t1.as_str()), (&t3, "latest")] {
        let v = version(format!("{}/{repo}:{tag}", e.registry));
        let err = storage.delete_version(&v).await.unwrap_err();
        assert!(matches!(err, CoreError::Config { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("\"{shared_with}\"")) && text.contains("by digest"),
            "{text}"
        );
    }
    assert_eq!(storage.list_versions(None).await.unwrap().len(), 4);
    assert!(reg
        .manifest_digest(&repo, "latest")
        .await
        .unwrap()
        .is_some());
    // A manifest only its own tag names goes.
    storage.delete_version(&listed[0]).await.unwrap();
    assert_eq!(
        tags_of(&storage.list_versions(None).await.unwrap()),
        [t3.as_str(), &t2, &t1]
    );
}

/// The registry with htpasswd auth: listing and deleting send the storage's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_in_an_authenticated_registry() {
    let e = need!("versions_in_an_authenticated_registry");
    let creds = Credentials::new(&e.user, e.password.clone());
    let repo = unique("prune/auth");
    let base = base_image(
        &e.registry_auth,
        Some(creds.clone()),
        &unique("prune/auth-base"),
    )
    .await;
    let login = Some((e.user.as_str(), e.password.as_str()));
    let a = register(&e.registry_auth, &base, &repo, "Private", "a", login).await;
    let b = register(&e.registry_auth, &base, &repo, "Private", "b", login).await;
    // Without credentials the registry refuses: permission denied, naming the registry.
    let anonymous = of_repository(&e.registry_auth, &repo);
    let err = anonymous.list_versions(None).await.unwrap_err();
    assert!(matches!(err, CoreError::PermissionDenied { .. }), "{err:?}");
    let storage = Docker::builder()
        .registry_url(&e.registry_auth)
        .image(&repo, None)
        .username(&e.user)
        .password(e.password.clone())
        .build()
        .unwrap();
    let listed = storage.list_versions(None).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|v| v.location.clone())
            .collect::<Vec<_>>(),
        [location(&b), location(&a)]
    );
    let err = anonymous.delete_version(&listed[1]).await.unwrap_err();
    assert!(matches!(err, CoreError::PermissionDenied { .. }), "{err:?}");
    storage.delete_version(&listed[1]).await.unwrap();
    assert_eq!(storage.list_versions(None).await.unwrap().len(), 1);
}

/// A `docker-registry` of its own with `storage.delete.enabled: false`, killed on drop.
struct NoDeleteRegistry {
    child: std::process::Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Drop for NoDeleteRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `docker-registry` (Debian's Distribution) without deletes; `Err` when the binary is
/// not installed.
fn no_delete_registry() -> Result<NoDeleteRegistry, Skip> {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.path().join("data").display()
    );
    std::fs::write(dir.path().join("config.yml"), conf).unwrap();
    let child = std::process::Command::new("docker-registry")
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Skip(format!("docker-registry cannot be started ({e}): install Debian's docker-registry (.ci/install.d/docker.sh)")))?;
    let registry = NoDeleteRegistry {
        child,
        host: format!("127.0.0.1:{port}"),
        _dir: dir,
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(registry);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("docker-registry did not listen on 127.0.0.1:{port} within 10 s");
}

/// A registry that does not allow deletes (Distribution's default): the error says so, how to
/// enable deletes, and that only the registry's garbage collection frees layers; nothing is
/// deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_without_deletes_says_how_to_enable_them() {
    let registry = match no_delete_registry() {
        Ok(r) => r,
        Err(reason) => {
            return skip(
                "a_registry_without_deletes_says_how_to_enable_them",
                &reason,
            )
        }
    };
    let repo = unique("prune/kept");
    let reg = Registry::new(&registry.host, None);
    let tag = stamp();
    push_manifest(&reg, &repo, 0, &[&tag]).await;
    let storage = of_repository(&registry.host, &repo);
    let listed = storage.list_versions(None).await.unwrap();
    assert_eq!(tags_of(&listed), [tag.as_str()]);
    let err = storage.delete_version(&listed[0]).await.unwrap_err();
    let text = err.to_string();
    for needle in [
        "does not allow deleting manifests",
        "REGISTRY_STORAGE_DELETE_ENABLED=true",
        "storage.delete.enabled: true",
        "garbage-collect",
        "405",
        &registry.host,
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert!(!err.is_temporary(), "{err:?}");
    assert_eq!(storage.list_versions(None).await.unwrap().len(), 1);
    // prune stops at the refusal, and says the same.
    let options = PruneOptions::new(RetentionPolicy {
        keep_last: Some(1),
        older_than: None,
    });
    push_manifest(&reg, &repo, 1, &[&stamp()]).await;
    let plan = prune::plan(&storage, &options).await.unwrap();
    assert_eq!(plan.deleting().count(), 1);
    let err = prune::execute(&storage, &plan, &options, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not allow deleting manifests"),
        "{err}"
    );
    assert_eq!(storage.list_versions(None).await.unwrap().len(), 2);
}

/// A local image (no registry) has no versions flowstore can list or delete: it declares so,
/// and listing, deleting and pruning say why and what to do.
#[tokio::test]
async fn a_local_image_cannot_be_pruned() {
    let storage = Docker::builder().image("local/etl", None).build().unwrap();
    let caps = storage.capabilities();
    assert!(!caps.list_versions && !caps.delete_versions, "{caps:?}");
    let err = storage.list_versions(None).await.unwrap_err();
    assert!(matches!(err, CoreError::Unsupported { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no registry") && err.to_string().contains("docker image rm"),
        "{err}"
    );
    let v = version("local/etl:2026-11-24t02-51-19-123456-00-00".into());
    let err = storage.delete_version(&v).await.unwrap_err();
    assert!(matches!(err, CoreError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("no registry"), "{err}");
    let options = PruneOptions::new(RetentionPolicy {
        keep_last: Some(1),
        older_than: None,
    });
    let err = prune::plan(&storage, &options).await.unwrap_err();
    assert!(matches!(err, CoreError::Unsupported { .. }), "{err:?}");
}
