//! `Docker` storage: flows baked into an image, pushed to a registry, checked at build.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource, SecretString};
use flowstore_core::{
    async_trait, key, Error as CoreError, FetchedFlow, FlowInput, OpenContext, Progress,
    ProgressFn, Result, Storage, StorageReference,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Error;
use crate::layer;
use crate::registry::{self, Registry};

/// The reference type name.
pub const TYPE_NAME: &str = "Docker";

/// The message of a build that failed, as in the reference system, followed by the daemon's text.
pub const BUILD_FAILED: &str = "Your docker image failed to build! Your flow might have failed one of its deployment health checks - please ensure that all necessary files and dependencies have been included.";

fn default_dir() -> String {
    "/opt/flowstore".to_string()
}

/// The fields of a `Docker` reference (Prefect 1's names; `image_digest` and `directory` are
/// flowstore's: a run pulls exactly what was built).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerFields {
    /// The registry (`host:port`), or none for a local-only image.
    #[serde(default)]
    pub registry_url: Option<String>,
    /// The image name (default: the slug of the single flow's name).
    #[serde(default)]
    pub image_name: Option<String>,
    /// The tag (default: the timestamp slug).
    #[serde(default)]
    pub image_tag: Option<String>,
    /// The pushed manifest's digest.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Where flows live in the image (default `/opt/flowstore`).
    #[serde(default = "default_dir")]
    pub directory: String,
    /// Script mode: the script's path inside the image.
    #[serde(default)]
    pub path: Option<String>,
    /// Script mode.
    #[serde(default)]
    pub stored_as_script: bool,
    /// The flowstore version that built the image.
    #[serde(default)]
    pub flowstore_version: Option<String>,
    /// The name (never the value) of the secret holding the registry username, so an agent can
    /// read a private registry with its own secret sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_username_secret: Option<String>,
    /// The name of the secret holding the registry password or token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_password_secret: Option<String>,
}

/// How the image is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// Through a Docker Engine (generated Dockerfile, `docker build`, push).
    Engine,
    /// Without any daemon: one layer appended to the base image, pushed through the registry API.
    Daemonless,
}

/// TLS files for a remote Docker Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Client key (PEM).
    pub key: PathBuf,
    /// Client certificate (PEM).
    pub cert: PathBuf,
    /// CA certificate (PEM).
    pub ca: PathBuf,
}

/// Build settings (not stored in the reference).
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Engine or daemonless.
    pub mode: BuildMode,
    /// The base image (`registry/name:tag`; daemonless: it must be in a registry).
    pub base_image: Option<String>,
    /// A whole Dockerfile instead of `base_image` (Engine only).
    pub dockerfile: Option<String>,
    /// Absolute host path → image path.
    pub files: BTreeMap<String, String>,
    /// Environment of the image.
    pub env_vars: BTreeMap<String, String>,
    /// Extra Dockerfile lines (Engine only).
    pub extra_dockerfile_commands: Vec<String>,
    /// Packages to install (Engine only) with `install_command` (`{packages}` is replaced).
    pub dependencies: Vec<String>,
    /// The install command (default `pip install {packages}`).
    pub install_command: String,
    /// A command run in the image at build to prove the flows load (Engine only).
    pub load_command: Option<String>,
    /// Keep the local image after pushing (Engine).
    pub local_image: bool,
    /// The Docker host (default `DOCKER_HOST`, else the local socket).
    pub base_url: Option<String>,
    /// TLS client key, certificate and CA files for a `tcp://`/`https://` Docker host (default:
    /// `DOCKER_CERT_PATH/{key,cert,ca}.pem` when `DOCKER_TLS_VERIFY` is set).
    pub tls: Option<TlsFiles>,
    /// Build arguments (Engine).
    pub build_args: BTreeMap<String, String>,
    /// Names of the secrets holding the registry username and password, if it needs them
    /// ([`Docker::new`] moves them into the reference fields).
    pub registry_credentials: Option<(String, String)>,
    /// Daemonless: the architecture picked from a multi-platform base image (default: this
    /// machine's, as Docker names it: `amd64`, `arm64`, …).
    pub platform: String,
}

