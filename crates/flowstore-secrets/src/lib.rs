//! Secret sources, `${NAME}` templates and redaction for flowstore backends.
//!
//! Backends need credentials (git tokens, cloud keys, webhook headers) at fetch time, on the
//! agent's machine, never in the storage reference. This crate is how they get them:
//!
//! - [`SecretSource`] (defined in `flowstore-core`) with the sources [`EnvSource`],
//!   [`MapSource`] and [`ChainSource`];
//! - [`resolve`]: a backend credential by name — the secret sources first, then the environment;
//! - [`render`]: `${NAME}` / `$NAME` templates in JSON-like request arguments;
//! - [`redact`]: scrubs known secret values out of text before it reaches a log or an error.
//!
//! ```
//! use flowstore_secrets::{resolve, MapSource, ExposeSecret};
//! let sources = MapSource::new().with("GITHUB_ACCESS_TOKEN", "ghp_example");
//! let token = resolve("GITHUB_ACCESS_TOKEN", &sources).unwrap();
//! assert_eq!(token.expose_secret(), "ghp_example");
//! assert_eq!(format!("{token:?}"), "SecretBox<str>([REDACTED])");
//! ```
#![warn(missing_docs)]

mod error;
mod redact;
mod sources;
mod template;

pub use error::Error;
pub use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
pub use redact::{redact, Redactor};
pub use sources::{ChainSource, EnvSource, MapSource};
pub use template::{render, RenderedValue};

/// Looks a secret up in `sources`, then in the environment variable of the same name (the
/// reference system's order for backend credentials such as `GITHUB_ACCESS_TOKEN`).
///
/// Errors with [`flowstore_core::Error::SecretNotFound`] naming the secret and every place searched.
pub fn resolve(name: &str, sources: &dyn SecretSource) -> Result<SecretString, Error> {
    resolve_optional(name, sources)?.ok_or_else(|| {
        Error::Core(flowstore_core::Error::SecretNotFound {
            name: name.to_string(),
            searched: format!("{}, then environment variable {name}", sources.describe()),
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
