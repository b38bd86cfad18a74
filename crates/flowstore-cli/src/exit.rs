//! Exit codes that mean something.

use flowstore::Error;

/// The process exit codes of `flowstore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: success.
    Success = 0,
    /// 1: any other failure.
    Failure = 1,
    /// 2: bad command line (clap uses it too).
    Usage = 2,
    /// 3: the flow, reference file, object, bucket, repository, ref or file was not found.
    NotFound = 3,
    /// 4: a stored flow is corrupt or was altered; it was not loaded.
    Corrupt = 4,
    /// 5: a name conflict or an object that already exists (nothing was overwritten).
    Conflict = 5,
    /// 6: the storage or reference is misconfigured (bad field, unknown type, missing secret).
    Config = 6,
    /// 7: the backend failed (network, server, permissions).
    Backend = 7,
}

impl ExitCode {
    /// The exit code for an error chain: the first flowstore error in it decides.
    pub fn for_error(e: &anyhow::Error) -> Self {
        for cause in e.chain() {
            if let Some(err) = cause.downcast_ref::<Error>() {
                return match err {
                    Error::FlowNotFound { .. } | Error::NotFound { .. } => ExitCode::NotFound,
                    Error::FlowCorrupt { .. } | Error::OutsideStorage { .. } => ExitCode::Corrupt,
                    Error::NameConflict { .. } | Error::AlreadyExists { .. } => ExitCode::Conflict,
                    Error::UnknownType { .. }
                    | Error::UnknownScheme { .. }
                    | Error::InvalidReference { .. }
                    | Error::Config { .. }
                    | Error::SecretNotFound { .. }
                    | Error::Unsupported { .. }
                    | Error::Decode { .. } => ExitCode::Config,
                    Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                        ExitCode::NotFound
                    }
                    Error::Io { .. } | Error::Backend { .. } | Error::PermissionDenied { .. } => {
                        ExitCode::Backend
                    }
                    _ => ExitCode::Failure,
                };
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::NotFound {
                    return ExitCode::NotFound;
                }
            }
        }
        ExitCode::Failure
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}
