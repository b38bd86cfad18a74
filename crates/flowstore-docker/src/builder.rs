//! [`DockerBuilder`]: typed setters, key/value options, a `docker://` URL or the environment, all
//! ending in the same state; `build()` checks it and makes a [`Docker`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flowstore_core::raw::config::{self, BackendConfig, COMMON_OPTIONS};
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource, SecretString};
use flowstore_core::ProgressFn;

use crate::config::{BuildConfig, BuildMode, DockerConfig, TlsFiles};
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::oci::ImageReference;
use crate::storage::Docker;

/// Makes a [`Docker`] storage: what the reference records ([`DockerConfig`]), how the image is
/// built ([`BuildConfig`]), registry credentials, labels.
///
/// Filled by typed setters, by [`with_config`](DockerBuilder::with_config) pairs (the options of
/// a `docker://` URL, listed in the [`url`](crate::url) module), by
/// [`from_url`](DockerBuilder::from_url) or by [`from_env`](DockerBuilder::from_env); all end in
/// the same state. [`build`](DockerBuilder::build) checks the combination and does no I/O
/// beyond reading the script file given to [`script_file`](DockerBuilder::script_file).
///
/// ```
/// use flowstore_docker::{BuildMode, Docker};
///
/// let typed = Docker::builder()
///     .registry_url("127.0.0.1:5000")
///     .image("team/etl", Some("v1"))
///     .mode(BuildMode::Daemonless)
///     .base_image("127.0.0.1:5000/base/python:3.12")
///     .env("STAGE", "prod")
///     .label("etl")
///     .build()?;
/// let pairs = Docker::builder()
///     .with_configs([
///         ("registry_url", "127.0.0.1:5000"),
///         ("image_name", "team/etl"),
///         ("image_tag", "v1"),
///         ("mode", "daemonless"),
///         ("base_image", "127.0.0.1:5000/base/python:3.12"),
///         ("env", "STAGE=prod"),
///         ("label", "etl"),
///     ])?
///     .build()?;
/// let url = flowstore_docker::DockerBuilder::from_url(
///     "docker://127.0.0.1:5000/team/etl:v1?mode=daemonless\
///      &base_image=127.0.0.1:5000/base/python:3.12&env=STAGE=prod&label=etl",
/// )?
/// .build()?;
/// assert_eq!(typed.config(), pairs.config());
/// assert_eq!(typed.config(), url.config());
/// assert_eq!(typed.build_config(), url.build_config());
/// # Ok::<(), flowstore_docker::Error>(())
/// ```
#[derive(Clone)]
pub struct DockerBuilder {
    pub(crate) config: DockerConfig,
    pub(crate) build: BuildConfig,
    pub(crate) index: FlowIndex,
    username: Option<String>,
    password: Option<SecretString>,
    secrets: Arc<dyn SecretSource>,
    progress: Option<ProgressFn>,
    script_file: Option<PathBuf>,
}

impl std::fmt::Debug for DockerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerBuilder")
            .field("config", &self.config)
            .field("build", &self.build)
            .field("labels", &self.index.labels)
            .field("secrets", &self.index.secrets)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("script_file", &self.script_file)
            .finish()
    }
}

impl Default for DockerBuilder {
    fn default() -> Self {
        DockerBuilder::new()
    }
}

impl DockerBuilder {
    /// The defaults: an Engine build, flows in `/opt/flowstore`, no registry (a local image).
    pub fn new() -> Self {
        DockerBuilder {
            config: DockerConfig::default(),
            build: BuildConfig::default(),
            index: FlowIndex::default(),
            username: None,
            password: None,
            secrets: Arc::new(NoSecrets),
            progress: None,
            script_file: None,
        }
    }

