//! AWS CodeCommit through the `GetFile` API, signed with SigV4.

use flowstore_core::raw::config::{parse_url, BackendConfig};
use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::http::{decode_base64, optional_secret, Http};
use super::{api_storage, env_var, ApiFile, Credentials, Provider};
use crate::error::secret_error;

const BACKEND: &str = "CodeCommit";

/// The secret holding `{"ACCESS_KEY": …, "SECRET_ACCESS_KEY": …, "SESSION_TOKEN": …}` (Prefect
/// 1's name); without it, `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.
pub const CREDENTIALS_SECRET: &str = "AWS_CREDENTIALS";

/// The URL schemes [`CodeCommitBuilder::from_url`] takes.
pub const URL_SCHEMES: [&str; 1] = ["codecommit"];

const URL_EXAMPLE: &str = "codecommit://repo-name/flows/etl.py?region=eu-west-1&commit=main";

/// The backend fields of a `CodeCommit` reference (Prefect 1's names). Never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeCommitConfig {
    /// The repository name.
    pub repo: String,
    /// The flow file's path (flows added with `add_flow_at` record their own).
    pub path: String,
    /// A commit SHA, branch, tag or full ref (default: the default branch).
    #[serde(default)]
    pub commit: Option<String>,
    /// `region_name` (default `us-east-1`) and `endpoint_url`; credentials are refused here.
    #[serde(default)]
    pub client_options: Map<String, Value>,
}

impl BackendConfig for CodeCommitConfig {
    const TYPE_NAME: &'static str = "CodeCommit";
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("repo", "repo"),
        ("path", "path"),
        ("commit", "commit"),
        ("ref", "commit"),
        ("region", "client_options.region_name"),
        ("region_name", "client_options.region_name"),
        ("endpoint_url", "client_options.endpoint_url"),
    ];
}

api_storage! {
    /// Flow files in an AWS CodeCommit repository, read with `GetFile` (see the
    /// [module docs](super)); made by [`CodeCommitBuilder`].
    storage CodeCommit;
    /// Makes a [`CodeCommit`] storage: typed setters, [`CodeCommitBuilder::with_config`] (the
    /// [`CodeCommitConfig`] keys, `region` and `endpoint_url` going to `client_options`),
    /// [`CodeCommitBuilder::from_url`] or [`CodeCommitBuilder::from_env`], all ending in the same
    /// state.
    ///
    /// ```
    /// use flowstore_git::{CodeCommit, CodeCommitBuilder};
    /// let a = CodeCommit::builder("flows-repo", "flows/etl.py").region("eu-west-1").commit("main").build()?;
    /// let b = CodeCommitBuilder::from_url("codecommit://flows-repo/flows/etl.py?region=eu-west-1&commit=main")?.build()?;
    /// assert_eq!(a.config(), b.config());
    /// # Ok::<(), flowstore_core::Error>(())
    /// ```
    builder CodeCommitBuilder;
    config CodeCommitConfig;
}

impl CodeCommit {
    /// A builder for `path` in repository `repo`; see [`CodeCommitBuilder::new`].
    pub fn builder(repo: impl Into<String>, path: impl Into<String>) -> CodeCommitBuilder {
        CodeCommitBuilder::new(repo, path)
    }
}

impl CodeCommitBuilder {
    /// A builder for the flow file `path` in repository `repo`, at the default branch, in
    /// `us-east-1` unless a region is set, with the credentials of [`CREDENTIALS_SECRET`] or the
    /// `AWS_*` environment variables.
    pub fn new(repo: impl Into<String>, path: impl Into<String>) -> Self {
        Self::from_config(CodeCommitConfig {
            repo: repo.into(),
            path: path.into(),
            commit: None,
            client_options: Map::new(),
        })
    }

