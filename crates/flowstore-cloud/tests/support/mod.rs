//! The tests every cloud backend runs against its real server, expanded by `cloud_tests!` in
//! `tests/s3.rs`, `tests/azure.rs` and `tests/gcs.rs`.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use flowstore_cloud::{Azure, Gcs, RetryPolicy, S3};
use flowstore_core::envelope::{seal, seal_bytes, AppInfo};
use flowstore_core::testkit::recording::{Exchange, RecordingProxy};
use flowstore_core::testkit::{Harness, Skip};
use flowstore_core::{Error, FlowContent, FlowInput, Registry, Storage, StorageReference};

/// What the shared tests need of a cloud storage type besides `Storage`.
#[flowstore_core::async_trait]
pub trait Cloud: Storage + Clone + 'static {
    /// Writes bytes behind flowstore's back.
    async fn replace(&self, key: &str, bytes: Bytes) -> flowstore_core::Result<()>;
}

macro_rules! cloud {
    ($($t:ty),*) => {$(
        #[flowstore_core::async_trait]
        impl Cloud for $t {
            async fn replace(&self, key: &str, bytes: Bytes) -> flowstore_core::Result<()> {
                self.replace_object_for_tests(key, bytes).await
            }
        }
    )*};
}
cloud!(S3, Azure, Gcs);

/// Makes a storage from one argument.
pub type Make<S> = Box<dyn Fn(&str) -> S + Send + Sync>;
/// Makes a storage under a prefix (first argument) whose requests go to another server address
/// (second argument, `http://host:port`).
pub type MakeVia<S> = Box<dyn for<'a> Fn(&'a str, &'a str) -> S + Send + Sync>;
/// Makes a script-mode storage under a prefix for a local script.
pub type MakeScript<S> = Box<dyn for<'a> Fn(&'a str, &'a Path) -> S + Send + Sync>;
/// Makes a script-mode storage naming an uploaded script, or fails as configured.
pub type MakeScriptKey<S> =
    Box<dyn for<'a> Fn(Option<&'a str>) -> flowstore_core::Result<S> + Send + Sync>;

/// How one backend makes storages in its test bucket.
pub struct Case<S> {
    /// A storage in the test bucket, default keys under `prefix`.
    pub storage: Make<S>,
    /// Script mode uploading `path`, default keys under `prefix`.
    pub script: MakeScript<S>,
    /// Serialized mode with a fixed key.
    pub fixed_key: Make<S>,
    /// Script mode naming an already-uploaded script by key (`None`: no key, no local path).
    pub script_key: MakeScriptKey<S>,
    /// A storage in a bucket that does not exist.
    pub wrong_bucket: Box<dyn Fn() -> S + Send + Sync>,
    /// A storage whose server is down (a closed port), with small retry bounds.
    pub server_down: Box<dyn Fn() -> S + Send + Sync>,
    /// The real server's address (`http://host:port`), for a recording proxy in front of it.
    pub upstream: String,
    /// A storage under a prefix that talks to the server through the given address (a proxy).
    pub via: MakeVia<S>,
    /// The credential value that must never leak.
    pub credential: Option<String>,
    /// The secret sources an agent has (the credentials' secrets).
    pub secrets: std::sync::Arc<dyn flowstore_core::SecretSource>,
}

impl<S> Case<S> {
    /// A registry with the cloud backends and this case's secret sources, as an agent has.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::new().with_secrets(self.secrets.clone());
        flowstore_cloud::register(&mut r);
        r
    }
}

/// The S3 case against the server at `endpoint` (plain HTTP allowed), bucket `bucket`, the
/// credentials in `secrets`; `credential` is the secret value no output may show.
pub fn s3_case(
    endpoint: &str,
    bucket: &str,
    secrets: std::sync::Arc<dyn flowstore_core::SecretSource>,
    credential: &str,
) -> Case<S3> {
    let base = {
        let (endpoint, bucket, secrets) =
            (endpoint.to_string(), bucket.to_string(), secrets.clone());
        move || {
            S3::builder(&bucket)
                .endpoint(&endpoint)
                .allow_http(true)
                .secrets(secrets.clone())
                .retry(fast_retry())
        }
    };
    let (b1, b2, b3, b4, b5) = (
        base.clone(),
        base.clone(),
        base.clone(),
        base.clone(),
        base.clone(),
    );
    let wrong = {
        let base = base.clone();
        move || base().bucket("flowstore-no-such-bucket").build().unwrap()
    };
    let down = move || {
        base()
            .endpoint(format!("http://127.0.0.1:{}", closed_port()))
            .build()
            .unwrap()
    };
    Case {
        storage: Box::new(move |p| b1().prefix(p).build().unwrap()),
        script: Box::new(move |p, path| b2().prefix(p).script(path).build().unwrap()),
        fixed_key: Box::new(move |k| b3().key(k).build().unwrap()),
        script_key: Box::new(move |k| {
            let s = b4().stored_as_script(true);
            match k {
                Some(k) => s.key(k).build(),
                None => s.build(),
            }
        }),
        wrong_bucket: Box::new(wrong),
        server_down: Box::new(down),
        upstream: endpoint.to_string(),
        via: Box::new(move |p, e| b5().prefix(p).endpoint(e).build().unwrap()),
        credential: Some(credential.to_string()),
        secrets,
    }
}

