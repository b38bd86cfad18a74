//! AWS CodeCommit through the `GetFile` API, signed with SigV4.

use flowstore_core::secret::{ExposeSecret, SecretSource};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::http::{decode_base64, Http};
use super::{ApiFile, ApiStorage, Provider};

const BACKEND: &str = "CodeCommit";

/// The fields of a `CodeCommit` reference (Prefect 1's names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeCommitFields {
    /// The repository name.
    pub repo: String,
    /// The flow file's path.
    pub path: String,
    /// A commit SHA, branch, tag or full ref (default: the default branch).
    #[serde(default)]
    pub commit: Option<String>,
    /// `region_name` (default `us-east-1`) and `endpoint_url`; credentials are refused here.
    #[serde(default)]
    pub client_options: Map<String, Value>,
}

/// CodeCommit storage.
pub type CodeCommit = ApiStorage<CodeCommitFields>;

struct Credentials {
    key: String,
    secret: flowstore_core::secret::SecretString,
    token: Option<flowstore_core::secret::SecretString>,
}

fn credentials(sources: &dyn SecretSource) -> Result<Credentials> {
    if flowstore_secrets::resolve_optional("AWS_CREDENTIALS", sources)
        .map_err(CoreError::from)?
        .is_some()
    {
        let c =
            flowstore_secrets::resolve_json("AWS_CREDENTIALS", sources).map_err(CoreError::from)?;
        let c = c.expose_secret();
        let field = |k: &str| c[k].as_str().map(str::to_string);
        let (Some(key), Some(secret)) = (field("ACCESS_KEY"), field("SECRET_ACCESS_KEY")) else {
            return Err(CoreError::config(
                "the AWS_CREDENTIALS secret must hold ACCESS_KEY and SECRET_ACCESS_KEY",
            ));
        };
        return Ok(Credentials {
            key,
            secret: secret.into(),
            token: field("SESSION_TOKEN").map(Into::into),
        });
    }
    let key = std::env::var("AWS_ACCESS_KEY_ID").map_err(|_| {
        CoreError::config("No AWS credentials for CodeCommit: set the AWS_CREDENTIALS secret or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    })?;
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
        .map_err(|_| CoreError::config("AWS_SECRET_ACCESS_KEY is not set"))?;
    Ok(Credentials {
        key,
        secret: secret.into(),
        token: std::env::var("AWS_SESSION_TOKEN").ok().map(Into::into),
    })
}

#[async_trait]
impl Provider for CodeCommitFields {
    const TYPE_NAME: &'static str = "CodeCommit";

    fn path(&self) -> &str {
        &self.path
    }

    fn git_ref(&self) -> Option<&str> {
        self.commit.as_deref()
    }

    async fn fetch(&self, http: &Http, secrets: &dyn SecretSource) -> Result<ApiFile> {
        if ["aws_access_key_id", "aws_secret_access_key"]
            .iter()
            .any(|k| self.client_options.contains_key(*k))
        {
            return Err(CoreError::config("credentials do not belong in client_options (they would be stored); use AWS_CREDENTIALS"));
        }
        let region = self
            .client_options
            .get("region_name")
            .and_then(Value::as_str)
            .unwrap_or("us-east-1")
            .to_string();
        let endpoint = self
            .client_options
            .get("endpoint_url")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://codecommit.{region}.amazonaws.com/"));
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| CoreError::config(format!("CodeCommit endpoint_url {endpoint}: {e}")))?;
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let creds = credentials(secrets)?;
        let mut body = serde_json::json!({"repositoryName": self.repo, "filePath": self.path});
        if let Some(c) = &self.commit {
            body["commitSpecifier"] = Value::String(c.clone());
        }
        let body = body.to_string();
        let reply = http
            .send(BACKEND, "GetFile", || {
                let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
                let target = "CodeCommit_20150413.GetFile";
                let ctype = "application/x-amz-json-1.1";
                let mut headers = vec![
                    ("content-type", ctype),
                    ("host", host.as_str()),
                    ("x-amz-date", amz_date.as_str()),
                ];
                let token = creds.token.as_ref().map(|t| t.expose_secret().to_string());
                if let Some(t) = &token {
                    headers.push(("x-amz-security-token", t.as_str()));
                }
                headers.push(("x-amz-target", target));
                let auth = super::sigv4::authorization(
                    "POST",
                    url.path(),
                    &headers,
                    body.as_bytes(),
                    &creds.key,
                    creds.secret.expose_secret(),
                    &region,
                    "codecommit",
                    &amz_date,
                );
                let mut rb = http
                    .client()
                    .post(url.clone())
                    .header("content-type", ctype)
                    .header("x-amz-date", &amz_date)
                    .header("x-amz-target", target)
                    .header("authorization", auth)
                    .body(body.clone());
                if let Some(t) = token {
                    rb = rb.header("x-amz-security-token", t);
                }
                rb
            })
            .await?;
        let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if reply.status != 200 {
            let kind = v["__type"]
                .as_str()
                .unwrap_or("error")
                .rsplit('#')
                .next()
                .unwrap_or("error")
                .to_string();
            let message = match kind.as_str() {
                "RepositoryDoesNotExistException" => {
                    format!("Repository {} does not exist", self.repo)
                }
                "CommitDoesNotExistException" => format!(
                    "Commit {} not found in repository {}",
                    self.commit.as_deref().unwrap_or("(default)"),
                    self.repo
                ),
                "FileDoesNotExistException" => {
                    format!("File {} not found in repository {}", self.path, self.repo)
                }
                "InvalidSignatureException" | "UnrecognizedClientException" => {
                    "the request signature was refused: check the AWS credentials".to_string()
                }
                _ => format!("GetFile failed ({kind}, HTTP {})", reply.status),
            };
            return Err(CoreError::backend(BACKEND, message));
        }
        let content = decode_base64(
            BACKEND,
            &self.path,
            v["fileContent"].as_str().unwrap_or_default(),
        )?;
        Ok(ApiFile {
            commit: v["commitId"].as_str().unwrap_or_default().to_string(),
            content,
        })
    }
}
