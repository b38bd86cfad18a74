//! A small client for the OCI distribution API: push blobs and manifests, read them back by
//! digest, with typed manifests ([`crate::oci`]). Basic auth (htpasswd registries) and the
//! registry token flow ([`crate::auth`]: Docker Hub, GHCR, `auth: token` registries);
//! credentials and tokens never leave the request headers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flowstore_core::secret::{ExposeSecret, SecretString};

use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::oci::{
    ContainerConfig, Descriptor, Digest, History, ImageConfiguration, ImageManifest, Manifest,
    CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, INDEX, LAYER, MANIFEST,
};

/// A registry at `base` (e.g. `http://127.0.0.1:5000`).
#[derive(Clone)]
pub struct Registry {
    base: String,
    client: reqwest::Client,
    auth: Option<Credentials>,
    /// Bearer tokens from the registry's token server, by repository.
    tokens: Arc<Mutex<HashMap<String, SecretString>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base)
            .field("user", &self.auth.as_ref().map(|a| &a.username))
            .finish()
    }
}

impl Registry {
    /// A client for the registry at `host` (`127.0.0.1:5000`, or with a scheme); plain HTTP for
    /// loopback hosts, HTTPS otherwise.
    pub fn new(host: &str, auth: Option<Credentials>) -> Self {
        let base = if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_string()
        } else if host.starts_with("127.")
            || host.starts_with("localhost")
            || host.starts_with("[::1]")
        {
            format!("http://{host}")
        } else {
            format!("https://{host}")
        };
        Registry {
            base,
            // One client (one connection pool) for every registry this process talks to.
            client: flowstore_core::raw::clients::shared(
                flowstore_core::raw::clients::Fingerprint::new("docker-registry-http"),
                || {
                    reqwest::Client::builder()
                        .connect_timeout(std::time::Duration::from_secs(15))
                        .build()
                },
            )
            .expect("a default HTTP client builds"),
            auth,
            tokens: Arc::default(),
        }
    }

    /// The registry's base URL (`http://127.0.0.1:5000`).
    pub fn base(&self) -> &str {
        &self.base
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
                (None, Some(c)) => rb.basic_auth(&c.username, Some(c.password.expose_secret())),
                (None, None) => rb,
            };
            let resp = authed
                .send()
                .await
                .map_err(|e| self.transport_error(repo, what, e))?;
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
                        repo,
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

    /// An [`Error::Registry`] that is not about an HTTP status.
    fn error(&self, repo: &str, what: &str, message: impl Into<String>) -> Error {
        Error::Registry {
            registry: self.base.clone(),
            repository: repo.to_string(),
            what: what.to_string(),
            message: message.into(),
            status: None,
            source: None,
        }
    }

    /// An [`Error::Registry`] for a request that got no answer, keeping the transport error.
    fn transport_error(&self, repo: &str, what: &str, e: reqwest::Error) -> Error {
        let message = if e.is_timeout() {
            "the registry did not answer in time (try again; check the registry's load)"
        } else if e.is_connect() {
            "the registry cannot be reached (check the registry URL, and that it is running)"
        } else {
            "the request failed"
        };
        Error::Registry {
            registry: self.base.clone(),
            repository: repo.to_string(),
            what: what.to_string(),
            message: message.to_string(),
            status: None,
            source: Some(Box::new(e.without_url())),
        }
    }

    /// `resp` if it succeeded, else [`Registry::status_error`].
    async fn check(
        &self,
        repo: &str,
        what: &str,
        resp: reqwest::Response,
    ) -> Result<reqwest::Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.status_error(repo, what, resp).await)
    }

    /// The error for a failed response: its status, a hint, and the start of the registry's text.
    async fn status_error(&self, repo: &str, what: &str, resp: reqwest::Response) -> Error {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let hint = match status.as_u16() {
            401 | 403 => " (authentication failed: check the registry credentials)",
            404 => " (not found: check the registry URL and image name)",
            429 => " (rate limited: try again later)",
            500..=599 => " (the registry failed: try again later)",
            _ => "",
        };
        Error::Registry {
            registry: self.base.clone(),
            repository: repo.to_string(),
            what: what.to_string(),
            message: format!(
                "{status}{hint}: {}",
                body.trim().chars().take(200).collect::<String>()
            ),
            status: Some(status.as_u16()),
            source: None,
        }
    }

    async fn send(
        &self,
        what: &str,
        repo: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let resp = self.execute(what, repo, rb).await?;
        self.check(repo, what, resp).await
    }

    /// Whether the repository `name` has the blob `digest` (a `HEAD` request).
    ///
    /// Errors with [`Error::Registry`] when the registry refuses the credentials or cannot be
    /// reached.
    pub async fn has_blob(&self, name: &str, digest: &Digest) -> Result<bool> {
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
            401 | 403 => Err(self.status_error(name, &what, head).await),
            s if s >= 500 => Err(self.status_error(name, &what, head).await),
            _ => Ok(head.status().is_success()),
        }
    }

    /// Uploads a blob unless the registry has it; returns its descriptor (`media_type`, its
    /// digest and size).
    ///
    /// Errors with [`Error::Registry`] when the registry refuses the upload.
    pub async fn push_blob(
        &self,
        name: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Descriptor> {
        Ok(self.upload_blob(name, media_type, bytes).await?.0)
    }

    /// [`Registry::push_blob`], also telling whether the bytes were sent (`false`: the
    /// repository already had the blob, and nothing was uploaded).
    ///
    /// Errors as [`Registry::push_blob`] does.
    pub async fn upload_blob(
        &self,
        name: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(Descriptor, bool)> {
        let d = Digest::of(&bytes);
        let descriptor = Descriptor::new(media_type, d.clone(), bytes.len() as u64);
        if self.has_blob(name, &d).await? {
            return Ok((descriptor, false));
        }
        let url = self.start_upload(name, &d).await?;
        self.send(
            "uploading a blob",
            name,
            self.req(reqwest::Method::PUT, url.as_str())
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes),
        )
        .await?;
        Ok((descriptor, true))
    }

    /// Uploads a layer built in a temporary file unless the registry has it, streamed from the
    /// file (a monolithic `PUT` with its `Content-Length`; the registry checks the digest
    /// before it keeps the blob, so a failed or short upload leaves nothing behind). Returns its
    /// descriptor and whether the bytes were sent.
    ///
    /// Errors with [`Error::Registry`] when the registry refuses the upload (a digest it
    /// computed differently included), and [`flowstore_core::Error::Io`] when the file cannot be
    /// read.
    pub async fn upload_layer_file(
        &self,
        name: &str,
        media_type: &str,
        layer: &crate::layer::LayerFile,
    ) -> Result<(Descriptor, bool)> {
        let descriptor = Descriptor::new(media_type, layer.digest.clone(), layer.size);
        if self.has_blob(name, &layer.digest).await? {
            return Ok((descriptor, false));
        }
        let url = self.start_upload(name, &layer.digest).await?;
        let file = layer.reader().map_err(|e| {
            flowstore_core::Error::io(format!("reading the layer {} to push it", layer.digest), e)
        })?;
        self.put_stream(
            name,
            &format!("uploading layer {}", layer.digest),
            url,
            crate::layer::file_stream(file),
            layer.size,
        )
        .await?;
        Ok((descriptor, true))
    }

    /// Copies blob `descriptor` of repository `from_repo` in registry `from` to repository `name`
    /// here, unless it is here already, streamed (never held in memory): the source's answer is
    /// the upload's body, and this registry checks the digest before it keeps it. Returns
    /// whether the bytes were sent.
    ///
    /// Errors with [`Error::Registry`] when either registry refuses (a source blob that does not
    /// match its digest is refused by this registry).
    pub async fn copy_blob(
        &self,
        from: &Registry,
        from_repo: &str,
        name: &str,
        descriptor: &Descriptor,
    ) -> Result<bool> {
        let d = &descriptor.digest;
        if self.has_blob(name, d).await? {
            return Ok(false);
        }
        let url = self.start_upload(name, d).await?;
        let resp = from.blob_response(from_repo, d).await?;
        let what = format!("copying blob {d} from {}/{from_repo}", from.base);
        let body = futures::StreamExt::map(resp.bytes_stream(), |chunk| {
            chunk.map_err(std::io::Error::other)
        });
        self.put_stream(name, &what, url, body, descriptor.size)
            .await?;
        Ok(true)
    }

    /// Starts a blob upload (`POST /v2/<name>/blobs/uploads/`); returns the URL to `PUT` the
    /// blob to, with its `digest` query.
    async fn start_upload(&self, name: &str, d: &Digest) -> Result<reqwest::Url> {
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
                    name,
                    "starting an upload",
                    "the registry gave no upload location",
                )
            })?
            .to_string();
        let mut url = reqwest::Url::parse(&self.base)
            .and_then(|base| base.join(&location))
            .map_err(|e| {
                self.error(
                    name,
                    "starting an upload",
                    format!("the upload location {location:?} is not a URL: {e}"),
                )
            })?;
        url.query_pairs_mut().append_pair("digest", d.as_str());
        Ok(url)
    }

    /// Finishes an upload with a monolithic `PUT` of `len` bytes streamed from `body`. A stream
    /// error aborts the request (the registry keeps nothing); the registry refuses bytes that do
    /// not match the digest in `url`.
    async fn put_stream<S>(
        &self,
        name: &str,
        what: &str,
        url: reqwest::Url,
        body: S,
        len: u64,
    ) -> Result<()>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        self.send(
            what,
            name,
            self.req(reqwest::Method::PUT, url.as_str())
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap_stream(body)),
        )
        .await?;
        Ok(())
    }

    /// Pushes a one-layer `linux`/`amd64` image holding `files` (absolute image path, contents,
    /// mode) as `name:tag`, with `config` as the image config's container settings (`Env`,
    /// `Cmd`, …); returns the manifest digest. A base image made without any daemon or download
    /// (tests, scratch images for static binaries).
    ///
    /// Errors as [`Registry::push_blob`] and [`Registry::push_manifest`] do.
    pub async fn push_files_image(
        &self,
        name: &str,
        tag: &str,
        files: &[(String, Vec<u8>, u32)],
        config: ContainerConfig,
    ) -> Result<Digest> {
        let layer = crate::layer::build(files)
            .map_err(|e| flowstore_core::Error::io("building the image layer", e))?;
        let layer_descriptor = self.push_blob(name, LAYER, layer.gz).await?;
        let mut image_config = ImageConfiguration::new(config, vec![layer.diff_id]);
        image_config.history.push(History {
            created_by: Some("flowstore: push_files_image".into()),
            ..History::default()
        });
        let image_config =
            Bytes::from(serde_json::to_vec(&image_config).expect("image configs serialize"));
        let config = self.push_blob(name, CONFIG, image_config).await?;
        self.push_manifest(
            name,
            tag,
            &ImageManifest::new(config, vec![layer_descriptor]).into(),
        )
        .await
    }

    /// Puts a manifest (or an index) under `reference` (a tag), typed by its media type; returns
    /// its digest.
    ///
    /// Errors with [`Error::Registry`] when the registry refuses it (a blob it names is missing,
    /// the credentials may not push).
    pub async fn push_manifest(
        &self,
        name: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest> {
        let body = manifest.to_vec();
        let d = Digest::of(&body);
        self.send(
            &format!("pushing manifest {reference}"),
            name,
            self.req(
                reqwest::Method::PUT,
                &format!("{}/v2/{name}/manifests/{reference}", self.base),
            )
            .header(reqwest::header::CONTENT_TYPE, manifest.media_type())
            .body(body),
        )
        .await?;
        Ok(d)
    }

    /// A request for manifest (or index) `name:reference` accepting every manifest and index
    /// type flowstore reads.
    fn manifest_request(
        &self,
        method: reqwest::Method,
        name: &str,
        reference: &str,
    ) -> reqwest::RequestBuilder {
        self.req(
            method,
            &format!("{}/v2/{name}/manifests/{reference}", self.base),
        )
        .header(
            reqwest::header::ACCEPT,
            format!("{MANIFEST}, {DOCKER_MANIFEST}, {INDEX}, {DOCKER_MANIFEST_LIST}"),
        )
    }

    /// A manifest or index by tag or digest, with its descriptor (media type, digest, size; the
    /// digest is checked when `reference` is one).
    ///
    /// Errors with [`Error::Registry`] (status 404 when the repository, tag or manifest does not
    /// exist), [`Error::DigestMismatch`] when the bytes do not match the digest asked for, and
    /// [`Error::Config`] naming the field a malformed manifest lacks.
    pub async fn manifest(&self, name: &str, reference: &str) -> Result<(Manifest, Descriptor)> {
        let what = format!("reading manifest {reference}");
        let resp = self
            .send(
                &what,
                name,
                self.manifest_request(reqwest::Method::GET, name, reference),
            )
            .await?;
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(name, &what, e))?;
        let d = Digest::of(&body);
        if reference.contains(':') && d.as_str() != reference {
            return Err(Error::DigestMismatch {
                registry: self.base.clone(),
                what: format!("manifest {reference} of {name}"),
                actual: d.to_string(),
            });
        }
        let manifest = Manifest::from_slice(
            &body,
            &format!("manifest {reference} of {name} in {}", self.base),
        )?;
        let media_type = content_type.unwrap_or_else(|| manifest.media_type().to_string());
        Ok((manifest, Descriptor::new(&media_type, d, body.len() as u64)))
    }

    /// The image manifest of `name:reference` for `os`/`architecture`: the manifest itself for a
    /// single-platform image; for an index (multi-platform image), the entry for that platform,
    /// read by its digest. Returns the manifest and its descriptor.
    ///
    /// Errors as [`Registry::manifest`] does, and with [`Error::Registry`] naming the platforms
    /// the index has when none matches.
    pub async fn platform_manifest(
        &self,
        name: &str,
        reference: &str,
        os: &str,
        architecture: &str,
    ) -> Result<(ImageManifest, Descriptor)> {
        let index = match self.manifest(name, reference).await? {
            (Manifest::Image(m), d) => return Ok((m, d)),
            (Manifest::Index(index), _) => index,
        };
        let matches = |e: &Descriptor| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == architecture)
        };
        let Some(entry) = index.manifests.iter().find(|e| matches(e)) else {
            let has: Vec<String> = index
                .manifests
                .iter()
                .map(|e| {
                    e.platform
                        .as_ref()
                        .map_or("?".to_string(), |p| p.to_string())
                })
                .collect();
            return Err(self.error(
                name,
                &format!("choosing a platform of {name}:{reference}"),
                format!(
                    "the image has no {os}/{architecture} variant (it has: {})",
                    has.join(", ")
                ),
            ));
        };
        match self.manifest(name, entry.digest.as_str()).await? {
            (Manifest::Image(m), d) => Ok((m, d)),
            (Manifest::Index(_), _) => Err(self.error(
                name,
                &format!("reading the {os}/{architecture} manifest of {name}:{reference}"),
                format!("{} is another index, not an image manifest", entry.digest),
            )),
        }
    }

    /// A blob by digest, verified.
    ///
    /// Errors with [`Error::Registry`] (status 404 when the blob does not exist) and
    /// [`Error::DigestMismatch`] when the bytes do not match.
    pub async fn blob(&self, name: &str, d: &Digest) -> Result<Bytes> {
        let what = format!("reading blob {d}");
        let bytes = self
            .blob_response(name, d)
            .await?
            .bytes()
            .await
            .map_err(|e| self.transport_error(name, &what, e))?;
        let actual = Digest::of(&bytes);
        if &actual != d {
            return Err(self.digest_mismatch(name, d, &actual));
        }
        Ok(bytes)
    }

    /// The [`Error::DigestMismatch`] for blob `d` of `name` that came back as `actual`.
    pub(crate) fn digest_mismatch(&self, name: &str, d: &Digest, actual: &Digest) -> Error {
        Error::DigestMismatch {
            registry: self.base.clone(),
            what: format!("blob {d} of {name}"),
            actual: actual.to_string(),
        }
    }

    /// The registry's answer to `GET /v2/<name>/blobs/<d>`, its body not read yet (nothing is
    /// verified: the caller hashes what it reads, as [`crate::layer`]'s fetch does).
    ///
    /// Errors with [`Error::Registry`] (status 404 when the blob does not exist).
    pub(crate) async fn blob_response(&self, name: &str, d: &Digest) -> Result<reqwest::Response> {
        let what = format!("reading blob {d}");
        self.send(
            &what,
            name,
            self.req(
                reqwest::Method::GET,
                &format!("{}/v2/{name}/blobs/{d}", self.base),
            ),
        )
        .await
    }

    /// An error while reading a blob's body, keeping the transport error.
    pub(crate) fn read_error(&self, name: &str, d: &Digest, e: reqwest::Error) -> Error {
        self.transport_error(name, &format!("reading blob {d}"), e)
    }

    /// Every tag of repository `name`, asking for `page` tags at a time
    /// (`GET /v2/<name>/tags/list?n=<page>`) and following the registry's
    /// `Link: <…>; rel="next"` header from page to page (registries that ignore `n`, such as
    /// Distribution 2.8, answer with every tag at once). A repository the registry does not know
    /// has no tags.
    ///
    /// Errors with [`Error::Registry`] when the registry refuses the credentials, cannot be
    /// reached, or answers with something that is not a tag list.
    pub async fn tags(&self, name: &str, page: usize) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let what = "listing tags";
        let mut url = format!("{}/v2/{name}/tags/list?n={}", self.base, page.max(1));
        let mut seen = std::collections::HashSet::new();
        let mut tags = Vec::new();
        loop {
            if !seen.insert(url.clone()) {
                return Err(self.error(
                    name,
                    what,
                    format!("the registry's next page {url} was already read (a Link loop)"),
                ));
            }
            let resp = self
                .execute(what, name, self.req(reqwest::Method::GET, &url))
                .await?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                // NAME_UNKNOWN: no image was ever pushed there (or every one was deleted).
                return Ok(tags);
            }
            let resp = self.check(name, what, resp).await?;
            let next = resp
                .headers()
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            let body = resp
                .bytes()
                .await
                .map_err(|e| self.transport_error(name, what, e))?;
            let list: TagList = serde_json::from_slice(&body).map_err(|e| {
                self.error(name, what, format!("the answer is not a tag list: {e}"))
            })?;
            tags.extend(list.tags.unwrap_or_default());
            match next {
                None => return Ok(tags),
                Some(link) => {
                    url = reqwest::Url::parse(&self.base)
                        .and_then(|base| base.join(&link))
                        .map_err(|e| {
                            self.error(
                                name,
                                what,
                                format!("the next page {link:?} is not a URL: {e}"),
                            )
                        })?
                        .to_string();
                }
            }
        }
    }

    /// The digest of the manifest (or index) `name:reference` names, from a `HEAD` request's
    /// `Docker-Content-Digest` (accepting OCI and Docker manifests and indexes); read with a
    /// `GET` and hashed when the registry does not send that header. `None` when the registry
    /// has no such tag or manifest.
    ///
    /// Errors with [`Error::Registry`] when the registry refuses the credentials, cannot be
    /// reached or fails, and [`Error::Config`] for a malformed digest header.
    pub async fn manifest_digest(&self, name: &str, reference: &str) -> Result<Option<Digest>> {
        let what = format!("resolving manifest {reference}");
        let head = self
            .execute(
                &what,
                name,
                self.manifest_request(reqwest::Method::HEAD, name, reference),
            )
            .await?;
        if head.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let head = self.check(name, &what, head).await?;
        match head
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(d) => Ok(Some(d.trim().parse()?)),
            None => match self.manifest(name, reference).await {
                Ok((_, descriptor)) => Ok(Some(descriptor.digest)),
                Err(Error::Registry {
                    status: Some(404), ..
                }) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Deletes the manifest `digest` of repository `name` (`DELETE /v2/<name>/manifests/<digest>`),
    /// which removes every tag naming it. Returns false when it was already gone. Layers stay
    /// until the registry's own garbage collection frees them.
    ///
    /// Errors with [`Error::Registry`] saying the registry does not allow deleting manifests when
    /// it answers `405` (Distribution without `storage.delete.enabled`), `401`/`403` (credentials
    /// that may not delete; Docker Hub and other hosted registries) or `400`/`501` with code
    /// `UNSUPPORTED`, with what to do; as other requests do otherwise.
    pub async fn delete_manifest(&self, name: &str, digest: &Digest) -> Result<bool> {
        let what = format!("deleting manifest {digest}");
        let resp = self
            .execute(
                &what,
                name,
                self.req(
                    reqwest::Method::DELETE,
                    &format!("{}/v2/{name}/manifests/{digest}", self.base),
                ),
            )
            .await?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(true),
            404 => Ok(false),
            400 | 401 | 403 | 405 | 501 => {
                let body = resp.text().await.unwrap_or_default();
                if matches!(status, 400 | 501) && !body.contains("UNSUPPORTED") {
                    return Err(Error::Registry {
                        registry: self.base.clone(),
                        repository: name.to_string(),
                        what,
                        message: format!(
                            "{status}: {}",
                            body.trim().chars().take(200).collect::<String>()
                        ),
                        status: Some(status),
                        source: None,
                    });
                }
                Err(Error::Registry {
                    registry: self.base.clone(),
                    repository: name.to_string(),
                    what,
                    message: format!(
                        "{status}: the registry does not allow deleting manifests{}. For a \
                         Distribution registry (`registry`, `docker-registry`) enable deletes with \
                         `storage.delete.enabled: true` in its config.yml (or \
                         REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it; hosted registries \
                         (Docker Hub, …) delete images through their own UI or API. Nothing was \
                         deleted. Even after a delete, layers are freed only by the registry's own \
                         garbage collection (`registry garbage-collect <config.yml>`). The \
                         registry said: {}",
                        if matches!(status, 401 | 403) {
                            " with these credentials (they may read but not delete)"
                        } else {
                            ""
                        },
                        body.trim().chars().take(200).collect::<String>()
                    ),
                    status: Some(status),
                    source: None,
                })
            }
            _ => Err(self.status_error(name, &what, resp).await),
        }
    }
}

/// The target of a `Link` header value with `rel="next"` (`</v2/x/tags/list?n=2&last=b>;
/// rel="next"`).
fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_found() {
        assert_eq!(
            next_link("</v2/a/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(
            next_link("<https://r/v2/a/tags/list?last=c>; rel=\"prev\", <https://r/v2/a/tags/list?last=d>; rel=next").as_deref(),
            Some("https://r/v2/a/tags/list?last=d")
        );
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
    }
}