pub fn app() -> AppInfo {
    AppInfo::new("cloud-tests", "1")
}

pub fn registry() -> Registry {
    let mut r = Registry::new();
    flowstore_cloud::register(&mut r);
    r
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}/{}",
        flowstore_core::key::new_flow_key("run").replace('/', "-")
    )
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        retry_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
    }
}

pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct CloudHarness<S> {
    pub case: Case<S>,
    pub scripts: tempfile::TempDir,
}

#[flowstore_core::async_trait]
impl<S: Cloud> Harness for CloudHarness<S> {
    async fn storage(&self) -> Option<Box<dyn Storage>> {
        Some(Box::new((self.case.storage)(&unique("conformance"))))
    }

    async fn script_storage(&self, _flow: &str, source: &[u8]) -> Option<Box<dyn Storage>> {
        let path = self
            .scripts
            .path()
            .join(format!("{}.py", unique("s").replace('/', "-")));
        std::fs::write(&path, source).unwrap();
        Some(Box::new((self.case.script)(&unique("scripts"), &path)))
    }

    fn registry(&self) -> Registry {
        self.case.registry()
    }

    async fn tamper(&self, reference: &StorageReference, flow: &str, bytes: Bytes) -> bool {
        let storage = (self.case.storage)("tamper");
        storage
            .replace(&reference.flows[flow], bytes)
            .await
            .unwrap();
        true
    }

    fn large_flow_size(&self) -> usize {
        16 * 1024 * 1024
    }
}

pub fn harness<S>(case: Result<Case<S>, Skip>) -> Result<CloudHarness<S>, Skip> {
    Ok(CloudHarness {
        case: case?,
        scripts: tempfile::tempdir().unwrap(),
    })
}

pub async fn fixed_key_is_honoured_and_never_overwritten<S: Cloud>(case: &Case<S>) {
    let key = unique("fixed");
    let mut a = (case.fixed_key)(&key);
    let loc = a
        .add_flow(seal("F", &"first", &app()).unwrap().into())
        .await
        .unwrap();
    assert_eq!(loc, key);
    a.persist().await.unwrap();
    let mut b = (case.fixed_key)(&key);
    b.add_flow(seal("F", &"second", &app()).unwrap().into())
        .await
        .unwrap();
    let err = b.persist().await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains(&key), "{err}");
    assert_eq!(
        fetched_value(case, &a).await,
        "first",
        "the stored flow was overwritten"
    );
}

/// Flow "F" of `storage`, as an agent opening its reference fetches and decodes it.
async fn fetched_value<S: Cloud>(case: &Case<S>, storage: &S) -> String {
    fetched(case, &storage.reference().unwrap(), "F")
        .await
        .decode(&app())
        .unwrap()
}

/// A request-counting proxy in front of the case's server.
async fn counting_proxy<S>(case: &Case<S>) -> flowstore_core::testkit::counting::CountingProxy {
    let upstream: std::net::SocketAddr = case
        .upstream
        .trim_start_matches("http://")
        .parse()
        .expect("the server's address");
    flowstore_core::testkit::counting::CountingProxy::start(upstream).await
}

/// Flow `name`, as an agent opening `reference` fetches it.
async fn fetched<S>(
    case: &Case<S>,
    reference: &StorageReference,
    name: &str,
) -> flowstore_core::FetchedFlow {
    case.registry()
        .open(reference)
        .unwrap()
        .get_flow(name)
        .await
        .unwrap()
}

/// A fixed key already taken refuses a large (streamed, multipart) upload of a flow sealed from
/// a file with `AlreadyExists` naming the key, records no digest, and leaves the stored object
/// as it was.
///
/// What refuses it is the request that makes the object appear (see `Blobs` in
/// `src/blobs.rs`): on GCS the `ifGenerationMatch=0` sent with the streamed upload itself
/// (fake-gcs-server honours it on `uploadType=multipart`); on S3 (moto, s3s-fs) the
/// `If-None-Match: *` on CompleteMultipartUpload, on Azure (Azurite) on Put Block List, which
/// flowstore sends itself because `object_store` 0.14 cannot. No HEAD is made first.
pub async fn large_upload_to_a_taken_fixed_key_is_refused<S: Cloud>(case: &Case<S>) {
    let key = unique("taken");
    let mut first = (case.fixed_key)(&key);
    first
        .add_flow(seal("F", &"first", &app()).unwrap().into())
        .await
        .unwrap();
    first.persist().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (sealed, _) = large_flow(dir.path(), "large");
    let mut second = (case.fixed_key)(&key);
    second.add_flow(sealed.into()).await.unwrap();
    let err = second.persist().await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains(&key), "{err}");
    assert!(
        second.reference().unwrap().flow_digests.is_empty(),
        "a refused upload recorded a digest"
    );
    // Fetched against the first registration's digest: byte for byte what it stored.
    assert_eq!(fetched_value(case, &first).await, "first");
}

