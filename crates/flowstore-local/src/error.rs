//! The crate's error type.

/// Errors from Local and Module storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error shared with the rest of flowstore.
    #[error(transparent)]
    Core(#[from] flowstore_core::Error),

    /// A Module flow lookup failed (message in the reference system's words, naming the module).
    #[error("{0}")]
    Module(String),
}

impl From<Error> for flowstore_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Module(message) => flowstore_core::Error::Backend {
                temporary: false,
                backend: "Module".to_string(),
                message,
                source: None,
            },
        }
    }
}
