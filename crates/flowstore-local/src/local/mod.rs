//! `Local` storage: flows as files in a directory on this machine.
//!
//! Serialized flows are written at `add_flow` to `{directory}/{slug(name)}/{slug(timestamp)}`,
//! create-only and crash-safe. In script mode the storage records the script's `path` and reads it
//! at every fetch. A location read from a reference never escapes `directory`, except the one
//! file a reference's own `path` names (Prefect 1's `Local(path=…)` stores the flow there). A
//! script location that is a Python module path (`flows.etl`) is found as Python imports it.
//!
//! A [`LocalBuilder`] makes a [`Local`]: typed setters, [`LocalBuilder::with_config`] pairs, a
//! `file://` URL ([`LocalBuilder::from_url`]) or the environment ([`LocalBuilder::from_env`]), all
//! ending in the same [`LocalConfig`].

#[cfg(target_os = "linux")]
mod beneath;
mod blobs;
mod builder;
mod config;
mod pypath;

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use flowstore_core::async_trait;
use flowstore_core::envelope::{peek_header, SealedFlow};
use flowstore_core::raw::config::BackendConfig;
use flowstore_core::raw::FlowIndex;
use flowstore_core::{
    key, Error, FetchedFlow, FlowInput, OpenContext, Result, Storage, StorageReference,
    StoredVersion,
};

use flowstore_core::raw::atomic;
use flowstore_core::raw::sink::FlowFileSink;

pub use builder::LocalBuilder;
pub use config::LocalConfig;

/// The reference type name.
pub const TYPE_NAME: &str = "Local";

/// Environment variable that moves flowstore's home (flows go to `$FLOWSTORE_HOME/flows`); read
/// by [`default_directory`] and [`LocalBuilder::from_env`].
pub const HOME_ENV: &str = "FLOWSTORE_HOME";

/// How many fresh keys are tried when a key is already taken (another process, same microsecond).
const KEY_ATTEMPTS: usize = 16;

/// The default flow directory as the `flowstore` command uses it: `$FLOWSTORE_HOME/flows`, else
/// `~/.flowstore/flows`.
///
/// [`LocalBuilder::from_env`] starts from the same directory; [`Local::builder`] does not read
/// the environment and uses `~/.flowstore/flows` unless given a directory.
pub fn default_directory() -> PathBuf {
    match std::env::var_os(HOME_ENV) {
        Some(home) if !home.is_empty() => PathBuf::from(home).join("flows"),
        _ => home_default_directory(),
    }
}

/// `~/.flowstore/flows` (the current directory's `.flowstore/flows` without a home directory).
fn home_default_directory() -> PathBuf {
    dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".flowstore")
        .join("flows")
}

/// Flows stored as files on this machine (made by [`LocalBuilder`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> flowstore_core::Result<()> {
/// use flowstore_core::{envelope::seal, Storage};
/// use flowstore_local::Local;
/// let dir = tempfile::tempdir().unwrap();
/// let mut storage = Local::builder().directory(dir.path()).build()?;
/// let app = flowstore_core::app_info!();
/// let location = storage.add_flow(seal("My ETL Flow", &["extract", "load"], &app)?.into()).await?;
/// assert!(location.contains("my-etl-flow/"));
/// let tasks: Vec<String> = storage.get_flow("My ETL Flow").await?.decode(&app)?;
/// assert_eq!(tasks, ["extract", "load"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Local {
    /// The resolved configuration (absolute directory and path), as the reference records it.
    config: LocalConfig,
    directory: PathBuf,
    path: Option<PathBuf>,
    durable: bool,
    /// Files and directories written since the last `persist`, made durable there.
    unsynced: std::collections::BTreeSet<PathBuf>,
    index: FlowIndex,
    /// `directory` with every symbolic link resolved, once a fetch has resolved it (one
    /// `realpath` per storage instead of one per fetch).
    real_directory: std::sync::Arc<std::sync::OnceLock<RealDirectory>>,
}

/// The flow directory with every symbolic link resolved, and (Linux 5.6+) held open to open
/// flow files below it in one checked call.
#[derive(Debug)]
struct RealDirectory {
    path: PathBuf,
    #[cfg(target_os = "linux")]
    beneath: Option<beneath::Beneath>,
}