/// Two registrations of large flows (sealed from files, uploaded in parts or streamed) racing
/// for one fixed key store exactly one of them, whole, and refuse the other with
/// `AlreadyExists`.
///
/// The request that makes the object appear is create-only on every service: S3's
/// CompleteMultipartUpload and Azure's Put Block List carry `If-None-Match: *` (sent by
/// flowstore: `src/completion`), GCS's streamed upload `ifGenerationMatch=0`. A HEAD before the
/// upload (what S3 and Azure had before) cannot do this: both uploads start, and pass their
/// HEAD, before either completes, so both would succeed and one flow would replace the other.
pub async fn racing_large_uploads_to_one_fixed_key_store_one<S: Cloud>(case: &Case<S>) {
    let key = unique("race");
    let dir = tempfile::tempdir().unwrap();
    let mut racers = Vec::new();
    for name in ["left", "right"] {
        let (sealed, payload) = large_flow(dir.path(), name);
        let mut storage = (case.fixed_key)(&key);
        storage.add_flow(sealed.into()).await.unwrap();
        racers.push((storage, payload));
    }
    let (mut left, left_payload) = racers.remove(0);
    let (mut right, right_payload) = racers.remove(0);
    let (l, r) = tokio::join!(left.persist(), right.persist());
    let (winner, payload, loser_err) = match (l, r) {
        (Ok(_), Err(e)) => (left, left_payload, e),
        (Err(e), Ok(_)) => (right, right_payload, e),
        (Ok(_), Ok(_)) => panic!("both registrations of {key} succeeded: one replaced the other"),
        (Err(a), Err(b)) => panic!("both registrations of {key} failed: {a}; {b}"),
    };
    assert!(
        matches!(loser_err, Error::AlreadyExists { .. }),
        "{loser_err:?}"
    );
    assert!(loser_err.to_string().contains(&key), "{loser_err}");
    let fetched = fetched(case, &winner.reference().unwrap(), "F").await;
    assert!(
        fetched.bytes().as_ref() == payload.as_slice(),
        "the stored flow is not the winner's, byte for byte ({} bytes, starts {:?})",
        fetched.bytes().len(),
        String::from_utf8_lossy(&fetched.bytes()[..8.min(fetched.bytes().len())])
    );
}

/// A large flow's upload is create-only in the request that makes the object appear, and
/// makes no HEAD first. Recorded through a proxy: S3's CompleteMultipartUpload
/// (`POST …?uploadId=`) and Azure's Put Block List (`PUT …?comp=blocklist`) carry
/// `If-None-Match: *`; GCS's one streamed upload carries `ifGenerationMatch=0`.
pub async fn large_upload_is_create_only_where_it_completes<S: Cloud>(case: &Case<S>) {
    let dir = tempfile::tempdir().unwrap();
    let (sealed, _) = large_flow(dir.path(), "large");
    let proxy = RecordingProxy::start_url(&case.upstream).await;
    let mut storage = (case.via)(&unique("condition"), &proxy.url());
    storage.add_flow(sealed.into()).await.unwrap();
    storage.persist().await.unwrap();
    let seen = proxy.take();
    assert!(
        !seen.iter().any(|r| r.method == "HEAD"),
        "no HEAD guards the upload: {seen:#?}"
    );
    let completing: Vec<&Exchange> = seen
        .iter()
        .filter(|r| {
            (r.method == "POST" && r.target.contains("uploadId="))
                || r.target.contains("comp=blocklist")
                || r.target.contains("uploadType=")
        })
        .collect();
    assert_eq!(completing.len(), 1, "one completing request: {seen:#?}");
    let c = completing[0];
    assert!(
        c.if_none_match.as_deref() == Some("*") || c.target.contains("ifGenerationMatch=0"),
        "the completing request is create-only: {c:#?}"
    );
    assert!((200..300).contains(&c.status), "{c:#?}");
}

