//! The crate's error type.

/// Errors from Local and Module storage; every one converts into [`flowstore_core::Error`] (what
/// a `Storage` returns) with its kind kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error shared with the rest of flowstore.
    #[error(transparent)]
    Core(#[from] flowstore_core::Error),

    /// A Module flow lookup that cannot pick one flow: several flows of that name, or the
    /// published flow has another name (in the reference system's words, naming the module).
    /// Becomes [`flowstore_core::Error::Config`].
    #[error("{0}")]
    Module(String),

    /// A Module flow lookup found nothing: no such module, attribute or flow. Becomes
    /// [`flowstore_core::Error::NotFound`].
    #[error("{message}")]
    ModuleNotFound {
        /// What is missing: `module` or `flow`.
        what: &'static str,
        /// The location looked up (`module` or `module:attr`).
        location: String,
        /// What is missing, where, and what to do.
        message: String,
    },
}

impl From<Error> for flowstore_core::Error {
    /// Keeps the kind: a missing module or flow is [`flowstore_core::Error::NotFound`], an
    /// ambiguous lookup [`flowstore_core::Error::Config`], each keeping this error as `source()`
    /// (downcast it to match on the variant).
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Module(ref message) => {
                flowstore_core::Error::config(message.clone()).with_source(e)
            }
            Error::ModuleNotFound {
                what,
                ref location,
                ref message,
            } => flowstore_core::Error::not_found(what, location.clone(), message.clone())
                .with_source(e),
        }
    }
}