impl Local {
    /// A builder for serialized-mode storage in `~/.flowstore/flows` (see [`LocalBuilder`]).
    pub fn builder() -> LocalBuilder {
        LocalBuilder::new()
    }

    /// The configuration, resolved: an absolute `directory` and `path` (a script `path` that is a
    /// Python module path, like `flows.etl`, stays as it is), as [`Storage::reference`] records it.
    pub fn config(&self) -> &LocalConfig {
        &self.config
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
        LocalBuilder {
            config: LocalConfig::from_reference(reference)?,
            index: FlowIndex::from_reference(reference),
            durable: true,
        }
        .build()
    }

    /// Opens `file:///path/to/dir?option=value…` ([`LocalBuilder::from_url`]), in script mode
    /// for the context's `script_path`, then applies the context's `options`.
    ///
    /// Errors as [`LocalBuilder::from_url`] and [`LocalBuilder::build`] do.
    pub fn from_url(url: &str, ctx: &OpenContext) -> Result<Self> {
        let mut builder = LocalBuilder::from_url(url)?;
        if let Some(script) = &ctx.script_path {
            builder = builder.script(script);
        }
        builder
            .with_configs(ctx.options.iter().map(|(k, v)| (k, v)))?
            .build()
    }

    /// The flow directory with every link resolved (a `realpath` at the storage's first fetch).
    ///
    /// Errors: [`Error::NotFound`] (naming flow `name` and the directory) when it is missing.
    fn real_directory(&self, name: &str) -> Result<&RealDirectory> {
        if let Some(real) = self.real_directory.get() {
            return Ok(real);
        }
        let path = self
            .directory
            .canonicalize()
            .map_err(|e| read_error(Missing::Directory, name, &self.directory, e))?;
        Ok(self.real_directory.get_or_init(|| RealDirectory {
            #[cfg(target_os = "linux")]
            beneath: beneath::Beneath::open(&path),
            path,
        }))
    }

    /// Resolves a serialized flow's location to a path inside the directory, refusing anything
    /// that escapes it (`..`, absolute paths elsewhere, symlinks pointing out). With
    /// [`LastName::OpenedNoFollow`] the file's own name is not checked here: the caller opens it
    /// with [`open_flow_file`], which refuses a link there.
    fn resolve_inside(&self, name: &str, location: &str, last: LastName) -> Result<PathBuf> {
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
        let root = &self.real_directory(name)?.path;
        if let Some(real) = plain_path_below(&self.directory, root, &joined, last) {
            return Ok(real);
        }
        let real = joined
            .canonicalize()
            .map_err(|e| read_error(Missing::File, name, &joined, e))?;
        if !real.starts_with(root) || real == *root {
            return Err(outside());
        }
        Ok(real)
    }

    /// Writes a sealed flow create-only under a fresh key of its name; returns its path.
    async fn write_serialized(&self, sealed: SealedFlow) -> Result<String> {
        let (name, size) = (sealed.name.clone(), sealed.len());
        self.write_fresh(name, size, move |dest| match sealed.as_bytes() {
            Some(bytes) => atomic::write_new(dest, bytes, false),
            // Sealed from a large file: streamed from it, checked as it is read.
            None => {
                let mut reader = std::io::BufReader::with_capacity(1 << 20, sealed.reader()?);
                atomic::write_new_from(dest, &mut reader, false).map(|_| ())
            }
        })
        .await
    }

    /// Runs `write` (a create-only write to the path it is given) on a fresh key of flow
    /// `name`, taking another key while one is already taken; returns the path written. A
    /// write of at most `INLINE_IO_MAX` bytes (`size`) runs on the calling task: a few
    /// page-cache writes cost less than a round trip through the blocking pool.
    async fn write_fresh<F>(&self, name: String, size: u64, write: F) -> Result<String>
    where
        F: Fn(&Path) -> std::io::Result<()> + Send + 'static,
    {
        let directory = self.directory.clone();
        if size <= INLINE_IO_MAX {
            return write_fresh_key(&directory, &name, write);
        }
        tokio::task::spawn_blocking(move || write_fresh_key(&directory, &name, write))
            .await
            .map_err(|e| Error::backend(TYPE_NAME, format!("writer task failed: {e}")))?
    }
}

