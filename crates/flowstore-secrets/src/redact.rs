//! Scrubbing known secret values out of text.

use flowstore_core::secret::{ExposeSecret, SecretString};

/// Replaces every occurrence of each secret value in `text` with `***`.
///
/// ```
/// use flowstore_secrets::{redact, SecretString};
/// let token = SecretString::from("s3cr3t");
/// assert_eq!(redact("https://user:s3cr3t@host/x", &[&token]), "https://user:***@host/x");
/// ```
pub fn redact(text: &str, secrets: &[&SecretString]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        let v = s.expose_secret();
        if !v.is_empty() {
            out = out.replace(v, "***");
        }
    }
    out
}

/// A set of secret values to scrub from everything a backend reports.
#[derive(Default, Clone)]
pub struct Redactor {
    secrets: Vec<SecretString>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a value to scrub.
    pub fn add(&mut self, secret: SecretString) {
        self.secrets.push(secret);
    }
    /// `text` with every known secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let refs: Vec<&SecretString> = self.secrets.iter().collect();
        redact(text, &refs)
    }
}
