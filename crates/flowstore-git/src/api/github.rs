//! GitHub (and GitHub Enterprise) through the REST API: resolve the ref to a commit, read the
//! file at that commit.

use flowstore_core::raw::config::{parse_url, BackendConfig};
use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};

use super::http::{
    blob_id, decode_base64, encode_path, encode_segment, optional_secret, Http, Reply,
    THROTTLE_BUDGET,
};
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
        let api = Api {
            base,
            repo: &self.repo,
            token,
            token_from,
            http,
        };
        let git_ref = match self.git_ref.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => api.default_branch().await?,
        };
        // A full commit SHA names itself: read at it directly (one request fewer against the
        // rate limit; a SHA the repository lacks is reported by the contents API).
        let sha = if is_object_id(&git_ref) {
            git_ref.to_ascii_lowercase()
        } else {
            api.resolve(&git_ref).await?
        };
        tracing::info!(repo = %self.repo, git_ref = %git_ref, commit = %sha, "using commit");
        let content = api.file(path, &git_ref, &sha).await?;
        Ok(ApiFile {
            commit: sha,
            content,
        })
    }
}

/// The media type of GitHub's JSON answers.
const JSON: &str = "application/vnd.github+json";
/// The media type that makes `commits/{ref}` answer the bare commit SHA.
const SHA: &str = "application/vnd.github.sha";
/// The media type that makes `contents/{path}` answer one object whatever the path is (a
/// directory is `"type": "dir"` with `entries`, not an array) and that GitHub documents for
/// files of 1–100 MB (`"encoding": "none"`, empty `content`).
const OBJECT: &str = "application/vnd.github.object+json";
/// The media type that makes `git/blobs/{sha}` answer the raw bytes.
const RAW: &str = "application/vnd.github.raw+json";
/// GitHub serves blobs up to 100 MB through the API.
const MAX_BLOB: u64 = 100 * 1024 * 1024;

/// One fetch's view of the REST API: where it is, which repository, which credentials.
struct Api<'a> {
    base: &'a str,
    repo: &'a str,
    token: Option<SecretString>,
    /// Where the token came from, for errors (never the token).
    token_from: String,
    http: &'a Http,
}

/// A primary rate limit: the hour's quota is used up (`x-ratelimit-remaining: 0`).
fn primary_limit(status: u16, headers: &reqwest::header::HeaderMap) -> bool {
    matches!(status, 403 | 429)
        && headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            == Some("0")
}

/// A secondary rate limit (too many requests at once or too fast): 403 or 429 with a
/// `Retry-After` or GitHub's "secondary rate limit" message, quota left. Waited out within
/// [`THROTTLE_BUDGET`].
fn secondary_limit(status: u16, headers: &reqwest::header::HeaderMap, body: &[u8]) -> bool {
    matches!(status, 403 | 429)
        && !primary_limit(status, headers)
        && (status == 429
            || headers.contains_key(reqwest::header::RETRY_AFTER)
            || String::from_utf8_lossy(body)
                .to_ascii_lowercase()
                .contains("secondary rate limit"))
}