/// The loop of [`Local::write_fresh`]: fresh keys under `directory` until `write` succeeds.
fn write_fresh_key<F>(directory: &Path, name: &str, write: F) -> Result<String>
where
    F: Fn(&Path) -> std::io::Result<()>,
{
    let mut last_err = None;
    for _ in 0..KEY_ATTEMPTS {
        let dest = directory.join(key::new_flow_key(name));
        match write(&dest) {
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
}

impl Local {
    /// Remembers a written flow file (and its directories) for `persist` to make durable.
    fn note_written(&mut self, path: &Path) {
        self.unsynced.insert(path.to_path_buf());
        if let Some(dir) = path.parent() {
            self.unsynced.insert(dir.to_path_buf());
            if let Some(root) = dir.parent() {
                self.unsynced.insert(root.to_path_buf());
            }
        }
    }

    fn read_script(&self, name: &str, path: &Path) -> Result<(Bytes, PathBuf)> {
        let source = std::fs::read(path).map_err(|e| read_error(Missing::Script, name, path, e))?;
        Ok((Bytes::from(source), path.to_path_buf()))
    }

    /// The file of a serialized flow: exactly the storage's own `path` when the location names it
    /// (Prefect 1's `Local(path=…)` stores the flow at that path, wherever it is: the user chose
    /// it), else a file inside the directory ([`Local::resolve_inside`]).
    ///
    /// Errors as [`Local::resolve_inside`] does.
    fn serialized_file(&self, name: &str, location: &str, last: LastName) -> Result<PathBuf> {
        if let Some(explicit) = &self.path {
            if builder::resolve_path(location) == *explicit {
                return Ok(explicit.clone());
            }
        }
        self.resolve_inside(name, location, last)
    }

    /// Opens a serialized flow's file for [`read_open_flow_file`]: found as
    /// [`Local::serialized_file`] finds it, its last name checked by the open itself. When that
    /// name is a symbolic link (not what flowstore writes), the path is resolved fully (a link
    /// out of the directory is refused, as ever) and what it names is opened. Returns the path
    /// opened, for messages.
    fn open_serialized_file(&self, name: &str, location: &str) -> Result<(PathBuf, File)> {
        #[cfg(target_os = "linux")]
        if let Some(opened) = self.open_beneath(name, location) {
            return Ok(opened);
        }
        let path = self.serialized_file(name, location, LastName::OpenedNoFollow)?;
        match open_flow_file(&path) {
            Ok(file) => Ok((path, file)),
            Err(e) if names_a_link(&e) => {
                let real = match &self.path {
                    Some(explicit) if *explicit == path => explicit
                        .canonicalize()
                        .map_err(|e| read_error(Missing::File, name, &path, e))?,
                    _ => self.resolve_inside(name, location, LastName::Checked)?,
                };
                let file =
                    open_flow_file(&real).map_err(|e| read_error(Missing::File, name, &real, e))?;
                Ok((real, file))
            }
            Err(e) => Err(read_error(Missing::File, name, &path, e)),
        }
    }
}

#[cfg(target_os = "linux")]
impl Local {
    /// A flow file inside the directory opened in one `openat2` call that refuses links and
    /// escapes ([`beneath::Beneath`]); `None` when that is not possible or fails for any reason
    /// (the explicit `path`, a location outside the directory, a link, a missing file, no
    /// `openat2`): the caller then takes the general path, which gives the right error.
    fn open_beneath(&self, name: &str, location: &str) -> Option<(PathBuf, File)> {
        if self.path.is_some() {
            return None;
        }
        let real = self.real_directory(name).ok()?;
        let beneath = real.beneath.as_ref()?;
        let candidate = Path::new(location);
        let relative = if candidate.is_absolute() {
            candidate.strip_prefix(&self.directory).ok()?
        } else {
            candidate
        };
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return None;
        }
        let file = beneath.open_file(relative).ok()?;
        Some((real.path.join(relative), file))
    }
}

/// Whether the last name of a flow file's path is checked for a symbolic link while the path
/// is resolved, or left to the open ([`open_flow_file`] refuses a link there on Unix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastName {
    /// `lstat`ed like the names before it.
    Checked,
    /// Opened with `O_NOFOLLOW` by the caller (on Unix; elsewhere it is checked).
    OpenedNoFollow,
}

