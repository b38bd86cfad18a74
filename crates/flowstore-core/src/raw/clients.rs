//! Clients shared by every storage one process opens: an agent that opens 100 references to
//! the same bucket or service builds one client and keeps one connection pool, instead of a
//! client, a TLS handshake and a credential lookup per reference. Backends build their HTTP or
//! SDK clients through [`shared`]; this module holds them without knowing their type (core has
//! no network stack).
//!
//! A client is found again by a [`Fingerprint`] of everything it was built from: backend,
//! bucket or container, endpoint, region, retry settings, the credentials given (hashed, never
//! kept as text) and the credential environment variables the client's chain reads (hashed
//! too). Two storages share a client only when every one of those is equal. The cache keeps at
//! most [`MAX_CLIENTS`] clients; past that it starts over (clients in use stay alive in the
//! storages holding them). Clients are shared within one tokio runtime (an HTTP client's
//! pooled connections belong to the runtime that opened them and die with it); a storage built
//! outside any runtime gets a client of its own.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use flowstore_core::raw::clients::{shared, Fingerprint};
//! let make = || Ok::<_, ()>(std::sync::Arc::new(String::from("a client")));
//! let a = shared(Fingerprint::new("doc-example").part("endpoint", "http://a"), make).unwrap();
//! let b = shared(Fingerprint::new("doc-example").part("endpoint", "http://a"), make).unwrap();
//! assert!(std::sync::Arc::ptr_eq(&a, &b));
//! # }
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::envelope::DigestBuilder;
use crate::secret::{ExposeSecret, SecretString};

/// The most clients kept for reuse at once.
pub const MAX_CLIENTS: usize = 64;

/// What a shared client was built from, as a digest (see the module docs). Its `Debug`
/// shows nothing of what it was fed.
pub struct Fingerprint(DigestBuilder);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint")
    }
}

impl Fingerprint {
    /// A fingerprint for clients of one kind (`s3`, `azure`, `gcs-http`, …).
    pub fn new(kind: &str) -> Self {
        let mut f = Fingerprint(DigestBuilder::new());
        f.feed("kind", kind.as_bytes());
        f
    }

    fn feed(&mut self, label: &str, value: &[u8]) {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        for part in [label.as_bytes(), value] {
            self.0.update(&(part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
    }

    /// Adds a setting.
    pub fn part(mut self, label: &str, value: impl std::fmt::Debug) -> Self {
        self.feed(label, format!("{value:?}").as_bytes());
        self
    }

    /// Adds a credential, hashed with the rest (it is never kept as text).
    pub fn secret(mut self, label: &str, value: Option<&SecretString>) -> Self {
        match value {
            Some(s) => self.feed(label, s.expose_secret().as_bytes()),
            None => self.feed(label, b"\0none"),
        }
        self
    }

    /// Adds every environment variable whose name starts with one of `prefixes` (the ones a
    /// client's credential chain reads), so a changed environment builds a new client.
    pub fn env(mut self, prefixes: &[&str]) -> Self {
        // `vars_os`: a variable that is not UTF-8 is hashed as it is, not a panic.
        let mut vars: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os()
            .filter(|(k, _)| {
                let k = k.as_encoded_bytes();
                prefixes.iter().any(|p| k.starts_with(p.as_bytes()))
            })
            .collect();
        vars.sort();
        for (k, v) in vars {
            self.feed(&k.to_string_lossy(), v.as_encoded_bytes());
        }
        self
    }

    fn finish(self) -> String {
        self.0.finish()
    }
}

type Cache = Mutex<HashMap<String, Box<dyn Any + Send + Sync>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The client built from `fingerprint`'s settings: the one already built in this process, or
/// a new one from `build` (kept for the next storage when it succeeds).
///
/// Errors: what `build` returns (nothing is kept then).
pub fn shared<T, E>(fingerprint: Fingerprint, build: impl FnOnce() -> Result<T, E>) -> Result<T, E>
where
    T: Clone + Send + Sync + 'static,
{
    // HTTP clients run their connections on the runtime they were first used on, and those
    // connections die with it: share only within one runtime, and not at all outside one.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return build();
    };
    let key = fingerprint
        .part("runtime", runtime.id().to_string())
        .finish();
    let found = cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .and_then(|c| c.downcast_ref::<T>())
        .cloned();
    if let Some(client) = found {
        tracing::trace!("reusing a shared client");
        return Ok(client);
    }
    let client = build()?;
    let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= MAX_CLIENTS {
        cache.clear();
    }
    cache.insert(key, Box::new(client.clone()));
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn build_counted(counter: &std::sync::atomic::AtomicUsize) -> Result<Arc<u32>, ()> {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Arc::new(7))
    }

    #[tokio::test]
    async fn equal_settings_share_one_client_and_any_difference_builds_another() {
        let builds = std::sync::atomic::AtomicUsize::new(0);
        let key = |endpoint: &str, secret: &str| {
            Fingerprint::new("test-clients")
                .part("endpoint", endpoint)
                .secret("key", Some(&SecretString::from(secret.to_string())))
        };
        let a = shared(key("http://a", "s1"), || build_counted(&builds)).unwrap();
        let b = shared(key("http://a", "s1"), || build_counted(&builds)).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "equal settings share the client");
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
        let _ = shared(key("http://b", "s1"), || build_counted(&builds)).unwrap();
        let _ = shared(key("http://a", "s2"), || build_counted(&builds)).unwrap();
        assert_eq!(
            builds.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "another endpoint or another credential builds its own client"
        );
    }

    #[tokio::test]
    async fn a_failed_build_is_not_kept() {
        let key = || Fingerprint::new("test-failed").part("x", 1);
        let first: Result<Arc<u32>, &str> = shared(key(), || Err("no"));
        assert!(first.is_err());
        let second: Result<Arc<u32>, &str> = shared(key(), || Ok(Arc::new(1)));
        assert_eq!(*second.unwrap(), 1);
    }

    #[test]
    fn outside_a_runtime_nothing_is_shared() {
        let builds = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..2 {
            let _ = shared(Fingerprint::new("test-outside"), || build_counted(&builds)).unwrap();
        }
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn each_runtime_gets_its_own_client() {
        let builds = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..2 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                for _ in 0..2 {
                    let _ = shared(Fingerprint::new("test-runtimes"), || build_counted(&builds))
                        .unwrap();
                }
            });
        }
        assert_eq!(
            builds.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "one client per runtime, shared within it"
        );
    }

    #[test]
    fn parts_are_delimited() {
        let ab = Fingerprint::new("k").part("a", "bc").finish();
        let abc = Fingerprint::new("k").part("ab", "c").finish();
        assert_ne!(ab, abc);
    }
}
