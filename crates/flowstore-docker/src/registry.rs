//! A small client for the OCI distribution API: push blobs and manifests, read them back by
//! digest. Basic auth (htpasswd registries) and the registry token flow ([`crate::auth`]: Docker
//! Hub, GHCR, `auth: token` registries); credentials and tokens never leave the request headers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flowstore_core::secret::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// OCI media types used here.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's schema-2 manifest (accepted when reading base images).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// An OCI image index (a multi-platform image).
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker's manifest list (a multi-platform image).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// An image config.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A gzipped layer.
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `sha256:<hex>` of bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A registry at `base` (e.g. `http://127.0.0.1:5000`).
#[derive(Clone)]
pub struct Registry {
    base: String,
    client: reqwest::Client,
    auth: Option<(String, SecretString)>,
    /// Bearer tokens from the registry's token server, by repository.
    tokens: Arc<Mutex<HashMap<String, SecretString>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base)
            .field("user", &self.auth.as_ref().map(|a| &a.0))
            .finish()
    }
}

impl Registry {
    /// A client for the registry at `host` (`127.0.0.1:5000`, or with a scheme); plain HTTP for
    /// loopback hosts, HTTPS otherwise.
    pub fn new(host: &str, auth: Option<(String, SecretString)>) -> Self {
        let base = if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_string()
        } else if host.starts_with("127.") || host.starts_with("localhost") {
            format!("http://{host}")
        } else {
            format!("https://{host}")
        };
        Registry {
            base,
            client: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(15))
                .build()
                .expect("a default HTTP client builds"),
            auth,
            tokens: Arc::default(),
        }
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends a request for repository `repo` with its token (or the basic credentials); on a
    /// `401` with a Bearer challenge, gets a token for the challenge's scope and sends it again
    /// (twice at most: a pull token is upgraded to push the same way).
    async fn execute(
        &self,
        what: &str,
        repo: &str,
        mut rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut token_fetches = 0;
        loop {
            let again = rb.try_clone();
            let token = self
                .tokens
                .lock()
                .expect("token cache lock")
                .get(repo)
                .cloned();
            let authed = match (&token, &self.auth) {
                (Some(t), _) => rb.bearer_auth(t.expose_secret()),
                (None, Some((u, p))) => rb.basic_auth(u, Some(p.expose_secret())),
                (None, None) => rb,
            };
            let resp = authed
                .send()
                .await
                .map_err(|e| self.error(what, e.without_url().to_string()))?;
            let challenge = (resp.status() == reqwest::StatusCode::UNAUTHORIZED)
                .then(|| resp.headers().get(reqwest::header::WWW_AUTHENTICATE))
                .flatten()
                .and_then(|h| h.to_str().ok())
                .and_then(crate::auth::BearerChallenge::parse);
            match (challenge, again) {
                (Some(challenge), Some(again)) if token_fetches < 2 => {
                    token_fetches += 1;
                    let token = crate::auth::fetch_token(
                        &self.client,
                        &self.base,
                        &challenge,
                        self.auth.as_ref(),
                    )
                    .await?;
                    tracing::debug!(registry = %self.base, repo, scope = ?challenge.scope, "got a registry token");
                    self.tokens
                        .lock()
                        .expect("token cache lock")
                        .insert(repo.to_string(), token);
                    rb = again;
                }
                _ => return Ok(resp),
            }
        }
    }

    fn error(&self, what: &str, message: String) -> Error {
        Error::Registry {
            registry: self.base.clone(),
            what: what.to_string(),
            message,
        }
    }

    /// `resp` if it succeeded, else [`Registry::status_error`].
    async fn check(&self, what: &str, resp: reqwest::Response) -> Result<reqwest::Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.status_error(what, resp).await)
    }

    /// The error for a failed response: its status, a hint, and the start of the registry's text.
    async fn status_error(&self, what: &str, resp: reqwest::Response) -> Error {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let hint = match status.as_u16() {
            401 | 403 => " (authentication failed: check the registry credentials)",
            404 => " (not found: check the registry URL and image name)",
            _ => "",
        };
        self.error(
            what,
            format!(
                "{status}{hint}: {}",
                body.chars().take(200).collect::<String>()
            ),
        )
    }

    async fn send(
        &self,
        what: &str,
        repo: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let resp = self.execute(what, repo, rb).await?;
        self.check(what, resp).await
    }

    /// Whether the repository `name` has the blob `digest` (a `HEAD` request).
    pub async fn has_blob(&self, name: &str, digest: &str) -> Result<bool> {
        let what = format!("checking blob {digest}");
        let head = self
            .execute(
                &what,
                name,
                self.req(
                    reqwest::Method::HEAD,
                    &format!("{}/v2/{name}/blobs/{digest}", self.base),
                ),
            )
            .await?;
        match head.status().as_u16() {
            401 | 403 => Err(self.status_error(&what, head).await),
            _ => Ok(head.status().is_success()),
        }
    }

    /// Uploads a blob unless the registry has it; returns its digest.
    pub async fn push_blob(&self, name: &str, bytes: Bytes) -> Result<String> {
        let d = digest(&bytes);
        if self.has_blob(name, &d).await? {
            return Ok(d);
        }
        let start = self
            .send(
                "starting an upload",
                name,
                self.req(
                    reqwest::Method::POST,
                    &format!("{}/v2/{name}/blobs/uploads/", self.base),
                ),
            )
            .await?;
        let location = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                self.error(
                    "starting an upload",
                    "the registry gave no upload location".into(),
                )
            })?
            .to_string();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        self.send(
            "uploading a blob",
            name,
            self.req(reqwest::Method::PUT, &format!("{url}{sep}digest={d}"))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes),
        )
        .await?;
        Ok(d)
    }

    /// Pushes a one-layer image holding `files` (absolute image path, contents, mode) as
    /// `name:tag`, with `config` as the image config's `config` section (`Env`, `Cmd`, …); returns
    /// the manifest digest. A base image made without any daemon or download (tests, scratch
    /// images for static binaries).
    ///
    /// Errors as [`Registry::push_blob`] and [`Registry::push_manifest`] do.
    pub async fn push_files_image(
        &self,
        name: &str,
        tag: &str,
        files: &[(String, Vec<u8>, u32)],
        config: Value,
    ) -> Result<String> {
        let layer = crate::layer::build(files)
            .map_err(|e| flowstore_core::Error::io("building the image layer", e))?;
        let layer_size = layer.gz.len();
        let layer_digest = self.push_blob(name, layer.gz).await?;
        let image_config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created_by": "flowstore: push_files_image"}],
        });
        let image_config = Bytes::from(serde_json::to_vec(&image_config).expect("JSON serializes"));
        let config_size = image_config.len();
        let config_digest = self.push_blob(name, image_config).await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": layer_size}],
        });
        self.push_manifest(name, tag, &manifest).await
    }

    /// Puts a manifest (or an index) under `reference` (a tag), typed by its `mediaType`; returns
    /// its digest.
    pub async fn push_manifest(
        &self,
        name: &str,
        reference: &str,
        manifest: &Value,
    ) -> Result<String> {
        let body = serde_json::to_vec(manifest).expect("manifests serialize");
        let d = digest(&body);
        self.send(
            "pushing the manifest",
            name,
            self.req(
                reqwest::Method::PUT,
                &format!("{}/v2/{name}/manifests/{reference}", self.base),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                manifest["mediaType"].as_str().unwrap_or(MANIFEST),
            )
            .body(body),
        )
        .await?;
        Ok(d)
    }

    /// A manifest by tag or digest, with its digest (checked when `reference` is a digest).
    pub async fn manifest(&self, name: &str, reference: &str) -> Result<(Value, String)> {
        let resp = self
            .send(
                "reading the manifest",
                name,
                self.req(
                    reqwest::Method::GET,
                    &format!("{}/v2/{name}/manifests/{reference}", self.base),
                )
                .header(
                    reqwest::header::ACCEPT,
                    format!("{MANIFEST}, {DOCKER_MANIFEST}, {INDEX}, {DOCKER_MANIFEST_LIST}"),
                ),
            )
            .await?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.error("reading the manifest", e.without_url().to_string()))?;
        let d = digest(&body);
        if reference.starts_with("sha256:") && d != reference {
            return Err(Error::DigestMismatch {
                registry: self.base.clone(),
                what: format!("manifest {reference} of {name}"),
                actual: d,
            });
        }
        let v = serde_json::from_slice(&body).map_err(|e| {
            self.error(
                &format!("reading the manifest {reference} of {name}"),
                format!("it is not JSON: {e}"),
            )
        })?;
        Ok((v, d))
    }

    /// The image manifest of `name:reference` for `os`/`architecture`: the manifest itself for a
    /// single-platform image; for an index (multi-platform image), the entry for that platform,
    /// read by its digest. Returns the manifest and its digest.
    ///
    /// Errors with [`Error::Registry`] naming the platforms the index has when none matches.
    pub async fn platform_manifest(
        &self,
        name: &str,
        reference: &str,
        os: &str,
        architecture: &str,
    ) -> Result<(Value, String)> {
        let (manifest, digest) = self.manifest(name, reference).await?;
        let Some(entries) = manifest["manifests"].as_array() else {
            return Ok((manifest, digest));
        };
        let platform = |e: &Value| {
            format!(
                "{}/{}",
                e["platform"]["os"].as_str().unwrap_or("?"),
                e["platform"]["architecture"].as_str().unwrap_or("?")
            )
        };
        let wanted = format!("{os}/{architecture}");
        match entries.iter().find(|e| platform(e) == wanted) {
            Some(entry) => {
                let d = entry["digest"].as_str().unwrap_or_default();
                self.manifest(name, d).await
            }
            None => Err(self.error(
                &format!("choosing a platform of {name}:{reference}"),
                format!(
                    "the image has no {wanted} variant (it has: {})",
                    entries.iter().map(platform).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// A blob by digest, verified.
    pub async fn blob(&self, name: &str, d: &str) -> Result<Bytes> {
        let resp = self
            .send(
                "reading a blob",
                name,
                self.req(
                    reqwest::Method::GET,
                    &format!("{}/v2/{name}/blobs/{d}", self.base),
                ),
            )
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.error(&format!("reading blob {d}"), e.without_url().to_string()))?;
        let actual = digest(&bytes);
        if actual != d {
            return Err(Error::DigestMismatch {
                registry: self.base.clone(),
                what: format!("blob {d} of {name}"),
                actual,
            });
        }
        Ok(bytes)
    }
}