/// An object that appears at a large upload's key while the upload is under way is not
/// replaced. Deterministic: a proxy holds the upload's completing request (S3's
/// `POST …?uploadId=`, Azure's `PUT …?comp=blocklist`, GCS's one streamed `uploadType=`
/// request) until another object is written at that key, then lets it go. The service refuses
/// the completion, and, the key being a default one, the registration takes a fresh key and
/// uploads again, as it does when two writers take one default key. A HEAD before the upload
/// (what S3 and Azure had before) would pass, and the completion would replace the other
/// object.
pub async fn key_taken_during_a_large_upload_is_not_replaced<S: Cloud>(case: &Case<S>) {
    let dir = tempfile::tempdir().unwrap();
    let (sealed, payload) = large_flow(dir.path(), "late");
    let proxy = counting_proxy(case).await;
    let mut late = (case.via)(&unique("taken-during"), &proxy.url());
    let key = late.add_flow(sealed.into()).await.unwrap();
    proxy.hold(&["?uploadId=", "comp=blocklist", "uploadType="]);
    let upload = tokio::spawn(async move {
        let result = late.persist().await;
        (late, result)
    });
    tokio::time::timeout(Duration::from_secs(120), proxy.held())
        .await
        .expect("the upload's completing request never reached the proxy");
    let writer = (case.fixed_key)(&key);
    let meanwhile = seal("F", &"meanwhile", &app()).unwrap().to_bytes().unwrap();
    writer.replace(&key, meanwhile).await.unwrap();
    proxy.release();
    let (late, result) = upload.await.unwrap();
    result.unwrap();
    let stored: String = stored_at(case, &writer, &key)
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    assert_eq!(
        stored, "meanwhile",
        "the object written meanwhile was replaced"
    );
    let reference = late.reference().unwrap();
    assert_ne!(
        reference.flows["F"], key,
        "the late flow kept the taken key"
    );
    let fetched = fetched(case, &reference, "F").await;
    assert!(
        fetched.bytes().as_ref() == payload.as_slice(),
        "the late flow, under its fresh key, is not what was registered"
    );
}

/// Flow "F" as stored at `key` of `storage`'s bucket, fetched by an agent whose reference names
/// that key (and records no digest).
async fn stored_at<S: Cloud>(
    case: &Case<S>,
    storage: &S,
    key: &str,
) -> flowstore_core::Result<flowstore_core::FetchedFlow> {
    let mut reference = storage.reference().unwrap();
    reference.flows.insert("F".into(), key.to_string());
    case.registry().open(&reference)?.get_flow("F").await
}

/// A flow "F" over [`flowstore_cloud::MULTIPART_THRESHOLD`] (twice it, and 5 bytes: parts of
/// several sizes), sealed from `dir/<name>.bin` (so streamed, never held whole), and its payload,
/// which starts with `name`.
fn large_flow(dir: &Path, name: &str) -> (flowstore_core::envelope::SealedFlow, Vec<u8>) {
    let size = flowstore_cloud::MULTIPART_THRESHOLD as usize * 2 + 5;
    let mut payload: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    payload[..name.len()].copy_from_slice(name.as_bytes());
    let path = dir.join(format!("{name}.bin"));
    std::fs::write(&path, &payload).unwrap();
    let sealed = flowstore_core::envelope::seal_file("F", &path, &app()).unwrap();
    assert!(sealed.as_bytes().is_none(), "sealed in its file: streamed");
    (sealed, payload)
}

pub async fn script_mode_with_a_key_only<S: Cloud>(case: &Case<S>) {
    let err = (case.script_key)(None)
        .and_then(|mut s| futures_block(s.add_flow(FlowInput::script("S"))))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("A `")
            && err.contains("must be provided to show where flow `.py` file is stored"),
        "{err}"
    );
    // A script uploaded before (here: by a script-mode storage with a fixed key) is fetched by key.
    let key = unique("uploaded-script");
    let s = (case.fixed_key)(&key);
    s.replace(&key, Bytes::from_static(b"print('already there')"))
        .await
        .unwrap();
    let mut s = (case.script_key)(Some(&key)).unwrap();
    s.add_flow(FlowInput::script("S")).await.unwrap();
    s.persist().await.unwrap();
    let f = fetched(case, &s.reference().unwrap(), "S").await;
    assert_eq!(f.bytes().as_ref(), b"print('already there')");
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

pub async fn wrong_bucket_is_named<S: Cloud>(case: &Case<S>) {
    let mut s = (case.wrong_bucket)();
    s.add_flow(seal("F", &1, &app()).unwrap().into())
        .await
        .unwrap();
    let err = s.persist().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "bucket" | "container",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    assert!(
        err.to_string().contains("flowstore-no-such-bucket"),
        "{err}"
    );
}