/// This machine's architecture as OCI platforms name it.
fn host_architecture() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
    .to_string()
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            mode: BuildMode::Engine,
            base_image: None,
            dockerfile: None,
            files: BTreeMap::new(),
            env_vars: BTreeMap::new(),
            extra_dockerfile_commands: Vec::new(),
            dependencies: Vec::new(),
            install_command: "pip install {packages}".to_string(),
            load_command: None,
            local_image: false,
            base_url: None,
            tls: None,
            build_args: BTreeMap::new(),
            registry_credentials: None,
            platform: host_architecture(),
        }
    }
}

/// Flows in a container image.
#[derive(Clone)]
pub struct Docker {
    pub(crate) fields: DockerFields,
    pub(crate) build: BuildConfig,
    pub(crate) index: FlowIndex,
    pub(crate) staged: Vec<(String, String, Bytes)>,
    pub(crate) secrets: Arc<dyn SecretSource>,
    /// Opened from a reference: it describes a built image and cannot build another.
    pub(crate) built: bool,
    /// Told how far a build or push is.
    pub(crate) progress: Option<ProgressFn>,
}

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker")
            .field("fields", &self.fields)
            .field("flows", &self.index.flows)
            .finish()
    }
}

impl Docker {
    /// Docker storage pushing to `registry_url` (`None`: local image only). The names of
    /// `build.registry_credentials` go into the reference (never their values).
    pub fn new(registry_url: Option<&str>, mut build: BuildConfig) -> Self {
        // The secret names live in the reference fields from here on: one copy, read by
        // `registry_auth` both when building and when an agent opens the reference.
        let credentials = build.registry_credentials.take();
        let (registry_username_secret, registry_password_secret) = credentials
            .clone()
            .map_or((None, None), |(u, p)| (Some(u), Some(p)));
        Docker {
            fields: DockerFields {
                registry_url: registry_url.map(str::to_string),
                image_name: None,
                image_tag: None,
                image_digest: None,
                directory: default_dir(),
                path: None,
                stored_as_script: false,
                flowstore_version: Some(flowstore_core::envelope::FLOWSTORE_VERSION.to_string()),
                registry_username_secret,
                registry_password_secret,
            },
            index: FlowIndex {
                // Declared, so an agent resolves them (and names a missing one) before fetching.
                secrets: credentials.into_iter().flat_map(|(u, p)| [u, p]).collect(),
                ..FlowIndex::default()
            },
            build,
            staged: Vec::new(),
            secrets: Arc::new(NoSecrets),
            built: false,
            progress: None,
        }
    }

    /// Reports build steps and pushed layers to `progress` (the CLI draws a bar with it).
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Stores flows as scripts: `path` is the script's path inside the image. When `path` is a
    /// destination in `files`, the script's SHA-256 is recorded at registration, checked by the
    /// build's health check and again by `get_flow`.
    pub fn script(mut self, path: &str) -> Self {
        self.fields.stored_as_script = true;
        self.fields.path = Some(path.to_string());
        self
    }

    /// Builds into `directory` inside the image instead of `/opt/flowstore`.
    pub fn directory(mut self, directory: &str) -> Self {
        self.fields.directory = directory.to_string();
        self
    }

    pub(crate) fn report(&self, progress: Progress) {
        if let Some(report) = &self.progress {
            report(progress);
        }
    }

    /// Sets the image name and tag.
    pub fn image(mut self, name: &str, tag: Option<&str>) -> Self {
        self.fields.image_name = Some(name.to_string());
        self.fields.image_tag = tag.map(str::to_string);
        self
    }

    /// Where registry credentials are looked up.
    pub fn secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// The reference fields.
    pub fn fields(&self) -> &DockerFields {
        &self.fields
    }

