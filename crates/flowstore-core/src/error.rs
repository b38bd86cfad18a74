//! The error type shared by every flowstore crate.
//!
//! Backend crates define their own error enum that wraps [`Error`] and convert into it at the
//! [`Storage`](crate::Storage) boundary, so a caller holding a `Box<dyn Storage>` sees one type.
//! Every variant names the thing that is wrong (flow, location, type, secret) and says what to do.

use std::fmt;

/// A boxed error from a lower layer (I/O, HTTP client, cloud SDK), kept as the `source()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout flowstore.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One version that differs between the program that wrote a flow and the one reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDiff {
    /// What is versioned (`flowstore`, the application's name, the codec).
    pub component: String,
    /// The version recorded when the flow was built (`None` if it was not recorded).
    pub built_with: Option<String>,
    /// The version running now (`None` if unknown here).
    pub running_with: Option<String>,
}

impl fmt::Display for VersionDiff {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let f = self;
        let show = |v: &Option<String>| match v {
            Some(v) => format!("{v:?}"),
            None => "(not recorded)".to_string(),
        };
        write!(
            out,
            "- {}: (flow built with {}, currently running with {})",
            f.component,
            show(&f.built_with),
            show(&f.running_with)
        )
    }
}

/// Everything that can go wrong storing or fetching a flow.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `add_flow` was given a name the storage already holds.
    #[error("Name conflict: Flow with the name \"{name}\" is already present in this storage.")]
    NameConflict {
        /// The flow's name.
        name: String,
    },

    /// `get_flow` was asked for a name the storage does not hold.
    #[error(
        "Flow \"{name}\" is not contained in this storage (it holds: {known}). \
         Register the flow first, or open the storage from the reference written at registration."
    )]
    FlowNotFound {
        /// The requested name.
        name: String,
        /// The names the storage does hold, comma-separated (or `no flows`).
        known: String,
    },

    /// The stored bytes do not match what was recorded at registration.
    #[error("Flow \"{flow}\" at {location} is corrupt or was altered: {reason}. It was not loaded; register the flow again.")]
    FlowCorrupt {
        /// The flow's name.
        flow: String,
        /// Where it was read from.
        location: String,
        /// What check failed.
        reason: String,
    },

    /// A serialized flow could not be decoded into the requested type.
    #[error("{}", decode_message(.flow, .reason, .versions))]
    Decode {
        /// The flow's name.
        flow: String,
        /// The codec's error.
        reason: String,
        /// Every version that differs between writer and reader.
        versions: Vec<VersionDiff>,
    },

    /// A location already holds an object; flowstore never overwrites a stored flow.
    #[error("Refusing to overwrite {location}: an object is already stored there. Choose another key, or remove the old object first.")]
    AlreadyExists {
        /// The location that is taken.
        location: String,
    },

    /// A reference names a storage type that is not compiled in.
    #[error("Unknown storage type \"{type_name}\": this program knows {known}. Add the backend crate that provides it and register it.")]
    UnknownType {
        /// The `type` field of the reference.
        type_name: String,
        /// The types the registry knows, comma-separated.
        known: String,
    },

    /// A storage URL scheme no compiled-in backend handles.
    #[error("Unknown storage URL scheme in \"{url}\": this program knows {known}.")]
    UnknownScheme {
        /// The URL as given.
        url: String,
        /// The schemes the registry knows.
        known: String,
    },

    /// A storage reference is malformed.
    #[error("Invalid storage reference: {reason}")]
    InvalidReference {
        /// What is wrong with it.
        reason: String,
    },

    /// A storage was configured with values that cannot work.
    #[error("{message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
        /// The lower error (a backend crate's own error, a URL parser's), if any.
        #[source]
        source: Option<BoxError>,
    },

    /// Something a storage needs does not exist: the bucket, container, repository, ref, file,
    /// object or image (a flow missing from the storage's own index is [`Error::FlowNotFound`]).
    #[error("{message}")]
    NotFound {
        /// What is missing: `bucket`, `object`, `repository`, `ref`, `file`, `image`, …
        what: &'static str,
        /// Where it was looked for (`s3://bucket/key`, `owner/repo@ref:path`).
        location: String,
        /// The full message: what is missing, where, and what to do.
        message: String,
        /// The lower error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// The server refused the credentials, or they do not allow the operation.
    #[error("{backend}: permission denied for {location}: {message}")]
    PermissionDenied {
        /// The backend's type name.
        backend: String,
        /// What was refused (`s3://bucket/key`, a repository).
        location: String,
        /// Why, and what to do (which secret or credential to check).
        message: String,
        /// The lower error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// A location from a reference points outside the storage it belongs to.
    #[error("Location {location} of flow \"{flow}\" is outside the storage {root}; refusing to read it.")]
    OutsideStorage {
        /// The flow's name.
        flow: String,
        /// The offending location.
        location: String,
        /// The storage's root.
        root: String,
    },

    /// A secret the storage needs could not be found.
    #[error(
        "Secret \"{name}\" was not found (searched: {searched}). Set it in one of those places."
    )]
    SecretNotFound {
        /// The secret's name.
        name: String,
        /// Every place that was searched.
        searched: String,
    },

    /// The operation is not supported by this backend.
    #[error("{backend} storage does not support {what}")]
    Unsupported {
        /// The backend's type name.
        backend: String,
        /// The operation.
        what: String,
    },

    /// An I/O error with the path or object it happened on.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An error from a backend (network, server, SDK), with what was being done.
    #[error("{backend}: {message}")]
    Backend {
        /// The backend's type name.
        backend: String,
        /// What failed, naming the object, bucket or ref, and what to do.
        message: String,
        /// True when trying again later may succeed (a timeout, a 5xx, a rate limit).
        temporary: bool,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

fn decode_message(flow: &str, reason: &str, versions: &[VersionDiff]) -> String {
    let mut msg = format!("Flow \"{flow}\" could not be deserialized: {reason}");
    if versions.is_empty() {
        msg.push_str(
            "\nThe writer and reader versions match; the flow type itself may have changed.",
        );
    } else {
        msg.push_str(
            "\nThis may be due to one of the following version mismatches between the flow build and execution environments:",
        );
        for v in versions {
            msg.push('\n');
            msg.push_str(&v.to_string());
        }
    }
    msg
}

impl Error {
    /// An [`Error::Io`] naming what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::Config`] with the given message.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Backend`] without an underlying source (permanent: retrying will not help).
    pub fn backend(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Backend {
            backend: backend.into(),
            message: message.into(),
            temporary: false,
            source: None,
        }
    }

    /// An [`Error::Backend`] that may succeed if tried again later (timeouts, 5xx, rate limits).
    pub fn temporary(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Backend {
            backend: backend.into(),
            message: message.into(),
            temporary: true,
            source: None,
        }
    }

    /// An [`Error::NotFound`]: `what` (`bucket`, `object`, `ref`…) at `location`; `message` is the
    /// whole sentence shown to the user (what is missing, where, what to do).
    pub fn not_found(
        what: &'static str,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::NotFound {
            what,
            location: location.into(),
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::PermissionDenied`] for `location` on `backend`.
    pub fn permission_denied(
        backend: impl Into<String>,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::PermissionDenied {
            backend: backend.into(),
            location: location.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Keeps `cause` as this error's [`source()`](std::error::Error::source), on the variants
    /// that carry one (`Config`, `NotFound`, `PermissionDenied`, `Backend`); others are unchanged.
    pub fn with_source(mut self, cause: impl Into<BoxError>) -> Self {
        match &mut self {
            Error::Config { source, .. }
            | Error::NotFound { source, .. }
            | Error::PermissionDenied { source, .. }
            | Error::Backend { source, .. } => *source = Some(cause.into()),
            _ => {}
        }
        self
    }

    /// True when trying the same operation again later may succeed: a backend failure marked
    /// temporary (timeouts, server errors, rate limits) or an interrupted or timed-out I/O.
    /// Missing objects, refused credentials, corrupt flows and bad configuration are permanent.
    pub fn is_temporary(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            Error::Backend { temporary, .. } => *temporary,
            Error::Io { source, .. } => matches!(
                source.kind(),
                K::Interrupted
                    | K::TimedOut
                    | K::WouldBlock
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::ConnectionRefused
            ),
            _ => false,
        }
    }

    /// True when something asked for does not exist: a flow the storage does not hold
    /// ([`Error::FlowNotFound`]), a missing bucket, object, repository, ref or file
    /// ([`Error::NotFound`]), or a missing secret ([`Error::SecretNotFound`]).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::FlowNotFound { .. } | Error::NotFound { .. } | Error::SecretNotFound { .. }
        )
    }

    /// An [`Error::InvalidReference`].
    pub fn invalid_reference(reason: impl Into<String>) -> Self {
        Error::InvalidReference {
            reason: reason.into(),
        }
    }

    /// An [`Error::FlowNotFound`] listing the names that are known.
    pub fn flow_not_found<'a>(name: &str, known: impl IntoIterator<Item = &'a String>) -> Self {
        let known: Vec<&str> = known.into_iter().map(|s| s.as_str()).collect();
        Error::FlowNotFound {
            name: name.to_string(),
            known: if known.is_empty() {
                "no flows".to_string()
            } else {
                known
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_causes_are_kept() {
        let cause = std::io::Error::other("connection reset by peer");
        let e = Error::temporary("S3", "uploading s3://b/k failed").with_source(cause);
        assert!(e.is_temporary() && !e.is_not_found());
        assert_eq!(
            std::error::Error::source(&e)
                .map(|s| s.to_string())
                .as_deref(),
            Some("connection reset by peer")
        );
        let e = Error::not_found("bucket", "s3://nope", "Bucket s3://nope does not exist");
        assert!(e.is_not_found() && !e.is_temporary());
        assert!(!Error::backend("S3", "bad request").is_temporary());
        let io = Error::io(
            "reading x",
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        );
        assert!(io.is_temporary());
        let denied = Error::permission_denied("S3", "s3://b/k", "check AWS_CREDENTIALS");
        assert!(denied
            .to_string()
            .contains("permission denied for s3://b/k"));
    }
}
