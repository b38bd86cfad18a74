//! Bitbucket Server / Data Center (`host` + `project` + `repo`) and Bitbucket Cloud
//! (`workspace` + `repo`), read through their REST APIs.
//!
//! Which secret holds what (the names are Prefect 1's, so its references open as they are; each
//! `*_secret` field names the secret, the default name applies when it is not set):
//!
//! | Site | Secrets, in the order they are tried | Sent as |
//! |---|---|---|
//! | Cloud | `access_token_secret`, only when set in the config: a repository, project or workspace **access token** | `Authorization: Bearer` |
//! | Cloud | `cloud_username_secret` (default `BITBUCKET_CLOUD_USERNAME`): your **Atlassian account email**; `cloud_app_password_secret` (default `BITBUCKET_CLOUD_APP_PASSWORD`): an **API token** with the `read:repository:bitbucket` scope | HTTP Basic |
//! | Cloud | `BITBUCKET_ACCESS_TOKEN`: an access token, when the two above are not set | `Authorization: Bearer` |
//! | Server / Data Center | `access_token_secret` (default `BITBUCKET_ACCESS_TOKEN`): an HTTP access token (personal, project or repository) | `Authorization: Bearer` |
//! | Server / Data Center | `cloud_username_secret` + `cloud_app_password_secret`, when both are set in the config and there is no token: username + password (or personal access token) | HTTP Basic |
//!
//! Bitbucket Cloud stopped accepting **app passwords** on June 9, 2026: a reference that named
//! a username and an app password keeps working once those two secrets hold the account's email
//! and an API token instead. Credentials given to the builder
//! ([`BitbucketBuilder::access_token`], [`BitbucketBuilder::api_token`]) are used instead of any
//! secret. Cloud with no credentials at all is a [`CoreError::SecretNotFound`] naming the secrets;
//! Server without them reads anonymously (public repositories).
//!
//! Cloud resolves a branch or tag name with `refs/branches/{name}`, then `refs/tags/{name}`, and
//! reads `src/{commit}/{path}`. That endpoint answers a directory with a JSON listing: an answer
//! shaped like one (JSON content type, `values` and `pagelen`) is checked with `?format=meta`,
//! and a `commit_directory` is refused (a file whose content merely looks like a listing is
//! kept). Only a 200 answer for a file is a flow: a 401/403 is
//! [`CoreError::PermissionDenied`] (naming the secrets to check), a missing workspace, project,
//! repository, ref or file is [`CoreError::NotFound`] (what is missing is found out with a
//! follow-up request when the 404 alone does not say), anything else (400, 5xx after the
//! retries) is a [`CoreError::Backend`] naming the repository, ref and path.

use flowstore_core::raw::config::{parse_url, BackendConfig};
use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};

use super::http::{encode_path, encode_segment, optional_secret, required_secret, Http, Reply};
use super::{api_storage, env_var, is_commit_sha, ApiFile, Credentials, Provider};

const BACKEND: &str = "Bitbucket";