    /// `registry/name:tag`.
    pub fn image_ref(&self) -> Option<String> {
        let name = self.fields.image_name.as_ref()?;
        let tag = self.fields.image_tag.as_deref().unwrap_or("latest");
        Some(match &self.fields.registry_url {
            Some(r) => format!("{r}/{name}:{tag}"),
            None => format!("{name}:{tag}"),
        })
    }

    /// Opens a `Docker` reference.
    pub fn from_reference(reference: &StorageReference, ctx: &OpenContext) -> Result<Self> {
        let fields: DockerFields = reference.backend_fields()?;
        Ok(Docker {
            fields,
            build: BuildConfig::default(),
            index: FlowIndex::from_reference(reference),
            staged: Vec::new(),
            secrets: ctx.secrets.clone(),
            built: true,
            progress: ctx.progress.clone(),
        })
    }

    /// Registry credentials: the secrets the reference names, else the Docker CLI's config for the
    /// registry (see [`docker_config_auth`]), else none.
    pub(crate) fn registry_auth(&self) -> crate::Result<Option<(String, SecretString)>> {
        let names = self
            .fields
            .registry_username_secret
            .as_ref()
            .zip(self.fields.registry_password_secret.as_ref());
        match names {
            None => Ok(self
                .fields
                .registry_url
                .as_deref()
                .and_then(docker_config_auth)),
            Some((u, p)) => {
                let user = flowstore_secrets::resolve(u, self.secrets.as_ref())?;
                let pass = flowstore_secrets::resolve(p, self.secrets.as_ref())?;
                use flowstore_core::secret::ExposeSecret;
                Ok(Some((user.expose_secret().to_string(), pass)))
            }
        }
    }

    fn validate(&self) -> crate::Result<()> {
        if self.build.base_image.is_some() && self.build.dockerfile.is_some() {
            return Err(Error::config(
                "Only one of `base_image` and `dockerfile` can be provided.",
            ));
        }
        for host in self.build.files.keys() {
            if !std::path::Path::new(host).is_absolute() {
                return Err(Error::config(format!("Provided paths {host} are not absolute file paths, please provide absolute paths only.")));
            }
        }
        if self.build.mode == BuildMode::Daemonless {
            let needs_daemon = [
                (
                    !self.build.extra_dockerfile_commands.is_empty(),
                    "extra_dockerfile_commands",
                ),
                (!self.build.dependencies.is_empty(), "dependencies"),
                (self.build.dockerfile.is_some(), "a dockerfile"),
                (self.build.load_command.is_some(), "a load command"),
            ];
            if let Some((_, what)) = needs_daemon.iter().find(|(on, _)| *on) {
                return Err(Error::config(format!(
                    "{what} need a Docker Engine to run; the daemonless build only adds a layer of files. Use BuildMode::Engine."
                )));
            }
            if self.build.base_image.is_none() {
                return Err(Error::config(
                    "the daemonless build needs a base_image in a registry (registry/name:tag)",
                ));
            }
        }
        Ok(())
    }

    /// The image path of a flow's file.
    pub fn flow_location(&self, name: &str) -> String {
        format!(
            "{}/flows/{}.flow",
            self.fields.directory.trim_end_matches('/'),
            key::flow_slug(name)
        )
    }