/// A reference whose flow points at an object that is not there: `NotFound` (object), naming
/// the flow and the location, keeping the lower error.
pub async fn missing_object_is_not_found<S: Cloud>(case: &Case<S>) {
    let mut s = (case.storage)(&unique("missing-object"));
    s.add_flow(seal("Present", &1, &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let mut reference = s.reference().unwrap();
    let gone = format!("{}/never-uploaded", unique("missing-object"));
    reference.flows.insert("Gone".into(), gone.clone());
    let agent = case.registry().open(&reference).unwrap();
    for err in [
        agent.get_flow("Gone").await.unwrap_err(),
        agent
            .get_flow_to_file(
                "Gone",
                &std::env::temp_dir().join(unique("x").replace('/', "-")),
            )
            .await
            .unwrap_err(),
    ] {
        assert!(err.is_not_found() && !err.is_temporary(), "{err:?}");
        assert!(
            matches!(&err, Error::NotFound { what: "object", location, .. } if location.ends_with(&gone)),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"Gone\""), "{err}");
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    }
}

/// A reference to a bucket that does not exist: fetching is `NotFound` (bucket/container),
/// naming the bucket, keeping the lower error.
pub async fn missing_bucket_is_not_found<S: Cloud>(case: &Case<S>) {
    let s = (case.wrong_bucket)();
    let mut reference = s.reference().unwrap();
    reference
        .flows
        .insert("F".into(), "some/flow/2026-01-01t00-00-00".into());
    let err = case
        .registry()
        .open(&reference)
        .unwrap()
        .get_flow("F")
        .await
        .unwrap_err();
    assert!(err.is_not_found() && !err.is_temporary(), "{err:?}");
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "bucket" | "container",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("flowstore-no-such-bucket"),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    let err = s.list_versions(None).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "bucket" | "container",
                ..
            }
        ),
        "{err:?}"
    );
}

pub async fn server_down_fails_after_bounded_retries<S: Cloud>(case: &Case<S>) {
    let mut s = (case.server_down)();
    s.add_flow(seal("F", &1, &app()).unwrap().into())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = s.persist().await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(
        err.is_temporary(),
        "a server that is down may come back: {err:?}"
    );
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    assert!(
        s.reference().unwrap().flow_digests.is_empty(),
        "a failed upload recorded a digest"
    );
    // Bounded: the policy allows 2 retries within 5 s (no timed assertion on speed, only that it ended).
    eprintln!("server-down error after {:?}: {err}", started.elapsed());
}

pub async fn hundred_mib_script_streams<S: Cloud>(case: &Case<S>) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("big.py");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&script).unwrap());
        let block: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for i in 0..100u8 {
            let mut b = block.clone();
            b[7] = i;
            f.write_all(&b).unwrap();
        }
    }
    let mut s = (case.script)(&unique("big"), &script);
    s.add_flow(FlowInput::script("Big")).await.unwrap();
    s.persist().await.unwrap();
    let out = dir.path().join("fetched.py");
    let agent = case.registry().open(&s.reference().unwrap()).unwrap();
    let f = agent.get_flow_to_file("Big", &out).await.unwrap();
    assert_eq!(f.size(), 100 << 20);
    assert!(matches!(f.content, FlowContent::File { header: None, .. }));
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&script).unwrap());
}

pub async fn listing_is_newest_first<S: Cloud>(case: &Case<S>) {
    let prefix = unique("listing");
    for v in 0..3 {
        let mut s = (case.storage)(&prefix);
        s.add_flow(seal_bytes("Listed Flow", format!("v{v}").as_bytes(), &app()).into())
            .await
            .unwrap();
        s.persist().await.unwrap();
    }
    let s = (case.storage)(&prefix);
    let versions = s.list_versions(Some("Listed Flow")).await.unwrap();
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert!(versions.windows(2).all(|w| w[0].location > w[1].location));
    assert!(versions
        .iter()
        .all(|v| v.flow.as_deref() == Some("Listed Flow")));
}

/// A fetch is one request, a GET (GCS's media download carries the object's metadata in its
/// headers, so no separate metadata request is made), counted by a proxy.
pub async fn a_fetch_is_one_get<S: Cloud>(case: &Case<S>) {
    let proxy = counting_proxy(case).await;
    let mut storage = (case.via)(&unique("one-get"), &proxy.url());
    storage
        .add_flow(seal("F", &"one request", &app()).unwrap().into())
        .await
        .unwrap();
    storage.persist().await.unwrap();
    let _ = proxy.take();
    let value: String = storage.get_flow("F").await.unwrap().decode(&app()).unwrap();
    assert_eq!(value, "one request");
    let counts = proxy.take();
    assert_eq!(
        (counts.requests("GET"), counts.total()),
        (1, 1),
        "{}",
        counts.summary()
    );
}

