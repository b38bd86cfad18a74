//! Bitbucket Server (`project` + `repo`, Bearer token) and Bitbucket Cloud (`workspace` + `repo`,
//! username + app password).

use flowstore_core::raw::config::{parse_url, BackendConfig};
use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};

use super::http::{encode_path, encode_segment, optional_secret, required_secret, Http, Reply};
use super::{api_storage, env_var, is_commit_sha, ApiFile, Credentials, Provider};

const BACKEND: &str = "Bitbucket";

/// Server: the secret holding a token when `access_token_secret` is not set.
pub const DEFAULT_TOKEN_SECRET: &str = "BITBUCKET_ACCESS_TOKEN";
/// Cloud: the secret holding the username when `cloud_username_secret` is not set.
pub const DEFAULT_CLOUD_USERNAME_SECRET: &str = "BITBUCKET_CLOUD_USERNAME";
/// Cloud: the secret holding the app password when `cloud_app_password_secret` is not set.
pub const DEFAULT_CLOUD_APP_PASSWORD_SECRET: &str = "BITBUCKET_CLOUD_APP_PASSWORD";

/// The URL schemes [`BitbucketBuilder::from_url`] takes (`bitbucket+http` for a plain-HTTP
/// Server).
pub const URL_SCHEMES: [&str; 2] = ["bitbucket", "bitbucket+http"];

const URL_EXAMPLE: &str = "bitbucket://bitbucket.example.com/PROJECT/repo/flows/etl.py?ref=main (Server) or bitbucket://bitbucket.org/workspace/repo/flows/etl.py (Cloud)";

/// The backend fields of a `Bitbucket` reference (Prefect 1's names). With `workspace` it is
/// Bitbucket Cloud; otherwise Bitbucket Server at `host`. Never holds a credential: only the
/// names of the secrets that do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitbucketConfig {
    /// Server: the project key.
    #[serde(default)]
    pub project: Option<String>,
    /// The repository slug.
    pub repo: String,
    /// Cloud: the workspace.
    #[serde(default)]
    pub workspace: Option<String>,
    /// Server: its base URL; Cloud: the API base (default `https://api.bitbucket.org`).
    #[serde(default)]
    pub host: Option<String>,
    /// The flow file's path (flows added with `add_flow_at` record their own).
    pub path: String,
    /// A branch, tag or commit (default: the repository's default branch — not `master`).
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// Server: the secret holding a token (default [`DEFAULT_TOKEN_SECRET`]).
    #[serde(default)]
    pub access_token_secret: Option<String>,
    /// Cloud: the secret holding the username (default [`DEFAULT_CLOUD_USERNAME_SECRET`]).
    #[serde(default)]
    pub cloud_username_secret: Option<String>,
    /// Cloud: the secret holding the app password (default
    /// [`DEFAULT_CLOUD_APP_PASSWORD_SECRET`]).
    #[serde(default)]
    pub cloud_app_password_secret: Option<String>,
}

impl BackendConfig for BitbucketConfig {
    const TYPE_NAME: &'static str = "Bitbucket";
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("project", "project"),
        ("repo", "repo"),
        ("workspace", "workspace"),
        ("host", "host"),
        ("path", "path"),
        ("ref", "ref"),
        ("access_token_secret", "access_token_secret"),
        ("cloud_username_secret", "cloud_username_secret"),
        ("cloud_app_password_secret", "cloud_app_password_secret"),
    ];
}

api_storage! {
    /// Flow files in a Bitbucket Server or Cloud repository, read through the REST API (see the
    /// [module docs](super)); made by [`BitbucketBuilder`].
    storage Bitbucket;
    /// Makes a [`Bitbucket`] storage: typed setters, [`BitbucketBuilder::with_config`] (the
    /// [`BitbucketConfig`] keys), [`BitbucketBuilder::from_url`] or
    /// [`BitbucketBuilder::from_env`], all ending in the same state.
    ///
    /// ```
    /// use flowstore_git::{Bitbucket, BitbucketBuilder};
    /// let server = Bitbucket::server("https://bitbucket.example.com", "PROJ", "flows", "etl.py").build()?;
    /// let same = BitbucketBuilder::from_url("bitbucket://bitbucket.example.com/PROJ/flows/etl.py")?.build()?;
    /// assert_eq!(server.config(), same.config());
    /// let cloud = Bitbucket::cloud("my-workspace", "flows", "etl.py").git_ref("main").build()?;
    /// assert_eq!(cloud.config().workspace.as_deref(), Some("my-workspace"));
    /// # Ok::<(), flowstore_core::Error>(())
    /// ```
    builder BitbucketBuilder;
    config BitbucketConfig;
}

