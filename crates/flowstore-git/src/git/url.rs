//! Building the clone URL the way the reference system does, keeping the credentials apart from
//! the URL so they never reach a log, an error or a reference.

use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
use flowstore_core::Error as CoreError;
use flowstore_secrets::Redactor;

use super::config::GitConfig;
use crate::error::secret_error;

/// How to authenticate over ssh and check the server.
#[derive(Debug, Clone)]
pub(crate) struct SshAuth {
    pub user: String,
    pub key_path: Option<std::path::PathBuf>,
    pub known_hosts: std::path::PathBuf,
    pub accept_unknown_host: bool,
    pub port: u16,
}

/// Where to clone from and how to authenticate.
pub(crate) struct CloneTarget {
    /// The URL without credentials: safe to log and to key the cache by.
    pub url: String,
    /// Username and password/token for HTTP basic auth, if any.
    pub credentials: Option<(String, SecretString)>,
    /// ssh settings, for ssh URLs.
    pub ssh: Option<SshAuth>,
    /// Scrubs the credentials from anything reported.
    pub redactor: Redactor,
}

impl std::fmt::Debug for CloneTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloneTarget")
            .field("url", &self.url)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "***")),
            )
            .finish()
    }
}

/// The clone target for `fields`, resolving secrets from `sources` (then the environment); a
/// typed `token` (given to the builder) is used instead of `git_token_secret_name`.
///
/// Errors: neither `repo` nor a clone-URL secret; a named secret found nowhere; a clone-URL
/// secret that is not a URL (never quoted).
pub(crate) fn clone_target(
    fields: &GitConfig,
    sources: &dyn SecretSource,
    token: Option<&SecretString>,
) -> Result<CloneTarget, CoreError> {
    let mut redactor = Redactor::new();
    if let Some(t) = token {
        redactor.add(t.clone());
    }
    if let Some(secret) = &fields.git_clone_url_secret_name {
        let full = flowstore_secrets::resolve(secret, sources).map_err(secret_error)?;
        redactor.add(full.clone());
        // The parser's error names what is wrong, never the text it was given.
        let mut parsed = url::Url::parse(full.expose_secret()).map_err(|e| {
            CoreError::config(format!("The clone URL in secret \"{secret}\" is not a URL"))
                .with_source(e)
        })?;
        let credentials = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            let user = percent_decode(parsed.username());
            let pass = percent_decode(parsed.password().unwrap_or(""));
            redactor.add(SecretString::from(pass.clone()));
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            Some((user, SecretString::from(pass)))
        };
        let ssh =
            (parsed.scheme() == "ssh").then(|| ssh_auth(fields, parsed.username(), parsed.port()));
        return Ok(CloneTarget {
            url: parsed.to_string(),
            credentials,
            ssh,
            redactor,
        });
    }
    let repo = fields.repo.as_deref().ok_or_else(|| {
        CoreError::config("Either `repo` or `git_clone_url_secret_name` must be provided")
    })?;
    let host = &fields.repo_host;
    if fields.use_ssh {
        if fields.git_token_secret_name.is_some() || token.is_some() {
            tracing::warn!("use_ssh is set: the git access token is ignored");
        }
        let user = fields
            .git_token_username
            .clone()
            .unwrap_or_else(|| "git".to_string());
        let port = host.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
        return Ok(CloneTarget {
            url: format!("ssh://{user}@{host}/{repo}.git"),
            credentials: None,
            ssh: Some(ssh_auth(fields, &user, port)),
            redactor,
        });
    }
    let scheme = fields.repo_scheme.as_deref().unwrap_or("https");
    let url = format!("{scheme}://{host}/{repo}.git");
    let token = match (token, &fields.git_token_secret_name) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(name)) => {
            let t = flowstore_secrets::resolve(name, sources).map_err(secret_error)?;
            redactor.add(t.clone());
            Some(t)
        }
        (None, None) => None,
    };
    let credentials = match token {
        None => None,
        Some(token) => {
            if fields.format_access_token {
                let user = fields
                    .git_token_username
                    .clone()
                    .unwrap_or_else(|| repo.split('/').next().unwrap_or(repo).to_string());
                Some((user, token))
            } else {
                // `https://{token}@host/…`: the token is the username, with no password.
                Some((
                    token.expose_secret().to_string(),
                    SecretString::from(String::new()),
                ))
            }
        }
    };
    Ok(CloneTarget {
        url,
        credentials,
        ssh: None,
        redactor,
    })
}

