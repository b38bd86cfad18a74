//! GitLab (gitlab.com or self-hosted) through the v4 files API.

use flowstore_core::raw::config::{parse_url, BackendConfig};
use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};

use super::http::{
    decode_base64, encode_segment, optional_secret, retry_after, Http, Reply, THROTTLE_BUDGET,
};
use super::{api_storage, env_var, ApiFile, Credentials, Provider};

const BACKEND: &str = "GitLab";

/// The secret holding a token when `access_token_secret` is not set (Prefect 1's default).
pub const DEFAULT_TOKEN_SECRET: &str = "GITLAB_ACCESS_TOKEN";

/// The URL schemes [`GitLabBuilder::from_url`] takes (`gitlab+http` for a plain-HTTP host).
pub const URL_SCHEMES: [&str; 2] = ["gitlab", "gitlab+http"];

const URL_EXAMPLE: &str = "gitlab://gitlab.com/group/project/-/flows/etl.py?ref=main";

/// The backend fields of a `GitLab` reference (Prefect 1's names). Never holds a token: only the
/// name of the secret that does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitLabConfig {
    /// The project: `group/project` (subgroups allowed) or its numeric id.
    pub repo: String,
    /// The flow file's path (flows added with `add_flow_at` record their own).
    pub path: String,
    /// The GitLab host URL (default `https://gitlab.com`).
    #[serde(default)]
    pub host: Option<String>,
    /// A branch, tag or commit (default: the project's default branch — not a hard-coded `master`).
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// The secret holding a token, sent as `PRIVATE-TOKEN` (default [`DEFAULT_TOKEN_SECRET`]).
    #[serde(default)]
    pub access_token_secret: Option<String>,
}

impl BackendConfig for GitLabConfig {
    const TYPE_NAME: &'static str = "GitLab";
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("repo", "repo"),
        ("path", "path"),
        ("host", "host"),
        ("ref", "ref"),
        ("access_token_secret", "access_token_secret"),
    ];
}

api_storage! {
    /// Flow files in a GitLab project, read through the v4 files API (see the
    /// [module docs](super)); made by [`GitLabBuilder`].
    storage GitLab;
    /// Makes a [`GitLab`] storage: typed setters, [`GitLabBuilder::with_config`] (the
    /// [`GitLabConfig`] keys), [`GitLabBuilder::from_url`] or [`GitLabBuilder::from_env`], all
    /// ending in the same state.
    ///
    /// ```
    /// use flowstore_git::{GitLab, GitLabBuilder};
    /// let a = GitLab::builder("group/sub/project", "flows/etl.py")
    ///     .host("https://gitlab.example.com")
    ///     .git_ref("main")
    ///     .build()?;
    /// let b = GitLabBuilder::from_url("gitlab://gitlab.example.com/group/sub/project/-/flows/etl.py?ref=main")?
    ///     .build()?;
    /// assert_eq!(a.config(), b.config());
    /// # Ok::<(), flowstore_core::Error>(())
    /// ```
    builder GitLabBuilder;
    config GitLabConfig;
}

impl GitLab {
    /// A builder for `path` in project `repo`; see [`GitLabBuilder::new`].
    pub fn builder(repo: impl Into<String>, path: impl Into<String>) -> GitLabBuilder {
        GitLabBuilder::new(repo, path)
    }
}

impl GitLabBuilder {
    /// A builder for the flow file `path` in project `repo` (`group/project` or its id) on
    /// gitlab.com, at the project's default branch, with the token from secret
    /// [`DEFAULT_TOKEN_SECRET`] if set.
    pub fn new(repo: impl Into<String>, path: impl Into<String>) -> Self {
        Self::from_config(GitLabConfig {
            repo: repo.into(),
            path: path.into(),
            host: None,
            git_ref: None,
            access_token_secret: None,
        })
    }

