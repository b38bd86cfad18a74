//! The secret lookup every backend uses at fetch time.
//!
//! Core only defines the [`SecretSource`] trait and re-exports `secrecy`'s types; the sources
//! themselves (environment, files, directories, chains) live in `flowstore-secrets`.

pub use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::error::Result;

/// Somewhere secrets can be looked up by name.
///
/// Values come back as [`SecretString`]: `Debug` prints `[REDACTED]` and memory is zeroized on drop.
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// The secret called `name`, `Ok(None)` if this source does not have it.
    ///
    /// Errors only when the source itself cannot be read (an unreadable file).
    fn get(&self, name: &str) -> Result<Option<SecretString>>;

    /// Where this source looks, for error messages (e.g. `environment`, `files in /run/secrets`).
    fn describe(&self) -> String;
}

/// A source with no secrets (the default of an [`OpenContext`](crate::registry::OpenContext)).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn get(&self, _name: &str) -> Result<Option<SecretString>> {
        Ok(None)
    }
    fn describe(&self) -> String {
        "no secret sources".to_string()
    }
}
