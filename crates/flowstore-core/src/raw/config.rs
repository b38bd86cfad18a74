//! One configuration path for every backend: a serde struct holding exactly the reference's
//! fields (Prefect 1's names), filled from a reference, a URL's query, key/value pairs
//! (`with_config`) or the environment, always ending in the same state.
//!
//! A backend implements [`BackendConfig`] (its type name and the option keys it accepts); the
//! provided methods do the rest: [`BackendConfig::set`] turns `"true"`, `"8"` or `"a,b"` into the
//! field's type and refuses unknown keys by name.
//!
//! ```
//! use flowstore_core::raw::config::BackendConfig;
//! #[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
//! struct DemoConfig {
//!     bucket: String,
//!     #[serde(default)]
//!     stored_as_script: bool,
//!     #[serde(default)]
//!     client_options: serde_json::Map<String, serde_json::Value>,
//! }
//! impl BackendConfig for DemoConfig {
//!     const TYPE_NAME: &'static str = "Demo";
//!     const OPTIONS: &'static [(&'static str, &'static str)] = &[
//!         ("bucket", "bucket"),
//!         ("stored_as_script", "stored_as_script"),
//!         ("endpoint_url", "client_options.endpoint_url"),
//!     ];
//! }
//! let mut config = DemoConfig::default();
//! config.set("stored_as_script", "true")?;
//! config.set("endpoint_url", "http://127.0.0.1:9000")?;
//! assert!(config.stored_as_script);
//! assert_eq!(config.client_options["endpoint_url"], "http://127.0.0.1:9000");
//! assert!(config.set("endpont_url", "x").unwrap_err().to_string().contains("endpoint_url"));
//! # Ok::<(), flowstore_core::Error>(())
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::raw::FlowIndex;
use crate::reference::StorageReference;

pub use url::Url;

/// A backend's configuration: the reference's backend fields, with Prefect 1's names.
pub trait BackendConfig: Serialize + DeserializeOwned + Clone {
    /// The reference type name (`S3`, `Git`, …), for messages.
    const TYPE_NAME: &'static str;

    /// The option keys [`BackendConfig::set`] accepts, each with the field it fills: a top-level
    /// field (`"bucket"`) or a dotted path into a map field (`"client_options.endpoint_url"`).
    const OPTIONS: &'static [(&'static str, &'static str)];

    /// The configuration recorded in a reference.
    ///
    /// Errors with [`Error::InvalidReference`] naming the type and the field that does not fit.
    fn from_reference(reference: &StorageReference) -> Result<Self> {
        reference.backend_fields()
    }

    /// Sets one option from its text form, as a URL query pair or `with_config` gives it.
    ///
    /// The text is taken as a string when the field holds text, and otherwise parsed as JSON
    /// (`true`, `8`, `["a"]`); a list field gets the value appended (repeat the key for more).
    /// Errors with [`Error::Config`] for an unknown key (listing the known ones) or a value the
    /// field cannot hold.
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let Some((_, path)) = Self::OPTIONS.iter().find(|(k, _)| *k == key) else {
            return Err(unknown_option(Self::TYPE_NAME, key, Self::OPTIONS));
        };
        *self = set_path(self, Self::TYPE_NAME, key, path, value)?;
        Ok(())
    }

    /// Sets every pair in order (see [`BackendConfig::set`]).
    fn set_all<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        for (k, v) in pairs {
            self.set(k.as_ref(), v.as_ref())?;
        }
        Ok(())
    }
}

/// The options every backend takes besides its own: `label` (repeatable, or comma-separated),
/// `add_default_labels` and `secret` (a secret name agents must resolve, repeatable).
pub const COMMON_OPTIONS: [&str; 3] = ["label", "add_default_labels", "secret"];

