//! The `Docker` storage: the [`Storage`] implementation and opening a reference.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::bundle::{FetchOptions, FetchedBundle};
use flowstore_core::envelope::SealedFlow;
use flowstore_core::raw::config::BackendConfig;
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::SecretSource;
use flowstore_core::{
    async_trait, key, Capabilities, Error as CoreError, FetchedFlow, FlowInput, OpenContext,
    Progress, ProgressFn, Result, Storage, StorageReference,
};

use crate::builder::DockerBuilder;
use crate::bundles::StagedBundle;
use crate::config::{BuildConfig, BuildMode, DockerConfig, TYPE_NAME};
use crate::credentials::{self, Credentials};
use crate::oci::Digest;

/// Flows in a container image: made by [`DockerBuilder`] (`Docker::builder()`), or opened from
/// a reference ([`Docker::from_reference`]) or a `docker://` URL ([`Docker::from_url`]).
///
/// `add_flow` stages flows, `persist` builds and pushes the image and records its digest,
/// `get_flow` reads a flow inside the image from its file, and outside it from the registry
/// (only the flow's layer, by digest).
#[derive(Clone)]
pub struct Docker {
    pub(crate) config: DockerConfig,
    pub(crate) build: BuildConfig,
    pub(crate) index: FlowIndex,
    /// Flows waiting for `persist`: name, image path, the sealed flow (in memory, or still in
    /// its file until the layer is written; a bundle's manifest included).
    pub(crate) staged: Vec<(String, String, SealedFlow)>,
    /// Bundle trees waiting for `persist`, each for a layer of its own.
    pub(crate) staged_bundles: Vec<StagedBundle>,
    pub(crate) secrets: Arc<dyn SecretSource>,
    /// The builder's `username`/`password` (never recorded).
    pub(crate) credentials: Option<Credentials>,
    /// It describes a built image (opened from a reference, or persisted) and builds no other.
    pub(crate) built: bool,
    /// Told how far a build or push is.
    pub(crate) progress: Option<ProgressFn>,
    /// Timestamp tag → manifest digest, as `list_versions` last read them (a timestamp tag is
    /// pushed once), so `delete_version`'s shared-manifest check need not resolve every tag
    /// again.
    pub(crate) tag_digests: Arc<std::sync::Mutex<std::collections::HashMap<String, Digest>>>,
}

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker")
            .field("config", &self.config)
            .field("mode", &self.build.mode)
            .field("flows", &self.index.flows)
            .field("credentials", &self.credentials.as_ref().map(|_| "[given]"))
            .finish()
    }
}

impl Docker {
    /// A builder with the defaults: an Engine build, flows in `/opt/flowstore`, no registry.
    pub fn builder() -> DockerBuilder {
        DockerBuilder::new()
    }

    /// Opens a `Docker` reference: a storage describing the built image, for `get_flow`.
    ///
    /// Errors with [`CoreError::InvalidReference`] when its fields do not fit [`DockerConfig`].
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<Self> {
        Ok(Docker {
            config: DockerConfig::from_reference(reference)?,
            build: BuildConfig::default(),
            index: FlowIndex::from_reference(reference),
            staged: Vec::new(),
            staged_bundles: Vec::new(),
            secrets: ctx.secrets.clone(),
            credentials: None,
            built: true,
            progress: ctx.progress.clone(),
            tag_digests: Arc::default(),
        })
    }

    /// The reference fields.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The build settings (defaults for a storage opened from a reference).
    pub fn build_config(&self) -> &BuildConfig {
        &self.build
    }

    /// `registry/name:tag` (see [`DockerConfig::image_ref`]).
    pub fn image_ref(&self) -> Option<String> {
        self.config.image_ref()
    }

    pub(crate) fn report(&self, progress: Progress) {
        if let Some(report) = &self.progress {
            report(progress);
        }
    }

