//! [`GitBuilder`]: typed setters, [`GitBuilder::with_config`] pairs, a storage URL or the
//! environment, all ending in the same [`GitConfig`]; `build()` makes a [`Git`].

use std::path::PathBuf;
use std::sync::Arc;

use flowstore_core::raw::config::{apply_pairs, parse_url, url_path};
use flowstore_core::raw::FlowIndex;
use flowstore_core::secret::{NoSecrets, SecretSource, SecretString};
use flowstore_core::{Error as CoreError, Result};

use super::{
    cache, config, default_cache_dir, CachePolicy, Git, GitConfig, ProgressHook, URL_SCHEMES,
};

const URL_EXAMPLE: &str = "git+https://host/org/repo.git#branch=main";

/// Makes a [`Git`] storage: the repository and flow file, the ref, credentials, labels, and the
/// local clone cache. Filled by the typed setters, by [`GitBuilder::with_config`] (the
/// [`GitConfig`] keys), by [`GitBuilder::from_url`] or [`GitBuilder::from_env`]; all end in the
/// same state.
///
/// ```
/// use flowstore_git::{Git, GitBuilder};
/// let git = Git::builder("org/repo", "flows/etl.py")
///     .branch("main")
///     .pin(true)
///     .git_token_secret_name("MY_GIT_TOKEN")
///     .label("prod")
///     .build()?;
/// let same = GitBuilder::from_url("git+https://github.com/org/repo.git?label=prod#branch=main&pin&token_secret=MY_GIT_TOKEN")?
///     .flow_path("flows/etl.py")
///     .build()?;
/// assert_eq!(git.config(), same.config());
/// # Ok::<(), flowstore_core::Error>(())
/// ```
#[derive(Clone)]
pub struct GitBuilder {
    pub(super) config: GitConfig,
    pub(super) index: FlowIndex,
    pub(super) secrets: Arc<dyn SecretSource>,
    access_token: Option<SecretString>,
    cache_dir: Option<PathBuf>,
    cache_policy: Option<CachePolicy>,
    pub(super) progress: Option<ProgressHook>,
}