/// The secret holding an access token when `access_token_secret` is not set (Server: an HTTP
/// access token; Cloud: a repository, project or workspace access token, used when no
/// username/API-token pair is set).
pub const DEFAULT_TOKEN_SECRET: &str = "BITBUCKET_ACCESS_TOKEN";
/// Cloud: the secret holding the Atlassian account email (for an API token; formerly the
/// username for an app password) when `cloud_username_secret` is not set.
pub const DEFAULT_CLOUD_USERNAME_SECRET: &str = "BITBUCKET_CLOUD_USERNAME";
/// Cloud: the secret holding the API token (formerly the app password) when
/// `cloud_app_password_secret` is not set.
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
    /// The secret holding an access token, sent as a Bearer token (default
    /// [`DEFAULT_TOKEN_SECRET`]; Cloud: used first when set; see the [module docs](self)).
    #[serde(default)]
    pub access_token_secret: Option<String>,
    /// Cloud: the secret holding the Atlassian account email (default
    /// [`DEFAULT_CLOUD_USERNAME_SECRET`]); Server: a username, when set.
    #[serde(default)]
    pub cloud_username_secret: Option<String>,
    /// Cloud: the secret holding the API token (default
    /// [`DEFAULT_CLOUD_APP_PASSWORD_SECRET`], Prefect 1's name from app-password days); Server:
    /// a password or personal access token, when set with `cloud_username_secret`.
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

    /// The secret holding an access token sent as a Bearer token (Server: an HTTP access
    /// token; Cloud: a repository, project or workspace access token, used before any
    /// username/API-token pair), recorded by name so agents can resolve it.
    pub fn access_token_secret(mut self, name: impl Into<String>) -> Self {
        self.0.config.access_token_secret = Some(name.into());
        self
    }

    /// The secrets holding the username and the password, recorded by name (Prefect 1's
    /// `cloud_username_secret` / `cloud_app_password_secret`). Cloud: the Atlassian account
    /// email and an API token (app passwords stopped working in June 2026); Server: a username
    /// and a password or personal access token, sent with HTTP Basic when no token is set.
    pub fn cloud_secrets(
        mut self,
        username: impl Into<String>,
        app_password: impl Into<String>,
    ) -> Self {
        self.0.config.cloud_username_secret = Some(username.into());
        self.0.config.cloud_app_password_secret = Some(app_password.into());
        self
    }

    /// An access token sent as a Bearer token (Server: an HTTP access token; Cloud: a
    /// repository, project or workspace access token), held in memory only, used instead of
    /// the secrets; never written to the reference, a log or `Debug`.
    pub fn access_token(mut self, token: SecretString) -> Self {
        self.0.credentials.token = Some(token);
        self
    }

    /// Cloud: the Atlassian account `email` and an API `token`, sent with HTTP Basic, held in
    /// memory only, used instead of the secrets; never written to the reference, a log or
    /// `Debug`.
    pub fn api_token(self, email: impl Into<String>, token: SecretString) -> Self {
        self.app_password(email, token)
    }

    /// A username and password sent with HTTP Basic, held in memory only, used instead of the
    /// secrets; never written to the reference, a log or `Debug`. Cloud no longer accepts app
    /// passwords (June 2026): use [`BitbucketBuilder::api_token`]; Server takes a password or a
    /// personal access token.
    pub fn app_password(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.0.credentials.username = Some(SecretString::from(username.into()));
        self.0.credentials.password = Some(password);
        self
    }
}

/// How the requests to one Bitbucket authenticate (the values are never shown).
#[derive(Clone)]
enum Auth {
    /// `Authorization: Bearer` — a Cloud repository, project or workspace access token, or a
    /// Server/Data Center HTTP access token.
    Bearer(SecretString),
    /// HTTP Basic — Cloud: Atlassian account email + API token (or, before June 2026, username +
    /// app password); Server/Data Center: username + password or personal access token.
    Basic(SecretString, SecretString),
    /// No credentials (Server only: public repositories).
    Anonymous,
}

impl Auth {
    fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::Bearer(t) => rb.bearer_auth(t.expose_secret()),
            Auth::Basic(u, p) => rb.basic_auth(u.expose_secret(), Some(p.expose_secret())),
            Auth::Anonymous => rb,
        }
    }
}

/// One Bitbucket site being read: the client, the credentials and where they came from (for
/// the messages of refused requests).
struct Site<'a> {
    http: &'a Http,
    auth: Auth,
    /// What to check when the credentials are refused: the secrets that were used.
    check: String,
}

impl Site<'_> {
    async fn get(&self, what: &str, url: String) -> Result<Reply> {
        let auth = self.auth.clone();
        self.http
            .send(BACKEND, what, move || {
                auth.apply(self.http.client().get(&url))
            })
            .await
    }

    /// The error for a 401/403: Prefect 1's sentence, then what to check.
    fn denied(&self, r: &Reply, location: &str) -> CoreError {
        r.status_error(
            BACKEND,
            location,
            format!(
                "Access denied to repository. Please check credentials. {}",
                self.check
            ),
        )
    }

    /// The error for an answer that is neither the one asked for, a refusal nor a not-found
    /// (400, 5xx after the retries, …): names the repository, the ref and the path.
    fn failed(&self, r: &Reply, location: &str, doing: String) -> CoreError {
        r.status_error(BACKEND, location, format!("{doing} failed"))
    }
}

/// The secret `name` when set in the config (`explicit`), required; `None` when not configured.
fn named_secret(
    explicit: Option<&str>,
    secrets: &dyn SecretSource,
) -> Result<Option<SecretString>> {
    explicit.map(|n| required_secret(n, secrets)).transpose()
}

