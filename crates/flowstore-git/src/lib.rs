//! Git, GitHub, GitLab, Bitbucket and CodeCommit flow storage for flowstore.
//!
//! Part of flowstore; see the workspace README.
