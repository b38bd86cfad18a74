//! The crate's error type.

use flowstore_core::Error as CoreError;

/// Errors from Webhook storage; every one converts into [`flowstore_core::Error`] (what a
/// `Storage` returns) with its kind kept and this error as the `source()` where it carries more
/// detail (the status, the server's answer, the transport failure).
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
        /// Which request (`build request`, `get_flow request`, a bundle's `blob check`,
        /// `blob upload`, `blob download`, or a prune's `directory listing`, `version read`,
        /// `version delete`, `blob delete`).
        what: &'static str,
        /// The HTTP method.
        method: String,
        /// The URL as configured (the template, never the rendered value).
        url: String,
        /// The status code (`404`).
        code: u16,
        /// The status line (`404 Not Found`).
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

/// The `what` of the request that fetches a flow.
pub(crate) const GET_FLOW_REQUEST: &str = "get_flow request";
/// The `what` of the request that sends a flow.
pub(crate) const BUILD_REQUEST: &str = "build request";
/// The `what` of a bundle blob's existence check (`HEAD`, with the build request's arguments).
pub(crate) const BLOB_CHECK: &str = "blob check";
/// The `what` of a bundle blob's upload (the build request's method and arguments).
pub(crate) const BLOB_UPLOAD: &str = "blob upload";
/// The `what` of a bundle blob's download (the get_flow request's method and arguments).
pub(crate) const BLOB_DOWNLOAD: &str = "blob download";
/// The `what` of a prune's blob delete (`DELETE`, with the get_flow request's arguments).
pub(crate) const BLOB_DELETE: &str = "blob delete";
/// The `what` of a directory listing (`GET <dir>/`, with the get_flow request's arguments).
pub(crate) const LISTING: &str = "directory listing";
/// The `what` of a read of a listed version (`GET`, with the get_flow request's arguments).
pub(crate) const VERSION_READ: &str = "version read";
/// The `what` of a listed version's delete (`DELETE`, with the get_flow request's arguments).
pub(crate) const VERSION_DELETE: &str = "version delete";

impl From<Error> for CoreError {
    /// - a 404 or 410 answer: [`CoreError::NotFound`] (`object` for the get_flow request,
    ///   `blob` for a bundle's blob requests, `flow version` for a listed version's read or
    ///   delete, `directory` for a listing, `endpoint` for the build request);
    /// - 401 or 403: [`CoreError::PermissionDenied`];
    /// - 408, 429, 5xx and transport failures (timeouts, refused or reset connections):
    ///   [`CoreError::Backend`] with `temporary: true`; other answers permanent;
    /// - a template that cannot be rendered: [`CoreError::Config`].
    ///
    /// The top-level message says what failed and what to do; this error, with the server's
    /// answer or the transport failure, is kept as its `source()`.
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Secrets(flowstore_secrets::Error::Core(e)) => e,
            Error::Secrets(other) => CoreError::config(
                "Webhook storage: a request argument's ${NAME} template cannot be rendered; set \
                 the environment variable or secret it names",
            )
            .with_source(other),
            Error::Config(message) => CoreError::config(format!("Webhook storage: {message}")),
            Error::Status {
                what,
                ref method,
                ref url,
                code,
                ref status,
                ..
            } => {
                let mapped = match code {
                    404 | 410 => {
                        let (thing, fix) = match what {
                            GET_FLOW_REQUEST => (
                                "object",
                                "Register the flow again, or check the url of get_flow_request_kwargs.",
                            ),
                            BLOB_CHECK | BLOB_UPLOAD | BLOB_DOWNLOAD | BLOB_DELETE => (
                                "blob",
                                "Register the bundle again (it uploads the blobs the server lacks), or check key_base_url.",
                            ),
                            VERSION_READ | VERSION_DELETE => (
                                "flow version",
                                "It is gone (pruned, or removed on the server); list the storage's versions again.",
                            ),
                            LISTING => (
                                "directory",
                                "Nothing is stored there yet, or key_base_url is wrong.",
                            ),
                            _ => (
                                "endpoint",
                                "Check the url and method of the build request (build_request_kwargs, build_request_http_method).",
                            ),
                        };
                        CoreError::not_found(
                            thing,
                            url.clone(),
                            format!(
                                "Webhook {thing} not found: {method} {url} answered {status} to the {what}. {fix}"
                            ),
                        )
                    }
                    401 | 403 => CoreError::permission_denied(
                        "Webhook",
                        url.clone(),
                        format!(
                            "the {what} {method} answered {status}; check the credentials it sends \
                             (the Authorization header or auth arguments, the secrets their ${{NAME}} \
                             templates name, or the builder's bearer_token / basic_auth)"
                        ),
                    ),
                    408 | 429 | 500..=599 => CoreError::temporary(
                        "Webhook",
                        format!(
                            "the {what} {method} {url} answered {status}; the server may recover, \
                             retrying later may help"
                        ),
                    ),
                    _ => CoreError::backend(
                        "Webhook",
                        format!("the {what} {method} {url} answered {status}"),
                    ),
                };
                mapped.with_source(e)
            }
            Error::Transport {
                what,
                ref method,
                ref url,
                attempts,
                ..
            } => CoreError::temporary(
                "Webhook",
                format!(
                    "the {what} {method} {url} failed after {attempts} attempt(s) (no answer, or \
                     the answer was cut off); retrying later may help"
                ),
            )
            .with_source(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(what: &'static str, code: u16) -> CoreError {
        Error::Status {
            what,
            method: "GET".into(),
            url: "https://files.example/f".into(),
            code,
            status: format!("{code} Something"),
            body: ": the body".into(),
        }
        .into()
    }

    #[test]
    fn statuses_map_to_typed_kinds_keeping_the_answer() {
        for code in [404, 410] {
            let e = status("get_flow request", code);
            assert!(
                matches!(e, CoreError::NotFound { what: "object", .. }),
                "{e:?}"
            );
        }
        for what in [BLOB_CHECK, BLOB_UPLOAD, BLOB_DOWNLOAD] {
            let e = status(what, 404);
            assert!(
                matches!(&e, CoreError::NotFound { what: "blob", .. }),
                "{e:?}"
            );
            assert!(e.to_string().contains("Register the bundle again"), "{e}");
        }
        assert!(matches!(
            status("build request", 404),
            CoreError::NotFound {
                what: "endpoint",
                ..
            }
        ));
        for code in [401, 403] {
            let e = status("get_flow request", code);
            assert!(matches!(e, CoreError::PermissionDenied { .. }), "{e:?}");
        }
        for code in [408, 429, 500, 503] {
            assert!(status("get_flow request", code).is_temporary(), "{code}");
        }
        let e = status("get_flow request", 400);
        assert!(matches!(e, CoreError::Backend { .. }) && !e.is_temporary());
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("the body"), "{cause}");
        assert!(!e.to_string().contains("the body"), "{e}");
    }

    #[test]
    fn transport_failures_are_temporary_and_templates_config() {
        let e: CoreError = Error::Transport {
            what: "build request",
            method: "PUT".into(),
            url: "https://files.example/f".into(),
            attempts: 4,
            reason: "timed out".into(),
        }
        .into();
        assert!(e.is_temporary());
        assert!(std::error::Error::source(&e)
            .unwrap()
            .to_string()
            .contains("timed out"));
        let e: CoreError = Error::Secrets(flowstore_secrets::Error::UnknownTemplateName {
            name: "NOPE".into(),
        })
        .into();
        assert!(matches!(e, CoreError::Config { .. }));
        assert!(std::error::Error::source(&e)
            .unwrap()
            .to_string()
            .contains("NOPE"));
    }
}
