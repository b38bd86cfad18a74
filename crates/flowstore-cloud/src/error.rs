//! The crate's error type.

/// Errors from the cloud storages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error shared with the rest of flowstore.
    #[error(transparent)]
    Core(#[from] flowstore_core::Error),
    /// A secret could not be resolved.
    #[error(transparent)]
    Secrets(#[from] flowstore_secrets::Error),
    /// The object-store client could not be configured (bad URL, bad credential format).
    #[error("{backend} storage could not be configured: {message}")]
    Client {
        /// `S3`, `Azure` or `GCS`.
        backend: &'static str,
        /// What is wrong (never a credential value).
        message: String,
    },
}

impl From<Error> for flowstore_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Secrets(e) => e.into(),
            other => flowstore_core::Error::config(other.to_string()),
        }
    }
}
