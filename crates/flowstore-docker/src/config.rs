//! What a `Docker` storage is configured with: [`DockerConfig`] (what the reference records) and
//! [`BuildConfig`] (how the image is built; never recorded).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use flowstore_core::raw::config::BackendConfig;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The reference type name.
pub const TYPE_NAME: &str = "Docker";

/// The message of a build that failed, as in the reference system, followed by the daemon's text.
pub const BUILD_FAILED: &str = "Your docker image failed to build! Your flow might have failed one of its deployment health checks - please ensure that all necessary files and dependencies have been included.";

/// Where flows go in the image unless `directory` says otherwise.
pub const DEFAULT_DIRECTORY: &str = "/opt/flowstore";

fn default_dir() -> String {
    DEFAULT_DIRECTORY.to_string()
}

/// The backend fields of a `Docker` reference (Prefect 1's names; `image_digest`, `directory` and
/// the two secret names are flowstore's: a run pulls exactly what was built, from where it was
/// put, with credentials the agent resolves itself).
///
/// Options (a URL's query, [`DockerBuilder::with_config`](crate::DockerBuilder::with_config))
/// that set these fields are listed in [`BackendConfig::OPTIONS`]; the build options, which the
/// reference does not record, are in [`BuildConfig::OPTIONS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerConfig {
    /// The registry (`host:port`), or none for a local-only image.
    #[serde(default)]
    pub registry_url: Option<String>,
    /// The image name (default: the slug of the single flow's name, else `flows`).
    #[serde(default)]
    pub image_name: Option<String>,
    /// The tag (default: the timestamp slug).
    #[serde(default)]
    pub image_tag: Option<String>,
    /// The pushed manifest's digest (set by `persist`).
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
    /// Bundle flow name → the digest of the image layer holding its tree (written by the build,
    /// for a pushed image), so `get_bundle` fetches that one layer by digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bundle_layers: BTreeMap<String, String>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            registry_url: None,
            image_name: None,
            image_tag: None,
            image_digest: None,
            directory: default_dir(),
            path: None,
            stored_as_script: false,
            flowstore_version: Some(flowstore_core::envelope::FLOWSTORE_VERSION.to_string()),
            registry_username_secret: None,
            registry_password_secret: None,
            bundle_layers: BTreeMap::new(),
        }
    }
}

impl BackendConfig for DockerConfig {
    const TYPE_NAME: &'static str = TYPE_NAME;
    /// `registry_url`, `image_name`, `image_tag`, `directory`, `path`, `stored_as_script`,
    /// `registry_username_secret` / `username_secret`, `registry_password_secret` /
    /// `password_secret`. (`image_digest`, `flowstore_version` and `bundle_layers` are written by
    /// the build.)
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("registry_url", "registry_url"),
        ("image_name", "image_name"),
        ("image_tag", "image_tag"),
        ("directory", "directory"),
        ("path", "path"),
        ("stored_as_script", "stored_as_script"),
        ("registry_username_secret", "registry_username_secret"),
        ("registry_password_secret", "registry_password_secret"),
        ("username_secret", "registry_username_secret"),
        ("password_secret", "registry_password_secret"),
    ];
}

impl DockerConfig {
    /// `registry/name:tag` (`name:tag` without a registry; tag `latest` until one is chosen), or
    /// `None` before the image has a name.
    pub fn image_ref(&self) -> Option<String> {
        let name = self.image_name.as_ref()?;
        let tag = self.image_tag.as_deref().unwrap_or("latest");
        Some(match &self.registry_url {
            Some(r) => format!("{r}/{name}:{tag}"),
            None => format!("{name}:{tag}"),
        })
    }
}

/// How the image is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuildMode {
    /// Through a Docker Engine (generated Dockerfile, `docker build`, push).
    #[default]
    Engine,
    /// Without any daemon: one layer appended to the base image, pushed through the registry API.
    Daemonless,
}

impl FromStr for BuildMode {
    type Err = Error;

    /// `engine` or `daemonless`; errors with [`Error::Config`] naming the value otherwise.
    fn from_str(mode: &str) -> Result<Self, Error> {
        match mode {
            "engine" => Ok(BuildMode::Engine),
            "daemonless" => Ok(BuildMode::Daemonless),
            other => Err(Error::config(format!(
                "mode \"{other}\" is not engine or daemonless"
            ))),
        }
    }
}

impl std::fmt::Display for BuildMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BuildMode::Engine => "engine",
            BuildMode::Daemonless => "daemonless",
        })
    }
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

impl TlsFiles {
    /// `key.pem`, `cert.pem` and `ca.pem` in `dir` (Docker's `DOCKER_CERT_PATH` layout).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        TlsFiles {
            key: dir.join("key.pem"),
            cert: dir.join("cert.pem"),
            ca: dir.join("ca.pem"),
        }
    }
}

/// Build settings. They describe how the image is made, on the machine that makes it, and are
/// never recorded in the reference (an agent only needs the pushed image's digest).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The Docker host (`unix:///…`, `tcp://…`); unset: `DOCKER_HOST` at build time, else the
    /// local socket.
    pub base_url: Option<String>,
    /// TLS client key, certificate and CA files for a `tcp://`/`https://` Docker host; unset:
    /// `DOCKER_CERT_PATH/{key,cert,ca}.pem` when `DOCKER_TLS_VERIFY` is set at build time.
    pub tls: Option<TlsFiles>,
    /// Build arguments (Engine).
    pub build_args: BTreeMap<String, String>,
    /// Daemonless: the architecture picked from a multi-platform base image (default: this
    /// machine's, as Docker names it: `amd64`, `arm64`, …).
    pub platform: String,
}

impl BuildConfig {
    /// The option keys that set build settings (see
    /// [`DockerBuilder::with_config`](crate::DockerBuilder::with_config)).
    pub const OPTIONS: &'static [&'static str] = &[
        "mode",
        "base_image",
        "dockerfile",
        "file",
        "env",
        "build_arg",
        "dependency",
        "install_command",
        "extra_command",
        "load_command",
        "local_image",
        "base_url",
        "platform",
    ];
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
            platform: host_architecture(),
        }
    }
}
