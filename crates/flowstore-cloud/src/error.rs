//! The crate's error type, and how `object_store` and HTTP failures map to flowstore's kinds.

use flowstore_core::error::BoxError;
use flowstore_core::Error as CoreError;

/// Errors from the cloud storages' builders.
///
/// Everything that happens after `build` (uploads, downloads, listings) is reported as a
/// [`flowstore_core::Error`] directly: [`NotFound`](CoreError::NotFound) for a missing bucket,
/// container or object, [`PermissionDenied`](CoreError::PermissionDenied) for refused
/// credentials, and [`Backend`](CoreError::Backend) (temporary for timeouts, 429 and 5xx after
/// the retries) otherwise, each keeping the client's error as `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error shared with the rest of flowstore.
    #[error(transparent)]
    Core(#[from] CoreError),
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
        /// The client's own error, when there is one (never one that shows a credential).
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// A [`Error::Client`] without a lower error.
    pub(crate) fn client(backend: &'static str, message: impl Into<String>) -> Self {
        Error::Client {
            backend,
            message: message.into(),
            source: None,
        }
    }
}

/// `Client` becomes [`CoreError::Config`] with the same message, keeping the `Client` error
/// (and the client's own error behind it) as `source()`; `Core` and `Secrets` become what they
/// wrap.
impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Secrets(e) => e.into(),
            client @ Error::Client { .. } => {
                CoreError::config(client.to_string()).with_source(client)
            }
        }
    }
}

/// What a failed request was doing: it decides whether a 404 means the bucket or the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Uploading or replacing an object: a 404 means the bucket (container) is missing.
    Put,
    /// Reading an object: a 404 is the object, unless the service says the bucket is missing.
    Get,
    /// Listing: a 404 means the bucket is missing.
    List,
    /// Deleting an object: a missing object is success (callers check before mapping), so a
    /// 404 that reaches the mapping means the bucket (container) is missing; a refusal names
    /// the permission deleting needs.
    Delete,
}

/// Where a failure happened, for messages.
pub(crate) struct Failure<'a> {
    /// `S3`, `Azure`, `GCS`.
    pub backend: &'static str,
    /// `s3://bucket`, `az://container`, `gs://bucket`.
    pub display: &'a str,
    /// The object's URL (or the bucket's for listings).
    pub location: String,
    /// `uploading to s3://b/k`, `downloading …`, `listing …`.
    pub what: String,
    pub op: Op,
}

/// The word for a bucket on this backend (Azure: container).
pub(crate) fn bucket_word(backend: &str) -> &'static str {
    if backend == "Azure" {
        "container"
    } else {
        "bucket"
    }
}

/// What permission deleting needs on each backend, for "permission denied" hints on deletes.
fn delete_hint(backend: &str) -> &'static str {
    match backend {
        "S3" => "these credentials may not delete objects; pruning needs s3:DeleteObject on the bucket's keys",
        "Azure" => "these credentials may not delete objects; pruning needs the delete permission (a SAS token with `d`, or the Storage Blob Data Contributor role)",
        _ => "these credentials may not delete objects; pruning needs storage.objects.delete (e.g. the Storage Object Admin role)",
    }
}

/// Where each backend's credentials come from, for "permission denied" hints.
fn credentials_hint(backend: &str) -> &'static str {
    match backend {
        "S3" => "check the typed credentials, the AWS_CREDENTIALS secret or the AWS_* variables, and the bucket policy",
        "Azure" => "check the account key, SAS token or connection string (connection_string_secret / AZURE_STORAGE_CONNECTION_STRING)",
        _ => "check the service-account key, the GCP_CREDENTIALS secret or GOOGLE_APPLICATION_CREDENTIALS, and the bucket's IAM",
    }
}

