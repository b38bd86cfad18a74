//! The crate's error type.

/// Errors from secret lookup and template rendering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error shared with the rest of flowstore (e.g. a secret that was not found).
    #[error(transparent)]
    Core(#[from] flowstore_core::Error),

    /// A secret that should hold JSON does not (the value is never quoted).
    #[error("Secret \"{name}\" is not valid JSON (error at line {line}, column {column}); store a JSON document in it")]
    NotJson {
        /// The secret's name.
        name: String,
        /// Line of the syntax error.
        line: usize,
        /// Column of the syntax error.
        column: usize,
    },

    /// A `${NAME}` template names something that is neither an environment variable nor a secret.
    #[error("Template value '{name}' does not refer to an environment variable or secret.")]
    UnknownTemplateName {
        /// The name in the template.
        name: String,
    },
}

impl From<Error> for flowstore_core::Error {
    /// Core errors pass through; the others become [`flowstore_core::Error::Config`] with the same
    /// message and this crate's error kept as `source()` (downcast it to match on the variant).
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            other => flowstore_core::Error::config(other.to_string()).with_source(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variant_survives_as_the_source() {
        let core: flowstore_core::Error = Error::UnknownTemplateName { name: "X".into() }.into();
        let source = std::error::Error::source(&core).expect("kept as source");
        assert!(matches!(
            source.downcast_ref::<Error>(),
            Some(Error::UnknownTemplateName { name }) if name == "X"
        ));
    }
}
