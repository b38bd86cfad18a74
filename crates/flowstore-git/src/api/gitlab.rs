//! GitLab (gitlab.com or self-hosted) through the v4 files API.

use flowstore_core::secret::{ExposeSecret, SecretSource};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};

use super::http::{decode_base64, encode, optional_secret, Http};
use super::{ApiFile, ApiStorage, Provider};

const BACKEND: &str = "GitLab";

/// The fields of a `GitLab` reference (Prefect 1's names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitLabFields {
    /// The project: `group/project` or its numeric id.
    pub repo: String,
    /// The flow file's path.
    pub path: String,
    /// The GitLab host (default `https://gitlab.com`).
    #[serde(default)]
    pub host: Option<String>,
    /// A branch, tag or commit (default: the project's default branch — not a hard-coded `master`).
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// The secret holding a token, sent as `PRIVATE-TOKEN` (default `GITLAB_ACCESS_TOKEN`).
    #[serde(default)]
    pub access_token_secret: Option<String>,
}

/// GitLab storage.
pub type GitLab = ApiStorage<GitLabFields>;

impl GitLab {
    /// GitLab storage for `path` in project `repo`.
    pub fn gitlab(repo: impl Into<String>, path: impl Into<String>) -> Self {
        ApiStorage::new(GitLabFields {
            repo: repo.into(),
            path: path.into(),
            host: None,
            git_ref: None,
            access_token_secret: None,
        })
    }
}

#[async_trait]
impl Provider for GitLabFields {
    const TYPE_NAME: &'static str = "GitLab";

    fn path(&self) -> &str {
        &self.path
    }

    fn git_ref(&self) -> Option<&str> {
        self.git_ref.as_deref()
    }

    async fn fetch(&self, http: &Http, secrets: &dyn SecretSource) -> Result<ApiFile> {
        let host = self
            .host
            .as_deref()
            .unwrap_or("https://gitlab.com")
            .trim_end_matches('/');
        let secret = self
            .access_token_secret
            .as_deref()
            .unwrap_or("GITLAB_ACCESS_TOKEN");
        let token = optional_secret(secret, secrets)?;
        let project = format!("{host}/api/v4/projects/{}", encode(&self.repo, false));
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
        let auth_failed = || {
            CoreError::backend(
                BACKEND,
                "Unable to authenticate GitLab account. Please check your credentials.",
            )
        };
        let git_ref = match &self.git_ref {
            Some(r) => r.clone(),
            None => {
                let r = http
                    .send(BACKEND, "reading the project", get(project.clone()))
                    .await?;
                if r.status == 401 {
                    return Err(auth_failed());
                }
                if r.status == 404 {
                    return Err(CoreError::backend(
                        BACKEND,
                        format!(
                            "Project {} not found on {host}. Ensure the project exists.",
                            self.repo
                        ),
                    ));
                }
                r.json(BACKEND, "reading the project")?["default_branch"]
                    .as_str()
                    .unwrap_or("main")
                    .to_string()
            }
        };
        let url = format!(
            "{project}/repository/files/{}?ref={}",
            encode(&self.path, false),
            encode(&git_ref, false)
        );
        let r = http.send(BACKEND, "reading the file", get(url)).await?;
        if r.status == 401 {
            return Err(auth_failed());
        }
        if r.status != 200 {
            return Err(CoreError::backend(
                BACKEND,
                format!("Error retrieving file contents at {} in {}@{git_ref}. Ensure the project and file exist.", self.path, self.repo),
            ));
        }
        let v = r.json(BACKEND, "reading the file")?;
        let content = decode_base64(
            BACKEND,
            &self.path,
            v["content"].as_str().unwrap_or_default(),
        )?;
        let commit = v["commit_id"].as_str().unwrap_or(&git_ref).to_string();
        Ok(ApiFile { commit, content })
    }
}
