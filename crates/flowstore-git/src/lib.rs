//! Git, GitHub, GitLab, Bitbucket and CodeCommit flow storage for flowstore.
//!
//! - [`git::Git`] (feature `git`): clones a repository (shallow, cached) and loads a script flow
//!   committed in it, with its neighbour files.
//! - `GitHub`, `GitLab`, `Bitbucket`, `CodeCommit` (REST APIs): not built yet.
#![warn(missing_docs)]

mod error;
#[cfg(feature = "git")]
pub mod git;

pub use error::Error;

/// Registers the backends compiled in (`Git` and its URL schemes).
pub fn register(registry: &mut flowstore_core::Registry) {
    #[cfg(feature = "git")]
    git::register(registry);
    let _ = registry;
}
