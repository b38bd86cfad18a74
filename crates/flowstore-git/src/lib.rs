//! Git, GitHub, GitLab, Bitbucket and CodeCommit flow storage for
//! [flowstore](https://docs.rs/flowstore-core): **script flows committed in a repository**, read
//! (never written) by an agent at every run, as Prefect 1's storages of the same names did.
//!
//! - [`Git`] (feature `git`): clones the repository over `git://`, HTTPS or ssh — shallow, one
//!   ref, into a clone cache that heals itself and stays bounded — checks out the branch, tag or
//!   exact commit asked for, and loads the flow's file from the checkout (with the files beside
//!   it on disk). With `pin`, the ref is resolved at registration and the commit and each file's
//!   digest are recorded, so every run of a registration gets the same code. It also serves
//!   *bundles*: a directory of the repository at the resolved commit, as one flow.
//! - [`GitHub`], [`GitLab`], [`Bitbucket`] (Server and Cloud), [`CodeCommit`] (features
//!   `github`, `gitlab`, `bitbucket`, `codecommit`): read the flow's file through the host's
//!   REST API, without a clone. The digest is recorded at registration and checked when the ref
//!   is a fixed commit SHA.
//!
//! Each storage is made by its builder ([`GitBuilder`], [`GitHubBuilder`], …) from typed setters,
//! `with_config(key, value)` pairs, a storage URL (`git+https://host/org/repo.git#branch=main`,
//! `github://owner/repo/flows/etl.py?ref=main`, …) or the provider's environment variables, and
//! reopened by agents from the reference it writes. Credentials given as typed values
//! ([`SecretString`](flowstore_core::secret::SecretString)) are never recorded; the reference
//! names the *secrets* an agent resolves instead (`git_token_secret_name`,
//! `access_token_secret`, …).
//!
//! # Features
//!
//! All on by default: `git` (libgit2, vendored), `github`, `gitlab`, `bitbucket`, `codecommit`
//! (the four over `reqwest` with rustls).
//!
//! # Capabilities
//!
//! All five are read-only storages of script flows ([`Capabilities::READ_ONLY_SCRIPTS`](flowstore_core::Capabilities::READ_ONLY_SCRIPTS));
//! [`Git`] also serves bundles: a directory of the repository at the resolved commit (see
//! [the `git` module](crate::git#bundles)).
//!
//! | Storage | write | many flows | serialized | script | list versions | stream to file | bundles |
//! |---|---|---|---|---|---|---|---|
//! | [`Git`] | no | yes | no | yes | no | no | yes (a directory of the repository) |
//! | [`GitHub`] | no | yes | no | yes | no | no | no |
//! | [`GitLab`] | no | yes | no | yes | no | no | no |
//! | [`Bitbucket`] | no | yes | no | yes | no | no | no |
//! | [`CodeCommit`] | no | yes | no | yes | no | no | no |
//!
//! None deletes: `flowstore prune` refuses them (remove old flows from the repository with a
//! commit).
//!
//! Several flows per storage: `add_flow` records the configured file for a flow, and
//! `add_flow_at(name, path)` another file of the same repository and ref.
//!
//! # Errors
//!
//! A missing repository, ref, file (or a file that does not name the flow) is
//! [`Error::NotFound`](flowstore_core::Error::NotFound); refused credentials
//! [`PermissionDenied`](flowstore_core::Error::PermissionDenied); timeouts, rate limits and
//! server errors a temporary [`Backend`](flowstore_core::Error::Backend) error; altered bytes
//! [`FlowCorrupt`](flowstore_core::Error::FlowCorrupt). The server's answer ([`HttpStatus`]) or
//! libgit2's error ([`GitError`], credentials removed) is kept as the `source()`.
//!
//! # Register and fetch: Git
//!
//! ```no_run
//! use flowstore_core::{FlowContent, FlowInput, Registry, Storage};
//! use flowstore_git::Git;
//!
//! # async fn run() -> flowstore_core::Result<()> {
//! // Registration: the flow's file is committed in the repository; pin the commit.
//! let mut storage = Git::builder("org/flows", "flows/etl.py")
//!     .branch("main")
//!     .pin(true)
//!     .git_token_secret_name("GITHUB_TOKEN")
//!     .build()?;
//! storage.add_flow(FlowInput::script("My ETL Flow")).await?;
//! storage.persist().await?;
//! let reference = storage.reference()?.to_json();
//!
//! // An agent, later: open the reference and fetch the flow (its checkout is on disk).
//! let mut registry = Registry::new();
//! flowstore_git::register(&mut registry);
//! let flow = registry.open_json(&reference)?.get_flow("My ETL Flow").await?;
//! if let FlowContent::Script { source, path } = &flow.content {
//!     println!("{} bytes at commit {:?}, in {path:?}", source.len(), flow.revision);
//! }
//! # Ok(()) }
//! ```
//!
//! # Register and fetch: GitHub
//!
//! ```no_run
//! use flowstore_core::{FlowInput, Registry, Storage};
//! use flowstore_git::GitHubBuilder;
//!
//! # async fn run() -> flowstore_core::Result<()> {
//! let mut storage = GitHubBuilder::from_url("github://org/flows/flows/etl.py?ref=main")?
//!     .access_token_secret("GITHUB_TOKEN")
//!     .build()?;
//! storage.add_flow(FlowInput::script("My ETL Flow")).await?;
//! storage.persist().await?;
//! let reference = storage.reference()?;
//!
//! let mut registry = Registry::new();
//! flowstore_git::register(&mut registry);
//! let flow = registry.open(&reference)?.get_flow("My ETL Flow").await?;
//! println!("read {} bytes at commit {:?}", flow.bytes().len(), flow.revision);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Helpers shared by the backends (HTTP, URLs, errors) are partly unused when only some are built.
#![cfg_attr(
    not(all(
        feature = "git",
        feature = "github",
        feature = "gitlab",
        feature = "bitbucket",
        feature = "codecommit"
    )),
    allow(dead_code)
)]

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
mod urls;

pub use error::{Error, GitError, HttpStatus};

#[cfg(feature = "bitbucket")]
pub use api::bitbucket::{Bitbucket, BitbucketBuilder, BitbucketConfig};
#[cfg(feature = "codecommit")]
pub use api::codecommit::{CodeCommit, CodeCommitBuilder, CodeCommitConfig};
#[cfg(feature = "github")]
pub use api::github::{GitHub, GitHubBuilder, GitHubConfig};
#[cfg(feature = "gitlab")]
pub use api::gitlab::{GitLab, GitLabBuilder, GitLabConfig};
#[cfg(feature = "git")]
pub use git::{Git, GitBuilder, GitConfig};

/// Registers the backends compiled in: `Git` (URL schemes `git+https`, `git+http`, `git+ssh`,
/// `git`), `GitHub` (`github`), `GitLab` (`gitlab`, `gitlab+http`), `Bitbucket` (`bitbucket`,
/// `bitbucket+http`) and `CodeCommit` (`codecommit`).
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