    /// Registry credentials (see [`credentials::resolve`]).
    pub(crate) fn registry_auth(&self) -> crate::Result<Option<Credentials>> {
        credentials::resolve(
            self.credentials.as_ref(),
            &self.config,
            self.secrets.as_ref(),
        )
    }
}

#[async_trait]
impl Storage for Docker {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn index(&self) -> &FlowIndex {
        &self.index
    }

    fn index_mut(&mut self) -> &mut FlowIndex {
        &mut self.index
    }

    fn capabilities(&self) -> Capabilities {
        let script = self.config.stored_as_script;
        // Versions are images in a registry; a local image (no registry) has none to list.
        let registry = self.config.registry_url.is_some();
        Capabilities {
            write: true,
            many_flows: true,
            serialized: !script,
            script,
            list_versions: registry,
            stream_to_file: true,
            bundles: !script,
            delete_versions: registry,
        }
    }

    /// Lists the images of this storage's repository in its registry, newest first: one version
    /// per tag that is a flowstore timestamp slug (`latest`, `v1` and other tags are not
    /// versions), read through the distribution API (`GET /v2/<name>/tags/list`, paged by the
    /// `Link` header, then each tag's manifest and config). Each version's location is
    /// `<registry>/<image name>:<tag>`; its slug is the flow's slug when the image holds one
    /// flow (the `io.flowstore.flows` label flowstore writes), else the last segment of the image
    /// name; `stored_at` is the tag's time; `size` the image's total compressed layer size
    /// (base layers included, which other images share). `flow` keeps the versions whose slug is
    /// that flow's slug.
    ///
    /// Errors with [`CoreError::Unsupported`] for a storage without a registry (a local image),
    /// [`CoreError::Config`] before the image has a name, and as the registry's answers map
    /// ([`CoreError::PermissionDenied`] for refused credentials, a temporary
    /// [`CoreError::Backend`] for an unreachable registry).
    async fn list_versions(
        &self,
        flow: Option<&str>,
    ) -> Result<Vec<flowstore_core::StoredVersion>> {
        self.list_image_versions(flow).await
    }

    /// Deletes one image version: `version.location` must be
    /// `<this registry>/<this image name>:<timestamp tag>`. The tag's manifest digest is
    /// resolved (`HEAD /v2/<name>/manifests/<tag>`) and the manifest deleted by digest
    /// (`DELETE /v2/<name>/manifests/<digest>`); a tag already gone is not an error. Deleting by
    /// digest removes every tag naming that manifest, so a manifest another tag also names is
    /// not deleted. The registry frees the layers only at its own garbage collection
    /// (`registry garbage-collect`).
    ///
    /// Errors with [`CoreError::Config`] (nothing sent, nothing deleted) for any other location,
    /// and (nothing deleted) when another tag names the same manifest; with
    /// [`CoreError::Backend`] or [`CoreError::PermissionDenied`] saying the registry does not
    /// allow deleting manifests, and how to enable it, when it refuses (`405` from Distribution
    /// without `storage.delete.enabled`, `401`/`403` from hosted registries);
    /// [`CoreError::Unsupported`] for a storage without a registry.
    async fn delete_version(&self, version: &flowstore_core::StoredVersion) -> Result<()> {
        self.delete_image_version(version).await
    }