/// `joined` resolved below the real directory `root` without `realpath`, when it is `directory`
/// followed by plain names none of which is a symbolic link (what flowstore writes): one
/// `lstat` per name after the directory (but the last with [`LastName::OpenedNoFollow`] on
/// Unix). `None` when that does not hold (a link, an absolute path elsewhere, a missing
/// directory or file): the caller resolves it fully.
fn plain_path_below(
    directory: &Path,
    root: &Path,
    joined: &Path,
    last: LastName,
) -> Option<PathBuf> {
    let rest = joined.strip_prefix(directory).ok()?;
    let count = rest.components().count();
    let skip_last = last == LastName::OpenedNoFollow && cfg!(unix);
    let mut real = root.to_path_buf();
    let mut names = 0;
    for component in rest.components() {
        let Component::Normal(part) = component else {
            return None;
        };
        real.push(part);
        names += 1;
        if skip_last && names == count {
            break;
        }
        if std::fs::symlink_metadata(&real)
            .ok()?
            .file_type()
            .is_symlink()
        {
            return None;
        }
    }
    (names > 0).then_some(real)
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

/// The file of a script flow at `location`: the file itself when there is one (relative to the
/// working directory); else, for a Python module path (`flows.etl`, `flows.etl:flow`), the file
/// Python's import would load, as a Prefect 1 agent imports it: `flows/etl.py` or
/// `flows/etl/__init__.py` under the working directory, then under each `PYTHONPATH` entry (the
/// `:attr` part is not needed: the flow is found by name in that file).
///
/// Errors with [`Error::NotFound`] for a module path found in none of those places, naming them
/// and what to do.
fn script_file(name: &str, location: &str) -> Result<PathBuf> {
    let path = Path::new(location);
    if path.is_file() || !pypath::is_module_path(location) {
        return Ok(path.to_path_buf());
    }
    let roots = pypath::search_roots();
    if let Some(file) = pypath::find_module(&roots, location) {
        tracing::debug!(flow = name, module = location, file = %file.display(), "found module");
        return Ok(file);
    }
    let module = location.split_once(':').map_or(location, |(m, _)| m);
    let rel = module.replace('.', "/");
    let places = roots
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::not_found(
        "module",
        location.to_string(),
        format!(
            "Flow \"{name}\": its script location `{location}` is a Python module path (Prefect 1 \
             imports it), and neither {rel}.py nor {rel}/__init__.py (with a package directory \
             for each dotted part) is under the working directory or a PYTHONPATH entry \
             (searched: {places}). Run the agent from the directory the module path is relative \
             to, add that directory to PYTHONPATH, or register the flow again with the script's \
             file path."
        ),
    ))
}

/// Flow files up to this size are read and written on the calling task: a page-cache read or
/// write of a few KiB costs less than handing it to the blocking pool and back. Larger ones go
/// to the pool.
const INLINE_IO_MAX: u64 = 256 * 1024;

/// Opens a stored flow file to read it: on Unix without following a symbolic link as its last
/// name (`O_NOFOLLOW`: the open fails, see [`names_a_link`]) and without waiting for a writer
/// if a FIFO was planted there (`O_NONBLOCK`, which changes nothing for a regular file).
fn open_flow_file(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// True when [`open_flow_file`] failed because the last name is a symbolic link.
fn names_a_link(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        // Linux and macOS answer ELOOP; FreeBSD and NetBSD EMLINK.
        matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EMLINK))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Reads a stored flow file, opened by [`open_flow_file`] at `path`, whole, after checking
