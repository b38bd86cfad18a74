//! AWS CodeCommit through the `GetFile` API, signed with SigV4.
//!
//! The endpoint is `client_options.endpoint_url`, else the region's
//! ([`CodeCommitConfig::endpoint`]: `amazonaws.com.cn` for the China regions). Throttling
//! (`ThrottlingException` and the other throttling codes, which AWS answers with HTTP 400), 429,
//! 5xx and connection errors are retried as the AWS SDKs do: exponential backoff with full
//! jitter, at most `AWS_MAX_ATTEMPTS` attempts (default 5), then a temporary
//! [`CoreError::Backend`]. Every GetFile exception has its own message naming the repository and
//! file: a missing repository, commit/branch/tag or file is [`CoreError::NotFound`], a file over
//! GetFile's 6 MiB (`FileTooLargeException`) suggests Git storage, an invalid path or repository
//! name is [`CoreError::Config`], and the AWS KMS key errors say what is wrong with the
//! repository's key.

use flowstore_core::raw::config::{parse_url, BackendConfig};
use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
use flowstore_core::{async_trait, Error as CoreError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::http::{decode_base64, optional_secret, Http, Reply};
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
        let region = self.region().to_string();
        let endpoint = self.endpoint();
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
        let make = || {
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
        };
        let what = format!("GetFile of {path} in repository {}", self.repo);
        let reply = send_with_retries(&what, max_attempts(), make).await?;
        if reply.status != 200 {
            return Err(self.error(&reply, &region, path));
        }
        let v: Value = reply.json(BACKEND, &what)?;
        let content = decode_base64(BACKEND, path, v["fileContent"].as_str().unwrap_or_default())?;
        Ok(ApiFile {
            commit: v["commitId"].as_str().unwrap_or_default().to_string(),
            content,
        })
    }
}

impl CodeCommitConfig {
    /// The region (`client_options.region_name`, default `us-east-1`).
    pub fn region(&self) -> &str {
        self.client_options
            .get("region_name")
            .and_then(Value::as_str)
            .unwrap_or("us-east-1")
    }

    /// The endpoint requests go to: `client_options.endpoint_url`, else the region's public
    /// endpoint — `https://codecommit.{region}.amazonaws.com/`, or
    /// `https://codecommit.{region}.amazonaws.com.cn/` for the China regions (`cn-*`), which
    /// live in the `aws-cn` partition.
    pub fn endpoint(&self) -> String {
        match self
            .client_options
            .get("endpoint_url")
            .and_then(Value::as_str)
        {
            Some(e) => e.to_string(),
            None => default_endpoint(self.region()),
        }
    }