    /// The files of the flows layer: each flow, the `files`, and a `sha256sum -c` checklist of
    /// all of them (the build's health check).
    pub(crate) fn layer_files(&self) -> Result<Vec<(String, Vec<u8>, u32)>> {
        let mut files: Vec<(String, Vec<u8>, u32)> = self
            .staged
            .iter()
            .map(|(_, location, bytes)| (location.clone(), bytes.to_vec(), 0o644))
            .collect();
        for (host, image) in &self.build.files {
            let content =
                std::fs::read(host).map_err(|e| CoreError::io(format!("reading {host}"), e))?;
            // A script registered from this file must go into the image as it was registered.
            for (flow, location) in &self.index.flows {
                if location == image {
                    self.index.verify_digest(flow, host, &content)?;
                }
            }
            files.push((image.clone(), content, 0o644));
        }
        let checklist: String = files
            .iter()
            .map(|(path, content, _)| {
                format!(
                    "{}  {path}\n",
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content))
                )
            })
            .collect();
        files.push((
            format!(
                "{}/flows.sha256",
                self.fields.directory.trim_end_matches('/')
            ),
            checklist.into_bytes(),
            0o644,
        ));
        Ok(files)
    }

    /// Daemonless: the base image's layers plus one layer of flows, pushed through the registry API.
    async fn build_daemonless(
        &mut self,
        registry_url: &str,
        name: &str,
        tag: &str,
    ) -> crate::Result<String> {
        let base = self.build.base_image.clone().expect("validated");
        let (base_host, rest) = base.split_once('/').ok_or_else(|| {
            Error::config(format!("base_image {base} must be registry/name:tag: the daemonless build reads it from a registry"))
        })?;
        let (base_name, base_tag) = rest.rsplit_once(':').unwrap_or((rest, "latest"));
        let auth = self.registry_auth()?;
        let src = Registry::new(base_host, auth.clone());
        let dst = Registry::new(registry_url, auth);
        let (manifest, _) = src
            .platform_manifest(base_name, base_tag, "linux", &self.build.platform)
            .await?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut config: Value = serde_json::from_slice(&src.blob(base_name, &config_digest).await?)
            .map_err(|e| {
                Error::config(format!("the config of base image {base} is not JSON: {e}"))
            })?;
        let mut layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        let total = Some(layers.len() as u64 + 2);
        for (i, l) in layers.iter().enumerate() {
            let d = l["digest"].as_str().unwrap_or_default();
            if !dst.has_blob(name, d).await? {
                let blob = src.blob(base_name, d).await?;
                dst.push_blob(name, blob).await?;
            }
            self.report(Progress {
                what: "blobs pushed",
                done: i as u64 + 1,
                total,
            });
        }
        let built = layer::build(&self.layer_files()?)
            .map_err(|e| CoreError::io("building the flows layer", e))?;
        let layer_size = built.gz.len();
        let layer_digest = dst.push_blob(name, built.gz).await?;
        self.report(Progress {
            what: "blobs pushed",
            done: layers.len() as u64 + 1,
            total,
        });
        if let Some(ids) = config["rootfs"]["diff_ids"].as_array_mut() {
            ids.push(json!(built.diff_id));
        }
        if !config["history"].is_array() {
            config["history"] = json!([]);
        }
        config["history"].as_array_mut().expect("array").push(
            json!({"created_by": "flowstore: add flows", "comment": "flowstore daemonless build"}),
        );
        let env = config["config"]["Env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut env: Vec<Value> = env;
        for (k, v) in &self.build.env_vars {
            env.push(json!(format!("{k}={v}")));
        }
        config["config"]["Env"] = json!(env);
        config["config"]["Labels"]["io.flowstore.directory"] = json!(self.fields.directory);
        let config_bytes = Bytes::from(serde_json::to_vec(&config).expect("config serializes"));
        let config_size = config_bytes.len();
        let config_digest = dst.push_blob(name, config_bytes).await?;
        self.report(Progress {
            what: "blobs pushed",
            done: layers.len() as u64 + 2,
            total,
        });
        layers.push(
            json!({"mediaType": registry::LAYER, "digest": layer_digest, "size": layer_size}),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": registry::MANIFEST,
            "config": {"mediaType": registry::CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        });
        dst.push_manifest(name, tag, &manifest).await
    }

    /// Script mode: the script's SHA-256 when `path` is a destination in `files` (the host file is
    /// read now), so the health check and `get_flow` can check it.
    fn script_digest(&self, path: &str) -> crate::Result<Option<String>> {
        let Some((host, _)) = self.build.files.iter().find(|(_, image)| *image == path) else {
            return Ok(None);
        };
        let bytes =
            std::fs::read(host).map_err(|e| CoreError::io(format!("reading script {host}"), e))?;
        Ok(Some(flowstore_core::envelope::sha256_digest(&bytes)))
    }

    /// Reads a flow out of the pushed image: the manifest by digest, the layers newest first.
    async fn fetch_outside(&self, name: &str, location: &str) -> crate::Result<Bytes> {
        let (Some(registry_url), Some(image), Some(digest)) = (
            &self.fields.registry_url,
            &self.fields.image_name,
            &self.fields.image_digest,
        ) else {
            return Err(Error::config(format!(
                "Flow \"{name}\" is in a local image that was not pushed; run it inside the image (its file is {location})"
            )));
        };
        let reg = Registry::new(registry_url, self.registry_auth()?);
        let (manifest, _) = reg.manifest(image, digest).await?;
        for l in manifest["layers"].as_array().into_iter().flatten().rev() {
            let d = l["digest"].as_str().unwrap_or_default();
            let blob = reg.blob(image, d).await?;
            if let Some(content) = layer::read_file(&blob, location)
                .map_err(|e| CoreError::io(format!("reading layer {d}"), e))?
            {
                tracing::info!(flow = name, image = %image, digest = %digest, layer = d, "read flow from the registry");
                return Ok(Bytes::from(content));
            }
        }
        Err(Error::config(format!(
            "Flow file {location} of flow \"{name}\" is not in image {image}@{digest}: check the reference's `directory` and `path`"
        )))
    }
}

