//! `Local` storage: flows as files in a directory on this machine.
//!
//! Serialized flows are written at `add_flow` to `{directory}/{slug(name)}/{slug(timestamp)}`,
//! create-only and crash-safe. In script mode the storage records the script's `path` and reads it
//! at every fetch. A location read from a reference never escapes `directory`.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use flowstore_core::async_trait;
use flowstore_core::envelope::peek_header;
use flowstore_core::raw::FlowIndex;
use flowstore_core::{
    key, Error, FetchedFlow, FlowInput, OpenContext, Result, Storage, StorageReference,
    StoredVersion,
};
use serde::{Deserialize, Serialize};

use flowstore_core::raw::atomic;
use flowstore_core::raw::sink::FlowFileSink;

/// The reference type name.
pub const TYPE_NAME: &str = "Local";

/// Environment variable that moves flowstore's home (flows go to `$FLOWSTORE_HOME/flows`).
pub const HOME_ENV: &str = "FLOWSTORE_HOME";

/// How many fresh keys are tried when a key is already taken (another process, same microsecond).
const KEY_ATTEMPTS: usize = 16;

/// The default flow directory: `$FLOWSTORE_HOME/flows`, else `~/.flowstore/flows`.
pub fn default_directory() -> PathBuf {
    match std::env::var_os(HOME_ENV) {
        Some(home) if !home.is_empty() => PathBuf::from(home).join("flows"),
        _ => dirs::home_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".flowstore")
            .join("flows"),
    }
}

/// The backend fields of a `Local` reference (Prefect 1's names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalFields {
    /// The flow directory (`~` is expanded when opened).
    #[serde(default)]
    pub directory: Option<String>,
    /// The script's path in script mode.
    #[serde(default)]
    pub path: Option<String>,
    /// Script mode.
    #[serde(default)]
    pub stored_as_script: bool,
}

/// Flows stored as files on this machine.
///
/// ```
/// # tokio_test_block(async {
/// use flowstore_core::{envelope::seal, Storage};
/// use flowstore_local::Local;
/// let dir = tempfile::tempdir().unwrap();
/// let mut storage = Local::new().directory(dir.path());
/// let app = flowstore_core::app_info!();
/// let location = storage.add_flow(seal("My ETL Flow", &["extract", "load"], &app).unwrap().into()).await.unwrap();
/// assert!(location.contains("my-etl-flow/"));
/// let tasks: Vec<String> = storage.get_flow("My ETL Flow").await.unwrap().decode(&app).unwrap();
/// assert_eq!(tasks, ["extract", "load"]);
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Runtime::new().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Local {
    directory: PathBuf,
    path: Option<PathBuf>,
    stored_as_script: bool,
    durable: bool,
    /// Files and directories written since the last `build`, made durable there.
    unsynced: std::collections::BTreeSet<PathBuf>,
    index: FlowIndex,
}

impl Default for Local {
    fn default() -> Self {
        Self::new()
    }
}

impl Local {
    /// Serialized-mode storage in [`default_directory`].
    pub fn new() -> Self {
        Local {
            directory: default_directory(),
            path: None,
            stored_as_script: false,
            durable: true,
            unsynced: Default::default(),
            index: FlowIndex::default(),
        }
    }

    /// Script-mode storage for the script at `path` (read again at every fetch).
    pub fn script(path: impl Into<PathBuf>) -> Self {
        let mut local = Self::new();
        local.path = Some(absolute(&path.into()));
        local.stored_as_script = true;
        local
    }

    /// Sets the flow directory.
    pub fn directory(mut self, directory: impl AsRef<Path>) -> Self {
        self.directory = absolute(&expand_home(directory.as_ref()));
        self
    }

    /// Whether `build` makes the flows added since the last `build` durable (default true): one
    /// `syncfs` on Linux, else an fsync of every file and directory written. A registration is
    /// durable once `build` returns. A power loss before that can lose or truncate a flow (a
    /// truncated one is refused by its digest, never loaded); a process crash never leaves a
    /// partial flow either way, since flows are written under a temporary name and linked whole.
    pub fn durable(mut self, on: bool) -> Self {
        self.durable = on;
        self
    }