impl std::fmt::Debug for GitBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds secret *names* only; the typed token is shown as set or not.
        f.debug_struct("GitBuilder")
            .field("config", &self.config)
            .field("labels", &self.index.labels)
            .field("access_token", &self.access_token.as_ref().map(|_| "***"))
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl GitBuilder {
    /// A builder for `flow_path` (relative to the repository root) in `repo` (`org/repo` on
    /// `github.com` unless [`GitBuilder::host`] says otherwise).
    pub fn new(repo: impl Into<String>, flow_path: impl Into<String>) -> Self {
        Self::from_config(GitConfig {
            repo: Some(repo.into()),
            flow_path: flow_path.into(),
            ..GitConfig::default()
        })
    }

    /// A builder for a repository whose whole clone URL (credentials included) is kept in the
    /// secret `secret_name`, resolved at every fetch.
    pub fn from_clone_url_secret(
        secret_name: impl Into<String>,
        flow_path: impl Into<String>,
    ) -> Self {
        Self::from_config(GitConfig {
            git_clone_url_secret_name: Some(secret_name.into()),
            flow_path: flow_path.into(),
            ..GitConfig::default()
        })
    }

    /// A builder holding `config` as it is (e.g. read from a reference).
    pub fn from_config(config: GitConfig) -> Self {
        GitBuilder {
            config,
            index: FlowIndex::default(),
            secrets: Arc::new(NoSecrets),
            access_token: None,
            cache_dir: None,
            cache_policy: None,
            progress: None,
        }
    }

    /// A builder from a storage URL: `git+https://host/org/repo.git`, `git+http://…`,
    /// `git://host[:port]/org/repo.git` or `git+ssh://user@host[:port]/org/repo.git`.
    ///
    /// The query and the fragment take [`GitConfig`] keys (`#branch=main&pin=true`,
    /// `?tag=v1&label=prod`; the short keys `branch` and `token_secret`; a bare `pin` is
    /// `pin=true`), each applied with [`GitBuilder::with_config`]. A user in an https URL is the
    /// `git_token_username`, a password the [`access_token`](GitBuilder::access_token) (typed:
    /// never recorded; agents need `git_token_secret_name`); in an ssh URL the user is the ssh
    /// user. The flow file is the `flow_path` key, or set it with [`GitBuilder::flow_path`].
    ///
    /// Errors with [`CoreError::Config`] for a URL that does not parse, another scheme, a URL
    /// without host or repository path, and an unknown or ill-typed option (named).
    pub fn from_url(url: &str) -> Result<Self> {
        let u = parse_url(url, &URL_SCHEMES, URL_EXAMPLE)?;
        let bad = |why: &str| {
            CoreError::config(format!(
                "Git storage URL {}: {why}; it should look like {URL_EXAMPLE}",
                shown(&u)
            ))
        };
        let host = crate::urls::host_port(&u).ok_or_else(|| bad("it names no host"))?;
        let repo = url_path(&u)
            .map(|p| p.trim_end_matches(".git").to_string())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("it names no repository"))?;
        let mut b = GitBuilder::new(repo, "").host(host);
        let user = crate::urls::decode(u.username());
        let scheme = u.scheme().to_ascii_lowercase();
        if scheme == "git+ssh" {
            b.config.use_ssh = true;
            if u.password().is_some() {
                return Err(bad(
                    "an ssh URL takes no password (use ssh_key_path or an ssh-agent)",
                ));
            }
        } else {
            // https is the default, left unrecorded as a builder leaves it.
            let plain = scheme.trim_start_matches("git+");
            if plain != "https" {
                b.config.repo_scheme = Some(plain.to_string());
            }
            if let Some(p) = u.password() {
                b.access_token = Some(SecretString::from(crate::urls::decode(p)));
            }
        }
        if !user.is_empty() {
            b.config.git_token_username = Some(user);
        }
        for (k, v) in crate::urls::url_pairs(&u) {
            let v = if v.is_empty() && config::BOOL_OPTIONS.contains(&k.as_str()) {
                "true".to_string()
            } else {
                v
            };
            b = b.with_config(&k, &v)?;
        }
        Ok(b)
    }

    /// A builder for `flow_path` in `repo` that also takes flowstore's local cache settings from
    /// the environment: [`CACHE_ENV`](super::CACHE_ENV) (the cache directory) and the bounds
    /// `FLOWSTORE_GIT_CACHE_MAX_SIZE` / `FLOWSTORE_GIT_CACHE_MAX_AGE`. They are settings of this
    /// machine and never recorded in the reference; git itself has no standard variables that
    /// configure the repository to read.
    ///
    /// Errors with [`CoreError::Config`] for a cache bound that does not parse.
    pub fn from_env(repo: impl Into<String>, flow_path: impl Into<String>) -> Result<Self> {
        let mut b = Self::new(repo, flow_path);
        b.cache_dir = Some(default_cache_dir());
        b.cache_policy = Some(cache::policy_from_env()?);
        Ok(b)
    }

    /// The flow file, relative to the repository root (`add_flow` records it for each flow).
    pub fn flow_path(mut self, path: impl Into<String>) -> Self {
        self.config.flow_path = path.into();
        self
    }

    /// The host (and port) of the repository (default `github.com`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.config.repo_host = host.into();
        self
    }

    /// `https` (default), `http` or `git`: the scheme of the clone URL built from the host.
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.config.repo_scheme = Some(scheme.into());
        self
    }

    /// Check out this branch (resolved at every fetch unless pinned).
    pub fn branch(mut self, branch: impl Into<String>) -> Self {
        self.config.branch_name = Some(branch.into());
        self
    }

    /// Check out this tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.config.tag = Some(tag.into());
        self
    }

    /// Check out exactly this commit.
    pub fn commit(mut self, sha: impl Into<String>) -> Self {
        self.config.commit = Some(sha.into());
        self
    }

    /// Resolve the ref at `persist` and record the commit and each flow file's digest.
    pub fn pin(mut self, on: bool) -> Self {
        self.config.pin = on;
        self
    }

    /// The secret holding an access token (sent as HTTP basic auth); recorded by name so agents
    /// can resolve it.
    pub fn git_token_secret_name(mut self, name: impl Into<String>) -> Self {
        self.config.git_token_secret_name = Some(name.into());
        self
    }

    /// The username sent with the token (default: the repository's owner; e.g. `oauth2` for
    /// GitLab deploy tokens).
    pub fn git_token_username(mut self, user: impl Into<String>) -> Self {
        self.config.git_token_username = Some(user.into());
        self
    }

    /// Send the token as `{user}:{token}` (default true) rather than as the username.
    pub fn format_access_token(mut self, on: bool) -> Self {
        self.config.format_access_token = on;
        self
    }

    /// An access token for HTTPS, held in memory only: used instead of `git_token_secret_name`
    /// by this storage, never written to the reference, a log or `Debug` (agents opening the
    /// reference need `git_token_secret_name`).
    pub fn access_token(mut self, token: SecretString) -> Self {
        self.access_token = Some(token);
        self
    }

    /// The secret holding the whole clone URL, used verbatim.
    pub fn git_clone_url_secret_name(mut self, name: impl Into<String>) -> Self {
        self.config.git_clone_url_secret_name = Some(name.into());
        self
    }

    /// Clone over ssh as `user`, authenticating with this key file (else ssh-agent or
    /// `~/.ssh/id_*`), the server checked against `known_hosts` (default `~/.ssh/known_hosts`).
    pub fn ssh(
        mut self,
        user: impl Into<String>,
        key_path: Option<String>,
        known_hosts: Option<String>,
    ) -> Self {
        self.config.use_ssh = true;
        self.config.git_token_username = Some(user.into());
        self.config.ssh_key_path = key_path;
        self.config.known_hosts_path = known_hosts;
        self
    }

    /// Accept an ssh host whose key is not in the known-hosts file (off by default).
    pub fn ssh_accept_unknown_host(mut self, on: bool) -> Self {
        self.config.ssh_accept_unknown_host = on;
        self
    }

    /// Also check out submodules.
    pub fn submodules(mut self, on: bool) -> Self {
        self.config.submodules = on;
        self
    }

    /// Only write the flows' directories and these paths out of the commit.
    pub fn sparse_paths(mut self, paths: Vec<String>) -> Self {
        self.config.sparse_paths = paths;
        self
    }

    /// History depth for branches and tags (default 1; 0 = everything).
    pub fn clone_depth(mut self, depth: u32) -> Self {
        self.config.clone_depth = depth;
        self
    }

    /// Informational: the flow the file defines (recorded; flowstore loads the flow asked for).
    pub fn flow_name(mut self, name: impl Into<String>) -> Self {
        self.config.flow_name = Some(name.into());
        self
    }

    /// Where secrets are looked up (then the environment).
    pub fn secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    flowstore_core::builder_common_methods!(index);

    /// Sets one option by its [`GitConfig`] key (`branch_name`, `pin`, …, and the short `branch`,
    /// `token_secret`), or one every storage takes (`label`, `add_default_labels`, `secret`).
    ///
    /// Errors with [`CoreError::Config`] for an unknown key (listing the known ones) or a value
    /// the field cannot hold.
    pub fn with_config(mut self, key: &str, value: &str) -> Result<Self> {
        apply_pairs(&mut self.config, &mut self.index, [(key, value)])?;
        Ok(self)
    }

    /// Sets every pair in order (see [`GitBuilder::with_config`]).
    ///
    /// Errors as [`GitBuilder::with_config`] does, at the first bad pair.
    pub fn with_configs<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        apply_pairs(&mut self.config, &mut self.index, pairs)?;
        Ok(self)
    }

    /// The clone cache directory (default [`default_cache_dir`]); a setting of this machine,
    /// not recorded.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// How large and old the clone cache may grow (default: [`CachePolicy::default`], or the
    /// bounds set by `FLOWSTORE_GIT_CACHE_MAX_SIZE` / `FLOWSTORE_GIT_CACHE_MAX_AGE`).
    pub fn cache_policy(mut self, policy: CachePolicy) -> Self {
        self.cache_policy = Some(policy);
        self
    }

    /// A callback for fetch progress.
    pub fn with_progress(mut self, hook: ProgressHook) -> Self {
        self.progress = Some(hook);
        self
    }

    /// The configuration as it stands (what the reference will record).
    pub fn config(&self) -> &GitConfig {
        &self.config
    }

    /// Makes the storage (no network I/O: the repository is read at `persist` and `get_flow`).
    ///
    /// Errors with [`CoreError::Config`] when there is no repository (neither `repo` nor
    /// `git_clone_url_secret_name`), no `flow_path`, more than one of `branch_name`/`tag`/
    /// `commit`, or an unsupported `repo_scheme`.
    pub fn build(self) -> Result<Git> {
        self.config.validate()?;
        if self.config.flow_path.trim().is_empty() {
            return Err(CoreError::config(
                "Git storage needs `flow_path`, the flow's file in the repository (with the CLI: \
                 register with --script and the flow's path in the repository)",
            ));
        }
        Ok(Git {
            config: self.config,
            index: self.index,
            secrets: self.secrets,
            access_token: self.access_token,
            cache_dir: self.cache_dir.unwrap_or_else(default_cache_dir),
            cache_policy: self.cache_policy,
            progress: self.progress,
        })
    }
}

/// The URL for messages, without its password.
fn shown(u: &flowstore_core::raw::config::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_password(None);
    format!("\"{u}\"")
}