    /// A builder from `gitlab://host/group/project[/-/path/to/flow.py][?ref=…]`
    /// (`gitlab+http://` for a plain-HTTP host): the URL's host is the GitLab host (recorded as
    /// `https://host`, or `http://host`), the path up to `/-/` the project, the rest the flow
    /// file; every query pair is applied with [`GitLabBuilder::with_config`].
    ///
    /// Errors with [`CoreError::Config`] for another scheme, a URL without host or project, and
    /// an unknown or ill-typed option (named).
    pub fn from_url(url: &str) -> Result<Self> {
        let u = parse_url(url, &URL_SCHEMES, URL_EXAMPLE)?;
        let segments = crate::urls::segments(&u);
        let (project, path) = match segments.iter().position(|s| s == "-") {
            Some(i) => (&segments[..i], &segments[i + 1..]),
            None => (&segments[..], &segments[..0]),
        };
        let (Some(host), false) = (crate::urls::host_port(&u), project.is_empty()) else {
            return Err(CoreError::config(format!(
                "GitLab storage URL \"{url}\" names no host and project; it should look like {URL_EXAMPLE}"
            )));
        };
        let scheme = if u.scheme().eq_ignore_ascii_case("gitlab+http") {
            "http"
        } else {
            "https"
        };
        let mut b = Self::new(project.join("/"), path.join("/"));
        if !(scheme == "https" && host == "gitlab.com") {
            b = b.host(format!("{scheme}://{host}"));
        }
        b.with_configs(crate::urls::url_pairs(&u))
    }

    /// A builder for `path` in project `repo` that takes the GitLab host from the environment,
    /// recorded as `host`: `GITLAB_URL`, else `GITLAB_HOST` (as the `glab` CLI reads it), else
    /// `CI_SERVER_URL` (set by GitLab CI); a host without a scheme gets `https://`. Tokens are
    /// not read here: the secret [`DEFAULT_TOKEN_SECRET`] (or the one `access_token_secret`
    /// names) is looked up at fetch, in the secret sources then the environment.
    ///
    /// Errors: none today (a `Result` for variables that may need checking).
    pub fn from_env(repo: impl Into<String>, path: impl Into<String>) -> Result<Self> {
        let mut b = Self::new(repo, path);
        if let Some(host) = ["GITLAB_URL", "GITLAB_HOST", "CI_SERVER_URL"]
            .iter()
            .find_map(|v| env_var(v))
        {
            let host = if host.contains("://") {
                host
            } else {
                format!("https://{host}")
            };
            b = b.with_config("host", &host)?;
        }
        Ok(b)
    }

    /// The flow file's path in the repository.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.0.config.path = path.into();
        self
    }

    /// The GitLab host URL (`https://gitlab.example.com`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.0.config.host = Some(host.into());
        self
    }

    /// A branch, tag or commit SHA (a SHA is fixed: its digest is checked at every fetch).
    pub fn git_ref(mut self, git_ref: impl Into<String>) -> Self {
        self.0.config.git_ref = Some(git_ref.into());
        self
    }

    /// The secret holding the token, recorded by name so agents can resolve it.
    pub fn access_token_secret(mut self, name: impl Into<String>) -> Self {
        self.0.config.access_token_secret = Some(name.into());
        self
    }

    /// A token held in memory only: used instead of the secret, never written to the
    /// reference, a log or `Debug` (agents opening the reference resolve the secret).
    pub fn access_token(mut self, token: SecretString) -> Self {
        self.0.credentials.token = Some(token);
        self
    }
}

#[async_trait]
impl Provider for GitLabConfig {
    fn path(&self) -> &str {
        &self.path
    }

    fn git_ref(&self) -> Option<&str> {
        self.git_ref.as_deref()
    }

    fn validate(&self) -> Result<()> {
        if self.repo.trim().is_empty() {
            return Err(CoreError::config(
                "GitLab storage needs `repo`, the project",
            ));
        }
        Ok(())
    }