    /// The error for a `GetFile` answer that is not 200, by the exception's `__type`.
    fn error(&self, reply: &Reply, region: &str, path: &str) -> CoreError {
        let kind = error_type(reply);
        let repo = &self.repo;
        let spec = self.commit.as_deref().unwrap_or("(default branch)");
        let location = format!("{region}/{repo}");
        let file = format!("{repo}@{spec}:{path}");
        let e = match kind.as_str() {
            "RepositoryDoesNotExistException" => CoreError::not_found(
                "repository",
                location,
                format!("CodeCommit: Repository {repo} does not exist in {region}: check `repo` and the region"),
            ),
            "CommitDoesNotExistException"
            | "InvalidCommitException"
            | "BranchDoesNotExistException"
            | "ReferenceDoesNotExistException"
            | "TagDoesNotExistException" => CoreError::not_found(
                "ref",
                format!("{repo}@{spec}"),
                format!("CodeCommit: Commit {spec} not found in repository {repo} ({kind}): check `commit` (a SHA, branch, tag or full ref)"),
            ),
            "FileDoesNotExistException" => CoreError::not_found(
                "file",
                file,
                format!("CodeCommit: File {path} not found in repository {repo} at {spec}"),
            ),
            "FileTooLargeException" => CoreError::backend(
                BACKEND,
                format!("File {path} in repository {repo} at {spec} is larger than the 6 MiB GetFile returns (FileTooLargeException): keep the flow file smaller, or read this repository with Git storage (a clone), which has no such limit"),
            ),
            "InvalidPathException" | "PathRequiredException" => CoreError::config(format!(
                "CodeCommit: {path:?} is not a valid file path in repository {repo} ({kind}): give the flow file's path from the repository root, e.g. flows/etl.py, without a trailing slash"
            )),
            "InvalidRepositoryNameException" | "RepositoryNameRequiredException" => {
                CoreError::config(format!(
                    "CodeCommit: {repo:?} is not a valid repository name ({kind}): use the repository's name (letters, digits, `.`, `_`, `-`, at most 100 characters)"
                ))
            }
            "EncryptionKeyAccessDeniedException" => CoreError::permission_denied(
                BACKEND,
                location,
                format!("repository {repo} is encrypted with an AWS KMS key these credentials may not use (EncryptionKeyAccessDeniedException) reading {path}: allow kms:Decrypt on the repository's key"),
            ),
            "EncryptionKeyDisabledException" => CoreError::backend(
                BACKEND,
                format!("The AWS KMS key of repository {repo} is disabled (EncryptionKeyDisabledException), so {path} cannot be read: enable the key in AWS KMS"),
            ),
            "EncryptionKeyNotFoundException" => CoreError::backend(
                BACKEND,
                format!("The AWS KMS key of repository {repo} was not found (EncryptionKeyNotFoundException), so {path} cannot be read: the key may have been deleted; check the repository's encryption key"),
            ),
            "EncryptionKeyUnavailableException" => CoreError::temporary(
                BACKEND,
                format!("The AWS KMS key of repository {repo} is not available (EncryptionKeyUnavailableException), so {path} cannot be read: check the key's state in AWS KMS (pending deletion, or its Region unavailable) and try again"),
            ),
            "EncryptionIntegrityChecksFailedException" => CoreError::temporary(
                BACKEND,
                format!("An encryption integrity check failed reading {path} in repository {repo} (EncryptionIntegrityChecksFailedException); try again later"),
            ),
            "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "AccessDeniedException"
            | "ExpiredTokenException" => CoreError::permission_denied(
                BACKEND,
                location,
                format!("the request signature was refused ({kind}) reading {path} in repository {repo}: check the AWS credentials ({CREDENTIALS_SECRET} or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the region"),
            ),
            k if is_throttling(k) || is_transient(reply.status, k) => CoreError::temporary(
                BACKEND,
                format!("GetFile of {path} in repository {repo} was still refused after {} attempts ({kind}, HTTP {}); try again later", max_attempts(), reply.status),
            ),
            _ => {
                return reply.status_error(
                    BACKEND,
                    &location,
                    format!("CodeCommit: GetFile of {path} in repository {repo} at {spec} failed ({kind})"),
                )
            }
        };
        e.with_source(reply.http_status())
    }
}

/// The public endpoint of CodeCommit in `region` (the `aws-cn` partition for `cn-*`).
fn default_endpoint(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://codecommit.{region}.{suffix}/")
}

/// The exception name of an AWS JSON error answer (`__type`, without any namespace), or
/// `"error"`.
fn error_type(reply: &Reply) -> String {
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let raw = v["__type"]
        .as_str()
        .or_else(|| {
            reply
                .headers
                .get("x-amzn-errortype")
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("error");
    // `aws.protocoltests#ThrottlingException`, `ThrottlingException:http://…`.
    let name = raw.rsplit('#').next().unwrap_or(raw);
    name.split(':').next().unwrap_or(name).to_string()
}

/// The throttling error codes the AWS SDKs retry (their standard retry mode's list).
fn is_throttling(kind: &str) -> bool {
    matches!(
        kind,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    )
}

/// Transient answers the AWS SDKs retry: 429, 500, 502, 503, 504, and the timeout codes.
fn is_transient(status: u16, kind: &str) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
        || matches!(kind, "RequestTimeout" | "RequestTimeoutException")
}

/// The attempts per call: `AWS_MAX_ATTEMPTS` (as the AWS SDKs read it, 1 to 20), else 5 (boto3's
/// default, so Prefect 1 retried as much).
fn max_attempts() -> u32 {
    std::env::var("AWS_MAX_ATTEMPTS")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| (1..=20).contains(n))
        .unwrap_or(5)
}

