//! Prefect 1's local secrets, where a Prefect 1 agent found them: environment variables
//! `PREFECT__CONTEXT__SECRETS__<NAME>` and the `[context.secrets]` table of Prefect's config files,
//! read the way `prefect.configuration` (1.4.1) reads them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use flowstore_core::secret::{SecretSource, SecretString};
use flowstore_core::{Error as CoreError, Result};
use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::json::zeroize_value;
use crate::pyliteral::string_to_type;

/// The variable that moves Prefect's user config file (default `~/.prefect/config.toml`).
pub const USER_CONFIG_ENV: &str = "PREFECT__USER_CONFIG_PATH";
/// The variable that moves Prefect's backend config file (default `~/.prefect/backend.toml`).
pub const BACKEND_CONFIG_ENV: &str = "PREFECT__BACKEND_CONFIG_PATH";
/// The prefix of the environment variables that set a secret: `PREFECT__CONTEXT__SECRETS__NAME`.
pub const SECRET_ENV_PREFIX: &str = "PREFECT__CONTEXT__SECRETS__";

const DEFAULT_USER_CONFIG: &str = "~/.prefect/config.toml";
const DEFAULT_BACKEND_CONFIG: &str = "~/.prefect/backend.toml";

/// Where the variables come from.
#[derive(Clone)]
enum Environment {
    /// The process environment, read at every lookup.
    Process,
    /// A fixed set of variables (a Prefect process started with exactly these).
    Fixed(BTreeMap<String, String>),
}

impl Environment {
    fn var(&self, name: &str) -> Option<String> {
        match self {
            Environment::Process => std::env::var(name).ok(),
            Environment::Fixed(vars) => vars.get(name).cloned(),
        }
    }

    fn vars(&self) -> Vec<(String, String)> {
        match self {
            Environment::Process => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            Environment::Fixed(vars) => vars.clone().into_iter().collect(),
        }
    }
}

/// Prefect 1's local secrets (`prefect.context.secrets`), as a Prefect 1.4 agent on this machine
/// would see them, so an agent migrated to flowstore finds the same secrets:
///
/// 1. environment variables `PREFECT__CONTEXT__SECRETS__<NAME>` (also spelled
///    `PREFECT__context__secrets__<NAME>`; the secret's name keeps its case). `__` inside the name
///    nests: `PREFECT__CONTEXT__SECRETS__AWS_CREDENTIALS__ACCESS_KEY` sets the `ACCESS_KEY` key of
///    the secret `AWS_CREDENTIALS`;
/// 2. the `[context.secrets]` table of Prefect's backend config file (`PREFECT__BACKEND_CONFIG_PATH`,
///    default `~/.prefect/backend.toml`);
/// 3. the `[context.secrets]` table of Prefect's user config file (`PREFECT__USER_CONFIG_PATH`,
///    default `~/.prefect/config.toml`).
///
/// Earlier wins, key by key, as Prefect merges them. Values are read as Prefect reads them:
/// `$VAR`, `${VAR}` and a leading `~` are expanded from the environment, then the text is typed
/// like Prefect's `string_to_type` (`'quoted'` → `quoted`, `"{'ACCESS_KEY': 'a'}"` → a table;
/// environment values go through this twice, as in Prefect). A string secret is its text; a table,
/// list, number or boolean is its JSON text (so [`resolve_json`](crate::resolve_json) reads a
/// credentials table); a secret set to Python's `None` counts as not set. Not copied from Prefect:
/// references to other config keys (`${section.key}`) are not followed, `~user` is not expanded.
///
/// Files are read at every lookup; a missing file is skipped. A file that cannot be read or is not
/// valid TOML is an error naming the file (never quoting it).
///
/// ```
/// use flowstore_secrets::{PrefectContextSource, SecretSource, ExposeSecret};
/// let source = PrefectContextSource::from_vars([
///     ("PREFECT__CONTEXT__SECRETS__GITHUB_ACCESS_TOKEN", "ghp_example"),
///     ("PREFECT__USER_CONFIG_PATH", "/nonexistent/config.toml"),
/// ]);
/// let token = source.get("GITHUB_ACCESS_TOKEN").unwrap().unwrap();
/// assert_eq!(token.expose_secret(), "ghp_example");
/// ```
#[derive(Clone)]
pub struct PrefectContextSource {
    env: Environment,
    /// Config files, lowest precedence first (user, then backend).
    files: Vec<PathBuf>,
}

