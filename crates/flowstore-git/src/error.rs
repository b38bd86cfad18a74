//! The crate's error type, and the lower errors kept as the `source()` of what it reports.
//!
//! Every storage in this crate reports [`flowstore_core::Error`] through the `Storage` trait,
//! with the typed variants core defines: a missing repository, ref, file or flow is
//! [`NotFound`](flowstore_core::Error::NotFound) (`what` = `"repository"`, `"ref"`, `"file"`,
//! `"flow"`), a refused credential is [`PermissionDenied`](flowstore_core::Error::PermissionDenied),
//! and timeouts, rate limits and server errors are [`Backend`](flowstore_core::Error::Backend)
//! with `temporary: true`. The server's answer ([`HttpStatus`]) or libgit2's error ([`GitError`],
//! credentials removed) is kept as the error's `source()`.

use flowstore_core::Error as CoreError;

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

impl From<Error> for CoreError {
    /// Core errors pass through; a secret that is not found stays
    /// [`SecretNotFound`](CoreError::SecretNotFound); any other secrets error (a secret that
    /// should hold JSON and does not) becomes [`Config`](CoreError::Config) with the secrets
    /// error as its source.
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Secrets(flowstore_secrets::Error::Core(e)) => e,
            Error::Secrets(other) => CoreError::config(other.to_string()).with_source(other),
        }
    }
}

/// A secrets error as core's, keeping it as the source (see [`Error`]'s conversion).
pub(crate) fn secret_error(e: flowstore_secrets::Error) -> CoreError {
    Error::Secrets(e).into()
}

/// A provider API's HTTP answer that was not what was asked for (404, 401, 429, 500…): the
/// `source()` of the error reported for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpStatus {
    /// The HTTP status.
    pub status: u16,
    /// The start of the response body (at most 300 characters; providers explain errors there).
    pub body: String,
}

impl HttpStatus {
    pub(crate) fn new(status: u16, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let mut body: String = text.chars().take(300).collect();
        if text.chars().count() > 300 {
            body.push('…');
        }
        HttpStatus {
            status,
            body: body.trim().to_string(),
        }
    }
}

impl std::fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.body.is_empty() {
            write!(f, "HTTP {}", self.status)
        } else {
            write!(f, "HTTP {}: {}", self.status, self.body)
        }
    }
}

impl std::error::Error for HttpStatus {}

/// An error from libgit2 with any credential removed from its message: the `source()` of the
/// error a `Git` fetch reports (libgit2's own error is not kept, as its message may hold a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitError {
    /// libgit2's error class (`Net`, `Http`, `Ssh`, `Odb`, …).
    pub class: String,
    /// libgit2's error code (`NotFound`, `Auth`, `GenericError`, …).
    pub code: String,
    /// libgit2's message, credentials removed.
    pub message: String,
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "libgit2 ({}/{}): {}",
            self.class, self.code, self.message
        )
    }
}

impl std::error::Error for GitError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_errors_keep_their_cause() {
        let nf = flowstore_secrets::Error::Core(CoreError::SecretNotFound {
            name: "T".into(),
            searched: "env".into(),
        });
        assert!(matches!(
            CoreError::from(Error::Secrets(nf)),
            CoreError::SecretNotFound { .. }
        ));
        let bad = flowstore_secrets::Error::NotJson {
            name: "AWS_CREDENTIALS".into(),
            line: 1,
            column: 2,
        };
        let e = secret_error(bad);
        assert!(matches!(e, CoreError::Config { .. }), "{e:?}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn http_status_is_short() {
        let s = HttpStatus::new(404, "x".repeat(1000).as_bytes());
        assert_eq!(s.status, 404);
        assert!(s.to_string().len() < 320);
    }
}
