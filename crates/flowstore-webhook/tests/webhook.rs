//! Webhook storage against a real web server: nginx with WebDAV PUT/GET on 127.0.0.1, started by
//! `cargo xtask test` (`FLOWSTORE_TEST_WEBHOOK_URL`, and `FLOWSTORE_TEST_WEBHOOK_AUTH_URL` which
//! demands `Authorization: Bearer $FLOWSTORE_TEST_WEBHOOK_TOKEN`).
//!
//! Some tests put something in front: the core testkit's TCP proxy (connection resets in front
//! of nginx); a recording TCP proxy in this file that forwards untouched and keeps the bytes, to
//! show which HTTP requests a warm bundle fetch makes; and a minimal HTTP responder in this file
//! that answers 500 a given number of times before storing, and ignores `Range` — it injects
//! server errors and range-less answers, it does not stand in for the storage under test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flowstore_core::envelope::{seal, seal_bytes, AppInfo};
use flowstore_core::prune::{PruneOptions, RetentionPolicy};
use flowstore_core::secret::SecretString;
use flowstore_core::testkit::proxy::{Fault, FaultProxy};
use flowstore_core::testkit::recording::RecordingProxy;
use flowstore_core::testkit::{skip, Harness, HarnessResult, Skip};
use flowstore_core::{
    Error, FlowContent, FlowInput, OpenContext, Registry, Storage, StorageReference, StoredVersion,
};
use flowstore_secrets::test_support::assert_secret_absent;
use flowstore_secrets::MapSource;
use flowstore_webhook::{HttpMethod, Retry, Webhook, WebhookBuilder};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Env {
    url: String,
    auth_url: String,
    token: String,
}

fn env() -> Result<Env, Skip> {
    let get = |k: &str| {
        std::env::var(k).map_err(|_| {
            Skip(format!(
                "{k} is not set: nginx is not running (start it with `cargo xtask test`)"
            ))
        })
    };
    Ok(Env {
        url: get("FLOWSTORE_TEST_WEBHOOK_URL")?,
        auth_url: get("FLOWSTORE_TEST_WEBHOOK_AUTH_URL")?,
        token: get("FLOWSTORE_TEST_WEBHOOK_TOKEN")?,
    })
}

/// The server that allows only PUT and GET: DELETE answers 405, directories are not listed.
fn plain_url() -> Result<String, Skip> {
    std::env::var("FLOWSTORE_TEST_WEBHOOK_PLAIN_URL").map_err(|_| {
        Skip(
            "FLOWSTORE_TEST_WEBHOOK_PLAIN_URL is not set: nginx is not running (start it with \
             `cargo xtask test`)"
                .to_string(),
        )
    })
}

macro_rules! need_server {
    ($name:literal) => {
        match env() {
            Ok(e) => e,
            Err(reason) => return skip($name, &reason),
        }
    };
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        flowstore_core::key::new_flow_key("t").replace('/', "-")
    )
}

fn app() -> AppInfo {
    AppInfo::new("webhook-tests", "1")
}

fn registry() -> Registry {
    let mut r = Registry::new();
    flowstore_webhook::register(&mut r);
    r
}

fn fast_retry() -> Retry {
    Retry {
        max_retries: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        timeout: Duration::from_secs(30),
    }
}

/// The secret the auth-server harness's storages name for the bearer token.
const HARNESS_TOKEN_SECRET: &str = "WEBHOOK_HARNESS_TOKEN";

/// Storages in URL mode (so they hold bundles) on the open server, or, with `auth`, on the
/// server that demands the bearer token: recorded as `Bearer ${WEBHOOK_HARNESS_TOKEN}`, resolved
/// from a secret source by the storage and by the harness's registry.
struct WebhookHarness {
    env: Env,
    scripts: tempfile::TempDir,
    auth: bool,
}

impl WebhookHarness {
    fn secrets(&self) -> Arc<MapSource> {
        Arc::new(MapSource::new().with(HARNESS_TOKEN_SECRET, &self.env.token))
    }

    fn open(&self, prefix: &str, ctx: OpenContext) -> Webhook {
        if self.auth {
            let ctx = OpenContext {
                secrets: self.secrets(),
                options: vec![("bearer_token_secret".into(), HARNESS_TOKEN_SECRET.into())],
                ..ctx
            };
            Webhook::from_url(&format!("{}/{}", self.env.auth_url, unique(prefix)), &ctx).unwrap()
        } else {
            Webhook::from_url(&format!("{}/{}", self.env.url, unique(prefix)), &ctx).unwrap()
        }
    }
}

#[flowstore_core::async_trait]
impl Harness for WebhookHarness {
    async fn storage(&self) -> Option<Box<dyn Storage>> {
        Some(Box::new(self.open("conformance", OpenContext::default())))
    }

    async fn script_storage(&self, _flow: &str, source: &[u8]) -> Option<Box<dyn Storage>> {
        let path = self.scripts.path().join(format!("{}.py", unique("script")));
        std::fs::write(&path, source).unwrap();
        let ctx = OpenContext {
            script_path: Some(path.display().to_string()),
            ..OpenContext::default()
        };
        Some(Box::new(self.open("scripts", ctx)))
    }

    fn registry(&self) -> Registry {
        if self.auth {
            let mut r = Registry::new().with_secrets(self.secrets());
            flowstore_webhook::register(&mut r);
            r
        } else {
            registry()
        }
    }

    async fn tamper(&self, reference: &StorageReference, flow: &str, bytes: Bytes) -> bool {
        let url = &reference.flows[flow];
        let resp = reqwest::Client::new()
            .put(url)
            .bearer_auth(&self.env.token)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "tamper PUT {url}: {}",
            resp.status()
        );
        true
    }
}

async fn harness() -> HarnessResult<WebhookHarness> {
    Ok(WebhookHarness {
        env: env()?,
        scripts: tempfile::tempdir().unwrap(),
        auth: false,
    })
}

flowstore_core::conformance_suite!(harness);

/// The whole suite again (bundles included) against the server that demands the bearer token.
mod auth_server {
    use super::*;

    async fn harness() -> HarnessResult<WebhookHarness> {
        Ok(WebhookHarness {
            env: env()?,
            scripts: tempfile::tempdir().unwrap(),
            auth: true,
        })
    }

    flowstore_core::conformance_suite!(harness);
}