    /// Adds a label agents must carry.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.index.labels.push(label.into());
        self
    }

    /// Turns the default hostname label on or off (on by default).
    pub fn add_default_labels(mut self, on: bool) -> Self {
        self.index.add_default_labels = on;
        self
    }

    /// Declares a secret an agent must resolve before fetching.
    pub fn secret(mut self, name: impl Into<String>) -> Self {
        self.index.secrets.push(name.into());
        self
    }

    /// The flow directory.
    pub fn flow_directory(&self) -> &Path {
        &self.directory
    }

    /// Opens a `Local` reference (Prefect 1's included).
    ///
    /// Errors with [`Error::InvalidReference`] for malformed fields and [`Error::Config`] for script
    /// mode without a `path`.
    pub fn from_reference(reference: &StorageReference, _ctx: &OpenContext) -> Result<Self> {
        let fields: LocalFields = reference.backend_fields()?;
        if fields.stored_as_script && fields.path.is_none() {
            return Err(missing_path());
        }
        let directory = fields
            .directory
            .map(|d| absolute(&expand_home(Path::new(&d))))
            .unwrap_or_else(default_directory);
        Ok(Local {
            directory,
            path: fields.path.map(PathBuf::from),
            stored_as_script: fields.stored_as_script,
            durable: true,
            unsynced: Default::default(),
            index: FlowIndex::from_reference(reference),
        })
    }

    /// Opens `file:///path/to/dir` as Local storage in that directory (script mode for the
    /// context's `script_path`).
    ///
    /// Errors with [`Error::Config`] for a URL that is not `file://` with an absolute path.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<Self> {
        let path = url
            .strip_prefix("file://")
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| {
                Error::config(format!(
                    "Local storage URL \"{url}\" must look like file:///absolute/directory"
                ))
            })?;
        let local = match &ctx.script_path {
            Some(script) => Local::script(script),
            None => Local::new(),
        };
        Ok(local.directory(
            percent_encoding::percent_decode_str(path)
                .decode_utf8_lossy()
                .into_owned(),
        ))
    }

    fn validate(&self) -> Result<()> {
        if self.stored_as_script && self.path.is_none() {
            return Err(missing_path());
        }
        Ok(())
    }

    /// Resolves a serialized flow's location to a path inside the directory, refusing anything
    /// that escapes it (`..`, absolute paths elsewhere, symlinks pointing out).
    fn resolve_inside(&self, name: &str, location: &str) -> Result<PathBuf> {
        let outside = || Error::OutsideStorage {
            flow: name.to_string(),
            location: location.to_string(),
            root: self.directory.display().to_string(),
        };
        let candidate = Path::new(location);
        if candidate
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(outside());
        }
        let joined = if candidate.is_absolute() {
            candidate.to_path_buf()
        } else {
            self.directory.join(candidate)
        };
        let root = self.directory.canonicalize().map_err(|e| {
            Error::io(
                format!(
                    "Flow \"{name}\": the Local flow directory {} cannot be read",
                    self.directory.display()
                ),
                e,
            )
        })?;
        let real = joined
            .canonicalize()
            .map_err(|e| Error::io(format!("Flow \"{name}\": reading {}", joined.display()), e))?;
        if !real.starts_with(&root) || real == root {
            return Err(outside());
        }
        Ok(real)
    }

    async fn write_serialized(&self, name: &str, bytes: Bytes) -> Result<String> {
        let directory = self.directory.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let mut last_err = None;
            for _ in 0..KEY_ATTEMPTS {
                let dest = directory.join(key::new_flow_key(&name));
                match atomic::write_new(&dest, &bytes, false) {
                    Ok(()) => {
                        tracing::info!(flow = %name, path = %dest.display(), "stored flow");
                        return Ok(dest.display().to_string());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
                    Err(e) => {
                        return Err(Error::io(
                            format!("Flow \"{name}\": writing {}", dest.display()),
                            e,
                        ))
                    }
                }
            }
            Err(Error::io(
                format!("Flow \"{name}\": every fresh key was taken after {KEY_ATTEMPTS} attempts"),
                last_err.unwrap_or_else(|| std::io::Error::other("key collision")),
            ))
        })
        .await
        .map_err(|e| Error::backend(TYPE_NAME, format!("writer task failed: {e}")))?
    }

    fn read_script(&self, name: &str, location: &str) -> Result<(Bytes, PathBuf)> {
        let path = PathBuf::from(location);
        let source = std::fs::read(&path).map_err(|e| {
            Error::io(
                format!("Flow \"{name}\": reading its script {}", path.display()),
                e,
            )
        })?;
        Ok((Bytes::from(source), path))
    }
}