impl BitbucketConfig {
    fn token_secret(&self) -> &str {
        self.access_token_secret
            .as_deref()
            .unwrap_or(DEFAULT_TOKEN_SECRET)
    }

    fn username_secret(&self) -> &str {
        self.cloud_username_secret
            .as_deref()
            .unwrap_or(DEFAULT_CLOUD_USERNAME_SECRET)
    }

    fn password_secret(&self) -> &str {
        self.cloud_app_password_secret
            .as_deref()
            .unwrap_or(DEFAULT_CLOUD_APP_PASSWORD_SECRET)
    }

    /// Typed credentials, if given: a token wins over a username and password.
    fn typed(credentials: &Credentials) -> Option<(Auth, String)> {
        if let Some(t) = &credentials.token {
            return Some((
                Auth::Bearer(t.clone()),
                "Check the access token given to the builder.".into(),
            ));
        }
        match (&credentials.username, &credentials.password) {
            (Some(u), Some(p)) => Some((
                Auth::Basic(u.clone(), p.clone()),
                "Check the username (Cloud: Atlassian account email) and API token given to the builder."
                    .into(),
            )),
            _ => None,
        }
    }

    /// Server/Data Center: typed credentials; the token secret (default
    /// `BITBUCKET_ACCESS_TOKEN`) as Bearer; the username + password secrets when both are named
    /// in the config, as Basic; else no credentials.
    fn server_auth(
        &self,
        credentials: &Credentials,
        secrets: &dyn SecretSource,
    ) -> Result<(Auth, String)> {
        if let Some(typed) = Self::typed(credentials) {
            return Ok(typed);
        }
        let token_secret = self.token_secret();
        if let Some(t) = optional_secret(token_secret, secrets)? {
            return Ok((
                Auth::Bearer(t),
                format!(
                    "Secret {token_secret} holds the HTTP access token sent as a Bearer token."
                ),
            ));
        }
        if let (Some(u), Some(p)) = (
            named_secret(self.cloud_username_secret.as_deref(), secrets)?,
            named_secret(self.cloud_app_password_secret.as_deref(), secrets)?,
        ) {
            return Ok((
                Auth::Basic(u, p),
                format!(
                    "Secrets {} (username) and {} (password or personal access token) were sent with HTTP Basic.",
                    self.username_secret(),
                    self.password_secret()
                ),
            ));
        }
        Ok((
            Auth::Anonymous,
            format!("No credentials were sent: set secret {token_secret} to an HTTP access token."),
        ))
    }

    /// Cloud: typed credentials; the token secret as Bearer when `access_token_secret` is
    /// configured; the username + password secrets as Basic when both are set; the default token
    /// secret as Bearer; else [`CoreError::SecretNotFound`].
    fn cloud_auth(
        &self,
        credentials: &Credentials,
        secrets: &dyn SecretSource,
    ) -> Result<(Auth, String)> {
        if let Some(typed) = Self::typed(credentials) {
            return Ok(typed);
        }
        let bearer_check = |name: &str| {
            format!("Secret {name} holds the repository, project or workspace access token sent as a Bearer token.")
        };
        if let Some(name) = self.access_token_secret.as_deref() {
            return Ok((
                Auth::Bearer(required_secret(name, secrets)?),
                bearer_check(name),
            ));
        }
        let (user_secret, pass_secret) = (self.username_secret(), self.password_secret());
        let user = optional_secret(user_secret, secrets)?;
        let pass = optional_secret(pass_secret, secrets)?;
        let basic_check = format!(
            "Secret {user_secret} must hold your Atlassian account email and secret {pass_secret} an API token with the read:repository:bitbucket scope (Bitbucket Cloud refuses app passwords since June 9, 2026), or use an access token in secret {DEFAULT_TOKEN_SECRET}."
        );
        match (user, pass) {
            (Some(u), Some(p)) => return Ok((Auth::Basic(u, p), basic_check)),
            (None, None) => {}
            // One of the pair is set: the other one's "not found", naming where it was sought.
            (user, _) => {
                let missing = if user.is_none() {
                    user_secret
                } else {
                    pass_secret
                };
                return Err(required_secret(missing, secrets)
                    .err()
                    .unwrap_or_else(|| CoreError::config(basic_check)));
            }
        }
        if let Some(t) = optional_secret(DEFAULT_TOKEN_SECRET, secrets)? {
            return Ok((Auth::Bearer(t), bearer_check(DEFAULT_TOKEN_SECRET)));
        }
        Err(CoreError::SecretNotFound {
            name: format!(
                "{user_secret} + {pass_secret} (Atlassian account email + API token) or {DEFAULT_TOKEN_SECRET} (access token)"
            ),
            searched: "the secret sources and the environment".into(),
        })
    }
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
            Some(ws) => {
                let (auth, check) = self.cloud_auth(credentials, secrets)?;
                let site = Site { http, auth, check };
                self.fetch_cloud(ws, path, &site).await
            }
            None => {
                let (auth, check) = self.server_auth(credentials, secrets)?;
                let site = Site { http, auth, check };
                self.fetch_server(path, &site).await
            }
        }
    }
}