/// (with the open file's own metadata: what is read is what was checked) that it is a regular
/// file of a size `get_flow` holds.
async fn read_open_flow_file(
    name: &str,
    location: &str,
    path: PathBuf,
    file: File,
) -> Result<Bytes> {
    let len = file
        .metadata()
        .map_err(|e| read_error(Missing::File, name, &path, e))
        .and_then(|meta| check_metadata(name, location, &meta).map(|()| meta.len()))?;
    let read = move |path: PathBuf, file: File, name: String| {
        use std::io::Read;
        // Room for one byte more than expected, so the read that finds the end needs no
        // growth; `take` keeps `read_to_end` from asking the file its size again.
        let mut bytes = Vec::with_capacity(len as usize + 1);
        (&file)
            .take(MAX_IN_MEMORY + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(Missing::File, &name, &path, e))?;
        Ok(Bytes::from(bytes))
    };
    if len <= INLINE_IO_MAX {
        return read(path, file, name.to_string());
    }
    let name = name.to_string();
    tokio::task::spawn_blocking(move || read(path, file, name))
        .await
        .map_err(|e| Error::backend(TYPE_NAME, format!("read task failed: {e}")))?
}

/// Refuses anything at `path` but a regular file of a size that fits in memory.
fn check_readable_file(name: &str, location: &str, path: &Path, what: Missing) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| read_error(what, name, path, e))?;
    check_metadata(name, location, &meta)
}