/// Storages an agent opens from the same reference share one client and its connection
/// pool: ten references opened and fetched through a request-counting proxy make ten GETs on
/// one kept-alive connection (a client per storage would open ten).
pub async fn reopened_references_share_one_connection<S: Cloud>(case: &Case<S>) {
    let proxy = counting_proxy(case).await;
    let mut storage = (case.via)(&unique("shared"), &proxy.url());
    storage
        .add_flow(seal("Shared", &"flow", &app()).unwrap().into())
        .await
        .unwrap();
    storage.persist().await.unwrap();
    let json = storage.reference().unwrap().to_json();
    let registry = case.registry();
    // The first agent storage builds the shared client; count from the second on.
    let _ = proxy.take();
    registry
        .open_json(&json)
        .unwrap()
        .get_flow("Shared")
        .await
        .unwrap();
    let per_fetch = proxy.take().requests("GET");
    for _ in 0..10 {
        let agent = registry.open_json(&json).unwrap();
        agent.get_flow("Shared").await.unwrap();
    }
    let counts = proxy.take();
    assert_eq!(counts.requests("GET"), 10 * per_fetch, "{counts:?}");
    // A server that closes every connection after one answer (moto's) cannot show sharing:
    // two requests from one plain client say whether this one keeps connections alive.
    let plain = reqwest::Client::new();
    for _ in 0..2 {
        let _ = plain.get(proxy.url()).send().await.unwrap().bytes().await;
    }
    if proxy.take().connections > 1 {
        return flowstore_core::testkit::not_applicable(
            "reopened_references_share_one_connection",
            "the server closes each connection after one answer",
        );
    }
    // A server may close an idle kept-alive connection once; a client per storage opens ten.
    assert!(
        counts.connections <= 1,
        "reopened storages opened new connections instead of sharing the pool: {counts:?}"
    );
}

pub async fn credentials_never_leak<S: Cloud>(case: &Case<S>) {
    let Some(secret) = &case.credential else {
        return;
    };
    let mut s = (case.storage)(&unique("hygiene"));
    let ((), logs) = flowstore_secrets::test_support::capture_logs(|| {
        futures_block(async {
            s.add_flow(seal("F", &1, &app()).unwrap().into())
                .await
                .unwrap();
            s.persist().await.unwrap();
            s.get_flow("F").await.unwrap();
        })
    });
    let reference = s.reference().unwrap().to_json();
    for (what, text) in [
        ("the reference", reference),
        ("Debug", format!("{s:?}")),
        ("logs", logs),
    ] {
        flowstore_secrets::test_support::assert_secret_absent(secret, &text, what);
    }
}

/// A small project: `flow.py` (the entry), a helper module, a shell script, and a data file
/// just over [`flowstore_cloud::MULTIPART_THRESHOLD`] (its blob goes up in parts).
fn write_project(root: &Path, helper: &str) {
    let large = flowstore_cloud::MULTIPART_THRESHOLD as u32 + 4096;
    let files: [(&str, Vec<u8>); 4] = [
        ("flow.py", b"from pkg.helpers import X\n".to_vec()),
        ("pkg/helpers.py", helper.as_bytes().to_vec()),
        ("bin/run.sh", b"#!/bin/sh\nexec python flow.py\n".to_vec()),
        (
            "data/large.bin",
            (0..large).map(|i| (i % 251) as u8).collect(),
        ),
    ];
    for (path, bytes) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
}

/// The blobs (packs and large files) the tree at `root` is stored in, with the manifest.
fn stored(root: &Path) -> flowstore_core::bundle::Manifest {
    flowstore_core::bundle::scan(root, "flow.py")
        .unwrap()
        .manifest
}

/// The blob holding `path`'s bytes in `manifest`, and where they start in it.
fn source_of(manifest: &flowstore_core::bundle::Manifest, path: &str) -> (String, u64, u64) {
    let f = manifest
        .files()
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} is not in {manifest:?}"));
    let (blob, offset) = f.source();
    (blob.to_string(), offset, f.size)
}

