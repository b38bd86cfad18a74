//! The crate's error type, and how it maps onto [`flowstore_core::Error`].

use flowstore_core::error::BoxError;
use flowstore_core::Error as CoreError;

/// Errors from Docker storage: its settings, the registry, the Docker Engine and the build.
///
/// Converted into [`flowstore_core::Error`] at the [`Storage`](flowstore_core::Storage)
/// boundary: a registry `404` (missing repository, tag, manifest or blob) becomes
/// [`NotFound`](flowstore_core::Error::NotFound) (`what: "image"`), `401`/`403`
/// [`PermissionDenied`](flowstore_core::Error::PermissionDenied), a `408`/`429`/`5xx`, a timeout
/// or an unreachable registry or daemon a temporary [`Backend`](flowstore_core::Error::Backend)
/// error; the transport error stays the `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error shared with the rest of flowstore.
    #[error(transparent)]
    Core(#[from] CoreError),

    /// A secret (registry credentials) could not be resolved.
    #[error(transparent)]
    Secrets(#[from] flowstore_secrets::Error),

    /// The storage's settings cannot work (both `base_image` and `dockerfile`, a relative path in
    /// `files`, a daemon-only option in a daemonless build, a bad `docker://` URL or option).
    #[error("Docker storage: {0}")]
    Config(String),

    /// The registry refused a request or could not be reached.
    #[error("Docker registry {registry}: {what} in repository {repository}: {message}")]
    #[non_exhaustive]
    Registry {
        /// The registry's base URL.
        registry: String,
        /// The repository (image name) the request was for.
        repository: String,
        /// What was being done (`uploading a blob`, `reading manifest v1`).
        what: String,
        /// The status and the registry's own error text, or what went wrong in transport, with
        /// a hint.
        message: String,
        /// The HTTP status the registry (or its token server) answered with, if it answered.
        status: Option<u16>,
        /// The transport error, if the request did not get an answer.
        #[source]
        source: Option<BoxError>,
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
    #[non_exhaustive]
    Engine {
        /// What was being done (`connecting`, `pushing 127.0.0.1:5000/etl:tag`).
        what: String,
        /// The daemon's own error text.
        message: String,
        /// The HTTP status the daemon answered with, if it answered.
        status: Option<u16>,
        /// True when the daemon could not be reached or timed out (trying again may work).
        unreachable: bool,
        /// The client's error.
        #[source]
        source: Option<BoxError>,
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

/// True for a status worth trying again later.
fn temporary_status(status: u16) -> bool {
    matches!(status, 408 | 429) || (500..600).contains(&status)
}

/// True when a transport error says the server could not be reached or did not answer in time.
fn transport_unreachable(source: &Option<BoxError>) -> bool {
    source
        .as_ref()
        .and_then(|s| s.downcast_ref::<reqwest::Error>())
        .is_some_and(|e| e.is_timeout() || e.is_connect())
}

impl From<Error> for CoreError {
    /// Core and secrets errors pass through; every other variant becomes the core kind it is
    /// (a missing image is `NotFound`, a refused login `PermissionDenied`, an unreachable or
    /// failing registry or daemon a temporary `Backend`) and is kept as the `source()`, so a
    /// caller can downcast to this enum and match on the variant.
    fn from(e: Error) -> Self {
        let e = match e {
            Error::Core(e) => return e,
            Error::Secrets(e) => return e.into(),
            other => other,
        };
        let backend = crate::TYPE_NAME;
        let full = e.to_string();
        let mapped = match &e {
            Error::Core(_) | Error::Secrets(_) => unreachable!("returned above"),
            Error::Config(_) => CoreError::config(full),
            Error::Registry {
                registry,
                repository,
                what,
                message,
                status,
                source,
                ..
            } => {
                let location = format!("{registry}/{repository}");
                let temporary =
                    status.map_or_else(|| transport_unreachable(source), temporary_status);
                match status {
                    Some(404) => CoreError::not_found("image", location, full),
                    Some(401 | 403) => CoreError::permission_denied(
                        backend,
                        location,
                        format!("{what}: {message}"),
                    ),
                    _ if temporary => CoreError::temporary(backend, full),
                    _ => CoreError::backend(backend, full),
                }
            }
            Error::Engine {
                status,
                unreachable,
                ..
            } => match status {
                Some(404) => CoreError::not_found("image", "the Docker Engine", full),
                Some(401 | 403) => CoreError::permission_denied(backend, "the Docker Engine", full),
                Some(s) if temporary_status(*s) => CoreError::temporary(backend, full),
                _ if *unreachable => CoreError::temporary(backend, full),
                _ => CoreError::backend(backend, full),
            },
            Error::DigestMismatch { .. } | Error::BuildFailed { .. } => {
                CoreError::backend(backend, full)
            }
        };
        mapped.with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_error(status: Option<u16>, source: Option<BoxError>) -> Error {
        Error::Registry {
            registry: "http://127.0.0.1:5000".into(),
            repository: "etl".into(),
            what: "reading manifest v1".into(),
            message: "it went wrong".into(),
            status,
            source,
        }
    }

    #[test]
    fn statuses_map_onto_core_kinds() {
        let e: CoreError = registry_error(Some(404), None).into();
        assert!(e.is_not_found(), "{e:?}");
        assert!(
            matches!(e, CoreError::NotFound { what: "image", ref location, .. } if location == "http://127.0.0.1:5000/etl")
        );
        let e: CoreError = registry_error(Some(401), None).into();
        assert!(matches!(e, CoreError::PermissionDenied { .. }), "{e:?}");
        let e: CoreError = registry_error(Some(503), None).into();
        assert!(e.is_temporary(), "{e:?}");
        let e: CoreError = registry_error(Some(400), None).into();
        assert!(!e.is_temporary() && !e.is_not_found(), "{e:?}");
        let cause: BoxError = Box::new(std::io::Error::other("lower"));
        let e: CoreError = registry_error(None, Some(cause)).into();
        // The variant is kept as the source, and the lower error behind it.
        let source = std::error::Error::source(&e).expect("kept");
        assert!(matches!(
            source.downcast_ref::<Error>(),
            Some(Error::Registry { .. })
        ));
        assert_eq!(
            source.source().map(|s| s.to_string()).as_deref(),
            Some("lower")
        );
    }
}