#[tokio::test]
async fn templated_url_and_header_from_env_and_secret() {
    let e = need_server!("templated_url_and_header_from_env_and_secret");
    // The URL's host comes from the environment, the token from a secret source.
    let path = unique("templated");
    let kwargs = json!({
        "url": format!("${{FLOWSTORE_TEST_WEBHOOK_AUTH_URL}}/{path}"),
        "headers": {"Authorization": "Bearer ${WEBHOOK_TEST_SECRET_TOKEN}"},
        "timeout": 10,
    });
    let secrets = Arc::new(MapSource::new().with("WEBHOOK_TEST_SECRET_TOKEN", &e.token));
    let mut s = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get)
        .secret_sources(secrets.clone())
        .build()
        .unwrap();
    s.add_flow(seal("Templated", &"body", &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    let json = reference.to_json();
    assert!(
        json.contains("${WEBHOOK_TEST_SECRET_TOKEN}")
            && json.contains("${FLOWSTORE_TEST_WEBHOOK_AUTH_URL}")
    );
    assert_secret_absent(&e.token, &json, "the reference");
    assert_secret_absent(&e.token, &format!("{s:?}"), "Debug of the storage");
    let agent = Registry::new().with_secrets(secrets);
    let mut agent = agent;
    flowstore_webhook::register(&mut agent);
    let v: String = agent
        .open(&reference)
        .unwrap()
        .get_flow("Templated")
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    assert_eq!(v, "body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_a_401_without_the_token_anywhere() {
    let e = need_server!("wrong_token_is_a_401_without_the_token_anywhere");
    let kwargs = json!({
        "url": format!("{}/{}", e.auth_url, unique("wrong-token")),
        "headers": {"Authorization": "Bearer ${WEBHOOK_WRONG_TOKEN}"},
    });
    let wrong = "not-the-token-c4n4ry";
    let secrets = Arc::new(MapSource::new().with("WEBHOOK_WRONG_TOKEN", wrong));
    let mut s = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get)
        .secret_sources(secrets)
        .build()
        .unwrap();
    s.add_flow(seal("F", &1, &app()).unwrap().into())
        .await
        .unwrap();
    let (result, logs) = {
        let rt = tokio::runtime::Handle::current();
        let fut = s.persist();
        let (r, logs) = flowstore_secrets::test_support::capture_logs(|| {
            tokio::task::block_in_place(|| rt.block_on(fut))
        });
        (r, logs)
    };
    let err = result.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
    let msg = err.to_string();
    assert!(msg.contains("401"), "{msg}");
    assert!(
        msg.contains("build request") && msg.contains("PUT"),
        "{msg}"
    );
    for (what, text) in [
        ("the error", msg),
        ("the error's Debug", format!("{err:?}")),
        ("logs", logs),
    ] {
        assert_secret_absent(wrong, &text, what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_object_is_a_404() {
    let e = need_server!("missing_object_is_a_404");
    let url = format!("{}/{}", e.url, unique("never-stored"));
    let reference = json!({
        "type": "Webhook", "flows": {"Ghost": url},
        "build_request_kwargs": {"url": url}, "build_request_http_method": "PUT",
        "get_flow_request_kwargs": {"url": url}, "get_flow_request_http_method": "GET",
    });
    let err = registry()
        .open_json(&reference.to_string())
        .unwrap()
        .get_flow("Ghost")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("404") && msg.contains("get_flow request") && msg.contains(&url),
        "{msg}"
    );
    assert!(err.is_not_found() && !err.is_temporary(), "{err:?}");
    assert!(
        matches!(&err, Error::NotFound { what: "object", location, .. } if location == &url),
        "{err:?}"
    );
    // The crate's error, with the server's answer, is kept as the source.
    let source = std::error::Error::source(&err).expect("a source is kept");
    match source.downcast_ref::<flowstore_webhook::Error>() {
        Some(flowstore_webhook::Error::Status { code: 404, .. }) => {}
        other => panic!("expected the 404 status as the source, got {other:?}"),
    }
    // The same through a streamed fetch.
    let dir = tempfile::tempdir().unwrap();
    let err = registry()
        .open_json(&reference.to_string())
        .unwrap()
        .get_flow_to_file("Ghost", &dir.path().join("out"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn post_to_a_webdav_server_fails_with_its_status() {
    let e = need_server!("post_to_a_webdav_server_fails_with_its_status");
    let kwargs = json!({"url": format!("{}/{}", e.url, unique("post"))});
    let mut s = Webhook::builder(kwargs.clone(), HttpMethod::Post, kwargs, HttpMethod::Get)
        .retry(fast_retry())
        .build()
        .unwrap();
    s.add_flow(seal("F", &1, &app()).unwrap().into())
        .await
        .unwrap();
    let err = s.persist().await.unwrap_err();
    let msg = err.to_string();
    // nginx serves POST only for existing static files: a clear status error, not a retry loop.
    assert!(
        msg.contains("POST") && msg.contains("404 Not Found"),
        "{msg}"
    );
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "endpoint",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn methods_other_than_get_patch_post_put_are_refused() {
    for bad in ["DELETE", "HEAD", "TRACE", ""] {
        let kwargs = json!({"url": "http://127.0.0.1:9/x"});
        let err = bad.parse::<HttpMethod>().unwrap_err().to_string();
        assert!(
            err.contains(&format!("\"{bad}\" is not supported")),
            "{err}"
        );
        let err = Webhook::builder(
            kwargs.clone(),
            HttpMethod::Put,
            kwargs.clone(),
            HttpMethod::Get,
        )
        .with_config("build_request_http_method", bad)
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("build_request_http_method")
                && err.contains(&format!("\"{bad}\" is not supported")),
            "{err}"
        );
        let reference = json!({
            "type": "Webhook", "build_request_kwargs": kwargs, "build_request_http_method": "PUT",
            "get_flow_request_kwargs": kwargs, "get_flow_request_http_method": bad,
        });
        assert!(registry().open_json(&reference.to_string()).is_err());
    }
    let err = Webhook::builder(
        json!({}),
        HttpMethod::Put,
        json!({"url": "x"}),
        HttpMethod::Get,
    )
    .build()
    .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("build_request_kwargs needs a \"url\""),
        "{err}"
    );
}

#[tokio::test]
async fn connection_resets_are_retried_against_nginx() {
    let e = need_server!("connection_resets_are_retried_against_nginx");
    let upstream: SocketAddr = e.url.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(upstream, vec![Fault::Reset, Fault::Reset]).await;
    let url = format!("http://{}/{}", proxy.addr(), unique("resets"));
    let mut s = WebhookBuilder::from_url(&url)
        .unwrap()
        .retry(fast_retry())
        .build()
        .unwrap();
    s.add_flow(seal("F", &"survived", &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    assert_eq!(proxy.stats().faults_injected(), 2);
    // An agent reaching the server through a second proxy (so through new connections: storages
    // share their client and its pooled connections): its first response is cut short, then it
    // retries.
    let second = FaultProxy::start(upstream, vec![Fault::TruncateResponse(40)]).await;
    let json = s
        .reference()
        .unwrap()
        .to_json()
        .replace(&proxy.addr().to_string(), &second.addr().to_string());
    let agent = registry().open_json(&json).unwrap();
    let v: String = agent.get_flow("F").await.unwrap().decode(&app()).unwrap();
    assert_eq!(v, "survived");
    assert_eq!(second.stats().faults_injected(), 1);
}

/// A minimal HTTP/1.1 responder that answers `500` to the first `failures` requests, then stores
/// PUT bodies and serves them on GET. A fault injector for the retry test, not a storage mock.
async fn flaky_server(failures: usize) -> (SocketAddr, Arc<Mutex<Vec<u16>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::new(Mutex::new(Vec::<u8>::new()));
    let seen = statuses.clone();
    tokio::spawn(async move {
        let mut served = 0usize;
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let (head_end, len) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0usize);
                    break (Some(i + 4), len);
                }
            };
            let Some(head_end) = head_end else { continue };
            while buf.len() < head_end + len {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let is_put = buf.starts_with(b"PUT");
            served += 1;
            let (status, body) = if served <= failures {
                (500, b"try again".to_vec())
            } else if is_put {
                *store.lock().unwrap() = buf[head_end..head_end + len].to_vec();
                (201, Vec::new())
            } else {
                (200, store.lock().unwrap().clone())
            };
            seen.lock().unwrap().push(status);
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        }
    });
    (addr, statuses)
}

#[tokio::test]
async fn server_errors_twice_then_success_is_retried() {
    let (addr, statuses) = flaky_server(2).await;
    let kwargs = json!({"url": format!("http://{addr}/flow")});
    let mut s = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get)
        .retry(fast_retry())
        .build()
        .unwrap();
    s.add_flow(seal("F", &"after 500s", &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let v: String = s.get_flow("F").await.unwrap().decode(&app()).unwrap();
    assert_eq!(v, "after 500s");
    assert_eq!(*statuses.lock().unwrap(), vec![500, 500, 201, 200]);
}

#[tokio::test]
async fn persistent_server_errors_fail_after_bounded_retries() {
    let (addr, statuses) = flaky_server(100).await;
    let kwargs = json!({"url": format!("http://{addr}/flow")});
    let mut s = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get)
        .retry(fast_retry())
        .build()
        .unwrap();
    s.add_flow(seal("F", &1, &app()).unwrap().into())
        .await
        .unwrap();
    let err = s.persist().await.unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
    let msg = err.to_string();
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(msg.contains("500"), "{msg}");
    assert!(
        cause.contains("500") && cause.contains("try again"),
        "the server's answer is in the source: {cause}"
    );
    assert_eq!(statuses.lock().unwrap().len(), 4, "1 attempt + 3 retries");
    assert!(
        s.reference().unwrap().flow_digests.is_empty(),
        "a failed build recorded a digest"
    );
}

#[tokio::test]
async fn a_server_that_is_down_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kwargs = json!({"url": format!("http://127.0.0.1:{port}/flow")});
    let mut s = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get)
        .retry(fast_retry())
        .build()
        .unwrap();
    s.add_flow(seal("F", &1, &app()).unwrap().into())
        .await
        .unwrap();
    let err = s.persist().await.unwrap_err();
    let msg = err.to_string();
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(msg.contains("failed after 4 attempt(s)"), "{msg}");
    assert!(cause.contains("could not connect"), "{cause}");
    assert!(matches!(err, Error::Backend { .. }));
    assert!(err.is_temporary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_script_streams_both_ways() {
    let e = need_server!("hundred_mib_script_streams_both_ways");
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
            b[0] = i;
            f.write_all(&b).unwrap();
        }
    }
    let ctx = OpenContext {
        script_path: Some(script.display().to_string()),
        ..OpenContext::default()
    };
    let mut s = Webhook::from_url(&format!("{}/{}", e.url, unique("big")), &ctx).unwrap();
    s.add_flow(FlowInput::script("Big")).await.unwrap();
    s.persist().await.unwrap();
    let out = dir.path().join("fetched.py");
    let fetched = registry()
        .open(&s.reference().unwrap())
        .unwrap()
        .get_flow_to_file("Big", &out)
        .await
        .unwrap();
    assert_eq!(fetched.size(), 100 << 20);
    assert!(matches!(
        fetched.content,
        FlowContent::File { header: None, .. }
    ));
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&script).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_fetch_refuses_a_tampered_flow_and_leaves_no_file() {
    let e = need_server!("streamed_fetch_refuses_a_tampered_flow_and_leaves_no_file");
    let url = format!("{}/{}", e.url, unique("tampered"));
    let mut s = Webhook::from_url(&url, &OpenContext::default()).unwrap();
    s.add_flow(seal_bytes("F", &vec![1u8; 300_000], &app()).into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let reference = s.reference().unwrap();
    let mut bytes = seal_bytes("F", &vec![1u8; 300_000], &app())
        .to_bytes()
        .unwrap()
        .to_vec();
    bytes[200_000] = 2;
    reqwest::Client::new()
        .put(&reference.flows["F"])
        .body(bytes)
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = registry()
        .open(&reference)
        .unwrap()
        .get_flow_to_file("F", &out)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FlowCorrupt { .. }), "{err:?}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a temporary file was left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flow_per_storage_and_data_is_overwritten_with_a_warning() {
    let e = need_server!("one_flow_per_storage_and_data_is_overwritten_with_a_warning");
    let kwargs = json!({"url": format!("{}/{}", e.url, unique("one")), "data": "ignored"});
    let mut s = Webhook::builder(
        kwargs.clone(),
        HttpMethod::Put,
        json!({"url": kwargs["url"]}),
        HttpMethod::Get,
    )
    .build()
    .unwrap();
    s.add_flow(seal("First", &1, &app()).unwrap().into())
        .await
        .unwrap();
    s.add_flow(seal("Second", &2, &app()).unwrap().into())
        .await
        .unwrap();
    assert_eq!(s.flows().keys().collect::<Vec<_>>(), ["Second"]);
    let rt = tokio::runtime::Handle::current();
    let (r, logs) = flowstore_secrets::test_support::capture_logs(|| {
        tokio::task::block_in_place(|| rt.block_on(s.persist()))
    });
    r.unwrap();
    assert!(logs.contains("\"data\" argument is overwritten"), "{logs}");
    let v: i32 = s.get_flow("Second").await.unwrap().decode(&app()).unwrap();
    assert_eq!(v, 2);
}

#[test]
fn url_typed_and_reference_configs_are_the_same() {
    let url = "http://files.example:8080/flows/?timeout=10&header.X-Team=data&param.v=2\
               &bearer_token_secret=WEBHOOK_TOKEN&label=prod&build_request_http_method=post";
    let ctx = OpenContext {
        options: vec![
            ("get_flow_request_timeout".into(), "2.5".into()),
            ("label".into(), "eu".into()),
        ],
        ..OpenContext::default()
    };
    let from_url = Webhook::from_url(url, &ctx).unwrap();
    let config = from_url.config();
    assert_eq!(
        config.key_base_url.as_deref(),
        Some("http://files.example:8080/flows")
    );
    assert_eq!(config.build_request_http_method, HttpMethod::Post);
    assert_eq!(config.build_request_kwargs["timeout"], 10);
    assert_eq!(config.get_flow_request_kwargs["timeout"], 2.5);
    for kwargs in [
        &config.build_request_kwargs,
        &config.get_flow_request_kwargs,
    ] {
        assert_eq!(kwargs["url"], "http://files.example:8080/flows");
        assert_eq!(kwargs["headers"]["X-Team"], "data");
        assert_eq!(
            kwargs["headers"]["Authorization"],
            "Bearer ${WEBHOOK_TOKEN}"
        );
        assert_eq!(kwargs["params"]["v"], "2");
    }
    assert_eq!(from_url.labels(), ["prod", "eu"]);
    assert_eq!(from_url.secrets(), ["WEBHOOK_TOKEN"]);

    let reopened = Webhook::from_reference(&from_url.reference().unwrap(), &ctx).unwrap();
    let typed = WebhookBuilder::from_url("http://files.example:8080/flows")
        .unwrap()
        .build_request_http_method(HttpMethod::Post)
        .timeout(Duration::from_secs(10))
        .header("X-Team", "data")
        .param("v", "2")
        .bearer_token_secret("WEBHOOK_TOKEN")
        .labels(["prod", "eu"])
        .with_config("get_flow_request_timeout", "2.5")
        .unwrap()
        .build()
        .unwrap();
    for other in [&reopened, &typed] {
        assert_eq!(from_url.config(), other.config());
        assert_eq!(from_url.labels(), other.labels());
        assert_eq!(from_url.secrets(), other.secrets());
    }
    assert_eq!(from_url.reference().unwrap(), reopened.reference().unwrap());
}

#[test]
fn unknown_options_and_bad_urls_are_clear_errors() {
    let e = WebhookBuilder::from_url("https://files.example/flows?timout=10")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Unknown Webhook option \"timout\"")
            && e.contains("timeout")
            && e.contains("header.<name>")
            && e.contains("label"),
        "{e}"
    );
    for (url, expected) in [
        ("ftp://files.example/x", "takes http:// or https://"),
        (
            "https://user:pw@files.example/x",
            "must not carry a user or password",
        ),
        (
            "https://files.example/x?timeout=-1",
            "positive number of seconds",
        ),
        (
            "https://files.example/x?bearer_token_secret=A-B",
            "letters, digits and _",
        ),
        (
            "https://files.example/x?basic_auth=nobody",
            "USER:SECRET_NAME",
        ),
        ("not a url", "cannot be parsed"),
    ] {
        let err = Webhook::from_url(url, &OpenContext::default()).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{url}: {err:?}");
        assert!(err.to_string().contains(expected), "{url}: {err}");
        assert!(!err.to_string().contains("pw@"), "{err}");
    }
    let e = WebhookBuilder::from_url("https://files.example/x?header.Bad%20Name=1")
        .unwrap()
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid HTTP header name"), "{e}");
    let e = registry()
        .open_url_with("https://files.example/x", [("hedaer.X", "1")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"hedaer.X\""), "{e}");
}

