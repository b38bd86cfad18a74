//! Git, GitHub, GitLab, Bitbucket and CodeCommit flow storage for flowstore.
//!
//! - `Git` (feature `git`): clones a repository and loads a script flow committed in it.
//! - `GitHub`, `GitLab`, `Bitbucket`, `CodeCommit` (features of the same names): fetch one flow
//!   file through the host's REST API.
#![warn(missing_docs)]

mod error;

pub use error::Error;
