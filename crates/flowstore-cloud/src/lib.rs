//! Flow storage in Amazon S3 (and S3-compatible servers), Azure Blob Storage and Google Cloud
//! Storage, on the [`object_store`] crate: one maintained, async, retrying client for all three.
//!
//! Each cloud has a storage type ([`S3`], [`Azure`], [`Gcs`]) made by its builder
//! ([`S3Builder`], [`AzureBuilder`], [`GcsBuilder`]) and configured by a config type
//! ([`S3Config`], [`AzureConfig`], [`GcsConfig`]) that holds exactly what the storage reference
//! records, with Prefect 1's field names. A builder is filled by typed setters, by
//! `with_config(key, value)` pairs, from a URL (`s3://bucket/prefix?region=eu-west-1&label=prod`,
//! `az://container/prefix?account_name=…`, `gs://bucket/prefix`) or from the provider's
//! environment variables (`from_env`); all end in the same configuration.
//!
//! - Default keys are `<prefix>/<slug(flow)>/<slug(timestamp)>`; a fixed `key` / `blob_name`
//!   is honoured (one flow per storage).
//! - Uploads happen at `persist` and are create-only (`If-None-Match: *` /
//!   `ifGenerationMatch=0`): an existing object is an error (Azure: unless `overwrite`).
//! - Flows (a [`SealedFlow`](flowstore_core::envelope::SealedFlow) sealed from a large file is
//!   read from it as it uploads), scripts and bundle blobs over [`MULTIPART_THRESHOLD`] are
//!   streamed in constant memory: on S3 and Azure in parts of 6 MiB, four at a time (at most
//!   24 MiB buffered), on GCS as one streamed request. The request that makes the object
//!   appear is the create-only one: CompleteMultipartUpload (S3) and Put Block List (Azure)
//!   with `If-None-Match: *`, sent by flowstore because `object_store` 0.14 cannot make them
//!   conditional; GCS's upload with `ifGenerationMatch=0`. A flow whose file changed after it
//!   was sealed is refused and its upload abandoned, never completed.
//!   `get_flow_to_file` streams downloads to disk while verifying them.
//! - Credentials are typed builder options held as `SecretString`, named secrets through
//!   `flowstore-secrets` (Prefect 1's `AWS_CREDENTIALS`, `GCP_CREDENTIALS`,
//!   `connection_string_secret`), or the provider's standard chain. They never enter a
//!   reference, a log, an error or `Debug`.
//! - Errors say what kind they are: a missing bucket, container or object is
//!   [`flowstore_core::Error::NotFound`], refused credentials
//!   [`PermissionDenied`](flowstore_core::Error::PermissionDenied), timeouts and 5xx after the
//!   [`RetryPolicy`]'s retries a temporary [`Backend`](flowstore_core::Error::Backend) error;
//!   the client's error is kept as `source()`.
//!
//! # Cargo features
//!
//! | feature | enables | default |
//! |---|---|---|
//! | `s3` | [`S3`] and the `s3://` scheme (`object_store/aws`) | yes |
//! | `azure` | [`Azure`] and the `az://` / `azure://` schemes (`object_store/azure`) | yes |
//! | `gcs` | [`Gcs`] and the `gs://` scheme (`object_store/gcp`, `reqwest`) | yes |
//!
//! # Capabilities
//!
//! | storage | write | many flows | serialized | script | list versions | stream to file | bundles | delete versions |
//! |---|---|---|---|---|---|---|---|---|
//! | [`S3`] | yes | yes (no with a fixed `key`) | yes (serialized mode) | yes (script mode) | yes | yes | serialized mode, no fixed `key` | yes |
//! | [`Azure`] | yes | yes (no with a fixed `blob_name`) | yes (serialized mode) | yes (script mode) | yes | yes | serialized mode, no fixed `blob_name` | yes |
//! | [`Gcs`] | yes | yes (no with a fixed `key`) | yes (serialized mode) | yes (script mode) | yes | yes | serialized mode, no fixed `key` | yes |
//!
//! A storage holds serialized flows, or (with `stored_as_script`) scripts, not both.
//!
//! `list_versions` lists the objects under the prefix whose key is `<prefix>/<flow slug>/<timestamp
//! slug>` (never blobs, deeper keys or other programs' objects; the service's pages are followed),
//! reading the first 4 KiB of each, 16 at a time, for the flow's name and whether it is a bundle.
//!
//! # Bundles
//!
//! A bundle ([`FlowInput::bundle`](flowstore_core::FlowInput::bundle)) is scanned at `add_flow`
//! and uploaded at `persist`: first the blobs the storage lacks (packs of small files, and large
//! files on their own), create-only, at `<prefix>/.blobs/sha256/<hex>` (one listing of that prefix
//! finds which; large blobs go in parts streamed from disk), then the manifest, create-only, at a
//! fresh default key like any serialized flow. Re-registering after a one-file change uploads the
//! pack (or large file) holding it and the manifest. `list_versions` never lists blobs; agents
//! fetch with [`Storage::get_bundle`], reading a single file out of a pack with one ranged
//! request.
//!
//! # Retention (`flowstore prune`)
//!
//! All three storages delete versions, so [`flowstore_core::prune`] works on them:
//! [`Storage::delete_version`] deletes one listed version's object (one already gone is
//! success) and [`Storage::read_version`] reads it. Both refuse, with
//! [`Error::Config`](flowstore_core::Error::Config) naming the location and deleting nothing,
//! anything that is not `<prefix>/<flow slug>/<timestamp slug>` of the storage itself: bundle
//! blobs, other prefixes, other programs' objects. Credentials that may read but not delete get
//! [`PermissionDenied`](flowstore_core::Error::PermissionDenied) naming the permission pruning
//! needs (`s3:DeleteObject`, a SAS token's `d`, `storage.objects.delete`).
//!
//! After the deletions a prune sweeps the bundle blobs: a live blob no remaining version names
//! and older than the grace period is copied to `<prefix>/.blobs/trash/sha256/<hex>` (a new
//! object, so its time there is when it was trashed) and then deleted from the live area; the
//! next sweep deletes trashed blobs still unnamed a grace period later, and moves back any a new
//! registration named meanwhile. Fetches that miss a live blob read it from the trash. The trash
//! is the storage's [`BlobStore::area`](flowstore_core::bundle::BlobStore::area)`(Trash)`.
//!
//! # Register in S3 and fetch back
//!
//! ```no_run
//! use flowstore_cloud::S3;
//! use flowstore_core::{envelope::seal, Registry, Storage};
//! # async fn demo() -> flowstore_core::Result<()> {
//! let app = flowstore_core::app_info!();
//! let mut storage = S3::builder("my-flows")
//!     .endpoint("http://127.0.0.1:9000")
//!     .build()?;
//! storage.add_flow(seal("My ETL Flow", &["extract", "load"], &app)?.into()).await?;
//! storage.persist().await?;
//! let reference = storage.reference()?.to_json(); // keep this with the flow run
//!
//! // On an agent (credentials from its secret sources and environment):
//! let mut registry = Registry::new();
//! flowstore_cloud::register(&mut registry);
//! let flow = registry.open_json(&reference)?.get_flow("My ETL Flow").await?;
//! let steps: Vec<String> = flow.decode(&app)?;
//! # Ok(()) }
//! ```
//!
//! [`register`] adds the `S3`, `Azure` and `GCS` reference types and the `s3://`,
//! `az://` / `azure://` and `gs://` URL schemes compiled in.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// With only some clouds compiled in, parts of the shared engine go unused.
#![cfg_attr(
    not(all(feature = "s3", feature = "azure", feature = "gcs")),
    allow(dead_code, unused_imports, unused_macros)
)]

mod blobs;
mod bundles;
mod completion;
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
pub use azure::{Azure, AzureBuilder, AzureConfig};
pub use blobs::{MULTIPART_THRESHOLD, PART_SIZE};
pub use engine::MAX_IN_MEMORY;
pub use error::Error;
#[cfg(feature = "gcs")]
pub use gcs::{Gcs, GcsBuilder, GcsConfig};
pub use retry::RetryPolicy;
#[cfg(feature = "s3")]
pub use s3::{S3Builder, S3ClientOptions, S3Config, S3};

use flowstore_core::{Registry, Storage};

/// Registers the cloud reference types (`S3`, `Azure`, `GCS`) and URL schemes (`s3`, `az`,
/// `azure`, `gs`) compiled in.
///
/// URL openers start from the builder's `from_env`, then apply the URL and the registry's
/// options; reference openers use what the reference records.
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