    /// A builder with what Docker's own environment variables say about this machine:
    /// `DOCKER_HOST` → [`base_url`](Self::base_url); `DOCKER_TLS_VERIFY` (non-empty) with
    /// `DOCKER_CERT_PATH` (default `~/.docker`) → [`tls`](Self::tls);
    /// `DOCKER_DEFAULT_PLATFORM` (`linux/arm64`) → [`platform`](Self::platform).
    ///
    /// These are build settings of the machine that builds the image, so nothing read here is
    /// recorded in the reference (an agent needs only the registry and the image digest). A
    /// builder not made here still connects through `DOCKER_HOST` at build time, as the Docker
    /// CLI does; registry credentials come from `DOCKER_CONFIG`'s `config.json` at build time
    /// unless given (see [`username`](Self::username)).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut builder = DockerBuilder::new();
        builder.build.base_url = var("DOCKER_HOST");
        if var("DOCKER_TLS_VERIFY").is_some() {
            let dir = var("DOCKER_CERT_PATH")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".docker")));
            builder.build.tls = dir.map(TlsFiles::in_dir);
        }
        if let Some(platform) = var("DOCKER_DEFAULT_PLATFORM") {
            if let Some(arch) = platform.split('/').nth(1) {
                builder.build.platform = arch.to_string();
            }
        }
        builder
    }

    /// Sets one option from its text form, as a `docker://` URL's query gives it (the options
    /// are listed in the [`url`](crate::url) module): a build option (`mode`, `base_image`,
    /// `env=KEY=VALUE`, `file=HOST:IMAGE`, …; see [`BuildConfig::OPTIONS`]), a reference field
    /// (`image_tag`, `directory`, `username_secret`, …; see [`DockerConfig`]'s
    /// [`OPTIONS`](BackendConfig::OPTIONS)), or one every storage takes (`label`,
    /// `add_default_labels`, `secret`). Repeatable options (`env`, `file`, `build_arg`,
    /// `dependency`, `extra_command`, `label`, `secret`) add to what is there.
    ///
    /// Errors with [`Error::Config`] naming an unknown option (and listing the known ones) or a
    /// value that does not fit, and [`Error::Core`] ([`Io`](flowstore_core::Error::Io)) when the
    /// `dockerfile` cannot be read.
    pub fn with_config(mut self, key: &str, value: &str) -> Result<Self> {
        let b = &mut self.build;
        let pair = |what: &str| {
            value
                .split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Error::config(format!("option {key}={value:?} must be {what}")))
        };
        match key {
            "mode" => b.mode = value.parse()?,
            "base_image" => b.base_image = Some(value.to_string()),
            "dockerfile" => {
                let text = std::fs::read_to_string(value).map_err(|e| {
                    flowstore_core::Error::io(format!("reading dockerfile {value}"), e)
                })?;
                b.dockerfile = Some(text);
            }
            "file" => {
                let (host, image) = value.split_once(':').ok_or_else(|| {
                    Error::config(format!(
                        "option file={value:?} must be file=HOST_PATH:IMAGE_PATH"
                    ))
                })?;
                b.files.insert(host.to_string(), image.to_string());
            }
            "env" => {
                let (k, v) = pair("env=KEY=VALUE")?;
                b.env_vars.insert(k, v);
            }
            "build_arg" => {
                let (k, v) = pair("build_arg=KEY=VALUE")?;
                b.build_args.insert(k, v);
            }
            "dependency" => b.dependencies.push(value.to_string()),
            "install_command" => b.install_command = value.to_string(),
            "extra_command" => b.extra_dockerfile_commands.push(value.to_string()),
            "load_command" => b.load_command = Some(value.to_string()),
            // A bare `local_image` (no value) means true, as before.
            "local_image" => b.local_image = value.is_empty() || config::parse_bool(key, value)?,
            "base_url" => b.base_url = Some(value.to_string()),
            "platform" => b.platform = value.to_string(),
            _ if DockerConfig::OPTIONS.iter().any(|(k, _)| *k == key)
                || COMMON_OPTIONS.contains(&key)
                || matches!(key, "labels" | "secrets") =>
            {
                config::apply_pairs(&mut self.config, &mut self.index, [(key, value)])?
            }
            _ => return Err(unknown_option(key)),
        }
        Ok(self)
    }

    /// [`with_config`](Self::with_config) for each pair, in order.
    ///
    /// Errors as `with_config` does, at the first pair that does not fit.
    pub fn with_configs<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        for (k, v) in pairs {
            self = self.with_config(k.as_ref(), v.as_ref())?;
        }
        Ok(self)
    }

    /// The registry to push to and read from (`host:port`); none: a local image (Engine only).
    pub fn registry_url(mut self, registry_url: impl Into<String>) -> Self {
        self.config.registry_url = Some(registry_url.into());
        self
    }

    /// The image name and tag (defaults: the single flow's slug, else `flows`; a timestamp tag).
    pub fn image(mut self, name: &str, tag: Option<&str>) -> Self {
        self.config.image_name = Some(name.to_string());
        self.config.image_tag = tag.map(str::to_string);
        self
    }

    /// The image name (`team/etl`).
    pub fn image_name(mut self, name: impl Into<String>) -> Self {
        self.config.image_name = Some(name.into());
        self
    }

    /// The image tag.
    pub fn image_tag(mut self, tag: impl Into<String>) -> Self {
        self.config.image_tag = Some(tag.into());
        self
    }

    /// Builds into `directory` inside the image instead of `/opt/flowstore`.
    pub fn directory(mut self, directory: impl Into<String>) -> Self {
        self.config.directory = directory.into();
        self
    }

    /// Stores flows as scripts: `path` is the script's path inside the image. When `path` is a
    /// destination in `files`, the script's SHA-256 is recorded at registration, checked by the
    /// build's health check and again by `get_flow`.
    pub fn script(mut self, path: impl Into<String>) -> Self {
        self.config.stored_as_script = true;
        self.config.path = Some(path.into());
        self
    }

    /// Script mode with a script from this machine: at [`build`](Self::build) it is copied into
    /// the image as `{directory}/flows/{file name}` and registered there (see
    /// [`script`](Self::script)). This is what `flowstore register --script` does.
    pub fn script_file(mut self, host_path: impl Into<PathBuf>) -> Self {
        self.script_file = Some(host_path.into());
        self
    }

    /// Engine (default) or daemonless.
    pub fn mode(mut self, mode: BuildMode) -> Self {
        self.build.mode = mode;
        self
    }

    /// The image to build on (`registry/name:tag`; daemonless: it must be in a registry).
    pub fn base_image(mut self, image: impl Into<String>) -> Self {
        self.build.base_image = Some(image.into());
        self
    }

    /// A whole Dockerfile (its text) instead of `base_image` (Engine only).
    pub fn dockerfile(mut self, text: impl Into<String>) -> Self {
        self.build.dockerfile = Some(text.into());
        self
    }

    /// Copies the absolute host path `host` into the image at `image_path`.
    pub fn file(mut self, host: impl AsRef<Path>, image_path: impl Into<String>) -> Self {
        self.build.files.insert(
            host.as_ref().to_string_lossy().into_owned(),
            image_path.into(),
        );
        self
    }

    /// An environment variable of the image.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.build.env_vars.insert(key.into(), value.into());
        self
    }

    /// A build argument (Engine).
    pub fn build_arg(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.build.build_args.insert(key.into(), value.into());
        self
    }

    /// A package to install with the install command (Engine).
    pub fn dependency(mut self, package: impl Into<String>) -> Self {
        self.build.dependencies.push(package.into());
        self
    }

    /// The install command; `{packages}` is replaced by the dependencies (default
    /// `pip install {packages}`).
    pub fn install_command(mut self, command: impl Into<String>) -> Self {
        self.build.install_command = command.into();
        self
    }

    /// An extra Dockerfile line (Engine).
    pub fn extra_command(mut self, line: impl Into<String>) -> Self {
        self.build.extra_dockerfile_commands.push(line.into());
        self
    }

    /// A command run in the image at build to prove the flows load (Engine).
    pub fn load_command(mut self, command: impl Into<String>) -> Self {
        self.build.load_command = Some(command.into());
        self
    }

    /// Keeps the local image after pushing (Engine; default false).
    pub fn local_image(mut self, keep: bool) -> Self {
        self.build.local_image = keep;
        self
    }

    /// The Docker Engine to build with (`unix:///var/run/docker.sock`, `tcp://host:2376`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.build.base_url = Some(url.into());
        self
    }

    /// TLS client files for a `tcp://` Docker Engine.
    pub fn tls(mut self, tls: TlsFiles) -> Self {
        self.build.tls = Some(tls);
        self
    }

    /// Daemonless: the architecture to pick from a multi-platform base image (`amd64`, `arm64`).
    pub fn platform(mut self, architecture: impl Into<String>) -> Self {
        self.build.platform = architecture.into();
        self
    }

    /// Replaces every build setting at once.
    pub fn build_config(mut self, build: BuildConfig) -> Self {
        self.build = build;
        self
    }

    /// The names (never the values) of the secrets holding the registry username and password:
    /// recorded in the reference and declared as its secrets, so an agent resolves them with its
    /// own secret sources; used at build time too unless [`username`](Self::username) is given.
    pub fn registry_secrets(
        mut self,
        username_secret: impl Into<String>,
        password_secret: impl Into<String>,
    ) -> Self {
        self.config.registry_username_secret = Some(username_secret.into());
        self.config.registry_password_secret = Some(password_secret.into());
        self
    }

    /// The registry username for this build (with [`password`](Self::password)). Never recorded:
    /// agents use [`registry_secrets`](Self::registry_secrets) or their Docker config.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The registry password or token for this build (with [`username`](Self::username)). Never
    /// recorded, logged or shown by `Debug`.
    pub fn password(mut self, password: impl Into<SecretString>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Where the registry credentials' secrets are looked up.
    pub fn secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// Reports build steps and pushed layers to `progress` (the CLI draws a bar with it).
    pub fn progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    flowstore_core::builder_common_methods!(index);

    /// The reference fields as set so far.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The build settings as set so far.
    pub fn build_settings(&self) -> &BuildConfig {
        &self.build
    }

    /// Checks the settings and makes the storage. No network I/O; a
    /// [`script_file`](Self::script_file) is resolved on disk.
    ///
    /// Errors with [`Error::Config`] for: both `base_image` and `dockerfile`; a relative host path
    /// in `files`; only one of `username_secret`/`password_secret` or of
    /// `username`/`password`; a daemonless build with daemon-only options
    /// (`extra_dockerfile_commands`, `dependencies`, a dockerfile, a load command), without a
    /// `registry_url` or without a `base_image` in a registry; script mode without a `path`; a
    /// script file that cannot be found.
    pub fn build(self) -> Result<Docker> {
        let DockerBuilder {
            mut config,
            mut build,
            mut index,
            username,
            password,
            secrets,
            progress,
            script_file,
        } = self;
        let secret_names = match (
            &config.registry_username_secret,
            &config.registry_password_secret,
        ) {
            (Some(u), Some(p)) => vec![u.clone(), p.clone()],
            (None, None) => Vec::new(),
            _ => {
                return Err(Error::config(
                    "username_secret and password_secret go together (registry_secrets(user, password))",
                ))
            }
        };
        // Declared, so an agent resolves them (and names a missing one) before fetching.
        for name in secret_names {
            if !index.secrets.contains(&name) {
                index.secrets.push(name);
            }
        }
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some(Credentials::new(u, p)),
            (None, None) => None,
            _ => {
                return Err(Error::config(
                    "the registry username and password go together",
                ))
            }
        };
        if let Some(script) = script_file {
            let host = std::fs::canonicalize(&script).map_err(|e| {
                flowstore_core::Error::io(format!("script {}", script.display()), e)
            })?;
            let file_name = host
                .file_name()
                .ok_or_else(|| {
                    Error::config(format!("script {} has no file name", script.display()))
                })?
                .to_string_lossy()
                .into_owned();
            let image_path = format!(
                "{}/flows/{file_name}",
                config.directory.trim_end_matches('/')
            );
            build
                .files
                .insert(host.to_string_lossy().into_owned(), image_path.clone());
            config.stored_as_script = true;
            config.path = Some(image_path);
        }
        validate(&config, &build)?;
        Ok(Docker {
            config,
            build,
            index,
            staged: Vec::new(),
            staged_bundles: Vec::new(),
            secrets,
            credentials,
            built: false,
            progress,
            tag_digests: Default::default(),
        })
    }
}