/// A ref as the API's multi-segment `{ref}`: each segment percent-encoded, slashes kept
/// (`feature/x` stays `feature/x`; GitHub does not read `%2F` there).
fn encode_ref(git_ref: &str) -> String {
    git_ref
        .split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// True for a full object id: 40 (SHA-1) or 64 (SHA-256) hex digits.
fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit SHA in a `commits/{ref}` answer: the bare SHA the `sha` media type gives, or the
/// `sha` of a commit object (a server that ignored the media type). `None` for anything else.
fn commit_sha(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if is_object_id(text) {
        return Some(text.to_ascii_lowercase());
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v["sha"]
        .as_str()
        .filter(|s| is_object_id(s))
        .map(str::to_ascii_lowercase)
}

impl Api<'_> {
    /// Builds GET requests to `url` accepting `accept`, with the token if there is one.
    fn get(&self, url: String, accept: &'static str) -> impl Fn() -> reqwest::RequestBuilder + '_ {
        move || {
            let rb = self
                .http
                .client()
                .get(&url)
                .header("Accept", accept)
                .header("X-GitHub-Api-Version", "2022-11-28");
            match &self.token {
                Some(t) => rb.bearer_auth(t.expose_secret()),
                None => rb,
            }
        }
    }

    /// Sends a GET, waiting out secondary rate limits within the bound.
    async fn send(&self, what: &str, url: String, accept: &'static str) -> Result<Reply> {
        self.http
            .send_throttled(BACKEND, what, secondary_limit, self.get(url, accept))
            .await
    }

    /// The errors any answer may be: a rate limit (primary: with its reset time; secondary:
    /// outlasting the wait flowstore allows), refused credentials (401) or access (403).
    fn check(&self, r: &Reply, what: &str) -> Result<()> {
        let repo = self.repo;
        if primary_limit(r.status, &r.headers) {
            let reset = r
                .headers
                .get("x-ratelimit-reset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "an unknown time".into());
            let hint = if self.token.is_some() {
                format!("{} has used up its hourly requests", self.token_from)
            } else {
                "anonymous requests are limited to 60 an hour: use a token \
                 (access_token_secret) for a higher limit"
                    .to_string()
            };
            return Err(CoreError::temporary(
                BACKEND,
                format!(
                    "GitHub API rate limit exceeded while {what} for repo {repo}; it resets at \
                     {reset} ({hint})"
                ),
            )
            .with_source(r.http_status()));
        }
        if secondary_limit(r.status, &r.headers, &r.body) {
            let asked = match super::http::retry_after(&r.headers) {
                Some(d) => format!("GitHub asked to wait {} s", d.as_secs()),
                None => "GitHub named no wait".to_string(),
            };
            return Err(CoreError::temporary(
                BACKEND,
                format!(
                    "GitHub secondary rate limit hit while {what} for repo {repo} (HTTP {}): \
                     {asked}, more than flowstore waits ({} s in all). Try again later, with \
                     fewer requests at once",
                    r.status,
                    THROTTLE_BUDGET.as_secs()
                ),
            )
            .with_source(r.http_status()));
        }
        match r.status {
            401 => Err(r.status_error(
                BACKEND,
                repo,
                format!("{} was refused (401 Bad credentials)", self.token_from),
            )),
            403 => Err(r.status_error(
                BACKEND,
                repo,
                format!(
                    "{} may not read repo {repo} (403 Forbidden)",
                    self.token_from
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The repository is missing, or private and the credentials may not see it (GitHub
    /// answers 404 for both).
    fn repo_missing(&self, r: &Reply) -> CoreError {
        let repo = self.repo;
        let creds = if self.token.is_some() {
            format!("{} may not see it", self.token_from)
        } else {
            "no token was set, and private repositories answer 404 without one".to_string()
        };
        CoreError::not_found(
            "repository",
            repo.to_string(),
            format!(
                "GitHub: Repo {repo} not found. Check that it exists (and is spelled correctly) \
                 and that you have configured the proper credentials for accessing it ({creds})."
            ),
        )
        .with_source(r.http_status())
    }

    /// `GET /repos/{repo}`.
    async fn read_repo(&self) -> Result<Reply> {
        let what = "reading the repository";
        let r = self
            .send(what, format!("{}/repos/{}", self.base, self.repo), JSON)
            .await?;
        self.check(&r, what)?;
        Ok(r)
    }

    /// The repository's default branch.
    async fn default_branch(&self) -> Result<String> {
        let repo = self.repo;
        let r = self.read_repo().await?;
        if r.status == 404 {
            return Err(self.repo_missing(&r));
        }
        if r.status != 200 {
            return Err(r.status_error(
                BACKEND,
                repo,
                format!("GitHub: reading repo {repo} (for its default branch) failed"),
            ));
        }
        match r.json(BACKEND, "reading the repository")?["default_branch"].as_str() {
            Some(b) if !b.trim().is_empty() => Ok(b.to_string()),
            _ => Err(CoreError::not_found(
                "ref",
                repo.to_string(),
                format!(
                    "GitHub: repo {repo} names no default branch (it may have no commits yet); \
                     set `ref` to the branch, tag or commit holding the flow"
                ),
            )
            .with_source(r.http_status())),
        }
    }

    /// The commit SHA `git_ref` names (`commits/{ref}` with the `sha` media type). Any failure
    /// is an error naming the repository and the ref: there is no fallback to another ref.
    async fn resolve(&self, git_ref: &str) -> Result<String> {
        let repo = self.repo;
        let what = "resolving the ref";
        let url = format!("{}/repos/{repo}/commits/{}", self.base, encode_ref(git_ref));
        let r = self.send(what, url, SHA).await?;
        self.check(&r, what)?;
        let ref_missing = |r: &Reply, why: &str| {
            CoreError::not_found(
                "ref",
                format!("{repo}@{git_ref}"),
                format!(
                    "GitHub: Ref {git_ref} not found in repo {repo}{why}. Check the branch, tag \
                     or commit (and that the repository is the right one)"
                ),
            )
            .with_source(r.http_status())
        };
        match r.status {
            200 => commit_sha(&r.body).ok_or_else(|| {
                CoreError::backend(
                    BACKEND,
                    format!(
                        "GitHub: resolving ref {git_ref} in repo {repo} gave no commit SHA; \
                         is base_url a GitHub API?"
                    ),
                )
                .with_source(r.http_status())
            }),
            // 404: the repository is missing or hidden, or the ref is: the repository says which.
            404 => {
                let repo_answer = self.read_repo().await?;
                if repo_answer.status == 404 {
                    Err(self.repo_missing(&repo_answer))
                } else {
                    Err(ref_missing(&r, ""))
                }
            }
            422 => Err(ref_missing(&r, "")),
            409 => Err(ref_missing(
                &r,
                ": the repository is empty (409: it has no commits yet); push the flow file first",
            )),
            _ => Err(r.status_error(
                BACKEND,
                &format!("{repo}@{git_ref}"),
                format!("GitHub: resolving ref {git_ref} in repo {repo} failed"),
            )),
        }
    }

    /// The flow file `path` at commit `sha`: only a file whose content decodes (base64, or its
    /// blob for files over 1 MB) and matches its git blob id; a directory, symlink or
    /// submodule is a not-found error naming the repository, ref and path.
    async fn file(&self, path: &str, git_ref: &str, sha: &str) -> Result<bytes::Bytes> {
        let repo = self.repo;
        let what = "reading the file";
        let location = format!("{repo}@{git_ref}:{path}");
        let url = format!(
            "{}/repos/{repo}/contents/{}?ref={sha}",
            self.base,
            encode_path(path)
        );
        let r = self.send(what, url, OBJECT).await?;
        self.check(&r, what)?;
        let not_a_file = |r: &Reply, why: String| {
            CoreError::not_found(
                "file",
                location.clone(),
                format!("GitHub: File {path} not found in repo {repo}, ref {git_ref}{why}"),
            )
            .with_source(r.http_status())
        };
        if r.status == 404 {
            if String::from_utf8_lossy(&r.body).contains("No commit found") {
                return Err(CoreError::not_found(
                    "ref",
                    format!("{repo}@{git_ref}"),
                    format!("GitHub: Ref {git_ref} (commit {sha}) not found in repo {repo}"),
                )
                .with_source(r.http_status()));
            }
            // The repository itself may be what is missing (a pinned SHA is not resolved first).
            let repo_answer = self.read_repo().await?;
            if repo_answer.status == 404 {
                return Err(self.repo_missing(&repo_answer));
            }
            return Err(not_a_file(&r, String::new()));
        }
        if r.status != 200 {
            return Err(r.status_error(
                BACKEND,
                &location,
                format!("GitHub: reading file {path} in repo {repo} at ref {git_ref} failed"),
            ));
        }
        let v = r.json(BACKEND, what)?;
        let dir = ": it is a directory; set `path` to the flow's file in it".to_string();
        // A server that ignored the object media type lists a directory as an array.
        if v.is_array() {
            return Err(not_a_file(&r, dir));
        }
        match v["type"].as_str() {
            Some("file") => {}
            Some("dir") => return Err(not_a_file(&r, dir)),
            Some("symlink") => {
                return Err(not_a_file(
                    &r,
                    format!(
                        ": it is a symbolic link to {}, which is not a file of the repository; \
                         set `path` to the flow file itself",
                        v["target"].as_str().unwrap_or("an unknown target")
                    ),
                ))
            }
            Some("submodule") => {
                return Err(not_a_file(
                    &r,
                    ": it is a submodule; point a storage at that repository instead".into(),
                ))
            }
            other => {
                return Err(CoreError::backend(
                    BACKEND,
                    format!(
                        "GitHub: reading file {path} in repo {repo} at ref {git_ref}: the answer \
                         is not a file (type {other:?}); is base_url a GitHub API?"
                    ),
                )
                .with_source(r.http_status()))
            }
        }
        let blob = v["sha"].as_str().unwrap_or_default();
        let size = v["size"].as_u64();
        let content = v["content"].as_str().unwrap_or_default();
        let encoding = v["encoding"].as_str().unwrap_or_default();
        let large = encoding == "none" || (content.is_empty() && size.is_some_and(|s| s > 0));
        let bytes = if large {
            self.blob(path, git_ref, blob, size).await?
        } else if encoding == "base64" {
            decode_base64(BACKEND, path, content)?
        } else {
            return Err(CoreError::backend(
                BACKEND,
                format!(
                    "GitHub: file {path} in repo {repo} at ref {git_ref} came in encoding \
                     {encoding:?}, which flowstore cannot read"
                ),
            )
            .with_source(r.http_status()));
        };
        self.verify(&location, blob, size, &bytes)?;
        Ok(bytes)
    }

    /// Checks `bytes` are blob `blob` (and `size` long, when the answer says).
    fn verify(&self, location: &str, blob: &str, size: Option<u64>, bytes: &[u8]) -> Result<()> {
        let got = blob_id(blob.len(), bytes);
        let size_ok = size.is_none_or(|s| s == bytes.len() as u64);
        if !size_ok || (is_object_id(blob) && got.as_deref() != Some(&blob.to_ascii_lowercase())) {
            return Err(CoreError::temporary(
                BACKEND,
                format!(
                    "GitHub: the content read for {location} ({} bytes) is not blob {blob}{}: \
                     it was cut short or altered on the way; try again",
                    bytes.len(),
                    size.map(|s| format!(" of {s} bytes")).unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    /// A file too large for the contents API's JSON (over 1 MB): its blob, by id, streamed raw.
    async fn blob(
        &self,
        path: &str,
        git_ref: &str,
        blob: &str,
        size: Option<u64>,
    ) -> Result<bytes::Bytes> {
        let repo = self.repo;
        let location = format!("{repo}@{git_ref}:{path}");
        if !is_object_id(blob) {
            return Err(CoreError::backend(
                BACKEND,
                format!(
                    "GitHub: file {path} in repo {repo} at ref {git_ref} is too large for the \
                     contents API and its answer names no blob SHA ({blob:?}) to read it by"
                ),
            ));
        }
        let what = "reading the file's blob";
        let url = format!("{}/repos/{repo}/git/blobs/{blob}", self.base);
        let mut buf = bytes::BytesMut::with_capacity(size.unwrap_or(0).min(MAX_BLOB) as usize);
        let r = self
            .http
            .stream(
                BACKEND,
                what,
                MAX_BLOB,
                |chunk| buf.extend_from_slice(chunk),
                self.get(url, RAW),
            )
            .await?;
        self.check(&r, what)?;
        if r.status == 404 {
            return Err(CoreError::not_found(
                "file",
                location,
                format!("GitHub: blob {blob} of file {path} not found in repo {repo}"),
            )
            .with_source(r.http_status()));
        }
        if r.status != 200 {
            return Err(r.status_error(
                BACKEND,
                &location,
                format!("GitHub: reading blob {blob} of file {path} in repo {repo} failed"),
            ));
        }
        let json = r
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        if json {
            // A server that ignored the raw media type: the blob object, base64 inside.
            let v: serde_json::Value = serde_json::from_slice(&buf).map_err(|e| {
                CoreError::backend(BACKEND, format!("{what}: the answer is not JSON: {e}"))
            })?;
            return decode_base64(BACKEND, path, v["content"].as_str().unwrap_or_default());
        }
        Ok(buf.freeze())
    }
}