impl std::fmt::Debug for PrefectContextSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env = match &self.env {
            Environment::Process => "process".to_string(),
            Environment::Fixed(vars) => format!("{} fixed variables", vars.len()),
        };
        f.debug_struct("PrefectContextSource")
            .field("environment", &env)
            .field("files", &self.files)
            .finish()
    }
}

impl PrefectContextSource {
    /// The process environment (read at every lookup) and the config files it names now.
    pub fn from_env() -> Self {
        Self::with_environment(Environment::Process)
    }

    /// A fixed environment: what a Prefect process started with exactly these variables would
    /// see (`HOME` is where `~` points; with no `HOME`, this process's home directory).
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self::with_environment(Environment::Fixed(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ))
    }

    fn with_environment(env: Environment) -> Self {
        let path = |var: &str, default: &str| {
            let raw = env.var(var).unwrap_or_else(|| default.to_string());
            let expanded = match interpolate(&env, &raw) {
                Some(Value::String(s)) => s,
                _ => raw,
            };
            PathBuf::from(expanded)
        };
        let files = vec![
            path(USER_CONFIG_ENV, DEFAULT_USER_CONFIG),
            path(BACKEND_CONFIG_ENV, DEFAULT_BACKEND_CONFIG),
        ];
        PrefectContextSource { env, files }
    }

    /// The config files whose `[context.secrets]` are read, lowest precedence first (the user
    /// config, then the backend config).
    pub fn config_files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Prefect's `context.secrets`: the files merged, then the environment variables applied.
    fn secrets(&self) -> Result<Map<String, Value>> {
        let mut tree = Map::new();
        for file in &self.files {
            if !file.is_file() {
                continue;
            }
            let mut secrets = read_secrets_table(file)?;
            typed_strings(&self.env, &mut secrets);
            merge(&mut tree, secrets);
        }
        for (name, value) in self.env.vars() {
            let Some(option) = name.strip_prefix("PREFECT__") else {
                continue;
            };
            if !option.to_ascii_uppercase().starts_with("CONTEXT__SECRETS") {
                continue;
            }
            // Prefect lowercases `CONTEXT__SECRETS` (every occurrence) and keeps the rest's case.
            let option = option.replace("CONTEXT__SECRETS", "context__secrets");
            let path: Vec<&str> = option.split("__").collect();
            if path.len() < 3 || path[0] != "context" || path[1] != "secrets" {
                continue;
            }
            let once = typed(&self.env, Value::String(value));
            set_path(&mut tree, &path[2..], typed(&self.env, once));
        }
        Ok(tree)
    }
}

/// The `[context.secrets]` table of a Prefect config file (empty when it has none).
fn read_secrets_table(file: &std::path::Path) -> Result<Value> {
    let mut text = std::fs::read_to_string(file).map_err(|e| {
        CoreError::io(
            format!("reading Prefect config file {} for secrets", file.display()),
            e,
        )
    })?;
    let parsed = toml::from_str::<toml::Table>(&text);
    text.zeroize();
    let table = parsed.map_err(|e| {
        CoreError::config(format!(
            "Prefect config file {} is not valid TOML{}; fix it or point {USER_CONFIG_ENV} / \
             {BACKEND_CONFIG_ENV} elsewhere",
            file.display(),
            e.span()
                .map(|s| format!(" (error at byte {})", s.start))
                .unwrap_or_default()
        ))
    })?;
    let mut value = serde_json::to_value(table).map_err(|_| {
        CoreError::config(format!(
            "Prefect config file {} holds a value with no JSON form",
            file.display()
        ))
    })?;
    let secrets = value
        .get_mut("context")
        .and_then(|c| c.get_mut("secrets"))
        .map(Value::take)
        .unwrap_or_default();
    zeroize_value(&mut value);
    Ok(secrets)
}

/// Prefect's treatment of a config value: strings are expanded and typed, others kept.
fn typed(env: &Environment, value: Value) -> Value {
    match value {
        Value::String(s) => match interpolate(env, &s) {
            Some(Value::String(s)) => string_to_type(&s),
            Some(other) => other,
            None => Value::Null,
        },
        other => other,
    }
}