/// Applies one of the [`COMMON_OPTIONS`] to an index; `Ok(false)` when `key` is not one of them.
///
/// Errors with [`Error::Config`] for an `add_default_labels` that is not `true` or `false`.
pub fn apply_common(index: &mut FlowIndex, key: &str, value: &str) -> Result<bool> {
    match key {
        "label" | "labels" => {
            for label in value.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                if !index.labels.iter().any(|l| l == label) {
                    index.labels.push(label.to_string());
                }
            }
        }
        "add_default_labels" => {
            index.add_default_labels = parse_bool(key, value)?;
        }
        "secret" | "secrets" => {
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !index.secrets.iter().any(|s| s == name) {
                    index.secrets.push(name.to_string());
                }
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Applies pairs to a configuration and an index: common options to the index, the rest to the
/// configuration (see [`BackendConfig::set`] and [`apply_common`]).
pub fn apply_pairs<C: BackendConfig, K: AsRef<str>, V: AsRef<str>>(
    config: &mut C,
    index: &mut FlowIndex,
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Result<()> {
    for (k, v) in pairs {
        let (k, v) = (k.as_ref(), v.as_ref());
        if !apply_common(index, k, v)? {
            config.set(k, v).map_err(|e| match e {
                Error::Config { message, source } if message.starts_with("Unknown") => {
                    Error::Config {
                        message: format!(
                            "{message}; every storage also takes {}",
                            COMMON_OPTIONS.join(", ")
                        ),
                        source,
                    }
                }
                other => other,
            })?;
        }
    }
    Ok(())
}

/// Parses a storage URL once, with its scheme checked against `schemes`.
///
/// Errors with [`Error::Config`] naming the URL, what was expected (`example`), and the parser's
/// error as the source.
pub fn parse_url(url: &str, schemes: &[&str], example: &str) -> Result<Url> {
    let shown = without_password(url);
    let url = url.trim();
    let parsed = Url::parse(url).map_err(|e| {
        Error::config(format!(
            "Storage URL \"{shown}\" cannot be parsed ({e}); it should look like {example}"
        ))
        .with_source(e)
    })?;
    if !schemes
        .iter()
        .any(|s| s.eq_ignore_ascii_case(parsed.scheme()))
    {
        return Err(Error::config(format!(
            "Storage URL \"{shown}\" has scheme {}:// but this storage takes {}; it should look like {example}",
            parsed.scheme(),
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    Ok(parsed)
}

/// The URL as it may be shown in a message or a log: a password in it (`user:token@host`) is
/// replaced by `***`, even when the URL does not parse.
///
/// ```
/// use flowstore_core::raw::config::without_password;
/// assert_eq!(without_password("git+https://me:s3cr3t@host/r.git"), "git+https://me:***@host/r.git");
/// assert_eq!(without_password("s3://bucket/prefix"), "s3://bucket/prefix");
/// ```
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{masked}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// The URL's path without its leading and trailing slashes, percent-decoded; `None` when empty
/// (e.g. the prefix of `s3://bucket/a/b` is `a/b`).
pub fn url_path(url: &Url) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
    let trimmed = decoded.trim_matches('/');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Parses `true`/`false` (also `1`/`0`, `yes`/`no`) for option `key`.
///
/// Errors with [`Error::Config`] naming the option and the value.
pub fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::config(format!(
            "Option {key}={value:?} must be true or false"
        ))),
    }
}

fn unknown_option(type_name: &str, key: &str, options: &[(&str, &str)]) -> Error {
    let known: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
    Error::config(format!(
        "Unknown {type_name} option \"{key}\"; {type_name} takes {}",
        known.join(", ")
    ))
}

fn set_path<C: BackendConfig>(
    config: &C,
    type_name: &str,
    key: &str,
    path: &str,
    value: &str,
) -> Result<C> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::config(format!(
            "{type_name} option {key}={value:?} does not fit: {e}"
        ))
    };
    let Value::Object(mut root) = serde_json::to_value(config).map_err(|e| bad(&e))? else {
        return Err(bad(&"the configuration is not an object"));
    };
    let current = slot(&mut root, path).clone();
    let text = Value::String(value.to_string());
    let parsed = serde_json::from_str::<Value>(value).ok();
    // Candidates in order: the text as it is, then the text read as JSON (bools, numbers, lists).
    let candidates: Vec<Value> = match current {
        Value::Array(mut items) => {
            items.push(text.clone());
            let mut with_text = vec![Value::Array(items.clone())];
            if let Some(p) = &parsed {
                items.pop();
                items.push(p.clone());
                with_text.push(Value::Array(items));
            }
            with_text
        }
        // An absent field may be a list left out of the JSON while empty: try a one-item list last.
        Value::Null => {
            let mut c = vec![text.clone()];
            c.extend(parsed.clone());
            c.push(Value::Array(vec![text]));
            c.extend(parsed.map(|p| Value::Array(vec![p])));
            c
        }
        _ => std::iter::once(text).chain(parsed).collect(),
    };
    let mut last_error = None;
    for candidate in candidates {
        let mut tried = root.clone();
        *slot(&mut tried, path) = candidate;
        match serde_json::from_value::<C>(Value::Object(tried)) {
            Ok(c) => return Ok(c),
            Err(e) => last_error = Some(e),
        }
    }
    Err(bad(&last_error.expect("at least one candidate was tried")))
}

/// The value at a dotted path, creating objects (and a null leaf) along the way.
fn slot<'a>(root: &'a mut Map<String, Value>, path: &str) -> &'a mut Value {
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or(path);
    let mut current = root.entry(first.to_string()).or_insert(Value::Null);
    for part in parts {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        current = current
            .as_object_mut()
            .expect("made an object above")
            .entry(part.to_string())
            .or_insert(Value::Null);
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Demo {
        bucket: String,
        #[serde(default)]
        key: Option<String>,
        #[serde(default)]
        parts: u32,
        #[serde(default)]
        on: bool,
        #[serde(default)]
        env: Vec<String>,
        #[serde(default)]
        client_options: Map<String, Value>,
    }

    impl BackendConfig for Demo {
        const TYPE_NAME: &'static str = "Demo";
        const OPTIONS: &'static [(&'static str, &'static str)] = &[
            ("bucket", "bucket"),
            ("key", "key"),
            ("parts", "parts"),
            ("on", "on"),
            ("env", "env"),
            ("region", "client_options.region_name"),
        ];
    }

    #[test]
    fn text_is_turned_into_each_fields_type() {
        let mut d = Demo::default();
        d.set_all([
            ("bucket", "123"),
            ("key", "a/b"),
            ("parts", "8"),
            ("on", "true"),
            ("env", "A=1"),
            ("env", "B=2"),
            ("region", "eu-west-1"),
        ])
        .unwrap();
        assert_eq!(d.bucket, "123", "a numeric bucket name stays text");
        assert_eq!(d.key.as_deref(), Some("a/b"));
        assert_eq!(d.parts, 8);
        assert!(d.on);
        assert_eq!(d.env, ["A=1", "B=2"]);
        assert_eq!(d.client_options["region_name"], "eu-west-1");
    }

    #[test]
    fn bad_values_and_unknown_keys_are_named() {
        let mut d = Demo::default();
        let e = d.set("parts", "many").unwrap_err().to_string();
        assert!(e.contains("parts=\"many\""), "{e}");
        let e = d.set("bukket", "x").unwrap_err().to_string();
        assert!(
            e.contains("Unknown Demo option \"bukket\"") && e.contains("bucket"),
            "{e}"
        );
        assert_eq!(d, Demo::default(), "a refused option changes nothing");
    }

    #[test]
    fn common_options_go_to_the_index() {
        let mut d = Demo::default();
        let mut index = FlowIndex::default();
        apply_pairs(
            &mut d,
            &mut index,
            [
                ("label", "prod,eu"),
                ("label", "prod"),
                ("add_default_labels", "false"),
                ("secret", "DB"),
                ("bucket", "b"),
            ],
        )
        .unwrap();
        assert_eq!(index.labels, ["prod", "eu"]);
        assert!(!index.add_default_labels);
        assert_eq!(index.secrets, ["DB"]);
        assert_eq!(d.bucket, "b");
        let e = apply_pairs(&mut d, &mut index, [("nope", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("also takes label"), "{e}");
    }

    #[test]
    fn a_list_left_out_while_empty_takes_its_first_item() {
        #[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
        struct Lists {
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            paths: Vec<String>,
        }
        impl BackendConfig for Lists {
            const TYPE_NAME: &'static str = "Lists";
            const OPTIONS: &'static [(&'static str, &'static str)] = &[("path", "paths")];
        }
        let mut l = Lists::default();
        l.set_all([("path", "a"), ("path", "b")]).unwrap();
        assert_eq!(l.paths, ["a", "b"]);
    }

    #[test]
    fn passwords_never_reach_url_errors() {
        for bad in ["gs://me:tok3n@host/x", "git+https://me:tok3n@[bad/x"] {
            let e = parse_url(bad, &["s3"], "s3://bucket")
                .unwrap_err()
                .to_string();
            assert!(!e.contains("tok3n") && e.contains("me:***@"), "{e}");
        }
    }

    #[test]
    fn urls_are_parsed_once_and_checked() {
        let u = parse_url(
            "s3://bucket/a%20b/c/?region=x",
            &["s3"],
            "s3://bucket/prefix",
        )
        .unwrap();
        assert_eq!(u.host_str(), Some("bucket"));
        assert_eq!(url_path(&u).as_deref(), Some("a b/c"));
        let e = parse_url("gs://b", &["s3"], "s3://bucket/prefix")
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes s3://"), "{e}");
        let e = parse_url("not a url", &["s3"], "s3://bucket/prefix").unwrap_err();
        assert!(
            std::error::Error::source(&e).is_some(),
            "the parser's error is kept"
        );
    }
}