#[test]
fn typed_credentials_are_never_recorded_or_shown() {
    let token = "typed-bearer-c4n4ry";
    let password = "typed-basic-c4n4ry";
    let kwargs = json!({"url": "https://files.example/flows/etl"});
    let builder = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get)
        .bearer_token(SecretString::from(token))
        .bearer_token_secret("FILES_TOKEN");
    let storage = builder.clone().build().unwrap();
    let reference = storage.reference().unwrap();
    let json = reference.to_json();
    for (what, text) in [
        ("the builder's Debug", format!("{builder:?}")),
        ("the storage's Debug", format!("{storage:?}")),
        ("the reference", json.clone()),
    ] {
        assert_secret_absent(token, &text, what);
    }
    assert!(json.contains("Bearer ${FILES_TOKEN}"), "{json}");
    assert_eq!(reference.secrets, ["FILES_TOKEN"]);

    let basic = WebhookBuilder::from_url("https://files.example/flows")
        .unwrap()
        .basic_auth("flowstore", SecretString::from(password))
        .basic_auth_secret("flowstore", "FILES_PASSWORD");
    let storage = basic.clone().build().unwrap();
    let json = storage.reference().unwrap().to_json();
    for (what, text) in [
        ("the builder's Debug", format!("{basic:?}")),
        ("the storage's Debug", format!("{storage:?}")),
        ("the reference", json.clone()),
    ] {
        assert_secret_absent(password, &text, what);
    }
    assert!(
        json.contains(r#"["flowstore","${FILES_PASSWORD}"]"#),
        "{json}"
    );
    // The option form records the same.
    let by_option =
        WebhookBuilder::from_url("https://files.example/flows?basic_auth=flowstore:FILES_PASSWORD")
            .unwrap()
            .build()
            .unwrap();
    assert_eq!(by_option.config(), storage.config());
    assert_eq!(by_option.secrets(), ["FILES_PASSWORD"]);
}

