//! The backends compiled into this `flowstore` binary, and how a storage is chosen.

use anyhow::Context;
use flowstore::{Registry, Storage, StorageReference};

/// A registry with every backend this binary was built with, resolving secrets from the sources
/// configured by `FLOWSTORE_SECRETS_FILE` / `FLOWSTORE_SECRETS_DIR` (then the environment).
pub fn registry() -> anyhow::Result<Registry> {
    let sources = flowstore::secrets::default_sources().context("configuring secret sources")?;
    let mut registry = Registry::new()
        .with_secrets(std::sync::Arc::new(sources))
        .with_progress(crate::output::progress_reporter());
    flowstore::install_backends(&mut registry);
    Ok(registry)
}

/// Opens `--storage URL` (or Local at the default directory), in script mode for `script`, with
/// `options` (`--set KEY=VALUE`) applied after the URL's own query.
pub fn open_url(
    url: Option<&str>,
    script: Option<&str>,
    options: &[(String, String)],
) -> anyhow::Result<Box<dyn Storage>> {
    let mut registry = registry()?;
    let default_url;
    let url = match url {
        Some(u) => u,
        None => {
            let dir = flowstore::backends::local::default_directory();
            default_url = url::Url::from_directory_path(&dir)
                .map_err(|()| {
                    anyhow::anyhow!(
                        "the default flow directory {} is not absolute",
                        dir.display()
                    )
                })?
                .to_string();
            &default_url
        }
    };
    if let Some(path) = script {
        registry = registry.with_script(path);
    }
    registry
        .open_url_with(url, options.iter().cloned())
        .with_context(|| format!("opening storage {url}"))
}

/// Parses `--set KEY=VALUE` into a storage option.
pub fn parse_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "{text:?} is not KEY=VALUE (e.g. region=eu-west-1, label=prod)"
        )),
    }
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