    /// A builder from `codecommit://repo-name[/path/to/flow.py][?region=…&commit=…]`; every
    /// query pair is applied with [`CodeCommitBuilder::with_config`].
    ///
    /// Errors with [`CoreError::Config`] for another scheme, a URL without repository, and an
    /// unknown or ill-typed option (named).
    pub fn from_url(url: &str) -> Result<Self> {
        let u = parse_url(url, &URL_SCHEMES, URL_EXAMPLE)?;
        let Some(repo) = crate::urls::host_port(&u) else {
            return Err(CoreError::config(format!(
                "CodeCommit storage URL \"{url}\" names no repository; it should look like {URL_EXAMPLE}"
            )));
        };
        let path = crate::urls::segments(&u).join("/");
        Self::new(repo, path).with_configs(crate::urls::url_pairs(&u))
    }

    /// A builder for `path` in `repo` that takes the AWS SDKs' variables, recorded in
    /// `client_options`: the region from `AWS_REGION` or `AWS_DEFAULT_REGION`, the endpoint from
    /// `AWS_ENDPOINT_URL_CODECOMMIT` or `AWS_ENDPOINT_URL`. Credentials are not recorded: they are
    /// looked up at fetch ([`CREDENTIALS_SECRET`], then `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`).
    ///
    /// Errors: none today (a `Result` for variables that may need checking).
    pub fn from_env(repo: impl Into<String>, path: impl Into<String>) -> Result<Self> {
        let mut b = Self::new(repo, path);
        if let Some(region) = env_var("AWS_REGION").or_else(|| env_var("AWS_DEFAULT_REGION")) {
            b = b.with_config("region", &region)?;
        }
        if let Some(endpoint) =
            env_var("AWS_ENDPOINT_URL_CODECOMMIT").or_else(|| env_var("AWS_ENDPOINT_URL"))
        {
            b = b.with_config("endpoint_url", &endpoint)?;
        }
        Ok(b)
    }

    /// The flow file's path in the repository.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.0.config.path = path.into();
        self
    }

    /// A commit SHA, branch, tag or full ref (a SHA is fixed: its digest is checked at every
    /// fetch).
    pub fn commit(mut self, commit: impl Into<String>) -> Self {
        self.0.config.commit = Some(commit.into());
        self
    }

    /// The AWS region (`client_options.region_name`; default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.0
            .config
            .client_options
            .insert("region_name".into(), Value::String(region.into()));
        self
    }

    /// Another endpoint (`client_options.endpoint_url`), e.g. a VPC endpoint.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.0
            .config
            .client_options
            .insert("endpoint_url".into(), Value::String(url.into()));
        self
    }

    /// The AWS access key id, held in memory only (with [`CodeCommitBuilder::secret_access_key`];
    /// used instead of the secret and the environment, never recorded, logged or shown).
    pub fn access_key_id(mut self, key: SecretString) -> Self {
        self.0.credentials.access_key_id = Some(key);
        self
    }

    /// The AWS secret access key, held in memory only (see
    /// [`CodeCommitBuilder::access_key_id`]).
    pub fn secret_access_key(mut self, secret: SecretString) -> Self {
        self.0.credentials.secret_access_key = Some(secret);
        self
    }

    /// An AWS session token, held in memory only (see [`CodeCommitBuilder::access_key_id`]).
    pub fn session_token(mut self, token: SecretString) -> Self {
        self.0.credentials.session_token = Some(token);
        self
    }
}

struct AwsKeys {
    key: SecretString,
    secret: SecretString,
    token: Option<SecretString>,
}

