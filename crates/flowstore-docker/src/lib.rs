//! Docker image flow storage for flowstore: serialized flows (or scripts) baked into a container
//! image and pushed to a registry, so a flow's code and dependencies travel together.
//!
//! - [`BuildMode::Engine`]: a generated Dockerfile built by a Docker Engine (through `bollard`),
//!   ending with a health check that verifies every flow's SHA-256 inside the image (and runs a
//!   load command if given); then tag, push, and removal of the local image.
//! - [`BuildMode::Daemonless`]: no daemon at all — one layer holding the flows is appended to the
//!   base image's manifest and pushed through the OCI distribution API.
//! - `get_flow` inside the image reads the file; outside it, only the flow's layer is fetched from
//!   the registry by the recorded digest (no daemon, no full pull), and verified.
//!
//! [`register`] adds the `Docker` reference type and the `docker://` URL scheme ([`url`]).
//!
//! ```no_run
//! use flowstore_core::envelope::{seal, AppInfo};
//! use flowstore_core::Storage;
//! use flowstore_docker::{BuildConfig, BuildMode, Docker};
//!
//! # async fn example() -> flowstore_core::Result<()> {
//! // No Docker daemon needed: one layer of flows on top of a base image, pushed to a registry.
//! let mut storage = Docker::new(
//!     Some("registry.example.com:5000"),
//!     BuildConfig {
//!         mode: BuildMode::Daemonless,
//!         base_image: Some("registry.example.com:5000/python:3.12-slim".into()),
//!         ..Default::default()
//!     },
//! );
//! let app = AppInfo::new("my-app", "1.0.0");
//! storage.add_flow(seal("ETL", &vec!["extract", "load"], &app)?.into()).await?;
//! storage.persist().await?; // pushes; the reference records the image digest
//! let reference = storage.reference()?.to_json_pretty();
//! # let _ = reference;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod auth;
#[cfg(feature = "engine")]
pub mod engine;
mod error;
pub mod layer;
pub mod registry;
mod storage;
pub mod url;

pub use error::{Error, Result};
pub use storage::{
    BuildConfig, BuildMode, Docker, DockerFields, TlsFiles, BUILD_FAILED, TYPE_NAME,
};

use flowstore_core::{Registry as Types, Storage};

/// Registers the `Docker` type and the `docker://` URL scheme (see [`url`]).
pub fn register(registry: &mut Types) {
    registry
        .register_type(TYPE_NAME, |r, ctx| {
            Ok(Box::new(Docker::from_reference(r, ctx)?) as Box<dyn Storage>)
        })
        .register_scheme("docker", |u, ctx| {
            Ok(Box::new(url::open(u, ctx)?) as Box<dyn Storage>)
        });
}
