//! GitHub (and GitHub Enterprise) through the REST API: resolve the ref to a commit, read the
//! file at that commit.

use flowstore_core::raw::config::{parse_url, BackendConfig};
use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};

use super::http::{decode_base64, encode_path, encode_segment, optional_secret, Http, Reply};
use super::{api_storage, env_var, ApiFile, Credentials, Provider};

const BACKEND: &str = "GitHub";

/// The secret holding a token when `access_token_secret` is not set (Prefect 1's default).
pub const DEFAULT_TOKEN_SECRET: &str = "GITHUB_ACCESS_TOKEN";

/// The URL schemes [`GitHubBuilder::from_url`] takes.
pub const URL_SCHEMES: [&str; 1] = ["github"];

const URL_EXAMPLE: &str = "github://owner/repo/flows/etl.py?ref=main";

/// The backend fields of a `GitHub` reference (Prefect 1's names). Never holds a token: only the
/// name of the secret that does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitHubConfig {
    /// `owner/repo`.
    pub repo: String,
    /// The flow file's path (flows added with `add_flow_at` record their own).
    pub path: String,
    /// A branch, tag or commit (default: the repository's default branch).
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// The secret holding a token (default [`DEFAULT_TOKEN_SECRET`]; anonymous if unset).
    #[serde(default)]
    pub access_token_secret: Option<String>,
    /// The API base (default `https://api.github.com`; Enterprise: `https://host/api/v3`).
    #[serde(default)]
    pub base_url: Option<String>,
}

impl BackendConfig for GitHubConfig {
    const TYPE_NAME: &'static str = "GitHub";
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("repo", "repo"),
        ("path", "path"),
        ("ref", "ref"),
        ("access_token_secret", "access_token_secret"),
        ("base_url", "base_url"),
    ];
}

api_storage! {
    /// Flow files in a GitHub repository, read through the REST API (see the
    /// [module docs](super)); made by [`GitHubBuilder`].
    ///
    /// ```no_run
    /// use flowstore_core::{FlowInput, Storage};
    /// use flowstore_git::GitHub;
    /// # async fn run() -> flowstore_core::Result<()> {
    /// let mut gh = GitHub::builder("org/flows", "flows/etl.py").git_ref("main").build()?;
    /// gh.add_flow(FlowInput::script("ETL")).await?;
    /// gh.persist().await?;
    /// let source = gh.get_flow("ETL").await?;
    /// # let _ = source; Ok(()) }
    /// ```
    storage GitHub;
    /// Makes a [`GitHub`] storage: typed setters, [`GitHubBuilder::with_config`] (the
    /// [`GitHubConfig`] keys), [`GitHubBuilder::from_url`] or [`GitHubBuilder::from_env`], all
    /// ending in the same state.
    ///
    /// ```
    /// use flowstore_git::{GitHub, GitHubBuilder};
    /// let a = GitHub::builder("org/flows", "flows/etl.py").git_ref("v1").label("prod").build()?;
    /// let b = GitHubBuilder::from_url("github://org/flows/flows/etl.py?ref=v1&label=prod")?.build()?;
    /// assert_eq!(a.config(), b.config());
    /// # Ok::<(), flowstore_core::Error>(())
    /// ```
    builder GitHubBuilder;
    config GitHubConfig;
}

impl GitHub {
    /// A builder for `path` in `repo` (`owner/repo`); see [`GitHubBuilder::new`].
    pub fn builder(repo: impl Into<String>, path: impl Into<String>) -> GitHubBuilder {
        GitHubBuilder::new(repo, path)
    }
}

impl GitHubBuilder {
    /// A builder for the flow file `path` in `repo` (`owner/repo`) on github.com, at the
    /// repository's default branch, with the token from secret [`DEFAULT_TOKEN_SECRET`] if set.
    pub fn new(repo: impl Into<String>, path: impl Into<String>) -> Self {
        Self::from_config(GitHubConfig {
            repo: repo.into(),
            path: path.into(),
            git_ref: None,
            access_token_secret: None,
            base_url: None,
        })
    }

    /// A builder from `github://owner/repo[/path/to/flow.py][?ref=…&base_url=…]`: the host and
    /// first path segment are the repository, the rest is the flow file; every query pair is
    /// applied with [`GitHubBuilder::with_config`].
    ///
    /// Errors with [`CoreError::Config`] for another scheme, a URL without `owner/repo`, and an
    /// unknown or ill-typed option (named).
    pub fn from_url(url: &str) -> Result<Self> {
        let u = parse_url(url, &URL_SCHEMES, URL_EXAMPLE)?;
        let owner = crate::urls::host_port(&u);
        let segments = crate::urls::segments(&u);
        let (Some(owner), Some(repo)) = (owner, segments.first()) else {
            return Err(CoreError::config(format!(
                "GitHub storage URL \"{url}\" names no owner/repo; it should look like {URL_EXAMPLE}"
            )));
        };
        let b = Self::new(format!("{owner}/{repo}"), segments[1..].join("/"));
        b.with_configs(crate::urls::url_pairs(&u))
    }

    /// A builder for `path` in `repo` that takes the API base from `GITHUB_API_URL` (set by
    /// GitHub Actions, and on GitHub Enterprise runners to the Enterprise API), recorded as
    /// `base_url`. Tokens are not read here: the secret [`DEFAULT_TOKEN_SECRET`] (or the one
    /// named by `access_token_secret`) is looked up at fetch, in the secret sources then the
    /// environment.
    ///
    /// Errors: none today (a `Result` for variables that may need checking).
    pub fn from_env(repo: impl Into<String>, path: impl Into<String>) -> Result<Self> {
        let mut b = Self::new(repo, path);
        if let Some(api) = env_var("GITHUB_API_URL") {
            b = b.with_config("base_url", &api)?;
        }
        Ok(b)
    }