/// The credentials: typed ones, else the `AWS_CREDENTIALS` secret, else the environment.
fn aws_keys(typed: &Credentials, sources: &dyn SecretSource) -> Result<AwsKeys> {
    if let (Some(key), Some(secret)) = (&typed.access_key_id, &typed.secret_access_key) {
        return Ok(AwsKeys {
            key: key.clone(),
            secret: secret.clone(),
            token: typed.session_token.clone(),
        });
    }
    if optional_secret(CREDENTIALS_SECRET, sources)?.is_some() {
        let c =
            flowstore_secrets::resolve_json(CREDENTIALS_SECRET, sources).map_err(secret_error)?;
        let c = c.expose_secret();
        let field = |k: &str| c[k].as_str().map(|s| SecretString::from(s.to_string()));
        let (Some(key), Some(secret)) = (field("ACCESS_KEY"), field("SECRET_ACCESS_KEY")) else {
            return Err(CoreError::config(
                "the AWS_CREDENTIALS secret must hold ACCESS_KEY and SECRET_ACCESS_KEY",
            ));
        };
        return Ok(AwsKeys {
            key,
            secret,
            token: field("SESSION_TOKEN"),
        });
    }
    let var = |k: &str| std::env::var(k).ok().map(SecretString::from);
    let key = var("AWS_ACCESS_KEY_ID").ok_or_else(|| {
        CoreError::config("No AWS credentials for CodeCommit: give access_key_id/secret_access_key to the builder, set the AWS_CREDENTIALS secret, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    })?;
    let secret = var("AWS_SECRET_ACCESS_KEY")
        .ok_or_else(|| CoreError::config("AWS_SECRET_ACCESS_KEY is not set"))?;
    Ok(AwsKeys {
        key,
        secret,
        token: var("AWS_SESSION_TOKEN"),
    })
}

const REFUSED_OPTIONS: [&str; 3] = [
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
];

#[async_trait]
impl Provider for CodeCommitConfig {
    fn path(&self) -> &str {
        &self.path
    }

    fn git_ref(&self) -> Option<&str> {
        self.commit.as_deref()
    }

    fn validate(&self) -> Result<()> {
        if self.repo.trim().is_empty() {
            return Err(CoreError::config("CodeCommit storage needs `repo`"));
        }
        if REFUSED_OPTIONS
            .iter()
            .any(|k| self.client_options.contains_key(*k))
        {
            return Err(CoreError::config("credentials do not belong in client_options (they would be stored); give them to the builder or use AWS_CREDENTIALS"));
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
        self.validate()?;
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
        let url = flowstore_core::raw::config::Url::parse(&endpoint).map_err(|e| {
            CoreError::config(format!("CodeCommit endpoint_url {endpoint}: {e}")).with_source(e)
        })?;
        let host = crate::urls::host_port(&url).unwrap_or_default();
        let creds = aws_keys(credentials, secrets)?;
        let mut body = serde_json::json!({"repositoryName": self.repo, "filePath": path});
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
                    creds.key.expose_secret(),
                    creds.secret.expose_secret(),
                    &region,
                    "codecommit",
                    &amz_date,
                );
                let mut rb = http
                    .client()
                    .post(url.as_str())
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
            let repo = &self.repo;
            let spec = self.commit.as_deref().unwrap_or("(default branch)");
            let e = match kind.as_str() {
                "RepositoryDoesNotExistException" => CoreError::not_found(
                    "repository",
                    format!("{region}/{repo}"),
                    format!("CodeCommit: Repository {repo} does not exist in {region}"),
                ),
                "CommitDoesNotExistException" | "InvalidCommitException" => CoreError::not_found(
                    "ref",
                    format!("{repo}@{spec}"),
                    format!("CodeCommit: Commit {spec} not found in repository {repo}"),
                ),
                "FileDoesNotExistException" => CoreError::not_found(
                    "file",
                    format!("{repo}@{spec}:{path}"),
                    format!("CodeCommit: File {path} not found in repository {repo} at {spec}"),
                ),
                "InvalidSignatureException"
                | "UnrecognizedClientException"
                | "AccessDeniedException"
                | "ExpiredTokenException" => CoreError::permission_denied(
                    BACKEND,
                    format!("{region}/{repo}"),
                    format!(
                        "the request signature was refused ({kind}): check the AWS credentials"
                    ),
                ),
                "ThrottlingException" | "ServiceUnavailableException" => CoreError::temporary(
                    BACKEND,
                    format!("GetFile of {path} in {repo} was throttled ({kind}); try again later"),
                ),
                _ => {
                    return Err(reply.status_error(
                        BACKEND,
                        &format!("{region}/{repo}"),
                        format!("GetFile of {path} in {repo} failed ({kind})"),
                    ))
                }
            };
            return Err(e.with_source(reply.http_status()));
        }
        let content = decode_base64(BACKEND, path, v["fileContent"].as_str().unwrap_or_default())?;
        Ok(ApiFile {
            commit: v["commitId"].as_str().unwrap_or_default().to_string(),
            content,
        })
    }
}