    async fn fetch(
        &self,
        path: &str,
        http: &Http,
        credentials: &Credentials,
        secrets: &dyn SecretSource,
    ) -> Result<ApiFile> {
        let host = self
            .host
            .as_deref()
            .unwrap_or("https://gitlab.com")
            .trim_end_matches('/');
        let secret = self
            .access_token_secret
            .as_deref()
            .unwrap_or(DEFAULT_TOKEN_SECRET);
        let token = match &credentials.token {
            Some(t) => Some(t.clone()),
            None => optional_secret(secret, secrets)?,
        };
        let repo = &self.repo;
        let project = format!("{host}/api/v4/projects/{}", encode_segment(repo));
        let get = |url: String| {
            let token = token.clone();
            move || {
                let rb = http.client().get(&url);
                match &token {
                    Some(t) => rb.header("PRIVATE-TOKEN", t.expose_secret()),
                    None => rb,
                }
            }
        };
        let token_from = if credentials.token.is_some() {
            "the access token given to the builder".to_string()
        } else {
            format!("the token in secret {secret}")
        };
        let refused = |r: &Reply, what: &str| -> Result<()> {
            match r.status {
                401 => Err(r.status_error(
                    BACKEND,
                    repo,
                    "Unable to authenticate GitLab account. Please check your credentials."
                        .to_string(),
                )),
                403 => Err(r.status_error(
                    BACKEND,
                    repo,
                    format!(
                        "GitLab: {} may not read project {repo} on {host} (403 Forbidden): give \
                         it the read_api or read_repository scope and access to the project",
                        if token.is_some() {
                            token_from.as_str()
                        } else {
                            "no token was set; anonymous access"
                        }
                    ),
                )),
                429 => {
                    let asked = match retry_after(&r.headers) {
                        Some(d) => format!("GitLab asked to wait {} s", d.as_secs()),
                        None => "GitLab named no wait".to_string(),
                    };
                    Err(CoreError::temporary(
                        BACKEND,
                        format!(
                            "GitLab rate limit hit while {what} for project {repo} on {host} \
                             (HTTP 429): {asked}, more than flowstore waits ({} s in all). Try \
                             again later",
                            THROTTLE_BUDGET.as_secs()
                        ),
                    )
                    .with_source(r.http_status()))
                }
                _ => Ok(()),
            }
        };
        let send = |what: &'static str, url: String| {
            http.send_throttled(BACKEND, what, |status, _, _| status == 429, get(url))
        };
        let project_missing = |r: &Reply| {
            CoreError::not_found(
                "repository",
                format!("{host}/{repo}"),
                format!(
                    "GitLab: Project {repo} not found on {host}. Ensure the project exists{}.",
                    if token.is_some() {
                        " and the token may see it"
                    } else {
                        " (no token was set, and private projects answer 404 without one)"
                    }
                ),
            )
            .with_source(r.http_status())
        };
        let git_ref = match &self.git_ref {
            Some(r) => r.clone(),
            None => {
                let what = "reading the project";
                let r = send(what, project.clone()).await?;
                refused(&r, what)?;
                if r.status == 404 {
                    return Err(project_missing(&r));
                }
                if r.status != 200 {
                    return Err(r.status_error(
                        BACKEND,
                        repo,
                        format!("GitLab: {what} {repo} on {host} failed"),
                    ));
                }
                match r.json(BACKEND, what)?["default_branch"].as_str() {
                    Some(b) if !b.trim().is_empty() => b.to_string(),
                    // An empty project has no default branch (`null`): there is no file to read.
                    _ => {
                        return Err(CoreError::not_found(
                            "ref",
                            format!("{host}/{repo}"),
                            format!(
                                "GitLab: project {repo} on {host} has no default branch: it has \
                                 no commits yet. Push the flow file, or set `ref`"
                            ),
                        )
                        .with_source(r.http_status()))
                    }
                }
            }
        };
        let url = format!(
            "{project}/repository/files/{}?ref={}",
            encode_segment(path),
            encode_segment(&git_ref)
        );
        let r = send("reading the file", url).await?;
        refused(&r, "reading the file")?;
        if r.status == 404 {
            // GitLab says which: "404 Project Not Found", "404 Commit Not Found", "404 File Not Found".
            let said = String::from_utf8_lossy(&r.body).to_ascii_lowercase();
            let message = format!("GitLab: Error retrieving file contents at {path} in {repo}@{git_ref}. Ensure the project and file exist.");
            let (what, location) = if said.contains("project not found") {
                ("repository", format!("{host}/{repo}"))
            } else if said.contains("commit not found") || said.contains("ref not found") {
                ("ref", format!("{repo}@{git_ref}"))
            } else {
                ("file", format!("{repo}@{git_ref}:{path}"))
            };
            return Err(CoreError::not_found(what, location, message).with_source(r.http_status()));
        }
        if r.status != 200 {
            return Err(r.status_error(
                BACKEND,
                &format!("{repo}@{git_ref}:{path}"),
                format!("Error retrieving file contents at {path} in {repo}@{git_ref}"),
            ));
        }
        let v = r.json(BACKEND, "reading the file")?;
        let content = decode_base64(BACKEND, path, v["content"].as_str().unwrap_or_default())?;
        // GitLab sends the content's SHA-256: bytes cut short or altered on the way are refused.
        if let Some(want) = v["content_sha256"].as_str() {
            let got = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&content));
            if !got.eq_ignore_ascii_case(want) {
                return Err(CoreError::temporary(
                    BACKEND,
                    format!(
                        "GitLab: the content read for {path} in {repo}@{git_ref} does not match \
                         its content_sha256 {want}: it was cut short or altered on the way; try \
                         again"
                    ),
                ));
            }
        }
        let commit = v["commit_id"].as_str().unwrap_or(&git_ref).to_string();
        Ok(ApiFile { commit, content })
    }
}
