//! S3, Azure Blob and GCS flow storage for flowstore, on the `object_store` crate (one maintained,
//! async, retrying client for all three). One Cargo feature per cloud: `s3`, `azure`, `gcs`.
//!
//! - Default keys `<prefix>/<slug(flow)>/<slug(timestamp)>`; a fixed `key`/`blob_name` is honoured.
//! - Uploads happen at `build` and are create-only (`If-None-Match: *` / `ifGenerationMatch=0`);
//!   an existing object is an error (Azure: unless `overwrite`).
//! - Large scripts upload with multipart, streamed from disk; `get_flow_to_file` streams
//!   downloads to disk while verifying.
//! - Credentials from the standard environment and chains, or named secrets through
//!   `flowstore-secrets`; they never enter a reference, a log or an error.
//!
//! [`register`] adds the `S3`, `Azure` and `GCS` types and the `s3://`, `az://`/`azure://` and
//! `gs://` URL schemes.
#![warn(missing_docs)]

mod blobs;
mod engine;
mod error;
mod retry;
mod storage;

#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "gcs")]
pub mod gcs;
#[cfg(feature = "gcs")]
mod gcs_json;
#[cfg(feature = "s3")]
pub mod s3;

#[cfg(feature = "azure")]
pub use azure::Azure;
pub use blobs::MULTIPART_THRESHOLD;
pub use engine::MAX_IN_MEMORY;
pub use error::Error;
#[cfg(feature = "gcs")]
pub use gcs::Gcs;
pub use retry::RetryPolicy;
#[cfg(feature = "s3")]
pub use s3::S3;
pub use storage::CloudStorage;

use flowstore_core::{Registry, Storage};

/// Registers the cloud types and URL schemes compiled in.
pub fn register(registry: &mut Registry) {
    #[cfg(feature = "s3")]
    registry
        .register_type(s3::TYPE_NAME, |r, ctx| {
            Ok(Box::new(S3::from_reference(r, ctx)?) as Box<dyn Storage>)
        })
        .register_scheme("s3", |u, ctx| {
            Ok(Box::new(S3::from_url(u, ctx)?) as Box<dyn Storage>)
        });
    #[cfg(feature = "azure")]
    registry
        .register_type(azure::TYPE_NAME, |r, ctx| {
            Ok(Box::new(Azure::from_reference(r, ctx)?) as Box<dyn Storage>)
        })
        .register_scheme("az", |u, ctx| {
            Ok(Box::new(Azure::from_url(u, ctx)?) as Box<dyn Storage>)
        })
        .register_scheme("azure", |u, ctx| {
            Ok(Box::new(Azure::from_url(u, ctx)?) as Box<dyn Storage>)
        });
    #[cfg(feature = "gcs")]
    registry
        .register_type(gcs::TYPE_NAME, |r, ctx| {
            Ok(Box::new(Gcs::from_reference(r, ctx)?) as Box<dyn Storage>)
        })
        .register_scheme("gs", |u, ctx| {
            Ok(Box::new(Gcs::from_url(u, ctx)?) as Box<dyn Storage>)
        });
    let _ = registry;
}