/// The message of a Bitbucket Server error answer (`{"errors": [{"message": …}]}`), lower-cased.
fn server_reason(r: &Reply) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let joined: Vec<&str> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .collect();
    if joined.is_empty() {
        String::from_utf8_lossy(&r.body).to_ascii_lowercase()
    } else {
        joined.join(" ").to_ascii_lowercase()
    }
}

impl BitbucketConfig {
    /// What a Server 404 says is missing: the project, the repository, the ref or the file.
    fn server_not_found(&self, r: &Reply, project: &str, git_ref: &str, path: &str) -> CoreError {
        let reason = server_reason(r);
        let repo = format!("{project}/{}", self.repo);
        let e = if reason.contains("does not exist at revision") || reason.contains("path") {
            CoreError::not_found(
                "file",
                format!("{repo}@{git_ref}:{path}"),
                format!("Bitbucket: File {path} not found in {repo} at {git_ref}"),
            )
        } else if reason.contains("commit") || reason.contains("revision") || reason.contains("ref")
        {
            CoreError::not_found(
                "ref",
                format!("{repo}@{git_ref}"),
                format!("Bitbucket: Ref {git_ref} not found in {repo}: no branch, tag or commit has that name"),
            )
        } else if reason.contains("project") && !reason.contains("repository") {
            CoreError::not_found(
                "project",
                project.to_string(),
                format!("Bitbucket: Invalid address. Check that host, project, and repository are correct. Project {project} does not exist."),
            )
        } else {
            CoreError::not_found(
                "repository",
                repo.clone(),
                format!("Bitbucket: Invalid address. Check that host, project, and repository are correct. Repository {repo} not found."),
            )
        };
        e.with_source(r.http_status())
    }

    async fn fetch_server(&self, path: &str, site: &Site<'_>) -> Result<ApiFile> {
        let missing = || {
            CoreError::config("Bitbucket Server needs `host` and `project` (or set `workspace` for Bitbucket Cloud)")
        };
        let host = self
            .host
            .as_deref()
            .ok_or_else(missing)?
            .trim_end_matches('/');
        let project = self.project.as_deref().ok_or_else(missing)?;
        let location = format!("{host} {project}/{}", self.repo);
        let base = format!(
            "{host}/rest/api/1.0/projects/{}/repos/{}",
            encode_segment(project),
            encode_segment(&self.repo)
        );
        let git_ref = match &self.git_ref {
            Some(r) => r.clone(),
            None => {
                let what = "reading the default branch";
                let r = site.get(what, format!("{base}/default-branch")).await?;
                match r.status {
                    200 => {}
                    401 | 403 => return Err(site.denied(&r, &location)),
                    404 => {
                        return Err(self.server_not_found(&r, project, "(default branch)", path))
                    }
                    _ => {
                        return Err(site.failed(
                            &r,
                            &location,
                            format!("Bitbucket: {what} of {project}/{} (for {path})", self.repo),
                        ))
                    }
                }
                r.json(BACKEND, what)?["displayId"]
                    .as_str()
                    .unwrap_or("main")
                    .to_string()
            }
        };
        let r = site
            .get(
                "reading the file",
                format!(
                    "{base}/raw/{}?at={}",
                    encode_path(path),
                    encode_segment(&git_ref)
                ),
            )
            .await?;
        match r.status {
            200 => {}
            401 | 403 => return Err(site.denied(&r, &location)),
            404 => return Err(self.server_not_found(&r, project, &git_ref, path)),
            _ => {
                return Err(site.failed(
                    &r,
                    &location,
                    format!(
                        "Bitbucket: reading {path} at {git_ref} in {project}/{}",
                        self.repo
                    ),
                ))
            }
        }
        Ok(ApiFile {
            commit: git_ref,
            content: r.body,
        })
    }