/// Types every string leaf of nested tables (not inside lists), as Prefect's flattened config.
fn typed_strings(env: &Environment, value: &mut Value) {
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| typed_strings(env, v)),
        Value::String(_) => *value = typed(env, value.take()),
        _ => {}
    }
}

/// Prefect's `merge_dicts`: tables merge key by key, anything else is replaced.
fn merge(into: &mut Map<String, Value>, from: Value) {
    let Value::Object(from) = from else {
        return;
    };
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(existing)), v @ Value::Object(_)) => merge(existing, v),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn set_path(tree: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for p in parents {
        let entry = node
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        node = entry.as_object_mut().expect("made an object above");
    }
    node.insert(last.to_string(), value);
}

/// Prefect's `interpolate_env_vars`: `$VAR`/`${VAR}` and a leading `~` expanded until nothing
/// changes (at most 10 rounds; `None` if it never settles), typed when it took more than one.
fn interpolate(env: &Environment, text: &str) -> Option<Value> {
    let mut current = text.to_string();
    for round in 0..10 {
        let next = expand_user(env, &expand_vars(env, &current));
        if next == current {
            return Some(if round > 1 {
                string_to_type(&next)
            } else {
                Value::String(next)
            });
        }
        current = next;
    }
    None
}

/// Python's `os.path.expandvars`: `$NAME` and `${NAME}` of set variables are replaced, the rest
/// left as it is.
fn expand_vars(env: &Environment, text: &str) -> String {
    if !text.contains('$') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) => (&body[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match (len > 0 && !name.is_empty())
            .then(|| env.var(name))
            .flatten()
        {
            Some(value) => {
                out.push_str(&value);
                rest = &after[len..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Python's `os.path.expanduser` for `~` and `~/…` (`~user` is left as it is).
fn expand_user(env: &Environment, text: &str) -> String {
    if text != "~" && !text.starts_with("~/") {
        return text.to_string();
    }
    let home = env
        .var("HOME")
        .or_else(|| dirs_home().map(|h| h.display().to_string()));
    match home {
        Some(home) => {
            let joined = format!("{}{}", home.trim_end_matches('/'), &text[1..]);
            if joined.is_empty() {
                "/".to_string()
            } else {
                joined
            }
        }
        None => text.to_string(),
    }
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

impl SecretSource for PrefectContextSource {
    /// Errors when a config file exists but cannot be read or parsed (naming the file).
    fn get(&self, name: &str) -> Result<Option<SecretString>> {
        let mut secrets = self.secrets()?;
        let found = match secrets.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(SecretString::from(s.clone())),
            Some(other) => Some(SecretString::from(other.to_string())),
        };
        secrets.values_mut().for_each(zeroize_value);
        Ok(found)
    }

    fn describe(&self) -> String {
        let files = self
            .files
            .iter()
            .rev()
            .map(|f| {
                let missing = if f.is_file() { "" } else { " (no such file)" };
                format!("[context.secrets] of {}{missing}", f.display())
            })
            .collect::<Vec<_>>()
            .join(", then ");
        format!(
            "Prefect 1 local secrets: environment variable {SECRET_ENV_PREFIX}<name>, then {files}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment::Fixed(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn expands_like_python() {
        let e = env(&[("A", "x"), ("HOME", "/home/u/"), ("NEST", "$A$A")]);
        assert_eq!(expand_vars(&e, "$A/${A}/$B/${B}/$/${"), "x/x/$B/${B}/$/${");
        assert_eq!(expand_vars(&e, "pa$$word"), "pa$$word");
        assert_eq!(expand_user(&e, "~/f"), "/home/u/f");
        assert_eq!(expand_user(&e, "~"), "/home/u");
        assert_eq!(expand_user(&e, "~bob/f"), "~bob/f");
        assert_eq!(expand_user(&e, "a~"), "a~");
        // Two rounds of changes: typed inside, as Prefect does.
        assert_eq!(interpolate(&e, "$NEST"), Some(Value::String("xx".into())));
        let loops = env(&[("L", "$L$L")]);
        assert_eq!(interpolate(&loops, "$L"), None);
    }
}
