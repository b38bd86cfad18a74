//! Local filesystem and in-binary Module flow storage for flowstore.
//!
//! - [`Local`] (made by [`LocalBuilder`]): flows as files under a directory on this machine
//!   (`~/.flowstore/flows` by default; [`LocalBuilder::from_env`] honours `FLOWSTORE_HOME`),
//!   written create-only and crash-safe at `add_flow`, made durable at `persist`; or, in script
//!   mode, a script path read again at every fetch. Reference type `Local`, URL scheme
//!   `file:///absolute/directory?option=value`. Prefect 1 references open as they are, including
//!   a flow stored at an explicit `path` outside `directory` (exactly that file, nothing else
//!   outside) and a script `path` that is a Python module path (`flows.etl`: found as Python
//!   imports it, in the working directory then each `PYTHONPATH` entry).
//! - [`Module`] (made by [`ModuleBuilder`]): flows compiled into the running binary, published
//!   with [`module::register_flow`] and found by module path and name. Reference type `Module`.
//!
//! [`register`] adds both to a [`Registry`], with the `file://` URL
//! scheme.
//!
//! # Cargo features
//!
//! None: this crate has no optional parts (no network stack, no TLS).
//!
//! # Capabilities
//!
//! | storage | write | many flows | serialized | script | list versions | stream to file | bundles | delete versions |
//! |---|---|---|---|---|---|---|---|---|
//! | `Local` | yes | yes | serialized mode | script mode | serialized mode | yes | serialized mode | serialized mode |
//! | `Module` | yes (into this process) | yes | yes | no | no | no | no | no |
//!
//! Deleting versions (`flowstore prune`, [`flowstore_core::prune`]): [`Local`] removes only files
//! at `<directory>/<flow slug>/<timestamp slug>` (never a symbolic link, never a script mode's own
//! files); swept bundle blobs go to `<directory>/.blobs/trash/sha256/` first.
//!
//! # Configuration
//!
//! A builder is filled by typed setters, by option pairs ([`LocalBuilder::with_config`]) or from
//! a URL ([`LocalBuilder::from_url`]); all three end in the same [`LocalConfig`], which is what
//! the reference records. Options: `directory`, `path`, `stored_as_script`, plus `label`,
//! `add_default_labels` and `secret` as every storage takes them.
//!
//! # Register and fetch
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> flowstore_core::Result<()> {
//! use flowstore_core::{envelope::seal, Registry, Storage};
//! use flowstore_local::Local;
//! let dir = tempfile::tempdir().unwrap();
//! let app = flowstore_core::app_info!();
//!
//! // Register: store the flow and keep the reference.
//! let mut storage = Local::builder().directory(dir.path()).label("etl").build()?;
//! storage.add_flow(seal("My ETL Flow", &["extract", "load"], &app)?.into()).await?;
//! storage.persist().await?;
//! let reference = storage.reference()?.to_json();
//!
//! // Later, on an agent: the reference is all it needs.
//! let mut registry = Registry::new();
//! flowstore_local::register(&mut registry);
//! let agent = registry.open_json(&reference)?;
//! let tasks: Vec<String> = agent.get_flow("My ETL Flow").await?.decode(&app)?;
//! assert_eq!(tasks, ["extract", "load"]);
//!
//! // The same storage from a URL with options.
//! let url = format!("file://{}?label=etl", dir.path().display());
//! let from_url = registry.open_url(&url)?;
//! assert_eq!(from_url.type_name(), "Local");
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! Every method returns [`flowstore_core::Error`]: a missing flow directory or file is
//! [`NotFound`](flowstore_core::Error::NotFound) with the I/O error as its `source()` (a script
//! module path found nowhere too, naming the places searched), a location outside the directory
//! that is not the reference's own `path` [`OutsideStorage`](flowstore_core::Error::OutsideStorage), altered bytes
//! [`FlowCorrupt`](flowstore_core::Error::FlowCorrupt). The crate's own [`Error`] converts into it.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
pub mod local;
pub mod module;

pub use error::Error;
pub use local::{default_directory, Local, LocalBuilder, LocalConfig};
pub use module::{Module, ModuleBuilder, ModuleConfig};

use flowstore_core::{Registry, Storage};

/// Registers `Local` and `Module` references and the `file://` URL scheme (see
/// [`Local::from_url`]).
///
/// ```
/// let mut registry = flowstore_core::Registry::new();
/// flowstore_local::register(&mut registry);
/// assert_eq!(registry.types(), ["Local", "Module"]);
/// let storage = registry.open_url("file:///tmp/flows").unwrap();
/// assert_eq!(storage.type_name(), "Local");
/// ```
pub fn register(registry: &mut Registry) {
    registry
        .register_type(local::TYPE_NAME, |r, ctx| {
            Ok(Box::new(Local::from_reference(r, ctx)?) as Box<dyn Storage>)
        })
        .register_type(module::TYPE_NAME, |r, ctx| {
            Ok(Box::new(Module::from_reference(r, ctx)?) as Box<dyn Storage>)
        })
        .register_scheme("file", |url, ctx| {
            Ok(Box::new(Local::from_url(url, ctx)?) as Box<dyn Storage>)
        });
}

/// The README's example, compiled (and, where it needs no server, run) as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
