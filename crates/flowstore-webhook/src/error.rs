//! The crate's error type.

/// Errors from Webhook storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error shared with the rest of flowstore.
    #[error(transparent)]
    Core(#[from] flowstore_core::Error),

    /// A template or secret error.
    #[error(transparent)]
    Secrets(#[from] flowstore_secrets::Error),

    /// The storage's settings cannot work (a bad method, no URL).
    #[error("Webhook storage: {0}")]
    Config(String),

    /// The server answered with an error status (after retries, where they apply).
    #[error("Webhook {what}: {method} {url} answered {status}{body}")]
    Status {
        /// Which request (`build request`, `get_flow request`).
        what: &'static str,
        /// The HTTP method.
        method: String,
        /// The URL as configured (the template, never the rendered value).
        url: String,
        /// The status line.
        status: String,
        /// The first bytes of the response body, secrets scrubbed.
        body: String,
    },

    /// The request could not be sent or the response read (after retries).
    #[error("Webhook {what}: {method} {url} failed after {attempts} attempt(s): {reason}")]
    Transport {
        /// Which request.
        what: &'static str,
        /// The HTTP method.
        method: String,
        /// The URL as configured (the template).
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// What went wrong, secrets scrubbed.
        reason: String,
    },
}

impl From<Error> for flowstore_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Secrets(e) => e.into(),
            Error::Config(message) => flowstore_core::Error::Config {
                source: None,
                message: format!("Webhook storage: {message}"),
            },
            other => flowstore_core::Error::Backend {
                temporary: false,
                backend: "Webhook".to_string(),
                message: other.to_string(),
                source: None,
            },
        }
    }
}