/// Credentials for `registry` from the Docker CLI's config file (`~/.docker/config.json`, or
/// `$DOCKER_CONFIG/config.json`), as the Docker CLI finds them: the registry's credential helper
/// (`credHelpers`), else the default store (`credsStore`), else an inline `auths` entry (base64
/// `user:password`). None when there is no config or no entry.
fn docker_config_auth(registry: &str) -> Option<(String, SecretString)> {
    use base64::Engine as _;
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
    let helper = config["credHelpers"][registry]
        .as_str()
        .or(config["credsStore"].as_str());
    if let Some(found) = helper.and_then(|h| credential_helper(h, registry)) {
        return Some(found);
    }
    let auths = &config["auths"];
    let auth = [
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
    .iter()
    .find_map(|k| auths[k]["auth"].as_str())?;
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?,
    )
    .ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), SecretString::from(pass.to_string())))
}

/// Runs `docker-credential-<helper> get` with the registry on stdin (the Docker credential helper
/// protocol) and reads `{"Username": …, "Secret": …}` from its stdout. A helper that is missing or
/// fails is logged (without its output) and skipped.
fn credential_helper(helper: &str, registry: &str) -> Option<(String, SecretString)> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{helper}");
    let run = || -> std::io::Result<std::process::Output> {
        let mut child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(registry.as_bytes())?;
        child.wait_with_output()
    };
    let out = match run() {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            tracing::warn!(helper = %program, registry, status = %out.status, "the Docker credential helper found no credentials");
            return None;
        }
        Err(e) => {
            tracing::warn!(helper = %program, registry, error = %e, "the Docker credential helper could not be run");
            return None;
        }
    };
    let answer: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        answer["Username"].as_str()?.to_string(),
        SecretString::from(answer["Secret"].as_str()?.to_string()),
    ))
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

    fn capabilities(&self) -> flowstore_core::Capabilities {
        let script = self.fields.stored_as_script;
        flowstore_core::Capabilities {
            write: true,
            many_flows: true,
            serialized: !script,
            script,
            list_versions: false,
            stream_to_file: false,
        }
    }

    /// Stages a serialized flow for the image; its location is `{directory}/flows/{slug}.flow`.
    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        if self.built {
            return Err(CoreError::config(
                "this Docker storage was opened from a reference to a built image; build another image with Docker::new",
            ));
        }
        self.index.ensure_new(flow.name())?;
        let name = flow.name().to_string();
        let location = match (flow, self.fields.stored_as_script) {
            (_, true) => {
                let path = self.fields.path.clone().ok_or_else(|| CoreError::config("A `path` must be provided to show where flow `.py` file is stored in the image."))?;
                if let Some(digest) = self.script_digest(&path)? {
                    self.index.digests.insert(name.clone(), digest);
                }
                path
            }
            (FlowInput::Serialized(sealed), false) => {
                let location = self.flow_location(&name);
                self.staged
                    .push((name.clone(), location.clone(), sealed.bytes.clone()));
                self.index.digests.insert(name.clone(), sealed.digest());
                location
            }
            (FlowInput::Script { .. }, false) => {
                return Err(CoreError::config(format!(
                    "Flow \"{name}\" is a script flow: set stored_as_script and `path`"
                )))
            }
        };
        self.index.flows.insert(name, location.clone());
        Ok(location)
    }

    /// Builds and pushes the image (Engine or daemonless) and records its digest.
    async fn persist(&mut self) -> Result<()> {
        self.validate()?;
        if self.fields.image_name.is_none() {
            let names: Vec<&String> = self.index.flows.keys().collect();
            let name = match names.as_slice() {
                [one] => key::flow_slug(one),
                _ => {
                    tracing::info!("several flows and no image_name: the image is named \"flows\"");
                    "flows".to_string()
                }
            };
            self.fields.image_name = Some(name);
        }
        if self.fields.image_tag.is_none() {
            self.fields.image_tag = Some(key::timestamp_slug(&key::unique_timestamp()));
        }
        let name = self.fields.image_name.clone().expect("set");
        let tag = self.fields.image_tag.clone().expect("set");
        let started = std::time::Instant::now();
        let digest = match self.build.mode {
            BuildMode::Daemonless => {
                let registry = self.fields.registry_url.clone().ok_or_else(|| {
                    CoreError::config("the daemonless build pushes to a registry: set registry_url")
                })?;
                Some(self.build_daemonless(&registry, &name, &tag).await?)
            }
            BuildMode::Engine => {
                #[cfg(feature = "engine")]
                {
                    crate::engine::build_and_push(self, &name, &tag).await?
                }
                #[cfg(not(feature = "engine"))]
                {
                    return Err(CoreError::config(
                        "this flowstore-docker was built without the `engine` feature",
                    ));
                }
            }
        };
        tracing::info!(image = %self.image_ref().unwrap_or_default(), ?digest, elapsed = ?started.elapsed(), "built image");
        self.fields.image_digest = digest;
        self.staged.clear();
        Ok(())
    }

    /// Inside the image: reads the flow's file. Outside: reads just the flow's layer from the
    /// registry by digest (no daemon, no full pull). Either way the digest is checked.
    async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        let path = PathBuf::from(&location);
        let bytes = if path.is_file() {
            Bytes::from(
                std::fs::read(&path)
                    .map_err(|e| CoreError::io(format!("reading {location}"), e))?,
            )
        } else {
            self.fetch_outside(name, &location)
                .await
                .map_err(|e| match e {
                    // The image's bytes changed behind the registry's back: a tampered flow.
                    e @ Error::DigestMismatch { .. } => CoreError::FlowCorrupt {
                        flow: name.to_string(),
                        location: location.clone(),
                        reason: e.to_string(),
                    },
                    other => other.into(),
                })?
        };
        let revision = self.fields.image_digest.clone();
        if self.fields.stored_as_script {
            self.index
                .open_script(name, &location, revision, bytes, Some(path))
        } else {
            self.index.open_serialized(name, &location, revision, bytes)
        }
    }

    fn reference(&self) -> Result<StorageReference> {
        let mut reference = StorageReference::new(TYPE_NAME, &self.fields)?;
        self.index.fill_reference(&mut reference, self.labels());
        Ok(reference)
    }
}
