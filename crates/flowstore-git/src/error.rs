//! The crate's error type: one enum for every backend in this crate, wrapping core's.

/// Errors from the git-based storages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error shared with the rest of flowstore.
    #[error(transparent)]
    Core(#[from] flowstore_core::Error),
    /// A secret lookup or template error.
    #[error(transparent)]
    Secrets(#[from] flowstore_secrets::Error),
}

impl From<Error> for flowstore_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Secrets(e) => e.into(),
        }
    }
}
