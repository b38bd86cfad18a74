//! The backends compiled into this `flowstore` binary, and how a storage is chosen.

use anyhow::Context;
use flowstore_core::{Registry, Storage, StorageReference};

/// A registry with every backend this binary was built with, resolving secrets from the sources
/// configured by `FLOWSTORE_SECRETS_FILE` / `FLOWSTORE_SECRETS_DIR` (then the environment).
pub fn registry() -> anyhow::Result<Registry> {
    let sources = flowstore_secrets::default_sources().context("configuring secret sources")?;
    let mut registry = Registry::new()
        .with_secrets(std::sync::Arc::new(sources))
        .with_progress(crate::output::progress_reporter());
    flowstore_local::register(&mut registry);
    #[cfg(feature = "webhook")]
    flowstore_webhook::register(&mut registry);
    #[cfg(feature = "cloud")]
    flowstore_cloud::register(&mut registry);
    #[cfg(feature = "git")]
    flowstore_git::register(&mut registry);
    #[cfg(feature = "docker")]
    flowstore_docker::register(&mut registry);
    Ok(registry)
}

/// Opens `--storage URL` (or Local at the default directory), in script mode for `script`.
pub fn open_url(url: Option<&str>, script: Option<&str>) -> anyhow::Result<Box<dyn Storage>> {
    let registry = registry()?;
    let default_url;
    let url = match url {
        Some(u) => u,
        None => {
            default_url = format!("file://{}", flowstore_local::default_directory().display());
            &default_url
        }
    };
    let storage = match script {
        Some(path) => registry.open_url_script(url, path),
        None => registry.open_url(url),
    };
    storage.with_context(|| format!("opening storage {url}"))
}

/// Reads and parses a reference file (`-` for stdin).
pub fn read_reference(path: &str) -> anyhow::Result<StorageReference> {
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the reference from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading reference file {path}"))?
    };
    StorageReference::from_json(&text).with_context(|| format!("parsing reference file {path}"))
}