/// Every option [`DockerBuilder::with_config`] takes, for messages.
fn unknown_option(key: &str) -> Error {
    let mut known: Vec<&str> = BuildConfig::OPTIONS.to_vec();
    known.extend(DockerConfig::OPTIONS.iter().map(|(k, _)| *k));
    Error::config(format!(
        "unknown option \"{key}\"; Docker storage takes {}, and, like every storage, {}",
        known.join(", "),
        COMMON_OPTIONS.join(", ")
    ))
}

fn validate(config: &DockerConfig, build: &BuildConfig) -> Result<()> {
    if build.base_image.is_some() && build.dockerfile.is_some() {
        return Err(Error::config(
            "Only one of `base_image` and `dockerfile` can be provided.",
        ));
    }
    for host in build.files.keys() {
        if !Path::new(host).is_absolute() {
            return Err(Error::config(format!("Provided paths {host} are not absolute file paths, please provide absolute paths only.")));
        }
    }
    if config.stored_as_script && config.path.is_none() {
        return Err(Error::config(
            "A `path` must be provided to show where flow `.py` file is stored in the image.",
        ));
    }
    if build.mode == BuildMode::Daemonless {
        let needs_daemon = [
            (
                !build.extra_dockerfile_commands.is_empty(),
                "extra_dockerfile_commands",
            ),
            (!build.dependencies.is_empty(), "dependencies"),
            (build.dockerfile.is_some(), "a dockerfile"),
            (build.load_command.is_some(), "a load command"),
        ];
        if let Some((_, what)) = needs_daemon.iter().find(|(on, _)| *on) {
            return Err(Error::config(format!(
                "{what} need a Docker Engine to run; the daemonless build only adds a layer of files. Use BuildMode::Engine."
            )));
        }
        let Some(base) = &build.base_image else {
            return Err(Error::config(
                "the daemonless build needs a base_image in a registry (registry/name:tag)",
            ));
        };
        base.parse::<ImageReference>()?;
        if config.registry_url.is_none() {
            return Err(Error::config(
                "the daemonless build pushes to a registry: set registry_url",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowstore_core::Storage;

    #[test]
    fn from_env_reads_dockers_variables_into_the_build_settings_only() {
        // The only unit test that touches these variables.
        let vars = [
            ("DOCKER_HOST", "tcp://build-host:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/certs"),
            ("DOCKER_DEFAULT_PLATFORM", "linux/arm64/v8"),
        ];
        let saved: Vec<_> = vars
            .iter()
            .map(|(k, _)| (*k, std::env::var_os(k)))
            .collect();
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        let builder = DockerBuilder::from_env();
        for (k, v) in saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
        let b = builder.build_settings();
        assert_eq!(b.base_url.as_deref(), Some("tcp://build-host:2376"));
        assert_eq!(b.tls, Some(TlsFiles::in_dir("/certs")));
        assert_eq!(b.platform, "arm64");
        assert_eq!(
            *builder.config(),
            DockerConfig::default(),
            "machine settings are not recorded in the reference"
        );
    }

    #[test]
    fn setters_pairs_and_labels_end_in_the_same_state() {
        let typed = Docker::builder()
            .registry_url("r:5000")
            .image_name("etl")
            .image_tag("v1")
            .directory("/srv")
            .file("/etc/hosts", "/srv/hosts")
            .build_arg("A", "1")
            .dependency("pandas")
            .install_command("pip3 install {packages}")
            .extra_command("RUN true")
            .load_command("true")
            .local_image(true)
            .base_url("unix:///d.sock")
            .platform("arm64")
            .registry_secrets("U", "P")
            .labels(["a", "b"])
            .add_default_labels(false)
            .build()
            .unwrap();
        let pairs = Docker::builder()
            .with_configs([
                ("registry_url", "r:5000"),
                ("image_name", "etl"),
                ("image_tag", "v1"),
                ("directory", "/srv"),
                ("file", "/etc/hosts:/srv/hosts"),
                ("build_arg", "A=1"),
                ("dependency", "pandas"),
                ("install_command", "pip3 install {packages}"),
                ("extra_command", "RUN true"),
                ("load_command", "true"),
                ("local_image", "true"),
                ("base_url", "unix:///d.sock"),
                ("platform", "arm64"),
                ("username_secret", "U"),
                ("password_secret", "P"),
                ("label", "a,b"),
                ("add_default_labels", "false"),
            ])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(typed.config(), pairs.config());
        assert_eq!(typed.build_config(), pairs.build_config());
        assert_eq!(typed.index, pairs.index);
        assert_eq!(typed.labels(), ["a", "b"]);
        assert_eq!(typed.secrets(), ["U", "P"]);
    }

    #[test]
    fn a_password_never_shows_in_debug_or_the_reference() {
        let builder = Docker::builder()
            .registry_url("r:5000")
            .username("me")
            .password("s3cr3t-c4n4ry");
        assert!(!format!("{builder:?}").contains("c4n4ry"));
        let storage = builder.build().unwrap();
        assert!(!format!("{storage:?}").contains("c4n4ry"));
        assert!(!storage.reference().unwrap().to_json().contains("c4n4ry"));
        assert!(!storage.reference().unwrap().to_json().contains("\"me\""));
    }
}
