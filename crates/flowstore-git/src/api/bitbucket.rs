//! Bitbucket Server (`project` + `repo`, Bearer token) and Bitbucket Cloud (`workspace` + `repo`,
//! username + app password).

use flowstore_core::secret::{ExposeSecret, SecretSource};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};

use super::http::{encode, optional_secret, Http, Reply};
use super::{is_commit_sha, ApiFile, ApiStorage, Provider};

const BACKEND: &str = "Bitbucket";

/// The fields of a `Bitbucket` reference (Prefect 1's names). With `workspace` it is Bitbucket
/// Cloud; otherwise Bitbucket Server at `host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitbucketFields {
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
    /// The flow file's path.
    pub path: String,
    /// A branch, tag or commit (default: the repository's default branch — not `master`).
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    /// Server: the secret holding a token (default `BITBUCKET_ACCESS_TOKEN`).
    #[serde(default)]
    pub access_token_secret: Option<String>,
    /// Cloud: the secret holding the username (default `BITBUCKET_CLOUD_USERNAME`).
    #[serde(default)]
    pub cloud_username_secret: Option<String>,
    /// Cloud: the secret holding the app password (default `BITBUCKET_CLOUD_APP_PASSWORD`).
    #[serde(default)]
    pub cloud_app_password_secret: Option<String>,
}

/// Bitbucket storage.
pub type Bitbucket = ApiStorage<BitbucketFields>;

fn denied() -> CoreError {
    CoreError::backend(
        BACKEND,
        "Access denied to repository. Please check credentials.",
    )
}

fn bad_address() -> CoreError {
    CoreError::backend(
        BACKEND,
        "Invalid address. Check that host, project, and repository are correct.",
    )
}

fn check(r: &Reply) -> Result<()> {
    match r.status {
        401 | 403 => Err(denied()),
        _ => Ok(()),
    }
}

#[async_trait]
impl Provider for BitbucketFields {
    const TYPE_NAME: &'static str = "Bitbucket";

    fn path(&self) -> &str {
        &self.path
    }

    fn git_ref(&self) -> Option<&str> {
        self.git_ref.as_deref()
    }

    async fn fetch(&self, http: &Http, secrets: &dyn SecretSource) -> Result<ApiFile> {
        match &self.workspace {
            Some(ws) => self.fetch_cloud(ws, http, secrets).await,
            None => self.fetch_server(http, secrets).await,
        }
    }
}

impl BitbucketFields {
    async fn fetch_server(&self, http: &Http, secrets: &dyn SecretSource) -> Result<ApiFile> {
        let host = self
            .host
            .as_deref()
            .ok_or_else(|| {
                CoreError::config(
                    "Bitbucket Server needs `host` (or set `workspace` for Bitbucket Cloud)",
                )
            })?
            .trim_end_matches('/');
        let project = self
            .project
            .as_deref()
            .ok_or_else(|| CoreError::config("Bitbucket Server needs `project`"))?;
        let secret = self
            .access_token_secret
            .as_deref()
            .unwrap_or("BITBUCKET_ACCESS_TOKEN");
        let token = optional_secret(secret, secrets)?;
        let base = format!(
            "{host}/rest/api/1.0/projects/{}/repos/{}",
            encode(project, false),
            encode(&self.repo, false)
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
                let r = http
                    .send(
                        BACKEND,
                        "reading the default branch",
                        get(format!("{base}/default-branch")),
                    )
                    .await?;
                check(&r)?;
                if r.status == 404 {
                    return Err(bad_address());
                }
                r.json(BACKEND, "reading the default branch")?["displayId"]
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
                    encode(&self.path, true),
                    encode(&git_ref, false)
                )),
            )
            .await?;
        check(&r)?;
        if r.status == 404 {
            let reason = String::from_utf8_lossy(&r.body);
            if reason.contains("does not exist at revision") {
                return Err(CoreError::backend(
                    BACKEND,
                    format!(
                        "File {} not found in {}/{} at {git_ref}",
                        self.path, project, self.repo
                    ),
                ));
            }
            return Err(bad_address());
        }
        Ok(ApiFile {
            commit: git_ref,
            content: r.body,
        })
    }

    async fn fetch_cloud(
        &self,
        ws: &str,
        http: &Http,
        secrets: &dyn SecretSource,
    ) -> Result<ApiFile> {
        let host = self
            .host
            .as_deref()
            .unwrap_or("https://api.bitbucket.org")
            .trim_end_matches('/');
        let user_secret = self
            .cloud_username_secret
            .as_deref()
            .unwrap_or("BITBUCKET_CLOUD_USERNAME");
        let pass_secret = self
            .cloud_app_password_secret
            .as_deref()
            .unwrap_or("BITBUCKET_CLOUD_APP_PASSWORD");
        let user = flowstore_secrets::resolve(user_secret, secrets).map_err(CoreError::from)?;
        let pass = flowstore_secrets::resolve(pass_secret, secrets).map_err(CoreError::from)?;
        let repo = format!(
            "{host}/2.0/repositories/{}/{}",
            encode(ws, false),
            encode(&self.repo, false)
        );
        let get = |url: String| {
            let (user, pass) = (user.clone(), pass.clone());
            move || {
                http.client()
                    .get(&url)
                    .basic_auth(user.expose_secret(), Some(pass.expose_secret()))
            }
        };
        let git_ref = match &self.git_ref {
            Some(r) => r.clone(),
            None => {
                let r = http
                    .send(BACKEND, "reading the repository", get(repo.clone()))
                    .await?;
                check(&r)?;
                if r.status == 404 {
                    return Err(bad_address());
                }
                r.json(BACKEND, "reading the repository")?["mainbranch"]["name"]
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
                    let r = http.send(BACKEND, "listing refs", get(url)).await?;
                    check(&r)?;
                    if r.status == 404 {
                        return Err(bad_address());
                    }
                    let v = r.json(BACKEND, "listing refs")?;
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
                CoreError::backend(
                    BACKEND,
                    format!("Ref {git_ref} not found in {ws}/{}", self.repo),
                )
            })?
        };
        let r = http
            .send(
                BACKEND,
                "reading the file",
                get(format!("{repo}/src/{sha}/{}", encode(&self.path, true))),
            )
            .await?;
        check(&r)?;
        if r.status == 404 {
            return Err(CoreError::backend(
                BACKEND,
                format!(
                    "File {} not found in {ws}/{} at {sha}",
                    self.path, self.repo
                ),
            ));
        }
        Ok(ApiFile {
            commit: sha,
            content: r.body,
        })
    }
}
