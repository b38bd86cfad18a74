//! A small client for the OCI distribution API: push blobs and manifests, read them back by
//! digest. Basic auth (htpasswd registries); credentials never leave the request headers.

use bytes::Bytes;
use flowstore_core::secret::{ExposeSecret, SecretString};
use flowstore_core::Error as CoreError;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// OCI media types used here.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's schema-2 manifest (accepted when reading base images).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
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
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base)
            .field("user", &self.auth.as_ref().map(|a| &a.0))
            .finish()
    }
}

fn err(message: String) -> CoreError {
    CoreError::backend("Docker", message)
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
            client: reqwest::Client::new(),
            auth,
        }
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let rb = self.client.request(method, url);
        match &self.auth {
            Some((u, p)) => rb.basic_auth(u, Some(p.expose_secret())),
            None => rb,
        }
    }

    async fn check(
        &self,
        what: &str,
        resp: reqwest::Response,
    ) -> Result<reqwest::Response, CoreError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let hint = match status.as_u16() {
            401 | 403 => " (authentication failed: check the registry credentials)",
            404 => " (not found: check the registry URL and image name)",
            _ => "",
        };
        Err(err(format!(
            "{what} at {}: {status}{hint}: {}",
            self.base,
            body.chars().take(200).collect::<String>()
        )))
    }

    async fn send(
        &self,
        what: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CoreError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| err(format!("{what} at {}: {}", self.base, e.without_url())))?;
        self.check(what, resp).await
    }

    /// Uploads a blob unless the registry has it; returns its digest.
    pub async fn push_blob(&self, name: &str, bytes: Bytes) -> Result<String, CoreError> {
        let d = digest(&bytes);
        let head = self
            .req(
                reqwest::Method::HEAD,
                &format!("{}/v2/{name}/blobs/{d}", self.base),
            )
            .send()
            .await
            .map_err(|e| {
                err(format!(
                    "checking blob {d} at {}: {}",
                    self.base,
                    e.without_url()
                ))
            })?;
        if head.status().is_success() {
            return Ok(d);
        }
        let start = self
            .send(
                "starting an upload",
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
            .ok_or_else(|| err("the registry gave no upload location".into()))?
            .to_string();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        self.send(
            "uploading a blob",
            self.req(reqwest::Method::PUT, &format!("{url}{sep}digest={d}"))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes),
        )
        .await?;
        Ok(d)
    }

    /// Puts a manifest under `reference` (a tag); returns its digest.
    pub async fn push_manifest(
        &self,
        name: &str,
        reference: &str,
        manifest: &Value,
    ) -> Result<String, CoreError> {
        let body = serde_json::to_vec(manifest).expect("manifests serialize");
        let d = digest(&body);
        self.send(
            "pushing the manifest",
            self.req(
                reqwest::Method::PUT,
                &format!("{}/v2/{name}/manifests/{reference}", self.base),
            )
            .header(reqwest::header::CONTENT_TYPE, MANIFEST)
            .body(body),
        )
        .await?;
        Ok(d)
    }

    /// A manifest by tag or digest, with its digest (checked when `reference` is a digest).
    pub async fn manifest(
        &self,
        name: &str,
        reference: &str,
    ) -> Result<(Value, String), CoreError> {
        let resp = self
            .send(
                "reading the manifest",
                self.req(
                    reqwest::Method::GET,
                    &format!("{}/v2/{name}/manifests/{reference}", self.base),
                )
                .header(
                    reqwest::header::ACCEPT,
                    format!("{MANIFEST}, {DOCKER_MANIFEST}"),
                ),
            )
            .await?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| err(format!("reading the manifest: {}", e.without_url())))?;
        let d = digest(&body);
        if reference.starts_with("sha256:") && d != reference {
            return Err(err(format!(
                "manifest {reference} of {name} came back with digest {d}: refusing it"
            )));
        }
        let v = serde_json::from_slice(&body)
            .map_err(|e| err(format!("the manifest of {name} is not JSON: {e}")))?;
        Ok((v, d))
    }

    /// A blob by digest, verified.
    pub async fn blob(&self, name: &str, d: &str) -> Result<Bytes, CoreError> {
        let resp = self
            .send(
                "reading a blob",
                self.req(
                    reqwest::Method::GET,
                    &format!("{}/v2/{name}/blobs/{d}", self.base),
                ),
            )
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| err(format!("reading blob {d}: {}", e.without_url())))?;
        if digest(&bytes) != d {
            return Err(err(format!(
                "blob {d} of {name} came back with other bytes: refusing it"
            )));
        }
        Ok(bytes)
    }
}