    /// The image (`<registry>/<name>:<tag>`, as [`Storage::list_versions`] lists it) once it
    /// is built: every flow of this storage lives in that one version.
    fn version_locations(&self) -> Vec<String> {
        match (&self.config.registry_url, &self.config.image_tag) {
            (Some(_), Some(_)) if !self.flows().is_empty() => {
                self.image_ref().into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Stages a serialized flow for the image; its location is `{directory}/flows/{slug}.flow`.
    /// In script mode the flow is the script at `path` (its SHA-256 recorded when `path` is a
    /// destination in `files`).
    ///
    /// A bundle (serialized mode only) is scanned now: its manifest is staged as the flow's file
    /// (its digest recorded), and its tree for an image layer of its own at
    /// `{directory}/flows/{slug}.bundle/`, built deterministically and pushed by `persist` (a
    /// registry that has the same layer is sent nothing).
    ///
    /// Errors with [`CoreError::Config`] on a storage that describes a built image, or a flow
    /// whose form does not fit the mode (a bundle in script mode is
    /// [`CoreError::Unsupported`]); a bundle's scan errors name the path.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        if self.built {
            return Err(CoreError::config(format!(
                "this Docker storage describes the built image {}; build another image with Docker::builder()",
                self.image_ref().unwrap_or_default()
            )));
        }
        self.index.ensure_new(flow.name())?;
        let name = flow.name().to_string();
        let location = match (flow, self.config.stored_as_script) {
            (FlowInput::Bundle(_), true) => {
                return Err(flowstore_core::bundle::unsupported(TYPE_NAME, &name))
            }
            (_, true) => {
                let path = self.config.path.clone().ok_or_else(|| {
                    CoreError::config("A `path` must be provided to show where flow `.py` file is stored in the image.")
                })?;
                if let Some(digest) = self.script_digest(&path)? {
                    self.index.digests.insert(name.clone(), digest);
                }
                path
            }
            (FlowInput::Serialized(sealed), false) => {
                let location = self.flow_location(&name);
                self.index.digests.insert(name.clone(), sealed.digest());
                self.staged.push((name.clone(), location.clone(), sealed));
                location
            }
            (FlowInput::Bundle(input), false) => return self.add_bundle(input).await,
            (FlowInput::Script { .. }, false) => {
                return Err(CoreError::config(format!(
                    "Flow \"{name}\" is a script flow: set stored_as_script and `path`"
                )))
            }
        };
        self.index.flows.insert(name, location.clone());
        Ok(location)
    }

    /// Builds and pushes the image (Engine or daemonless) and records its digest; nothing to do
    /// on a storage that describes a built image.
    ///
    /// Each bundle's tree is a layer of its own, below the layer of flow files; the reference
    /// records its digest (`bundle_layers`). A daemonless build records what it pushed for each
    /// bundle ([`transfer_report`](Storage::transfer_report)): the layer (one object of its
    /// compressed size, or one reused object when the registry already had it) and the manifest.
    /// A one-file change makes a new layer, pushed whole. An Engine build records no report: the
    /// daemon pushes, and does not say which layers the registry already had.
    ///
    /// Errors with [`CoreError::NotFound`] for a missing base image, [`CoreError::PermissionDenied`]
    /// for refused registry credentials, a temporary [`CoreError::Backend`] for an unreachable
    /// registry or daemon, and [`CoreError::Backend`] with [`BUILD_FAILED`](crate::BUILD_FAILED)
    /// for a failed build or health check.
    async fn persist(&mut self) -> Result<()> {
        if self.built {
            return Ok(());
        }
        if self.config.image_name.is_none() {
            let names: Vec<&String> = self.index.flows.keys().collect();
            let name = match names.as_slice() {
                [one] => key::flow_slug(one),
                _ => {
                    tracing::info!("several flows and no image_name: the image is named \"flows\"");
                    "flows".to_string()
                }
            };
            self.config.image_name = Some(name);
        }
        if self.config.image_tag.is_none() {
            self.config.image_tag = Some(key::timestamp_slug(&key::unique_timestamp()));
        }
        let name = self.config.image_name.clone().expect("set");
        let tag = self.config.image_tag.clone().expect("set");
        let started = std::time::Instant::now();
        let digest = match self.build.mode {
            BuildMode::Daemonless => Some(self.build_daemonless(&name, &tag).await?.to_string()),
            BuildMode::Engine => {
                #[cfg(feature = "engine")]
                {
                    let (digest, bundle_layers) =
                        crate::engine::build_and_push(self, &name, &tag).await?;
                    self.config.bundle_layers.extend(bundle_layers);
                    digest
                }
                #[cfg(not(feature = "engine"))]
                {
                    return Err(CoreError::config(
                        "this flowstore-docker was built without the `engine` feature: use BuildMode::Daemonless",
                    ));
                }
            }
        };
        tracing::info!(image = %self.image_ref().unwrap_or_default(), ?digest, elapsed = ?started.elapsed(), "built image");
        self.config.image_digest = digest;
        self.staged.clear();
        self.staged_bundles.clear();
        self.built = true;
        Ok(())
    }

    /// Inside the image: reads the flow's file. Outside: reads just the flow's layer from the
    /// registry by digest (no daemon, no full pull), streamed: only the flow is held in memory,
    /// never the compressed layer. Either way the digest is checked (the layer's, and the
    /// flow's).
    ///
    /// Errors with [`CoreError::FlowCorrupt`] when the bytes do not match what was registered
    /// (or the registry's blob does not match its digest), [`CoreError::NotFound`] when the image
    /// or the flow's file in it is missing, [`CoreError::PermissionDenied`] when the registry
    /// refuses the credentials.
    async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        let path = PathBuf::from(&location);
        let bytes = if path.is_file() {
            Bytes::from(
                std::fs::read(&path)
                    .map_err(|e| CoreError::io(format!("reading {location}"), e))?,
            )
        } else {
            self.fetch_outside(name, &location).await?
        };
        let revision = self.config.image_digest.clone();
        if self.config.stored_as_script {
            self.index
                .open_script(name, &location, revision, bytes, Some(path))
        } else {
            self.index.open_serialized(name, &location, revision, bytes)
        }
    }

