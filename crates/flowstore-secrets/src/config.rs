//! Where the default secret sources are, from the environment (via `envy`).

use std::path::PathBuf;
use std::sync::Arc;

use flowstore_core::secret::SecretSource;
use serde::Deserialize;

use crate::error::Error;
use crate::files::{DirSource, FileSource};
use crate::prefect::PrefectContextSource;
use crate::sources::ChainSource;

/// `FLOWSTORE_SECRETS_FILE` and `FLOWSTORE_SECRETS_DIR`, read from the environment.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SecretsConfig {
    /// A TOML or JSON file of name → value (`FLOWSTORE_SECRETS_FILE`).
    pub secrets_file: Option<PathBuf>,
    /// A directory with one file per secret (`FLOWSTORE_SECRETS_DIR`).
    pub secrets_dir: Option<PathBuf>,
}

impl SecretsConfig {
    /// Reads the configuration from `FLOWSTORE_*` environment variables.
    ///
    /// Errors with a config error naming the variable when one cannot be read.
    pub fn from_env() -> Result<Self, Error> {
        envy::prefixed("FLOWSTORE_")
            .from_env::<SecretsConfig>()
            .map_err(|e| {
                Error::Core(flowstore_core::Error::config(format!(
                    "secrets configuration: {e}"
                )))
            })
    }

    /// The chain of configured sources, asked in this order: the secrets file, then the secrets
    /// directory. (The environment is consulted by [`resolve`](crate::resolve) after the chain, and
    /// before it by [`render`](crate::render), as in the reference system.)
    ///
    /// Errors when the secrets file cannot be read or parsed.
    pub fn sources(&self) -> Result<ChainSource, Error> {
        let mut chain: Vec<Arc<dyn SecretSource>> = Vec::new();
        if let Some(file) = &self.secrets_file {
            chain.push(Arc::new(FileSource::load(file)?));
        }
        if let Some(dir) = &self.secrets_dir {
            chain.push(Arc::new(DirSource::new(dir)));
        }
        Ok(ChainSource::new(chain))
    }
}

/// The default secret sources, in the order they are asked: the `FLOWSTORE_SECRETS_FILE` file,
/// the `FLOWSTORE_SECRETS_DIR` directory ([`SecretsConfig::from_env`], [`SecretsConfig::sources`]),
/// then Prefect 1's local secrets ([`PrefectContextSource::from_env`]). [`resolve`](crate::resolve)
/// asks the environment variable of the secret's own name after all of them.
///
/// Errors when `FLOWSTORE_SECRETS_FILE` cannot be read or parsed.
///
/// ```
/// let sources = flowstore_secrets::default_sources().unwrap();
/// // Prefect 1's local secrets are always asked, after the FLOWSTORE_SECRETS_* sources.
/// # use flowstore_secrets::SecretSource;
/// assert!(sources.describe().contains("PREFECT__CONTEXT__SECRETS__<name>"));
/// ```
pub fn default_sources() -> Result<ChainSource, Error> {
    Ok(SecretsConfig::from_env()?
        .sources()?
        .then(PrefectContextSource::from_env()))
}