    /// After a Cloud 404: is the workspace or the repository missing? `otherwise` if neither.
    async fn cloud_missing(
        &self,
        site: &Site<'_>,
        host: &str,
        ws: &str,
        repo_url: &str,
        otherwise: CoreError,
    ) -> Result<CoreError> {
        let r = site
            .get("reading the repository", repo_url.to_string())
            .await?;
        if r.status != 404 {
            return Ok(otherwise);
        }
        let location = format!("{ws}/{}", self.repo);
        let w = site
            .get(
                "reading the workspace",
                format!("{host}/2.0/workspaces/{}", encode_segment(ws)),
            )
            .await?;
        Ok(if w.status == 404 {
            CoreError::not_found(
                "workspace",
                ws.to_string(),
                format!("Bitbucket: Invalid address. Workspace {ws} not found: check `workspace` (and the credentials' access to it)"),
            )
            .with_source(w.http_status())
        } else {
            CoreError::not_found(
                "repository",
                location.clone(),
                format!("Bitbucket: Invalid address. Repository {location} not found: check `workspace` and `repo` (and the credentials' access to it)"),
            )
            .with_source(r.http_status())
        })
    }

    /// Resolves a branch or tag name to its commit, directly (`refs/branches/{name}`, then
    /// `refs/tags/{name}`).
    async fn cloud_resolve(
        &self,
        site: &Site<'_>,
        host: &str,
        ws: &str,
        repo_url: &str,
        git_ref: &str,
    ) -> Result<String> {
        let location = format!("{ws}/{}", self.repo);
        let mut last = None;
        for kind in ["branches", "tags"] {
            let what = if kind == "branches" {
                "reading the branch"
            } else {
                "reading the tag"
            };
            let r = site
                .get(
                    what,
                    format!("{repo_url}/refs/{kind}/{}", encode_path(git_ref)),
                )
                .await?;
            match r.status {
                200 => {
                    let v = r.json(BACKEND, what)?;
                    return match v["target"]["hash"].as_str() {
                        Some(h) if !h.is_empty() => Ok(h.to_string()),
                        _ => Err(CoreError::backend(
                            BACKEND,
                            format!("Bitbucket: {what} {git_ref} of {location}: the answer names no target commit"),
                        )
                        .with_source(r.http_status())),
                    };
                }
                404 => last = Some(r),
                401 | 403 => return Err(site.denied(&r, &location)),
                _ => {
                    return Err(site.failed(
                        &r,
                        &location,
                        format!("Bitbucket: {what} {git_ref} of {location}"),
                    ))
                }
            }
        }
        let mut e = CoreError::not_found(
            "ref",
            format!("{location}@{git_ref}"),
            format!(
                "Bitbucket: Ref {git_ref} not found in {location}: no branch or tag has that name"
            ),
        );
        if let Some(r) = last {
            e = e.with_source(r.http_status());
        }
        Err(self.cloud_missing(site, host, ws, repo_url, e).await?)
    }