impl Bitbucket {
    /// A builder for `path` in repository `repo`; see [`BitbucketBuilder::new`].
    pub fn builder(repo: impl Into<String>, path: impl Into<String>) -> BitbucketBuilder {
        BitbucketBuilder::new(repo, path)
    }

    /// A builder for Bitbucket Server; see [`BitbucketBuilder::server`].
    pub fn server(
        host: impl Into<String>,
        project: impl Into<String>,
        repo: impl Into<String>,
        path: impl Into<String>,
    ) -> BitbucketBuilder {
        BitbucketBuilder::server(host, project, repo, path)
    }

    /// A builder for Bitbucket Cloud; see [`BitbucketBuilder::cloud`].
    pub fn cloud(
        workspace: impl Into<String>,
        repo: impl Into<String>,
        path: impl Into<String>,
    ) -> BitbucketBuilder {
        BitbucketBuilder::cloud(workspace, repo, path)
    }
}

impl BitbucketBuilder {
    /// A builder for the flow file `path` in repository `repo`; say where with
    /// [`BitbucketBuilder::host`] and [`BitbucketBuilder::project`] (Server) or
    /// [`BitbucketBuilder::workspace`] (Cloud) — or start from [`BitbucketBuilder::server`] /
    /// [`BitbucketBuilder::cloud`]. `build` errors until one of them is set.
    pub fn new(repo: impl Into<String>, path: impl Into<String>) -> Self {
        Self::empty(repo.into(), path.into())
    }

    fn empty(repo: String, path: String) -> Self {
        Self::from_config(BitbucketConfig {
            project: None,
            repo,
            workspace: None,
            host: None,
            path,
            git_ref: None,
            access_token_secret: None,
            cloud_username_secret: None,
            cloud_app_password_secret: None,
        })
    }

    /// A builder for the flow file `path` in repository `repo` of project `project` on the
    /// Bitbucket Server at `host` (its base URL), with the token from secret
    /// [`DEFAULT_TOKEN_SECRET`] if set.
    pub fn server(
        host: impl Into<String>,
        project: impl Into<String>,
        repo: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        let mut b = Self::empty(repo.into(), path.into());
        b.0.config.host = Some(host.into());
        b.0.config.project = Some(project.into());
        b
    }

    /// A builder for the flow file `path` in repository `repo` of `workspace` on Bitbucket
    /// Cloud, with the username and app password from secrets
    /// [`DEFAULT_CLOUD_USERNAME_SECRET`] and [`DEFAULT_CLOUD_APP_PASSWORD_SECRET`].
    pub fn cloud(
        workspace: impl Into<String>,
        repo: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        let mut b = Self::empty(repo.into(), path.into());
        b.0.config.workspace = Some(workspace.into());
        b
    }