impl Failure<'_> {
    /// The bucket (container) is missing.
    pub fn bucket_missing(&self, source: Option<BoxError>) -> CoreError {
        let word = bucket_word(self.backend);
        let mut title = word.to_string();
        title[..1].make_ascii_uppercase();
        let e = CoreError::not_found(
            word,
            self.display.to_string(),
            format!(
                "{}: {title} {} does not exist ({}). Create it, or fix the {word} name in the storage configuration.",
                self.backend, self.display, self.what
            ),
        );
        with(e, source)
    }

    /// The object is missing.
    pub fn object_missing(&self, source: Option<BoxError>) -> CoreError {
        let e = CoreError::not_found(
            "object",
            self.location.clone(),
            format!(
                "{}: object {} does not exist ({}); it was deleted, or the reference points at another {}. Register the flow again.",
                self.backend,
                self.location,
                self.what,
                bucket_word(self.backend)
            ),
        );
        with(e, source)
    }

    /// The server refused the credentials or the operation.
    pub fn denied(&self, detail: &str, source: Option<BoxError>) -> CoreError {
        let e = CoreError::permission_denied(
            self.backend,
            self.location.clone(),
            format!(
                "{} was refused ({detail}); {}",
                self.what,
                if self.op == Op::Delete {
                    delete_hint(self.backend)
                } else {
                    credentials_hint(self.backend)
                }
            ),
        );
        with(e, source)
    }

    /// Any other failure; `temporary` when trying again later may help.
    pub fn other(&self, detail: &str, temporary: bool, source: Option<BoxError>) -> CoreError {
        let message = if temporary {
            format!(
                "{} failed after retries: {detail}. The service or the network may be down; try again later.",
                self.what
            )
        } else {
            format!("{} failed: {detail}", self.what)
        };
        let e = if temporary {
            CoreError::temporary(self.backend, message)
        } else {
            CoreError::backend(self.backend, message)
        };
        with(e, source)
    }

    /// Maps an `object_store` error (S3 and Azure).
    pub fn object_store(&self, e: object_store::Error) -> CoreError {
        let text = e.to_string();
        let (transport, status) = inspect(&e);
        let not_found = matches!(e, object_store::Error::NotFound { .. }) || status == Some(404);
        let denied = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || matches!(status, Some(401 | 403));
        if not_found {
            if self.op != Op::Get || names_missing_bucket(&text) {
                self.bucket_missing(Some(Box::new(e)))
            } else {
                self.object_missing(Some(Box::new(e)))
            }
        } else if denied {
            let detail = status.map_or("401/403".to_string(), |s| format!("HTTP {s}"));
            self.denied(&detail, Some(Box::new(e)))
        } else {
            let temporary = transport || matches!(status, Some(429 | 500..=599));
            self.other(&text, temporary, Some(Box::new(e)))
        }
    }

    /// Maps an HTTP status the GCS JSON API answered with (after retries); `bucket_missing`
    /// says whether a 404 on a read is the bucket's.
    pub fn status(&self, status: u16, body: String, bucket_missing: bool) -> CoreError {
        let source: BoxError = Box::new(HttpStatus {
            status,
            body: body.chars().take(200).collect(),
        });
        match status {
            404 if self.op != Op::Get || bucket_missing => self.bucket_missing(Some(source)),
            404 => self.object_missing(Some(source)),
            401 | 403 => self.denied(&format!("HTTP {status}"), Some(source)),
            429 | 500..=599 => self.other(&format!("HTTP {status}"), true, Some(source)),
            _ => self.other(&source.to_string(), false, Some(source)),
        }
    }
}

fn with(e: CoreError, source: Option<BoxError>) -> CoreError {
    match source {
        Some(s) => e.with_source(s),
        None => e,
    }
}

/// The service error codes that say the bucket (container), not the object, is missing.
pub(crate) fn names_missing_bucket(text: &str) -> bool {
    ["NoSuchBucket", "ContainerNotFound", "bucket does not exist"]
        .iter()
        .any(|code| text.contains(code))
}

/// What a client error's chain says: whether it is a transport failure that may pass if tried
/// again (connection errors, timeouts, interrupted requests), and the HTTP status the service
/// answered with (after `object_store`'s retries within the [`RetryPolicy`](crate::RetryPolicy)).
fn inspect(e: &object_store::Error) -> (bool, Option<u16>) {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            let transient = matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
            return (transient, None);
        }
        // The retry layer's own error type is private; its message carries the status.
        let text = err.to_string();
        if let Some(rest) = text.split("status code: ").nth(1) {
            let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
            return (false, code.parse().ok());
        }
        current = err.source();
    }
    (false, None)
}

/// An HTTP answer that was not a success (the GCS JSON API's errors), kept as `source()`.
#[derive(Debug)]
pub(crate) struct HttpStatus {
    status: u16,
    body: String,
}

