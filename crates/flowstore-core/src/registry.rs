//! The [`Registry`]: type names and URL schemes → backend constructors.
//!
//! Each backend crate exposes `pub fn register(registry: &mut Registry)`; a program fills one
//! registry with the backends it links and opens any reference or storage URL through it.
//!
//! ```
//! use flowstore_core::{Registry, StorageReference};
//! let registry = Registry::new(); // no backends registered
//! let err = registry.open_json(r#"{"type": "S3", "bucket": "b"}"#).unwrap_err();
//! assert!(err.to_string().contains("Unknown storage type \"S3\""));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::reference::StorageReference;
use crate::secret::{NoSecrets, SecretSource};
use crate::storage::Storage;

/// Progress of long work (a clone, an upload): what, how far, out of how much when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What is progressing (`objects received`, `bytes uploaded`).
    pub what: &'static str,
    /// How far it is.
    pub done: u64,
    /// The total, when known.
    pub total: Option<u64>,
}

/// A callback told about [`Progress`] (the CLI draws a progress bar with it).
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// What a backend gets when it is opened: where to find secrets, where to report progress, and
/// (for URL openers) whether to open in script mode.
#[derive(Clone)]
pub struct OpenContext {
    /// Secret sources for credentials and declared secrets.
    pub secrets: Arc<dyn SecretSource>,
    /// For URL openers: open in script mode for this script (a local file for Local/S3/GCS/Azure
    /// uploads, a path inside the repository for Git). `None`: serialized mode.
    pub script_path: Option<String>,
    /// Where backends report progress of long work, if anywhere.
    pub progress: Option<ProgressFn>,
    /// For URL openers: options applied after the URL's own query pairs (`with_config` pairs:
    /// `region=…`, `label=…`).
    pub options: Vec<(String, String)>,
}

impl std::fmt::Debug for OpenContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenContext")
            .field("secrets", &self.secrets)
            .field("script_path", &self.script_path)
            .field("progress", &self.progress.is_some())
            .field(
                "options",
                &self.options.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for OpenContext {
    fn default() -> Self {
        OpenContext {
            secrets: Arc::new(NoSecrets),
            script_path: None,
            progress: None,
            options: Vec::new(),
        }
    }
}

/// Opens a storage from a reference.
pub type OpenReference = fn(&StorageReference, &OpenContext) -> Result<Box<dyn Storage>>;
/// Opens a storage from a URL such as `file:///srv/flows` or `s3://bucket/prefix`.
pub type OpenUrl = fn(&str, &OpenContext) -> Result<Box<dyn Storage>>;

/// Maps reference type names and URL schemes to backend constructors.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<String, OpenReference>,
    schemes: BTreeMap<String, OpenUrl>,
    context: OpenContext,
}

impl Registry {
    /// An empty registry with no secret sources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a reference type (e.g. `"Local"`); a later registration of the same name wins.
    pub fn register_type(&mut self, type_name: &str, open: OpenReference) -> &mut Self {
        self.types.insert(type_name.to_string(), open);
        self
    }

    /// Registers a URL scheme (e.g. `"file"`, `"s3"`, `"git+https"`).
    pub fn register_scheme(&mut self, scheme: &str, open: OpenUrl) -> &mut Self {
        self.schemes.insert(scheme.to_ascii_lowercase(), open);
        self
    }

    /// Sets the secret sources handed to every backend opened through this registry.
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.context.secrets = secrets;
        self
    }

    /// Sets the progress callback handed to every backend opened through this registry.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.context.progress = Some(progress);
        self
    }

    /// Makes URL openers open in script mode for `script_path` (see [`OpenContext::script_path`]).
    pub fn with_script(mut self, script_path: impl Into<String>) -> Self {
        self.context.script_path = Some(script_path.into());
        self
    }

    /// The context handed to backends.
    pub fn context(&self) -> &OpenContext {
        &self.context
    }

    /// The registered type names.
    pub fn types(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }

    /// The registered URL schemes.
    pub fn schemes(&self) -> Vec<&str> {
        self.schemes.keys().map(String::as_str).collect()
    }

    /// Opens a storage from a reference, after checking that every secret it declares can be
    /// found (so a missing one is reported up front, by name, before anything is fetched).
    ///
    /// Errors with [`Error::UnknownType`] (naming the type and the backends compiled in),
    /// [`Error::SecretNotFound`] (naming the secret and where it was searched) and with whatever
    /// the backend reports for bad fields.
    pub fn open(&self, reference: &StorageReference) -> Result<Box<dyn Storage>> {
        self.resolve_declared(reference)?;
        let open = self
            .types
            .get(&reference.type_name)
            .ok_or_else(|| Error::UnknownType {
                type_name: reference.type_name.clone(),
                known: list_or_none(self.types()),
            })?;
        open(reference, &self.context)
    }

    /// Checks that every secret a reference declares is in the registry's secret sources or, as
    /// Prefect 1 agents look, in the environment variable of the same name.
    ///
    /// Errors with [`Error::SecretNotFound`] for the first one found nowhere.
    pub fn resolve_declared(&self, reference: &StorageReference) -> Result<()> {
        for name in &reference.secrets {
            if self.context.secrets.get(name)?.is_none() && std::env::var_os(name).is_none() {
                return Err(Error::SecretNotFound {
                    name: name.clone(),
                    searched: format!(
                        "{}, then environment variable {name}",
                        self.context.secrets.describe()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Parses a reference from JSON and opens it ([`StorageReference::from_json`] + [`Registry::open`]).
    pub fn open_json(&self, json: &str) -> Result<Box<dyn Storage>> {
        self.open(&StorageReference::from_json(json)?)
    }

    /// Opens a storage from a URL by its scheme, in script mode for `script_path`.
    ///
    /// Errors as [`Registry::open_url`] does.
    pub fn open_url_script(&self, url: &str, script_path: &str) -> Result<Box<dyn Storage>> {
        self.clone().with_script(script_path).open_url(url)
    }

    /// Opens a storage from a URL, then applies `options` (key/value pairs, as the URL's query
    /// takes them: `region=eu-west-1`, `label=prod`).
    ///
    /// Errors as [`Registry::open_url`] does, and with [`Error::Config`] for an unknown option.
    pub fn open_url_with<K: Into<String>, V: Into<String>>(
        &self,
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Box<dyn Storage>> {
        let mut registry = self.clone();
        registry
            .context
            .options
            .extend(options.into_iter().map(|(k, v)| (k.into(), v.into())));
        registry.open_url(url)
    }

    /// Opens a storage from a URL by its scheme (serialized mode, unless the context says otherwise).
    ///
    /// Errors with [`Error::UnknownScheme`] naming the schemes compiled in.
    pub fn open_url(&self, url: &str) -> Result<Box<dyn Storage>> {
        let scheme = url
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        let open = self
            .schemes
            .get(&scheme)
            .ok_or_else(|| Error::UnknownScheme {
                url: url.to_string(),
                known: list_or_none(
                    self.schemes()
                        .into_iter()
                        .map(|s| format!("{s}://"))
                        .collect(),
                ),
            })?;
        open(url, &self.context)
    }
}

fn list_or_none<S: AsRef<str>>(items: Vec<S>) -> String {
    if items.is_empty() {
        "no backends (none registered)".to_string()
    } else {
        items
            .iter()
            .map(|s| s.as_ref())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
