//! The configuration of a `Git` storage: exactly the backend fields of its reference (Prefect 1's
//! names, plus flowstore's `repo_scheme`, `pin`, `pinned_from`, the ssh settings, `submodules`
//! and `sparse_paths`).

use flowstore_core::raw::config::BackendConfig;
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

/// The backend fields of a `Git` reference, as [`GitBuilder`](super::GitBuilder) fills them and
/// [`Git::config`](super::Git::config) shows them. Never holds a credential: only the *names* of
/// the secrets that hold them.
///
/// ```
/// use flowstore_core::raw::config::BackendConfig;
/// use flowstore_git::GitConfig;
/// let mut config = GitConfig::default();
/// config.set_all([("repo", "org/flows"), ("flow_path", "etl.py"), ("branch", "main"), ("pin", "true")])?;
/// assert_eq!(config.branch_name.as_deref(), Some("main"));
/// assert!(config.pin);
/// # Ok::<(), flowstore_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitConfig {
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
    /// Sparse checkout: only the flows' directories and these paths are written out (empty:
    /// the whole commit). Always recorded, so `sparse_paths=…` pairs append to it.
    #[serde(default)]
    pub sparse_paths: Vec<String>,
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
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

impl BackendConfig for GitConfig {
    const TYPE_NAME: &'static str = "Git";
    /// Every field but `pinned_from` (written by a pinning `persist`), plus the short keys of
    /// the `git+https://…#branch=main` URL fragment: `branch`, `token_secret`.
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("flow_path", "flow_path"),
        ("repo", "repo"),
        ("repo_host", "repo_host"),
        ("repo_scheme", "repo_scheme"),
        ("flow_name", "flow_name"),
        ("git_token_secret_name", "git_token_secret_name"),
        ("token_secret", "git_token_secret_name"),
        ("git_token_username", "git_token_username"),
        ("git_clone_url_secret_name", "git_clone_url_secret_name"),
        ("branch_name", "branch_name"),
        ("branch", "branch_name"),
        ("tag", "tag"),
        ("commit", "commit"),
        ("clone_depth", "clone_depth"),
        ("use_ssh", "use_ssh"),
        ("format_access_token", "format_access_token"),
        ("pin", "pin"),
        ("ssh_key_path", "ssh_key_path"),
        ("known_hosts_path", "known_hosts_path"),
        ("ssh_accept_unknown_host", "ssh_accept_unknown_host"),
        ("submodules", "submodules"),
        ("sparse_paths", "sparse_paths"),
    ];
}

/// The options that are true or false (a bare `pin` in a URL fragment means `pin=true`).
pub(crate) const BOOL_OPTIONS: &[&str] = &[
    "pin",
    "use_ssh",
    "format_access_token",
    "ssh_accept_unknown_host",
    "submodules",
    "add_default_labels",
];

impl GitConfig {
    /// Checks the configuration can work: a repository to clone, a known scheme and at most one
    /// ref. Errors with [`flowstore_core::Error::Config`] naming the field.
    pub(crate) fn validate(&self) -> Result<(), flowstore_core::Error> {
        if self.repo.as_deref().is_none_or(str::is_empty)
            && self.git_clone_url_secret_name.is_none()
        {
            return Err(flowstore_core::Error::config(
                "Either `repo` or `git_clone_url_secret_name` must be provided",
            ));
        }
        if let Some(scheme) = &self.repo_scheme {
            if !matches!(scheme.as_str(), "https" | "http" | "git") {
                return Err(flowstore_core::Error::config(format!(
                    "Git repo_scheme \"{scheme}\" is not supported: use https, http or git (or use_ssh for ssh)"
                )));
            }
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