    async fn fetch_cloud(&self, ws: &str, path: &str, site: &Site<'_>) -> Result<ApiFile> {
        let host = self
            .host
            .as_deref()
            .unwrap_or("https://api.bitbucket.org")
            .trim_end_matches('/');
        let location = format!("{ws}/{}", self.repo);
        let repo_url = format!(
            "{host}/2.0/repositories/{}/{}",
            encode_segment(ws),
            encode_segment(&self.repo)
        );
        let git_ref = match &self.git_ref {
            Some(r) => r.clone(),
            None => {
                let what = "reading the repository";
                let r = site.get(what, repo_url.clone()).await?;
                match r.status {
                    200 => {}
                    401 | 403 => return Err(site.denied(&r, &location)),
                    404 => {
                        let e = CoreError::not_found(
                            "repository",
                            location.clone(),
                            format!("Bitbucket: Invalid address. Repository {location} not found"),
                        )
                        .with_source(r.http_status());
                        return Err(self.cloud_missing(site, host, ws, &repo_url, e).await?);
                    }
                    _ => {
                        return Err(site.failed(
                            &r,
                            &location,
                            format!("Bitbucket: {what} {location} (for {path})"),
                        ))
                    }
                }
                r.json(BACKEND, what)?["mainbranch"]["name"]
                    .as_str()
                    .unwrap_or("main")
                    .to_string()
            }
        };
        let sha = if is_commit_sha(&git_ref) {
            git_ref.clone()
        } else {
            self.cloud_resolve(site, host, ws, &repo_url, &git_ref)
                .await?
        };
        let at = if sha == git_ref {
            sha.clone()
        } else {
            format!("{git_ref} ({sha})")
        };
        let file_url = format!("{repo_url}/src/{sha}/{}", encode_path(path));
        let r = site.get("reading the file", file_url.clone()).await?;
        match r.status {
            200 => {}
            401 | 403 => return Err(site.denied(&r, &location)),
            404 => {
                let file = CoreError::not_found(
                    "file",
                    format!("{location}@{sha}:{path}"),
                    format!("Bitbucket: File {path} not found in {location} at {at}"),
                )
                .with_source(r.http_status());
                // A 404 here may also mean the commit (or the repository) is missing.
                let c = site
                    .get("reading the commit", format!("{repo_url}/commit/{sha}"))
                    .await?;
                let e = if c.status == 404 {
                    let e = CoreError::not_found(
                        "ref",
                        format!("{location}@{sha}"),
                        format!("Bitbucket: Commit {sha} not found in {location}"),
                    )
                    .with_source(c.http_status());
                    self.cloud_missing(site, host, ws, &repo_url, e).await?
                } else {
                    file
                };
                return Err(e);
            }
            _ => {
                return Err(site.failed(
                    &r,
                    &location,
                    format!("Bitbucket: reading {path} at {at} in {location}"),
                ))
            }
        }
        if looks_like_listing(&r) {
            // The same endpoint lists a directory (JSON, paginated); a file whose content happens
            // to look like that is told apart by its metadata.
            let what = "reading the path's metadata";
            let m = site.get(what, format!("{file_url}?format=meta")).await?;
            if m.status == 200 {
                let meta = m.json(BACKEND, what)?;
                if meta["type"].as_str() == Some("commit_directory") {
                    return Err(CoreError::not_found(
                        "file",
                        format!("{location}@{sha}:{path}"),
                        format!("Bitbucket: {path} in {location} at {at} is a directory, not a flow file: set `path` to the flow's file"),
                    )
                    .with_source(m.http_status()));
                }
            } else {
                return Err(site.failed(
                    &m,
                    &location,
                    format!("Bitbucket: {what} of {path} at {at} in {location}"),
                ));
            }
        }
        Ok(ApiFile {
            commit: sha,
            content: r.body,
        })
    }
}

/// True for an answer shaped as Bitbucket Cloud's directory listing: JSON (by content type)
/// holding a `values` array and a `pagelen`.
fn looks_like_listing(r: &Reply) -> bool {
    let json = r
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .is_ok_and(|v| v["values"].is_array() && v.get("pagelen").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(ctype: &str, body: &str) -> Reply {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, ctype.parse().unwrap());
        Reply {
            status: 200,
            headers,
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn a_directory_listing_is_recognised_by_its_shape_and_type() {
        let listing = r#"{"pagelen": 10, "values": [{"type": "commit_file", "path": "flows/a.py"}], "page": 1}"#;
        assert!(looks_like_listing(&reply("application/json", listing)));
        assert!(!looks_like_listing(&reply("text/x-python", listing)));
        assert!(!looks_like_listing(&reply(
            "application/json",
            r#"{"values": 1}"#
        )));
        assert!(!looks_like_listing(&reply("application/json", "not json")));
    }

    #[test]
    fn server_reasons_come_from_the_errors_array() {
        let r = Reply {
            status: 404,
            headers: Default::default(),
            body: bytes::Bytes::from(r#"{"errors":[{"message":"Project NOPE does not exist."}]}"#),
        };
        assert_eq!(server_reason(&r), "project nope does not exist.");
    }
}
