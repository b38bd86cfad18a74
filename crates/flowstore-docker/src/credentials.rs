//! Registry credentials: given to the builder, named as secrets in the reference, or found the
//! way the Docker CLI finds them. Values never reach a reference, a log, an error or `Debug`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
use serde::Deserialize;

use crate::config::DockerConfig;
use crate::error::Result;

/// A registry username and password (or token).
#[derive(Clone)]
pub struct Credentials {
    /// The username (Docker Hub, GHCR: the account; a token registry may take any name).
    pub username: String,
    /// The password or access token.
    pub password: SecretString,
}

impl Credentials {
    /// Credentials from a username and a password or token.
    pub fn new(username: impl Into<String>, password: impl Into<SecretString>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// The credentials a storage uses for its registry, first found wins:
/// 1. `given` (the builder's `username`/`password`: building only, never recorded);
/// 2. the secrets the configuration names (`registry_username_secret`/`registry_password_secret`),
///    resolved through `secrets` (this is how an agent reads a private registry);
/// 3. the Docker CLI's config for `registry_url` (see [`docker_config_auth`]);
/// 4. none.
///
/// Errors with [`crate::Error::Secrets`] when a named secret cannot be resolved.
pub(crate) fn resolve(
    given: Option<&Credentials>,
    config: &DockerConfig,
    secrets: &dyn SecretSource,
) -> Result<Option<Credentials>> {
    if let Some(c) = given {
        return Ok(Some(c.clone()));
    }
    let names = config
        .registry_username_secret
        .as_ref()
        .zip(config.registry_password_secret.as_ref());
    match names {
        Some((u, p)) => {
            let user = flowstore_secrets::resolve(u, secrets)?;
            let password = flowstore_secrets::resolve(p, secrets)?;
            Ok(Some(Credentials::new(user.expose_secret(), password)))
        }
        None => Ok(config.registry_url.as_deref().and_then(docker_config_auth)),
    }
}

/// The parts of the Docker CLI's `config.json` read here.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerCliConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

/// What a credential helper prints for `get`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Credentials for `registry` from the Docker CLI's config file (`~/.docker/config.json`, or
/// `$DOCKER_CONFIG/config.json`), as the Docker CLI finds them: the registry's credential helper
/// (`credHelpers`), else the default store (`credsStore`), else an inline `auths` entry (base64
/// `user:password`). None when there is no config or no entry.
pub fn docker_config_auth(registry: &str) -> Option<Credentials> {
    use base64::Engine as _;
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
    let text = std::fs::read(dir.join("config.json")).ok()?;
    let config: DockerCliConfig = match serde_json::from_slice(&text) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "the Docker CLI config is not valid JSON; ignoring it");
            return None;
        }
    };
    let helper = config
        .cred_helpers
        .get(registry)
        .or(config.creds_store.as_ref());
    if let Some(found) = helper.and_then(|h| credential_helper(h, registry)) {
        return Some(found);
    }
    let auth = [
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
    .iter()
    .find_map(|k| config.auths.get(k)?.auth.clone())?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())?;
    let (user, pass) = decoded.split_once(':')?;
    Some(Credentials::new(user, pass.to_string()))
}

/// Runs `docker-credential-<helper> get` with the registry on stdin (the Docker credential helper
/// protocol) and reads `{"Username": …, "Secret": …}` from its stdout. A helper that is missing or
/// fails is logged (without its output) and skipped.
fn credential_helper(helper: &str, registry: &str) -> Option<Credentials> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{helper}");
    let run = || -> std::io::Result<std::process::Output> {
        let mut child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(registry.as_bytes())?;
        child.wait_with_output()
    };
    let out = match run() {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            tracing::warn!(helper = %program, registry, status = %out.status, "the Docker credential helper found no credentials");
            return None;
        }
        Err(e) => {
            tracing::warn!(helper = %program, registry, error = %e, "the Docker credential helper could not be run");
            return None;
        }
    };
    match serde_json::from_slice::<HelperAnswer>(&out.stdout) {
        Ok(answer) => Some(Credentials::new(answer.username, answer.secret)),
        Err(_) => {
            tracing::warn!(helper = %program, registry, "the Docker credential helper's answer is not {{\"Username\", \"Secret\"}}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let c = Credentials::new("me", "hunter2-c4n4ry".to_string());
        let shown = format!("{c:?}");
        assert!(shown.contains("me") && !shown.contains("c4n4ry"), "{shown}");
    }
}