    /// A builder from `bitbucket://host/PROJECT/repo[/path/to/flow.py][?ref=…]` (Server at
    /// `https://host`; `bitbucket+http://` for plain HTTP) or
    /// `bitbucket://bitbucket.org/workspace/repo[/path…]` (Cloud); every query pair is applied
    /// with [`BitbucketBuilder::with_config`].
    ///
    /// Errors with [`CoreError::Config`] for another scheme, a URL without host, project (or
    /// workspace) and repository, and an unknown or ill-typed option (named).
    pub fn from_url(url: &str) -> Result<Self> {
        let u = parse_url(url, &URL_SCHEMES, URL_EXAMPLE)?;
        let segments = crate::urls::segments(&u);
        let (Some(host), [owner, repo, rest @ ..]) = (crate::urls::host_port(&u), &segments[..])
        else {
            return Err(CoreError::config(format!(
                "Bitbucket storage URL \"{url}\" names no host, project and repository; it should look like {URL_EXAMPLE}"
            )));
        };
        let path = rest.join("/");
        let b = if host.eq_ignore_ascii_case("bitbucket.org") {
            Self::cloud(owner.clone(), repo.clone(), path)
        } else {
            let scheme = if u.scheme().eq_ignore_ascii_case("bitbucket+http") {
                "http"
            } else {
                "https"
            };
            Self::server(
                format!("{scheme}://{host}"),
                owner.clone(),
                repo.clone(),
                path,
            )
        };
        b.with_configs(crate::urls::url_pairs(&u))
    }

    /// A builder for `path` in `repo` that reads flowstore's Bitbucket variables, recorded in
    /// the configuration: `BITBUCKET_HOST` (the Server's base URL, as `host`), `BITBUCKET_PROJECT`
    /// (Server: `project`), and `BITBUCKET_WORKSPACE` (set by Bitbucket Pipelines; makes it
    /// Cloud). Credentials are not read here: the secrets are looked up at fetch.
    ///
    /// Errors: none today (a `Result` for variables that may need checking).
    pub fn from_env(repo: impl Into<String>, path: impl Into<String>) -> Result<Self> {
        let mut b = Self::empty(repo.into(), path.into());
        for (var, key) in [
            ("BITBUCKET_HOST", "host"),
            ("BITBUCKET_PROJECT", "project"),
            ("BITBUCKET_WORKSPACE", "workspace"),
        ] {
            if let Some(v) = env_var(var) {
                b = b.with_config(key, &v)?;
            }
        }
        Ok(b)
    }

    /// The flow file's path in the repository.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.0.config.path = path.into();
        self
    }

    /// Server: its base URL; Cloud: the API base.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.0.config.host = Some(host.into());
        self
    }

    /// Server: the project key.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.0.config.project = Some(project.into());
        self
    }

    /// Cloud: the workspace (setting it makes the storage Bitbucket Cloud).
    pub fn workspace(mut self, workspace: impl Into<String>) -> Self {
        self.0.config.workspace = Some(workspace.into());
        self
    }

    /// A branch, tag or commit SHA (a SHA is fixed: its digest is checked at every fetch).
    pub fn git_ref(mut self, git_ref: impl Into<String>) -> Self {
        self.0.config.git_ref = Some(git_ref.into());
        self
    }

    /// Server: the secret holding the token, recorded by name so agents can resolve it.
    pub fn access_token_secret(mut self, name: impl Into<String>) -> Self {
        self.0.config.access_token_secret = Some(name.into());
        self
    }

    /// Cloud: the secrets holding the username and the app password, recorded by name.
    pub fn cloud_secrets(
        mut self,
        username: impl Into<String>,
        app_password: impl Into<String>,
    ) -> Self {
        self.0.config.cloud_username_secret = Some(username.into());
        self.0.config.cloud_app_password_secret = Some(app_password.into());
        self
    }

    /// Server: a bearer token held in memory only, used instead of the secret; never written
    /// to the reference, a log or `Debug`.
    pub fn access_token(mut self, token: SecretString) -> Self {
        self.0.credentials.token = Some(token);
        self
    }

    /// Cloud: a username and app password held in memory only, used instead of the secrets;
    /// never written to the reference, a log or `Debug`.
    pub fn app_password(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.0.credentials.username = Some(SecretString::from(username.into()));
        self.0.credentials.password = Some(password);
        self
    }
}

fn denied(r: &Reply, location: &str) -> CoreError {
    r.status_error(
        BACKEND,
        location,
        "Access denied to repository. Please check credentials.".to_string(),
    )
}

fn bad_address(r: &Reply, location: &str) -> CoreError {
    CoreError::not_found(
        "repository",
        location,
        "Bitbucket: Invalid address. Check that host, project, and repository are correct.",
    )
    .with_source(r.http_status())
}

