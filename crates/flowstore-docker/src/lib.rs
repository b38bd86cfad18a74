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
#![warn(missing_docs)]

#[cfg(feature = "engine")]
pub mod engine;
pub mod layer;
pub mod registry;
mod storage;

pub use storage::{
    BuildConfig, BuildMode, Docker, DockerFields, TlsFiles, BUILD_FAILED, TYPE_NAME,
};

use flowstore_core::{Registry as Types, Storage};

/// Registers the `Docker` type.
pub fn register(registry: &mut Types) {
    registry.register_type(TYPE_NAME, |r, ctx| {
        Ok(Box::new(Docker::from_reference(r, ctx)?) as Box<dyn Storage>)
    });
}
