//! Secret sources, `${NAME}` templates and redaction for flowstore backends.
//!
//! Backends need credentials (git tokens, cloud keys, webhook headers) at fetch time, on the
//! agent's machine, never in the storage reference. This crate is how they get them:
//!
//! - [`SecretSource`] (defined in `flowstore-core`) with the sources [`EnvSource`], [`DirSource`]
//!   (one file per secret, as Kubernetes and Docker mount them), [`FileSource`] (TOML or JSON),
//!   [`PrefectContextSource`] (Prefect 1's local secrets), [`MapSource`] and [`ChainSource`];
//!   [`default_sources`] builds the chain every agent uses (see below);
//! - [`resolve`]: a backend credential by name — the secret sources first, then the environment;
//! - [`resolve_json`]: a secret holding a JSON document, as a redacted [`SecretJson`];
//! - [`render`]: `${NAME}` / `$NAME` templates in JSON-like request arguments;
//! - [`redact`]: scrubs known secret values out of text before it reaches a log or an error.
//!
//! # Where a secret is looked up
//!
//! [`resolve`] with [`default_sources`] (what `flowstore::open` and the `flowstore` command use)
//! asks, in this order, and takes the first that has the secret:
//!
//! 1. the TOML or JSON file named by `FLOWSTORE_SECRETS_FILE` (if set);
//! 2. the file `NAME` in the directory named by `FLOWSTORE_SECRETS_DIR` (if set);
//! 3. Prefect 1's local secrets, so an agent migrated from Prefect 1 finds what it found before
//!    ([`PrefectContextSource`]): the environment variable `PREFECT__CONTEXT__SECRETS__NAME`, then
//!    `[context.secrets]` of Prefect's backend config (`PREFECT__BACKEND_CONFIG_PATH`, default
//!    `~/.prefect/backend.toml`), then of Prefect's user config (`PREFECT__USER_CONFIG_PATH`,
//!    default `~/.prefect/config.toml`);
//! 4. the environment variable `NAME` itself (Prefect 1's fallback for backend credentials such
//!    as `AWS_CREDENTIALS` or `GITHUB_ACCESS_TOKEN`).
//!
//! A secret found nowhere is [`flowstore_core::Error::SecretNotFound`], naming the secret and each
//! of these places (with the files it looked in). [`render`] asks the environment variable `NAME`
//! first, then the same sources, as Prefect 1's webhook templates did. No value is ever part of an
//! error, a log line or `Debug` output.
//!
//! ```
//! use flowstore_secrets::{resolve, MapSource, ExposeSecret};
//! let sources = MapSource::new().with("GITHUB_ACCESS_TOKEN", "ghp_example");
//! let token = resolve("GITHUB_ACCESS_TOKEN", &sources).unwrap();
//! assert_eq!(token.expose_secret(), "ghp_example");
//! assert_eq!(format!("{token:?}"), "SecretBox<str>([REDACTED])");
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod files;
mod json;
mod prefect;
mod pyliteral;
mod redact;
mod sources;
mod template;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use config::{default_sources, SecretsConfig};
pub use error::Error;
pub use files::{DirSource, FileSource};
pub use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
pub use json::{resolve_json, SecretJson};
pub use prefect::{PrefectContextSource, BACKEND_CONFIG_ENV, SECRET_ENV_PREFIX, USER_CONFIG_ENV};
pub use redact::{redact, Redactor};
pub use sources::{ChainSource, EnvSource, MapSource};
pub use template::{render, render_with_redactor, RenderedValue};

/// Looks a secret up in `sources`, then in the environment variable of the same name (the
/// reference system's order for backend credentials such as `GITHUB_ACCESS_TOKEN`).
///
/// Errors with [`flowstore_core::Error::SecretNotFound`] naming the secret and every place searched
/// (a source's `<name>` placeholder, as in `PREFECT__CONTEXT__SECRETS__<name>`, filled in).
pub fn resolve(name: &str, sources: &dyn SecretSource) -> Result<SecretString, Error> {
    resolve_optional(name, sources)?.ok_or_else(|| {
        Error::Core(flowstore_core::Error::SecretNotFound {
            name: name.to_string(),
            searched: format!(
                "{}, then environment variable {name}",
                sources.describe().replace("<name>", name)
            ),
        })
    })
}

/// Like [`resolve`], but a secret found nowhere is `Ok(None)` (for optional credentials).
pub fn resolve_optional(
    name: &str,
    sources: &dyn SecretSource,
) -> Result<Option<SecretString>, Error> {
    if let Some(v) = sources.get(name)? {
        return Ok(Some(v));
    }
    Ok(EnvSource::new().get(name)?)
}

/// Resolves every secret a storage declares (its reference's `secrets` list), as an agent does
/// before fetching, into an in-memory source for the backend to use.
///
/// Errors on the first secret found nowhere, naming it and every place searched.
///
/// ```
/// use flowstore_secrets::{resolve_all, MapSource, SecretSource};
/// let declared = vec!["DB_PASSWORD".to_string()];
/// let resolved = resolve_all(&declared, &MapSource::new().with("DB_PASSWORD", "pw")).unwrap();
/// assert!(resolved.get("DB_PASSWORD").unwrap().is_some());
/// assert!(resolve_all(&["NOT_SET_ANYWHERE_X".to_string()], &MapSource::new()).is_err());
/// ```
pub fn resolve_all(names: &[String], sources: &dyn SecretSource) -> Result<MapSource, Error> {
    let mut resolved = MapSource::new();
    for name in names {
        let value = resolve(name, sources)?;
        resolved.insert(name, value.expose_secret());
    }
    Ok(resolved)
}
