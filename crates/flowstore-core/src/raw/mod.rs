//! For backend authors: the helpers a `Storage` implementation is built from, kept out of the
//! user's way (a program that only registers and fetches flows never needs them).
//!
//! - [`FlowIndex`]: the flow locations, digests, secrets and labels every backend records.
//! - [`atomic`]: create-only, crash-safe file writes.
//! - [`clients`]: HTTP clients (and their connection pools) shared by every storage a process
//!   opens.
//! - [`sink`]: streaming a fetched flow to a file while verifying it.
//! - [`builder_common_methods!`](crate::builder_common_methods): the label and secret methods
//!   every builder shares.
//! - [`config`]: filling a backend's configuration from a URL, key/value pairs or the environment.

pub mod atomic;
mod builder;
pub mod clients;
pub mod config;
mod index;
pub mod sink;

pub use index::FlowIndex;
