//! The fields of a `Git` reference (Prefect 1's names, plus flowstore's `repo_scheme`, `pin`,
//! `pinned_from` and `sparse_paths`).

use serde::{Deserialize, Serialize};

fn default_host() -> String {
    "github.com".to_string()
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// The backend fields of a `Git` reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitFields {
    /// The flow's file, relative to the repository root.
    pub flow_path: String,
    /// `org/repo`.
    #[serde(default)]
    pub repo: Option<String>,
    /// The host (default `github.com`; may carry a port).
    #[serde(default = "default_host")]
    pub repo_host: String,
    /// Informational: the flow the file defines (flowstore loads the flow asked for by name).
    #[serde(default)]
    pub flow_name: Option<String>,
    /// The secret holding an access token.
    #[serde(default)]
    pub git_token_secret_name: Option<String>,
    /// The username sent with the token (default: the repo's owner).
    #[serde(default)]
    pub git_token_username: Option<String>,
    /// A secret holding the whole clone URL, used verbatim.
    #[serde(default)]
    pub git_clone_url_secret_name: Option<String>,
    /// A branch, resolved at every fetch.
    #[serde(default)]
    pub branch_name: Option<String>,
    /// A tag, resolved at every fetch.
    #[serde(default)]
    pub tag: Option<String>,
    /// A commit, checked out exactly.
    #[serde(default)]
    pub commit: Option<String>,
    /// History depth fetched for a branch or tag (default 1; 0 = full history).
    #[serde(default = "one")]
    pub clone_depth: u32,
    /// Clone over ssh (`ssh://git@{repo_host}/{repo}.git`).
    #[serde(default)]
    pub use_ssh: bool,
    /// Send the token as `{user}:{token}` (default) rather than as the username.
    #[serde(default = "yes")]
    pub format_access_token: bool,
    /// `https` (default), `http` or `git`: the scheme of the URL built from `repo_host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_scheme: Option<String>,
    /// Resolve the branch or tag at `build` and record the commit, so every run of this
    /// registration gets the same code.
    #[serde(default)]
    pub pin: bool,
    /// The branch or tag a pinned commit was resolved from (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_from: Option<String>,
    /// ssh: the private key file (else ssh-agent when `SSH_AUTH_SOCK` is set, else
    /// `~/.ssh/id_ed25519` or `~/.ssh/id_rsa`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_path: Option<String>,
    /// ssh: the known-hosts file the server's key is checked against (default `~/.ssh/known_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_path: Option<String>,
    /// ssh: accept a host whose key is not in the known-hosts file (default false: refused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ssh_accept_unknown_host: bool,
    /// Also check out the repository's submodules (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub submodules: bool,
    /// Sparse checkout: only the flow's directory and these paths are written out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sparse_paths: Vec<String>,
}

impl Default for GitFields {
    fn default() -> Self {
        GitFields {
            flow_path: String::new(),
            repo: None,
            repo_host: default_host(),
            flow_name: None,
            git_token_secret_name: None,
            git_token_username: None,
            git_clone_url_secret_name: None,
            branch_name: None,
            tag: None,
            commit: None,
            clone_depth: 1,
            use_ssh: false,
            format_access_token: true,
            repo_scheme: None,
            pin: false,
            pinned_from: None,
            ssh_key_path: None,
            known_hosts_path: None,
            ssh_accept_unknown_host: false,
            submodules: false,
            sparse_paths: Vec::new(),
        }
    }
}

/// What to check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The remote's default branch.
    Default,
    Branch(String),
    Tag(String),
    Commit(String),
}

impl GitFields {
    /// Checks the fields can work: a repository to clone and at most one ref.
    pub(crate) fn validate(&self) -> Result<(), flowstore_core::Error> {
        if self.repo.is_none() && self.git_clone_url_secret_name.is_none() {
            return Err(flowstore_core::Error::config(
                "Either `repo` or `git_clone_url_secret_name` must be provided",
            ));
        }
        self.target().map(|_| ())
    }

    /// The ref to check out. Errors with the reference system's message when more than one of
    /// `branch_name`, `tag`, `commit` is set.
    pub(crate) fn target(&self) -> Result<Target, flowstore_core::Error> {
        match (&self.branch_name, &self.tag, &self.commit) {
            (None, None, None) => Ok(Target::Default),
            (Some(b), None, None) => Ok(Target::Branch(b.clone())),
            (None, Some(t), None) => Ok(Target::Tag(t.clone())),
            (None, None, Some(c)) => Ok(Target::Commit(c.clone())),
            _ => Err(flowstore_core::Error::config(
                "Please provide only one of the following parameters: `branch_name`, `tag`, `commit`",
            )),
        }
    }
}
