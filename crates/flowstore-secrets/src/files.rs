//! Secrets from files: a directory with one file per secret (the layout Kubernetes and Docker
//! mount secrets in, e.g. `/run/secrets/NAME`), and one TOML or JSON file of name → value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flowstore_core::secret::{SecretSource, SecretString};
use flowstore_core::{Error as CoreError, Result};
use zeroize::Zeroize;

/// True for a name that can be a file name in a secrets directory.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// One secret per file in a directory: the file `DIR/NAME` holds the secret `NAME` (one trailing
/// newline is dropped). Names with `/`, `\`, `..` or NUL are never looked up.
#[derive(Debug, Clone)]
pub struct DirSource {
    dir: PathBuf,
}

impl DirSource {
    /// Secrets in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirSource { dir: dir.into() }
    }
}

impl SecretSource for DirSource {
    /// Errors only when the file exists but cannot be read or is not UTF-8 (naming the file, never
    /// its content).
    fn get(&self, name: &str) -> Result<Option<SecretString>> {
        if !is_plain_name(name) {
            return Ok(None);
        }
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(mut bytes) => {
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                match String::from_utf8(bytes) {
                    Ok(s) => Ok(Some(SecretString::from(s))),
                    Err(e) => {
                        e.into_bytes().zeroize();
                        Err(CoreError::config(format!(
                            "Secret \"{name}\" in {} is not UTF-8 text",
                            path.display()
                        )))
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(CoreError::io(
                format!("reading secret \"{name}\" from {}", path.display()),
                e,
            )),
        }
    }

    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }
}

/// Secrets from one TOML or JSON file of name → value (`.json` is JSON, anything else TOML).
/// Non-string values (e.g. a credentials table) are kept as their JSON text.
#[derive(Clone)]
pub struct FileSource {
    path: PathBuf,
    values: BTreeMap<String, SecretString>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FileSource {
    /// Reads the file.
    ///
    /// Errors with an I/O error naming the file, or a config error naming the file and the position
    /// of a syntax error (never quoting its content).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut text = std::fs::read_to_string(&path)
            .map_err(|e| CoreError::io(format!("reading secrets file {}", path.display()), e))?;
        let parsed = parse(&path, &text);
        text.zeroize();
        Ok(FileSource {
            values: parsed?,
            path,
        })
    }
}

fn parse(path: &Path, text: &str) -> Result<BTreeMap<String, SecretString>> {
    let bad = |what: String| {
        CoreError::config(format!(
            "Secrets file {} is not valid: {what}. It must be a table of name = value.",
            path.display()
        ))
    };
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "JSON error at line {}, column {}",
                e.line(),
                e.column()
            ))
        })?
    } else {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            bad(match e.span() {
                Some(span) => format!("TOML error at byte {}", span.start),
                None => "TOML error".to_string(),
            })
        })?;
        serde_json::to_value(table).map_err(|_| bad("unrepresentable TOML value".into()))?
    };
    let serde_json::Value::Object(map) = value else {
        return Err(bad("the top level is not a table".into()));
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, SecretString::from(s))
        })
        .collect())
}

impl SecretSource for FileSource {
    fn get(&self, name: &str) -> Result<Option<SecretString>> {
        Ok(self.values.get(name).cloned())
    }
    fn describe(&self) -> String {
        format!("secrets file {}", self.path.display())
    }
}
