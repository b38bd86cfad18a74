//! Git, GitHub, GitLab, Bitbucket and CodeCommit flow storage for flowstore.
//!
//! - [`git::Git`] (feature `git`): clones a repository (shallow, cached) and loads a script flow
//!   committed in it, with its neighbour files.
//! - [`api`]: `GitHub`, `GitLab`, `Bitbucket`, `CodeCommit` (features of the same names) fetch one
//!   flow file through the host's REST API.
#![warn(missing_docs)]

#[cfg(any(
    feature = "github",
    feature = "gitlab",
    feature = "bitbucket",
    feature = "codecommit"
))]
pub mod api;
mod error;
#[cfg(feature = "git")]
pub mod git;

pub use error::Error;

/// Registers the backends compiled in (`Git` and its URL schemes).
pub fn register(registry: &mut flowstore_core::Registry) {
    #[cfg(feature = "git")]
    git::register(registry);
    #[cfg(any(
        feature = "github",
        feature = "gitlab",
        feature = "bitbucket",
        feature = "codecommit"
    ))]
    api::register(registry);
    let _ = registry;
}