/// A stored flow must be a regular file no larger than `get_flow` holds in memory.
fn check_metadata(name: &str, location: &str, meta: &std::fs::Metadata) -> Result<()> {
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

/// What a fetch found missing.
#[derive(Debug, Clone, Copy)]
enum Missing {
    Directory,
    File,
    Script,
}

/// An I/O error reading `path` for flow `name`: a missing one is [`Error::NotFound`] (saying what
/// to do), any other an [`Error::Io`]; the I/O error is kept as the source either way.
fn read_error(what: Missing, name: &str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() != std::io::ErrorKind::NotFound {
        return Error::io(format!("Flow \"{name}\": reading {}", path.display()), e);
    }
    let shown = path.display();
    let (what, message) = match what {
        Missing::Directory => (
            "directory",
            format!(
                "Flow \"{name}\": the Local flow directory {shown} does not exist on this machine. \
                 Fetch where the flow was registered (or where that directory is mounted), or \
                 register the flow again."
            ),
        ),
        Missing::File => (
            "file",
            format!(
                "Flow \"{name}\": its file {shown} does not exist (removed after registration, or \
                 another machine). Register the flow again."
            ),
        ),
        Missing::Script => (
            "file",
            format!(
                "Flow \"{name}\": its script {shown} does not exist. Put the script back at that \
                 path, or register the flow again with the script's new path."
            ),
        ),
    };
    Error::not_found(what, shown.to_string(), message).with_source(e)
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
        let script = self.config.stored_as_script;
        flowstore_core::Capabilities {
            write: true,
            many_flows: true,
            serialized: !script,
            script,
            list_versions: !script,
            stream_to_file: true,
            bundles: !script,
            delete_versions: !script,
        }
    }

    async fn add_flow(&mut self, flow: FlowInput) -> Result<String> {
        self.index.ensure_new(flow.name())?;
        if self.config.stored_as_script {
            let path = self
                .path
                .as_ref()
                .expect("build() checked script mode has a path")
                .display()
                .to_string();
            self.index.insert(flow.name(), path.clone(), None)?;
            return Ok(path);
        }
        let sealed = match flow {
            FlowInput::Serialized(sealed) => sealed,
            FlowInput::Bundle(input) => return self.add_bundle(input).await,
            other => {
                return Err(Error::config(format!(
                    "Flow \"{}\" is a script flow, but this Local storage stores serialized flows; \
                     use Local::builder().script(path) for script flows",
                    other.name()
                )))
            }
        };
        let digest = sealed.digest();
        let name = sealed.name.clone();
        let location = self.write_serialized(sealed).await?;
        self.note_written(Path::new(&location));
        self.index.insert(&name, location.clone(), Some(digest))?;
        Ok(location)
    }

    /// Makes every flow added since the last `persist` durable (see [`LocalBuilder::durable`]).
    async fn persist(&mut self) -> Result<()> {
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
        if self.config.stored_as_script {
            let script = script_file(name, &location)?;
            check_readable_file(name, &location, &script, Missing::Script)?;
            let (source, path) = self.read_script(name, &script)?;
            return self
                .index
                .open_script(name, &location, None, source, Some(path));
        }
        let (path, file) = self.open_serialized_file(name, &location)?;
        let bytes = read_open_flow_file(name, &location, path.clone(), file).await?;
        tracing::debug!(flow = name, path = %path.display(), "read flow");
        self.index.open_serialized(name, &location, None, bytes)
    }

    fn reference(&self) -> Result<StorageReference> {
        let mut reference = StorageReference::new(TYPE_NAME, &self.config)?;
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

    /// Removes the version's file. Refuses (deleting nothing) a location outside the storage's
    /// directory, one that is not `<flow slug>/<timestamp slug>` inside it, or one that is not
    /// a regular file (a symbolic link, a directory).
    async fn delete_version(&self, version: &StoredVersion) -> Result<()> {
        let path = self.version_path(version)?;
        tokio::task::spawn_blocking(move || match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("deleting {}", path.display()), e)),
            Ok(meta) if !meta.file_type().is_file() => Err(Error::config(format!(
                "refusing to delete {}: it is not a regular file, so not a stored flow version;                  remove it by hand if it is yours",
                path.display()
            ))),
            Ok(_) => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io(format!("deleting {}", path.display()), e))
                }
                _ => Ok(()),
            },
        })
        .await
        .map_err(|e| Error::backend(TYPE_NAME, format!("delete task failed: {e}")))?
    }

    async fn read_version(&self, version: &StoredVersion) -> Result<bytes::Bytes> {
        let path = self.version_path(version)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(b.into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::not_found(
                "flow version",
                path.display().to_string(),
                format!("Stored version {} is gone", path.display()),
            )),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Blobs under `<directory>/.blobs/sha256/` (serialized mode).
    fn blob_store(&self) -> Option<Box<dyn flowstore_core::bundle::BlobStore + '_>> {
        (!self.config.stored_as_script).then(|| {
            Box::new(self.blobs(flowstore_core::bundle::BlobArea::Live))
                as Box<dyn flowstore_core::bundle::BlobStore>
        })
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
        let source = if self.config.stored_as_script {
            script_file(name, &location)?
        } else {
            self.serialized_file(name, &location, LastName::Checked)?
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
        let what = if self.config.stored_as_script {
            Missing::Script
        } else {
            Missing::File
        };
        let mut file =
            std::fs::File::open(source).map_err(|e| read_error(what, name, source, e))?;
        let mut sink = FlowFileSink::create(
            &self.index,
            name,
            location,
            dest,
            !self.config.stored_as_script,
        )?;
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
impl Local {
    /// The file of a listed version, if its location is `<directory>/<flow slug>/<timestamp
    /// slug>` of this storage (no `..`, no symbolic link for the flow's directory).
    ///
    /// Errors: [`Error::Config`] naming the location otherwise.
    fn version_path(&self, version: &StoredVersion) -> Result<PathBuf> {
        let location = Path::new(&version.location);
        let not_ours = |why: &str| {
            Error::config(format!(
                "refusing {}: {why}. Only flow versions that `flowstore list` shows for the Local                  storage at {} can be deleted or read here",
                version.location,
                self.directory.display()
            ))
        };
        if self.config.stored_as_script {
            return Err(not_ours("a script storage keeps the user's own files"));
        }
        let rel = location
            .strip_prefix(&self.directory)
            .map_err(|_| not_ours("it is outside the storage's directory"))?;
        let rel = rel
            .to_str()
            .ok_or_else(|| not_ours("its name is not UTF-8"))?;
        key::check_version_key(rel)
            .map_err(|why| not_ours(&format!("not a flow version ({why})")))?;
        let slug_dir = self
            .directory
            .join(rel.split('/').next().unwrap_or_default());
        if std::fs::symlink_metadata(&slug_dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(not_ours("its flow directory is a symbolic link"));
        }
        Ok(self.directory.join(rel))
    }
}

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
            // Only flowstore versions: other files (a README, an editor's backup) are not
            // listed, so prune never plans to delete them.
            if key::check_version_key(&format!("{slug}/{file_name}")).is_err()
                || !entry.file_type().is_ok_and(|t| t.is_file())
            {
                continue;
            }
            let meta = entry.metadata().ok();
            let head = read_head(&entry.path());
            versions.push(StoredVersion {
                bundle: head
                    .as_deref()
                    .is_some_and(flowstore_core::bundle::is_manifest),
                flow: head.and_then(|h| peek_header(&h)).map(|h| h.flow),
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