#[async_trait]
impl Provider for BitbucketConfig {
    fn path(&self) -> &str {
        &self.path
    }

    fn git_ref(&self) -> Option<&str> {
        self.git_ref.as_deref()
    }

    fn validate(&self) -> Result<()> {
        if self.repo.trim().is_empty() {
            return Err(CoreError::config("Bitbucket storage needs `repo`"));
        }
        if self.workspace.is_none() && (self.host.is_none() || self.project.is_none()) {
            return Err(CoreError::config(
                "Bitbucket Server needs `host` and `project` (or set `workspace` for Bitbucket Cloud)",
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
        match &self.workspace {
            Some(ws) => self.fetch_cloud(ws, path, http, credentials, secrets).await,
            None => self.fetch_server(path, http, credentials, secrets).await,
        }
    }
}

impl BitbucketConfig {
    async fn fetch_server(
        &self,
        path: &str,
        http: &Http,
        credentials: &Credentials,
        secrets: &dyn SecretSource,
    ) -> Result<ApiFile> {
        let missing = || {
            CoreError::config("Bitbucket Server needs `host` and `project` (or set `workspace` for Bitbucket Cloud)")
        };
        let host = self
            .host
            .as_deref()
            .ok_or_else(missing)?
            .trim_end_matches('/');
        let project = self.project.as_deref().ok_or_else(missing)?;
        let secret = self
            .access_token_secret
            .as_deref()
            .unwrap_or(DEFAULT_TOKEN_SECRET);
        let token = match &credentials.token {
            Some(t) => Some(t.clone()),
            None => optional_secret(secret, secrets)?,
        };
        let location = format!("{host} {project}/{}", self.repo);
        let base = format!(
            "{host}/rest/api/1.0/projects/{}/repos/{}",
            encode_segment(project),
            encode_segment(&self.repo)
        );
        let get = |url: String| {
            let token = token.clone();
            move || {
                let rb = http.client().get(&url);
                match &token {
                    Some(t) => rb.bearer_auth(t.expose_secret()),
                    None => rb,
                }
            }
        };
        let git_ref = match &self.git_ref {
            Some(r) => r.clone(),
            None => {
                let what = "reading the default branch";
                let r = http
                    .send(BACKEND, what, get(format!("{base}/default-branch")))
                    .await?;
                match r.status {
                    200 => {}
                    401 | 403 => return Err(denied(&r, &location)),
                    404 => return Err(bad_address(&r, &location)),
                    _ => return Err(r.status_error(BACKEND, &location, format!("{what} failed"))),
                }
                r.json(BACKEND, what)?["displayId"]
                    .as_str()
                    .unwrap_or("main")
                    .to_string()
            }
        };
        let r = http
            .send(
                BACKEND,
                "reading the file",
                get(format!(
                    "{base}/raw/{}?at={}",
                    encode_path(path),
                    encode_segment(&git_ref)
                )),
            )
            .await?;
        match r.status {
            200 => {}
            401 | 403 => return Err(denied(&r, &location)),
            404 => {
                let reason = String::from_utf8_lossy(&r.body).to_ascii_lowercase();
                if reason.contains("does not exist at revision") {
                    return Err(CoreError::not_found(
                        "file",
                        format!("{project}/{}@{git_ref}:{path}", self.repo),
                        format!(
                            "Bitbucket: File {path} not found in {project}/{} at {git_ref}",
                            self.repo
                        ),
                    )
                    .with_source(r.http_status()));
                }
                if reason.contains("commit") || reason.contains("revision") {
                    return Err(CoreError::not_found(
                        "ref",
                        format!("{project}/{}@{git_ref}", self.repo),
                        format!(
                            "Bitbucket: Ref {git_ref} not found in {project}/{}",
                            self.repo
                        ),
                    )
                    .with_source(r.http_status()));
                }
                return Err(bad_address(&r, &location));
            }
            _ => {
                return Err(r.status_error(
                    BACKEND,
                    &location,
                    format!("reading {path} at {git_ref} failed"),
                ))
            }
        }
        Ok(ApiFile {
            commit: git_ref,
            content: r.body,
        })
    }

    async fn fetch_cloud(
        &self,
        ws: &str,
        path: &str,
        http: &Http,
        credentials: &Credentials,
        secrets: &dyn SecretSource,
    ) -> Result<ApiFile> {
        let host = self
            .host
            .as_deref()
            .unwrap_or("https://api.bitbucket.org")
            .trim_end_matches('/');
        let (user, pass) = match (&credentials.username, &credentials.password) {
            (Some(u), Some(p)) => (u.clone(), p.clone()),
            _ => {
                let user_secret = self
                    .cloud_username_secret
                    .as_deref()
                    .unwrap_or(DEFAULT_CLOUD_USERNAME_SECRET);
                let pass_secret = self
                    .cloud_app_password_secret
                    .as_deref()
                    .unwrap_or(DEFAULT_CLOUD_APP_PASSWORD_SECRET);
                (
                    required_secret(user_secret, secrets)?,
                    required_secret(pass_secret, secrets)?,
                )
            }
        };
        let location = format!("{ws}/{}", self.repo);
        let repo = format!(
            "{host}/2.0/repositories/{}/{}",
            encode_segment(ws),
            encode_segment(&self.repo)
        );
        let get = |url: String| {
            let (user, pass) = (user.clone(), pass.clone());
            move || {
                http.client()
                    .get(&url)
                    .basic_auth(user.expose_secret(), Some(pass.expose_secret()))
            }
        };
        let check = |r: &Reply, what: &str| -> Result<()> {
            match r.status {
                200 => Ok(()),
                401 | 403 => Err(denied(r, &location)),
                404 => Err(bad_address(r, &location)),
                _ => Err(r.status_error(BACKEND, &location, format!("{what} failed"))),
            }
        };
        let git_ref = match &self.git_ref {
            Some(r) => r.clone(),
            None => {
                let what = "reading the repository";
                let r = http.send(BACKEND, what, get(repo.clone())).await?;
                check(&r, what)?;
                r.json(BACKEND, what)?["mainbranch"]["name"]
                    .as_str()
                    .unwrap_or("main")
                    .to_string()
            }
        };
        let sha = if is_commit_sha(&git_ref) {
            git_ref.clone()
        } else {
            let mut found = None;
            'kinds: for kind in ["branches", "tags"] {
                // Every page, not just the first.
                let mut next = Some(format!("{repo}/refs/{kind}"));
                while let Some(url) = next.take() {
                    let what = "listing refs";
                    let r = http.send(BACKEND, what, get(url)).await?;
                    check(&r, what)?;
                    let v = r.json(BACKEND, what)?;
                    for item in v["values"].as_array().into_iter().flatten() {
                        if item["name"].as_str() == Some(git_ref.as_str()) {
                            found = item["target"]["hash"].as_str().map(str::to_string);
                            break 'kinds;
                        }
                    }
                    next = v["next"].as_str().map(str::to_string);
                }
            }
            found.ok_or_else(|| {
                CoreError::not_found(
                    "ref",
                    format!("{location}@{git_ref}"),
                    format!(
                        "Bitbucket: Ref {git_ref} not found in {location}: no branch or tag has that name"
                    ),
                )
            })?
        };
        let r = http
            .send(
                BACKEND,
                "reading the file",
                get(format!("{repo}/src/{sha}/{}", encode_path(path))),
            )
            .await?;
        match r.status {
            200 => {}
            401 | 403 => return Err(denied(&r, &location)),
            404 => {
                return Err(CoreError::not_found(
                    "file",
                    format!("{location}@{sha}:{path}"),
                    format!("Bitbucket: File {path} not found in {location} at {sha}"),
                )
                .with_source(r.http_status()))
            }
            _ => {
                return Err(r.status_error(
                    BACKEND,
                    &location,
                    format!("reading {path} at {sha} failed"),
                ))
            }
        }
        Ok(ApiFile {
            commit: sha,
            content: r.body,
        })
    }
}