    /// The flow file's path in the repository.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.0.config.path = path.into();
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

    /// The API base: `https://github.example.com/api/v3` for GitHub Enterprise.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.0.config.base_url = Some(url.into());
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
impl Provider for GitHubConfig {
    fn path(&self) -> &str {
        &self.path
    }

    fn git_ref(&self) -> Option<&str> {
        self.git_ref.as_deref()
    }

    fn validate(&self) -> Result<()> {
        let parts: Vec<&str> = self.repo.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(CoreError::config(format!(
                "GitHub repo \"{}\" must be owner/repo",
                self.repo
            )));
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
        let base = self
            .base_url
            .as_deref()
            .unwrap_or("https://api.github.com")
            .trim_end_matches('/');
        let secret = self
            .access_token_secret
            .as_deref()
            .unwrap_or(DEFAULT_TOKEN_SECRET);
        let (token, token_from) = match &credentials.token {
            Some(t) => (
                Some(t.clone()),
                "the access token given to the builder".to_string(),
            ),
            None => (
                optional_secret(secret, secrets)?,
                format!("the token in secret {secret}"),
            ),
        };
        let get = |url: String| {
            let token = token.clone();
            move || {
                let rb = http
                    .client()
                    .get(&url)
                    .header("Accept", "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", "2022-11-28");
                match &token {
                    Some(t) => rb.bearer_auth(t.expose_secret()),
                    None => rb,
                }
            }
        };
        let repo = &self.repo;
        let check_limits = |r: &Reply| -> Result<()> {
            let remaining = r
                .headers
                .get("x-ratelimit-remaining")
                .and_then(|v| v.to_str().ok());
            if matches!(r.status, 403 | 429) && remaining == Some("0") {
                let reset = r
                    .headers
                    .get("x-ratelimit-reset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "an unknown time".into());
                return Err(CoreError::temporary(
                    BACKEND,
                    format!("API rate limit exceeded; it resets at {reset}. Use a token (access_token_secret) for a higher limit."),
                )
                .with_source(r.http_status()));
            }
            match r.status {
                401 => Err(r.status_error(
                    BACKEND,
                    repo,
                    format!("{token_from} was refused (401 Bad credentials)"),
                )),
                403 => Err(r.status_error(
                    BACKEND,
                    repo,
                    format!("{token_from} may not read the repository (403 Forbidden)"),
                )),
                _ => Ok(()),
            }
        };
        let repo_missing = |r: &Reply| {
            CoreError::not_found(
                "repository",
                repo.clone(),
                format!(
                    "GitHub: Repo {repo} not found. Check that it exists (and is spelled correctly) and that you have configured the proper credentials for accessing it."
                ),
            )
            .with_source(r.http_status())
        };
        let git_ref = match &self.git_ref {
            Some(r) => r.clone(),
            None => {
                let what = "reading the repository";
                let r = http
                    .send(BACKEND, what, get(format!("{base}/repos/{repo}")))
                    .await?;
                check_limits(&r)?;
                if r.status == 404 {
                    return Err(repo_missing(&r));
                }
                if r.status != 200 {
                    return Err(r.status_error(BACKEND, repo, format!("{what} {repo} failed")));
                }
                r.json(BACKEND, what)?["default_branch"]
                    .as_str()
                    .ok_or_else(|| repo_missing(&r))?
                    .to_string()
            }
        };
        let what = "resolving the ref";
        let r = http
            .send(
                BACKEND,
                what,
                get(format!(
                    "{base}/repos/{repo}/commits/{}",
                    encode_segment(&git_ref)
                )),
            )
            .await?;
        check_limits(&r)?;
        if r.status == 404 && self.git_ref.is_none() {
            return Err(repo_missing(&r));
        }
        if matches!(r.status, 404 | 422) {
            return Err(CoreError::not_found(
                "ref",
                format!("{repo}@{git_ref}"),
                format!(
                    "GitHub: Ref {git_ref} not found in repo {repo}. Check the branch, tag or \
                     commit (and that the repository is the right one)"
                ),
            )
            .with_source(r.http_status()));
        }
        if r.status != 200 {
            return Err(r.status_error(
                BACKEND,
                repo,
                format!("{what} {git_ref} in {repo} failed"),
            ));
        }
        let sha = r.json(BACKEND, what)?["sha"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        tracing::info!(repo = %repo, git_ref = %git_ref, commit = %sha, "using commit");
        let what = "reading the file";
        let r = http
            .send(
                BACKEND,
                what,
                get(format!(
                    "{base}/repos/{repo}/contents/{}?ref={sha}",
                    encode_path(path)
                )),
            )
            .await?;
        check_limits(&r)?;
        let file_missing = |why: &str| {
            CoreError::not_found(
                "file",
                format!("{repo}@{git_ref}:{path}"),
                format!("GitHub: File {path} not found in repo {repo}, ref {git_ref}{why}"),
            )
        };
        if r.status == 404 {
            return Err(file_missing("").with_source(r.http_status()));
        }
        if r.status != 200 {
            return Err(r.status_error(
                BACKEND,
                &format!("{repo}@{git_ref}:{path}"),
                format!("{what} {path} failed"),
            ));
        }
        let v = r.json(BACKEND, what)?;
        if v.is_array() {
            return Err(file_missing(": it is a directory"));
        }
        let content = decode_base64(BACKEND, path, v["content"].as_str().unwrap_or_default())?;
        Ok(ApiFile {
            commit: sha,
            content,
        })
    }
}
