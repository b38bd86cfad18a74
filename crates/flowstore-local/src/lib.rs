//! Local filesystem and in-binary Module flow storage for flowstore.
//!
//! - [`Local`]: flows as files under a directory (`~/.flowstore/flows` by default, or
//!   `$FLOWSTORE_HOME/flows`), written create-only and crash-safe; or a script path read at each run.
//! - [`Module`]: flows compiled into the running binary, published with [`module::register_flow`].
//!
//! [`register`] adds both to a [`Registry`](flowstore_core::Registry), with the `file://` URL scheme.
//!
//! ```
//! let mut registry = flowstore_core::Registry::new();
//! flowstore_local::register(&mut registry);
//! assert_eq!(registry.types(), ["Local", "Module"]);
//! let storage = registry.open_url("file:///tmp/flows").unwrap();
//! assert_eq!(storage.type_name(), "Local");
//! ```
#![warn(missing_docs)]

mod error;
pub mod local;
pub mod module;

pub use error::Error;
pub use local::{default_directory, Local, LocalFields};
pub use module::Module;

use flowstore_core::{Registry, Storage};

/// Registers `Local` and `Module` references and the `file://` URL scheme.
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