/// Makes `paths` (written under `directory`) durable: one `syncfs` on Linux, else an fsync each.
fn sync_all(directory: &Path, paths: &std::collections::BTreeSet<PathBuf>) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let _ = paths;
        atomic::sync_filesystem(directory).map_err(|e| {
            Error::io(
                format!("syncing the filesystem of {}", directory.display()),
                e,
            )
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = directory;
        for p in paths {
            atomic::sync_path(p).map_err(|e| Error::io(format!("syncing {}", p.display()), e))?;
        }
        Ok(())
    }
}

/// The largest flow `get_flow` loads into memory; larger ones are fetched with `get_flow_to_file`.
pub const MAX_IN_MEMORY: u64 = 2 << 30;

/// Refuses anything but a regular file of a size that fits in memory.
fn check_readable_file(name: &str, location: &str, path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("Flow \"{name}\": reading {}", path.display()), e))?;
    let corrupt = |reason: String| Error::FlowCorrupt {
        flow: name.to_string(),
        location: location.to_string(),
        reason,
    };
    if !meta.is_file() {
        return Err(corrupt("it is not a regular file".to_string()));
    }
    if meta.len() > MAX_IN_MEMORY {
        return Err(Error::config(format!(
            "Flow \"{name}\" at {location} is {} bytes, more than the {MAX_IN_MEMORY} get_flow loads into memory; \
             fetch it to a file instead (get_flow_to_file, or `flowstore fetch -o FILE`)",
            meta.len()
        )));
    }
    Ok(())
}

fn missing_path() -> Error {
    Error::config("A `path` must be provided to show where flow `.py` file is stored.")
}

fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => dirs::home_dir()
            .map(|h| h.join(rest))
            .unwrap_or_else(|| path.to_path_buf()),
        Err(_) => path.to_path_buf(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[async_trait]
impl Storage for Local {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn index(&self) -> &FlowIndex {
        &self.index
    }

    fn index_mut(&mut self) -> &mut FlowIndex {
        &mut self.index
    }

    fn capabilities(&self) -> flowstore_core::Capabilities {
        let script = self.stored_as_script;
        flowstore_core::Capabilities {
            write: true,
            many_flows: true,
            serialized: !script,
            script,
            list_versions: !script,
            stream_to_file: true,
        }
    }

    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        self.validate()?;
        self.index.ensure_new(flow.name())?;
        if self.stored_as_script {
            let path = self.path.as_ref().expect("validated").display().to_string();
            self.index.insert(flow.name(), path.clone(), None)?;
            return Ok(path);
        }
        let FlowInput::Serialized(sealed) = flow else {
            return Err(Error::config(format!(
                "Flow \"{}\" is a script flow, but this Local storage stores serialized flows; \
                 use Local::script(path) for script flows",
                flow.name()
            )));
        };
        let digest = sealed.digest();
        let location = self.write_serialized(&sealed.name, sealed.bytes).await?;
        let path = Path::new(&location);
        self.unsynced.insert(path.to_path_buf());
        if let Some(dir) = path.parent() {
            self.unsynced.insert(dir.to_path_buf());
            if let Some(root) = dir.parent() {
                self.unsynced.insert(root.to_path_buf());
            }
        }
        self.index
            .insert(&sealed.name, location.clone(), Some(digest))?;
        Ok(location)
    }

    /// Makes every flow added since the last `build` durable (fsyncs their directories).
    async fn persist(&mut self) -> Result<()> {
        self.validate()?;
        let paths = std::mem::take(&mut self.unsynced);
        if self.durable && !paths.is_empty() {
            let directory = self.directory.clone();
            tokio::task::spawn_blocking(move || sync_all(&directory, &paths))
                .await
                .map_err(|e| Error::backend(TYPE_NAME, format!("sync task failed: {e}")))??;
        }
        Ok(())
    }

    async fn get_flow(&self, name: &str) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        if self.stored_as_script {
            check_readable_file(name, &location, Path::new(&location))?;
            let (source, path) = self.read_script(name, &location)?;
            return self
                .index
                .open_script(name, &location, None, source, Some(path));
        }
        let path = self.resolve_inside(name, &location)?;
        check_readable_file(name, &location, &path)?;
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io(format!("Flow \"{name}\": reading {}", path.display()), e))?;
        tracing::debug!(flow = name, path = %path.display(), "read flow");
        self.index
            .open_serialized(name, &location, None, Bytes::from(bytes))
    }

    fn reference(&self) -> Result<StorageReference> {
        let fields = LocalFields {
            directory: Some(self.directory.display().to_string()),
            path: self.path.as_ref().map(|p| p.display().to_string()),
            stored_as_script: self.stored_as_script,
        };
        let mut reference = StorageReference::new(TYPE_NAME, &fields)?;
        self.index.fill_reference(&mut reference, self.labels());
        Ok(reference)
    }

    fn default_labels(&self) -> Vec<String> {
        hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .into_iter()
            .collect()
    }

    async fn list_versions(&self, flow: Option<&str>) -> Result<Vec<StoredVersion>> {
        let directory = self.directory.clone();
        let slug = flow.map(key::flow_slug);
        tokio::task::spawn_blocking(move || list_dir(&directory, slug.as_deref()))
            .await
            .map_err(|e| Error::backend(TYPE_NAME, format!("listing task failed: {e}")))?
    }

    /// Streams the flow to `dest` (never replacing an existing file): the envelope or script is
    /// verified while it is copied, and `dest` appears only once everything checked out.
    async fn get_flow_to_file(&self, name: &str, dest: &Path) -> Result<FetchedFlow> {
        let location = self.index.location(name)?.to_string();
        let source = if self.stored_as_script {
            PathBuf::from(&location)
        } else {
            self.resolve_inside(name, &location)?
        };
        let this = self.clone();
        let (name, dest) = (name.to_string(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || this.stream_to_file(&name, &location, &source, &dest))
            .await
            .map_err(|e| Error::backend(TYPE_NAME, format!("copy task failed: {e}")))?
    }
}