impl std::fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if !self.body.trim().is_empty() {
            write!(f, ": {}", self.body.trim())?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpStatus {}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(op: Op) -> Failure<'static> {
        Failure {
            backend: "S3",
            display: "s3://b",
            location: "s3://b/k".into(),
            what: "downloading s3://b/k".into(),
            op,
        }
    }

    #[test]
    fn client_errors_keep_their_cause() {
        let cause = std::io::Error::other("bad endpoint");
        let e: CoreError = Error::Client {
            backend: "S3",
            message: "bad endpoint".into(),
            source: Some(Box::new(cause)),
        }
        .into();
        assert!(matches!(e, CoreError::Config { .. }), "{e:?}");
        // The `Client` variant is the source, and the client's own error is behind it.
        let source = std::error::Error::source(&e).expect("kept");
        assert!(matches!(
            source.downcast_ref::<Error>(),
            Some(Error::Client { backend: "S3", .. })
        ));
        assert_eq!(
            source.source().map(|s| s.to_string()),
            Some("bad endpoint".to_string())
        );
        assert!(e
            .to_string()
            .starts_with("S3 storage could not be configured"));
    }

    #[test]
    fn statuses_map_to_kinds() {
        let e = failure(Op::Get).status(404, "No such object".into(), false);
        assert!(
            matches!(e, CoreError::NotFound { what: "object", .. }),
            "{e:?}"
        );
        assert!(std::error::Error::source(&e).is_some());
        let e = failure(Op::Get).status(404, String::new(), true);
        assert!(
            matches!(e, CoreError::NotFound { what: "bucket", .. }),
            "{e:?}"
        );
        let e = failure(Op::Put).status(404, String::new(), false);
        assert!(
            matches!(e, CoreError::NotFound { what: "bucket", .. }),
            "{e:?}"
        );
        let e = failure(Op::Put).status(403, String::new(), false);
        assert!(matches!(e, CoreError::PermissionDenied { .. }), "{e:?}");
        assert!(failure(Op::Put)
            .status(503, String::new(), false)
            .is_temporary());
        assert!(failure(Op::Put)
            .status(429, String::new(), false)
            .is_temporary());
        assert!(!failure(Op::Put)
            .status(400, String::new(), false)
            .is_temporary());
    }

    #[test]
    fn a_refused_delete_names_the_permission() {
        let e = Failure {
            what: "deleting s3://b/k".into(),
            ..failure(Op::Delete)
        }
        .status(403, String::new(), false);
        assert!(matches!(e, CoreError::PermissionDenied { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("deleting s3://b/k") && text.contains("s3:DeleteObject"),
            "{text}"
        );
        // A 404 that reaches the mapping on a delete is the bucket's (a missing object is
        // success before it).
        let e = failure(Op::Delete).status(404, String::new(), false);
        assert!(
            matches!(e, CoreError::NotFound { what: "bucket", .. }),
            "{e:?}"
        );
    }

    #[test]
    fn object_store_errors_map_to_kinds() {
        let nf = |msg: &str| object_store::Error::NotFound {
            path: "k".into(),
            source: msg.to_string().into(),
        };
        let e = failure(Op::Get).object_store(nf("NoSuchKey"));
        assert!(
            matches!(e, CoreError::NotFound { what: "object", .. }),
            "{e:?}"
        );
        let e = failure(Op::Get).object_store(nf("<Code>NoSuchBucket</Code>"));
        assert!(
            matches!(e, CoreError::NotFound { what: "bucket", .. }),
            "{e:?}"
        );
        let e = failure(Op::Get).object_store(object_store::Error::Unauthenticated {
            path: "k".into(),
            source: "no".to_string().into(),
        });
        assert!(matches!(e, CoreError::PermissionDenied { .. }), "{e:?}");
        let e = failure(Op::Get).object_store(object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Service Unavailable: "
                .to_string()
                .into(),
        });
        assert!(e.is_temporary(), "{e:?}");
        assert!(std::error::Error::source(&e).is_some());
        // Azure's listing of a missing container is a generic error with a 404.
        let e = failure(Op::List).object_store(object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: "Server returned non-2xx status code: 404 Not Found: ContainerNotFound"
                .to_string()
                .into(),
        });
        assert!(
            matches!(e, CoreError::NotFound { what: "bucket", .. }),
            "{e:?}"
        );
    }
}
