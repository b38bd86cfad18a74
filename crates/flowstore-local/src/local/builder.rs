//! [`LocalBuilder`]: typed setters, [`LocalBuilder::with_config`] pairs, a `file://` URL or the
//! environment, all ending in the same [`LocalConfig`]; `build()` makes a [`Local`].

use std::path::{Path, PathBuf};

use flowstore_core::raw::config;
use flowstore_core::raw::FlowIndex;
use flowstore_core::{Error, Result};

use super::{home_default_directory, Local, LocalConfig, HOME_ENV};

/// What a `file://` URL looks like, for error messages.
const URL_EXAMPLE: &str = "file:///absolute/directory";

/// Makes a [`Local`] storage: [`Local::builder`], then setters, then [`LocalBuilder::build`].
///
/// ```
/// use flowstore_local::{Local, LocalBuilder};
/// let dir = tempfile::tempdir()?;
/// let typed = Local::builder().directory(dir.path()).label("prod").build()?;
/// let url = format!("file://{}?label=prod", dir.path().display());
/// let from_url = LocalBuilder::from_url(&url)?.build()?;
/// assert_eq!(typed.config(), from_url.config());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct LocalBuilder {
    pub(super) config: LocalConfig,
    pub(super) index: FlowIndex,
    pub(super) durable: bool,
}

impl Default for LocalBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBuilder {
    /// A builder for serialized-mode storage in `~/.flowstore/flows` (set [`LocalBuilder::directory`],
    /// or start from [`LocalBuilder::from_env`] to honour `FLOWSTORE_HOME`).
    pub fn new() -> Self {
        LocalBuilder {
            config: LocalConfig::default(),
            index: FlowIndex::default(),
            durable: true,
        }
    }

    /// A builder for the `file://` URL `url` (`file:///srv/flows?label=prod`): its path is the
    /// directory and every query pair is applied with [`LocalBuilder::with_config`].
    ///
    /// Errors with [`Error::Config`] for a URL that does not parse, is not `file://`, has a host
    /// other than `localhost` or no absolute path, or has an unknown option (named).
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = config::parse_url(url, &["file"], URL_EXAMPLE)?;
        let directory = parsed.to_file_path().map_err(|()| {
            Error::config(format!(
                "Local storage URL \"{url}\" must name an absolute directory on this machine \
                 (no host); it should look like {URL_EXAMPLE}"
            ))
        })?;
        Self::new()
            .directory(directory)
            .with_configs(parsed.query_pairs())
    }

    /// A builder that starts from the environment: the directory is `$FLOWSTORE_HOME/flows` when
    /// `FLOWSTORE_HOME` is set (recorded in the reference like any directory), else as
    /// [`LocalBuilder::new`].
    ///
    /// Never errors today; the `Result` keeps the same shape as every backend's `from_env`.
    pub fn from_env() -> Result<Self> {
        let builder = Self::new();
        Ok(match std::env::var_os(HOME_ENV) {
            Some(home) if !home.is_empty() => builder.directory(PathBuf::from(home).join("flows")),
            _ => builder,
        })
    }

    /// Sets the flow directory (`~` is expanded; a relative path is taken from the current
    /// directory when the storage is built).
    pub fn directory(mut self, directory: impl AsRef<Path>) -> Self {
        self.config.directory = Some(directory.as_ref().display().to_string());
        self
    }

    /// Script mode for the script at `path` (read again at every fetch).
    pub fn script(mut self, path: impl AsRef<Path>) -> Self {
        self.config.path = Some(path.as_ref().display().to_string());
        self.config.stored_as_script = true;
        self
    }

    /// Whether `persist` makes the flows added since the last `persist` durable (default true):
    /// one `syncfs` on Linux, else an fsync of every file and directory written. A registration
    /// is durable once `persist` returns. A power loss before that can lose or truncate a flow (a
    /// truncated one is refused by its digest, never loaded); a process crash never leaves a
    /// partial flow either way, since flows are written under a temporary name and linked whole.
    ///
    /// Not recorded in the reference (it only matters while registering).
    pub fn durable(mut self, on: bool) -> Self {
        self.durable = on;
        self
    }

    flowstore_core::builder_common_methods!(index);

    /// Sets one option by key, as a URL query gives it: `directory`, `path`,
    /// `stored_as_script`, and the options every storage takes (`label`, `add_default_labels`,
    /// `secret`).
    ///
    /// Errors with [`Error::Config`] for an unknown key (naming it and the known ones) or a value
    /// that does not fit (`stored_as_script=maybe`).
    pub fn with_config(self, key: &str, value: &str) -> Result<Self> {
        self.with_configs([(key, value)])
    }

    /// Sets options in order (see [`LocalBuilder::with_config`]).
    ///
    /// Errors as [`LocalBuilder::with_config`] does, at the first pair that fails.
    pub fn with_configs<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        config::apply_pairs(&mut self.config, &mut self.index, pairs)?;
        Ok(self)
    }

    /// The configuration so far (directories not yet resolved).
    pub fn config(&self) -> &LocalConfig {
        &self.config
    }

    /// Builds the storage: the directory and script path are made absolute (`~` expanded; a
    /// script path that is a Python module path, like `flows.etl`, with no file of that name
    /// here, is kept as it is and found at every fetch as Python imports it); the directory is
    /// created only when the first flow is written.
    ///
    /// Errors with [`Error::Config`] for script mode without a `path`.
    pub fn build(self) -> Result<Local> {
        let LocalBuilder {
            config,
            index,
            durable,
        } = self;
        if config.stored_as_script && config.path.is_none() {
            return Err(missing_path());
        }
        let directory = config
            .directory
            .as_deref()
            .map(|d| absolute(&expand_home(Path::new(d))))
            .unwrap_or_else(|| absolute(&home_default_directory()));
        let path = config.path.as_deref().map(|p| {
            if config.stored_as_script && is_module_location(p) {
                PathBuf::from(p)
            } else {
                resolve_path(p)
            }
        });
        Ok(Local {
            config: LocalConfig {
                directory: Some(directory.display().to_string()),
                path: path.as_ref().map(|p| p.display().to_string()),
                stored_as_script: config.stored_as_script,
            },
            directory,
            path,
            durable,
            unsynced: Default::default(),
            index,
            real_directory: Default::default(),
        })
    }
}

fn missing_path() -> Error {
    Error::config("A `path` must be provided to show where flow `.py` file is stored.")
}

/// A script `path` kept as it is: a Python module path (`flows.etl`) with no file of that name
/// here, resolved at every fetch as Prefect 1 imports it.
fn is_module_location(path: &str) -> bool {
    super::pypath::is_module_path(path) && !Path::new(path).exists()
}

/// A configured path as the storage holds it: `~` expanded, made absolute from the current
/// directory.
pub(super) fn resolve_path(path: &str) -> PathBuf {
    absolute(&expand_home(Path::new(path)))
}

fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => dirs::home_dir()
            .map(|h| h.join(rest))
            .unwrap_or_else(|| path.to_path_buf()),
        Err(_) => path.to_path_buf(),
    }
}

/// `path` made absolute from the current directory, without a trailing slash (symlinks are not
/// resolved).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .components()
        .collect()
}
