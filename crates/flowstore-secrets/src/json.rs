//! Secrets that hold structured data (a cloud credentials document, rendered request arguments).

use flowstore_core::secret::{ExposeSecret, SecretSource};
use serde_json::Value;
use zeroize::Zeroize;

use crate::error::Error;

/// A JSON value that is secret: `Debug` prints `[REDACTED]`, the value is reached only through
/// [`ExposeSecret`], and its strings are zeroized on drop.
pub struct SecretJson(Value);

impl SecretJson {
    /// Wraps a value.
    pub fn new(value: Value) -> Self {
        SecretJson(value)
    }
}

impl ExposeSecret<Value> for SecretJson {
    fn expose_secret(&self) -> &Value {
        &self.0
    }
}

impl std::fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretJson([REDACTED])")
    }
}

impl Drop for SecretJson {
    fn drop(&mut self) {
        zeroize_value(&mut self.0);
    }
}

/// Zeroizes every string in `value` (keys are left: they are names, not secrets).
pub(crate) fn zeroize_value(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_value),
        Value::Object(map) => map.values_mut().for_each(zeroize_value),
        _ => {}
    }
}

/// Resolves the secret `name` (as [`resolve`](crate::resolve) does) and parses it as JSON, e.g.
/// `GCP_CREDENTIALS` (a service-account document) or `AWS_CREDENTIALS`
/// (`{"ACCESS_KEY": …, "SECRET_ACCESS_KEY": …, "SESSION_TOKEN": …}`).
///
/// Errors with `SecretNotFound` naming every place searched, and [`Error::NotJson`] (which never
/// quotes the value) when it is not JSON.
///
/// ```
/// use flowstore_secrets::{resolve_json, MapSource, ExposeSecret};
/// let sources = MapSource::new().with("AWS_CREDENTIALS", r#"{"ACCESS_KEY": "AKIA", "SECRET_ACCESS_KEY": "s"}"#);
/// let creds = resolve_json("AWS_CREDENTIALS", &sources).unwrap();
/// assert_eq!(creds.expose_secret()["ACCESS_KEY"], "AKIA");
/// ```
pub fn resolve_json(name: &str, sources: &dyn SecretSource) -> Result<SecretJson, Error> {
    let raw = crate::resolve(name, sources)?;
    serde_json::from_str(raw.expose_secret())
        .map(SecretJson)
        .map_err(|e| Error::NotJson {
            name: name.to_string(),
            line: e.line(),
            column: e.column(),
        })
}
