//! The crate's error type.

/// Errors from Docker storage: its settings, the registry, the Docker Engine and the build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error shared with the rest of flowstore.
    #[error(transparent)]
    Core(#[from] flowstore_core::Error),

    /// A secret (registry credentials) could not be resolved.
    #[error(transparent)]
    Secrets(#[from] flowstore_secrets::Error),

    /// The storage's settings cannot work (both `base_image` and `dockerfile`, a relative path in
    /// `files`, a daemon-only option in a daemonless build, a bad `docker://` URL).
    #[error("Docker storage: {0}")]
    Config(String),

    /// The registry refused a request or could not be reached.
    #[error("Docker registry {registry}: {what}: {message}")]
    Registry {
        /// The registry's base URL.
        registry: String,
        /// What was being done (`uploading a blob`, `reading the manifest`).
        what: String,
        /// The status and the registry's own error text, or the transport error, with a hint.
        message: String,
    },

    /// The registry answered with bytes that do not match the digest asked for.
    #[error("Docker registry {registry}: {what} came back with digest {actual}: refusing it")]
    DigestMismatch {
        /// The registry's base URL.
        registry: String,
        /// What was read (`manifest sha256:… of flows`, `blob sha256:… of flows`).
        what: String,
        /// The digest of the bytes that came back.
        actual: String,
    },

    /// The Docker Engine could not be reached or refused a request.
    #[error("Docker Engine: {what}: {message}")]
    Engine {
        /// What was being done (`connecting`, `pushing 127.0.0.1:5000/etl:tag`).
        what: String,
        /// The daemon's own error text.
        message: String,
    },

    /// The image failed to build: [`BUILD_FAILED`](crate::BUILD_FAILED), then the daemon's error
    /// and the last lines of the build output.
    #[error("{}\nImage {image}: {daemon}\n{log_tail}", crate::BUILD_FAILED)]
    BuildFailed {
        /// The image being built.
        image: String,
        /// The daemon's error text.
        daemon: String,
        /// The last lines of the build output.
        log_tail: String,
    },
}

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for flowstore_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Secrets(e) => e.into(),
            Error::Config(message) => flowstore_core::Error::Config {
                source: None,
                message: format!("Docker storage: {message}"),
            },
            other => flowstore_core::Error::Backend {
                temporary: false,
                backend: crate::TYPE_NAME.to_string(),
                message: other.to_string(),
                source: None,
            },
        }
    }
}
