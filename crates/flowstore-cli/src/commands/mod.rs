//! One module per subcommand.

pub mod cache;
pub mod fetch;
pub mod inspect;
pub mod list;
pub mod prune;
pub mod register;
