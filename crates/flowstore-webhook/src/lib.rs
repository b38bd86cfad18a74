//! Webhook (HTTP) flow storage for flowstore: a flow is sent to an HTTP endpoint at `build` and
//! fetched with a second request at run time, so flows can live in any service that speaks HTTP
//! (a file server, an artifact store, Dropbox).
//!
//! - Request arguments are requests-style (`url`, `headers`, `params`, `timeout`, `auth`) and may
//!   hold `${NAME}` templates, rendered at call time from the environment, then the secret
//!   sources; the reference keeps the templates, rendered values never reach a log or an error.
//! - Connection errors, timeouts, 429 and 5xx are retried with backoff (3 retries by default).
//! - What was sent is digested into the reference and checked on fetch; large flows stream.
//! - One flow per storage, as in Prefect 1: a second `add_flow` replaces the first.
//!
//! [`register`] adds the `Webhook` type and the `http`/`https` URL schemes (PUT + GET of
//! `<url>/<flow key>`) to a [`Registry`](flowstore_core::Registry).
#![warn(missing_docs)]

mod error;
mod method;
mod request;
mod storage;

pub use error::Error;
pub use method::HttpMethod;
pub use request::Retry;
pub use storage::{Webhook, WebhookFields, MAX_IN_MEMORY, TYPE_NAME};

use flowstore_core::{Registry, Storage};

/// Registers the `Webhook` type and the `http` / `https` URL schemes.
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