/// Re-registering a bundle after a one-file change sends exactly two uploads through the wire
/// (the pack holding the changed file, then the manifest), finds the blobs already stored with
/// one listing (no request per blob), and `list_versions` shows the two manifests and never a
/// blob. A cold fetch downloads every pack and the large file whole, once each.
pub async fn bundle_reregistration_uploads_one_blob_and_the_manifest<S: Cloud>(case: &Case<S>) {
    let prefix = unique("rereg");
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    write_project(root, "X = 1\n");
    let v1_manifest = stored(root);
    let blobs = v1_manifest.blobs().len() as u64;
    // The small files travel in packs, the large one alone: fewer blobs than files.
    for f in v1_manifest.files() {
        let small = f.size < flowstore_core::bundle::PACK_FILE_LIMIT;
        assert_eq!(f.pack.is_some(), small, "{f:?}");
    }
    assert!(blobs < v1_manifest.files().len() as u64, "{v1_manifest:?}");
    let mut v1 = (case.storage)(&prefix);
    assert!(v1.capabilities().bundles, "{:?}", v1.capabilities());
    v1.add_flow(FlowInput::bundle("Bundled", root, "flow.py"))
        .await
        .unwrap();
    v1.persist().await.unwrap();
    let first = v1.transfer_report("Bundled").unwrap();
    assert_eq!(
        (first.objects, first.reused_objects),
        (blobs + 1, 0),
        "every pack and blob, and the manifest: {first:?}"
    );

    std::fs::write(root.join("pkg/helpers.py"), "X = 2\n").unwrap();
    let v2_manifest = stored(root);
    let (changed_pack, _, _) = source_of(&v2_manifest, "pkg/helpers.py");
    assert_ne!(
        changed_pack,
        source_of(&v1_manifest, "pkg/helpers.py").0,
        "the edit changes its pack"
    );
    assert_ne!(
        changed_pack,
        flowstore_core::envelope::sha256_digest(b"X = 2\n"),
        "the file travels in a pack"
    );
    let changed_hex = changed_pack.strip_prefix("sha256:").unwrap();
    let proxy = RecordingProxy::start_url(&case.upstream).await;
    let mut v2 = (case.via)(&prefix, &proxy.url());
    let key = v2
        .add_flow(FlowInput::bundle("Bundled", root, "flow.py"))
        .await
        .unwrap();
    let staged = proxy.take();
    assert!(staged.is_empty(), "add_flow only stages: {staged:#?}");
    v2.persist().await.unwrap();
    let seen = proxy.take();
    let writes: Vec<&Exchange> = seen.iter().filter(|r| r.is_write()).collect();
    assert_eq!(
        writes.len(),
        2,
        "one pack and one manifest upload: {seen:#?}"
    );
    assert!(
        writes[0].names_blob() && writes[0].mentions(changed_hex),
        "the changed file's pack goes first: {seen:#?}"
    );
    assert!(
        !writes[1].names_blob() && writes[1].mentions(&key),
        "then the manifest at {key}: {seen:#?}"
    );
    assert!(
        !seen.iter().any(|r| r.method == "HEAD"),
        "no HEAD per blob: {seen:#?}"
    );
    let listings = seen
        .iter()
        .filter(|r| r.method == "GET" && r.names_blob())
        .count();
    assert_eq!(listings, 1, "one listing of the blob prefix: {seen:#?}");
    let report = v2.transfer_report("Bundled").unwrap();
    assert_eq!(
        (report.objects, report.reused_objects),
        (2, blobs - 1),
        "the changed pack and the manifest up, the other blobs reused: {report:?}"
    );

    for versions in [
        v2.list_versions(None).await.unwrap(),
        v2.list_versions(Some("Bundled")).await.unwrap(),
    ] {
        assert_eq!(versions.len(), 2, "the two manifests only: {versions:#?}");
        assert!(
            versions
                .iter()
                .all(|v| v.slug == "bundled" && !v.location.contains(".blobs")),
            "{versions:#?}"
        );
        assert_eq!(versions[0].location, key, "newest first: {versions:#?}");
    }

    let agent = case.registry().open(&v2.reference().unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let fetched = agent
        .get_bundle(
            "Bundled",
            &work.path().join("tree"),
            &flowstore_core::bundle::FetchOptions::with_cache_dir(work.path().join("cache")),
        )
        .await
        .unwrap();
    assert_eq!(fetched.manifest, v2_manifest);
    assert_eq!(
        std::fs::read(fetched.root.join("pkg/helpers.py")).unwrap(),
        b"X = 2\n"
    );
    assert!(
        std::fs::read(fetched.root.join("data/large.bin")).unwrap()
            == std::fs::read(root.join("data/large.bin")).unwrap(),
        "the large blob came back whole"
    );
    // Cold: every file is needed, so each pack and the large file come whole, once each.
    let t = fetched.transfer;
    let total: u64 = v2_manifest.blobs().iter().map(|(_, size)| size).sum();
    assert_eq!(
        (t.objects, t.bytes, t.reused_objects),
        (blobs, total, 0),
        "{t:?}"
    );
}

/// Small files that share a pack with `pkg/helpers.py` (their bytes dwarf it, so a fetch needing
/// only that file reads its range instead of the whole pack), and the entry `flow.py`.
fn write_packed_project(root: &Path, helper: &str) {
    let filler = |n: usize| -> Vec<u8> {
        (0..4096)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[(i * 7 + n) % 27])
            .collect()
    };
    let files: Vec<(String, Vec<u8>)> = [
        (
            "flow.py".to_string(),
            b"from pkg.helpers import X\n".to_vec(),
        ),
        ("pkg/helpers.py".to_string(), helper.as_bytes().to_vec()),
    ]
    .into_iter()
    .chain((0..6).map(|n| (format!("pkg/data_{n}.txt"), filler(n))))
    .collect();
    for (path, bytes) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
}

