//! flowstore-core: the pieces every flowstore backend shares.
//!
//! - [`Storage`]: the async, object-safe trait every backend implements.
//! - [`envelope`]: the self-describing, digest-checked format of a serialized flow.
//! - [`StorageReference`] and [`Registry`]: the JSON an orchestrator persists and how an agent
//!   turns it back into a storage.
//! - [`key`]: the `<slug(flow)>/<slug(timestamp)>` key scheme (python-slugify compatible).
//! - [`bundle`]: a flow with its code, as content-addressed blobs plus a manifest.
//! - [`prune`]: retention (which versions a policy lets go, deleting them, and the blob sweep
//!   through a trash that never takes a blob a remaining version needs).
//! - `testkit` (feature `testkit`): the conformance suite every backend runs.
//! - [`raw`]: helpers for backend authors (the flow index, atomic writes, streaming sinks,
//!   configuration from URLs and pairs), kept apart from what a user of storages needs.
//!
//! No network stack, no TLS, no cloud SDK. Programs that store and fetch flows usually depend on
//! the `flowstore` facade crate instead, which re-exports what they need from here and installs
//! the backends they enable; backend authors build on this crate and its [`raw`] module.
//!
//! Cargo features: `testkit` (the conformance suite, for backends' tests) and `schema`
//! (`StorageReference::json_schema`, the JSON Schema of the reference format). Neither is needed
//! at run time.
//!
//! Every storage declares what it can do ([`Capabilities`]: write, many flows, serialized, script,
//! list versions, stream to a file, bundles, delete versions); errors say what kind of failure they are
//! ([`Error::is_not_found`], [`Error::is_temporary`]) and keep the lower error as `source()`.
//!
//! ```
//! use flowstore_core::{envelope, FlowContent};
//! let app = flowstore_core::app_info!();
//! let sealed = envelope::seal("My ETL Flow", &["extract", "transform", "load"], &app)?;
//! let content = flowstore_core::flow::decode_stored("My ETL Flow", "memory", sealed.to_bytes().expect("sealed in memory"))?;
//! assert!(matches!(content, FlowContent::Serialized(_)));
//! # Ok::<(), flowstore_core::Error>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod bundle;
pub mod cache;
pub mod envelope;
pub mod error;
pub mod flow;
pub mod key;
pub mod prefect1;
pub mod prune;
pub mod raw;
pub mod reference;
pub mod registry;
pub mod secret;
pub mod storage;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use async_trait::async_trait;
pub use envelope::{AppInfo, Envelope, SealedFlow};
pub use error::{Error, Result};
pub use flow::{FetchedFlow, FlowContent, FlowInput};
pub use reference::StorageReference;
pub use registry::{OpenContext, Progress, ProgressFn, Registry};
pub use secret::SecretSource;
pub use storage::{validate_flow_name, Capabilities, Storage, StoredVersion};