/// The wait before attempt `attempt + 1`: "full jitter" as the AWS SDKs do it, a random
/// fraction of `min(20 s, base × 2^(attempt-1))`, the base 500 ms after a throttling error and
/// 100 ms after any other.
fn backoff(attempt: u32, throttled: bool) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let base_ms: u64 = if throttled { 500 } else { 100 };
    let ceiling = (base_ms << attempt.saturating_sub(1).min(16)).min(20_000);
    // A random fraction from the standard library's randomly keyed hasher.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let fraction = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    std::time::Duration::from_millis((ceiling as f64 * fraction) as u64)
}

/// Sends the request `make` builds (signed afresh each time), retrying throttling errors
/// (HTTP 400 `ThrottlingException` and the like), 429, 5xx and connection errors with
/// exponential backoff and jitter, up to `attempts` in all. The last answer is returned, a
/// non-200 one included.
///
/// Errors with a temporary [`CoreError::Backend`] when the endpoint cannot be reached after the
/// attempts (the client's error, without the URL, kept as the source).
async fn send_with_retries(
    what: &str,
    attempts: u32,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Reply> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= attempts;
        match make().send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.bytes().await.map_err(|e| {
                    let e = e.without_url();
                    CoreError::temporary(BACKEND, format!("{what}: reading the response: {e}"))
                        .with_source(e)
                })?;
                let reply = Reply {
                    status,
                    headers,
                    body,
                };
                if status == 200 || last {
                    return Ok(reply);
                }
                let kind = error_type(&reply);
                let throttled = is_throttling(&kind);
                if !throttled && !is_transient(status, &kind) {
                    return Ok(reply);
                }
                let wait = backoff(attempt, throttled);
                tracing::warn!(backend = BACKEND, what, status, kind = %kind, attempt, "retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            Err(e) if !last => {
                let wait = backoff(attempt, false);
                tracing::warn!(backend = BACKEND, what, attempt, error = %e.without_url(), "retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                let e = e.without_url();
                return Err(CoreError::temporary(
                    BACKEND,
                    format!("{what} failed after {attempt} attempt(s): {e}"),
                )
                .with_source(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_regions_use_the_aws_cn_partition() {
        assert_eq!(
            default_endpoint("cn-north-1"),
            "https://codecommit.cn-north-1.amazonaws.com.cn/"
        );
        assert_eq!(
            default_endpoint("cn-northwest-1"),
            "https://codecommit.cn-northwest-1.amazonaws.com.cn/"
        );
        assert_eq!(
            default_endpoint("eu-west-1"),
            "https://codecommit.eu-west-1.amazonaws.com/"
        );
        let c = CodeCommit::builder("r", "f.py")
            .region("cn-north-1")
            .build()
            .unwrap();
        assert_eq!(
            c.config().endpoint(),
            "https://codecommit.cn-north-1.amazonaws.com.cn/"
        );
    }

    #[test]
    fn error_types_lose_their_namespace() {
        let reply = |body: &str| Reply {
            status: 400,
            headers: Default::default(),
            body: bytes::Bytes::from(body.to_string()),
        };
        assert_eq!(
            error_type(&reply(
                r#"{"__type":"com.amazonaws.codecommit#ThrottlingException"}"#
            )),
            "ThrottlingException"
        );
        assert_eq!(error_type(&reply("{}")), "error");
        assert!(is_throttling("ThrottlingException") && !is_throttling("FileTooLargeException"));
        assert!(is_transient(503, "error") && !is_transient(400, "error"));
    }

    #[test]
    fn backoff_is_jittered_and_bounded() {
        for attempt in 1..30 {
            let ceiling = (500u64 << (attempt - 1).min(16)).min(20_000);
            let w = backoff(attempt, true);
            assert!(w.as_millis() as u64 <= ceiling, "{attempt}: {w:?}");
        }
        let waits: std::collections::BTreeSet<_> = (0..20).map(|_| backoff(5, true)).collect();
        assert!(waits.len() > 1, "the waits are random: {waits:?}");
    }
}