/// A warm fetch after a one-file change (the cache holds the first version) makes ONE request
/// for blob bytes: a ranged read of exactly the changed file's bytes out of its pack, answered
/// with 206 and just those bytes; the other files come from the cache.
pub async fn bundle_warm_fetch_reads_one_range<S: Cloud>(case: &Case<S>) {
    let prefix = unique("warm");
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    write_packed_project(root, "X = 1\n");
    let mut v1 = (case.storage)(&prefix);
    v1.add_flow(FlowInput::bundle("Warm", root, "flow.py"))
        .await
        .unwrap();
    v1.persist().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let options = flowstore_core::bundle::FetchOptions::with_cache_dir(work.path().join("cache"));
    let cold = case
        .registry()
        .open(&v1.reference().unwrap())
        .unwrap()
        .get_bundle("Warm", &work.path().join("v1"), &options)
        .await
        .unwrap();
    assert_eq!(cold.transfer.reused_objects, 0, "{:?}", cold.transfer);

    let changed: &[u8] = b"X = 22\n";
    std::fs::write(root.join("pkg/helpers.py"), changed).unwrap();
    let manifest = stored(root);
    let (pack, offset, len) = source_of(&manifest, "pkg/helpers.py");
    let pack_size = manifest
        .blobs()
        .into_iter()
        .find(|(b, _)| *b == pack)
        .unwrap()
        .1;
    assert_eq!(len, changed.len() as u64);
    assert!(
        2 * len < pack_size,
        "the file must be a small part of its pack for a ranged read: {len} of {pack_size} B"
    );
    let proxy = RecordingProxy::start_url(&case.upstream).await;
    let mut v2 = (case.via)(&prefix, &proxy.url());
    v2.add_flow(FlowInput::bundle("Warm", root, "flow.py"))
        .await
        .unwrap();
    v2.persist().await.unwrap();
    proxy.take();

    let warm = v2
        .get_bundle("Warm", &work.path().join("v2"), &options)
        .await
        .unwrap();
    let seen = proxy.take();
    assert_eq!(
        std::fs::read(warm.root.join("pkg/helpers.py")).unwrap(),
        changed
    );
    let distinct: std::collections::BTreeSet<&str> =
        manifest.files().iter().map(|f| f.digest.as_str()).collect();
    let t = warm.transfer;
    assert_eq!(
        (t.objects, t.bytes, t.reused_objects),
        (1, len, distinct.len() as u64 - 1),
        "{t:?}"
    );
    let blob_reads: Vec<&Exchange> = seen.iter().filter(|r| r.names_blob()).collect();
    assert_eq!(blob_reads.len(), 1, "one request for blob bytes: {seen:#?}");
    let read = blob_reads[0];
    let hex = pack.strip_prefix("sha256:").unwrap();
    assert!(
        read.method == "GET" && read.mentions(hex),
        "a GET of the changed pack: {read:#?}"
    );
    assert_eq!(
        read.range.as_deref(),
        Some(format!("bytes={offset}-{}", offset + len - 1).as_str()),
        "exactly the changed file's bytes: {read:#?}"
    );
    assert_eq!(
        (read.status, read.body_len as u64),
        (206, len),
        "the server answered with just that range: {read:#?}"
    );

    // A range past the blob's end (a blob cut short behind flowstore's back) is refused,
    // naming the blob, whether the server answers 416 or a shorter range.
    let store = v2.blob_store().unwrap();
    for (offset, len) in [(pack_size - 2, 4), (pack_size, 1), (pack_size + 100, 8)] {
        let err = store.get_blob_range(&pack, offset, len).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&store.blob_location(&pack)) && text.contains("shorter"),
            "{offset}+{len}: {err:?}"
        );
    }
}

/// With a fixed key or in script mode a storage declares no bundles, has no blob store, and
/// refuses a bundle at `add_flow` naming the flow, staging nothing.
pub async fn bundles_need_default_keys_and_serialized_mode<S: Cloud>(case: &Case<S>) {
    let project = tempfile::tempdir().unwrap();
    write_project(project.path(), "X = 1\n");
    let script = project.path().join("flow.py");
    for mut s in [
        (case.fixed_key)(&unique("fixed-bundle")),
        (case.script)(&unique("script-bundle"), &script),
    ] {
        assert!(!s.capabilities().bundles, "{:?}", s.capabilities());
        assert!(s.blob_store().is_none());
        let err = s
            .add_flow(FlowInput::bundle("Refused", project.path(), "flow.py"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("\"Refused\""), "{err}");
        s.persist().await.unwrap();
        assert!(s.reference().unwrap().flows.is_empty());
    }
}

/// Expands every shared cloud test for a backend whose `case()` gives its [`Case`].
#[macro_export]
macro_rules! cloud_tests {
    ($($test:ident),* $(,)?) => {
        async fn harness(
        ) -> flowstore_core::testkit::HarnessResult<impl flowstore_core::testkit::Harness> {
            support::harness(case())
        }
        flowstore_core::conformance_suite!(harness);
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                match case() {
                    Ok(c) => support::$test(&c).await,
                    Err(reason) => flowstore_core::testkit::skip(stringify!($test), &reason),
                }
            }
        )*
    };
}
