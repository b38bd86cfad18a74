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
//!   key per registration); the options are [`WebhookConfig`]'s. In URL mode the versions can
//!   be listed and pruned where the server serves JSON directory listings and allows `DELETE`
//!   (see [Retention](#retention-flowstore-prune-in-url-mode)).
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
//! | write | many flows | serialized | script | list versions | stream to file | bundles | delete versions |
//! |---|---|---|---|---|---|---|---|
//! | yes | no (one flow per storage) | serialized mode | script mode | URL mode (JSON directory listings) | yes | URL mode, serialized | URL mode (the server must allow `DELETE`) |
//!
//! Capabilities are declared from the configuration alone; whether the server can list and
//! delete shows when it is asked. Prefect 1's templated build and get_flow requests (one fixed
//! url, [`Webhook::builder`]) keep no versions: listing and deleting are
//! [`Unsupported`](flowstore_core::Error::Unsupported) there, and the error says to use URL mode.
//!
//! # Retention (`flowstore prune`) in URL mode
//!
//! [`flowstore_core::prune`] lists, deletes and sweeps through plain HTTP, so it needs two things
//! from the server at `<url>`:
//!
//! - **JSON directory listings**: a `GET` of a directory URL (trailing `/`) answered with a JSON
//!   array of `{"name", "type": "file" | "directory", "mtime", "size"}`, as nginx serves them with
//!   `autoindex on; autoindex_format json;`. `GET <url>/` gives the flow slugs, `GET
//!   <url>/<slug>/` a flow's versions (size and time from the listing), and the first 4 KiB of
//!   each version (a ranged `GET`, several at once) its flow's name and whether it is a bundle;
//!   `GET <url>/.blobs/sha256/` and `<url>/.blobs/trash/sha256/` list the bundle blobs (a
//!   missing directory holds none). A server that answers a directory `GET` with anything else
//!   (403, 404 all the way up, an HTML page) fails the listing with
//!   [`Unsupported`](flowstore_core::Error::Unsupported), naming the URL and saying so.
//! - **`DELETE`** (nginx: `dav_methods PUT DELETE;`): a version is deleted with a `DELETE` of
//!   its URL, a swept blob with a `DELETE` of its URL; 404 or 410 (already gone) is success. A
//!   server that answers 405 or 501 fails with
//!   [`Unsupported`](flowstore_core::Error::Unsupported) naming its URL and saying to allow
//!   `DELETE` or to prune with the server's own tools; 401/403 is
//!   [`PermissionDenied`](flowstore_core::Error::PermissionDenied).
//!
//! Listings, reads and deletes carry the get_flow request's arguments (headers, params, auth,
//! timeout; typed credentials too), never a body. A delete refuses, with
//! [`Config`](flowstore_core::Error::Config) and without sending anything, any location that is
//! not `<url>/<flow slug>/<timestamp slug>`. Swept blobs move (`GET`, `PUT`, `DELETE`) to
//! `<url>/.blobs/trash/sha256/<hex>` first ([`BlobArea::Trash`](flowstore_core::bundle::BlobArea));
//! blob times are the listing's `mtime`, to the second. A server that can do neither can still
//! store and serve flows; prune it with its own tools.
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
mod versions;

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
