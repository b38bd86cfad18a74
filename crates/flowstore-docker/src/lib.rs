//! Docker image flow storage for flowstore: serialized flows (or scripts) baked into a container
//! image and pushed to a registry, so a flow's code and dependencies travel together. Prefect 1's
//! `Docker` storage, with two ways to build and a way to read a flow without pulling the image.
//!
//! - [`BuildMode::Engine`]: a generated Dockerfile built by a Docker Engine (through `bollard`),
//!   ending with a health check that verifies every flow's SHA-256 inside the image (and runs a
//!   load command if given); then tag, push, and removal of the local image.
//! - [`BuildMode::Daemonless`]: no daemon at all — one layer holding the flows is appended to the
//!   base image's manifest and pushed through the OCI distribution API ([`registry`], with typed
//!   [`oci`] manifests and configs).
//! - `get_flow` inside the image reads the file; outside it, only the flow's layer is fetched from
//!   the registry by the recorded digest (no daemon, no full pull), and verified.
//!   `get_flow_to_file` streams it instead (the layer gunzipped and untarred as it arrives, the
//!   flow checked as it is written), so a flow of any size is fetched in constant memory.
//! - A flow sealed from a large file (`seal_file`) stays in its file until the build: the
//!   daemonless flows layer is written to a temporary file (tar, gzip and both digests in one
//!   pass) and pushed streamed from it; an Engine build's context is a temporary file streamed
//!   to the daemon. A flow whose file changed after sealing fails the build before anything is
//!   pushed.
//! - Bundles (a directory of code registered as one flow, serialized mode): the manifest is the
//!   flow's file, and the tree is an image layer of its own at `{directory}/flows/{slug}.bundle/`
//!   (both build modes), so the image runs it. The layer is deterministic, so registering an
//!   unchanged tree of the same flow again pushes no new layer; a changed file makes a new layer,
//!   pushed whole. `get_bundle` fetches that one layer by the digest the reference records
//!   (`bundle_layers`), unless the blob cache already holds every file.
//!
//! A [`Docker`] storage is made by a [`DockerBuilder`] (`Docker::builder()`): typed setters,
//! [`with_config`](DockerBuilder::with_config) pairs, a `docker://` URL
//! ([`from_url`](DockerBuilder::from_url); the options are listed in [`url`]) or Docker's
//! environment variables ([`from_env`](DockerBuilder::from_env)). The reference records
//! [`DockerConfig`] (the registry, image name, tag and digest, where the flows are, and the names
//! of the registry credentials' secrets); [`BuildConfig`] is how the image is made and is not
//! recorded. Registry credentials are given as secret names (recorded, for agents),
//! as a [`username`](DockerBuilder::username)/[`password`](DockerBuilder::password) for this
//! build only (never recorded), or found in the Docker CLI's `config.json`.
//!
//! [`register`] adds the `Docker` reference type and the `docker://` URL scheme.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `engine` | yes | [`BuildMode::Engine`] builds through a Docker Engine (`bollard`) and the `engine` module; without it only daemonless builds are available (fetching never needs it) |
//!
//! # Capabilities
//!
//! | write | many flows | serialized | script | bundles | list versions | delete versions | stream to file |
//! |---|---|---|---|---|---|---|---|
//! | yes (a built image is not changed: each `persist` builds a new one) | yes | yes, unless in script mode | yes, in script mode | yes, unless in script mode (a layer per bundle) | with a registry: the repository's timestamp tags | with a registry that allows deletes | yes |
//!
//! # Versions and `flowstore prune`
//!
//! Every `persist` pushes a new image, tagged by default with the timestamp slug of the build
//! (`2026-11-24t02-51-19-123456-00-00`); each such image is one stored version. For a storage
//! with a registry (`registry_url`; both build modes):
//!
//! - `list_versions` lists the image repository's tags through the distribution API
//!   (`GET /v2/<name>/tags/list?n=100`, following the `Link` header from page to page) and keeps
//!   the tags that are timestamp slugs: `latest`, `v1` and every other tag are never versions,
//!   so a prune never touches them. A version's **location is `<registry>/<image name>:<tag>`**
//!   (the reference to pull), its `stored_at` the tag's time, its size the image's total
//!   compressed layer size (base layers included). Its **slug is the flow's slug when the image
//!   holds one flow** (the `io.flowstore.flows` label both builds write), else the last segment
//!   of the image name; `flowstore prune --flow NAME` keeps the versions with that slug. The
//!   version is the whole image, whatever flows it holds.
//! - `delete_version` accepts only `<this registry>/<this image name>:<timestamp tag>` (anything
//!   else is refused, nothing sent), resolves the tag's manifest digest
//!   (`HEAD /v2/<name>/manifests/<tag>`) and deletes the manifest by digest
//!   (`DELETE /v2/<name>/manifests/<digest>`); a tag already gone is fine. Deleting by digest
//!   removes every tag naming that manifest, so it refuses (nothing deleted) when another tag
//!   (another timestamp, `latest`) names the same manifest. Daemonless builds record their build
//!   time (`created`), so two builds of unchanged flows are two manifests.
//!
//! What prune cannot do here: free space by itself. A registry deletes manifests; the layers stay
//! until the registry's own garbage collection (`registry garbage-collect <config.yml>` for
//! Distribution, run while it accepts no pushes; hosted registries collect on their own). The
//! registry must allow deletes: Distribution answers `405` unless `storage.delete.enabled: true`
//! (`REGISTRY_STORAGE_DELETE_ENABLED=true`), Docker Hub and other hosted registries refuse
//! (`401`/`403`/`405`); the error says so and nothing is deleted. There is no blob sweep (bundle
//! trees are image layers, which the registry's garbage collection frees). A storage without a
//! registry (a local image) declares neither capability: prune refuses it, and listing or
//! deleting says to use `docker image rm`.
//!
//! # Errors
//!
//! [`Error`] converts into [`flowstore_core::Error`]: a missing image, tag, manifest or blob is
//! `NotFound` (`what: "image"`; a flow file missing from the image: `"file"`), refused registry
//! credentials `PermissionDenied`, an unreachable or failing registry or daemon (timeouts, `429`,
//! `5xx`) a temporary `Backend` error with the transport error as its `source()`.
//!
//! # Example
//!
//! Register a flow with a daemonless build, keep the reference, fetch the flow as an agent:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use flowstore_core::envelope::{seal, AppInfo};
//! use flowstore_core::{Registry, Storage};
//! use flowstore_docker::{BuildMode, Docker};
//!
//! # async fn example() -> flowstore_core::Result<()> {
//! // No Docker daemon needed: one layer of flows on top of a base image, pushed to a registry.
//! let mut storage = Docker::builder()
//!     .registry_url("registry.example.com:5000")
//!     .image("team/etl", None) // tag: a timestamp
//!     .mode(BuildMode::Daemonless)
//!     .base_image("registry.example.com:5000/python:3.12-slim")
//!     .registry_secrets("REGISTRY_USER", "REGISTRY_PASSWORD") // names, resolved by agents
//!     .label("etl")
//!     .build()?;
//! let app = AppInfo::new("my-app", "1.0.0");
//! storage.add_flow(seal("ETL", &vec!["extract", "load"], &app)?.into()).await?;
//! storage.persist().await?; // pushes; the reference records the image digest
//! let json = storage.reference()?.to_json_pretty();
//!
//! // An agent: its own secret sources, the Docker type registered, the reference opened.
//! let mut agent = Registry::new().with_secrets(Arc::new(flowstore_secrets::EnvSource::new()));
//! flowstore_docker::register(&mut agent);
//! let steps: Vec<String> = agent.open_json(&json)?.get_flow("ETL").await?.decode(&app)?;
//! assert_eq!(steps, ["extract", "load"]);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
mod builder;
mod bundles;
mod config;
mod credentials;
mod daemonless;
#[cfg(feature = "engine")]
pub mod engine;
mod error;
mod fetch;
mod image;
pub mod layer;
pub mod oci;
pub mod registry;
mod storage;
pub mod url;
mod versions;

pub use builder::DockerBuilder;
pub use config::{
    BuildConfig, BuildMode, DockerConfig, TlsFiles, BUILD_FAILED, DEFAULT_DIRECTORY, TYPE_NAME,
};
pub use credentials::Credentials;
pub use error::{Error, Result};
pub use storage::Docker;

use flowstore_core::{Registry as Types, Storage};

/// Registers the `Docker` reference type ([`Docker::from_reference`]) and the `docker://` URL
/// scheme ([`Docker::from_url`]; options in [`url`]).
pub fn register(registry: &mut Types) {
    registry
        .register_type(TYPE_NAME, |r, ctx| {
            Ok(Box::new(Docker::from_reference(r, ctx)?) as Box<dyn Storage>)
        })
        .register_scheme("docker", |u, ctx| {
            Ok(Box::new(Docker::from_url(u, ctx)?) as Box<dyn Storage>)
        });
}