impl Local {
    fn stream_to_file(
        &self,
        name: &str,
        location: &str,
        source: &Path,
        dest: &Path,
    ) -> Result<FetchedFlow> {
        use std::io::Read;
        let mut file = std::fs::File::open(source)
            .map_err(|e| Error::io(format!("Flow \"{name}\": reading {}", source.display()), e))?;
        let mut sink =
            FlowFileSink::create(&self.index, name, location, dest, !self.stored_as_script)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| {
                Error::io(format!("Flow \"{name}\": reading {}", source.display()), e)
            })?;
            if n == 0 {
                return sink.finish(None);
            }
            sink.push(&buf[..n])?;
        }
    }
}

/// Lists `{directory}/{slug}/{version}` files, newest first; skips temp files (`.`-prefixed).
fn list_dir(directory: &Path, slug: Option<&str>) -> Result<Vec<StoredVersion>> {
    let read_dir = |p: &Path| -> Result<Vec<std::fs::DirEntry>> {
        match std::fs::read_dir(p) {
            Ok(rd) => Ok(rd.filter_map(|e| e.ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(format!("listing {}", p.display()), e)),
        }
    };
    let slugs: Vec<String> = match slug {
        Some(s) => vec![s.to_string()],
        None => read_dir(directory)?
            .into_iter()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect(),
    };
    let mut versions = Vec::new();
    for slug in slugs {
        for entry in read_dir(&directory.join(&slug))? {
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            if file_name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let meta = entry.metadata().ok();
            versions.push(StoredVersion {
                flow: read_head(&entry.path())
                    .and_then(|h| peek_header(&h))
                    .map(|h| h.flow),
                slug: slug.clone(),
                location: entry.path().display().to_string(),
                size: meta.as_ref().map(|m| m.len()),
                stored_at: meta
                    .and_then(|m| m.modified().ok())
                    .map(chrono::DateTime::<chrono::Utc>::from),
            });
        }
    }
    versions.sort_by(|a, b| {
        let version = |v: &StoredVersion| v.location.rsplit('/').next().unwrap_or("").to_string();
        version(b)
            .cmp(&version(a))
            .then_with(|| a.slug.cmp(&b.slug))
    });
    Ok(versions)
}

fn read_head(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 4096];
    let mut f = std::fs::File::open(path).ok()?;
    let n = f.read(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}