fn ssh_auth(fields: &GitConfig, user: &str, port: Option<u16>) -> SshAuth {
    SshAuth {
        user: if user.is_empty() {
            "git".to_string()
        } else {
            user.to_string()
        },
        key_path: fields.ssh_key_path.as_ref().map(std::path::PathBuf::from),
        known_hosts: fields
            .known_hosts_path
            .as_ref()
            .map(std::path::PathBuf::from)
            .unwrap_or_else(super::known_hosts::default_path),
        accept_unknown_host: fields.ssh_accept_unknown_host,
        port: port.unwrap_or(22),
    }
}

/// A URL's user or password part, decoded (malformed escapes kept, invalid UTF-8 replaced).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowstore_secrets::MapSource;

    fn fields(repo: Option<&str>) -> GitConfig {
        GitConfig {
            flow_path: "flow.py".into(),
            repo: repo.map(str::to_string),
            ..GitConfig::default()
        }
    }

    #[test]
    fn builds_the_reference_systems_urls_without_credentials_in_them() {
        let src = MapSource::new()
            .with("TOKEN", "t0k3n")
            .with("URL", "https://u:p%40ss@dev.example/org/_git/repo");
        let t = clone_target(&fields(Some("org/repo")), &src, None).unwrap();
        assert_eq!(t.url, "https://github.com/org/repo.git");
        assert!(
            t.credentials.is_none(),
            "no token: plain URL, never https://@host"
        );

        let mut f = fields(Some("org/repo"));
        f.git_token_secret_name = Some("TOKEN".into());
        let t = clone_target(&f, &src, None).unwrap();
        assert_eq!(t.url, "https://github.com/org/repo.git");
        let (user, token) = t.credentials.unwrap();
        assert_eq!((user.as_str(), token.expose_secret()), ("org", "t0k3n"));
        f.git_token_username = Some("oauth2".into());
        assert_eq!(
            clone_target(&f, &src, None).unwrap().credentials.unwrap().0,
            "oauth2"
        );
        f.format_access_token = false;
        assert_eq!(
            clone_target(&f, &src, None).unwrap().credentials.unwrap().0,
            "t0k3n"
        );

        let mut f = fields(None);
        f.git_clone_url_secret_name = Some("URL".into());
        let t = clone_target(&f, &src, None).unwrap();
        assert_eq!(t.url, "https://dev.example/org/_git/repo");
        assert_eq!(t.credentials.as_ref().unwrap().1.expose_secret(), "p@ss");
        assert_eq!(
            t.redactor.redact("failed: https://u:p@ss@dev"),
            "failed: https://u:***@dev"
        );
        assert!(!format!("{t:?}").contains("p@ss"));

        let mut f = fields(Some("org/repo"));
        f.use_ssh = true;
        assert_eq!(
            clone_target(&f, &src, None).unwrap().url,
            "ssh://git@github.com/org/repo.git"
        );

        // A typed token wins over the named secret, and is scrubbed from reports.
        let mut f = fields(Some("org/repo"));
        f.git_token_secret_name = Some("TOKEN".into());
        let typed = SecretString::from("typed-t0k3n".to_string());
        let t = clone_target(&f, &src, Some(&typed)).unwrap();
        let (user, token) = t.credentials.as_ref().unwrap();
        assert_eq!(
            (user.as_str(), token.expose_secret()),
            ("org", "typed-t0k3n")
        );
        assert_eq!(t.redactor.redact("x typed-t0k3n y"), "x *** y");
        assert!(!format!("{t:?}").contains("typed-t0k3n"));

        let err = clone_target(&fields(None), &src, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Either `repo` or `git_clone_url_secret_name` must be provided"
        );
    }
}
