//! Webhook (HTTP) flow storage for flowstore: a flow is sent to an HTTP endpoint at `persist`
//! and fetched with a second request at run time, so flows can live in any service that speaks
//! HTTP (a file server, an artifact store, Dropbox).
//!
//! - [`Webhook`] (made by [`WebhookBuilder`]) stores **one** flow, serialized or a script, as
//!   Prefect 1's did: a second `add_flow` replaces the first. Reference type `Webhook`.
//! - Request arguments are requests-style (`url`, `headers`, `params`, `timeout`, `auth`) and may
//!   hold `${NAME}` templates, rendered at call time from the environment, then the secret
//!   sources; the reference keeps the templates, rendered values never reach a log or an error.
//!   Typed credentials ([`WebhookBuilder::bearer_token`], [`WebhookBuilder::basic_auth`]) are
//!   sent but never recorded; the reference records the template and the secret's name
//!   ([`WebhookBuilder::bearer_token_secret`], [`WebhookBuilder::basic_auth_secret`]).
//! - Connection errors, timeouts, 429 and 5xx are retried with backoff (3 retries by default).
//! - What was sent is digested into the reference and checked on fetch; large flows stream.
//! - URL scheme `http(s)://host/path?option=value`: PUT and GET of `<url>/<flow key>` (a fresh
//!   key per registration); the options are [`WebhookConfig`]'s.
//! - Bundles ([`FlowInput::bundle`](flowstore_core::FlowInput::bundle)) in URL mode: each blob is
//!   sent once to `<url>/.blobs/sha256/<hex>` (a `HEAD` first; the build request's method and
//!   arguments, create-only), then the manifest to `<url>/<flow key>` as the flow; agents fetch
//!   blobs with the get_flow request's method and arguments, and one file out of a pack with a
//!   `Range` header (a server that ignores it and sends the whole pack still gives the right
//!   bytes, sliced out of it). Other modes refuse bundles.
//!
//! [`register`] adds the `Webhook` type and the `http`/`https` URL schemes to a
//! [`Registry`].
//!
//! # Cargo features
//!
//! None: HTTP is reqwest with rustls, always on.
//!
//! # Capabilities
//!
//! | write | many flows | serialized | script | list versions | stream to file | bundles |
//! |---|---|---|---|---|---|---|
//! | yes | no (one flow per storage) | serialized mode | script mode | no | yes | URL mode, serialized |
//!
//! # Register and fetch
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> flowstore_core::Result<()> {
//! use flowstore_core::{envelope::seal, Registry, Storage};
//! use flowstore_core::secret::SecretString;
//! use flowstore_webhook::WebhookBuilder;
//! let app = flowstore_core::app_info!();
//!
//! // Register: PUT the flow to https://files.example/flows/<flow key>.
//! let mut storage = WebhookBuilder::from_url("https://files.example/flows?timeout=30")?
//!     .bearer_token_secret("FILES_TOKEN") // agents resolve FILES_TOKEN
//!     .bearer_token(SecretString::from(std::env::var("MY_TOKEN").unwrap_or_default()))
//!     .build()?;
//! storage.add_flow(seal("My ETL Flow", &["extract", "load"], &app)?.into()).await?;
//! storage.persist().await?;
//! let reference = storage.reference()?.to_json(); // no token in it
//!
//! // Later, on an agent (FILES_TOKEN in its environment or secret sources): GET it back.
//! let mut registry = Registry::new();
//! flowstore_webhook::register(&mut registry);
//! let agent = registry.open_json(&reference)?;
//! let tasks: Vec<String> = agent.get_flow("My ETL Flow").await?.decode(&app)?;
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! Every storage method returns [`flowstore_core::Error`] with the crate's [`Error`] kept as its
//! `source()`: a 404 or 410 answer is [`NotFound`](flowstore_core::Error::NotFound), 401/403
//! [`PermissionDenied`](flowstore_core::Error::PermissionDenied), timeouts, 408, 429 and 5xx a
//! temporary [`Backend`](flowstore_core::Error::Backend) error (see
//! [`is_temporary`](flowstore_core::Error::is_temporary)).
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod blobs;
mod builder;
mod config;
mod error;
mod method;
mod request;
mod storage;

pub use builder::WebhookBuilder;
pub use config::WebhookConfig;
pub use error::Error;
pub use method::HttpMethod;
pub use request::Retry;
pub use storage::{Webhook, MAX_IN_MEMORY, TYPE_NAME};

use flowstore_core::{Registry, Storage};

/// Registers the `Webhook` type and the `http` / `https` URL schemes (see [`Webhook::from_url`]).
pub fn register(registry: &mut Registry) {
    registry.register_type(TYPE_NAME, |r, ctx| {
        Ok(Box::new(Webhook::from_reference(r, ctx)?) as Box<dyn Storage>)
    });
    for scheme in ["http", "https"] {
        registry.register_scheme(scheme, |url, ctx| {
            Ok(Box::new(Webhook::from_url(url, ctx)?) as Box<dyn Storage>)
        });
    }
}

/// The README's example, compiled (and, where it needs no server, run) as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
