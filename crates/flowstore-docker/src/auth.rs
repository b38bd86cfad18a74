//! Registry token authentication (the Docker Registry v2 token flow that Docker Hub, GHCR, GitLab,
//! Harbor and `docker/distribution`'s `auth: token` use): a `401` with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` sends the client to the realm for a token,
//! with basic-auth credentials if it has any, and the request is repeated with that token.

use flowstore_core::secret::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::credentials::Credentials;
use crate::error::{Error, Result};

/// A parsed `Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// The token endpoint.
    pub realm: String,
    /// The registry's service name, passed back to the realm.
    pub service: Option<String>,
    /// The scope the request needs (`repository:name:pull,push`).
    pub scope: Option<String>,
}

impl BearerChallenge {
    /// Parses a `WWW-Authenticate` value; `None` unless it is a Bearer challenge with a realm.
    /// Quoted values may hold commas (`scope="repository:a:pull,push"`).
    pub fn parse(header: &str) -> Option<Self> {
        let (scheme, params) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut fields = std::collections::BTreeMap::new();
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let (value, after) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"')?;
                    (&quoted[..end], &quoted[end + 1..])
                }
                None => after.split_once(',').unwrap_or((after, "")),
            };
            fields.insert(key.trim().to_ascii_lowercase(), value.to_string());
            rest = after.trim_start_matches([',', ' ']);
        }
        Some(BearerChallenge {
            realm: fields.remove("realm")?,
            service: fields.remove("service"),
            scope: fields.remove("scope"),
        })
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// Asks the challenge's realm for a token for repository `repo` of `registry`, with basic-auth
/// `credentials` when given.
///
/// Errors with [`Error::Registry`] (naming the realm, never the credentials; with the realm's
/// status, so a `401` is a refused credential) when the realm refuses the credentials, cannot be
/// reached, or answers without a token.
pub async fn fetch_token(
    client: &reqwest::Client,
    registry: &str,
    repo: &str,
    challenge: &BearerChallenge,
    credentials: Option<&Credentials>,
) -> Result<SecretString> {
    let realm = &challenge.realm;
    let error =
        |message: String, status: Option<u16>, source: Option<reqwest::Error>| Error::Registry {
            registry: registry.to_string(),
            repository: repo.to_string(),
            what: format!("getting a token from {realm}"),
            message,
            status,
            source: source.map(|e| Box::new(e.without_url()) as _),
        };
    let mut query = Vec::new();
    if let Some(service) = &challenge.service {
        query.push(("service", service.as_str()));
    }
    if let Some(scope) = &challenge.scope {
        query.push(("scope", scope.as_str()));
    }
    let mut request = client.get(realm).query(&query);
    if let Some(c) = credentials {
        request = request.basic_auth(&c.username, Some(c.password.expose_secret()));
    }
    let response = request.send().await.map_err(|e| {
        error(
            "the token server cannot be reached".to_string(),
            None,
            Some(e),
        )
    })?;
    let status = response.status();
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 | 403 => " (the token server refused the credentials: check the registry username and password secrets)",
            _ => "",
        };
        return Err(error(
            format!("{status}{hint}"),
            Some(status.as_u16()),
            None,
        ));
    }
    let body: TokenResponse = response.json().await.map_err(|e| {
        error(
            "the answer is not a token document".to_string(),
            None,
            Some(e),
        )
    })?;
    body.token
        .or(body.access_token)
        .filter(|t| !t.is_empty())
        .map(SecretString::from)
        .ok_or_else(|| error("the answer holds no token".into(), None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges_with_commas_in_quoted_values() {
        let c = BearerChallenge::parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/etl:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.example.com/token");
        assert_eq!(c.service.as_deref(), Some("registry.example.com"));
        assert_eq!(c.scope.as_deref(), Some("repository:team/etl:pull,push"));
        let bare = BearerChallenge::parse("bearer realm=http://127.0.0.1:1/token").unwrap();
        assert_eq!(bare.realm, "http://127.0.0.1:1/token");
        assert_eq!(bare.scope, None);
    }

    #[test]
    fn other_schemes_and_broken_challenges_are_not_bearer() {
        for h in [
            r#"Basic realm="registry""#,
            r#"Bearer service="x""#,
            r#"Bearer realm="unterminated"#,
            "Bearer",
        ] {
            assert_eq!(BearerChallenge::parse(h), None, "{h}");
        }
    }
}
