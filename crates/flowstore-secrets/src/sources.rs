//! Where secrets come from: the environment, an in-memory map, and a chain of sources.

use std::collections::BTreeMap;
use std::sync::Arc;

use flowstore_core::secret::{SecretSource, SecretString};
use flowstore_core::Result;

/// Secrets from environment variables of the same name.
#[derive(Debug, Default, Clone)]
pub struct EnvSource {
    _private: (),
}

impl EnvSource {
    /// The process environment.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SecretSource for EnvSource {
    fn get(&self, name: &str) -> Result<Option<SecretString>> {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Ok(None);
        }
        Ok(std::env::var(name).ok().map(SecretString::from))
    }
    fn describe(&self) -> String {
        "environment".to_string()
    }
}

/// Secrets held in memory (tests, embedding).
#[derive(Default, Clone)]
pub struct MapSource {
    values: BTreeMap<String, SecretString>,
}

impl std::fmt::Debug for MapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapSource")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl MapSource {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a secret (builder style).
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.insert(name, value);
        self
    }
    /// Adds a secret.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.values
            .insert(name.to_string(), SecretString::from(value.to_string()));
    }
}

impl SecretSource for MapSource {
    fn get(&self, name: &str) -> Result<Option<SecretString>> {
        Ok(self.values.get(name).cloned())
    }
    fn describe(&self) -> String {
        "in-memory secrets".to_string()
    }
}

/// Asks each source in order; the first that has the secret wins.
#[derive(Debug, Default, Clone)]
pub struct ChainSource {
    sources: Vec<Arc<dyn SecretSource>>,
}

impl ChainSource {
    /// A chain of the given sources, asked in order.
    pub fn new(sources: Vec<Arc<dyn SecretSource>>) -> Self {
        ChainSource { sources }
    }
    /// Appends a source (builder style).
    pub fn then(mut self, source: impl SecretSource + 'static) -> Self {
        self.sources.push(Arc::new(source));
        self
    }
}

impl SecretSource for ChainSource {
    fn get(&self, name: &str) -> Result<Option<SecretString>> {
        for s in &self.sources {
            if let Some(v) = s.get(name)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
    fn describe(&self) -> String {
        if self.sources.is_empty() {
            return "no secret sources".to_string();
        }
        self.sources
            .iter()
            .map(|s| s.describe())
            .collect::<Vec<_>>()
            .join(", then ")
    }
}