#[tokio::test]
async fn typed_bearer_token_registers_and_the_named_secret_fetches() {
    let e = need_server!("typed_bearer_token_registers_and_the_named_secret_fetches");
    let url = format!("{}/{}", e.auth_url, unique("typed-token"));
    let mut s = WebhookBuilder::from_url(&url)
        .unwrap()
        .bearer_token(SecretString::from(e.token.clone()))
        .bearer_token_secret("WEBHOOK_AGENT_TOKEN")
        .build()
        .unwrap();
    s.add_flow(seal("Typed", &"with a typed token", &app()).unwrap().into())
        .await
        .unwrap();
    // WEBHOOK_AGENT_TOKEN is set nowhere here: the typed token is what this process sends.
    s.persist().await.unwrap();
    let v: String = s.get_flow("Typed").await.unwrap().decode(&app()).unwrap();
    assert_eq!(v, "with a typed token");
    let reference = s.reference().unwrap();
    assert_secret_absent(&e.token, &reference.to_json(), "the reference");

    // An agent without the named secret is told up front, by name.
    let err = registry().open(&reference).unwrap_err();
    assert!(matches!(err, Error::SecretNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("WEBHOOK_AGENT_TOKEN"), "{err}");
    // With it, the template is rendered and the flow fetched.
    let mut agent = Registry::new().with_secrets(Arc::new(
        MapSource::new().with("WEBHOOK_AGENT_TOKEN", &e.token),
    ));
    flowstore_webhook::register(&mut agent);
    let v: String = agent
        .open(&reference)
        .unwrap()
        .get_flow("Typed")
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    assert_eq!(v, "with a typed token");
}

/// Writes a small project (`flow.py` and `files`) under a fresh directory; returns it.
fn write_project(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flow.py"), b"import helpers\n").unwrap();
    for (path, bytes) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    dir
}

/// The blobs (packs and files of their own) the tree at `dir` is stored in, with their sizes.
fn stored_blobs(dir: &std::path::Path, entry: &str) -> Vec<(String, u64)> {
    flowstore_core::bundle::scan(dir, entry)
        .unwrap()
        .manifest
        .blobs()
        .into_iter()
        .map(|(d, n)| (d.to_string(), n))
        .collect()
}

/// The status nginx answers to a `HEAD` of `url`, with `token` as the bearer token if given.
async fn head_status(url: &str, token: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().head(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_requests_carry_the_bearer_token() {
    let e = need_server!("blob_requests_carry_the_bearer_token");
    let project = write_project(&[
        ("helpers.py", b"X = 1\n".to_vec()),
        ("data/rows.csv", b"a,b\n1,2\n".to_vec()),
    ]);
    let base = format!("{}/{}", e.auth_url, unique("bundle-token"));
    // Registration sends the typed token; agents render the recorded template.
    let mut s = WebhookBuilder::from_url(&base)
        .unwrap()
        .bearer_token(SecretString::from(e.token.clone()))
        .bearer_token_secret("WEBHOOK_BUNDLE_TOKEN")
        .retry(fast_retry())
        .build()
        .unwrap();
    assert!(s.capabilities().bundles);
    s.add_flow(FlowInput::bundle("Tokened", project.path(), "flow.py"))
        .await
        .unwrap();
    let rt = tokio::runtime::Handle::current();
    let (persisted, logs) = flowstore_secrets::test_support::capture_logs(|| {
        tokio::task::block_in_place(|| rt.block_on(s.persist()))
    });
    persisted.unwrap();
    assert_secret_absent(&e.token, &logs, "the registration's logs");
    let blobs = stored_blobs(project.path(), "flow.py");
    let report = s.transfer_report("Tokened").unwrap();
    assert_eq!(
        (report.objects, report.reused_objects),
        (blobs.len() as u64 + 1, 0),
        "the packs of the three small files, and the manifest: {report:?}"
    );

    // The blobs are on the server that refuses requests without the token: they got there
    // with it, and are refused to a request without it.
    let manifest = match s.get_flow("Tokened").await.unwrap().content {
        FlowContent::Bundle(m) => m,
        other => panic!("expected a bundle, got {other:?}"),
    };
    assert_eq!(
        manifest.blobs(),
        blobs
            .iter()
            .map(|(d, n)| (d.as_str(), *n))
            .collect::<Vec<_>>()
    );
    let store = s.blob_store().expect("URL mode holds bundles");
    for (blob, _) in manifest.blobs() {
        let url = store.blob_location(blob);
        assert!(url.starts_with(&format!("{base}/.blobs/sha256/")), "{url}");
        assert_eq!(
            head_status(&url, None).await,
            401,
            "{url} without the token"
        );
        assert_eq!(head_status(&url, Some(&e.token)).await, 200, "{url}");
        assert!(store.has_blob(blob).await.unwrap());
    }
    // A ranged read sends the token too: one file out of its pack.
    let rows = manifest
        .files()
        .iter()
        .find(|f| f.path == "data/rows.csv")
        .unwrap();
    let (pack, offset) = rows.source();
    assert_eq!(
        &store.get_blob_range(pack, offset, rows.size).await.unwrap()[..],
        b"a,b\n1,2\n"
    );

    // An agent with the named secret downloads every blob with it.
    let reference = s.reference().unwrap();
    assert_secret_absent(&e.token, &reference.to_json(), "the reference");
    let mut agent = Registry::new().with_secrets(Arc::new(
        MapSource::new().with("WEBHOOK_BUNDLE_TOKEN", &e.token),
    ));
    flowstore_webhook::register(&mut agent);
    let agent = agent.open(&reference).unwrap();
    let work = tempfile::tempdir().unwrap();
    let fetched = agent
        .get_bundle(
            "Tokened",
            &work.path().join("checkout"),
            &flowstore_core::bundle::FetchOptions::with_cache_dir(work.path().join("cache")),
        )
        .await
        .unwrap();
    // A cold cache: every pack whole, once.
    assert_eq!(
        (fetched.transfer.objects, fetched.transfer.reused_objects),
        (blobs.len() as u64, 0),
        "{:?}",
        fetched.transfer
    );
    assert_eq!(
        fetched.transfer.bytes,
        blobs.iter().map(|(_, n)| n).sum::<u64>()
    );
    assert_eq!(
        std::fs::read(fetched.root.join("data/rows.csv")).unwrap(),
        b"a,b\n1,2\n"
    );

    // With a wrong token, a blob check and a blob download are refused (not "missing"), and
    // the token is nowhere in the errors.
    let wrong = "wrong-blob-token-c4n4ry";
    let mut intruder = Registry::new().with_secrets(Arc::new(
        MapSource::new().with("WEBHOOK_BUNDLE_TOKEN", wrong),
    ));
    flowstore_webhook::register(&mut intruder);
    let intruder = intruder.open(&reference).unwrap();
    let store = intruder.blob_store().unwrap();
    let digest = &blobs[0].0;
    let err = store.has_blob(digest).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("blob check HEAD"), "{err}");
    let whole = store
        .get_blob(digest, &work.path().join("blob"))
        .await
        .unwrap_err();
    let ranged = store.get_blob_range(digest, 1, 2).await.unwrap_err();
    for err in [whole, ranged] {
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        assert!(err.to_string().contains("blob download GET"), "{err}");
        for secret in [wrong, e.token.as_str()] {
            assert_secret_absent(secret, &err.to_string(), "the error");
            assert_secret_absent(secret, &format!("{err:?}"), "the error's Debug");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_failing_mid_bundle_leaves_no_manifest() {
    let e = need_server!("an_upload_failing_mid_bundle_leaves_no_manifest");
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
    let mut files: Vec<(&str, Vec<u8>)> = vec![("data/big.bin", big)];
    let small = ["a.txt", "b.txt", "c.txt", "d.txt"];
    for name in small {
        files.push((name, format!("small {name}\n").into_bytes()));
    }
    let project = write_project(&files);
    // Every connection through the proxy forwards at most 64 KiB of requests: the checks and
    // the small blobs get through, the 1 MiB blob is cut off on every attempt.
    let upstream: SocketAddr = e.url.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(upstream, vec![Fault::TruncateRequest(64 << 10); 64]).await;
    let path = unique("mid-bundle");
    let mut s = WebhookBuilder::from_url(&format!("http://{}/{path}", proxy.addr()))
        .unwrap()
        .retry(fast_retry())
        .build()
        .unwrap();
    let manifest_url = s
        .add_flow(FlowInput::bundle("Broken", project.path(), "flow.py"))
        .await
        .unwrap();
    let err = s.persist().await.unwrap_err();
    assert!(err.is_temporary(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("blob upload PUT") && msg.contains("/.blobs/sha256/"),
        "{msg}"
    );

    // Nothing names the bundle: no manifest on the server, no digest in the reference.
    let direct = |url: &str| {
        url.replace(
            &proxy.addr().to_string(),
            e.url.trim_start_matches("http://"),
        )
    };
    assert_eq!(head_status(&direct(&manifest_url), None).await, 404);
    assert!(s.reference().unwrap().flow_digests.is_empty());
    assert!(s.transfer_report("Broken").is_none());
    let err = s.get_flow("Broken").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    // The cut blob is absent; the packs of the small files that went up before the failure
    // are whole (the failure cancels uploads still in flight, so a slow machine may have sent
    // fewer).
    let store = s.blob_store().unwrap();
    let big_digest = flowstore_core::envelope::sha256_digest(&files[0].1);
    let big_url = direct(&store.blob_location(&big_digest));
    assert_eq!(head_status(&big_url, None).await, 404, "{big_url}");
    let blobs = stored_blobs(project.path(), "flow.py");
    assert!(
        blobs.iter().any(|(d, _)| *d == big_digest),
        "the 1 MiB file is a blob of its own: {blobs:?}"
    );
    let packs: Vec<_> = blobs.iter().filter(|(d, _)| *d != big_digest).collect();
    assert!(!packs.is_empty(), "the five small files travel in packs");
    let mut present = 0;
    for (pack, size) in &packs {
        let url = direct(&store.blob_location(pack));
        let resp = reqwest::get(&url).await.unwrap();
        if resp.status().as_u16() == 404 {
            continue;
        }
        let got = resp.bytes().await.unwrap();
        assert_eq!(got.len() as u64, *size, "{url}");
        assert_eq!(
            &flowstore_core::envelope::sha256_digest(&got),
            pack,
            "{url}"
        );
        present += 1;
    }
    assert!(present > 0, "no pack went up before the failure");

    // Registered again straight to nginx (same base), only the missing blob and the manifest go.
    let mut again = WebhookBuilder::from_url(&format!("{}/{path}", e.url))
        .unwrap()
        .build()
        .unwrap();
    again
        .add_flow(FlowInput::bundle("Broken", project.path(), "flow.py"))
        .await
        .unwrap();
    again.persist().await.unwrap();
    let report = again.transfer_report("Broken").unwrap();
    assert_eq!(
        (report.objects, report.reused_objects),
        (2 + packs.len() as u64 - present, present),
        "the big blob, the packs not sent before, and the manifest: {report:?}"
    );
}

#[tokio::test]
async fn a_source_file_gone_before_persist_fails_then_persist_again_completes() {
    let e = need_server!("a_source_file_gone_before_persist_fails_then_persist_again_completes");
    let project = write_project(&[
        ("helpers.py", b"X = 1\n".to_vec()),
        ("gone.txt", b"about to vanish\n".to_vec()),
    ]);
    let mut s = WebhookBuilder::from_url(&format!("{}/{}", e.url, unique("gone")))
        .unwrap()
        .build()
        .unwrap();
    let manifest_url = s
        .add_flow(FlowInput::bundle("Gone", project.path(), "flow.py"))
        .await
        .unwrap();
    let gone = project.path().join("gone.txt");
    std::fs::remove_file(&gone).unwrap();
    let err = s.persist().await.unwrap_err();
    assert!(
        err.to_string().contains(&gone.display().to_string()),
        "{err}"
    );
    assert_eq!(head_status(&manifest_url, None).await, 404);
    assert!(s.reference().unwrap().flow_digests.is_empty());

    // The staged bundle is still there: put the file back and persist again.
    std::fs::write(&gone, b"about to vanish\n").unwrap();
    s.persist().await.unwrap();
    assert_eq!(head_status(&manifest_url, None).await, 200);
    let report = s.transfer_report("Gone").unwrap();
    assert_eq!(
        report.objects + report.reused_objects,
        stored_blobs(project.path(), "flow.py").len() as u64 + 1,
        "the packs of the three files, and the manifest: {report:?}"
    );
    let FlowContent::Bundle(manifest) = s.get_flow("Gone").await.unwrap().content else {
        panic!("not a bundle")
    };
    assert_eq!(manifest.files().len(), 3);
}

#[tokio::test]
async fn bundles_are_refused_outside_url_mode_leaving_the_storage_as_it_was() {
    let project = write_project(&[]);
    let kwargs = json!({"url": "http://127.0.0.1:9/flows/etl"});
    let mut fixed = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get)
        .build()
        .unwrap();
    assert!(!fixed.capabilities().bundles && fixed.blob_store().is_none());
    fixed
        .add_flow(seal("Kept", &1, &app()).unwrap().into())
        .await
        .unwrap();
    let err = fixed
        .add_flow(FlowInput::bundle("B", project.path(), "flow.py"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(
        err.to_string().contains("\"B\"") && err.to_string().contains("URL mode"),
        "{err}"
    );
    assert_eq!(fixed.flows().keys().collect::<Vec<_>>(), ["Kept"]);

    let ctx = OpenContext {
        script_path: Some(project.path().join("flow.py").display().to_string()),
        ..OpenContext::default()
    };
    let mut script = Webhook::from_url("http://127.0.0.1:9/flows", &ctx).unwrap();
    assert!(!script.capabilities().bundles && script.blob_store().is_none());
    let err = script
        .add_flow(FlowInput::bundle("B", project.path(), "flow.py"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("script mode"), "{err}");
}

/// Registers a bundle, fetches it, changes one small file, registers it again, and checks that
/// the warm fetch of the second version makes one ranged request (on the wire, through a
/// recording proxy in front of nginx) for exactly the changed file's bytes, answered 206.
async fn warm_fetch_after_one_change(upstream_url: &str, token: Option<&str>) {
    // Forty small files of about 200 B: packs of several files each.
    let contents: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            let body = format!("# module {i}\n{}\n", "x = 1\n".repeat(30 + i));
            (format!("pkg/mod_{i:02}.py"), body.into_bytes())
        })
        .collect();
    let files: Vec<(&str, Vec<u8>)> = contents
        .iter()
        .map(|(p, b)| (p.as_str(), b.clone()))
        .collect();
    let project = write_project(&files);
    let scanned = flowstore_core::bundle::scan(project.path(), "flow.py").unwrap();
    let pack_sizes: std::collections::BTreeMap<String, u64> = scanned
        .manifest
        .blobs()
        .into_iter()
        .map(|(d, n)| (d.to_string(), n))
        .collect();
    // A file well under half of its pack, so that the fetch reads it as a range.
    let changed = scanned
        .manifest
        .files()
        .iter()
        .find(|f| {
            f.path.starts_with("pkg/") && f.pack.is_some() && 3 * f.size < pack_sizes[f.source().0]
        })
        .expect("a pack of several files")
        .path
        .clone();

    let upstream: SocketAddr = upstream_url.trim_start_matches("http://").parse().unwrap();
    let proxy = RecordingProxy::start(upstream).await;
    let base = format!("http://{}/{}", proxy.addr(), unique("warm"));
    let open = || {
        let b = WebhookBuilder::from_url(&base).unwrap();
        match token {
            Some(t) => b
                .bearer_token(SecretString::from(t.to_string()))
                .bearer_token_secret("WEBHOOK_WARM_TOKEN"),
            None => b,
        }
        .build()
        .unwrap()
    };
    let agent = || {
        let mut r = match token {
            Some(t) => Registry::new()
                .with_secrets(Arc::new(MapSource::new().with("WEBHOOK_WARM_TOKEN", t))),
            None => Registry::new(),
        };
        flowstore_webhook::register(&mut r);
        r
    };

    let mut v1 = open();
    v1.add_flow(FlowInput::bundle("Warm", project.path(), "flow.py"))
        .await
        .unwrap();
    v1.persist().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let options =
        || flowstore_core::bundle::FetchOptions::with_cache_dir(work.path().join("cache"));
    let cold = agent()
        .open(&v1.reference().unwrap())
        .unwrap()
        .get_bundle("Warm", &work.path().join("v1"), &options())
        .await
        .unwrap();
    assert_eq!(cold.transfer.objects, pack_sizes.len() as u64);

    // The same length, other bytes: the file's offset in its (new) pack stays.
    let new_bytes: Vec<u8> = std::fs::read(project.path().join(&changed))
        .unwrap()
        .iter()
        .map(|b| if *b == b'1' { b'2' } else { *b })
        .collect();
    assert_ne!(
        new_bytes,
        std::fs::read(project.path().join(&changed)).unwrap()
    );
    std::fs::write(project.path().join(&changed), &new_bytes).unwrap();
    let mut v2 = open();
    v2.add_flow(FlowInput::bundle("Warm", project.path(), "flow.py"))
        .await
        .unwrap();
    v2.persist().await.unwrap();
    let report = v2.transfer_report("Warm").unwrap();
    assert_eq!(
        (report.objects, report.reused_objects),
        (2, pack_sizes.len() as u64 - 1),
        "the changed file's pack and the manifest: {report:?}"
    );

    proxy.clear();
    let agent_v2 = agent().open(&v2.reference().unwrap()).unwrap();
    let warm = agent_v2
        .get_bundle("Warm", &work.path().join("v2"), &options())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(warm.root.join(&changed)).unwrap(),
        new_bytes,
        "{changed}"
    );
    let file = warm
        .manifest
        .files()
        .iter()
        .find(|f| f.path == changed)
        .unwrap();
    let (pack, offset) = file.source();
    let pack_size = warm
        .manifest
        .blobs()
        .into_iter()
        .find(|(b, _)| *b == pack)
        .unwrap()
        .1;
    assert_eq!(
        (warm.transfer.objects, warm.transfer.bytes),
        (1, file.size),
        "{:?}",
        warm.transfer
    );

    let exchanges = proxy.exchanges();
    let blob_path = format!(
        "{}/.blobs/sha256/{}",
        base.split_once(&proxy.addr().to_string()).unwrap().1,
        pack.trim_start_matches("sha256:")
    );
    let blob_requests: Vec<_> = exchanges
        .iter()
        .filter(|x| x.target.contains("/.blobs/"))
        .collect();
    assert_eq!(
        blob_requests.len(),
        1,
        "one blob request in the warm fetch: {exchanges:#?}"
    );
    let ranged = blob_requests[0];
    let last = offset + file.size - 1;
    assert_eq!(
        (ranged.method.as_str(), ranged.target.as_str()),
        ("GET", blob_path.as_str())
    );
    assert_eq!(
        ranged.range.as_deref(),
        Some(format!("bytes={offset}-{last}").as_str())
    );
    assert_eq!(ranged.status, 206, "{ranged:?}");
    assert_eq!(
        ranged.content_range.as_deref(),
        Some(format!("bytes {offset}-{last}/{pack_size}").as_str())
    );
    assert_eq!(ranged.body_len as u64, file.size, "{ranged:?}");
    // Besides it, only the manifest was read.
    let others: Vec<_> = exchanges
        .iter()
        .filter(|x| !x.target.contains("/.blobs/"))
        .collect();
    assert!(
        others.len() == 1 && others[0].method == "GET" && others[0].range.is_none(),
        "{exchanges:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_fetch_after_one_change_is_one_ranged_request() {
    let e = need_server!("warm_fetch_after_one_change_is_one_ranged_request");
    warm_fetch_after_one_change(&e.url, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_fetch_after_one_change_is_one_ranged_request_with_the_token() {
    let e = need_server!("warm_fetch_after_one_change_is_one_ranged_request_with_the_token");
    warm_fetch_after_one_change(&e.auth_url, Some(&e.token)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_past_the_end_of_a_blob_are_refused_by_name() {
    let e = need_server!("ranged_reads_past_the_end_of_a_blob_are_refused_by_name");
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let path = dir.path().join("blob");
    std::fs::write(&path, &bytes).unwrap();
    let digest = flowstore_core::envelope::sha256_digest(&bytes);
    let s = WebhookBuilder::from_url(&format!("{}/{}", e.url, unique("ranges")))
        .unwrap()
        .retry(fast_retry())
        .build()
        .unwrap();
    let store = s.blob_store().unwrap();
    store
        .put_blob(&digest, &path, bytes.len() as u64)
        .await
        .unwrap();
    let n = bytes.len() as u64;
    for (offset, len) in [(0, 1), (0, n), (123_457, 70_001), (n - 1, 1)] {
        let got = store.get_blob_range(&digest, offset, len).await.unwrap();
        assert_eq!(
            &got[..],
            &bytes[offset as usize..(offset + len) as usize],
            "{offset}+{len}"
        );
    }
    assert!(store
        .get_blob_range(&digest, 5, 0)
        .await
        .unwrap()
        .is_empty());
    let location = store.blob_location(&digest);
    // Starting past the end: nginx answers 416. Ending past it: nginx sends what there is.
    for (offset, len) in [(n, 1), (n - 10, 11)] {
        let err = store
            .get_blob_range(&digest, offset, len)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, Error::Backend { .. }) && !err.is_temporary(),
            "{err:?}"
        );
        assert!(
            msg.contains(&location)
                && msg.contains(&format!("Range bytes={offset}-{}", offset + len - 1))
                && msg.contains("register the bundle again"),
            "{msg}"
        );
    }
    // A missing blob is NotFound, as for whole reads.
    let ghost = flowstore_core::envelope::sha256_digest(b"never stored");
    let err = store.get_blob_range(&ghost, 0, 4).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { what: "blob", .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_range_still_gives_the_right_bytes() {
    // The responder stores PUT bodies and answers every GET 200 with the whole body, whatever
    // the Range header says.
    let (addr, statuses) = flaky_server(0).await;
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let path = dir.path().join("pack");
    std::fs::write(&path, &bytes).unwrap();
    let digest = flowstore_core::envelope::sha256_digest(&bytes);
    let s = WebhookBuilder::from_url(&format!("http://{addr}/flows"))
        .unwrap()
        .retry(fast_retry())
        .build()
        .unwrap();
    let store = s.blob_store().unwrap();
    store
        .put_blob(&digest, &path, bytes.len() as u64)
        .await
        .unwrap();
    let rt = tokio::runtime::Handle::current();
    let reads = async {
        for (offset, len) in [(150_001u64, 40_000u64), (7, 3)] {
            let got = store.get_blob_range(&digest, offset, len).await.unwrap();
            assert_eq!(
                &got[..],
                &bytes[offset as usize..(offset + len) as usize],
                "{offset}+{len}"
            );
        }
        // Past the end: the whole body is shorter than the range.
        store
            .get_blob_range(&digest, 199_990, 20)
            .await
            .unwrap_err()
    };
    let (err, logs) = flowstore_secrets::test_support::capture_logs(|| {
        tokio::task::block_in_place(|| rt.block_on(reads))
    });
    let msg = err.to_string();
    assert!(
        msg.contains("Range bytes=199990-200009") && msg.contains("ended after 200000 bytes"),
        "{msg}"
    );
    assert_eq!(
        logs.matches("ignored the Range header").count(),
        1,
        "warned once per storage: {logs}"
    );
    assert_eq!(*statuses.lock().unwrap(), vec![201, 200, 200, 200]);
}

/// Retention against the server that allows only PUT and GET: listing and deleting fail with
/// errors that name the storage's URL and say what the server must allow, and nothing is
/// deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_listings_or_delete_says_what_to_allow_and_deletes_nothing() {
    let plain = match plain_url() {
        Ok(u) => u,
        Err(reason) => {
            return skip(
                "a_server_without_listings_or_delete_says_what_to_allow_and_deletes_nothing",
                &reason,
            )
        }
    };
    let base = format!("{plain}/{}", unique("plain"));
    let mut s = WebhookBuilder::from_url(&base)
        .unwrap()
        .retry(fast_retry())
        .build()
        .unwrap();
    // Capabilities are static: URL mode declares both; the server decides.
    let caps = s.capabilities();
    assert!(caps.list_versions && caps.delete_versions, "{caps:?}");
    s.add_flow(seal("Plain", &"kept", &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let location = s.flows()["Plain"].clone();

    let listing_error = |err: Error, what: &str| {
        let msg = err.to_string();
        assert!(matches!(err, Error::Unsupported { .. }), "{what}: {err:?}");
        assert!(
            msg.contains(&base)
                && msg.contains("The server must serve JSON directory listings")
                && msg.contains("autoindex_format json")
                && msg.contains("list and prune"),
            "{what}: {msg}"
        );
        msg
    };
    for flow in [None, Some("Plain")] {
        let msg = listing_error(s.list_versions(flow).await.unwrap_err(), "list");
        assert!(msg.contains("403 Forbidden"), "{msg}");
    }
    // Nothing stored there yet: the directory is missing, and nothing above it lists either.
    let fresh = WebhookBuilder::from_url(&format!("{plain}/{}", unique("plain-empty")))
        .unwrap()
        .retry(fast_retry())
        .build()
        .unwrap();
    let err = fresh.list_versions(None).await.unwrap_err();
    assert!(
        matches!(err, Error::Unsupported { .. })
            && err.to_string().contains("autoindex_format json"),
        "{err}"
    );
    // A prune stops at its listing, before anything is deleted.
    let options = PruneOptions::new(RetentionPolicy {
        keep_last: Some(1),
        older_than: None,
    });
    listing_error(
        flowstore_core::prune::plan(&s, &options).await.unwrap_err(),
        "plan",
    );

    let version = StoredVersion {
        flow: Some("Plain".into()),
        slug: "plain".into(),
        location: location.clone(),
        size: None,
        stored_at: None,
        bundle: false,
    };
    let err = s.delete_version(&version).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(
        msg.contains(&location)
            && msg.contains(&format!("the server at {base} does not allow DELETE"))
            && msg.contains("405 Method Not Allowed")
            && msg.contains("dav_methods PUT DELETE")
            && msg.contains("prune with the server's own tools"),
        "{msg}"
    );
    // Nothing was deleted: the version is there and fetches.
    assert_eq!(head_status(&location, None).await, 200);
    let v: String = registry()
        .open(&s.reference().unwrap())
        .unwrap()
        .get_flow("Plain")
        .await
        .unwrap()
        .decode(&app())
        .unwrap();
    assert_eq!(v, "kept");

    // Blobs: the same two refusals, and the blob stays.
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob");
    std::fs::write(&blob, b"a blob on a plain server").unwrap();
    let digest = flowstore_core::envelope::sha256_digest(b"a blob on a plain server");
    let store = s.blob_store().unwrap();
    store.put_blob(&digest, &blob, 24).await.unwrap();
    listing_error(store.list_blobs().await.unwrap_err(), "list_blobs");
    let err = store.delete_blob(&digest).await.unwrap_err();
    assert!(
        matches!(err, Error::Unsupported { .. })
            && err.to_string().contains("does not allow DELETE")
            && err.to_string().contains("dav_methods PUT DELETE"),
        "{err}"
    );
    assert_eq!(head_status(&store.blob_location(&digest), None).await, 200);
}

/// A delete (and a listing) through the server that demands the bearer token, with a wrong
/// token or none: PermissionDenied, the version stays, and no token appears in the error, its
/// Debug, the storage's Debug or the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_without_the_token_is_refused_and_shows_no_token() {
    let e = need_server!("deleting_without_the_token_is_refused_and_shows_no_token");
    let base = format!("{}/{}", e.auth_url, unique("auth-delete"));
    let mut s = WebhookBuilder::from_url(&base)
        .unwrap()
        .bearer_token(SecretString::from(e.token.clone()))
        .bearer_token_secret("WEBHOOK_DELETE_TOKEN")
        .retry(fast_retry())
        .build()
        .unwrap();
    s.add_flow(seal("Guarded", &"still here", &app()).unwrap().into())
        .await
        .unwrap();
    s.persist().await.unwrap();
    let listed = s.list_versions(None).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].flow.as_deref(), Some("Guarded"));
    let reference = s.reference().unwrap();

    let wrong = "not-the-token-d3l3te-c4n4ry";
    let mut agents = Registry::new().with_secrets(Arc::new(
        MapSource::new().with("WEBHOOK_DELETE_TOKEN", wrong),
    ));
    flowstore_webhook::register(&mut agents);
    let wrong_token = agents.open(&reference).unwrap();
    let no_token: Box<dyn Storage> = Box::new(
        WebhookBuilder::from_url(&base)
            .unwrap()
            .retry(fast_retry())
            .build()
            .unwrap(),
    );
    let rt = tokio::runtime::Handle::current();
    for (who, storage) in [("a wrong token", &wrong_token), ("no token", &no_token)] {
        let (result, logs) = flowstore_secrets::test_support::capture_logs(|| {
            tokio::task::block_in_place(|| rt.block_on(storage.delete_version(&listed[0])))
        });
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::PermissionDenied { .. }),
            "{who}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&listed[0].location) && msg.contains("DELETE") && msg.contains("401"),
            "{who}: {msg}"
        );
        let (listing, list_logs) = flowstore_secrets::test_support::capture_logs(|| {
            tokio::task::block_in_place(|| rt.block_on(storage.list_versions(None)))
        });
        let list_err = listing.unwrap_err();
        assert!(
            matches!(list_err, Error::PermissionDenied { .. }),
            "{who}: {list_err:?}"
        );
        for (what, text) in [
            ("the error", msg),
            ("the error's Debug", format!("{err:?}")),
            ("the listing error", format!("{list_err} {list_err:?}")),
            ("the storage's Debug", format!("{storage:?}")),
            ("logs", format!("{logs}{list_logs}")),
        ] {
            assert_secret_absent(wrong, &text, &format!("{who}: {what}"));
            assert_secret_absent(&e.token, &text, &format!("{who}: {what}"));
        }
    }
    // Still there, and still fetches; with the token it goes.
    assert_eq!(s.list_versions(None).await.unwrap(), listed);
    assert_eq!(head_status(&listed[0].location, Some(&e.token)).await, 200);
    s.delete_version(&listed[0]).await.unwrap();
    assert!(s.list_versions(None).await.unwrap().is_empty());
    assert_eq!(head_status(&listed[0].location, Some(&e.token)).await, 404);
}

/// A listing gives each version's flow name, size, time and whether it is a bundle, newest
/// first, and leaves out what is not a flowstore version (blobs, other files, deeper paths,
/// names that are not slugs); a storage with nothing stored yet lists nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_give_names_sizes_times_and_bundles_and_skip_foreign_files() {
    let e = need_server!("listings_give_names_sizes_times_and_bundles_and_skip_foreign_files");
    let base = format!("{}/{}", e.url, unique("listing"));
    let open = || WebhookBuilder::from_url(&base).unwrap().build().unwrap();
    // Nothing stored yet: the directory is missing, the one above it lists.
    assert!(open().list_versions(None).await.unwrap().is_empty());
    assert!(open()
        .list_versions(Some("Listed"))
        .await
        .unwrap()
        .is_empty());
    assert!(open()
        .blob_store()
        .unwrap()
        .list_blobs()
        .await
        .unwrap()
        .is_empty());

    let before = chrono::Utc::now() - chrono::Duration::seconds(2);
    let mut a = open();
    let sealed = seal("Listed", &"value", &app()).unwrap();
    let size = sealed.len();
    a.add_flow(sealed.into()).await.unwrap();
    a.persist().await.unwrap();
    let project = write_project(&[("helpers.py", b"X = 1\n".to_vec())]);
    let mut b = open();
    b.add_flow(FlowInput::bundle("Bundled", project.path(), "flow.py"))
        .await
        .unwrap();
    b.persist().await.unwrap();
    let client = reqwest::Client::new();
    for foreign in [
        "listed/notes.txt",
        "README",
        "listed/2026-12-01t00-00-00-000000-00-00/deeper",
        "Not-A-Slug/2026-12-01t00-00-00-000000-00-00",
        "listed/.2026-12-01t00-00-00-000000-00-00",
    ] {
        let resp = client
            .put(format!("{base}/{foreign}"))
            .body("not a version")
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{foreign}: {}", resp.status());
    }
    let after = chrono::Utc::now() + chrono::Duration::seconds(2);

    let all = a.list_versions(None).await.unwrap();
    assert_eq!(all.len(), 2, "{all:#?}");
    let (bundled, listed) = (&all[0], &all[1]);
    assert_eq!(
        bundled.location,
        b.flows()["Bundled"],
        "newest first: {all:#?}"
    );
    assert_eq!(
        (
            bundled.flow.as_deref(),
            bundled.slug.as_str(),
            bundled.bundle
        ),
        (None, "bundled", true)
    );
    assert_eq!(listed.location, a.flows()["Listed"]);
    assert_eq!(
        (listed.flow.as_deref(), listed.slug.as_str(), listed.bundle),
        (Some("Listed"), "listed", false)
    );
    assert_eq!(listed.size, Some(size));
    for v in &all {
        let at = v.stored_at.expect("a time from the listing");
        assert!(before <= at && at <= after, "{v:?}");
    }
    let one = a.list_versions(Some("Listed")).await.unwrap();
    assert_eq!(one, vec![listed.clone()]);
    // read_version gives the stored bytes.
    let bytes = a.read_version(listed).await.unwrap();
    assert_eq!(bytes.len() as u64, size);

    // The live blobs, with their sizes; the trash holds none.
    let store = b.blob_store().unwrap();
    let mut blobs: Vec<(String, u64)> = store
        .list_blobs()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.digest, b.size))
        .collect();
    blobs.sort();
    let mut want = stored_blobs(project.path(), "flow.py");
    want.sort();
    assert_eq!(blobs, want);
    let trash = store.area(flowstore_core::bundle::BlobArea::Trash).unwrap();
    assert!(trash.list_blobs().await.unwrap().is_empty());
    assert!(trash
        .blob_location(&want[0].0)
        .starts_with(&format!("{base}/.blobs/trash/sha256/")));
}

/// Prefect 1's templated requests (one fixed url) keep no versions: no listing, no delete, and
/// the errors say to use URL mode.
#[tokio::test]
async fn templated_requests_neither_list_nor_delete() {
    let kwargs = json!({"url": "http://127.0.0.1:9/flows/etl"});
    let s = Webhook::builder(kwargs.clone(), HttpMethod::Put, kwargs, HttpMethod::Get)
        .build()
        .unwrap();
    let caps = s.capabilities();
    assert!(!caps.list_versions && !caps.delete_versions, "{caps:?}");
    let version = StoredVersion {
        flow: Some("ETL".into()),
        slug: "etl".into(),
        location: "http://127.0.0.1:9/flows/etl".into(),
        size: None,
        stored_at: None,
        bundle: false,
    };
    let errors = [
        s.list_versions(None).await.unwrap_err(),
        s.delete_version(&version).await.unwrap_err(),
        s.read_version(&version).await.unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("URL mode"), "{err}");
    }
    let options = PruneOptions::new(RetentionPolicy {
        keep_last: Some(1),
        older_than: None,
    });
    let err = flowstore_core::prune::plan(&s, &options).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
}
