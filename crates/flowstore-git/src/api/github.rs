//! GitHub (and GitHub Enterprise) through the REST API: resolve the ref to a commit, read the
//! file at that commit.

use flowstore_core::secret::{ExposeSecret, SecretSource};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};

use super::http::{decode_base64, encode, optional_secret, Http};
use super::{ApiFile, ApiStorage, Provider};

const BACKEND: &str = "GitHub";

/// The fields of a `GitHub` reference (Prefect 1's names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitHubFields {
    /// `owner/repo`.
    pub repo: String,
    /// The flow file's path.
    pub path: String,
    /// A branch, tag or commit (default: the repository's default branch).
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// The secret holding a token (default `GITHUB_ACCESS_TOKEN`; anonymous if unset).
    #[serde(default)]
    pub access_token_secret: Option<String>,
    /// The API base (default `https://api.github.com`; Enterprise: `https://host/api/v3`).
    #[serde(default)]
    pub base_url: Option<String>,
}

/// GitHub storage.
pub type GitHub = ApiStorage<GitHubFields>;

impl GitHub {
    /// GitHub storage for `path` in `repo`.
    pub fn github(repo: impl Into<String>, path: impl Into<String>) -> Self {
        ApiStorage::new(GitHubFields {
            repo: repo.into(),
            path: path.into(),
            git_ref: None,
            access_token_secret: None,
            base_url: None,
        })
    }
}

#[async_trait]
impl Provider for GitHubFields {
    const TYPE_NAME: &'static str = "GitHub";

    fn path(&self) -> &str {
        &self.path
    }

    fn git_ref(&self) -> Option<&str> {
        self.git_ref.as_deref()
    }

    async fn fetch(&self, http: &Http, secrets: &dyn SecretSource) -> Result<ApiFile> {
        let base = self
            .base_url
            .as_deref()
            .unwrap_or("https://api.github.com")
            .trim_end_matches('/');
        let secret = self
            .access_token_secret
            .as_deref()
            .unwrap_or("GITHUB_ACCESS_TOKEN");
        let token = optional_secret(secret, secrets)?;
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
        let check_limits = |r: &super::http::Reply| -> Result<()> {
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
                return Err(CoreError::backend(
                    BACKEND,
                    format!("API rate limit exceeded; it resets at {reset}. Use a token (access_token_secret) for a higher limit."),
                ));
            }
            if r.status == 401 {
                return Err(CoreError::backend(
                    BACKEND,
                    format!("the token in secret {secret} was refused (401 Bad credentials)"),
                ));
            }
            Ok(())
        };
        let repo_missing = || {
            CoreError::backend(
                BACKEND,
                format!(
                    "Repo {} not found. Check that it exists (and is spelled correctly) and that you have configured the proper credentials for accessing it.",
                    self.repo
                ),
            )
        };
        let git_ref = match &self.git_ref {
            Some(r) => r.clone(),
            None => {
                let r = http
                    .send(
                        BACKEND,
                        "reading the repository",
                        get(format!("{base}/repos/{}", self.repo)),
                    )
                    .await?;
                check_limits(&r)?;
                if r.status == 404 {
                    return Err(repo_missing());
                }
                r.json(BACKEND, "reading the repository")?["default_branch"]
                    .as_str()
                    .ok_or_else(repo_missing)?
                    .to_string()
            }
        };
        let r = http
            .send(
                BACKEND,
                "resolving the ref",
                get(format!(
                    "{base}/repos/{}/commits/{}",
                    self.repo,
                    encode(&git_ref, false)
                )),
            )
            .await?;
        check_limits(&r)?;
        if r.status == 404 && self.git_ref.is_none() {
            return Err(repo_missing());
        }
        if matches!(r.status, 404 | 422) {
            return Err(CoreError::backend(
                BACKEND,
                format!("Ref {git_ref} not found in repo {}", self.repo),
            ));
        }
        let sha = r.json(BACKEND, "resolving the ref")?["sha"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        tracing::info!(repo = %self.repo, git_ref = %git_ref, commit = %sha, "using commit");
        let r = http
            .send(
                BACKEND,
                "reading the file",
                get(format!(
                    "{base}/repos/{}/contents/{}?ref={sha}",
                    self.repo,
                    encode(&self.path, true)
                )),
            )
            .await?;
        check_limits(&r)?;
        if r.status == 404 {
            return Err(CoreError::backend(
                BACKEND,
                format!(
                    "File {} not found in repo {}, ref {git_ref}",
                    self.path, self.repo
                ),
            ));
        }
        if r.status != 200 {
            return Err(CoreError::backend(
                BACKEND,
                format!("reading {}: HTTP {}", self.path, r.status),
            ));
        }
        let v = r.json(BACKEND, "reading the file")?;
        let content = decode_base64(
            BACKEND,
            &self.path,
            v["content"].as_str().unwrap_or_default(),
        )?;
        Ok(ApiFile {
            commit: sha,
            content,
        })
    }
}