    /// Writes flow `name` to `dest` without holding it in memory: inside the image from its file,
    /// outside from its layer streamed from the registry (gunzipped and untarred as it arrives),
    /// through a [`FlowFileSink`](flowstore_core::raw::sink::FlowFileSink) that checks the
    /// envelope and the recorded digest as it writes. `dest` appears only once every check
    /// passed, the layer's own digest included; an existing file is never replaced.
    ///
    /// Errors as [`get_flow`](Storage::get_flow) does, and with [`CoreError::Io`] when `dest`
    /// cannot be written.
    async fn get_flow_to_file(&self, name: &str, dest: &Path) -> Result<FetchedFlow> {
        self.flow_to_file(name, dest).await
    }

    /// Fetches bundle flow `name` into `dest`: the manifest through `get_flow` (verified against
    /// the reference), then its files from the blob cache when every one of them is there (no
    /// download); inside the image from the tree at `{directory}/flows/{slug}.bundle/`; otherwise
    /// from the bundle's one layer, fetched from the registry by the digest the reference records
    /// (`bundle_layers`), verified, and unpacked into the cache file by file (each checked against
    /// the manifest). The tree is then materialized atomically.
    ///
    /// The transfer report counts the layer: one object of its compressed size when it was
    /// downloaded; else one reused object of the files' total size.
    ///
    /// Errors with [`CoreError::FlowCorrupt`] (nothing materialized) when the layer does not match
    /// its digest, holds an entry that is not a regular file listed in the manifest (a `..` or
    /// absolute path, a symlink, a device, an unlisted file), or a file whose bytes do not match
    /// the manifest (named); [`CoreError::InvalidReference`] when the reference records no layer
    /// for the flow; as `get_flow` and [`materialize_from_cache`](flowstore_core::bundle::materialize_from_cache)
    /// do otherwise.
    async fn get_bundle(
        &self,
        name: &str,
        dest: &Path,
        options: &FetchOptions,
    ) -> Result<FetchedBundle> {
        self.fetch_bundle(name, dest, options).await
    }

    fn reference(&self) -> Result<StorageReference> {
        let mut reference = StorageReference::new(TYPE_NAME, &self.config)?;
        self.index.fill_reference(&mut reference, self.labels());
        Ok(reference)
    }
}
